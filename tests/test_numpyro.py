"""arsm_jax.numpyro: the ELBO's gradient against the exact one, SVI, errors.

The statistical test compares the mean of many gradient draws with the exact
ELBO gradient, found by enumerating the discrete values (and integrating the
Gaussian continuous site in closed form), with a Bonferroni z-test: it fails
an unbiased estimator with probability at most ``FALSE_FAILURE`` over all
its coordinates and estimators together.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

numpyro = pytest.importorskip("numpyro")

from numpyro import distributions as dist  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402
from numpyro.infer import SVI  # noqa: E402

import arsm_jax.numpyro as anp  # noqa: E402
from tests import helpers  # noqa: E402

FALSE_FAILURE = 1e-3          # all coordinates and estimators together
NUM_DRAWS = 20_000
ESTIMATORS = [("arsm", {}), ("reinforce_loo", {"num_samples": 3}),
              ("unordered_set", {"num_samples": 3}), ("relax", {})]

# ----------------------------------------------------------------------------
# The tiny model: K = 2 items of C = 3 categories and a continuous shift w.

X = jnp.array([-1.0, 2.0])
PRIOR = jnp.array([0.5, 0.0, -0.5])
PARAMS = {"means": jnp.array([-1.0, 0.5, 2.0]),
          "q_logits": jnp.array([[0.3, -0.2, 0.1], [-0.5, 0.4, 0.0]]),
          "w_loc": jnp.array(0.3), "w_scale": jnp.array(0.8)}


def tiny_model(x):
  means = numpyro.param("means", PARAMS["means"])
  w = numpyro.sample("w", dist.Normal(0.0, 1.0))
  with numpyro.plate("items", 2):
    z = numpyro.sample("z", dist.Categorical(logits=PRIOR))
    numpyro.sample("x", dist.Normal(means[z] + w, 1.0), obs=x)


def tiny_guide(x):
  del x
  q_logits = numpyro.param("q_logits", PARAMS["q_logits"])
  loc = numpyro.param("w_loc", PARAMS["w_loc"])
  scale = numpyro.param("w_scale", PARAMS["w_scale"],
                        constraint=constraints.positive)
  numpyro.sample("w", dist.Normal(loc, scale))
  with numpyro.plate("items", 2):
    numpyro.sample("z", dist.Categorical(logits=q_logits))


def two_site_model(x):
  """The same model with the two items as two scalar sites."""
  means = numpyro.param("means", PARAMS["means"])
  w = numpyro.sample("w", dist.Normal(0.0, 1.0))
  for i in range(2):
    z = numpyro.sample(f"z{i}", dist.Categorical(logits=PRIOR))
    numpyro.sample(f"x{i}", dist.Normal(means[z] + w, 1.0), obs=x[i])


def two_site_guide(x):
  del x
  q_logits = numpyro.param("q_logits", PARAMS["q_logits"])
  loc = numpyro.param("w_loc", PARAMS["w_loc"])
  scale = numpyro.param("w_scale", PARAMS["w_scale"],
                        constraint=constraints.positive)
  numpyro.sample("w", dist.Normal(loc, scale))
  for i in range(2):
    numpyro.sample(f"z{i}", dist.Categorical(logits=q_logits[i]))


def exact_elbo(p):
  """The tiny model's ELBO: a sum over the 9 values of z, E_w in closed form."""
  log_q = jax.nn.log_softmax(p["q_logits"])                   # [2, 3]
  log_prior = jax.nn.log_softmax(PRIOR)
  m, s = p["w_loc"], p["w_scale"]
  total = 0.0
  for z in itertools.product(range(3), repeat=2):
    z = jnp.array(z)
    lq = log_q[jnp.arange(2), z].sum()
    # E_w log N(x; means[z] + w, 1) for w ~ N(m, s^2).
    lik = jnp.sum(-0.5 * jnp.log(2 * jnp.pi)
                  - 0.5 * ((X - p["means"][z] - m) ** 2 + s ** 2))
    total += jnp.exp(lq) * (log_prior[z].sum() - lq + lik)
  # E_w log N(w; 0, 1) + entropy of N(m, s^2).
  return total + (-0.5 * jnp.log(2 * jnp.pi) - 0.5 * (m ** 2 + s ** 2)
                  + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s ** 2))


def gradient_draws(elbo, model, guide, num_draws=NUM_DRAWS, seed=0):
  """``num_draws`` values and gradients of ``elbo.loss`` at PARAMS.

  Returns ``{"loss": [N], name: [N, ...] for each parameter}``.

  A stateful estimator's state is fixed (its initial state) and closed over.
  """
  state = elbo.init_state(jax.random.PRNGKey(1), guide, X)
  extra = {} if state is None else {anp.STATE_SITE: state}

  def one(key):
    loss, grads = jax.value_and_grad(
        lambda p: elbo.loss(key, {**p, **extra}, model, guide, X))(PARAMS)
    return {"loss": loss, **grads}

  keys = jax.random.split(jax.random.PRNGKey(seed), num_draws)
  return jax.jit(jax.vmap(one))(keys)


def z_test_failures(draws, exact, threshold):
  """Names and z scores of the coordinates whose mean misses the exact one."""
  failures = []
  for name in exact:
    z = helpers.z_scores(np.asarray(draws[name]), np.asarray(exact[name]))
    if np.any(z > threshold):
      failures.append((name, np.round(z, 2).tolist()))
  return failures


# The 11 gradient coordinates and the loss.
NUM_COORDS = sum(int(np.size(v)) for v in PARAMS.values()) + 1
# Plate mode (one draw per element of the plate "items").
PLATE_ESTIMATORS = [("arsm", {}), ("relax", {})]
# The four estimators on the tiny model, arsm on the two-site version and
# the plate-mode cases.
THRESHOLD = helpers.z_threshold(
    FALSE_FAILURE, (len(ESTIMATORS) + 1 + len(PLATE_ESTIMATORS)) * NUM_COORDS)


@pytest.mark.parametrize("name,settings", ESTIMATORS,
                         ids=[name for name, _ in ESTIMATORS])
def test_gradient_and_loss_are_unbiased(name, settings):
  """Each gradient coordinate and the loss (the negative ELBO estimate)."""
  loss, grads = jax.value_and_grad(lambda p: -exact_elbo(p))(PARAMS)
  exact = {"loss": loss, **grads}
  draws = gradient_draws(anp.ELBO(name, **settings), tiny_model, tiny_guide)
  failures = z_test_failures(draws, exact, THRESHOLD)
  assert not failures, failures


@pytest.mark.parametrize("name,settings", PLATE_ESTIMATORS,
                         ids=[name for name, _ in PLATE_ESTIMATORS])
def test_plate_mode_is_unbiased(name, settings):
  loss, grads = jax.value_and_grad(lambda p: -exact_elbo(p))(PARAMS)
  exact = {"loss": loss, **grads}
  draws = gradient_draws(anp.ELBO(name, plate="items", **settings),
                         tiny_model, tiny_guide, seed=2)
  failures = z_test_failures(draws, exact, THRESHOLD)
  assert not failures, failures


def test_two_sites_are_one_variable():
  loss, grads = jax.value_and_grad(lambda p: -exact_elbo(p))(PARAMS)
  exact = {"loss": loss, **grads}
  draws = gradient_draws(anp.ELBO("arsm"), two_site_model, two_site_guide,
                         seed=1)
  failures = z_test_failures(draws, exact, THRESHOLD)
  assert not failures, failures


def test_expanded_and_to_event_sites_with_the_exact_estimator():
  """Shared logits expanded over a plate, and a site with an event dimension:
  with the ``exact`` estimator the gradient is the enumerated one."""
  y = jnp.array([0.0, 2.0])

  def model():
    with numpyro.plate("items", 2):
      z = numpyro.sample("z", dist.Categorical(logits=PRIOR))
      numpyro.sample("y", dist.Normal(z.astype(jnp.float32), 1.0), obs=y)

  def expanded_guide():
    logits = numpyro.param("logits", jnp.array([0.2, -0.3, 0.4]))
    with numpyro.plate("items", 2):
      numpyro.sample("z", dist.Categorical(logits=logits))

  def event_guide():
    logits = numpyro.param("logits", jnp.array([0.2, -0.3, 0.4]))
    numpyro.sample("z", dist.Categorical(logits=logits).expand([2])
                   .to_event(1))

  def exact(p):
    log_q = jax.nn.log_softmax(p["logits"])
    log_p = jax.nn.log_softmax(PRIOR)
    lik = -0.5 * (y[:, None] - jnp.arange(3.0)) ** 2 - 0.5 * jnp.log(
        2 * jnp.pi)                                              # [2, 3]
    per_item = jnp.sum(jnp.exp(log_q) * (log_p - log_q + lik), axis=1)
    return -jnp.sum(per_item)

  params = {"logits": jnp.array([0.2, -0.3, 0.4])}
  want = jax.grad(exact)(params)["logits"]
  for guide in (expanded_guide, event_guide):
    got = jax.jit(jax.grad(lambda p, g=guide: anp.ELBO("exact").loss(
        jax.random.PRNGKey(0), p, model, g)))(params)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# SVI: a one-dimensional Gaussian mixture, amortised categorical guide.

MIX_C, MIX_N, MIX_SIGMA = 3, 100, 0.7
MIX_MEANS = np.array([-4.0, 0.0, 4.0])


def mixture_data(seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, MIX_C, MIX_N)
  x = MIX_MEANS[labels] + MIX_SIGMA * rng.normal(size=MIX_N)
  return jnp.asarray(x, jnp.float32), labels


def mixture_model(x):
  locs = numpyro.sample("locs",
                        dist.Normal(0.0, 10.0).expand([MIX_C]).to_event(1))
  with numpyro.plate("data", x.shape[0]):
    z = numpyro.sample("z", dist.Categorical(logits=jnp.zeros(MIX_C)))
    numpyro.sample("x", dist.Normal(locs[z], MIX_SIGMA), obs=x)


def mixture_guide(x):
  loc = numpyro.param("locs_loc", jnp.array([-1.0, 0.0, 1.0]))
  scale = numpyro.param("locs_scale", 0.1 * jnp.ones(MIX_C),
                        constraint=constraints.positive)
  numpyro.sample("locs", dist.Normal(loc, scale).to_event(1))
  # Amortised: the exact posterior's logits are linear in x.
  w = numpyro.param("enc_w", jnp.zeros((2, MIX_C)))
  with numpyro.plate("data", x.shape[0]):
    numpyro.sample("z", dist.Categorical(logits=x[:, None] * w[0] + w[1]))


@pytest.mark.parametrize("name,settings,plate",
                         [("arsm", {}, None), ("arsm", {}, "data")],
                         ids=["arsm", "arsm_plate"])
def test_svi_fits_a_gaussian_mixture(name, settings, plate):
  x, labels = mixture_data()
  elbo = anp.ELBO(name, plate=plate, **settings)
  svi = SVI(mixture_model, elbo.guide(mixture_guide),
            numpyro.optim.Adam(0.05), loss=elbo)
  result = svi.run(jax.random.PRNGKey(1), 400, x, progress_bar=False)
  locs = np.asarray(result.params["locs_loc"])
  np.testing.assert_allclose(np.sort(locs), MIX_MEANS, atol=0.5)
  # The guide assigns the points to their components.
  w = result.params["enc_w"]
  assigned = np.asarray(jnp.argmax(x[:, None] * w[0] + w[1], axis=-1))
  rank = np.argsort(np.argsort(locs))           # component -> sorted position
  assert np.mean(rank[assigned] == labels) > 0.95
  assert np.mean(result.losses[-50:]) < 0.5 * np.mean(result.losses[:20])


def test_svi_carries_relax_state():
  """RELAX's state lives in SVIState.mutable_state and is trained each step
  (with two particles: one step on their mean control-variate gradient)."""
  elbo = anp.ELBO("relax", num_particles=2)
  svi = SVI(tiny_model, elbo.guide(tiny_guide), numpyro.optim.Adam(0.05),
            loss=elbo)
  result = svi.run(jax.random.PRNGKey(0), 5, X, progress_bar=False)
  assert np.all(np.isfinite(result.losses))
  initial = svi.init(jax.random.PRNGKey(0), X).mutable_state[anp.STATE_SITE]
  state = result.state.mutable_state[anp.STATE_SITE]
  assert int(state.opt_state[0].count) == 5
  assert not np.allclose(state.params["net"][0]["w"],
                         initial.params["net"][0]["w"])


def test_one_hot_sites_take_relaxed_values():
  def model():
    z = numpyro.sample("z", anp.OneHotCategorical(logits=jnp.zeros((2, 3))))
    numpyro.sample("x", dist.Normal(jnp.sum(z * jnp.arange(3.0)), 1.0),
                   obs=1.0)

  def guide():
    logits = numpyro.param("logits", jnp.zeros((2, 3)))
    numpyro.sample("z", anp.OneHotCategorical(logits=logits).to_event(1))

  grad = jax.jit(jax.grad(lambda p: anp.ELBO("gumbel_softmax").loss(
      jax.random.PRNGKey(0), p, model, guide)))({"logits": jnp.zeros((2, 3))})
  assert np.all(np.isfinite(grad["logits"])) and np.any(grad["logits"] != 0)


# ----------------------------------------------------------------------------
# Errors that name the site.


def _loss(elbo, model, guide, params=None):
  return elbo.loss(jax.random.PRNGKey(0), params or {}, model, guide)


def _observe(*names):
  def model():
    for name in names:
      numpyro.sample(name, dist.Categorical(logits=jnp.zeros(3)))
  return model


def test_sites_with_different_numbers_of_categories():
  def guide():
    numpyro.sample("a", dist.Categorical(logits=jnp.zeros(3)))
    numpyro.sample("b", dist.Categorical(logits=jnp.zeros(4)))
  with pytest.raises(ValueError, match="'b' has C = 4"):
    _loss(anp.ELBO("arsm"), _observe("a", "b"), guide)


def test_dependent_sites():
  def guide():
    a = numpyro.sample("a", dist.Categorical(logits=jnp.zeros(3)))
    numpyro.sample("b", dist.Categorical(logits=jnp.eye(3)[a]))
  with pytest.raises(ValueError, match="site 'b' depend on .*'a'"):
    _loss(anp.ELBO("arsm"), _observe("a", "b"), guide)


def test_relaxed_estimator_with_a_categorical_site():
  def guide():
    numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)))
  for elbo in (anp.ELBO("gumbel_softmax"), anp.ELBO("relax", include_f=True)):
    with pytest.raises(ValueError, match="site 'z' is a Categorical"):
      _loss(elbo, _observe("z"),
            guide, {anp.STATE_SITE: elbo.init_state(jax.random.PRNGKey(0),
                                                    guide)})


def test_other_discrete_and_non_reparameterised_sites():
  def bernoulli_guide():
    numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)))
    numpyro.sample("flip", dist.Bernoulli(0.5))
  with pytest.raises(ValueError, match="'flip' is a discrete BernoulliProbs"):
    _loss(anp.ELBO("arsm"), _observe("z"), bernoulli_guide)

  def masked_guide():
    numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)).mask(False))
  with pytest.raises(ValueError, match="'z' is a masked categorical"):
    _loss(anp.ELBO("arsm"), _observe("z"), masked_guide)


def test_plate_mode_errors():
  def outside_guide():
    with numpyro.plate("items", 2):
      numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)))
    numpyro.sample("g", dist.Categorical(logits=jnp.zeros(3)))
  with pytest.raises(ValueError, match="'g' is not inside plate 'items'"):
    _loss(anp.ELBO("arsm", plate="items"), _observe("z", "g"), outside_guide)

  def model():
    with numpyro.plate("items", 2):
      z = numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)))
    numpyro.sample("total", dist.Normal(jnp.sum(z), 1.0), obs=1.0)

  def guide():
    with numpyro.plate("items", 2):
      numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)))
  with pytest.raises(ValueError, match="model site 'total' is outside plate"):
    _loss(anp.ELBO("arsm", plate="items"), model, guide)


def test_stateful_estimator_without_state():
  def guide():
    numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)))
  with pytest.raises(ValueError, match="elbo.guide"):
    _loss(anp.ELBO("relax"), _observe("z"), guide)


def test_unknown_estimator_and_setting():
  with pytest.raises(ValueError, match="Unknown estimator"):
    anp.ELBO("nope")
  with pytest.raises(ValueError, match="Unknown setting"):
    anp.ELBO("arsm", num_samples=3)


def test_import_arsm_jax_does_not_import_numpyro():
  code = ("import sys, arsm_jax; "
          "assert 'numpyro' not in sys.modules, 'numpyro imported'; "
          "assert 'equinox' not in sys.modules, 'equinox imported'")
  subprocess.run([sys.executable, "-c", code], check=True,
                 env={"JAX_PLATFORMS": "cpu", "PATH": "",
                      "PYTHONPATH": ":".join(sys.path)})
