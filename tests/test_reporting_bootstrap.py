"""The bootstrap interval of the median episodes to solve."""

import numpy as np
import pytest

from arsm_jax.reporting import bootstrap
from arsm_jax.tasks import rl as rl_task


def _covers(interval, value):
  low, high = (np.inf if v is None else v for v in interval)
  value = np.inf if value is None else value
  return low <= value <= high


def test_median_interval_known_cases():
  interval = bootstrap.median_interval
  assert interval([100] * 10) == (100, 100)
  assert interval([None] * 10) == (None, None)
  assert interval([150]) == (150, 150)
  # Of three seeds the resampled median is the smallest with probability
  # 7/27 (two or three draws of it) > 5 %, and so the largest.
  assert interval([1, 2, 3]) == (1, 3)
  # One seed of ten unsolved: a resample's median is infinite only with
  # five or more draws of it (probability 0.16 %), so the interval ends.
  low, high = interval([100, 110, 120, 130, 140, 150, 160, 170, 180, None])
  assert 100 <= low <= high <= 180
  # Four of ten unsolved: five or more draws of them have probability 37 %.
  low, high = interval([100, 110, 120, 130, 140, 150, None, None, None, None])
  assert low is not None and high is None
  # Five of ten unsolved: the sample median is not reached.
  assert interval([100] * 5 + [None] * 5)[1] is None
  # A fixed seed: the same interval every time; another seed may differ.
  solve = [None, 300, 120, 480, 610, 95, None, 250, 333, 401]
  assert interval(solve) == interval(solve)
  assert bootstrap.bootstrap_medians(solve).shape == (bootstrap.RESAMPLES,)


def test_median_interval_contains_the_sample_median_and_narrows():
  rng = np.random.default_rng(7)
  for n in (3, 10, 11, 50):
    for _ in range(10):
      times = rng.exponential(200.0, n).round() + 100
      solve = [None if rng.uniform() < 0.3 else float(t) for t in times]
      interval = bootstrap.median_interval(solve)
      assert _covers(interval, rl_task.median_episodes(solve)), (solve,
                                                                 interval)
  widths = {}
  for n in (10, 50, 400):
    for _ in range(10):
      solve = list(rng.uniform(100.0, 900.0, n).round())
      low, high = bootstrap.median_interval(solve)
      widths.setdefault(n, []).append(high - low)
  # More seeds, a narrower interval (in the median over trials).
  assert np.median(widths[400]) < np.median(widths[50]) < np.median(
      widths[10])


def test_median_interval_matches_the_exact_bootstrap_distribution():
  """For three seeds the resampled median's distribution is known: the
  median of a resample of (1, 2, 3) is 1 with probability 7/27."""
  medians = bootstrap.bootstrap_medians([1, 2, 3])
  assert np.mean(medians == 1) == pytest.approx(7 / 27, abs=0.015)
  assert np.mean(medians == 3) == pytest.approx(7 / 27, abs=0.015)
  assert set(np.unique(medians)) == {1.0, 2.0, 3.0}


def test_median_difference_interval():
  fast = [100 + i for i in range(20)]
  slow = [500 + i for i in range(20)]
  low, high, defined = bootstrap.median_difference_interval(slow, fast)
  assert 380 <= low <= 400 <= high <= 420
  assert defined == bootstrap.RESAMPLES
  low, high, _ = bootstrap.median_difference_interval([None] * 20, fast)
  assert low == high == np.inf
  assert bootstrap.median_difference_interval([None] * 5, [None] * 5) is None


def test_solved_difference_interval():
  all_solved, none_solved = [100] * 50, [None] * 50
  assert bootstrap.solved_difference_interval(all_solved, none_solved) == (
      1.0, 1.0)
  half = [100] * 25 + [None] * 25
  low, high = bootstrap.solved_difference_interval(half, half)
  assert -0.3 < low < 0 < high < 0.3              # no difference
  low, high = bootstrap.solved_difference_interval(
      [100] * 40 + [None] * 10, [100] * 10 + [None] * 40)
  assert 0.45 < low < 0.6 < high < 0.75            # 60 points more
