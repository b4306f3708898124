"""Reliability of every registered estimator on bad and extreme input (issue 17).

Undefined distributions give NaN (the policy of ``estimators/contract.py``),
masked categories and far-apart logits give finite estimates, keys are
checked at the contract's edge, and ``eval_batch_size`` bounds ARSM's
scratch memory. Settings, checked at ``get``, are in ``test_registry.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import estimators
from arsm_jax.expectation import expectation
from arsm_jax.estimators import contract

ALL = estimators.names()
ARSM_FAMILY = ("arsm", "ars", "ar", "arsm_multi", "ars_multi", "ar_multi")

NEG_INF = -jnp.inf
W1 = jnp.array([[0.3, -1.0, 2.0, 0.5], [1.0, 0.2, -0.4, 0.7],
                [-0.6, 0.9, 0.1, -0.2]])
W2 = jnp.array([[0.5, 0.1, -0.3, 0.2], [-0.2, 0.4, 0.3, -0.1],
                [0.2, -0.5, 0.6, 0.3]])
GOOD = jnp.array([[0.1, -0.3, 0.5, 0.0], [0.2, 0.1, -0.2, 0.4],
                  [-0.5, 0.3, 0.0, 0.2]])


def smooth_objective(z):
  """Differentiable in z (for the pathwise estimators), not linear."""
  return jnp.sum(z * W1) + 0.5 * jnp.sum(z * W2) ** 2


def _leaves_equal(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(
      np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


# ---------------------------------------------------------------------------
# Undefined distributions: NaN out, state unchanged.

UNDEFINED = {
    "nan": GOOD.at[0, 1].set(jnp.nan),
    "+inf": GOOD.at[1, 2].set(jnp.inf),
    "all -inf": GOOD.at[2].set(NEG_INF),
    "nan and -inf": GOOD.at[0].set(jnp.array([NEG_INF, jnp.nan, 0.0, 1.0])),
}


def test_undefined_rows():
  rows = jnp.array([[0.0, 1.0, 2.0], [jnp.nan, 0.0, 0.0], [0.0, jnp.inf, 0.0],
                    [NEG_INF, NEG_INF, NEG_INF], [NEG_INF, 0.0, NEG_INF],
                    [1e30, -1e30, 0.0], [NEG_INF, jnp.inf, NEG_INF]])
  np.testing.assert_array_equal(
      contract.undefined_rows(rows),
      [False, True, True, True, False, False, True])


@pytest.mark.parametrize("name", ALL)
def test_undefined_distribution_gives_nan_and_keeps_the_state(name):
  # One defined item and four undefined ones, under jit and vmap: only the
  # undefined items become NaN.
  est = estimators.get(name)
  key = jax.random.PRNGKey(0)
  logits = jnp.stack([GOOD] + list(UNDEFINED.values()))          # [5, K, C]
  state = est.init(key, GOOD)
  run = jax.jit(jax.vmap(
      lambda lg: est.estimate(key, lg, smooth_objective, state=state)))
  out = run(logits)
  assert np.all(np.isfinite(out.grad[0])) and np.isfinite(out.value[0])
  assert np.all(np.isfinite(out.weights[0]))
  for i in range(1, 5):
    assert np.all(np.isnan(out.grad[i])), (name, i, out.grad[i])
    assert np.isnan(out.value[i]) and np.all(np.isnan(out.weights[i]))
    if est.stateful:
      item_state = jax.tree_util.tree_map(lambda s, i=i: s[i], out.state)
      assert _leaves_equal(item_state, state), name
  if est.stateful:
    good_state = jax.tree_util.tree_map(lambda s: s[0], out.state)
    assert not _leaves_equal(good_state, state)  # a defined draw does learn
  # Eagerly and through the one-line contract too.
  for bad in UNDEFINED.values():
    assert np.all(np.isnan(est(key, bad, smooth_objective, state=state)))


@pytest.mark.parametrize("name", ARSM_FAMILY)
def test_arsm_family_no_longer_finite_on_a_nan_row(name):
  # Before issue 17 a NaN row quietly sampled category 0 and gave finite
  # numbers; the other row here is perfectly fine.
  logits = jnp.array([[jnp.nan, 0.0, 1.0], [0.5, -0.5, 0.0]])
  f = lambda z: jnp.sum(z * jnp.arange(6.0).reshape(2, 3))
  out = estimators.get(name).estimate(jax.random.PRNGKey(1), logits, f)
  assert np.all(np.isnan(out.grad)) and np.isnan(out.value)


@pytest.mark.parametrize("name", ALL)
def test_expectation_of_an_undefined_distribution_is_nan(name):
  est = estimators.get(name)
  key = jax.random.PRNGKey(2)
  state = est.init(key, GOOD)
  theta = jnp.float32(0.7)
  kwargs = {"state": state} if est.stateful else {}

  def loss(lg, th):
    out = expectation(
        key, lg, lambda z: th * smooth_objective(z), estimator=name, **kwargs)
    return out[0] if est.stateful else out

  value, (g_logits, g_theta) = jax.value_and_grad(loss, argnums=(0, 1))(
      UNDEFINED["nan"], theta)
  assert np.isnan(value)
  assert np.all(np.isnan(g_logits))
  assert np.isnan(g_theta)  # nothing trains on a NaN batch

  # A batch with one undefined item: that item is NaN, the other one is not,
  # nor is the gradient of the defined item's loss.
  batch = jnp.stack([GOOD, UNDEFINED["all -inf"]])
  values = loss(batch, theta)
  g_batch = jax.grad(lambda lg: loss(lg, theta)[0])(batch)
  assert np.isfinite(values[0]) and np.isnan(values[1])
  assert np.all(np.isfinite(g_batch[0]))


# ---------------------------------------------------------------------------
# Masked categories and far-apart logits: finite, masked never drawn, zero
# gradient there. The same inputs for every estimator.

EXTREME = jnp.array([[0.5, NEG_INF, 0.0, -1.0],
                     [0.0, 60.0, -60.0, 1e3],
                     [NEG_INF, 60.0, -60.0, NEG_INF]])
MASKED = np.isneginf(np.asarray(EXTREME))
NUM_DRAWS = 64


@pytest.mark.parametrize("name", ALL)
def test_masked_and_far_apart_logits_give_finite_estimates(name):
  est = estimators.get(name)
  keys = jax.random.split(jax.random.key(3), NUM_DRAWS)
  state = est.init(keys[0], GOOD)
  outs = jax.jit(jax.vmap(
      lambda k: est.estimate(k, EXTREME, smooth_objective, state=state)))(keys)
  grads = np.asarray(outs.grad)                                   # [N, K, C]
  assert np.all(np.isfinite(grads)), name
  assert np.all(np.isfinite(outs.value)) and np.all(np.isfinite(outs.weights))
  assert np.all(grads[:, MASKED] == 0.0), name
  # Masked categories are never drawn: no sample with weight carries them.
  samples = np.asarray(outs.samples)                           # [N, S, K, C]
  weights = np.asarray(outs.weights)                           # [N, S]
  assert np.all(samples[weights != 0][:, MASKED] == 0.0), name
  if est.stateful:
    for leaf in jax.tree_util.tree_leaves(outs.state):
      assert np.all(np.isfinite(leaf)), name

    # Carried forward for a few steps, the state stays finite.
    def step(st, k):
      out = est.estimate(k, EXTREME, smooth_objective, state=st)
      return out.state, out.grad

    final, grads = jax.jit(lambda s: jax.lax.scan(step, s, keys[:8]))(state)
    assert np.all(np.isfinite(grads))
    for leaf in jax.tree_util.tree_leaves(final):
      assert np.all(np.isfinite(leaf)), name


# ---------------------------------------------------------------------------
# PRNG keys at the contract's edge.

TYPED_BATCH = jax.random.split(jax.random.key(0), 3)
RAW_BATCH = jax.random.split(jax.random.PRNGKey(0), 3)


@pytest.mark.parametrize("name", ALL)
def test_bad_keys_raise_saying_what_to_pass(name):
  est = estimators.get(name)
  state = est.init(jax.random.PRNGKey(0), GOOD)
  call = lambda k: est(k, GOOD, smooth_objective, state=state)
  with pytest.raises(ValueError, match=r"int seed 0; pass jax\.random\.key\(0\)"):
    call(0)
  with pytest.raises(ValueError, match=r"batch of keys of shape \(3,\).*vmap"):
    call(TYPED_BATCH)
  with pytest.raises(ValueError, match=r"batch of raw keys.*\(3, 2\).*vmap"):
    call(RAW_BATCH)
  with pytest.raises(ValueError, match=r"uint32\[2\].*int32 array of shape"):
    call(jnp.array([0, 1], jnp.int32))
  with pytest.raises(ValueError, match="PRNG key"):
    call(jnp.zeros(2))
  with pytest.raises(ValueError, match="PRNG key"):
    call(np.uint32(3))
  if est.needs_key:
    with pytest.raises(ValueError, match=r"key is None.*jax\.random\.key"):
      call(None)
  else:
    call(None)  # exact ignores its key
  # Inside jit the check sees the traced key's shape, so it still fires.
  with pytest.raises(ValueError, match="batch of keys"):
    jax.jit(call)(TYPED_BATCH)
  # Both kinds of single key work, eagerly and under jit.
  for key in (jax.random.key(1), jax.random.PRNGKey(1)):
    assert call(key).shape == GOOD.shape
  if est.stateful:
    with pytest.raises(ValueError, match=f"{name}.init.*int seed 5"):
      est.init(5, GOOD)
    with pytest.raises(ValueError, match="batch of keys"):
      est.init(TYPED_BATCH, GOOD)


@pytest.mark.parametrize("batched", [False, True])
def test_expectation_checks_its_key_before_splitting_it(batched):
  logits = jnp.stack([GOOD, -GOOD]) if batched else GOOD  # [2, K, C] or [K, C]
  call = lambda k, name="reinforce": expectation(k, logits, smooth_objective,
                                                 estimator=name)
  with pytest.raises(ValueError, match=r"expectation: .*int seed 0; pass "
                     r"jax\.random\.key\(0\)"):
    call(0)
  with pytest.raises(ValueError, match=r"expectation: key is None"):
    call(None)
  with pytest.raises(ValueError,
                     match=r"expectation: got a batch of keys of shape \(3,\)"):
    call(TYPED_BATCH)
  with pytest.raises(ValueError, match=r"expectation: got a batch of raw keys"):
    call(RAW_BATCH)
  with pytest.raises(ValueError, match="batch of keys"):
    jax.jit(call)(TYPED_BATCH)
  for key in (jax.random.key(1), jax.random.PRNGKey(1)):
    assert call(key).shape == logits.shape[:-2]
  # exact ignores its key, so None is allowed there, with or without a batch.
  assert np.all(np.isfinite(call(None, "exact")))


def test_vmap_over_raw_and_typed_keys_passes_the_check():
  est = estimators.get("reinforce")
  for keys in (TYPED_BATCH, RAW_BATCH):
    grads = jax.vmap(lambda k: est(k, GOOD, smooth_objective))(keys)
    assert grads.shape == (3,) + GOOD.shape


# ---------------------------------------------------------------------------
# Memory: eval_batch_size bounds ARSM's scratch for K > 1.


def _arsm_temp_bytes(num_dims, num_cats, batch_size):
  w = jax.random.normal(jax.random.PRNGKey(0), (num_dims, num_cats))
  est = estimators.get("arsm", eval_batch_size=batch_size)
  fn = jax.jit(lambda k, lg: est(k, lg, lambda z: jnp.sum(z * w)))
  compiled = fn.lower(jax.random.PRNGKey(0),
                      jnp.zeros((num_dims, num_cats))).compile()
  analysis = compiled.memory_analysis()
  if analysis is None:
    pytest.skip("this backend gives no compiled memory analysis")
  return analysis.temp_size_in_bytes


def test_chunked_arsm_scratch_grows_with_the_chunk_not_with_c_cubed():
  # All C(C-1)/2 + 1 one-hot pseudo vectors take (C(C-1)/2 + 1) K C 4 bytes:
  # 3.8 MiB at K = 2, C = 100 and 30 MiB at C = 200, growing like C^3 (x8
  # per doubling). Built chunk by chunk, what remains is the O(K C^2) of the
  # pseudo actions (x4 per doubling) plus one chunk's one-hot vectors.
  # Criterion: from C = 100 to 200 at chunk 64 the scratch grows less than
  # x6 (C^3 would be x8), stays under a tenth of the all-at-once one-hot
  # array, and a larger chunk (512) needs more scratch than chunk 64.
  small = _arsm_temp_bytes(2, 100, 64)
  large = _arsm_temp_bytes(2, 200, 64)
  all_onehot = (200 * 199 // 2 + 1) * 2 * 200 * 4
  assert large < 6 * small, (small, large)
  assert large < all_onehot / 10, (large, all_onehot)
  assert _arsm_temp_bytes(2, 200, 512) > large
  # Without the setting the one-hot array is built whole (the documented
  # default: fastest, most memory).
  assert _arsm_temp_bytes(2, 200, None) > all_onehot


def _linear(num_dims, num_cats, seed):
  w = jax.random.normal(jax.random.PRNGKey(seed), (num_dims, num_cats))
  return lambda z: jnp.sum(z * w)


def _table(num_dims, num_cats, seed):
  table = jax.random.normal(jax.random.PRNGKey(seed), (num_cats ** num_dims,))
  powers = num_cats ** jnp.arange(num_dims - 1, -1, -1)
  return lambda z: table[jnp.sum(jnp.argmax(z, axis=-1) * powers)]


@pytest.mark.parametrize("settings", [
    {}, {"max_distinct": 6}, {"skip_if_all_equal": True}])
@pytest.mark.parametrize("num_dims,num_cats", [(1, 7), (3, 5)])
def test_chunked_arsm_is_identical_to_unchunked(settings, num_dims, num_cats):
  logits = jax.random.normal(jax.random.PRNGKey(4), (num_dims, num_cats))
  keys = jax.random.split(jax.random.PRNGKey(5), 6)
  for make_f in (_linear, _table):
    f = make_f(num_dims, num_cats, 6)
    run = lambda est: jax.jit(jax.vmap(
        lambda k: est.estimate(k, logits, f)))(keys)
    expected = run(estimators.get("arsm", **settings))
    for batch_size in (4, 64):  # a chunk that does not divide N, and one > N
      got = run(estimators.get("arsm", eval_batch_size=batch_size,
                               **settings))
      np.testing.assert_array_equal(got.grad, expected.grad)
      np.testing.assert_array_equal(got.value, expected.value)
      np.testing.assert_array_equal(got.num_evals, expected.num_evals)


def test_chunked_ars_matches_unchunked():
  # ARS centres f over its C pseudo vectors right after evaluating them, and
  # XLA may round f's own sums (and that mean) differently for a different
  # batch shape, by an ulp (so it did before the chunking change too): equal
  # to float32 rounding, not bitwise.
  logits = jax.random.normal(jax.random.PRNGKey(4), (3, 5))
  keys = jax.random.split(jax.random.PRNGKey(5), 6)
  f = _linear(3, 5, 6)
  run = lambda est: jax.jit(jax.vmap(lambda k: est(k, logits, f)))(keys)
  np.testing.assert_allclose(run(estimators.get("ars", eval_batch_size=4)),
                             run(estimators.get("ars")), rtol=1e-6, atol=1e-7)
