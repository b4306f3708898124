r"""Categorical VAE on binarised MNIST (poster figure 2), with any estimator.

The objectives (the one- and two-layer single-sample ELBO surrogates, for
any estimator) live in :mod:`arsm_jax.objectives.vae`; this module holds the
config checks, train state and step, data, checkpoints, loop and summary.

Per epoch: mean training -ELBO over the epoch's steps (evaluated at hard
samples, also for relaxed estimators) and single-sample validation -ELBO.
Every ``test_every_epochs`` epochs and at the end: single-sample test -ELBO
and the ``iwae_samples``-sample importance-weighted bound
:math:`-\log \frac1S\sum_s p(x, z_s)/q(z_s|x)` (in nats, higher is worse).
Every ``variance_every_steps`` steps: the variance of the gradient w.r.t. the
encoder logits over ``variance_draws`` draws on a fixed batch, averaged over
images and coordinates.

``config.dedup`` (ARSM, one-layer models): the training step evaluates the
decoder once per distinct (image, pseudo latent) of the batch
(:mod:`arsm_jax.batched`), in a buffer sized at each epoch's start from the
distinct points of a few batches (:class:`_DedupBuffer`); the numbers are
those of the plain step, only its cost changes.

Outputs in ``workdir``: ``metrics.jsonl`` + TensorBoard events,
``checkpoints/`` (orbax), ``config.json`` and ``summary.json``. The run's
lifecycle is :mod:`arsm_jax.runs`: a rerun of the same command resumes from
the newest readable checkpoint (a damaged one is reported and skipped), cuts
the metrics back to it and finishes with the same numbers as an
uninterrupted run. Only the fields in ``_RESUMABLE_FIELDS`` may change on
resumption; another config is refused, naming the differing fields, unless
``config.fresh`` is set (then the workdir is emptied and the run starts
again). A finished run rerun with a smaller ``num_epochs`` is refused.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Optional

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from arsm_jax import batched
from arsm_jax import config_checks as checks
from arsm_jax import data as data_lib
from arsm_jax import estimators
from arsm_jax import parallel
from arsm_jax import runs
from arsm_jax import writers
from arsm_jax.models import vae as vae_models
from arsm_jax.objectives.vae import Objective
from arsm_jax.objectives.vae import check_estimator
from arsm_jax.objectives.vae import evals_per_image
from arsm_jax.objectives.vae import has_learned_temperature
from arsm_jax.objectives.vae import init_estimator_state
from arsm_jax.objectives.vae import learned_temperature
from arsm_jax.objectives.vae import make_objective

Array = jax.Array

DATASETS = data_lib.DATASETS + ("synthetic",)
# Fields that may differ between a run and its resumption.
_RESUMABLE_FIELDS = ("num_epochs", "data_dir", "cache_dir", "cache_images",
                     "progress_every_secs", "checkpoint_every_steps",
                     "max_checkpoints", "num_devices", "dedup")
# config.dedup: batches whose distinct ARSM points are counted at each
# epoch's start (and on resumption) to size the buffer, and how many recent
# counts the size covers (BufferSizer's window).
_DEDUP_PROBE_BATCHES = 4
_DEDUP_WINDOW = 5 * _DEDUP_PROBE_BATCHES
# Largest C**K the 'exact' estimator is allowed to enumerate per image.
_MAX_EXACT_STATES = 4096


# ----------------------------------------------------------------------------
# Config validation (runs before any data loading or compilation).


def validate_config(config) -> estimators.Estimator:
  """Checks every field; returns the estimator. Raises ``ValueError``.

  Nothing is loaded or compiled, so a bad config fails in milliseconds.
  """
  checks.choice(config, "dataset", DATASETS)
  checks.choice(config, "binarization", data_lib.BINARIZATIONS)
  checks.choice(config, "validation_split", data_lib.VALIDATION_SPLITS)
  checks.choice(config, "model", vae_models.MODELS)
  for field in ("num_latents", "batch_size", "num_epochs", "eval_batch_size",
                "iwae_samples", "iwae_batch_size", "test_every_epochs",
                "variance_batch_size", "num_validation", "max_checkpoints"):
    checks.integer(config, field, low=1)
  for field in ("variance_every_steps", "checkpoint_every_steps", "seed",
                "num_devices", "decoder_samples"):
    checks.integer(config, field, low=0)
  available = jax.device_count()
  if config.num_devices > available:
    raise ValueError(
        f"config.num_devices={config.num_devices}, but JAX sees only "
        f"{available} device{'s' if available > 1 else ''} "
        f"({jax.devices()[0].platform}); use 0 (every device) or at most "
        f"{available}.")
  num_devices = config.num_devices or jax.device_count()
  if config.batch_size % num_devices:
    raise checks.fail("batch_size", config.batch_size,
                      f"divisible by the number of devices ({num_devices}; "
                      f"config.num_devices={config.num_devices})")
  checks.integer(config, "num_categories", low=2)
  if config.variance_every_steps:
    checks.integer(config, "variance_draws", low=2)
  checks.widths(config, "encoder_hidden")
  checks.widths(config, "decoder_hidden")
  checks.positive_number(config, "learning_rate")
  checks.non_negative_number(config, "progress_every_secs")
  if config.dataset == "synthetic":
    sizes = tuple(config.synthetic_sizes)
    if len(sizes) != 3 or any(not isinstance(s, int) or s < 1 for s in sizes):
      raise checks.fail("synthetic_sizes", sizes, "three positive ints "
                        "(train, validation, test)")
    checks.integer(config, "synthetic_pixels", low=1)
    if config.validation_split != "last":
      # Its validation images are drawn as such (synthetic_sizes); there is
      # no original file order to split.
      raise ValueError(
          f"config.validation_split={config.validation_split!r} applies to "
          f"the TFDS datasets ({', '.join(data_lib.DATASETS)}); "
          "dataset='synthetic' draws its own validation images "
          "(config.synthetic_sizes). Leave validation_split='last' (the "
          "default) or choose a TFDS dataset.")

  checks.choice(config, "estimator", estimators.names(), label="registered")
  try:
    est = estimators.get(config.estimator, **_estimator_settings(config))
  except ValueError as e:
    raise ValueError(f"{e} (config.estimator_settings)") from None
  _check_step_memory(config, est, num_devices)
  if (config.estimator == "exact"
      and config.num_categories**config.num_latents > _MAX_EXACT_STATES):
    raise ValueError(
        f"estimator 'exact' would enumerate C**K = {config.num_categories}**"
        f"{config.num_latents} latent vectors per image; allowed up to "
        f"{_MAX_EXACT_STATES}.")
  vae_models.check_weight_init(config.weight_init)
  checks.boolean(config, "pin_first_logit")
  checks.boolean(config, "learn_temperature")
  check_estimator(config.model, est, config.learn_temperature)
  if checks.boolean(config, "dedup") and (
      config.estimator != "arsm" or config.model == "two_layer"):
    raise ValueError(
        "config.dedup=True applies to estimator 'arsm' on the one-layer "
        "models (nonlinear, linear); got estimator "
        f"{config.estimator!r}, model {config.model!r}.")
  return est


def _check_step_memory(config, est, num_devices: int) -> None:
  """Refuses a sample count whose training step cannot fit in memory.

  ``reinforce_loo`` runs the decoder on each of its ``num_samples`` samples
  of every image at once, and ``gumbel_rao`` holds ``num_samples``
  relaxations ``[K, C]`` of every image: a lower bound of a device's share
  of a step above its memory is refused before anything is loaded.
  """
  if est.name not in ("reinforce_loo", "gumbel_rao"):
    return
  num = est.kwargs.get("num_samples",
                       estimators.info()[est.name].settings["num_samples"])
  images = -(-config.batch_size // num_devices)
  latent = config.num_latents * config.num_categories
  if est.name == "reinforce_loo":
    # float32 pixel logits and hidden units of the decoder, forward and
    # backward, and the sample's one-hots and scores.
    width = _num_pixels(config) + sum(checks.widths(config, "decoder_hidden"))
    each = images * 4 * (2 * width + 2 * latent)
  else:
    each = images * 4 * 4 * latent
  estimators.validation.check_memory(
      f"estimator {est.name!r}", "config.estimator_settings.num_samples", num,
      each, f"one training step ({images} images on each of {num_devices} "
      "device(s))")


def _estimator_settings(config) -> dict[str, Any]:
  """The estimator settings the config sets (unset fields are left out)."""
  return checks.estimator_settings(config.estimator_settings)


def _config_json(config) -> dict[str, Any]:
  """:func:`runs.config_json` with only the estimator settings that are set.

  (The unset ones are the estimator's defaults: a config.json saved before
  every setting was declared in the config stays the same run.)
  """
  out = runs.config_json(config)
  out["estimator_settings"] = runs.config_json(_estimator_settings(config))
  return out


# ----------------------------------------------------------------------------
# Training state and steps.


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs.

  Attributes:
    step: number of optimiser steps taken.
    params: model parameters.
    opt_state: Adam state.
    est_state: the estimator's state (RELAX's control variate), or None.
    epoch_sum: sum of training -ELBO over the current epoch's images.
    epoch_count: number of images in that sum.
  """

  step: Array
  params: Any
  opt_state: Any
  est_state: Any
  epoch_sum: Array
  epoch_count: Array


def _build(config, est):
  model = vae_models.make_model(
      config.model, config.num_latents, config.num_categories,
      _num_pixels(config), checks.widths(config, "encoder_hidden"),
      checks.widths(config, "decoder_hidden"), weight_init=config.weight_init,
      pin_first_logit=config.pin_first_logit,
      learned_temperature=(est.kwargs.get("temperature", 1.0)
                           if config.learn_temperature else None))
  objective = make_objective(model, est, int(config.decoder_samples))
  tx = optax.adam(config.learning_rate)
  return model, objective, tx


def _num_pixels(config) -> int:
  if config.dataset == "synthetic":
    return int(config.synthetic_pixels)
  return data_lib.NUM_PIXELS


def init_state(config, model, tx, est, key) -> TrainState:
  k_params, k_est = jax.random.split(key)
  x = jnp.zeros((1, _num_pixels(config)), jnp.float32)
  z = jnp.zeros((1, config.num_latents, config.num_categories), jnp.float32)
  params = model.init(k_params, x, z)
  est_state = init_estimator_state(model, est, k_est)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), est_state=est_state,
                    epoch_sum=jnp.zeros((), jnp.float32),
                    epoch_count=jnp.zeros((), jnp.int32))


def make_train_step(objective: Objective, tx, binarization: str, base_key,
                    batch_sharding=None):
  """``train_step(state, images uint8 [N, D], idx [B]) -> state`` (jitted).

  ``idx=None`` means ``images`` is the batch itself (``[B, D]``): several
  processes pass a global batch built from each one's rows
  (:meth:`arsm_jax.parallel.DataParallel.global_batch`).

  The step's randomness is ``fold_in(base_key, state.step)``, so a resumed run
  draws exactly what an uninterrupted one would. With ``batch_sharding`` (see
  ``arsm_jax.parallel``) the batch is split over devices and XLA partitions
  the step (data parallelism); the parameters stay replicated.
  """

  @jax.jit
  def train_step(state: TrainState, images: Array, idx: Array) -> TrainState:
    key = jax.random.fold_in(base_key, state.step)
    k_bin, k_loss = jax.random.split(key)
    raw = images if idx is None else images[idx]
    x = data_lib.binarize(raw, binarization, k_bin)  # [B, D]
    if batch_sharding is not None:
      x = jax.lax.with_sharding_constraint(x, batch_sharding)
    grads, (train, est_state) = jax.grad(objective.loss, has_aux=True)(
        state.params, k_loss, x, state.est_state)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(
        step=state.step + 1, params=params, opt_state=opt_state,
        est_state=est_state, epoch_sum=state.epoch_sum + jnp.sum(train),
        epoch_count=state.epoch_count + train.shape[0])

  return train_step


def _pad_batches(x: np.ndarray, batch: int):
  """Yields ``(padded_batch, n_valid)`` covering x in order."""
  for sl in data_lib.batches(len(x), batch):
    chunk = x[sl]
    n = len(chunk)
    if n < batch:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
    yield chunk, n


def make_evaluator(objective: Objective, iwae_samples: int):
  """Jitted ``neg_elbo(params, key, x) -> [B]`` and ``neg_iwae(...) -> [B]``."""

  @jax.jit
  def neg_elbo(params, key, x):
    return objective.neg_elbo(params, key, x)

  @jax.jit
  def neg_iwae(params, key, x):
    log_w = objective.log_weights(params, key, x, iwae_samples)  # [S, B]
    return -(jax.nn.logsumexp(log_w, axis=0) - math.log(iwae_samples))

  return neg_elbo, neg_iwae


def evaluate(fn, params, key, x: np.ndarray, batch: int) -> float:
  """Mean of ``fn(params, key_i, batch_i)`` over all images of x."""
  total, count = 0.0, 0
  for i, (chunk, n) in enumerate(_pad_batches(x, batch)):
    vals = np.asarray(fn(params, jax.random.fold_in(key, i), chunk))[:n]
    total += float(np.sum(vals, dtype=np.float64))
    count += n
  return total / count


def make_variance_fn(objective: Objective, draws: int):
  """Jitted variance of the logit gradient, averaged over images and logits."""

  @jax.jit
  def variance(params, est_state, key, x):
    grads = jax.vmap(lambda k: objective.logit_grads(params, k, x, est_state))(
        jax.random.split(key, draws))                       # [D, B, K, C]
    return jnp.mean(jnp.var(grads, axis=0, ddof=1))

  return variance


# ----------------------------------------------------------------------------
# Data, checkpoints, bookkeeping.


def load_data(config) -> dict[str, np.ndarray]:
  if config.dataset == "synthetic":
    return data_lib.synthetic(tuple(int(s) for s in config.synthetic_sizes),
                              int(config.synthetic_pixels), seed=config.seed)
  return data_lib.load(config.dataset, config.data_dir,
                       config.cache_dir if config.cache_images else None,
                       config.num_validation, config.validation_split)


# Fields added after runs were already being saved, with the value that
# reproduces what those runs did: a saved config without them means these.
_ADDED_FIELDS = {"validation_split": "last", "decoder_samples": 0,
                 "weight_init": "lecun", "pin_first_logit": False,
                 "learn_temperature": False}


def _check_resumable(config, workdir: str, restored_step: int,
                     num_steps: int, steps_per_epoch: int) -> None:
  """Refuses a run that already went further than ``config`` asks."""
  if restored_step <= num_steps:
    return
  epochs = restored_step / steps_per_epoch
  raise ValueError(
      f"{workdir} holds a vae run trained to step {restored_step} "
      f"({epochs:g} epochs), beyond the {num_steps} steps of "
      f"config.num_epochs={config.num_epochs}. Rerun with num_epochs >= "
      f"{math.ceil(epochs)} to report (or continue) it, use a new workdir, or "
      "set config.fresh=True to start again.")


# ----------------------------------------------------------------------------
# The loop.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       splits: Optional[dict[str, np.ndarray]] = None
                       ) -> dict[str, Any]:
  """Trains the VAE of ``config`` in ``workdir`` (resuming if possible).

  ``splits`` (``{'train', 'validation', 'test'}`` ``uint8 [n, D]`` arrays)
  replaces the images ``config`` names, for experiments on other subsets.

  Returns:
    The summary also written to ``workdir/summary.json``.
  """
  est = validate_config(config)
  with runs.lock_workdir(workdir, what="vae run"):
    return _train_and_evaluate(config, workdir, splits, est)


def _train_and_evaluate(config, workdir, splits, est) -> dict[str, Any]:
  """:func:`train_and_evaluate` once it holds the workdir."""
  current = _config_json(config)
  main = parallel.is_main_process()
  # Several processes: process 0 alone checks (and, fresh, empties) the
  # workdir and writes files; the others wait for it at each barrier.
  if main:
    runs.check_config(workdir, current, resumable=_RESUMABLE_FIELDS,
                      fresh=runs.wants_fresh(config),
                      added_fields=_ADDED_FIELDS, what="vae run")
  parallel.barrier("vae/check_config")
  t_start = time.time()
  if splits is None:
    splits = load_data(config)
  num_train = len(splits["train"])
  if config.batch_size > num_train:
    raise ValueError(f"config.batch_size ({config.batch_size}) exceeds the "
                     f"{num_train} training images.")
  if config.variance_batch_size > num_train:
    raise ValueError(
        f"config.variance_batch_size ({config.variance_batch_size}) exceeds "
        f"the {num_train} training images.")
  steps_per_epoch = num_train // config.batch_size
  num_steps = steps_per_epoch * config.num_epochs
  logging.info("vae: %d/%d/%d images loaded in %.1fs; %d steps per epoch.",
               num_train, len(splits["validation"]), len(splits["test"]),
               time.time() - t_start, steps_per_epoch)

  root = jax.random.PRNGKey(config.seed)
  k_init, k_train, k_data, k_eval, k_var, k_evalbin = jax.random.split(root, 6)
  model, objective, tx = _build(config, est)
  state = init_state(config, model, tx, est, k_init)
  dp = parallel.DataParallel(config.num_devices)
  if dp.multi_process:
    # Restored straight onto the global mesh (orbax reads collectively).
    state = dp.replicate(state)

  checkpoints = runs.Checkpoints(workdir, config.max_checkpoints, name="vae")
  state, start_step = checkpoints.restore(state)
  _check_resumable(config, workdir, start_step, num_steps, steps_per_epoch)
  if main:
    runs.save_config(workdir, current)
    runs.truncate_metrics(workdir, start_step)
  parallel.barrier("vae/truncate_metrics")

  state = dp.replicate(state)
  if dp.multi_process:
    # Each process puts only its rows of every batch on its own devices.
    rows = dp.local_rows(config.batch_size)
    train_images = None
    logging.info("vae: process %d of %d feeds rows %d:%d of every batch of "
                 "%d to its %d devices (the mesh has %d).",
                 jax.process_index(), jax.process_count(), rows.start,
                 rows.stop, config.batch_size, jax.local_device_count(),
                 dp.num_devices)
  else:
    train_images = dp.replicate(jnp.asarray(splits["train"]))
  # Validation and test sets are binarised once (dynamic: with a fixed key).
  valid = np.asarray(data_lib.binarize(
      splits["validation"], config.binarization,
      jax.random.fold_in(k_evalbin, 0)))
  test = np.asarray(data_lib.binarize(
      splits["test"], config.binarization, jax.random.fold_in(k_evalbin, 1)))
  var_x = data_lib.binarize(splits["train"][:config.variance_batch_size],
                            config.binarization,
                            jax.random.fold_in(k_evalbin, 2))

  def build_train_step(dedup_buffer: Optional[int] = None):
    loss_objective = objective if dedup_buffer is None else make_objective(
        model, est, int(config.decoder_samples), dedup_buffer)
    return make_train_step(loss_objective, tx, config.binarization, k_train,
                           batch_sharding=dp.batch_sharding)

  train_step = build_train_step()
  dedup = _DedupBuffer(config, model) if config.dedup else None
  neg_elbo_fn, neg_iwae_fn = make_evaluator(objective, config.iwae_samples)
  variance_fn = make_variance_fn(objective, config.variance_draws)
  evals = evals_per_image(est, config.num_latents, config.num_categories,
                          config.model)

  writer = writers.MetricWriter(workdir) if main else writers.NullWriter()
  progress = writers.ProgressReporter(num_steps, config.progress_every_secs,
                                      name=f"vae/{est.name}",
                                      first_step=start_step)
  last = {}
  if start_step:
    last = _last_metrics(workdir)

  def run_valid(epoch: int) -> float:
    return evaluate(neg_elbo_fn, parallel.local_tree(state.params),
                    jax.random.fold_in(k_eval, 2 * epoch), valid,
                    config.eval_batch_size)

  def run_test(epoch: int) -> dict[str, float]:
    key = jax.random.fold_in(k_eval, 2 * epoch + 1)
    params = parallel.local_tree(state.params)
    return {
        "test_neg_elbo": evaluate(neg_elbo_fn, params, key, test,
                                  config.eval_batch_size),
        "test_neg_iwae": evaluate(neg_iwae_fn, params,
                                  jax.random.fold_in(key, 10**6), test,
                                  config.iwae_batch_size),
    }

  perm = None
  t_loop = time.time()
  try:
    for step in range(start_step, num_steps):
      epoch, pos = divmod(step, steps_per_epoch)
      if perm is None or pos == 0:
        perm = data_lib.epoch_permutation(k_data, epoch, num_train)
        if dedup is not None and dedup.update(
            parallel.local_tree(state.params), splits["train"],
            np.asarray(perm), jax.random.fold_in(k_var, 10**6 + epoch)):
          train_step = build_train_step(dedup.buffer)
      idx = perm[pos * config.batch_size:(pos + 1) * config.batch_size]
      if dp.multi_process:
        local_x = splits["train"][np.asarray(idx)[rows]]   # [B / P, D]
        state = train_step(state, dp.global_batch(local_x, config.batch_size),
                           None)
      else:
        state = train_step(state, train_images, idx)
      done = step + 1
      progress(done, last or None)

      if (config.variance_every_steps
          and done % config.variance_every_steps == 0):
        var = variance_fn(parallel.local_tree(state.params),
                          parallel.local_tree(state.est_state),
                          jax.random.fold_in(k_var, done), var_x)
        writer.write_scalars(done, {"grad_variance": float(var)})

      if done % steps_per_epoch == 0:
        epoch_done = done // steps_per_epoch
        train_value = (float(parallel.local(state.epoch_sum))
                       / max(int(parallel.local(state.epoch_count)), 1))
        zeros = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        if dp.multi_process:   # orbax saves only global arrays
          # (from host values: a device_put of jax arrays to a mesh of one
          # device per process gives arrays orbax cannot serialise)
          zeros = dp.replicate((np.zeros((), np.float32),
                                np.zeros((), np.int32)))
        state = state.replace(epoch_sum=zeros[0], epoch_count=zeros[1])
        metrics = {"epoch": epoch_done, "train_neg_elbo": train_value,
                   "valid_neg_elbo": run_valid(epoch_done)}
        if has_learned_temperature(model):
          metrics["temperature"] = float(learned_temperature(
              model, parallel.local_tree(state.params)))
        if (epoch_done % config.test_every_epochs == 0
            or epoch_done == config.num_epochs):
          metrics.update(run_test(epoch_done))
        writer.write_scalars(done, metrics)
        last = {k: v for k, v in metrics.items() if k != "epoch"}
        logging.info("vae/%s: epoch %d step %d %s", est.name, epoch_done,
                     done, " ".join(f"{k}={v:.3f}" for k, v in last.items()))

      if ((config.checkpoint_every_steps
           and done % config.checkpoint_every_steps == 0)
          or done == num_steps):
        writer.flush()   # every row up to this step is on disk before it
        checkpoints.save(done, state)
  finally:
    # Also on an interrupt: finish the checkpoint in flight, flush metrics.
    checkpoints.close()
    writer.close()
  loop_seconds = time.time() - t_loop
  progress(num_steps, last or None, force=True)

  summary = _summary(config, est, workdir, evals, num_steps, steps_per_epoch,
                     start_step, loop_seconds)
  if main:
    writers.write_json(os.path.join(workdir, "summary.json"), summary)
  parallel.barrier("vae/summary")
  return summary


class _DedupBuffer:
  """The buffer of ``config.dedup``: sized from a few probe batches per epoch.

  At each epoch's start (and on resumption) :meth:`update` counts the
  distinct ARSM points of the epoch's first ``_DEDUP_PROBE_BATCHES`` batches
  at the current parameters (encoder forward and pseudo actions only, with
  keys of their own) and gives the totals to a
  :class:`~arsm_jax.batched.BufferSizer`. Its size is ``buffer``: ``None``
  (the plain step) while deduplicating would save too little, else the
  static buffer of the step. The counts only choose the size: a batch with
  more distinct points than the buffer runs the plain evaluation, so the
  training numbers never depend on them. They depend only on the parameters
  and fixed keys, so several processes choose the same size.
  """

  def __init__(self, config, model):
    self.batch_size = int(config.batch_size)
    self.binarization = config.binarization
    self.num_points = self.batch_size * batched.num_points(
        config.num_latents, config.num_categories)
    self.sizer = batched.BufferSizer(self.num_points, window=_DEDUP_WINDOW)
    self.buffer: Optional[int] = None

    @jax.jit
    def count(params, raw, key):
      k_bin, k_pts = jax.random.split(key)
      x = data_lib.binarize(raw, self.binarization, k_bin)
      logits = model.apply(params, x, method=model.encode)    # [B, K, C]
      return jnp.sum(batched.count_distinct(k_pts, logits))

    self._count = count

  def update(self, params, images: np.ndarray, perm: np.ndarray,
             key) -> bool:
    """Counts the probe batches; returns whether ``buffer`` changed."""
    b = self.batch_size
    num = min(_DEDUP_PROBE_BATCHES, len(perm) // b)
    for i in range(num):
      raw = images[perm[i * b:(i + 1) * b]]                 # [B, D]
      self.sizer.observe(self._count(params, raw, jax.random.fold_in(key, i)))
    size = self.sizer.size
    new = None if size >= self.num_points else size
    if new == self.buffer:
      return False
    logging.info("vae: dedup buffer %s -> %s of %d points per batch "
                 "(largest recent count %d)",
                 self.buffer or "plain", new or "plain", self.num_points,
                 self.sizer.largest)
    self.buffer = new
    return True


def _last_metrics(workdir: str) -> dict[str, float]:
  epochs = [r for r in runs.read_rows(workdir) if "valid_neg_elbo" in r]
  if not epochs:
    return {}
  return {k: v for k, v in epochs[-1].items() if k not in ("step", "epoch")}


def _splits_text(config) -> str:
  if config.dataset == "synthetic":
    return "synthetic"
  which = {"last": "the last {n} of TFDS train validate",
           "paper": "the first {n} of the original train file validate, as "
                    "in TensorFlow's read_data_sets"}[config.validation_split]
  return which.format(n=config.num_validation) + "; the test split tests"


def _summary(config, est, workdir, evals, num_steps, steps_per_epoch,
             start_step, loop_seconds) -> dict[str, Any]:
  rows = runs.read_rows(workdir)
  epochs = [r for r in rows if "valid_neg_elbo" in r]
  tests = [r for r in rows if "test_neg_elbo" in r]
  variances = [r["grad_variance"] for r in rows if "grad_variance" in r]
  best = min(epochs, key=lambda r: r["valid_neg_elbo"]) if epochs else {}
  final = epochs[-1] if epochs else {}
  final_test = tests[-1] if tests else {}
  temperatures = [r["temperature"] for r in rows if "temperature" in r]
  steps_run = num_steps - start_step
  return {
      "estimator": est.name,
      "estimator_settings": _estimator_settings(config),
      "model": config.model,
      "num_latents": config.num_latents,
      "num_categories": config.num_categories,
      "dataset": config.dataset,
      "binarization": config.binarization,
      "splits": _splits_text(config),
      "batch_size": config.batch_size,
      "learning_rate": config.learning_rate,
      "optimizer": "adam",
      "num_epochs": config.num_epochs,
      "num_steps": num_steps,
      "steps_per_epoch": steps_per_epoch,
      "evals_per_image_per_step": evals,
      "evals_counted_over_layers": True,
      "decoder_evals_per_step": evals * config.batch_size,
      "bounds": {
          "train_neg_elbo": "single-sample -ELBO, mean over the epoch's "
                            "steps (hard samples)",
          "valid_neg_elbo": "single-sample -ELBO, one z per image",
          "test_neg_elbo": "single-sample -ELBO, one z per image",
          "test_neg_iwae": f"-log p(x) bound from {config.iwae_samples} "
                           "importance samples from q",
      },
      "final_epoch": final.get("epoch"),
      "final_train_neg_elbo": final.get("train_neg_elbo"),
      "final_valid_neg_elbo": final.get("valid_neg_elbo"),
      "best_valid_neg_elbo": best.get("valid_neg_elbo"),
      "best_valid_epoch": best.get("epoch"),
      "final_test_neg_elbo": final_test.get("test_neg_elbo"),
      "final_test_neg_iwae": final_test.get("test_neg_iwae"),
      "final_grad_variance": variances[-1] if variances else None,
      "final_temperature": temperatures[-1] if temperatures else None,
      "seconds_this_session": loop_seconds,
      "seconds_per_step_this_session": (loop_seconds / steps_run
                                        if steps_run else None),
      "seed": config.seed,
      "dedup": bool(config.dedup),
      "config": runs.identity(_config_json(config), _RESUMABLE_FIELDS),
  }
