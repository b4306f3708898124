"""Tests of the categorical VAE: models, objective, loop and resumption."""

import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import estimators
from arsm_jax import writers
from arsm_jax.estimators import swap
from arsm_jax.models import vae as vae_models
from arsm_jax.tasks import vae
from configs import vae as vae_config


def _tiny(**overrides):
  config = vae_config.get_config("tiny")
  for k, v in overrides.items():
    config[k] = v
  return config


# ----------------------------------------------------------------------------
# Models.


@pytest.mark.parametrize("name", vae_models.MODELS)
def test_model_shapes(name):
  model = vae_models.make_model(name, num_latents=3, num_categories=4,
                                num_pixels=10, encoder_hidden=(7, 5),
                                decoder_hidden=(6,))
  x = jnp.zeros((2, 10))
  z = jax.nn.one_hot(jnp.zeros((2, 3), jnp.int32), 4)
  params = model.init(jax.random.PRNGKey(0), x, z)
  assert model.apply(params, x, method=model.encode).shape == (2, 3, 4)
  assert model.apply(params, z, method=model.decode).shape == (2, 10)
  # Batched pseudo-action stacks [B, M, K, C] decode in one call.
  zz = jnp.zeros((2, 5, 3, 4))
  assert model.apply(params, zz, method=model.decode).shape == (2, 5, 10)
  if name == "linear":
    assert set(params["params"]["encoder"]) == {"out"}
    assert params["params"]["encoder"]["out"]["kernel"].shape == (10, 12)
    assert params["params"]["decoder"]["out"]["kernel"].shape == (12, 10)
  elif name == "nonlinear":
    enc = params["params"]["encoder"]
    assert [enc[n]["kernel"].shape for n in ("hidden_0", "hidden_1", "out")
           ] == [(10, 7), (7, 5), (5, 12)]
  else:
    assert model.apply(params, z, method=model.encode2).shape == (2, 3, 4)
    assert model.apply(params, z, method=model.prior1).shape == (2, 3, 4)


def test_default_nonlinear_model_is_the_authors_architecture():
  model = vae_models.make_model("nonlinear")
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 784)), jnp.zeros((1, 20, 10)))["params"]
  widths = lambda part: [params[part][n]["kernel"].shape
                         for n in ("hidden_0", "hidden_1", "out")]
  assert widths("encoder") == [(784, 512), (512, 256), (256, 200)]
  assert widths("decoder") == [(200, 256), (256, 512), (512, 784)]


# ----------------------------------------------------------------------------
# The objective.


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
  got = vae.neg_elbo_one_layer(model, params, jnp.asarray(z), jnp.asarray(x),
                               jnp.asarray(log_q))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def _exact_neg_elbo_one_layer(model, params, x):
  """E_q[f] by enumerating all C**K latent vectors, per image."""
  k, c = model.num_latents, model.num_categories
  codes = np.array(np.meshgrid(*[np.arange(c)] * k, indexing="ij"))
  zs = jax.nn.one_hot(codes.reshape(k, -1).T, c)             # [C**K, K, C]
  logits = model.apply(params, x, method=model.encode)       # [B, K, C]
  log_q = jax.nn.log_softmax(logits)
  f = jax.vmap(lambda z: vae.neg_elbo_one_layer(model, params, z, x, log_q))(
      zs)                                                    # [C**K, B]
  log_qz = jnp.einsum("nkc,bkc->nb", zs, log_q)
  return jnp.sum(jnp.exp(log_qz) * f, axis=0)                # [B]


def _exact_neg_elbo_two_layer(model, params, x):
  k, c = model.num_latents, model.num_categories
  codes = np.array(np.meshgrid(*[np.arange(c)] * k, indexing="ij"))
  zs = jax.nn.one_hot(codes.reshape(k, -1).T, c)             # [N, K, C]
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


@pytest.mark.parametrize("model_name", ["nonlinear", "two_layer"])
def test_training_gradient_is_unbiased_for_every_parameter(model_name):
  """Mean of the ARSM training gradient vs the exact gradient by enumeration.

  Covers the encoder (through the estimator and log q), the decoder
  (pathwise) and, for two layers, q(z2|z1) and p(z1|z2) too.
  """
  model = vae_models.make_model(model_name, num_latents=2, num_categories=3,
                                num_pixels=5, encoder_hidden=(4,),
                                decoder_hidden=(4,))
  x = jnp.asarray(np.random.default_rng(1).random((2, 5)) < 0.5, jnp.float32)
  params = model.init(jax.random.PRNGKey(2), x, jnp.zeros((2, 2, 3)))
  est = estimators.get("arsm")
  objective = vae.make_objective(model, est)
  exact_fn = (_exact_neg_elbo_two_layer if model_name == "two_layer"
              else _exact_neg_elbo_one_layer)
  exact = jax.grad(lambda p: jnp.mean(exact_fn(model, p, x)))(params)
  draws = 2000
  grads = jax.jit(jax.vmap(lambda k: jax.grad(
      lambda p: objective.loss(p, k, x, None)[0])(params)))(
          jax.random.split(jax.random.PRNGKey(3), draws))
  for module in exact["params"]:
    exact_m = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(
        exact["params"][module])])
    draws_m = np.concatenate(
        [np.reshape(a, (draws, -1)) for a in jax.tree_util.tree_leaves(
            grads["params"][module])], axis=1)
    mean = draws_m.mean(0)
    se = draws_m.std(0) / math.sqrt(draws)
    # Each coordinate's mean lies within 5 standard errors of the exact value
    # (false-failure probability < 1e-6 per coordinate under the CLT, < 1e-4
    # for all ~200); 1e-5 absorbs float32 rounding where se ~ 0.
    err = np.abs(mean - exact_m)
    assert np.all(err <= 5 * se + 1e-5), (module, np.max(err / (se + 1e-12)))
    # The test has power: had this module's gradient been dropped (as the
    # authors' two-layer code did for q(z2|z1)), some coordinate would fail.
    assert np.any(np.abs(exact_m) > 5 * se + 1e-5), module


def test_surrogate_value_is_neg_elbo_at_the_estimators_sample():
  model = vae_models.make_model("linear", num_latents=2, num_categories=3,
                                num_pixels=4)
  x = jnp.ones((3, 4))
  params = model.init(jax.random.PRNGKey(0), x, jnp.zeros((3, 2, 3)))
  objective = vae.make_objective(model, estimators.get("arsm"))
  key = jax.random.PRNGKey(5)
  loss, (train, _) = objective.loss(params, key, x, None)
  np.testing.assert_allclose(loss, jnp.mean(train), rtol=1e-6)
  # The expectation layer gives image b the key split(k_est, B)[b], from which
  # ARSM draws z by the Dirichlet augmentation.
  k_est, _ = jax.random.split(key)
  logits = model.apply(params, x, method=model.encode)
  z = jax.vmap(lambda k, lg: jax.nn.one_hot(swap.augment(k, lg).z, 3))(
      jax.random.split(k_est, 3), logits)
  expected = vae.neg_elbo_one_layer(model, params, z, x,
                                    jax.nn.log_softmax(logits))
  np.testing.assert_allclose(train, expected, rtol=1e-5)


# arsm runs in every other test; one score-function, one relaxed and one
# stateful estimator stand for the rest.
_GENERIC = ["reinforce_loo", "st_gumbel_softmax", "relax"]


@pytest.mark.parametrize("name", _GENERIC)
def test_any_registered_estimator_gives_a_finite_training_step(name):
  if name not in estimators.names():
    pytest.skip(f"{name} is not registered")
  config = _tiny(estimator=name)
  est = vae.validate_config(config)
  model, objective, tx = vae._build(config, est)
  state = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (20, 36)),
                       jnp.uint8)
  step = vae.make_train_step(objective, tx, "threshold", jax.random.PRNGKey(1))
  new = step(state, images, np.arange(10))
  assert int(new.step) == 1 and int(new.epoch_count) == 10
  assert np.isfinite(float(new.epoch_sum))
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                 state.params, new.params)
  assert all(np.isfinite(v) for v in jax.tree_util.tree_leaves(moved))
  assert max(jax.tree_util.tree_leaves(moved)) > 0
  if est.stateful:
    assert new.est_state is not None


# ----------------------------------------------------------------------------
# Config validation.


@pytest.mark.parametrize("field,value,match", [
    ("model", "deep", "Unknown model 'deep'.*linear, nonlinear, two_layer"),
    ("binarization", "static", "Unknown binarization 'static'"),
    ("decoder_samples", -1, "config.decoder_samples must be >= 0; got -1"),
    ("validation_split", "first", "Unknown validation_split 'first'; "
     "allowed: last, paper"),
    ("estimator", "nope", "Unknown estimator 'nope'; registered:"),
    ("batch_size", -5, "batch_size must be >= 1; got -5"),
    ("num_categories", 1, "num_categories must be >= 2"),
    ("dataset", "cifar10", "Unknown dataset 'cifar10'"),
    ("learning_rate", 0.0, "learning_rate must be a positive number"),
    ("encoder_hidden", (8, 0), "encoder_hidden must be a tuple of positive"),
])
def test_bad_config_fails_before_any_work(field, value, match, tmp_path,
                                          monkeypatch):
  config = _tiny()
  with config.unlocked():
    config[field] = value

  def no_jit(*args, **kwargs):
    raise AssertionError("compiled before validating the config")

  monkeypatch.setattr(jax, "jit", no_jit)
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=match):
    vae.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_two_layer_rejects_relaxed_estimators():
  if "st_gumbel_softmax" not in estimators.names():
    pytest.skip("st_gumbel_softmax is not registered")
  with pytest.raises(ValueError, match="two_layer.*relaxed"):
    vae.validate_config(_tiny(model="two_layer", estimator="st_gumbel_softmax"))


def test_unknown_estimator_setting_and_preset_are_rejected():
  config = _tiny()
  config.estimator_settings.bogus = 1
  with pytest.raises(ValueError, match="bogus"):
    vae.validate_config(config)
  with pytest.raises(ValueError, match="Unknown vae preset 'arsm_deep'"):
    vae_config.get_config("arsm_deep")


# ----------------------------------------------------------------------------
# The loop: training lowers the loss, resumption reproduces the result.


def _rows(workdir):
  with open(os.path.join(workdir, writers.METRICS_FILE)) as fh:
    return [json.loads(ln) for ln in fh]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("vae") / "full")
  summary = vae.train_and_evaluate(_tiny(num_epochs=3), workdir)
  return workdir, summary


def test_training_lowers_the_neg_elbo_and_writes_outputs(uninterrupted):
  workdir, summary = uninterrupted
  rows = _rows(workdir)
  epochs = [r for r in rows if "valid_neg_elbo" in r]
  assert [r["epoch"] for r in epochs] == [1, 2, 3]
  for r in epochs:
    assert all(np.isfinite(v) for v in r.values())
  assert epochs[-1]["valid_neg_elbo"] < epochs[0]["valid_neg_elbo"]
  assert epochs[-1]["train_neg_elbo"] < epochs[0]["train_neg_elbo"]
  tests = [r for r in rows if "test_neg_iwae" in r]
  assert len(tests) == 3 and all(
      r["test_neg_iwae"] <= r["test_neg_elbo"] + 0.5 for r in tests)
  variances = [r["grad_variance"] for r in rows if "grad_variance" in r]
  assert len(variances) == 18 // 4 and all(v > 0 for v in variances)
  assert summary["final_valid_neg_elbo"] == epochs[-1]["valid_neg_elbo"]
  assert summary["binarization"] == "threshold"
  # C(C-1)/2 + 1 = 7 evaluations per image at C = 4.
  assert summary["evals_per_image_per_step"] == 7
  assert summary["decoder_evals_per_step"] == 7 * 20
  with open(os.path.join(workdir, "summary.json")) as fh:
    assert json.load(fh)["final_epoch"] == 3


class _Killed(Exception):
  pass


def test_resume_after_interrupt_matches_uninterrupted_run(
    uninterrupted, tmp_path, monkeypatch):
  full_dir, full_summary = uninterrupted
  workdir = str(tmp_path / "resumed")
  original = writers.ProgressReporter.__call__

  def dies_at_step_13(self, step, *args, **kwargs):
    if step == 13:   # after the epoch-2 metrics (step 12), checkpoint at 10
      raise _Killed()
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(writers.ProgressReporter, "__call__", dies_at_step_13)
  with pytest.raises(_Killed):
    vae.train_and_evaluate(_tiny(num_epochs=3), workdir)
  assert any(r["step"] == 12 for r in _rows(workdir))
  monkeypatch.setattr(writers.ProgressReporter, "__call__", original)

  summary = vae.train_and_evaluate(_tiny(num_epochs=3), workdir)
  assert _rows(workdir) == _rows(full_dir)
  for key in ("final_valid_neg_elbo", "final_test_neg_iwae",
              "final_train_neg_elbo", "final_grad_variance"):
    assert summary[key] == full_summary[key]


def test_resume_with_a_different_config_is_refused(uninterrupted):
  workdir, _ = uninterrupted
  with pytest.raises(ValueError, match="different config.*learning_rate"):
    vae.train_and_evaluate(_tiny(num_epochs=3, learning_rate=1e-2), workdir)


def test_runs_saved_before_a_field_existed_resume_with_its_old_value(
    uninterrupted, tmp_path):
  full_dir, full_summary = uninterrupted
  workdir = str(tmp_path / "old")
  shutil.copytree(full_dir, workdir)
  path = os.path.join(workdir, "config.json")
  with open(path) as fh:
    saved = json.load(fh)
  for field in ("validation_split", "decoder_samples"):
    del saved[field]
  with open(path, "w") as fh:
    json.dump(saved, fh)
  # The finished run is recognised (nothing left to train)...
  summary = vae.train_and_evaluate(_tiny(num_epochs=3), workdir)
  assert summary["final_valid_neg_elbo"] == full_summary["final_valid_neg_elbo"]
  # ...but not under a value the old run did not use.
  with open(path, "w") as fh:
    json.dump(saved, fh)
  with pytest.raises(ValueError, match=r"different config.*validation_split"):
    vae.train_and_evaluate(_tiny(num_epochs=3, validation_split="paper"),
                           workdir)
