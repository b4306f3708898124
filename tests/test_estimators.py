"""The ARSM family (arsm.py, swap.py), exact and reinforce.

Pseudo actions, evaluation counts, masked and bad input, unbiasedness
against exact enumeration, jit and vmap. The registry's tests are in
``test_registry.py``.
"""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import estimators
from arsm_jax.estimators import swap
from arsm_jax.tasks import toy
from tests import helpers

UNBIASED = ("arsm", "ars", "ar", "reinforce")


# ---------------------------------------------------------------------------
# Pseudo actions.


@pytest.mark.parametrize("num_dims,num_cats", [
    (1, 2), (3, 2), (1, 3), (6, 3), (3, 4), (1, 7), (6, 7), (3, 30), (1, 257)])
def test_fast_pseudo_actions_equal_naive(num_dims, num_cats):
  for seed in range(3):
    key_l, key_a = jax.random.split(jax.random.PRNGKey(seed))
    scale = [0.1, 2.0, 30.0][seed]
    logits = scale * jax.random.normal(key_l, (num_dims, num_cats))
    aug = swap.augment(key_a, logits)
    fast = swap.pseudo_actions(aug.log_pi, logits)
    naive = swap._pseudo_actions_naive(aug.log_pi, logits)
    np.testing.assert_array_equal(fast, naive)
    # Symmetric, z on the diagonal.
    np.testing.assert_array_equal(fast, jnp.swapaxes(fast, 1, 2))
    np.testing.assert_array_equal(jnp.diagonal(fast, axis1=1, axis2=2),
                                  jnp.broadcast_to(aug.z[:, None],
                                                   (num_dims, num_cats)))
    # The pair-wise routine agrees on arbitrary (c, j) lists.
    rows, cols, _ = swap.upper_pairs(num_cats)
    pairs = swap.swap_argmin(aug.log_pi, logits, rows, cols)
    np.testing.assert_array_equal(pairs, naive[:, rows, cols])


def test_pseudo_actions_with_masked_categories_equal_naive():
  logits = jnp.array([[0.3, -jnp.inf, 1.0, -jnp.inf, -0.5],
                      [-jnp.inf, 2.0, -jnp.inf, 0.0, -jnp.inf]])
  for seed in range(5):
    aug = swap.augment(jax.random.PRNGKey(seed), logits)
    np.testing.assert_array_equal(swap.pseudo_actions(aug.log_pi, logits),
                                  swap._pseudo_actions_naive(aug.log_pi, logits))


def test_augmentation_has_the_categorical_law():
  # 40,000 draws; a chi-square goodness-of-fit test with false-failure
  # probability 1e-4 per dimension.
  logits = jnp.array([[1.0, 0.0, -1.0, 2.0], [0.0, 0.0, 0.0, -3.0]])
  keys = jax.random.split(jax.random.PRNGKey(0), 40_000)
  z = jax.vmap(lambda k: swap.augment(k, logits).z)(keys)
  probs = np.asarray(jax.nn.softmax(logits, -1), np.float64)
  from scipy import stats
  for k in range(2):
    counts = np.bincount(np.asarray(z[:, k]), minlength=4)
    expected = probs[k] / probs[k].sum() * counts.sum()
    _, p = stats.chisquare(counts, expected)
    assert p > 1e-4, (k, counts, probs[k])


# ---------------------------------------------------------------------------
# Number of evaluations of f.


def counting_objective(f):
  """Wraps f so that every evaluation increments a host-side counter."""
  calls = []

  def host(x):
    calls.append(1)
    return np.asarray(x, np.float32)

  def counted(onehot):
    y = f(onehot)
    return jax.pure_callback(host, jax.ShapeDtypeStruct((), jnp.float32), y,
                             vmap_method="sequential")

  return counted, calls


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("num_dims,num_cats", [(3, 5), (2, 10), (4, 2),
                                               (1, 6)])
def test_arsm_evaluates_f_at_most_c_choose_2_plus_1_times(num_dims, num_cats,
                                                          skip):
  logits, f = helpers.random_problem(0, num_dims, num_cats, scale=0.3)
  est = estimators.get("arsm", skip_if_all_equal=skip)
  bound = num_cats * (num_cats - 1) // 2 + 1
  counted, calls = counting_objective(f)
  estimate = jax.jit(lambda key: est.estimate(key, logits, counted))
  for seed in range(4):
    calls.clear()
    out = jax.block_until_ready(estimate(jax.random.PRNGKey(seed)))
    assert len(calls) == int(out.num_evals), (len(calls), out.num_evals)
    assert len(calls) <= bound
    assert len(calls) < num_cats ** 2
    expected = num_cats if num_dims == 1 else bound
    assert len(calls) in ((1, expected) if skip else (expected,))


@pytest.mark.parametrize("skip", [False, True])
def test_estimate_is_exactly_zero_when_every_pseudo_vector_is_z(skip):
  # One category dominates every dimension: all swaps select it again.
  logits = jnp.array([[60.0, 0.0, 0.0, 0.0], [0.0, 0.0, 60.0, 0.0]])
  _, f = helpers.random_problem(1, 2, 4)
  est = estimators.get("arsm", skip_if_all_equal=skip)
  counted, calls = counting_objective(f)
  estimate = jax.jit(lambda key: est.estimate(key, logits, counted))
  for seed in range(5):
    calls.clear()
    out = jax.block_until_ready(estimate(jax.random.PRNGKey(seed)))
    pv = swap.pseudo_actions(swap.augment(jax.random.PRNGKey(seed),
                                          logits).log_pi, logits)
    assert bool(jnp.all(pv == jnp.array([0, 2])[:, None, None]))
    assert np.all(np.asarray(out.grad) == 0.0)
    # With skipping, f(z) is the only evaluation.
    assert len(calls) == int(out.num_evals) == (1 if skip else 7)


# ---------------------------------------------------------------------------
# Binary case: ARSM (and ARS) reduce to ARM draw by draw.


def arm_estimate(u, logits, f):
  """ARM (Yin and Zhou, 2019) for K binary dimensions with logit phi1 - phi0."""
  phi = logits[:, 1] - logits[:, 0]
  z_true = (u < jax.nn.sigmoid(phi)).astype(jnp.int32)
  z_anti = (u > jax.nn.sigmoid(-phi)).astype(jnp.int32)
  f1 = f(jax.nn.one_hot(z_anti, 2))
  f0 = f(jax.nn.one_hot(z_true, 2))
  g = (f1 - f0) * (u - 0.5)
  return jnp.stack([-g, g], axis=-1)


@pytest.mark.parametrize("num_dims", [1, 4])
def test_binary_arsm_and_ars_equal_arm_draw_by_draw(num_dims):
  logits, f = helpers.random_problem(3, num_dims, 2, scale=0.5)
  keys = jax.random.split(jax.random.PRNGKey(0), 50)

  @jax.jit
  def compare(key):
    u = swap.augment(key, logits).pi[:, 1]
    # ARS draws its pi from the first half of a split key.
    u_ars = swap.augment(jax.random.split(key)[0], logits).pi[:, 1]
    return (estimators.get("arsm")(key, logits, f),
            arm_estimate(u, logits, f),
            estimators.get("ars")(key, logits, f),
            arm_estimate(u_ars, logits, f))

  arsm, arm, ars, arm_ars = jax.vmap(compare)(keys)
  assert np.any(np.asarray(arm) != 0)
  np.testing.assert_allclose(arsm, arm, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ars, arm_ars, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Masked categories and extreme logits.


@pytest.mark.parametrize("name", UNBIASED)
def test_masked_categories_never_sampled_zero_gradient_no_nan(name):
  logits = jnp.array([[0.5, -jnp.inf, 0.0, -1.0],
                      [-jnp.inf, 1.0, -jnp.inf, 0.2],
                      [0.0, 0.0, 0.0, -jnp.inf]])
  _, f = helpers.random_problem(2, 3, 4)
  est = estimators.get(name)
  outs = jax.jit(jax.vmap(lambda k: est.estimate(k, logits, f)))(
      jax.random.split(jax.random.PRNGKey(0), 3000))
  masked = np.isneginf(np.asarray(logits))
  assert np.all(np.isfinite(outs.grad))
  assert np.all(np.asarray(outs.grad)[:, masked] == 0.0)
  assert np.all(np.asarray(outs.samples)[:, 0][:, masked] == 0.0)


@pytest.mark.parametrize("name", UNBIASED + ("exact",))
def test_huge_logits_give_finite_estimates(name):
  logits = jnp.array([[1e3, -1e3, 0.0, 5e2], [-1e3, -1e3, 1e3, 1e3]])
  _, f = helpers.random_problem(4, 2, 4)
  grads = helpers.draws(estimators.get(name), jax.random.PRNGKey(0), logits,
                        f, 200)
  assert np.all(np.isfinite(grads))


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("name", UNBIASED + ("exact",))
def test_bad_input_raises_clear_errors(name):
  est = estimators.get(name)
  key = jax.random.PRNGKey(0)
  f = lambda z: jnp.sum(z)
  with pytest.raises(ValueError, match=r"2-D array \[K, C\].*\(5,\)"):
    est(key, jnp.zeros(5), f)
  with pytest.raises(ValueError, match="floating point.*int32"):
    est(key, jnp.zeros((2, 3), jnp.int32), f)
  with pytest.raises(ValueError, match="C >= 2.*\\(2, 1\\)"):
    est(key, jnp.zeros((2, 1)), f)
  with pytest.raises(ValueError, match=re.escape("return a scalar") + ".*(3,)"):
    est(key, jnp.zeros((2, 3)), lambda z: jnp.sum(z, axis=0))


def test_exact_refuses_too_many_outcomes():
  with pytest.raises(ValueError, match="10\\*\\*6 = 1000000.*max_outcomes"):
    estimators.get("exact")(jax.random.PRNGKey(0), jnp.zeros((6, 10)),
                            lambda z: jnp.sum(z))
  # The limit is a setting.
  est = estimators.get("exact", max_outcomes=10)
  with pytest.raises(ValueError, match="max_outcomes=10"):
    est(jax.random.PRNGKey(0), jnp.zeros((3, 3)), lambda z: jnp.sum(z))


# ---------------------------------------------------------------------------
# Exact gradient and value.


def test_exact_matches_brute_force_and_autodiff():
  num_dims, num_cats = 3, 4
  logits, f = helpers.random_problem(5, num_dims, num_cats)
  value = estimators.exact_value(logits, f)
  probs = np.asarray(jax.nn.softmax(logits, -1), np.float64)
  brute = 0.0
  for z in np.ndindex(*(num_cats,) * num_dims):
    p = np.prod([probs[k, z[k]] for k in range(num_dims)])
    brute += p * float(f(jax.nn.one_hot(jnp.array(z), num_cats)))
  np.testing.assert_allclose(value, brute, rtol=1e-5)
  grad = estimators.get("exact")(None, logits, f)
  np.testing.assert_allclose(
      grad, jax.grad(lambda lg: estimators.exact_value(lg, f))(logits),
      rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------
# Unbiasedness against the exact gradient.

PROBLEMS = [(1, 2), (1, 5), (2, 3), (3, 4), (3, 5)]
NUM_DRAWS = 20_000
# Total false-failure probability of the whole unbiasedness test, Bonferroni
# over every (estimator, problem, coordinate) z-test below.
TOTAL_ALPHA = 1e-3
NUM_TESTS = len(UNBIASED) * sum(k * c for k, c in PROBLEMS)


@pytest.mark.parametrize("name", UNBIASED)
@pytest.mark.parametrize("num_dims,num_cats", PROBLEMS)
def test_unbiased_against_exact(name, num_dims, num_cats):
  logits, f = helpers.random_problem(10 * num_dims + num_cats, num_dims,
                                     num_cats)
  exact = estimators.get("exact")(None, logits, f)
  grads = helpers.draws(estimators.get(name), jax.random.PRNGKey(7), logits,
                        f, NUM_DRAWS)
  z = helpers.z_scores(grads, exact)
  assert np.all(z < helpers.z_threshold(TOTAL_ALPHA, NUM_TESTS)), z


def biased_ar(key, logits, f):
  """AR with the (1 - pi) defect of the authors' early toy code."""
  out = estimators.get("ar").estimate(key, logits, f)
  aug = swap.augment(key, logits)
  return out._replace(grad=out.value * (1.0 - aug.pi))


def test_the_unbiasedness_test_rejects_a_biased_estimator():
  # Power check: the same z-test catches the (1 - pi) defect.
  logits, f = helpers.random_problem(33, 3, 4)
  est = estimators.Estimator("biased_ar", biased_ar)
  exact = estimators.get("exact")(None, logits, f)
  grads = helpers.draws(est, jax.random.PRNGKey(7), logits, f, NUM_DRAWS)
  assert np.any(helpers.z_scores(grads, exact)
                > helpers.z_threshold(TOTAL_ALPHA, NUM_TESTS))


# ---------------------------------------------------------------------------
# Variance on the toy: ARSM < REINFORCE < AR.


def test_variance_ordering_on_the_toy():
  num_cats = 10
  f = toy.make_objective(num_cats, float(num_cats))
  logits = jnp.zeros((1, num_cats))
  var = {}
  for name in ("arsm", "reinforce", "ar"):
    grads = helpers.draws(estimators.get(name), jax.random.PRNGKey(1), logits,
                          f, 20_000)
    var[name] = float(np.mean(np.var(np.asarray(grads), axis=0)))
  # Published (notes, 20,000 draws): 6.9e-6 < 2.8e-2 < 2.5e-1.
  assert var["arsm"] * 100 < var["reinforce"], var
  assert var["reinforce"] * 3 < var["ar"], var


# ---------------------------------------------------------------------------
# jit, vmap, retracing.


@pytest.mark.parametrize("name", UNBIASED + ("exact",))
def test_jit_and_eager_agree_and_no_retracing(name):
  logits, f = helpers.random_problem(6, 2, 4)
  est = estimators.get(name)
  chex.clear_trace_counter()
  traced = chex.assert_max_traces(lambda key, lg: est(key, lg, f), n=1)
  jitted = jax.jit(traced)
  for seed in range(3):
    key = jax.random.PRNGKey(seed)
    new_logits = logits + seed
    np.testing.assert_allclose(jitted(key, new_logits),
                               est(key, new_logits, f), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", UNBIASED)
def test_vmap_over_keys_equals_a_loop(name):
  logits, f = helpers.random_problem(8, 2, 3)
  est = estimators.get(name)
  keys = jax.random.split(jax.random.PRNGKey(0), 5)
  single = jax.jit(functools.partial(est, logits=logits, f=f))
  batched = jax.jit(jax.vmap(single))(keys)
  for i in range(5):
    np.testing.assert_allclose(batched[i], single(keys[i]),
                               rtol=1e-5, atol=1e-6)


def test_new_style_keys_work():
  logits, f = helpers.random_problem(9, 2, 3)
  for name in UNBIASED:
    g = estimators.get(name)(jax.random.key(0), logits, f)
    assert g.shape == logits.shape


def test_chunked_evaluation_gives_the_same_estimate():
  logits, f = helpers.random_problem(11, 3, 5)
  key = jax.random.PRNGKey(3)
  for name in ("arsm", "ars"):
    np.testing.assert_allclose(
        estimators.get(name, eval_batch_size=4)(key, logits, f),
        estimators.get(name)(key, logits, f), rtol=1e-6, atol=1e-7)
