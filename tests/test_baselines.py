"""Baseline estimators: RLOO, relaxed ones, RELAX and multi-draw ARSM (issue 3)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from arsm_jax import diagnostics
from arsm_jax import estimators
from arsm_jax import expectation
from arsm_jax.estimators import multi
from arsm_jax.estimators import relax as relax_lib
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


def test_baselines_are_registered_with_their_properties():
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


# scale=0.5 keeps every category's probability above a few percent: with
# seed 3 at the default scale one probability is about 1e-3, its mean over
# the draws rests on some 20 rare events, and the z-test's normal
# approximation (and so its stated false-failure probability) does not hold.
_RELAX_PROBLEM = helpers.random_problem(3, 2, 3, scale=0.5)


@pytest.mark.parametrize("trained", [False, True])
def test_relax_is_unbiased_for_any_control_variate(trained):
  logits, f = _RELAX_PROBLEM  # Shared, so the draws compile once.
  assert float(jax.nn.softmax(logits).min()) > 0.02
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


# ---------------------------------------------------------------------------
# RELAX in a minibatch, its control variate and its conditional sample.


def test_relax_batch_update_is_one_adam_step_on_the_batch_mean_gradient():
  logits = jnp.asarray(np.random.default_rng(21).normal(size=(4, 2, 3)),
                       jnp.float32)
  _, f = helpers.random_problem(21, 2, 3)
  lr = 1e-2
  est = estimators.get("relax", cv_learning_rate=lr)
  state = est.init(jax.random.PRNGKey(0), logits[0])
  batch_step = jax.jit(lambda s, k: expectation(
      k, logits, lambda z: f(z), estimator=est, state=s)[1])
  item = jax.jit(lambda s, k, lg: est.estimate(k, lg, f, state=s).state)
  optimizer = optax.adam(lr)
  params, opt_state = state.params, state.opt_state
  ours = state
  for step in range(2):  # Two steps: Adam's moments carry the batch means.
    key = jax.random.PRNGKey(30 + step)
    ours = batch_step(ours, key)
    zeroed = relax_lib.without_gradient(
        relax_lib.RelaxState(params, opt_state, state.cv_grad))
    item_grads = [item(zeroed, k, lg).cv_grad
                  for k, lg in zip(jax.random.split(key, 4), logits)]
    mean = jax.tree_util.tree_map(lambda *g: sum(g) / 4, *item_grads)
    updates, opt_state = optimizer.update(mean, opt_state, params)
    params = optax.apply_updates(params, updates)
    for a, b in zip(jax.tree_util.tree_leaves((params, opt_state, mean)),
                    jax.tree_util.tree_leaves((ours.params, ours.opt_state,
                                               ours.cv_grad))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # Not the old rule (per-item Adam steps, states averaged): after two steps
  # that gives different parameters.
  averaged = state
  for step in range(2):
    key = jax.random.PRNGKey(30 + step)
    items = [item(averaged, k, lg)
             for k, lg in zip(jax.random.split(key, 4), logits)]
    averaged = jax.tree_util.tree_map(
        lambda *s: (sum(s) / 4).astype(s[0].dtype), *items)
  assert any(not np.allclose(a, b, rtol=1e-3) for a, b in zip(
      jax.tree_util.tree_leaves(averaged.params),
      jax.tree_util.tree_leaves(ours.params)))


def test_relax_batch_update_skips_items_with_a_non_finite_gradient():
  logits = jnp.zeros((1, 3))
  est = estimators.get("relax")
  state = est.init(jax.random.PRNGKey(0), logits)
  grads = jax.tree_util.tree_map(
      lambda p: jnp.stack([jnp.ones_like(p), jnp.full_like(p, jnp.nan)]),
      state.params)
  one = relax_lib.batch_update(state, grads, **est.kwargs)
  ref = relax_lib.apply_cv_gradient(
      state, jax.tree_util.tree_map(jnp.ones_like, state.params))
  for a, b in zip(jax.tree_util.tree_leaves(one),
                  jax.tree_util.tree_leaves(ref)):
    np.testing.assert_array_equal(a, b)
  none = relax_lib.batch_update(
      state, jax.tree_util.tree_map(lambda g: g[1:], grads), **est.kwargs)
  for a, b in zip(jax.tree_util.tree_leaves(none),
                  jax.tree_util.tree_leaves(state)):
    np.testing.assert_array_equal(a, b)


def test_conditional_relaxed_sample_is_conditional():
  r"""z~ | b: argmax(z~) == b always; pooled over b, z~ ~ z (two-sample KS).

  Kolmogorov-Smirnov on each of the K*C = 8 coordinates of rows with random
  and far-apart logits, 20,000 draws against 20,000 independent draws of z;
  Bonferroni: total false-failure probability FALSE_FAILURE.
  """
  logits = jnp.asarray([[0.3, -1.2, 0.8, 0.0], [0.0, 6.0, -6.0, 2.0]])
  log_p = jax.nn.log_softmax(logits, axis=-1)
  n = 20_000
  k_z, k_v, k_ref, k_unif = jax.random.split(jax.random.PRNGKey(22), 4)
  z = log_p + jax.random.gumbel(k_z, (n,) + logits.shape)      # [N, K, C]
  b = jnp.argmax(z, axis=-1)                                   # [N, K]
  v = jax.random.uniform(k_v, (n,) + logits.shape, minval=1e-30, maxval=1.0)
  cond = jax.jit(jax.vmap(relax_lib._conditional_gumbel,  # pylint: disable=protected-access
                          in_axes=(0, 0, None)))
  z_tilde = np.asarray(cond(v, b, log_p))
  np.testing.assert_array_equal(np.argmax(z_tilde, -1), np.asarray(b))
  ref = np.asarray(log_p + jax.random.gumbel(k_ref, (n,) + logits.shape))
  alpha = FALSE_FAILURE / logits.size
  p_values = [stats.ks_2samp(z_tilde[:, i, j], ref[:, i, j]).pvalue
              for i in range(2) for j in range(4)]
  assert min(p_values) > alpha, p_values
  # Power: conditioned on a b drawn uniformly instead of from Cat(p), the
  # pooled law is wrong and the same test rejects it.
  b_unif = jax.random.randint(k_unif, (n, 2), 0, 4)
  wrong = np.asarray(cond(v, b_unif, log_p))
  assert min(stats.ks_2samp(wrong[:, i, j], ref[:, i, j]).pvalue
             for i in range(2) for j in range(4)) < alpha


@pytest.mark.parametrize("learn_temperature", [True, False])
def test_relax_with_the_f_term_is_unbiased(learn_temperature):
  logits, _ = helpers.random_problem(23, 2, 3)
  f = _smooth_objective(23, 2, 3)
  est = estimators.get("relax", include_f=True, hidden_sizes=(8,),
                       learn_temperature=learn_temperature)
  state = est.init(jax.random.PRNGKey(24), logits)
  # Move eta and the temperature away from their starting values.
  state = state._replace(params={**state.params, "f_scale": jnp.asarray(0.7),
                                 "log_temperature": jnp.asarray(-0.3)})
  grads = _stateful_draws(est, jax.random.PRNGKey(25), logits, f, state,
                          NUM_DRAWS)
  _assert_unbiased(grads, estimators.get("exact")(None, logits, f))
  out = est.estimate(jax.random.PRNGKey(26), logits, f, state=state)
  assert int(out.num_evals) == 3
  # eta and (if learned) the temperature get a gradient.
  assert float(out.state.cv_grad["f_scale"]) != 0.0
  assert (float(out.state.cv_grad["log_temperature"]) != 0.0) == (
      learn_temperature)


def test_relax_with_the_f_term_rejects_a_non_differentiable_f():
  logits, f = helpers.random_problem(0, 1, 3)
  est = estimators.get("relax", include_f=True)
  state = est.init(jax.random.PRNGKey(0), logits)
  with pytest.raises(ValueError, match="relax with include_f=True.*does not "
                     "depend differentiably"):
    est.estimate(jax.random.PRNGKey(1), logits, f, state=state)
  with pytest.raises(ValueError, match="include_f must be True or False"):
    estimators.get("relax", include_f=1).init(jax.random.PRNGKey(0), logits)


def test_relax_state_restores_from_an_orbax_checkpoint(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  logits, _ = helpers.random_problem(27, 2, 3)
  f = _smooth_objective(27, 2, 3)
  est = estimators.get("relax", include_f=True)
  step = jax.jit(lambda s, k: est.estimate(k, logits, f, state=s))
  state = step(est.init(jax.random.PRNGKey(0), logits),
               jax.random.PRNGKey(1)).state
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "relax", state)
  checkpointer.wait_until_finished()
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
  restored = checkpointer.restore(tmp_path / "relax", abstract)
  assert isinstance(restored, relax_lib.RelaxState)
  assert (jax.tree_util.tree_structure(restored)
          == jax.tree_util.tree_structure(state))
  a, b = step(state, jax.random.PRNGKey(2)), step(restored,
                                                  jax.random.PRNGKey(2))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------
# Learned temperatures of the relaxed estimators.


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel_softmax"])
def test_learned_temperature_gets_the_pathwise_gradient(name):
  logits = jnp.asarray([[0.2, -0.4, 1.0], [1.0, 0.0, -0.5]])
  f = _smooth_objective(28, 2, 3)
  key = jax.random.PRNGKey(29)

  def loss(log_tau):
    est = estimators.get(name, temperature=jnp.exp(log_tau))
    return expectation(key, logits, f, estimator=est)

  value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(0.3))
  g = jax.random.gumbel(key, logits.shape)
  soft = lambda lt: jax.nn.softmax((logits + g) / jnp.exp(lt), axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(logits + g, -1), 3)
  at = soft(0.3) if name == "gumbel_softmax" else hard
  d_soft = jax.jvp(soft, (0.3,), (1.0,))[1]
  np.testing.assert_allclose(value, f(at), rtol=1e-6)
  np.testing.assert_allclose(grad, jnp.sum(jax.grad(f)(at) * d_soft),
                             rtol=1e-4, atol=1e-7)
  assert float(grad) != 0.0


def test_fixed_temperature_straight_through_is_unchanged():
  logits = jnp.asarray([[0.2, -0.4, 1.0], [1.0, 0.0, -0.5]])
  f = _smooth_objective(30, 2, 3)
  tau = 0.6
  out = estimators.get("st_gumbel_softmax", temperature=tau).estimate(
      jax.random.PRNGKey(31), logits, f)
  g = jax.random.gumbel(jax.random.PRNGKey(31), logits.shape)
  hard = jax.nn.one_hot(jnp.argmax(logits + g, -1), 3)
  np.testing.assert_array_equal(out.samples[0], hard)   # exactly one-hot
  y = jax.nn.softmax((logits + g) / tau, axis=-1)
  df = jax.grad(f)(hard)
  expect = y * (df - jnp.sum(y * df, -1, keepdims=True)) / tau
  np.testing.assert_allclose(out.grad, expect, rtol=1e-4, atol=1e-6)
  # A fixed temperature gives nothing but the logit gradient.
  theta_grad = jax.grad(lambda w: expectation(
      jax.random.PRNGKey(31), logits, lambda z: f(z) * w,
      estimator="st_gumbel_softmax", temperature=tau))(1.0)
  np.testing.assert_allclose(theta_grad, f(hard), rtol=1e-5)


def test_a_temperature_array_must_be_a_float_scalar():
  with pytest.raises(ValueError, match="floating-point scalar"):
    estimators.get("gumbel_softmax", temperature=jnp.ones(2))(
        jax.random.PRNGKey(0), jnp.zeros((1, 3)), lambda z: jnp.sum(z ** 2))


# ---------------------------------------------------------------------------
# Masked categories and far-apart logits (POLICY.md).


_MASKED = jnp.asarray([[0.0, -jnp.inf, 1.0, -jnp.inf],
                       [0.0, 60.0, -60.0, 1e3],
                       [-50.0, 0.0, 0.0, -jnp.inf]])


@pytest.mark.parametrize("name,settings", [
    ("relax", {}),
    ("relax", {"include_f": True}),
    ("gumbel_softmax", {}),
    ("st_gumbel_softmax", {}),
    ("reinmax", {}),
])
def test_masked_categories_and_far_apart_logits(name, settings):
  f = _smooth_objective(32, 3, 4)
  est = estimators.get(name, **settings)
  masked = np.isneginf(np.asarray(_MASKED))
  state = est.init(jax.random.PRNGKey(0), _MASKED) if est.stateful else None
  outs = jax.jit(jax.vmap(lambda k: est.estimate(k, _MASKED, f, state=state)))(
      jax.random.split(jax.random.PRNGKey(33), 2000))
  for leaf in jax.tree_util.tree_leaves(outs):
    assert np.all(np.isfinite(leaf)), name
  samples = np.asarray(outs.samples[:, 0])                   # [N, K, C]
  assert np.all(samples[:, masked] == 0.0)                   # never drawn
  assert np.all(np.asarray(outs.grad)[:, masked] == 0.0)     # zero gradient
  # The logit 1e3 dominates its row: every draw picks it.
  if not est.pathwise or name != "gumbel_softmax":
    np.testing.assert_array_equal(samples[:, 1, 3], 1.0)
  # Through the expectation layer, with a batch (RELAX's batch update too).
  batch = jnp.stack([_MASKED, _MASKED])
  loss = lambda lg: expectation(jax.random.PRNGKey(34), lg, f, estimator=est,
                                state=state)
  if est.stateful:
    (values, new_state), grad = jax.value_and_grad(
        lambda lg: (lambda o: (jnp.sum(o[0]), o[1]))(loss(lg)),
        has_aux=True)(batch)
    for leaf in jax.tree_util.tree_leaves(new_state):
      assert np.all(np.isfinite(leaf))
  else:
    values, grad = jax.value_and_grad(lambda lg: jnp.sum(loss(lg)))(batch)
  assert np.isfinite(float(values)) and np.all(np.isfinite(grad))
  assert np.all(np.asarray(grad)[:, masked] == 0.0)
