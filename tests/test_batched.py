"""arsm_jax.batched: batch-level deduplication equals the plain ARSM path bit for bit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import arsm_jax
from arsm_jax import batched
from arsm_jax import estimators

BATCH, DIMS, CATS = 8, 4, 5


def problem(scale, seed=0, num_dims=DIMS, num_cats=CATS):
  """Logits ``[B, K, C]``, per-item data x ``[B, K, C]`` and parameters theta.

  ``f(theta, z, x) = tanh(sum(w * z) + b)^2 + sum(x * z)``: non-additive in z,
  smooth in theta, and its per-point arithmetic does not depend on how many
  points are evaluated together (so bit-for-bit equality is well defined).
  """
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(scale * rng.normal(size=(BATCH, num_dims, num_cats)),
                       jnp.float32)
  x = jnp.asarray(rng.normal(size=(BATCH, num_dims, num_cats)), jnp.float32)
  theta = {"w": jnp.asarray(rng.normal(size=(num_dims, num_cats)), jnp.float32),
           "b": jnp.asarray(0.3, jnp.float32)}

  def f(theta, z, xi):
    return jnp.tanh(jnp.sum(theta["w"] * z) + theta["b"]) ** 2 + jnp.sum(xi * z)

  return logits, x, theta, f


def loss_fn(f, use_batched, buffer_size=None):
  def loss(theta, logits, key, x):
    g = lambda z, xi: f(theta, z, xi)
    if use_batched:
      vals = batched.expectation(key, logits, g, x, buffer_size=buffer_size)
    else:
      vals = arsm_jax.expectation(key, logits, g, x,
                                  estimator=estimators.get("arsm"))
    return jnp.mean(vals), vals
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


def brute_distinct(key, logits):
  pts = np.asarray(jax.vmap(batched.points)(
      jax.random.split(key, logits.shape[0]), logits))
  return np.array([len({tuple(r) for r in p}) for p in pts])


def assert_identical(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("scale", (1.0, 10.0))
def test_estimate_and_gradients_equal_plain_with_and_without_overflow(scale):
  logits, x, theta, f = problem(scale)
  key = jax.random.PRNGKey(3)
  plain = loss_fn(f, False)(theta, logits, key, x)
  total = int(brute_distinct(key, logits).sum())
  num_all = BATCH * batched.num_points(DIMS, CATS)
  assert total < num_all, "test needs some duplicates"
  # Exactly enough room, more room, and too little (the overflow branch).
  for size in (total, total - 1):
    dedup = loss_fn(f, True, size)(theta, logits, key, x)
    assert_identical(dedup, plain)
    _, stats = batched.expectation(
        key, logits, lambda z, xi: f(theta, z, xi), x, buffer_size=size,
        return_stats=True)
    assert bool(stats.overflow) == (size < total), (size, total)
    assert int(stats.total) == total


def test_plain_path_for_large_or_no_buffer():
  logits, x, theta, f = problem(1.0, seed=1)
  key = jax.random.PRNGKey(0)
  plain = loss_fn(f, False)(theta, logits, key, x)
  num_all = BATCH * batched.num_points(DIMS, CATS)
  for size in (None, num_all, num_all + 1):
    assert_identical(loss_fn(f, True, size)(theta, logits, key, x), plain)


def test_logit_gradient_is_the_arsm_estimate_and_theta_gradient_pathwise():
  """Against the estimator directly, not only against expectation."""
  logits, x, theta, f = problem(3.0, seed=2)
  key = jax.random.PRNGKey(5)
  (_, vals), (g_theta, _) = loss_fn(f, True, 40)(theta, logits, key, x)
  g_logits = jax.grad(lambda lg: jnp.sum(batched.expectation(
      key, lg, lambda z, xi: f(theta, z, xi), x, buffer_size=40)))(logits)
  keys = jax.random.split(key, BATCH)
  est = estimators.get("arsm")
  for b in range(BATCH):
    fb = lambda z, b=b: f(theta, z, x[b])
    out = est.estimate(keys[b], logits[b], fb)
    # Eager against jitted and vmapped f: equal up to float rounding (the
    # bit-for-bit comparison is against the plain path, above).
    np.testing.assert_allclose(g_logits[b], out.grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vals[b], fb(out.samples[0]), rtol=1e-6)
  expected = jax.tree_util.tree_map(
      lambda *gs: sum(gs) / BATCH,
      *[jax.grad(lambda th, b=b: f(th, est.estimate(
          keys[b], logits[b], lambda z: f(theta, z, x[b])).samples[0],
                                  x[b]))(theta) for b in range(BATCH)])
  jax.tree_util.tree_map(
      lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-7),
      g_theta, expected)


def test_distinct_counts_match_brute_force():
  logits, _, _, _ = problem(10.0, seed=3)
  key = jax.random.PRNGKey(7)
  counts = np.asarray(batched.count_distinct(key, logits))
  np.testing.assert_array_equal(counts, brute_distinct(key, logits))
  assert counts.min() >= 1 and counts.max() <= batched.num_points(DIMS, CATS)


def test_one_dimension_tabulates_categories():
  logits, x, theta, f = problem(2.0, seed=4, num_dims=1, num_cats=6)
  key = jax.random.PRNGKey(1)
  plain = loss_fn(f, False)(theta, logits, key, x)
  for size in (BATCH * 6 - 1, 7):   # both overflow: all C are distinct
    assert_identical(loss_fn(f, True, size)(theta, logits, key, x), plain)


def test_estimator_settings_are_honoured():
  logits, x, theta, f = problem(10.0, seed=5)
  key = jax.random.PRNGKey(2)
  est = estimators.get("arsm", skip_if_all_equal=True)
  g = lambda z, xi: f(theta, z, xi)
  plain = arsm_jax.expectation(key, logits, g, x, estimator=est)
  dedup = batched.expectation(key, logits, g, x, estimator=est, buffer_size=50)
  np.testing.assert_array_equal(dedup, plain)


def test_masked_categories_stay_exact():
  logits, x, theta, f = problem(1.0, seed=6)
  logits = logits.at[:, :, 0].set(-jnp.inf)
  key = jax.random.PRNGKey(4)
  plain = loss_fn(f, False)(theta, logits, key, x)
  dedup = loss_fn(f, True, 60)(theta, logits, key, x)
  assert_identical(dedup, plain)
  assert np.all(np.asarray(dedup[1][1])[:, :, 0] == 0)


def test_buffer_sizer():
  sizer = batched.BufferSizer(num_points=1000, headroom=0.1, multiple=64,
                              window=3)
  assert sizer.size == 1000                    # nothing seen: plain path
  assert sizer.observe(500) == 576             # 550 rounded up to 64
  assert sizer.observe(100) == 576             # the max of the window
  sizer.observe(100)
  assert sizer.observe(100) == 128             # 500 left the window
  assert sizer.observe(990) == 1000            # capped at every point
  sizer = batched.BufferSizer(num_points=1000, headroom=0.0, multiple=10,
                              min_saving=0.2)
  assert sizer.observe(790) == 790
  assert sizer.observe(810) == 1000            # saves < 20 %: plain path
  with pytest.raises(ValueError, match="min_saving"):
    batched.BufferSizer(num_points=10, min_saving=1.0)
  with pytest.raises(ValueError, match="headroom"):
    batched.BufferSizer(num_points=10, headroom=-1)
  with pytest.raises(ValueError, match="multiple"):
    batched.BufferSizer(num_points=10, multiple=0)


def test_bad_arguments():
  logits, x, theta, f = problem(1.0)
  key = jax.random.PRNGKey(0)
  g = lambda z, xi: f(theta, z, xi)
  with pytest.raises(ValueError, match="buffer_size"):
    batched.expectation(key, logits, g, x, buffer_size=0)
  with pytest.raises(ValueError, match="buffer_size"):
    batched.expectation(key, logits, g, x, buffer_size="10")
  with pytest.raises(ValueError, match="'arsm' only"):
    batched.expectation(key, logits, g, x, estimator="reinforce",
                        buffer_size=10)
  with pytest.raises(ValueError, match=r"\[B, K, C\]"):
    batched.expectation(key, logits[0], g, x, buffer_size=10)
  with pytest.raises(ValueError, match="batch size"):
    batched.expectation(key, logits, g, x[:3], buffer_size=10)


def test_one_trace_per_buffer_size():
  logits, x, theta, f = problem(10.0, seed=8)
  traces = []

  @functools.partial(jax.jit, static_argnames="size")
  def run(key, size):
    traces.append(size)
    return batched.expectation(key, logits, lambda z, xi: f(theta, z, xi), x,
                               buffer_size=size)

  for seed in range(3):
    run(jax.random.PRNGKey(seed), size=30)
  assert traces == [30]
