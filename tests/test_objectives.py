"""Tests of the VAE objectives (arsm_jax/objectives/vae.py), without the loop.

Exact expectations are computed by enumerating all C**K latent vectors (and
C**K x C**K pairs for two layers) of tiny models.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import estimators
from arsm_jax.estimators import swap
from arsm_jax.models import vae as vae_models
from arsm_jax.objectives import vae as objectives
from tests import helpers


def _all_latents(k, c):
  codes = np.array(np.meshgrid(*[np.arange(c)] * k, indexing="ij"))
  return jax.nn.one_hot(codes.reshape(k, -1).T, c)          # [C**K, K, C]


def exact_neg_elbo_one_layer(model, params, x):
  """E_q[f] by enumerating all C**K latent vectors, per image."""
  zs = _all_latents(model.num_latents, model.num_categories)
  logits = model.apply(params, x, method=model.encode)       # [B, K, C]
  log_q = jax.nn.log_softmax(logits)
  f = jax.vmap(lambda z: objectives.neg_elbo_one_layer(
      model, params, z, x, log_q))(zs)                       # [C**K, B]
  log_qz = jnp.einsum("nkc,bkc->nb", zs, log_q)
  return jnp.sum(jnp.exp(log_qz) * f, axis=0)                # [B]


def exact_neg_elbo_two_layer(model, params, x):
  k, c = model.num_latents, model.num_categories
  zs = _all_latents(k, c)                                    # [N, K, C]
  log_q1 = jax.nn.log_softmax(model.apply(params, x, method=model.encode))

  def per_z1(z1):
    log_q2 = jax.nn.log_softmax(model.apply(params, z1, method=model.encode2))
    pix = model.apply(params, z1, method=model.decode)
    log_px = vae_models.bernoulli_log_prob(pix, x)             # [B]
    lq1 = vae_models.categorical_log_prob(z1, log_q1)          # [B]

    def per_z2(z2):
      log_p1 = jax.nn.log_softmax(model.apply(params, z2, method=model.prior1))
      lq2 = vae_models.categorical_log_prob(z2, log_q2)
      f = (-log_px - vae_models.categorical_log_prob(z1, log_p1)
           + k * math.log(c) + lq1 + lq2)
      return jnp.exp(lq2) * f
    return jnp.exp(lq1) * jnp.sum(jax.vmap(per_z2)(zs), axis=0)

  return jnp.sum(jax.vmap(per_z1)(zs), axis=0)


def exact_neg_elbo(model, params, x):
  if isinstance(model, vae_models.TwoLayerVAE):
    return exact_neg_elbo_two_layer(model, params, x)
  return exact_neg_elbo_one_layer(model, params, x)


def _tiny_model(name, **options):
  model = vae_models.make_model(name, num_latents=2, num_categories=3,
                                num_pixels=5, encoder_hidden=(4,),
                                decoder_hidden=(4,), **options)
  x = jnp.asarray(np.random.default_rng(1).random((2, 5)) < 0.5, jnp.float32)
  params = model.init(jax.random.PRNGKey(2), x, jnp.zeros((2, 2, 3)))
  return model, params, x


def test_neg_elbo_matches_a_hand_computation():
  model = vae_models.make_model("linear", num_latents=2, num_categories=3,
                                num_pixels=4)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)),
                      jnp.zeros((1, 2, 3)))
  rng = np.random.default_rng(0)
  w = rng.normal(size=(6, 4)).astype(np.float32)
  b = rng.normal(size=4).astype(np.float32)
  params = {"params": {"encoder": params["params"]["encoder"],
                       "decoder": {"out": {"kernel": w, "bias": b}}}}
  z = np.zeros((2, 3), np.float32)
  z[0, 2] = z[1, 0] = 1.0
  x = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
  logits = rng.normal(size=(2, 3)).astype(np.float32)
  log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))

  pixel_logits = z.reshape(-1) @ w + b
  p = 1 / (1 + np.exp(-pixel_logits))
  log_px = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p))
  log_pz = 2 * np.log(1 / 3)
  log_qz = log_q[0, 2] + log_q[1, 0]
  expected = -log_px - log_pz + log_qz
  got = objectives.neg_elbo_one_layer(model, params, jnp.asarray(z),
                                      jnp.asarray(x), jnp.asarray(log_q))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


# The unbiasedness tests below: total false-failure probability 1e-4 each
# (5e-4 for the five), Bonferroni over every parameter coordinate of the
# model (107 for the one-layer model, 191 for the two-layer one), normal
# approximation of the mean of 2000 draws.
_UNBIASED_FALSE_FAILURE = 1e-4


@pytest.mark.parametrize("model_name,name", [
    ("nonlinear", "arsm"),
    ("two_layer", "arsm"),
    ("two_layer", "ars"),
    ("two_layer", "reinforce_loo"),
    ("two_layer", "relax"),
])
def test_training_gradient_is_unbiased_for_every_parameter(model_name, name):
  """Mean of the training gradient vs the exact gradient by enumeration.

  Covers the encoder (through the estimator and log q), the decoder
  (pathwise) and, for two layers, q(z2|z1) and p(z1|z2) too.
  """
  model, params, x = _tiny_model(model_name)
  est = estimators.get(name)
  objective = objectives.make_objective(model, est)
  est_state = objectives.init_estimator_state(model, est,
                                              jax.random.PRNGKey(4))
  exact = jax.grad(lambda p: jnp.mean(exact_neg_elbo(model, p, x)))(params)
  draws = 2000
  grads = jax.jit(jax.vmap(lambda k: jax.grad(
      lambda p: objective.loss(p, k, x, est_state)[0])(params)))(
          jax.random.split(jax.random.PRNGKey(3), draws))
  num_coords = sum(a.size for a in jax.tree_util.tree_leaves(params))
  assert num_coords == (107 if model_name == "nonlinear" else 191)
  threshold = helpers.z_threshold(_UNBIASED_FALSE_FAILURE, num_coords)
  for module in exact["params"]:
    exact_m = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(
        exact["params"][module])])
    draws_m = np.concatenate(
        [np.reshape(a, (draws, -1)) for a in jax.tree_util.tree_leaves(
            grads["params"][module])], axis=1)
    mean = draws_m.mean(0)
    se = draws_m.std(0) / math.sqrt(draws)
    # Each coordinate's mean lies within `threshold` (about 5.2) standard
    # errors of the exact value; 1e-5 absorbs float32 rounding where se ~ 0.
    err = np.abs(mean - exact_m)
    assert np.all(err <= threshold * se + 1e-5), (
        module, np.max(err / (se + 1e-12)), threshold)
    # The test has power: had this module's gradient been dropped (as the
    # authors' two-layer code did for q(z2|z1)), some coordinate would fail.
    assert np.any(np.abs(exact_m) > threshold * se + 1e-5), module


def test_surrogate_value_is_neg_elbo_at_the_estimators_sample():
  model = vae_models.make_model("linear", num_latents=2, num_categories=3,
                                num_pixels=4)
  x = jnp.ones((3, 4))
  params = model.init(jax.random.PRNGKey(0), x, jnp.zeros((3, 2, 3)))
  objective = objectives.make_objective(model, estimators.get("arsm"))
  key = jax.random.PRNGKey(5)
  loss, (train, _) = objective.loss(params, key, x, None)
  np.testing.assert_allclose(loss, jnp.mean(train), rtol=1e-6)
  # The expectation layer gives image b the key split(k_est, B)[b], from which
  # ARSM draws z by the Dirichlet augmentation.
  k_est, _ = jax.random.split(key)
  logits = model.apply(params, x, method=model.encode)
  z = jax.vmap(lambda k, lg: jax.nn.one_hot(swap.augment(k, lg).z, 3))(
      jax.random.split(k_est, 3), logits)
  expected = objectives.neg_elbo_one_layer(model, params, z, x,
                                           jax.nn.log_softmax(logits))
  np.testing.assert_allclose(train, expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel_softmax"])
def test_two_layer_relaxed_is_the_multi_layer_construction(name):
  """Value and gradient equal those of z1 -> z2 relaxed by hand, same noise.

  The relaxed (or straight-through) z1 goes into layer 2, whose logits are
  relaxed in turn; the gradient reaches z1 directly and through layer 2.
  """
  model, params, x = _tiny_model("two_layer")
  tau = 0.7
  objective = objectives.make_objective(
      model, estimators.get(name, temperature=tau))
  key = jax.random.PRNGKey(6)
  (loss, (train, state)), grads = jax.value_and_grad(
      objective.loss, has_aux=True)(params, key, x, None)
  assert state is None and train.shape == (2,)

  # The keys the objective and the expectation layer hand out.
  k_est, _ = jax.random.split(key)
  k1, k2 = jax.random.split(k_est)
  keys1, keys2 = jax.random.split(k1, 2), jax.random.split(k2, 2)

  def relax(lg, k):
    g = jax.random.gumbel(k, lg.shape)
    soft = jax.nn.softmax((lg + g) / tau, axis=-1)
    if name == "gumbel_softmax":
      return soft
    hard = jax.nn.one_hot(jnp.argmax(lg + g, -1), lg.shape[-1])
    return hard + soft - jax.lax.stop_gradient(soft)

  def by_hand(p):
    logits1 = model.apply(p, x, method=model.encode)
    log_q1 = jax.nn.log_softmax(logits1)
    total = 0.0
    for b in range(2):
      z1 = relax(logits1[b], keys1[b])
      logits2 = model.apply(p, z1, method=model.encode2)
      z2 = relax(logits2, keys2[b])
      pix = model.apply(p, z1, method=model.decode)
      log_p1 = jax.nn.log_softmax(model.apply(p, z2, method=model.prior1))
      total += (-vae_models.bernoulli_log_prob(pix, x[b])
                - vae_models.categorical_log_prob(z1, log_p1)
                + 2 * math.log(3)
                + vae_models.categorical_log_prob(z1, log_q1[b])
                + vae_models.categorical_log_prob(
                    z2, jax.nn.log_softmax(logits2)))
    return total / 2

  want, want_grads = jax.value_and_grad(by_hand)(params)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6),
      grads, want_grads)
  # Layer 2's encoder gets a gradient (it would not if z2 were hard only).
  assert np.any(np.abs(grads["params"]["encoder2"]["out"]["kernel"]) > 0)


@pytest.mark.parametrize("model_name", ["nonlinear", "two_layer"])
def test_learned_temperature_receives_a_gradient(model_name):
  model, params, x = _tiny_model(model_name, learned_temperature=1.0)
  assert float(params["params"]["log_temperature"]) == 0.0
  est = estimators.get("st_gumbel_softmax")
  objective = objectives.make_objective(model, est)
  grads = jax.grad(lambda p: objective.loss(p, jax.random.PRNGKey(7), x,
                                            None)[0])(params)
  g = float(grads["params"]["log_temperature"])
  assert np.isfinite(g) and g != 0.0
  # Without the option the model has no temperature and the objective uses
  # the estimator's fixed one.
  _, plain, _ = _tiny_model(model_name)
  assert "log_temperature" not in plain["params"]


def test_two_layer_relax_has_one_state_per_layer():
  model, params, x = _tiny_model("two_layer")
  est = estimators.get("relax")
  objective = objectives.make_objective(model, est)
  state = objectives.init_estimator_state(model, est, jax.random.PRNGKey(8))
  assert isinstance(state, tuple) and len(state) == 2
  _, (_, new) = jax.jit(objective.loss)(params, jax.random.PRNGKey(9), x,
                                        state)
  assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(
      state)
  for old_layer, new_layer in zip(state, new):
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(old_layer.params),
        jax.tree_util.tree_leaves(new_layer.params))]
    assert max(moved) > 0 and all(np.isfinite(moved))


def test_unsupported_estimator_settings_are_rejected():
  with pytest.raises(ValueError, match="two_layer.*include_f=False"):
    objectives.check_estimator("two_layer",
                               estimators.get("relax", include_f=True))
  objectives.check_estimator("nonlinear",
                             estimators.get("relax", include_f=True))
  with pytest.raises(ValueError, match="learn_temperature=True needs.*"
                     "'reinmax'"):
    objectives.check_estimator("nonlinear", estimators.get("reinmax"), True)
  with pytest.raises(ValueError, match="learn_temperature must be True or"):
    objectives.check_estimator("nonlinear", estimators.get("arsm"), 1)
  for name in objectives.LEARNABLE_TEMPERATURE:
    objectives.check_estimator("two_layer", estimators.get(name), True)


@pytest.mark.parametrize("model_name", ["nonlinear", "two_layer"])
def test_objectives_run_without_the_training_loop(model_name):
  model, params, x = _tiny_model(model_name)
  objective = objectives.make_objective(model, estimators.get("arsm"))
  key = jax.random.PRNGKey(10)
  assert objective.neg_elbo(params, key, x).shape == (2,)
  assert objective.log_weights(params, key, x, 4).shape == (4, 2)
  assert objective.logit_grads(params, key, x, None).shape == (2, 2, 3)
  assert objectives.evals_per_image(estimators.get("arsm"), 2, 3) == 4
  assert objectives.evals_per_image(
      estimators.get("relax", include_f=True), 2, 3) == 3


def test_two_layer_evals_count_both_layers():
  # A score-function estimator draws once per layer; a relaxed one nests
  # layer 2's draw in each of layer 1's evaluations.
  arsm, st = estimators.get("arsm"), estimators.get("st_gumbel_softmax")
  assert objectives.evals_per_image(arsm, 2, 3, "two_layer") == 8
  assert objectives.evals_per_image(arsm, 2, 3, "linear") == 4
  assert objectives.evals_per_image(st, 2, 3, "two_layer") == 1
  with pytest.raises(ValueError, match="'deep'.*two_layer"):
    objectives.evals_per_image(arsm, 2, 3, "deep")
