"""arsm_jax.diagnostics: gradient statistics and measured evaluation counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import diagnostics
from arsm_jax import estimators
from tests import helpers

CONFIDENT = jnp.asarray([[4.0, 0.0, -1.0], [0.0, 4.0, 1.0]])


def _smooth(z):
  v = z.reshape(-1)
  return jnp.tanh(jnp.sum(v * jnp.roll(v, 1)) + jnp.sum(v * jnp.arange(v.size)))


def test_gradient_stats_agree_with_numpy_on_the_same_draws():
  logits, f = helpers.random_problem(0, 2, 3)
  est = estimators.get("reinforce")
  key = jax.random.PRNGKey(1)
  stats = diagnostics.gradient_stats(est, key, logits, f, 500)
  # gradient_stats draws with split(split(key)[1], N): the same draws here.
  grads = np.asarray(helpers.draws(est, jax.random.split(key)[1], logits, f,
                                   500), np.float64)
  exact = np.asarray(estimators.get("exact")(None, logits, f), np.float64)
  np.testing.assert_allclose(stats.mean, grads.mean(0), rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(stats.variance, grads.var(0, ddof=1), rtol=1e-6)
  np.testing.assert_allclose(stats.exact, exact, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(stats.bias, grads.mean(0) - exact, atol=1e-6)
  np.testing.assert_allclose(stats.mse, np.mean((grads - exact) ** 2, 0),
                             rtol=1e-5)
  np.testing.assert_allclose(
      stats.snr, np.abs(grads.mean(0)) / grads.std(0, ddof=1), rtol=1e-5)
  # MSE = (N-1)/N variance + bias^2, an identity of the sample moments.
  np.testing.assert_allclose(stats.mse, stats.variance * 499 / 500
                             + stats.bias ** 2, rtol=1e-4)
  summary = stats.summary()
  assert summary["evals_per_draw"] == 1.0
  assert summary["variance_x_evals"] == pytest.approx(summary["mean_variance"])
  assert summary["noise_floor"] == pytest.approx(summary["mean_variance"] / 500)


def test_gradient_stats_of_exact_has_no_variance_and_no_bias():
  logits, f = helpers.random_problem(2, 2, 3)
  stats = diagnostics.gradient_stats("exact", jax.random.PRNGKey(0), logits, f,
                                     4)
  np.testing.assert_array_equal(stats.variance, 0.0)
  np.testing.assert_array_equal(stats.bias_z, 0.0)
  assert stats.evals_per_draw == 9.0
  assert stats.summary()["max_abs_bias_z"] == 0.0


def test_bias_z_flags_a_biased_estimator_and_not_an_unbiased_one():
  # One statistic over 6 coordinates each; false-failure probability of the
  # unbiased check 1e-3 (Bonferroni).
  logits, _ = helpers.random_problem(3, 2, 3)
  threshold = helpers.z_threshold(1e-3, 6)
  key = jax.random.PRNGKey(4)
  unbiased = diagnostics.gradient_stats("reinforce_loo", key, logits, _smooth,
                                        20_000)
  biased = diagnostics.gradient_stats("gumbel_softmax", key, logits, _smooth,
                                      20_000)
  assert np.max(np.abs(unbiased.bias_z)) < threshold
  assert np.max(np.abs(biased.bias_z)) > 5 * threshold


def test_without_enumeration_bias_and_mse_are_absent():
  logits = jnp.zeros((3, 4))
  stats = diagnostics.gradient_stats("reinforce", jax.random.PRNGKey(0),
                                     logits, _smooth, 16, max_outcomes=10)
  assert stats.exact is None and stats.bias is None and stats.mse is None
  summary = stats.summary()
  assert np.isnan(summary["mean_mse"]) and np.isfinite(summary["mean_variance"])


def test_gradient_stats_initialises_a_stateful_estimator():
  logits, f = helpers.random_problem(5, 1, 3)
  stats = diagnostics.gradient_stats("relax", jax.random.PRNGKey(0), logits, f,
                                     64)
  assert stats.evals_per_draw == 1.0 and np.all(np.isfinite(stats.variance))


def test_gradient_stats_rejects_too_few_draws():
  with pytest.raises(ValueError, match="num_draws must be an integer >= 2"):
    diagnostics.gradient_stats("reinforce", jax.random.PRNGKey(0),
                               jnp.zeros((1, 3)), _smooth, 1)


@pytest.mark.parametrize("name", estimators.names())
def test_num_evals_matches_a_host_side_count(name):
  # Confident logits: most ARSM draws have every pseudo action equal to z (1
  # evaluation), some do not; f counts its calls on the host.
  counted, reported = diagnostics.count_evaluations(
      name, jax.random.PRNGKey(6), CONFIDENT, _smooth, 12)
  np.testing.assert_array_equal(counted, reported)
  assert counted.min() >= 1


def test_arsm_count_shows_skipped_evaluations():
  counted, _ = diagnostics.count_evaluations(
      estimators.get("arsm", skip_if_all_equal=True), jax.random.PRNGKey(6),
      CONFIDENT, _smooth, 12)
  full = 3 * 2 // 2 + 1
  assert set(counted) <= {1, full} and len(set(counted)) == 2, counted
