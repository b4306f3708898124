"""ARSM's successors (issue 29): CARMS, categorical DisARM, ARSM+ and ARS+.

Unbiasedness against exact enumeration with a Bonferroni z-test, the C = 2
reductions, the pairwise pmf of the Dirichlet copula, partial integration
never raising the variance, settings errors, and ARSM's automatic chunking.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import config_checks
from arsm_jax import estimators
from arsm_jax.estimators import arsm as arsm_lib
from arsm_jax.estimators import carms as carms_lib
from arsm_jax.estimators import disarm as disarm_lib
from arsm_jax.tasks import toy
from tests import helpers

UNBIASED = (
    ("carms", {"num_samples": 2}),
    ("carms", {"num_samples": 4}),
    ("carms", {"num_samples": 4, "category_order": "first_last"}),
    ("carms", {"num_samples": 8}),
    ("disarm", {}),
    ("disarm", {"num_pairs": 2}),
    ("disarm", {"importance_weight": False, "logits_order": None}),
    ("disarm", {"importance_weight": False, "binarisation": "tree",
                "logits_order": None}),
    ("arsm", {"partial_integration": True}),
    ("ars", {"partial_integration": True}),
)
# K = 1 with C = 3, a non-additive K = 2 with C = 5 (a random value for each
# of the 25 outcomes), and C = 2 with K = 3.
PROBLEMS = ((1, 3), (2, 5), (3, 2))
NUM_DRAWS = 20_000
# Bonferroni over every (estimator, problem, coordinate) z-test of
# test_unbiased_against_exact: 10 estimators x (3 + 10 + 6) coordinates = 190
# tests, total false-failure probability 1e-3 (per-test |z| threshold 4.42).
TOTAL_ALPHA = 1e-3
NUM_TESTS = len(UNBIASED) * sum(k * c for k, c in PROBLEMS)


def _id(value):
  if isinstance(value, dict):
    return ",".join(f"{k}={v}" for k, v in value.items()) or "default"
  return str(value)


@pytest.mark.parametrize("name,settings", UNBIASED, ids=_id)
@pytest.mark.parametrize("num_dims,num_cats", PROBLEMS)
def test_unbiased_against_exact(name, settings, num_dims, num_cats):
  logits, f = helpers.random_problem(290 + 10 * num_dims + num_cats, num_dims,
                                     num_cats)
  exact = estimators.get("exact")(None, logits, f)
  grads = helpers.draws(estimators.get(name, **settings),
                        jax.random.PRNGKey(29), logits, f, NUM_DRAWS)
  assert np.all(np.isfinite(grads))
  z = helpers.z_scores(grads, exact)
  assert np.all(z < helpers.z_threshold(TOTAL_ALPHA, NUM_TESTS)), z


# ---------------------------------------------------------------------------
# CARMS: the copula, its pairwise pmf, and the binary case.


def _copula_cdf(a, b, n):
  return np.maximum(a ** (1 / n) + b ** (1 / n) - 1, 0.0) ** n


def test_pair_pmf_matches_float64_inclusion_exclusion():
  # Random intervals (Dirichlet(0.5) widths, so some are tiny) for M = 2, 3,
  # 4, 8: relative error at float32 level where the mass is above 1e-6.
  rng = np.random.default_rng(0)
  for m in (2, 3, 4, 8):
    n = m - 1
    p = rng.dirichlet(np.full(6, 0.5), size=200)            # [200, 6]
    left = np.cumsum(p, axis=1) - p
    a, b = rng.integers(6, size=(2, 200))
    rows = np.arange(200)
    la, pa, lb, pb = left[rows, a], p[rows, a], left[rows, b], p[rows, b]
    ref = (_copula_cdf(la + pa, lb + pb, n) - _copula_cdf(la, lb + pb, n)
           - _copula_cdf(la + pa, lb, n) + _copula_cdf(la, lb, n))
    got = np.asarray(carms_lib.pair_pmf(
        *(jnp.asarray(x, jnp.float32) for x in (la, pa, lb, pb)), m))
    assert np.all(got >= 0)
    big = ref > 1e-6
    np.testing.assert_allclose(got[big], ref[big], rtol=5e-3)
    np.testing.assert_allclose(got[~big], ref[~big], atol=1e-6)


@pytest.mark.parametrize("m", [2, 3, 5])
def test_pair_pmf_is_a_joint_pmf_with_marginals_p(m):
  p = jnp.asarray([0.05, 0.3, 0.02, 0.4, 0.23])
  left = jnp.cumsum(p) - p
  q2 = carms_lib.pair_pmf(left[:, None], p[:, None], left[None], p[None], m)
  np.testing.assert_allclose(np.sum(q2, axis=1), p, atol=2e-6)
  np.testing.assert_allclose(q2, q2.T, atol=1e-7)


def test_copula_uniforms_are_uniform_and_antithetic():
  u = carms_lib.dirichlet_copula(jax.random.PRNGKey(0), 4, (50_000,))
  u = np.asarray(u)
  # Each margin U(0, 1): mean 1/2 and variance 1/12 within 5 s.e.
  assert np.all(np.abs(u.mean(axis=1) - 0.5) < 5 * np.sqrt(1 / 12 / 50_000))
  assert np.all(np.abs(u.var(axis=1) - 1 / 12) < 5e-3)
  # Negatively correlated pairs.
  assert np.corrcoef(u[0], u[1])[0, 1] < -0.2


def _arms_binary(u, logits, f):
  """ARMS (Dimitriev and Zhou 2021) for one binary variable, written apart.

  Category 0 is drawn when u < p_0. Returns the gradient with respect to the
  two logits (the logit difference's gradient with both signs).
  """
  u = np.asarray(u, np.float64)[:, 0]
  m, n = u.size, u.size - 1
  p0 = float(jax.nn.softmax(logits.astype(jnp.float32))[0, 0])
  b = (u >= p0).astype(int)                              # category 1
  values = np.array([float(f(jax.nn.one_hot(jnp.array([bi]), 2)))
                     for bi in b])
  both0 = _copula_cdf(p0, p0, n)
  joint = {(0, 0): both0, (0, 1): p0 - both0, (1, 0): p0 - both0,
           (1, 1): 1 - 2 * p0 + both0}
  marg = {0: p0, 1: 1 - p0}
  g1 = 0.0
  for i, j in itertools.permutations(range(m), 2):
    w = marg[b[i]] * marg[b[j]] / joint[(b[i], b[j])]
    g1 += w * (values[i] - values[j]) * (b[i] - (1 - p0))
  g1 /= m * (m - 1)
  return np.array([[-g1, g1]])


@pytest.mark.parametrize("m", [2, 3, 6])
def test_carms_with_two_categories_is_arms_draw_by_draw(m):
  logits = jnp.array([[0.4, -0.7]])
  f = lambda z: jnp.sum(z * jnp.array([[1.3, -0.4]])) ** 2 + z[0, 1]
  for seed in range(5):
    u = carms_lib.dirichlet_copula(jax.random.PRNGKey(seed), m, (1,))
    out = carms_lib.carms_from_uniforms(u, jnp.zeros((1,), jnp.int32), logits,
                                        f)
    np.testing.assert_allclose(out.grad, _arms_binary(u, logits, f),
                               rtol=2e-4, atol=1e-7)


def test_carms_with_two_samples_and_categories_is_binary_disarm():
  # M = 2: u and 1 - u. DisARM for b ~ Bern(sigma(theta)), theta = phi_1 -
  # phi_0: 1/2 (f(b) - f(b')) (-1)^b' 1[b != b'] sigma(|theta|).
  logits = jnp.array([[0.4, -0.7]])
  f = lambda z: 3.0 * z[0, 1] + 0.5
  theta = float(logits[0, 1] - logits[0, 0])
  for seed in range(8):
    u = carms_lib.dirichlet_copula(jax.random.PRNGKey(seed), 2, (1,))
    out = carms_lib.carms_from_uniforms(u, jnp.zeros((1,), jnp.int32), logits,
                                        f)
    b = np.asarray(jnp.argmax(out.samples[:, 0], axis=-1))
    fb = 3.0 * b + 0.5
    g = (0.5 * (fb[0] - fb[1]) * (-1.0) ** b[1] * (b[0] != b[1])
         / (1 + np.exp(-abs(theta))))
    np.testing.assert_allclose(out.grad, [[-g, g]], rtol=1e-5, atol=1e-7)


def test_disarm_with_two_categories_is_binary_disarm():
  logits = jnp.array([[0.4, -0.7]])
  f = lambda z: 3.0 * z[0, 1] + 0.5
  sig_abs = 1 / (1 + np.exp(-abs(float(logits[0, 1] - logits[0, 0]))))
  for settings in ({}, {"importance_weight": False, "logits_order": None}):
    est = estimators.get("disarm", **settings)
    for seed in range(8):
      out = est.estimate(jax.random.PRNGKey(seed), logits, f)
      b = np.asarray(jnp.argmax(out.samples[:, 0], axis=-1))
      fb = 3.0 * b + 0.5
      g = 0.5 * (fb[0] - fb[1]) * (b[0] != b[1]) * sig_abs
      g *= 1.0 if b[0] == 1 else -1.0
      np.testing.assert_allclose(out.grad, [[-g, g]], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# DisARM's binarisations.


@pytest.mark.parametrize("binarisation", ["stick_breaking", "tree"])
@pytest.mark.parametrize("num_cats", [2, 3, 5, 8, 10])
def test_every_leaf_has_one_path_and_the_walk_has_the_categorical_law(
    binarisation, num_cats):
  right, left, path = disarm_lib.tree_structure(binarisation, num_cats)
  assert right.shape == (num_cats - 1, num_cats)
  assert np.all((right | left).sum(axis=0) >= 1)
  assert not np.any(right & left)
  # Leaf c's probability is the product of its path's branch probabilities.
  p = np.random.default_rng(num_cats).dirichlet(np.ones(num_cats))
  sigma = (right @ p) / ((right | left) @ p)
  prob = np.prod(np.where(path > 0, sigma, np.where(path < 0, 1 - sigma, 1)),
                 axis=1)
  np.testing.assert_allclose(prob, p, rtol=1e-10)


# ---------------------------------------------------------------------------
# Partial integration never raises the variance.


def _diagnostics_random_problem(seed: int, num_dims: int = 4,
                                num_cats: int = 5):
  """experiments/diagnostics.py's random problem (same seed, same draws)."""
  rng = np.random.default_rng(seed)
  size = num_dims * num_cats
  logits = jnp.asarray(rng.normal(size=(num_dims, num_cats)), jnp.float32)
  a = jnp.asarray(rng.normal(size=(size, size)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(size,)), jnp.float32)

  def f(z):
    v = z.reshape(-1)
    return v @ a @ v / num_dims + jnp.sin(w @ v)

  return logits, f


@pytest.mark.parametrize("name", ["arsm", "ars"])
def test_partial_integration_never_raises_the_variance(name):
  # The diagnostics problems (experiments/diagnostics.py: the toy at phi = 0
  # and a random non-additive K = 4, C = 5 f) plus a confident K = 3, C = 4
  # problem, 4,000 draws with the same keys for both. Rao-Blackwellisation
  # cannot raise the variance; allow 2% for the sampling noise of the
  # comparison.
  toy_logits = jnp.zeros((1, 30))
  toy_f = toy.make_objective(30, 30.0)
  rand_logits, rand_f = _diagnostics_random_problem(0)
  conf_logits, conf_f = helpers.random_problem(7, 3, 4, scale=3.0)
  for logits, f in ((toy_logits, toy_f), (rand_logits, rand_f),
                    (conf_logits, conf_f)):
    key = jax.random.PRNGKey(3)
    plain = helpers.draws(estimators.get(name), key, logits, f, 4000)
    plus = helpers.draws(estimators.get(name, partial_integration=True), key,
                         logits, f, 4000)
    v_plain, v_plus = np.var(plain, axis=0).mean(), np.var(plus, axis=0).mean()
    assert v_plus <= 1.02 * v_plain, (v_plus, v_plain)


def test_arsm_plus_keeps_the_estimate_when_k_is_one():
  # K = 1: a column whose pseudo actions all equal z has f constant, so its
  # centred values are zero and dropping its weight changes nothing.
  logits, f = helpers.random_problem(3, 1, 6)
  for seed in range(5):
    key = jax.random.PRNGKey(seed)
    np.testing.assert_allclose(
        estimators.get("arsm")(key, logits, f),
        estimators.get("arsm", partial_integration=True)(key, logits, f),
        atol=1e-7)


def test_ars_interval_holds_the_drawn_pi_and_keeps_the_pseudo_actions():
  # Every pi_j inside the interval (with pi_l = r - pi_j) gives the same C
  # pseudo actions; just outside it, at least one changes.
  from arsm_jax.estimators import swap  # pylint: disable=g-import-not-at-top
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(6, 5)) * 1.5,
                       jnp.float32)
  cats = jnp.arange(5)
  for seed in range(20):
    aug = swap.augment(jax.random.PRNGKey(seed), logits)
    ref, other = seed % 5, (seed % 5 + 1 + seed % 4) % 5
    pv = swap.swap_argmin(aug.log_pi, logits, cats, ref)
    lo, hi = arsm_lib._ars_interval(aug.log_pi, logits, pv, ref, other)
    pi = np.asarray(aug.pi, np.float64)
    r = pi[:, ref] + pi[:, other]
    assert np.all(lo <= pi[:, ref] + 1e-6) and np.all(pi[:, ref] <= hi + 1e-6)
    for frac, same in ((0.01, True), (0.5, True), (0.99, True),
                       (-0.02, False), (1.02, False)):
      t = np.asarray(lo) + frac * (np.asarray(hi) - np.asarray(lo))
      ok = (t > 1e-6) & (t < r - 1e-6)
      if not same:
        ok &= (np.asarray(hi) - np.asarray(lo)) > 1e-3
      moved = pi.copy()
      moved[:, ref], moved[:, other] = t, r - t
      moved = np.clip(moved, 1e-30, None)
      pv2 = swap.swap_argmin(jnp.log(jnp.asarray(moved, jnp.float32)),
                             logits, cats, ref)
      equal = np.all(np.asarray(pv2) == np.asarray(pv), axis=1)
      if same:
        assert np.all(equal[ok]), (seed, frac)
      else:
        assert not np.any(equal[ok]), (seed, frac)


# ---------------------------------------------------------------------------
# ARSM's default chunking (issue 27 item 8).


def test_default_chunk_bounds_the_one_hot_scratch_at_c_1000():
  num_full = 1000 * 999 // 2 + 1
  chunk = arsm_lib.auto_eval_batch_size(num_full, 2, 1000)
  assert chunk is not None and chunk * 2 * 1000 * 4 <= arsm_lib.SCRATCH_BYTES
  assert num_full * 2 * 1000 * 4 > 3.9e9          # what vmap would build
  # The VAE (K = 20, C = 10) and every small problem keep the one vmap.
  assert arsm_lib.auto_eval_batch_size(46, 20, 10) is None


def test_default_chunking_gives_the_same_estimate(monkeypatch):
  logits, f = helpers.random_problem(11, 3, 12)
  key = jax.random.PRNGKey(4)
  est = estimators.get("arsm")
  whole = jax.jit(lambda k: est(k, logits, f))(key)
  # Shrink the budget so the default chunks this moderate case (67 vectors
  # of 3 x 12 floats: chunks of 5).
  monkeypatch.setattr(arsm_lib, "SCRATCH_BYTES", 5 * 3 * 12 * 4)
  assert arsm_lib.auto_eval_batch_size(67, 3, 12) == 5
  chunked = jax.jit(lambda k: est(k, logits, f))(key)
  np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# Registry, settings, evaluation counts, jit and vmap.


def test_registered_with_their_properties():
  info = estimators.info()
  for name in ("carms", "disarm"):
    assert name in estimators.names() and info[name].unbiased
    assert info[name].reference and info[name].cost
  assert info["arsm"].settings["partial_integration"] is False
  assert info["ars"].settings["partial_integration"] is False
  assert info["arsm_multi"].settings["partial_integration"] is False


@pytest.mark.parametrize("name,settings,match", [
    ("carms", {"num_samples": 1}, "carms: num_samples must be an integer >= 2"),
    ("carms", {"num_samples": 65}, "carms: num_samples must be <= 64"),
    ("carms", {"category_order": "random"}, "carms: category_order must be"),
    ("carms", {"num_samples": 2, "category_order": "rotations"},
     "rotations' needs num_samples >= 3"),
    ("disarm", {"binarisation": "chain"}, "disarm: binarisation must be"),
    ("disarm", {"binarisation": "tree"},
     "importance_weight=True needs binarisation='stick_breaking'"),
    ("disarm", {"logits_order": None}, "and logits_order='ascending'"),
    ("disarm", {"logits_order": "up", "importance_weight": False},
     "disarm: logits_order must be one of"),
    ("disarm", {"num_pairs": 0}, "disarm: num_pairs must be an integer >= 1"),
    ("disarm", {"importance_weight": 1}, "importance_weight must be True or"),
    ("arsm", {"partial_integration": "yes"},
     "arsm: partial_integration must be True or False"),
    ("ars_multi", {"partial_integration": None},
     "ars_multi: partial_integration must be True or False"),
])
def test_bad_settings_raise_clear_errors(name, settings, match):
  with pytest.raises(ValueError, match=match):
    estimators.get(name, **settings)


@pytest.mark.parametrize("name,settings,evals", [
    ("carms", {"num_samples": 5}, 5),
    ("disarm", {}, 2),
    ("disarm", {"num_pairs": 4}, 8),
    ("arsm", {"partial_integration": True}, 11),
    ("ars", {"partial_integration": True}, 5),
])
def test_jit_vmap_and_evaluation_counts(name, settings, evals):
  logits, f = helpers.random_problem(5, 3, 5)
  est = estimators.get(name, **settings)
  keys = jax.random.split(jax.random.PRNGKey(0), 6)
  eager = np.stack([est(k, logits, f) for k in keys])
  batched = jax.jit(jax.vmap(lambda k: est(k, logits, f)))(keys)
  np.testing.assert_allclose(batched, eager, rtol=1e-5, atol=1e-6)
  out = est.estimate(keys[0], logits, f)
  assert int(out.num_evals) == evals
  assert out.samples.shape[1:] == logits.shape
  np.testing.assert_allclose(np.sum(out.weights), 1.0, rtol=1e-6)


def test_vae_presets_carry_their_settings():
  # So --config.estimator_settings.<name>=... can override them (the config
  # is locked).
  from configs import vae as vae_config  # pylint: disable=g-import-not-at-top
  for preset, name, settings in (
      ("carms", "carms", {"num_samples": 4}),
      ("disarm", "disarm", {"num_pairs": 1}),
      ("arsm_plus", "arsm", {"partial_integration": True})):
    config = vae_config.get_config(preset)
    assert config.estimator == name and config.learning_rate == 3e-4
    assert config_checks.estimator_settings(
        config.estimator_settings) == settings
    estimators.get(name, **settings)
