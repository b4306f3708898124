"""arsm_jax.expectation: the estimator inside jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import arsm_jax
from arsm_jax import estimators
from tests import helpers

SINGLE_DRAW = ("arsm", "ars", "ar", "reinforce")


def small_model(seed=0, num_dims=2, num_cats=3):
  """f_theta(z) = tanh(w . z + b)^2 + table(z): non-additive, smooth in theta."""
  rng = np.random.default_rng(seed)
  theta = {"w": jnp.asarray(rng.normal(size=(num_dims, num_cats)), jnp.float32),
           "b": jnp.asarray(0.3, jnp.float32)}
  logits, table_f = helpers.random_problem(seed + 100, num_dims, num_cats)

  def f(theta, z):
    return jnp.tanh(jnp.sum(theta["w"] * z) + theta["b"]) ** 2 + table_f(z)

  return theta, logits, f


@pytest.mark.parametrize("name", SINGLE_DRAW + ("exact",))
def test_logit_gradient_is_exactly_the_estimate(name):
  theta, logits, f = small_model()
  key = jax.random.PRNGKey(4)
  g = jax.grad(lambda lg: arsm_jax.expectation(key, lg, lambda z: f(theta, z),
                                               estimator=name))(logits)
  own = estimators.get(name)(key, logits, lambda z: f(theta, z))
  np.testing.assert_array_equal(g, own)


@pytest.mark.parametrize("name", SINGLE_DRAW)
def test_parameter_gradient_is_pathwise_at_the_sample(name):
  theta, logits, f = small_model(1)
  key = jax.random.PRNGKey(2)
  value, g = jax.value_and_grad(
      lambda th: arsm_jax.expectation(key, logits, lambda z: f(th, z),
                                      estimator=name))(theta)
  z = estimators.get(name).estimate(key, logits,
                                    lambda z: f(theta, z)).samples[0]
  np.testing.assert_allclose(value, f(theta, z), rtol=1e-6)
  expected = jax.grad(f)(theta, z)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
      g, expected)


# Total false-failure probability 1e-3, Bonferroni over the
# 2 estimators x (K*C logits + K*C + 1 theta) coordinates.
NUM_DRAWS = 20_000


@pytest.mark.parametrize("name", ("arsm", "reinforce"))
def test_full_gradient_is_unbiased_for_logits_and_theta(name):
  theta, logits, f = small_model(2)

  def exact_objective(lg, th):
    return estimators.exact_value(lg, lambda z: f(th, z))

  exact_lg, exact_th = jax.grad(exact_objective, argnums=(0, 1))(logits, theta)

  def one(key):
    return jax.grad(
        lambda lg, th: arsm_jax.expectation(key, lg, lambda z: f(th, z),
                                            estimator=name),
        argnums=(0, 1))(logits, theta)

  keys = jax.random.split(jax.random.PRNGKey(9), NUM_DRAWS)
  g_lg, g_th = jax.jit(jax.vmap(one))(keys)
  num_tests = 2 * (2 * logits.size + 1)
  thr = helpers.z_threshold(1e-3, num_tests)
  assert np.all(helpers.z_scores(g_lg, exact_lg) < thr)
  assert np.all(helpers.z_scores(g_th["w"], exact_th["w"]) < thr)
  assert np.all(helpers.z_scores(g_th["b"][:, None], exact_th["b"][None]) < thr)


@pytest.mark.parametrize("name", SINGLE_DRAW)
def test_batch_of_items_equals_separate_calls(name):
  theta, _, f = small_model(3)
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(8, 2, 3)), jnp.float32)
  x = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)

  def g(z, x_item):
    return f(theta, z) * jnp.sum(x_item)

  def loss(k, lg, xs):
    return arsm_jax.expectation(k, lg, g, xs, estimator=name).sum()

  value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=1))
  key = jax.random.PRNGKey(5)
  batched = jax.jit(lambda k, lg, xs: arsm_jax.expectation(
      k, lg, g, xs, estimator=name))(key, logits, x)
  assert batched.shape == (8,)
  _, grad_b = value_and_grad(key, logits, x)
  keys = jax.random.split(key, 8)
  for i in range(8):
    value_i, grad_i = value_and_grad(keys[i], logits[i], x[i])
    np.testing.assert_allclose(batched[i], value_i, rtol=1e-6)
    np.testing.assert_allclose(grad_b[i], grad_i, rtol=1e-5, atol=1e-7)


def test_two_batch_dimensions_and_vmap_of_grad():
  theta, _, f = small_model(4)
  logits = jnp.zeros((2, 3, 2, 3))
  out = jax.jit(lambda lg: arsm_jax.expectation(
      jax.random.PRNGKey(0), lg, lambda z: f(theta, z)))(logits)
  assert out.shape == (2, 3)
  per_key = jax.jit(jax.vmap(jax.grad(
      lambda k, lg: arsm_jax.expectation(k, lg, lambda z: f(theta, z)).mean(),
      argnums=1), in_axes=(0, None)))(
          jax.random.split(jax.random.PRNGKey(1), 4), logits)
  assert per_key.shape == (4,) + logits.shape
  assert np.all(np.isfinite(per_key))


def test_f_depending_on_logits_gets_the_direct_term():
  # f(z) = log q(z): E_q[log q] is minus the entropy; its gradient needs both
  # the score term and the direct dependence of f on the logits.
  logits = jnp.array([[0.5, -0.2, 0.1], [1.0, 0.0, -1.0]])

  def neg_entropy(lg):
    return jnp.sum(jax.nn.softmax(lg) * jax.nn.log_softmax(lg))

  def surrogate(key, lg):
    return arsm_jax.expectation(
        key, lg, lambda z: jnp.sum(z * jax.nn.log_softmax(lg)),
        estimator="exact")

  np.testing.assert_allclose(
      jax.grad(surrogate, argnums=1)(jax.random.PRNGKey(0), logits),
      jax.grad(neg_entropy)(logits), rtol=1e-5, atol=1e-6)


def test_bad_batch_arguments_are_rejected():
  with pytest.raises(ValueError, match="batch shape \\(4,\\)"):
    arsm_jax.expectation(jax.random.PRNGKey(0), jnp.zeros((4, 2, 3)),
                         lambda z, x: jnp.sum(z) * x, jnp.ones(3))
  with pytest.raises(ValueError, match="\\[..., K, C\\]"):
    arsm_jax.expectation(jax.random.PRNGKey(0), jnp.zeros(3), jnp.sum)


def test_pathwise_samples_keeps_the_first_draws_and_the_logit_gradient():
  theta, logits, f = small_model(3)
  key = jax.random.PRNGKey(5)
  est = estimators.get("reinforce_loo", num_samples=4)

  def surrogate(th, lg, **kw):
    return arsm_jax.expectation(key, lg, lambda z: f(th, z), estimator=est,
                                **kw)

  samples = est.estimate(key, logits, lambda z: f(theta, z)).samples
  # The first draw alone carries the theta gradient and the value...
  value, g = jax.value_and_grad(surrogate)(theta, logits, pathwise_samples=1)
  np.testing.assert_allclose(value, f(theta, samples[0]), rtol=1e-6)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
      g, jax.grad(f)(theta, samples[0]))
  # ...two draws carry their mean, and the logit gradient never changes.
  g2 = jax.grad(surrogate)(theta, logits, pathwise_samples=2)
  mean2 = jax.tree_util.tree_map(
      lambda a, b: (a + b) / 2, jax.grad(f)(theta, samples[0]),
      jax.grad(f)(theta, samples[1]))
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
      g2, mean2)
  full = jax.grad(surrogate, argnums=1)(theta, logits)
  for kept in (1, 2, 10):
    np.testing.assert_array_equal(
        jax.grad(surrogate, argnums=1)(theta, logits, pathwise_samples=kept),
        full)
  for bad in (0, -1, True, 1.5):
    with pytest.raises(ValueError, match=f"pathwise_samples must be None or "
                       f"an int >= 1; got {bad!r}"):
      surrogate(theta, logits, pathwise_samples=bad)


def _counting_draw(key, logits, f, *, state):
  """A stateful test estimator: REINFORCE, with a state that counts draws."""
  out = estimators.get("reinforce").estimate(key, logits, f)
  return out._replace(state={"seen": state["seen"],
                             "count": state["count"] + 1})


def test_batch_state_goes_through_the_estimator_hooks():
  # Four items; each draws with the estimator's item_state and the batch's
  # new state is its batch_update of the items' states. No hooks: every
  # item sees the state itself and the new state is the items' mean, in the
  # state's dtypes.
  hooked = estimators.Estimator(
      "_counting_test", _counting_draw, stateful=True,
      init_fn=lambda key, logits: {"seen": jnp.float32(5.0),
                                   "count": jnp.int32(3)},
      item_state_fn=lambda s: {**s, "seen": jnp.float32(-1.0)},
      batch_update_fn=lambda s, items: jax.tree_util.tree_map(
          lambda x: jnp.sum(x, axis=0), items))
  logits = jnp.zeros((4, 2, 3))
  key = jax.random.PRNGKey(0)
  state = hooked.init(key, logits[0])
  _, new = arsm_jax.expectation(key, logits, jnp.sum, estimator=hooked,
                                state=state)
  assert (float(new["seen"]), int(new["count"])) == (-4.0, 16)
  plain = estimators.Estimator(
      "_counting_test", _counting_draw, stateful=True, init_fn=hooked.init_fn)
  _, new = arsm_jax.expectation(key, logits, jnp.sum, estimator=plain,
                                state=state)
  assert (float(new["seen"]), int(new["count"])) == (5.0, 4)
  assert new["count"].dtype == jnp.int32
