"""Percentile bootstrap intervals of the median episodes to solve.

Episodes to solve are per seed, ``None`` for a seed that never solves; such
seeds count as infinitely slow, as in
:func:`arsm_jax.tasks.rl.median_episodes`, so a resampled median is ``inf``
when half or more of the resample's seeds never solve. The resamples' random
numbers come from NumPy's ``default_rng`` with fixed seeds, so an interval
is the same every time.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# The level of every interval, the number of resamples and the seed of the
# random numbers.
LEVEL = 0.90
RESAMPLES = 10_000
SEED = 0

Solve = Sequence[Optional[float]]


def bootstrap_medians(solve: Solve, resamples: int = RESAMPLES,
                      seed: int = SEED) -> np.ndarray:
  """``[resamples]`` medians of ``solve`` over resamples of the seeds with
  replacement (the median of an even number is the mean of the middle two).

  Raises:
    ValueError: when ``solve`` is empty.
  """
  values = np.array([np.inf if v is None else v for v in solve], np.float64)
  if not values.size:
    raise ValueError("no seeds to resample")
  rng = np.random.default_rng(seed)
  picks = rng.integers(0, values.size, (resamples, values.size))
  return np.median(values[picks], axis=1)


def _quantiles(values: np.ndarray, level: float) -> tuple[float, float]:
  """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
  ``values``, each one of the values (no interpolation, so that infinite
  values stay infinite)."""
  low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2],
                          method="inverted_cdf")
  return float(low), float(high)


def median_interval(solve: Solve, level: float = LEVEL,
                    resamples: int = RESAMPLES, seed: int = SEED) -> tuple:
  """Percentile bootstrap interval ``(low, high)`` of the median episodes to
  solve; an end is ``None`` ("not reached") where that quantile of the
  resampled medians is infinite."""
  low, high = _quantiles(bootstrap_medians(solve, resamples, seed), level)
  return (low if np.isfinite(low) else None,
          high if np.isfinite(high) else None)


def median_difference_interval(slow: Solve, fast: Solve, level: float = LEVEL,
                               resamples: int = RESAMPLES) -> Optional[tuple]:
  """Bootstrap interval of ``median(slow) - median(fast)`` (episodes to
  solve per seed of two learners, resampled independently).

  Returns:
    ``(low, high, defined)``: the quantiles over the ``defined`` resamples
    where at least one of the two medians is reached (where both are not,
    the difference is undefined), ``inf`` or ``-inf`` where one median is
    not reached; ``None`` when no resample has a defined one.
  """
  with np.errstate(invalid="ignore"):                 # inf - inf: nan
    diff = (bootstrap_medians(slow, resamples, SEED + 1)
            - bootstrap_medians(fast, resamples, SEED))
  diff = diff[~np.isnan(diff)]
  if not diff.size:
    return None
  return (*_quantiles(diff, level), int(diff.size))


def solved_difference_interval(solve: Solve, base: Solve, level: float = LEVEL,
                               resamples: int = RESAMPLES) -> tuple:
  """Bootstrap interval ``(low, high)`` of the share of seeds ``solve``
  solves minus the share ``base`` solves (each resampled independently)."""
  def shares(values, seed):
    solved = np.array([v is not None for v in values], np.float64)
    rng = np.random.default_rng(seed)
    return solved[rng.integers(0, solved.size,
                               (resamples, solved.size))].mean(axis=1)
  return _quantiles(shares(solve, SEED + 3) - shares(base, SEED + 2), level)
