"""Baseline estimators: RLOO, relaxed ones, RELAX and multi-draw ARSM (issue 3)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import diagnostics
from arsm_jax import estimators
from arsm_jax import expectation
from arsm_jax.estimators import multi
from arsm_jax.tasks import toy
from tests import helpers

# Total false-failure probability of each statistical test below (normal
# approximation of the sample mean, Bonferroni over the coordinates).
FALSE_FAILURE = 1e-3
NUM_DRAWS = 20_000


def _smooth_objective(seed: int, num_dims: int, num_cats: int):
  """A smooth, non-additive f of the flattened z (defined off the simplex)."""
  w = jnp.asarray(np.random.default_rng(seed).normal(
      size=(num_dims * num_cats, num_dims * num_cats)), jnp.float32)

  def f(z):
    v = z.reshape(-1)
    return jnp.tanh(v @ w @ v)

  return f


@functools.partial(jax.jit, static_argnames=("est", "f", "num_draws"))
def _stateful_draws(est, key, logits, f, state, num_draws: int):
  keys = jax.random.split(key, num_draws)
  return jax.vmap(lambda k: est.estimate(k, logits, f, state=state).grad)(keys)


def _assert_unbiased(grads, exact):
  threshold = helpers.z_threshold(FALSE_FAILURE, exact.size)
  z = helpers.z_scores(np.asarray(grads).reshape(grads.shape[0], -1),
                       np.asarray(exact).reshape(-1))
  assert np.all(z < threshold), (z.max(), threshold)


# ---------------------------------------------------------------------------
# Registry and settings.


def test_new_estimators_are_registered_with_their_properties():
  expect = {
      "reinforce_loo": (True, False, False),
      "arsm_multi": (True, False, False),
      "ars_multi": (True, False, False),
      "ar_multi": (True, False, False),
      "relax": (True, False, True),
      "gumbel_softmax": (False, True, False),
      "st_gumbel_softmax": (False, True, False),
      "reinmax": (False, True, False),
  }
  for name, (unbiased, pathwise, stateful) in expect.items():
    est = estimators.get(name)
    assert (est.unbiased, est.pathwise, est.stateful) == (
        unbiased, pathwise, stateful), name


@pytest.mark.parametrize("name,settings,match", [
    ("reinforce_loo", {"num_samples": 1}, "num_samples must be an integer >= 2"),
    ("reinforce_loo", {"num_samples": 2.5}, "num_samples"),
    ("arsm_multi", {"num_draws": 0}, "num_draws must be an integer >= 1"),
    ("gumbel_softmax", {"temperature": 0.0}, "temperature must be positive"),
    ("reinmax", {"temperature": -1.0}, "temperature must be positive"),
    ("st_gumbel_softmax", {"temperature": "hot"}, "temperature must be"),
])
def test_bad_settings_raise_when_used(name, settings, match):
  logits, f = helpers.random_problem(0, 2, 3)
  if estimators.get(name).pathwise:
    f = _smooth_objective(0, 2, 3)
  with pytest.raises(ValueError, match=match):
    estimators.get(name, **settings)(jax.random.PRNGKey(0), logits, f)


def test_relax_bad_settings_raise_at_init():
  logits = jnp.zeros((1, 3))
  with pytest.raises(ValueError, match="hidden_sizes must be positive"):
    estimators.get("relax", hidden_sizes=(10, 0)).init(jax.random.PRNGKey(0),
                                                       logits)
  with pytest.raises(ValueError, match="cv_learning_rate must be > 0"):
    estimators.get("relax", cv_learning_rate=0.0).init(jax.random.PRNGKey(0),
                                                       logits)


def test_multi_draw_accepts_the_base_settings_and_rejects_others():
  estimators.get("arsm_multi", num_draws=3, eval_batch_size=4)
  with pytest.raises(ValueError, match="Unknown setting.*temperature"):
    estimators.get("arsm_multi", temperature=1.0)


# ---------------------------------------------------------------------------
# Unbiasedness against the exact gradient (K = 2, C = 3, non-additive f).


@pytest.mark.parametrize("name,settings", [
    ("reinforce_loo", {}),
    ("reinforce_loo", {"num_samples": 5}),
    ("arsm_multi", {"num_draws": 3}),
    ("ars_multi", {}),
    ("ar_multi", {}),
])
def test_stateless_estimators_are_unbiased(name, settings):
  logits, f = helpers.random_problem(1, 2, 3)
  est = estimators.get(name, **settings)
  grads = helpers.draws(est, jax.random.PRNGKey(2), logits, f, NUM_DRAWS)
  _assert_unbiased(grads, estimators.get("exact")(None, logits, f))


_RELAX_PROBLEM = helpers.random_problem(3, 2, 3)


@pytest.mark.parametrize("trained", [False, True])
def test_relax_is_unbiased_for_any_control_variate(trained):
  logits, f = _RELAX_PROBLEM  # Shared, so the draws compile once.
  est = estimators.get("relax", hidden_sizes=(16,))
  state = est.init(jax.random.PRNGKey(4), logits)
  # A strongly nonlinear control variate (scaled-up random weights) or one
  # trained for 100 steps: the estimate must stay unbiased either way.
  if trained:
    step = lambda s, k: (est.estimate(k, logits, f, state=s).state, None)
    state = jax.jit(lambda s: jax.lax.scan(
        step, s, jax.random.split(jax.random.PRNGKey(5), 100))[0])(state)
  else:
    state = state._replace(params=jax.tree_util.tree_map(
        lambda p: 3.0 * p, state.params))
  grads = _stateful_draws(est, jax.random.PRNGKey(6), logits, f, state,
                          NUM_DRAWS)
  _assert_unbiased(grads, estimators.get("exact")(None, logits, f))


def test_reinmax_is_unbiased_for_linear_f_at_unit_temperature():
  # ReinMax is exact in expectation when f is linear in z at tau = 1 (its Heun
  # step is exact for a linear f); straight-through Gumbel is not, which
  # shows the test has the power to see a bias of this size.
  logits = jnp.asarray([[0.3, -1.0, 0.8], [1.5, 0.0, -0.5]])
  weights = jnp.asarray([[1.0, -2.0, 0.5], [0.3, 1.2, -1.0]])
  f = lambda z: jnp.sum(z * weights)
  exact = estimators.get("exact")(None, logits, f)
  grads = helpers.draws(estimators.get("reinmax", temperature=1.0),
                        jax.random.PRNGKey(7), logits, f, NUM_DRAWS)
  _assert_unbiased(grads, exact)
  st = helpers.draws(estimators.get("st_gumbel_softmax", temperature=1.0),
                     jax.random.PRNGKey(7), logits, f, NUM_DRAWS)
  z = helpers.z_scores(np.asarray(st).reshape(NUM_DRAWS, -1),
                       np.asarray(exact).reshape(-1))
  assert z.max() > 10.0


# ---------------------------------------------------------------------------
# REINFORCE leave-one-out.


def test_reinforce_loo_matches_its_formula_on_its_samples():
  logits, f = helpers.random_problem(8, 2, 3)
  out = estimators.get("reinforce_loo", num_samples=4).estimate(
      jax.random.PRNGKey(9), logits, f)
  samples = np.asarray(out.samples)                          # [4, 2, 3]
  values = np.asarray(jax.vmap(f)(out.samples))
  baselines = (values.sum() - values) / 3
  scores = samples - np.asarray(jax.nn.softmax(logits, axis=-1))
  expect = np.einsum("n,nkc->kc", values - baselines, scores) / 4
  np.testing.assert_allclose(out.grad, expect, rtol=1e-5, atol=1e-6)
  assert samples.shape == (4, 2, 3) and int(out.num_evals) == 4
  np.testing.assert_allclose(out.weights, 0.25)
  np.testing.assert_allclose(out.value, values.mean(), rtol=1e-6)


# ---------------------------------------------------------------------------
# Multi-draw.


def test_multi_draw_is_the_average_of_independent_draws():
  logits, f = helpers.random_problem(10, 2, 4)
  key = jax.random.PRNGKey(11)
  out = estimators.get("arsm_multi", num_draws=3).estimate(key, logits, f)
  single = jax.jit(lambda k: estimators.get("arsm").estimate(k, logits, f))
  singles = [single(k) for k in jax.random.split(key, 3)]
  np.testing.assert_allclose(out.grad, np.mean([s.grad for s in singles], 0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(
      out.samples, np.concatenate([s.samples for s in singles]))
  np.testing.assert_allclose(out.weights, 1 / 3)
  assert int(out.num_evals) == sum(int(s.num_evals) for s in singles)
  np.testing.assert_allclose(out.value, np.mean([s.value for s in singles]),
                             rtol=1e-6)


def test_average_draws_rejects_a_bad_count():
  logits, f = helpers.random_problem(0, 1, 3)
  with pytest.raises(ValueError, match="num_draws"):
    multi.average_draws(estimators.get("ar").estimate_fn,
                        jax.random.PRNGKey(0), logits, f, 0)


def test_multi_draw_arsm_keeps_skipping_evaluations():
  # Confident logits: most draws have every pseudo action equal to z, so ARSM
  # evaluates f once. The host count must agree with num_evals draw by draw.
  logits = jnp.asarray([[6.0, 0.0, -1.0], [0.0, 7.0, 1.0]])
  f = lambda z: jnp.sum(z * jnp.arange(6.0).reshape(2, 3))
  counted, reported = diagnostics.count_evaluations(
      estimators.get("arsm_multi", num_draws=3, skip_if_all_equal=True),
      jax.random.PRNGKey(12),
      logits, f, 8)
  np.testing.assert_array_equal(counted, reported)
  assert reported.min() < 3 * 4  # at least one draw skipped its pairs


# ---------------------------------------------------------------------------
# Relaxed estimators.


@pytest.mark.parametrize("name", ["st_gumbel_softmax", "reinmax"])
def test_straight_through_forward_pass_is_a_hard_sample(name):
  logits = jnp.asarray([[0.5, -1.0, 1.0, 0.0], [2.0, 0.0, -2.0, 0.5]])
  f = _smooth_objective(13, 2, 4)
  est = estimators.get(name, temperature=0.5)
  out = jax.jit(jax.vmap(lambda k: est.estimate(k, logits, f)))(
      jax.random.split(jax.random.PRNGKey(14), 4000))
  samples = np.asarray(out.samples[:, 0])                    # [N, K, C]
  assert set(np.unique(samples)) == {0.0, 1.0}
  np.testing.assert_array_equal(samples.sum(-1), 1.0)
  np.testing.assert_allclose(out.value, jax.vmap(f)(out.samples[:, 0]),
                             rtol=1e-6)
  # The hard sample has the law Cat(softmax(logits)): z-test of frequencies
  # (false-failure probability FALSE_FAILURE).
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  z = helpers.z_scores(samples.reshape(4000, -1), probs.reshape(-1))
  assert z.max() < helpers.z_threshold(FALSE_FAILURE, probs.size)


def test_gumbel_softmax_gradient_is_the_pathwise_one_at_its_sample():
  logits = jnp.asarray([[0.2, -0.4, 1.0]])
  weights = jnp.asarray([[1.0, -2.0, 0.5]])
  tau = 0.7
  out = estimators.get("gumbel_softmax", temperature=tau).estimate(
      jax.random.PRNGKey(15), logits, lambda z: jnp.sum(z * weights))
  y = np.asarray(out.samples[0])
  assert np.all(y > 0) and np.allclose(y.sum(-1), 1.0)
  w = np.asarray(weights)
  expect = y * (w - np.sum(y * w, -1, keepdims=True)) / tau
  np.testing.assert_allclose(out.grad, expect, rtol=1e-5, atol=1e-6)


def test_gumbel_softmax_bias_shrinks_as_temperature_falls():
  logits, _ = helpers.random_problem(16, 2, 3, scale=1.0)
  f = _smooth_objective(16, 2, 3)
  bias_sq = []
  for tau in (1.0, 0.5, 0.25):
    stats = diagnostics.gradient_stats(
        estimators.get("gumbel_softmax", temperature=tau),
        jax.random.PRNGKey(17), logits, f, NUM_DRAWS).summary()
    # The measured bias must stand well clear of its own sampling noise.
    assert stats["mean_bias_sq"] > 20 * stats["noise_floor"]
    bias_sq.append(stats["mean_bias_sq"])
  assert bias_sq[1] < 0.7 * bias_sq[0] and bias_sq[2] < 0.7 * bias_sq[1], bias_sq


def _table_lookup(z):
  return jnp.arange(3.0)[jnp.argmax(z[0])]


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel_softmax",
                                  "reinmax"])
@pytest.mark.parametrize("bad_f,match", [
    (_table_lookup, "does not depend differentiably"),
    (lambda z: jnp.sum(z.astype(jnp.int32) * 2).astype(jnp.float32),
     "does not depend differentiably"),
    (lambda z: jnp.sum(jnp.round(z)), "does not depend differentiably"),
    (lambda z: jax.lax.stop_gradient(jnp.sum(z ** 2)),
     "does not depend differentiably"),
    (lambda z: jnp.sum(z > 0.5), "returns int32"),
])
def test_relaxed_estimators_reject_non_differentiable_f(name, bad_f, match):
  with pytest.raises(ValueError, match=match):
    estimators.get(name)(jax.random.PRNGKey(0), jnp.zeros((1, 3)), bad_f)


def test_relaxed_estimators_reject_f_without_a_derivative_rule():
  def host_f(z):
    return jax.pure_callback(lambda v: np.float32(v.sum()),
                             jax.ShapeDtypeStruct((), jnp.float32), z)

  with pytest.raises(ValueError, match="JAX could not differentiate f"):
    estimators.get("gumbel_softmax")(jax.random.PRNGKey(0), jnp.zeros((1, 3)),
                                     host_f)


def test_relaxed_estimators_accept_f_closing_over_traced_values():
  logits = jnp.zeros((2, 3))

  @jax.jit
  def grad_of_loss(w):
    f = lambda z, w: jnp.sum(z * w) + w[0, 0] * jnp.max(z)
    return jax.grad(lambda w: expectation(
        jax.random.PRNGKey(0), logits, f, w,
        estimator="st_gumbel_softmax"))(w)

  g = grad_of_loss(jnp.ones((2, 3)))
  assert g.shape == (2, 3) and np.all(np.isfinite(g))
  # Under vmap as well (per-item arguments).
  batched = jax.vmap(grad_of_loss)(jnp.ones((4, 2, 3)))
  assert batched.shape == (4, 2, 3)


# ---------------------------------------------------------------------------
# RELAX.


def test_relax_state_is_a_pytree_updated_by_each_estimate():
  logits, f = helpers.random_problem(18, 2, 3)
  est = estimators.get("relax")
  state = est.init(jax.random.PRNGKey(0), logits)
  out = jax.jit(lambda s: est.estimate(jax.random.PRNGKey(1), logits, f,
                                       state=s))(state)
  assert (jax.tree_util.tree_structure(out.state)
          == jax.tree_util.tree_structure(state))
  old, new = (jax.tree_util.tree_leaves(s.params) for s in (state, out.state))
  assert any(not np.allclose(a, b) for a, b in zip(old, new))
  assert int(out.num_evals) == 1
  with pytest.raises(ValueError, match="stateful"):
    est(jax.random.PRNGKey(1), logits, f)


def test_relax_through_expectation_gives_its_gradient_and_state():
  logits, f = helpers.random_problem(19, 2, 3)
  est = estimators.get("relax")
  state = est.init(jax.random.PRNGKey(0), logits)
  key = jax.random.PRNGKey(2)
  (_, new_state), grad = jax.jit(jax.value_and_grad(
      lambda lg: expectation(key, lg, f, estimator=est, state=state),
      has_aux=True))(logits)
  direct = jax.jit(lambda lg: est.estimate(key, lg, f, state=state))(logits)
  np.testing.assert_allclose(grad, direct.grad, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(new_state),
                  jax.tree_util.tree_leaves(direct.state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_relax_training_reduces_variance_on_the_toy():
  # Toy at phi = 0 (C = 30): 300 Adam steps (default lr 1e-3) of the control
  # variate, variance measured from 1,000 draws before and after. Measured
  # while writing this test: ~8e-3 before, ~1e-4 after (80x); we ask for 4x.
  f = toy.make_objective(30, 30.0)
  phi = jnp.zeros((1, 30))
  est = estimators.get("relax")
  state = est.init(jax.random.PRNGKey(0), phi)

  @jax.jit
  def train(state, key):
    step = lambda s, k: (est.estimate(k, phi, f, state=s).state, None)
    return jax.lax.scan(step, state, jax.random.split(key, 300))[0]

  def variance(state):
    return diagnostics.gradient_stats(est, jax.random.PRNGKey(1), phi, f, 1000,
                                      state=state).summary()["mean_variance"]

  before = variance(state)
  after = variance(train(state, jax.random.PRNGKey(2)))
  assert after < before / 4, (before, after)
