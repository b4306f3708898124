r"""The toy experiment (poster figure 1): one C-way categorical, exact reward.

Maximise :math:`E_{z\sim\mathrm{Cat}(\sigma(\phi))}[f(z)]` with
:math:`f(z) = 0.5 + z/(CR)`, :math:`z \in \{1..C\}`, by gradient ascent on
:math:`\phi` from zero with one estimator draw per iteration. The expected
reward is computed exactly at every iteration; every ``variance_every``
iterations the gradient variance (averaged over coordinates) is measured from
``variance_draws`` fresh draws at the current :math:`\phi`.

From a notebook::

    from arsm_jax.tasks import toy
    from configs import toy as toy_config
    result = toy.train_and_evaluate(toy_config.get_config(), "/tmp/toy")

Outputs in ``workdir``: ``summary.json``; per estimator a folder
``<name>/`` with ``metrics.jsonl`` (pandas: ``writers.read_metrics``) and
TensorBoard events, ``config.json`` (what identifies its run), ``result.json``
and ``curves.npz``; ``toy.png``. An estimator whose results are saved is not
run again when the same command is repeated with the same config; under a
different config (any field but ``estimators``, ``plot`` and the other
estimators' ``learning_rates`` and ``estimator_settings``) the rerun is
refused with the differing fields named, unless ``config.fresh`` is set,
which deletes the saved results of the estimators being run and starts them
again (:mod:`arsm_jax.runs`). The toy has no checkpoints: one estimator's run
is one compiled call of a few seconds.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from arsm_jax import config_checks as checks
from arsm_jax import estimators
from arsm_jax import runs
from arsm_jax import workdirs
from arsm_jax import writers

PLOT_FILE = "toy.png"

Array = jax.Array


def make_objective(num_categories: int, reward_scale: float):
  """``f(onehot) = 0.5 + z / (C R)`` with z in 1..C, on one-hot ``[1, C]``."""
  rewards = 0.5 + jnp.arange(1, num_categories + 1) / (
      num_categories * reward_scale)

  def f(onehot: Array) -> Array:
    return jnp.sum(onehot[0] * rewards.astype(onehot.dtype))

  return f


def optimum(num_categories: int, reward_scale: float) -> float:
  return 0.5 + 1.0 / reward_scale


def validate_config(config) -> list[str]:
  """Checks the config; returns the estimator names. Raises ``ValueError``."""
  checks.integer(config, "num_categories", low=2)
  checks.positive_number(config, "reward_scale")
  for field in ("num_iterations", "variance_every", "variance_draws"):
    checks.integer(config, field, low=1)
  checks.multiple_of(config, "num_iterations", "variance_every")
  checks.positive_number(config, "learning_rate")
  names = checks.names(config, "estimators", estimators.names(), "estimator")
  for field in ("learning_rates", "estimator_settings"):
    for name in config[field]:
      if name not in estimators.names():
        raise ValueError(f"Unknown estimator {name!r}; allowed: "
                         f"{', '.join(estimators.names())} "
                         f"(config.{field}).")
  return names


def _settings(config, name: str) -> dict[str, Any]:
  if name in config.estimator_settings:
    return dict(config.estimator_settings[name].to_dict())
  return {}


def make_run(est: estimators.Estimator, config) -> Any:
  """The whole training run of one estimator as one function of a key.

  Returns a function ``run(key) -> (final_phi, metrics)`` made of two nested
  ``lax.scan``s: the outer over blocks of ``variance_every`` iterations (it
  measures the variance at the start of each block), the inner over the
  iterations of a block.
  """
  num_cats = config.num_categories
  f = make_objective(num_cats, config.reward_scale)
  lr = float(config.learning_rates.get(est.name, config.learning_rate))
  every, draws = config.variance_every, config.variance_draws
  num_blocks = config.num_iterations // every

  def step(carry, key):
    phi, state = carry
    out = est.estimate(key, phi, f, state=state)
    new_phi = phi + lr * out.grad
    probs = jax.nn.softmax(new_phi[0])
    metrics = {
        "expected_reward": estimators.exact_value(new_phi, f),
        "grad_phi_first": out.grad[0, 0],
        "grad_phi_last": out.grad[0, -1],
        "prob_first": probs[0],
        "prob_last": probs[-1],
        "num_evals": out.num_evals,
    }
    return (new_phi, out.state if est.stateful else state), metrics

  def variance(phi, state, key):
    grads = jax.vmap(lambda k: est.estimate(k, phi, f, state=state).grad)(
        jax.random.split(key, draws))
    return jnp.mean(jnp.var(grads, axis=0))

  def block(carry, key):
    key_var, key_steps = jax.random.split(key)
    var = variance(*carry, key_var)
    carry, metrics = jax.lax.scan(step, carry,
                                  jax.random.split(key_steps, every))
    return carry, (metrics, var)

  def run(key):
    key_init, key_run = jax.random.split(key)
    phi = jnp.zeros((1, num_cats), jnp.float32)
    state = est.init(key_init, phi)
    (phi, _), (metrics, var) = jax.lax.scan(
        block, (phi, state), jax.random.split(key_run, num_blocks))
    metrics = jax.tree_util.tree_map(
        lambda m: m.reshape((num_blocks * every,) + m.shape[2:]), metrics)
    return phi, metrics, var

  return run


def run_identity(config, name: str) -> dict[str, Any]:
  """What identifies estimator ``name``'s run: the config it sees."""
  current = runs.identity(runs.config_json(config),
                          ("estimators", "learning_rates",
                           "estimator_settings"))
  current.update(estimator=name, settings=_settings(config, name),
                 estimator_learning_rate=float(config.learning_rates.get(
                     name, config.learning_rate)))
  return runs.config_json(current)


def run_estimator(name: str, config, workdir: str) -> dict[str, Any]:
  """Trains with one estimator (or loads its saved result) and logs metrics."""
  with runs.Run(os.path.join(workdir, name), run_identity(config, name),
                what=f"toy run of {name}",
                fresh=runs.wants_fresh(config)) as run:
    saved = run.finished_result()
    if saved is not None:
      return saved
    # One compiled call of a few seconds: no checkpoints, and the rows of a
    # run killed before it finished are dropped.
    run.restore_or_initialize(None, checkpoints=False)

    est = estimators.get(name, **_settings(config, name))
    train = jax.jit(make_run(est, config))
    key = jax.random.PRNGKey(config.seed)
    t0 = time.time()
    compiled = train.lower(key).compile()
    t1 = time.time()
    phi, metrics, var = jax.block_until_ready(compiled(key))
    t2 = time.time()

    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    run.write_many(np.arange(1, config.num_iterations + 1), metrics)
    run.write_many(np.arange(0, config.num_iterations, config.variance_every),
                   {"grad_variance": np.asarray(var)})
    result = {
        "estimator": name,
        "settings": _settings(config, name),
        "learning_rate": float(config.learning_rates.get(
            name, config.learning_rate)),
        "final_expected_reward": float(metrics["expected_reward"][-1]),
        "final_prob_last": float(metrics["prob_last"][-1]),
        "mean_evals_per_iteration": float(np.mean(metrics["num_evals"])),
        "seconds": t2 - t0,
        "compile_seconds": t1 - t0,
        "run_seconds": t2 - t1,
        "microseconds_per_iteration": 1e6 * (t2 - t1) / config.num_iterations,
    }
    curves = {"expected_reward": metrics["expected_reward"],
              "prob_last": metrics["prob_last"],
              "grad_variance": np.asarray(var), "final_phi": np.asarray(phi)}
    run.save_result(result, curves)
  logging.info("toy: %-10s expected reward %.5f (optimum %.5f), %.1fs "
               "(compilation %.1fs)", name, result["final_expected_reward"],
               optimum(config.num_categories, config.reward_scale),
               result["seconds"], result["compile_seconds"])
  result.update(curves)
  return result


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Runs the toy for every estimator in ``config.estimators``.

  Returns:
    A dict with ``summary`` and ``curves`` per estimator and the
    ``optimum``; the curves are ``expected_reward``, ``prob_last`` and
    ``grad_variance``. The summary is also written to
    ``workdir/summary.json`` and the figure to ``toy.png``.
  """
  names = validate_config(config)
  with workdirs.hold_workdir(workdir, (*estimators.names(), PLOT_FILE),
                         what="toy run"):
    return _train_and_evaluate(config, workdir, names)


def _train_and_evaluate(config, workdir, names) -> dict[str, Any]:
  """:func:`train_and_evaluate` once it holds the workdir."""
  results = {}
  t0 = time.time()
  for i, name in enumerate(names):
    results[name] = run_estimator(name, config, workdir)
    elapsed = time.time() - t0
    left = elapsed / (i + 1) * (len(names) - i - 1)
    logging.info("toy: %d/%d estimators done, elapsed %s, ETA %s", i + 1,
                 len(names), writers.format_seconds(elapsed),
                 writers.format_seconds(left))
  curve_keys = ("expected_reward", "prob_last", "grad_variance")
  summary = {
      name: {k: v for k, v in r.items()
             if k not in curve_keys and k != "final_phi"}
      for name, r in results.items()
  }
  best = optimum(config.num_categories, config.reward_scale)
  runs.write_summary(workdir, {
      "optimum": best,
      "num_categories": config.num_categories,
      "reward_scale": config.reward_scale,
      "num_iterations": config.num_iterations,
      "estimators": summary,
  })
  curves = {name: {k: results[name][k] for k in curve_keys} for name in names}
  if config.plot and jax.process_index() == 0:
    from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
    plotting.plot_toy(curves, config, best, os.path.join(workdir, PLOT_FILE))
  return {"summary": summary, "curves": curves, "optimum": best}
