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
# The training step with any estimator (the objectives themselves are tested
# in tests/test_objectives.py).


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
