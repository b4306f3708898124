r"""Categorical VAE on binarised MNIST (Yin, Yue and Zhou 2019, poster fig. 2).

    python experiments/main.py --config=configs/vae.py:arsm_nonlinear \
        --workdir=runs/vae_arsm_nonlinear

trains the one-stochastic-layer nonlinear VAE (K = 20 latents of C = 10
categories, 784-512-256-(20x10) encoder, (20x10)-256-512-784 decoder, leaky
ReLU 0.2) with ARSM, Adam 3e-4, batch 200, for 100 epochs (27,500 steps) on
threshold-binarised MNIST, 55k / 5k / 10k. On 2 shared CPU cores a step takes
roughly 0.1-0.2 s, so the run takes one to two hours; rerunning the same
command resumes from the last checkpoint. Add ``--config.validation_split=paper``
to validate on the authors' 5,000 images (the first of the original MNIST
file) when comparing with their log.

Presets (``configs/vae.py:<preset>``), each derived from the default:

* ``arsm_nonlinear`` (the default), ``arsm_linear``, ``arsm_two_layer``;
* ``reinforce_loo``: REINFORCE with a leave-one-out baseline over
  ``C(C-1)/2 + 1 = 46`` samples, the most function evaluations ARSM makes per
  image and step (``--config.decoder_samples=1`` gives its decoder ARSM's
  one-sample gradient and ARSM's cost per step);
* ``st_gumbel``, ``gumbel``, ``reinmax``, ``relax``, ``reinforce``, ``ar``,
  ``ars``: the other registered estimators on the nonlinear model
  (``relax`` with the paper's control variate, ``include_f=True``);
* ``st_gumbel_learned``: ``st_gumbel`` with the temperature learned with the
  model from 1.0, as the authors trained it;
* ``carms`` (M = 4 coupled samples, ``estimator_settings.num_samples``),
  ``disarm`` (one antithetic pair, ``estimator_settings.num_pairs``) and
  ``arsm_plus`` (ARSM with ``partial_integration``): ARSM's successors at
  Adam 3e-4, with their settings present so they can be overridden;
* ``tiny``: a few seconds on synthetic data, for tests and smoke runs.

Any field can be overridden, e.g. ``--config.estimator=ar
--config.num_epochs=5 --config.binarization=dynamic``.
"""

import os

import ml_collections

from arsm_jax import config_checks

# Presets that only change the estimator (and its usual learning rate).
# The authors used 3e-4 for ARSM and 1e-4 for every other estimator.
_ESTIMATOR_PRESETS = {
    "reinforce": ("reinforce", 1e-4),
    "ar": ("ar", 1e-4),
    "ars": ("ars", 1e-4),
    "reinforce_loo": ("reinforce_loo", 1e-4),
    "st_gumbel": ("st_gumbel_softmax", 1e-4),
    "gumbel": ("gumbel_softmax", 1e-4),
    "reinmax": ("reinmax", 1e-4),
    "relax": ("relax", 1e-4),
}
# ARSM's successors (issue 29): (estimator, learning rate, settings). The
# settings are listed so that --config.estimator_settings.<name>=... works.
_SUCCESSOR_PRESETS = {
    "carms": ("carms", 3e-4, {"num_samples": 4}),
    "disarm": ("disarm", 3e-4, {"num_pairs": 1}),
    "arsm_plus": ("arsm", 3e-4, {"partial_integration": True}),
}

# Presets (``configs/vae.py:<preset>``, ``arsm-jax --config=vae:<preset>``).
PRESETS = {
    "arsm_nonlinear": "ARSM, one-layer nonlinear VAE (the default)",
    "arsm_linear": "ARSM, linear VAE",
    "arsm_two_layer": "ARSM, two stochastic layers",
    **{name: f"{est}, learning rate {lr:g}"
       for name, (est, lr) in _ESTIMATOR_PRESETS.items()},
    "st_gumbel_learned": "st_gumbel with the temperature learned from 1.0",
    "tiny": "a few seconds on synthetic data (tests, smoke runs)",
}
PRESETS.update({
    name: f"{est}, learning rate {lr:g}, settings {settings} (ARSM's successor)"
    for name, (est, lr, settings) in _SUCCESSOR_PRESETS.items()})
PRESETS["reinforce_loo"] += ", 46 samples (ARSM's evaluations per image)"
PRESETS["relax"] += ", include_f=True (the paper's control variate)"


def get_config(preset: str = "arsm_nonlinear") -> ml_collections.ConfigDict:
  """Returns the VAE config for ``preset`` (see the module docstring)."""
  config = ml_collections.ConfigDict()
  config.experiment = "vae"

  # Data.
  # 'mnist', 'fashion_mnist' (TFDS) or 'synthetic' (tiny random images, tests).
  config.dataset = "mnist"
  # TFDS data folder; a relative path is tried against the current directory
  # and then the repository root. Defaults to $TFDS_DATA_DIR or ../shared/tfds.
  config.data_dir = os.environ.get("TFDS_DATA_DIR", "../shared/tfds")
  # Folder for a .npy copy of the decoded images ('' = ~/.cache/arsm_jax).
  config.cache_dir = ""
  # Keep a .npy copy of the decoded images (decode once per machine).
  config.cache_images = True
  # 'threshold' (pixel/255 > 0.5, fixed; the paper's) or 'dynamic'
  # (Bernoulli(pixel/255), redrawn each time a training image is used; the
  # validation and test sets are drawn once with a fixed key).
  config.binarization = "threshold"
  # num_validation training images validate (55k / 5k / 10k); which ones:
  # 'last' (the last ones in TFDS order) or 'paper' (the first ones of the
  # original MNIST file, the authors' split; its images are about 1.3 nats
  # easier: experiments/vae_split_check.py).
  config.num_validation = 5000
  config.validation_split = "last"
  # Only for dataset='synthetic': images per split and pixels per image.
  config.synthetic_sizes = (1000, 200, 200)
  config.synthetic_pixels = 784

  # Model.
  # 'linear', 'nonlinear' or 'two_layer' (see arsm_jax/models/vae.py).
  config.model = "nonlinear"
  # K, categorical latent variables per stochastic layer.
  config.num_latents = 20
  # C, categories of each latent variable.
  config.num_categories = 10
  # Hidden widths of the encoder and decoder MLPs (ignored by 'linear').
  config.encoder_hidden = (512, 256)
  config.decoder_hidden = (256, 512)
  # Kernel initialisation: 'lecun' (Flax's default) or 'glorot' (uniform,
  # TensorFlow's default, as in the authors' code).
  config.weight_init = "lecun"
  # Fix class 0's logit at 0 (C-1 free logits per variable, as the authors).
  config.pin_first_logit = False

  # Estimator.
  # Any registered name (python -c "import arsm_jax; print(
  # arsm_jax.estimators.names())"); relaxed ones train the decoder on the
  # relaxed sample, RELAX trains its control variate alongside.
  config.estimator = "arsm"
  # Keyword settings for estimators.get(estimator, **settings): one unset
  # (None) field per setting of any registered estimator, so that any of
  # them can be set (--config.estimator_settings.num_samples=4); unset ones
  # take the estimator's default, and a set one the estimator does not take
  # is an error listing those it does.
  config.estimator_settings = config_checks.estimator_settings_fields()
  # Draws of a multi-sample estimator (reinforce_loo, *_multi) that carry the
  # decoder's gradient; 0 = all of them. 1 gives the decoder the same
  # one-sample gradient ARSM gives it, at ARSM's cost per step.
  config.decoder_samples = 0
  # ARSM on the one-layer models (nonlinear, linear) only: the training step
  # evaluates the decoder once per distinct (image, pseudo latent) of the
  # batch (arsm_jax.batched), in one static buffer sized from the distinct
  # counts of a few batches at each epoch's start (batched.BufferSizer); a
  # batch that overflows it runs the plain evaluation. The numbers are those
  # of the plain step (every metrics row bit for bit on CPU: tests/
  # test_vae_dedup.py), only the cost changes, so a run may be resumed with
  # it switched. False by default: not yet checked on a GPU, where matrix
  # libraries may round a buffer of another size differently, and on an
  # untrained encoder almost every point is distinct (nothing to save).
  config.dedup = False
  # Learn the relaxation temperature with the model (gumbel_softmax,
  # st_gumbel_softmax), from estimator_settings.temperature (default 1.0).
  config.learn_temperature = False

  # Optimisation: Adam on the single-sample -ELBO.
  config.learning_rate = 3e-4
  config.batch_size = 200
  config.num_epochs = 100
  config.seed = 0
  # Devices for data parallelism over the batch (0 = all local devices);
  # batch_size must be divisible by it. See arsm_jax/parallel.py.
  config.num_devices = 1

  # Evaluation. Validation -ELBO every epoch; test -ELBO and the
  # iwae_samples-sample importance-weighted bound every test_every_epochs
  # epochs and after the last one.
  config.test_every_epochs = 5
  config.iwae_samples = 100
  # Images per evaluation call (single-sample ELBO / IWAE).
  config.eval_batch_size = 1000
  config.iwae_batch_size = 100
  # Variance of the encoder-logit gradient from variance_draws draws on the
  # first variance_batch_size training images, every variance_every_steps
  # steps (0 disables).
  config.variance_every_steps = 1375
  config.variance_draws = 16
  config.variance_batch_size = 100

  # Bookkeeping.
  # True: empty the workdir and start again; without it a rerun under a
  # different config is refused (the error names the differing fields).
  config.fresh = False
  # Orbax checkpoint every this many steps (and after the last step).
  config.checkpoint_every_steps = 1000
  config.max_checkpoints = 2
  # Seconds between progress lines (steps/s, ETA) in the log.
  config.progress_every_secs = 60.0

  if preset in ("", "arsm_nonlinear"):
    pass
  elif preset == "arsm_linear":
    config.model = "linear"
  elif preset == "arsm_two_layer":
    config.model = "two_layer"
  elif preset in _ESTIMATOR_PRESETS:
    config.estimator, config.learning_rate = _ESTIMATOR_PRESETS[preset]
    if preset == "reinforce_loo":
      c = config.num_categories
      config.estimator_settings.num_samples = c * (c - 1) // 2 + 1
    if preset == "relax":
      config.estimator_settings.include_f = True
  elif preset in _SUCCESSOR_PRESETS:
    config.estimator, config.learning_rate, settings = (
        _SUCCESSOR_PRESETS[preset])
    config.estimator_settings.update(settings)
  elif preset == "st_gumbel_learned":
    config.estimator, config.learning_rate = _ESTIMATOR_PRESETS["st_gumbel"]
    config.learn_temperature = True
  elif preset == "tiny":
    config.dataset = "synthetic"
    config.synthetic_sizes = (120, 40, 40)
    config.synthetic_pixels = 36
    config.num_latents = 3
    config.num_categories = 4
    config.encoder_hidden = (16,)
    config.decoder_hidden = (16,)
    config.batch_size = 20
    config.num_epochs = 2
    config.learning_rate = 3e-3
    config.test_every_epochs = 1
    config.iwae_samples = 8
    config.eval_batch_size = 32
    config.iwae_batch_size = 16
    config.variance_every_steps = 4
    config.variance_draws = 4
    config.variance_batch_size = 8
    config.checkpoint_every_steps = 5
    config.progress_every_secs = 0.0
  else:
    raise ValueError(f"Unknown vae preset {preset!r}; known: "
                     f"{', '.join(PRESETS)}.")
  # Locked: a mistyped field (config.num_epoch = 3) is an error naming it
  # and its close matches, as on the command line.
  return config.lock()

