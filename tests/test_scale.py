"""Large C and K, and evaluation-saving ARSM (scale issue)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import estimators
from arsm_jax.estimators import arsm as arsm_lib
from arsm_jax.estimators import swap
from tests import helpers


def distinct_pseudo_vectors(key, logits):
  aug = swap.augment(key, logits)
  pv = np.asarray(swap.pseudo_actions(aug.log_pi, logits))   # [K, C, C]
  vectors = pv.reshape(pv.shape[0], -1).T                     # [C*C, K]
  return len({tuple(v) for v in vectors})


@pytest.mark.parametrize("capacity", [4, 12, 64])
def test_distinct_evaluation_gives_the_same_estimate(capacity):
  num_dims, num_cats = 4, 6
  logits, f = helpers.random_problem(21, num_dims, num_cats, scale=2.0)
  full = jax.jit(lambda k: estimators.get("arsm").estimate(k, logits, f))
  saving = jax.jit(lambda k: estimators.get(
      "arsm", max_distinct=capacity).estimate(k, logits, f))
  fallbacks = 0
  for seed in range(25):
    key = jax.random.PRNGKey(seed)
    a, b = full(key), saving(key)
    np.testing.assert_allclose(b.grad, a.grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b.value, a.value, rtol=1e-6)
    count = distinct_pseudo_vectors(key, logits)
    if int(a.num_evals) == 1:
      assert int(b.num_evals) == 1
    elif count > capacity:
      fallbacks += 1
      assert int(b.num_evals) == num_cats * (num_cats - 1) // 2 + 1
    else:
      assert int(b.num_evals) == count
  if capacity == 4:
    assert fallbacks > 0  # the exact fallback path was exercised


def test_distinct_rows_helper():
  rows = jnp.array([[1, 2], [0, 5], [1, 2], [3, 3], [0, 5]])
  unique, inverse, count = arsm_lib._distinct_rows(rows, 4)
  assert int(count) == 3
  np.testing.assert_array_equal(unique[inverse], rows)


def test_arsm_at_a_thousand_categories_under_jit():
  num_cats = 1000
  rewards = jnp.linspace(0.0, 1.0, num_cats)
  f = lambda z: jnp.sum(z[0] * rewards)
  est = jax.jit(lambda k, lg: estimators.get("arsm").estimate(k, lg, f))
  logits = jax.random.normal(jax.random.PRNGKey(0), (1, num_cats))
  out = est(jax.random.PRNGKey(1), logits)
  assert out.grad.shape == (1, num_cats)
  assert np.all(np.isfinite(out.grad))
  assert int(out.num_evals) in (1, num_cats)


def test_many_dimensions_with_chunked_evaluation():
  num_dims, num_cats = 300, 10
  w = jax.random.normal(jax.random.PRNGKey(2), (num_dims, num_cats))
  f = lambda z: jnp.tanh(jnp.sum(z * w))
  logits = jnp.zeros((num_dims, num_cats))
  key = jax.random.PRNGKey(3)
  chunked = jax.jit(lambda k: estimators.get("arsm", eval_batch_size=8)(
      k, logits, f))(key)
  whole = jax.jit(lambda k: estimators.get("arsm")(k, logits, f))(key)
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_bad_capacity_is_rejected():
  with pytest.raises(ValueError, match="max_distinct must be >= 1.*0"):
    estimators.get("arsm", max_distinct=0)(jax.random.PRNGKey(0),
                                            jnp.zeros((2, 3)), jnp.sum)
