r"""Gradient diagnostics: variance, bias, MSE, SNR and cost of an estimator.

    >>> from arsm_jax import diagnostics
    >>> stats = diagnostics.gradient_stats("arsm", key, logits, f, 10_000)
    >>> stats.summary()["mean_variance"], stats.evals_per_draw

Bias and MSE are measured against the exact gradient, computed by
enumerating all ``C**K`` outcomes when there are at most ``max_outcomes`` of
them (otherwise they are ``None``). The number of evaluations of f per draw
is measured, not assumed: it is the mean over the draws of each draw's
``EstimatorOutput.num_evals``, which :func:`count_evaluations` cross-checks by
counting the calls of f on the host.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from arsm_jax import estimators as estimators_lib
from arsm_jax.estimators import exact as exact_lib
from arsm_jax.estimators import validation

Array = jax.Array


class GradientStats(NamedTuple):
  """Statistics of ``num_draws`` independent draws of a gradient estimator.

  Per-coordinate arrays are ``[K, C]`` numpy float64 arrays.

  Attributes:
    num_draws: number of draws N.
    mean: sample mean of the estimates.
    variance: sample variance (``ddof=1``).
    exact: exact gradient, or ``None`` when ``C**K`` is too large.
    bias: ``mean - exact`` (its own noise has variance ``variance / N``).
    mse: mean over the draws of ``(g - exact)**2``.
    bias_z: ``bias / sqrt(variance / N)``: a z statistic that is
      approximately standard normal for an unbiased estimator (0 where the
      bias is at float32 rounding level and the variance 0, +-inf where only
      the variance is 0).
    snr: signal-to-noise ratio ``|mean| / sqrt(variance)`` (inf where the
      variance is 0 and the mean is not; 0 where both are).
    evals_per_draw: mean number of f evaluations per draw, from the
      estimator's ``num_evals``.
  """

  num_draws: int
  mean: np.ndarray
  variance: np.ndarray
  exact: Optional[np.ndarray]
  bias: Optional[np.ndarray]
  mse: Optional[np.ndarray]
  bias_z: Optional[np.ndarray]
  snr: np.ndarray
  evals_per_draw: float

  def summary(self) -> dict[str, float]:
    """Coordinate-averaged scalars, for tables.

    Keys: ``mean_variance``, ``mean_bias_sq`` (mean of ``bias**2``; for an
    unbiased estimator about ``noise_floor``), ``noise_floor`` (mean of
    ``variance / N``), ``mean_mse``, ``max_abs_bias_z``, ``mean_snr``,
    ``evals_per_draw`` and ``variance_x_evals`` (mean variance times
    evaluations per draw: the variance of an estimate that spends one
    evaluation, if cost is spent on averaging draws).
    """
    nan = float("nan")
    finite_snr = self.snr[np.isfinite(self.snr)]
    out = {
        "mean_variance": float(np.mean(self.variance)),
        "noise_floor": float(np.mean(self.variance) / self.num_draws),
        "mean_bias_sq": nan if self.bias is None else float(
            np.mean(self.bias ** 2)),
        "mean_mse": nan if self.mse is None else float(np.mean(self.mse)),
        "max_abs_bias_z": nan if self.bias_z is None else float(
            np.max(np.abs(self.bias_z))),
        "mean_snr": float(np.mean(finite_snr)) if finite_snr.size else nan,
        "evals_per_draw": float(self.evals_per_draw),
    }
    out["variance_x_evals"] = out["mean_variance"] * out["evals_per_draw"]
    return out


@functools.partial(jax.jit, static_argnames=("est", "f", "num_draws",
                                             "batch_size"))
def _draws(est, key, logits, f, state, num_draws: int, batch_size: int):
  def one(k):
    out = est.estimate(k, logits, f, state=state)
    return out.grad, out.num_evals

  keys = jax.random.split(key, num_draws)
  return jax.lax.map(one, keys, batch_size=min(batch_size, num_draws))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den with 0/0 = 0 and x/0 = sign(x) inf."""
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1.0),
                    np.where(num == 0, 0.0, np.copysign(np.inf, num)))


def gradient_stats(estimator: str | estimators_lib.Estimator, key, logits,
                   f, num_draws: int, *, state: Any = None,
                   max_outcomes: int = exact_lib.DEFAULT_MAX_OUTCOMES,
                   batch_size: int = 1024) -> GradientStats:
  """Measures an estimator over ``num_draws`` independent draws.

  Args:
    estimator: a registered name or an ``Estimator`` (with its settings).
    key: PRNG key. ``key_init, key_draws = jax.random.split(key)``; draw i
      uses ``jax.random.split(key_draws, num_draws)[i]`` and a missing state
      is initialised from ``key_init``.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays. Pass the same function object
      across calls to reuse compilations.
    num_draws: N >= 2.
    state: for a stateful estimator, the state every draw uses (draws do not
      update it); ``None`` initialises one from ``key``.
    max_outcomes: compute the exact gradient (and so bias and MSE) only when
      ``C**K`` is at most this.
    batch_size: draws vectorised together (memory bound).

  Returns:
    A :class:`GradientStats`.
  """
  est = estimators_lib.get(estimator)
  logits = validation.check_logits(logits, "gradient_stats")
  if isinstance(num_draws, bool) or int(num_draws) != num_draws or num_draws < 2:
    raise ValueError(f"gradient_stats: num_draws must be an integer >= 2; got "
                     f"{num_draws!r}.")
  num_draws = int(num_draws)
  key_init, key_draws = jax.random.split(key)
  if est.stateful and state is None:
    state = est.init(key_init, logits)
  grads, evals = _draws(est, key_draws, logits, f, state, num_draws,
                        int(batch_size))
  grads = np.asarray(grads, np.float64)                       # [N, K, C]
  mean = grads.mean(axis=0)
  variance = grads.var(axis=0, ddof=1)
  snr = _ratio(np.abs(mean), np.sqrt(variance))
  num_dims, num_cats = logits.shape
  exact = bias = mse = bias_z = None
  if num_cats ** num_dims <= max_outcomes:
    exact_est = estimators_lib.get("exact", max_outcomes=max_outcomes)
    exact = np.asarray(exact_est(key, logits, f), np.float64)
    bias = mean - exact
    mse = np.mean((grads - exact) ** 2, axis=0)
    # Differences at float32 rounding level count as zero (exact itself, or
    # an estimator whose every draw is exact).
    tiny = np.abs(bias) <= 1e-6 * (1.0 + np.abs(exact))
    bias_z = _ratio(np.where(tiny, 0.0, bias), np.sqrt(variance / num_draws))
  return GradientStats(num_draws, mean, variance, exact, bias, mse, bias_z, snr,
                       float(np.mean(np.asarray(evals, np.float64))))


def count_evaluations(estimator: str | estimators_lib.Estimator, key, logits,
                      f, num_draws: int, *, state: Any = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Counts the calls of f on the host, draw by draw, next to ``num_evals``.

  f is wrapped so that each evaluation on one ``[K, C]`` input fires a
  ``jax.debug.callback`` (once per element under ``vmap``, never for a
  ``lax.cond`` branch that is not taken). Draws run one at a time, unbatched,
  so an estimator that skips work with ``lax.cond`` is counted as it runs.

  Returns:
    ``(counted, reported)``: two int arrays ``[num_draws]``, the host count
    and the estimator's ``num_evals`` for each draw.
  """
  est = estimators_lib.get(estimator)
  logits = validation.check_logits(logits, "count_evaluations")
  key_init, key_draws = jax.random.split(key)
  if est.stateful and state is None:
    state = est.init(key_init, logits)
  calls = []

  def counted_f(z):
    jax.debug.callback(lambda _: calls.append(1), z)
    return f(z)

  run = jax.jit(lambda k: est.estimate(k, logits, counted_f,
                                       state=state).num_evals)
  counted, reported = [], []
  for k in jax.random.split(key_draws, num_draws):
    before = len(calls)
    reported.append(int(jax.block_until_ready(run(k))))
    jax.effects_barrier()
    counted.append(len(calls) - before)
  return np.asarray(counted), np.asarray(reported)
