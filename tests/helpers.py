"""Shared test utilities: random objectives and a z-test against exact gradients."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats


def table_objective(table: np.ndarray, num_dims: int, num_cats: int):
  """A non-additive f: an arbitrary value for each of the C**K outcomes."""
  table = jnp.asarray(table, jnp.float32)
  powers = jnp.asarray(num_cats ** np.arange(num_dims - 1, -1, -1), jnp.int32)

  def f(onehot):
    z = jnp.argmax(onehot, axis=-1)                      # [K]
    return table[jnp.sum(z * powers)]

  return f


def random_problem(seed: int, num_dims: int, num_cats: int, scale: float = 1.5):
  """Random logits ``[K, C]`` and a random table objective."""
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(rng.normal(size=(num_dims, num_cats)) * scale,
                       jnp.float32)
  table = rng.normal(size=num_cats ** num_dims)
  return logits, table_objective(table, num_dims, num_cats)


@functools.partial(jax.jit, static_argnames=("est", "f", "num_draws"))
def draws(est, key, logits, f, num_draws: int):
  """``num_draws`` independent single-draw estimates, ``[N, K, C]``."""
  keys = jax.random.split(key, num_draws)
  return jax.vmap(lambda k: est(k, logits, f))(keys)


def z_threshold(total_false_failure: float, num_tests: int) -> float:
  """Two-sided per-test threshold so that, by Bonferroni, the probability that
  any of ``num_tests`` unbiased coordinates fails is at most
  ``total_false_failure`` (normal approximation of the sample mean)."""
  return float(stats.norm.isf(total_false_failure / (2 * num_tests)))


def z_scores(samples: np.ndarray, target: np.ndarray) -> np.ndarray:
  """Per-coordinate z statistic of the sample mean against ``target``.

  Coordinates with zero sample variance get z = 0 when the mean matches the
  target to 1e-6 and +inf otherwise.
  """
  samples = np.asarray(samples, np.float64)
  n = samples.shape[0]
  mean = samples.mean(axis=0)
  se = samples.std(axis=0, ddof=1) / np.sqrt(n)
  diff = np.abs(mean - np.asarray(target, np.float64))
  with np.errstate(divide="ignore", invalid="ignore"):
    z = np.where(se > 0, diff / se, np.where(diff < 1e-6, 0.0, np.inf))
  return z


def record_progress(monkeypatch) -> list[tuple[str, int]]:
  """Records ``(name, step)`` of every progress report from now on.

  Resume tests use it to check that a rerun *started from the checkpoint*:
  a deterministic run restarted from zero ends with the same numbers, so
  only the steps it reports show the work it skipped.
  """
  from arsm_jax import writers  # pylint: disable=g-import-not-at-top
  seen = []
  original = writers.ProgressReporter.__call__

  def report(self, step, *args, **kwargs):
    seen.append((self.name, int(step)))
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(writers.ProgressReporter, "__call__", report)
  return seen
