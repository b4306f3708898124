r"""Toy problem of Yin, Yue and Zhou (2019), poster figure 1.

Maximise E_{z ~ Cat(softmax(phi))}[f(z)], f(z) = 0.5 + z / (C R), z in 1..C,
by gradient ascent from phi = 0, one draw per iteration, for each estimator.
The optimum is 0.5 + 1/R (0.5333 at R = 30), at softmax(phi) = (0, ..., 0, 1).

    python experiments/main.py --config=configs/toy.py --workdir=runs/toy

runs 8 estimators x 5,000 iterations, plus 50 variance measurements of 100
draws each, in a few minutes on 2 CPU cores (RELAX, which trains its control
variate with second derivatives, is the slowest). Presets:
``configs/toy.py:quick`` (500 iterations, for a smoke test).
"""

import ml_collections

# Presets (``configs/toy.py:<preset>``, ``arsm-jax --config=toy:<preset>``).
PRESETS = {
    "": "the poster's setting: 8 estimators x 5,000 iterations",
    "quick": "500 iterations, a smoke test",
}


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "toy"
  # Number of categories C.
  config.num_categories = 30
  # R in f(z) = 0.5 + z / (C R); the optimum is 0.5 + 1 / R.
  config.reward_scale = 30.0
  # Gradient-ascent iterations, one estimator draw each.
  config.num_iterations = 5000
  # Step size of plain gradient ascent on phi.
  config.learning_rate = 1.0
  # Per-estimator step sizes overriding learning_rate (name -> value); RELAX
  # uses 0.5 for phi, as in the authors' code.
  config.learning_rates = ml_collections.ConfigDict({"relax": 0.5})
  # Comma-separated registered estimator names, run one after the other: the
  # poster's columns plus REINFORCE with a leave-one-out baseline.
  config.estimators = ("exact,reinforce,reinforce_loo,ar,ars,arsm,"
                       "gumbel_softmax,relax")
  # Per-estimator settings passed to estimators.get(name, **settings).
  config.estimator_settings = ml_collections.ConfigDict({
      # Gumbel-Softmax at temperature 0.2, as on the poster.
      "gumbel_softmax": {"temperature": 0.2},
      # RELAX control variate: MLP C-10-10-1 on the relaxed sample, trained
      # by Adam with step 1e-3 (the authors' 30-10-10-1 at C = 30).
      "relax": {"hidden_sizes": (10, 10), "cv_learning_rate": 1e-3},
      # Two draws, each the other's baseline (2 evaluations per iteration).
      "reinforce_loo": {"num_samples": 2},
      # One draw at a time: evaluate only f(z) when every swap returns z.
      "arsm": {"skip_if_all_equal": True},
  })
  # Measure gradient variance every this many iterations...
  config.variance_every = 100
  # ...from this many independent draws at the current phi.
  config.variance_draws = 100
  # Seed; each estimator's run uses the same one.
  config.seed = 0
  # Draw toy.png at the end.
  config.plot = True
  # True: delete the saved results of the estimators being run and run them
  # again; without it a rerun under a different config is refused.
  config.fresh = False

  if preset == "quick":
    config.num_iterations = 500
  elif preset:
    raise ValueError(f"Unknown toy preset {preset!r}; known: "
                     f"{', '.join(p for p in PRESETS if p)}.")
  # Locked: a mistyped field (config.num_iteration = 5) is an error naming it
  # and its close matches, as on the command line. The two maps keyed by
  # estimator name stay open for other estimators (validate_config checks
  # their keys; each estimator's settings are checked by estimators.get).
  config.lock()
  config.learning_rates.unlock()
  config.estimator_settings.unlock()
  return config
