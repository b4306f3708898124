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
distinct points of a few batches (:class:`arsm_jax.batched.ProbedBuffer`);
the numbers are those of the plain step, only its cost changes.

Outputs in ``workdir``: ``metrics.jsonl`` + TensorBoard events,
``checkpoints/`` (orbax), ``config.json`` and ``summary.json``. The run's
lifecycle is :mod:`arsm_jax.runs`: a rerun of the same command resumes from
the newest readable checkpoint (a damaged one is reported and skipped), cuts
the metrics back to it and finishes with the same numbers as an
uninterrupted run. Only the fields in ``vae_checks.RESUMABLE_FIELDS`` may
change on resumption; another config is refused, naming the differing fields, unless
``config.fresh`` is set (then the workdir is emptied and the run starts
again). A finished run rerun with a smaller ``num_epochs`` is refused.
"""

from __future__ import annotations

import functools
import math
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
from arsm_jax import parallel
from arsm_jax import runs
from arsm_jax import writers
from arsm_jax.models import vae as vae_models
from arsm_jax.objectives.vae import Objective
from arsm_jax.objectives.vae import evals_per_image
from arsm_jax.objectives.vae import has_learned_temperature
from arsm_jax.objectives.vae import init_estimator_state
from arsm_jax.objectives.vae import learned_temperature
from arsm_jax.objectives.vae import make_objective
from arsm_jax.tasks import vae_checks
from arsm_jax.tasks import vae_data
from arsm_jax.tasks.vae_checks import validate_config

Array = jax.Array

# config.dedup: batches whose distinct ARSM points are counted at each
# epoch's start (and on resumption) to size the buffer.
_DEDUP_PROBE_BATCHES = 4


# ----------------------------------------------------------------------------
# Model, train state and the jitted steps.


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs of the model.

  Attributes:
    step: number of optimiser steps taken.
    params: model parameters (the learned temperature, if any, among them).
    opt_state: Adam state.
    est_state: the estimator's state (RELAX's control variate), or None.
  """

  step: Array
  params: Any
  opt_state: Any
  est_state: Any


def _build(config, est):
  """The model, its objective under ``est`` and the optimiser."""
  model = vae_models.make_model(
      config.model, config.num_latents, config.num_categories,
      vae_checks.num_pixels(config), checks.widths(config, "encoder_hidden"),
      checks.widths(config, "decoder_hidden"), weight_init=config.weight_init,
      pin_first_logit=config.pin_first_logit,
      learned_temperature=(est.kwargs.get("temperature", 1.0)
                           if config.learn_temperature else None))
  objective = make_objective(model, est, int(config.decoder_samples))
  return model, objective, optax.adam(config.learning_rate)


def init_state(config, model, tx, est, key) -> TrainState:
  k_params, k_est = jax.random.split(key)
  x = jnp.zeros((1, vae_checks.num_pixels(config)), jnp.float32)
  z = jnp.zeros((1, config.num_latents, config.num_categories), jnp.float32)
  params = model.init(k_params, x, z)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params),
                    est_state=init_estimator_state(model, est, k_est))


def train_step(state: TrainState, images: Array, idx: Optional[Array],
               base_key: Array, *, objective: Objective, tx,
               binarization: str, batch_sharding=None
               ) -> tuple[TrainState, Array]:
  """One optimiser step on the batch ``images[idx]`` (jit it with
  :func:`make_train_step`).

  The step's randomness is ``fold_in(base_key, state.step)``, so a resumed
  run draws exactly what an uninterrupted one would. ``idx=None`` means
  ``images`` is the batch itself (several processes pass a global batch,
  :meth:`arsm_jax.parallel.DataParallel.global_batch`). With
  ``batch_sharding`` the batch is split over devices and XLA partitions the
  step; the parameters stay replicated.

  Returns:
    The new state and the batch's summed training -ELBO (hard samples).
  """
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
  return state.replace(step=state.step + 1, params=params,
                       opt_state=opt_state, est_state=est_state), jnp.sum(train)


def make_train_step(objective: Objective, tx, binarization: str, base_key,
                    batch_sharding=None):
  """:func:`train_step`, jitted: ``step(state, images, idx) -> (state, sum)``."""
  return jax.jit(functools.partial(
      train_step, base_key=base_key, objective=objective, tx=tx,
      binarization=binarization, batch_sharding=batch_sharding))


@functools.partial(jax.jit, static_argnames=("objective",))
def eval_step(params, key: Array, x: Array, *, objective: Objective) -> Array:
  """Single-sample -ELBO of each image, ``[B]``."""
  return objective.neg_elbo(params, key, x)


@functools.partial(jax.jit, static_argnames=("objective", "num_samples"))
def iwae_step(params, key: Array, x: Array, *, objective: Objective,
              num_samples: int) -> Array:
  """The ``num_samples``-sample importance-weighted -log p(x) bound, ``[B]``."""
  log_w = objective.log_weights(params, key, x, num_samples)  # [S, B]
  return -(jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples))


@functools.partial(jax.jit, static_argnames=("objective", "draws"))
def variance_step(params, est_state, key: Array, x: Array, *,
                  objective: Objective, draws: int) -> Array:
  """Variance of the logit gradient over draws, mean over images and logits."""
  grads = jax.vmap(lambda k: objective.logit_grads(params, k, x, est_state))(
      jax.random.split(key, draws))                         # [D, B, K, C]
  return jnp.mean(jnp.var(grads, axis=0, ddof=1))


def evaluate(fn, params, key, x: np.ndarray, batch: int) -> float:
  """Mean of ``fn(params, key_i, batch_i)`` over all images of ``x``."""
  total, count = 0.0, 0
  for i, sl in enumerate(data_lib.batches(len(x), batch)):
    chunk = x[sl]
    n = len(chunk)
    if n < batch:                  # padded: one compiled shape
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
    vals = np.asarray(fn(params, jax.random.fold_in(key, i), chunk))[:n]
    total += float(np.sum(vals, dtype=np.float64))
    count += n
  return total / count


class EpochMean:
  """The mean training -ELBO over an epoch's images, summed on the host.

  The steps' sums are added in float32 in step order, as one running sum
  would; they are fetched from the devices only when the mean or a
  checkpoint needs them, so the steps stay asynchronous.
  """

  def __init__(self, total=0.0, count=0):
    self._total, self.count = np.float32(total), int(count)
    self._pending: list[Array] = []

  def add(self, batch_sum: Array, num_images: int) -> None:
    self._pending.append(batch_sum)
    self.count += num_images

  def total(self) -> np.float32:
    for s in self._pending:
      self._total = np.float32(self._total + np.float32(parallel.local(s)))
    self._pending = []
    return self._total

  def mean(self) -> float:
    return float(self.total()) / max(self.count, 1)

  def tree(self) -> dict[str, np.ndarray]:
    return {"total": np.asarray(self.total()),
            "count": np.asarray(self.count, np.int32)}


# ----------------------------------------------------------------------------
# Evaluation, the learned temperature, the summary.


def _probed_buffer(config, model) -> batched.ProbedBuffer:
  """The buffer of ``config.dedup``, probed with the encoder on binarised
  batches."""

  def encode(params, raw, key):
    x = data_lib.binarize(raw, config.binarization, key)
    return model.apply(params, x, method=model.encode)

  return batched.ProbedBuffer(encode, config.batch_size, config.num_latents,
                              config.num_categories,
                              probe_batches=_DEDUP_PROBE_BATCHES)


def _test_metrics(config, objective, params, key, test: np.ndarray
                  ) -> dict[str, float]:
  """Single-sample test -ELBO and the importance-weighted bound."""
  return {"test_neg_elbo": evaluate(
              functools.partial(eval_step, objective=objective), params, key,
              test, config.eval_batch_size),
          "test_neg_iwae": evaluate(
              functools.partial(iwae_step, objective=objective,
                                num_samples=config.iwae_samples),
              params, jax.random.fold_in(key, 10**6), test,
              config.iwae_batch_size)}


def _temperature(model, params) -> dict[str, float]:
  """The learned temperature as a metric (``{}`` when it is fixed)."""
  if not has_learned_temperature(model):
    return {}
  return {"temperature": float(learned_temperature(model, params))}


# Metrics the summary reports (kept in memory by the run, checkpointed).
_SUMMARY_METRICS = ("epoch", "train_neg_elbo", "valid_neg_elbo",
                    "test_neg_elbo", "test_neg_iwae", "grad_variance",
                    "temperature")
_MINIMISED = ("valid_neg_elbo",)


def restore_train_state(workdir: str, target: TrainState
                        ) -> tuple[TrainState, int]:
  """The train state of a VAE run's newest readable checkpoint and its step
  (``(target, 0)`` without one), for analyses of a trained model."""
  saved, step = runs.read_checkpoint(
      workdir, {"train": target, "epoch": EpochMean().tree()},
      _SUMMARY_METRICS, _MINIMISED)
  return saved["train"], step


def _splits_text(config) -> str:
  if config.dataset == "synthetic":
    return "synthetic"
  which = {"last": "the last {n} of TFDS train validate",
           "paper": "the first {n} of the original train file validate, as "
                    "in TensorFlow's read_data_sets"}[config.validation_split]
  return which.format(n=config.num_validation) + "; the test split tests"


def _summary(config, est, record: runs.MetricRecord, evals: int,
             num_steps: int, steps_per_epoch: int, steps_run: int,
             loop_seconds: float) -> dict[str, Any]:
  best = record.best_row("valid_neg_elbo")
  return {
      "estimator": est.name,
      "estimator_settings": vae_checks.estimator_settings(config),
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
      "decoder_evals_per_step": evals * config.batch_size,
      "bounds": {
          "train_neg_elbo": "single-sample -ELBO, mean over the epoch's "
                            "steps (hard samples)",
          "valid_neg_elbo": "single-sample -ELBO, one z per image",
          "test_neg_elbo": "single-sample -ELBO, one z per image",
          "test_neg_iwae": f"-log p(x) bound from {config.iwae_samples} "
                           "importance samples from q",
      },
      "final_epoch": record.last("epoch"),
      "final_train_neg_elbo": record.last("train_neg_elbo"),
      "final_valid_neg_elbo": record.last("valid_neg_elbo"),
      "best_valid_neg_elbo": best.get("valid_neg_elbo"),
      "best_valid_epoch": best.get("epoch"),
      "final_test_neg_elbo": record.last("test_neg_elbo"),
      "final_test_neg_iwae": record.last("test_neg_iwae"),
      "final_grad_variance": record.last("grad_variance"),
      "final_temperature": record.last("temperature"),
      "seconds_this_session": loop_seconds,
      "seconds_per_step_this_session": (loop_seconds / steps_run
                                        if steps_run else None),
      "seed": config.seed,
      "dedup": bool(config.dedup),
      "config": runs.identity(vae_checks.config_json(config), vae_checks.RESUMABLE_FIELDS),
  }


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
  with runs.Run(workdir, vae_checks.config_json(config), what="vae run", lock=True,
                resumable=vae_checks.RESUMABLE_FIELDS, fresh=runs.wants_fresh(config),
                max_to_keep=config.max_checkpoints, tracked=_SUMMARY_METRICS,
                minimised=_MINIMISED) as run:
    splits = vae_data.load_splits(config, splits)
    num_train = len(splits["train"])
    steps_per_epoch = num_train // config.batch_size
    num_steps = steps_per_epoch * config.num_epochs
    root = jax.random.PRNGKey(config.seed)
    k_init, k_train, k_data, k_eval, k_var, k_evalbin = jax.random.split(
        root, 6)
    model, objective, tx = _build(config, est)
    dp = parallel.DataParallel(config.num_devices)
    init = {"train": init_state(config, model, tx, est, k_init),
            "epoch": EpochMean().tree()}
    if dp.multi_process:    # restored straight onto the global mesh
      init["train"] = dp.replicate(init["train"])
    restored, start_step = run.restore_or_initialize(
        init, check_restored=vae_checks.restored_step_check(
            config, workdir, num_steps, steps_per_epoch))
    state = dp.replicate(restored["train"])
    epoch_mean = EpochMean(**restored["epoch"])
    batch = vae_data.batch_feed(config, splits["train"], dp)
    valid, test, var_x = vae_data.fixed_sets(config, splits, k_evalbin)

    def build_step(buffer: Optional[int] = None):
      loss_objective = objective if buffer is None else make_objective(
          model, est, int(config.decoder_samples), buffer)
      return make_train_step(loss_objective, tx, config.binarization, k_train,
                             batch_sharding=dp.batch_sharding)

    step_fn = build_step()
    dedup = _probed_buffer(config, model) if config.dedup else None
    progress = writers.ProgressReporter(
        num_steps, config.progress_every_secs, name=f"vae/{est.name}",
        first_step=start_step)
    last = {k: v for k in _SUMMARY_METRICS[1:]
            if (v := run.record.last(k)) is not None and k != "grad_variance"}

    def measure_variance(step: int) -> None:
      var = variance_step(parallel.local_tree(state.params),
                          parallel.local_tree(state.est_state),
                          jax.random.fold_in(k_var, step), var_x,
                          objective=objective, draws=config.variance_draws)
      run.write(step, {"grad_variance": float(var)})

    def end_epoch(step: int) -> None:
      nonlocal epoch_mean, last
      epoch = step // steps_per_epoch
      params = parallel.local_tree(state.params)
      key = jax.random.fold_in(k_eval, 2 * epoch)
      metrics = {"epoch": epoch, "train_neg_elbo": epoch_mean.mean(),
                 "valid_neg_elbo": evaluate(
                     functools.partial(eval_step, objective=objective),
                     params, key, valid, config.eval_batch_size),
                 **_temperature(model, params)}
      epoch_mean = EpochMean()
      if epoch % config.test_every_epochs == 0 or step == num_steps:
        metrics.update(_test_metrics(
            config, objective, params,
            jax.random.fold_in(k_eval, 2 * epoch + 1), test))
      run.write(step, metrics)
      last = {k: v for k, v in metrics.items() if k != "epoch"}
      logging.info("vae/%s: epoch %d step %d %s", est.name, epoch, step,
                   " ".join(f"{k}={v:.3f}" for k, v in last.items()))

    actions = [
        lambda step: progress(step, last or None),
        writers.PeriodicAction(config.variance_every_steps, measure_variance),
        writers.PeriodicAction(steps_per_epoch, end_epoch),
        writers.PeriodicAction(config.checkpoint_every_steps, lambda step: (
            run.checkpoint(step, {"train": state,
                                  "epoch": epoch_mean.tree()})),
                       last_step=num_steps),
    ]
    perm = None
    t_loop = time.time()
    for step in range(start_step, num_steps):
      epoch, pos = divmod(step, steps_per_epoch)
      if perm is None or pos == 0:
        perm = data_lib.epoch_permutation(k_data, epoch, num_train)
        if dedup is not None and dedup.update(
            parallel.local_tree(state.params), splits["train"],
            np.asarray(perm), jax.random.fold_in(k_var, 10**6 + epoch)):
          step_fn = build_step(dedup.buffer)
      state, batch_sum = step_fn(state, *batch(perm, pos))
      epoch_mean.add(batch_sum, config.batch_size)
      for action in actions:
        action(step + 1)
    loop_seconds = time.time() - t_loop
    progress(num_steps, last or None, force=True)
    summary = _summary(
        config, est, run.record,
        evals_per_image(est, config.num_latents, config.num_categories,
                        config.model),
        num_steps, steps_per_epoch, num_steps - start_step, loop_seconds)
    run.write_summary(summary)
  return summary
