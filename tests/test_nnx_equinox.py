"""The categorical VAE examples in Flax NNX and Equinox (experiments/*_vae.py).

Each trains with a stateless (arsm) and a stateful (relax) estimator and must
lower the exact -ELBO; with ``exact`` the gradient equals that of a plain
enumeration of the ELBO; with ``arsm`` the mean of many gradient draws
matches it (Bonferroni z-test over all coordinates, false failure at most
``FALSE_FAILURE`` per framework).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import helpers

FALSE_FAILURE = 1e-3
NUM_STEPS = 300
EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments")


def load_example(name):
  # The examples import latent_causes.py from their own folder.
  if EXPERIMENTS not in sys.path:
    sys.path.insert(0, EXPERIMENTS)
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(EXPERIMENTS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def enumerated_neg_elbo(encode, decode, x, num_dims, num_cats):
  """Mean -ELBO by summing over all C**K values of z, in plain JAX.

  Args:
    encode: ``x [B, D] -> logits [B, K, C]``.
    decode: ``z one-hot [S, K * C] -> Bernoulli logits [S, D]``.
  """
  values = jnp.array(list(itertools.product(range(num_cats),
                                            repeat=num_dims)))   # [S, K]
  onehots = jax.nn.one_hot(values, num_cats)                     # [S, K, C]
  log_q = jax.nn.log_softmax(encode(x))                          # [B, K, C]
  log_q_z = jnp.einsum("bkc,skc->bs", log_q, onehots)            # [B, S]
  x_logits = decode(onehots.reshape(len(values), -1))            # [S, D]
  log_lik = (x @ jax.nn.log_sigmoid(x_logits).T
             + (1 - x) @ jax.nn.log_sigmoid(-x_logits).T)        # [B, S]
  log_prior = -num_dims * jnp.log(num_cats)
  neg = -(log_lik + log_prior - log_q_z)
  return jnp.mean(jnp.sum(jnp.exp(log_q_z) * neg, axis=1))


def assert_unbiased(draws, exact):
  leaves_d = jax.tree_util.tree_leaves(draws)
  leaves_e = jax.tree_util.tree_leaves(exact)
  num_coords = sum(int(np.size(e)) for e in leaves_e)
  threshold = helpers.z_threshold(FALSE_FAILURE, num_coords)
  worst = max(float(np.max(helpers.z_scores(np.asarray(d), np.asarray(e))))
              for d, e in zip(leaves_d, leaves_e))
  assert worst < threshold, (worst, threshold)


# ----------------------------------------------------------------------------
# Flax NNX.


@pytest.fixture(scope="module")
def nnx_vae():
  pytest.importorskip("flax.nnx")
  return load_example("nnx_vae")


@pytest.mark.parametrize("estimator", ["arsm", "relax"])
def test_nnx_vae_trains(nnx_vae, estimator):
  model, before, after = nnx_vae.train(estimator, NUM_STEPS)
  assert after < before - 2.0, (before, after)
  if estimator == "relax":           # the state lives in the model, trained
    state = model.expectation.state.get_value()
    assert int(state.opt_state[0].count) == NUM_STEPS


def test_nnx_vae_gradients(nnx_vae):
  from flax import nnx
  vae = nnx_vae
  x = vae.latent_causes.make_data(jax.random.PRNGKey(0), 8)

  def exact_loss(model):
    return enumerated_neg_elbo(
        model.logits, lambda z: z @ model.decoder.kernel[...]
        + model.decoder.bias[...], x, vae.K, vae.C)

  exact_model = vae.VAE("exact", rngs=nnx.Rngs(0))
  got = nnx.grad(lambda m: m(None, x).mean())(exact_model)
  want = nnx.grad(exact_loss)(exact_model)
  for g, w in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)

  model = vae.VAE("arsm", rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def draw(key):
    return jax.grad(lambda p: nnx.merge(graphdef, p, rest)(key, x).mean())(
        params)

  draws = jax.jit(jax.vmap(draw))(jax.random.split(jax.random.PRNGKey(1),
                                                   4000))
  assert_unbiased(draws, nnx.state(want, nnx.Param))


# ----------------------------------------------------------------------------
# Equinox.


@pytest.fixture(scope="module")
def equinox_vae():
  pytest.importorskip("equinox")
  return load_example("equinox_vae")


@pytest.mark.parametrize("estimator", ["arsm", "relax"])
def test_equinox_vae_trains(equinox_vae, estimator):
  model, state, before, after = equinox_vae.train(estimator, NUM_STEPS)
  assert after < before - 2.0, (before, after)
  if estimator == "relax":           # the state lives in eqx.nn.State
    relax_state = state.get(model.expectation.index)
    assert int(relax_state.opt_state[0].count) == NUM_STEPS


def test_equinox_vae_gradients(equinox_vae):
  import equinox as eqx
  vae = equinox_vae
  x = vae.latent_causes.make_data(jax.random.PRNGKey(0), 8)

  def exact_loss(model):
    return enumerated_neg_elbo(model.logits, jax.vmap(model.decoder), x,
                               vae.K, vae.C)

  exact_model, state = eqx.nn.make_with_state(vae.VAE)(
      jax.random.PRNGKey(0), "exact")
  got = eqx.filter_grad(lambda m: m(None, x, state)[0].mean())(exact_model)
  want = eqx.filter_grad(exact_loss)(exact_model)
  for g, w in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)

  model, state = eqx.nn.make_with_state(vae.VAE)(jax.random.PRNGKey(0),
                                                 "arsm")

  def draw(key):
    return eqx.filter_grad(lambda m: m(key, x, state)[0].mean())(model)

  draws = eqx.filter_jit(jax.vmap(draw))(
      jax.random.split(jax.random.PRNGKey(1), 4000))
  assert_unbiased(draws, want)
