"""Tests of the categorical VAE: models, objective, loop and resumption."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import estimators
from arsm_jax import writers
from arsm_jax.models import vae as vae_models
from arsm_jax.tasks import vae
from arsm_jax.tasks import vae_data
from configs import vae as vae_config
from tests import helpers
from tests import test_objectives


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


class _MLPBefore(nn.Module):
  """The MLP as it was before the model options existed (the reference)."""

  hidden: tuple
  out: int

  @nn.compact
  def __call__(self, x):
    for i, width in enumerate(self.hidden):
      x = nn.leaky_relu(nn.Dense(width, name=f"hidden_{i}")(x), 0.2)
    return nn.Dense(self.out, name="out")(x)


class _VAEBefore(nn.Module):
  def setup(self):
    self.encoder = _MLPBefore((7,), 12)
    self.decoder = _MLPBefore((6,), 10)

  def __call__(self, x, z):
    return (self.encoder(x).reshape(x.shape[:-1] + (3, 4)),
            self.decoder(z.reshape(z.shape[:-2] + (12,))))


def test_default_options_give_the_parameters_and_outputs_of_before():
  x = jnp.asarray(np.random.default_rng(0).random((2, 10)), jnp.float32)
  z = jax.nn.one_hot(jnp.asarray([[0, 1, 3], [2, 2, 0]]), 4)
  before = _VAEBefore()
  ref = before.init(jax.random.PRNGKey(3), x, z)
  for model in (vae_models.make_model("nonlinear", 3, 4, 10, (7,), (6,)),
                vae_models.make_model("nonlinear", 3, 4, 10, (7,), (6,),
                                      weight_init="lecun",
                                      pin_first_logit=False)):
    params = model.init(jax.random.PRNGKey(3), x, z)
    assert (jax.tree_util.tree_structure(params)
            == jax.tree_util.tree_structure(ref))
    for a, b in zip(jax.tree_util.tree_leaves(params),
                    jax.tree_util.tree_leaves(ref)):
      np.testing.assert_array_equal(a, b)
    for a, b in zip(model.apply(params, x, z), before.apply(ref, x, z)):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", vae_models.MODELS)
def test_glorot_init_and_pinned_first_logit(name):
  x = jnp.asarray(np.random.default_rng(0).random((2, 10)), jnp.float32)
  z = jax.nn.one_hot(jnp.asarray([[0, 1, 3], [2, 2, 0]]), 4)
  make = lambda **o: vae_models.make_model(name, 3, 4, 10, (64,), (64,), **o)
  lecun = make().init(jax.random.PRNGKey(0), x, z)["params"]
  glorot = make(weight_init="glorot").init(jax.random.PRNGKey(0), x,
                                           z)["params"]
  for path, kernel in jax.tree_util.tree_leaves_with_path(glorot):
    if path[-1].key != "kernel":
      continue
    fan_in, fan_out = kernel.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.all(np.abs(kernel) <= bound), path     # uniform(-b, b)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(lecun), jax.tree_util.tree_leaves(glorot)))
  model = make(pin_first_logit=True)
  params = model.init(jax.random.PRNGKey(0), x, z)
  maps = [("encode", x)] + ([("encode2", z), ("prior1", z)]
                            if name == "two_layer" else [])
  for method, arg in maps:
    logits = model.apply(params, arg, method=getattr(model, method))
    assert logits.shape == (2, 3, 4)
    np.testing.assert_array_equal(logits[..., 0], 0.0)
    assert np.all(np.abs(logits[..., 1:]) > 0)
  out = "encoder" if name != "two_layer" else "encoder1"
  assert params["params"][out]["out"]["kernel"].shape[-1] == 3 * 3
  with pytest.raises(ValueError, match="Unknown weight_init 'xavier'"):
    make(weight_init="xavier")


# ----------------------------------------------------------------------------
# The training step with any estimator (the objectives themselves are tested
# in tests/test_objectives.py).


# arsm runs in every other test; one score-function, one relaxed and one
# stateful estimator stand for the rest.
_GENERIC = ["reinforce_loo", "st_gumbel_softmax", "relax", "carms", "disarm"]


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
  new, train_sum = step(state, images, np.arange(10))
  assert int(new.step) == 1 and train_sum.shape == ()
  assert np.isfinite(float(train_sum))
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                 state.params, new.params)
  assert all(np.isfinite(v) for v in jax.tree_util.tree_leaves(moved))
  assert max(jax.tree_util.tree_leaves(moved)) > 0
  if est.stateful:
    assert new.est_state is not None


def _steps(config, est, num_steps, images, seed=1):
  """Trains ``num_steps`` steps on ``images``; returns (model, first, last)."""
  model, objective, tx = vae._build(config, est)
  state = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  step = vae.make_train_step(objective, tx, "threshold",
                             jax.random.PRNGKey(seed))
  first = state
  for i in range(num_steps):
    idx = np.arange(i * config.batch_size,
                    (i + 1) * config.batch_size) % len(images)
    state, _ = step(state, images, idx)
  return model, first, state


_EVERY_RUN = [(m, n) for m in ("nonlinear", "two_layer")
              for n in estimators.names()]


@pytest.mark.slow
@pytest.mark.parametrize("model_name,name", _EVERY_RUN)
def test_every_estimator_trains_both_models(model_name, name):
  """A tiny synthetic run (configs/vae.py:tiny): the exact -ELBO falls."""
  config = _tiny(model=model_name, estimator=name, learning_rate=1e-2)
  est = vae.validate_config(config)
  splits = vae_data.load_data(config)
  images = jnp.asarray(splits["train"][:40])
  x = (images > 127).astype(jnp.float32)
  model, first, last = _steps(config, est, 12, images)
  before = float(jnp.mean(test_objectives.exact_neg_elbo(model, first.params,
                                                         x)))
  after = float(jnp.mean(test_objectives.exact_neg_elbo(model, last.params,
                                                        x)))
  assert np.isfinite(after) and after < before - 0.5, (before, after)
  for leaf in jax.tree_util.tree_leaves(last.est_state):
    assert np.all(np.isfinite(leaf))


@pytest.mark.parametrize("model_name,settings", [
    ("nonlinear", {"include_f": True}), ("two_layer", {})])
def test_a_checkpoint_with_relax_state_restores_to_identical_numbers(
    model_name, settings, tmp_path):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  config = _tiny(model=model_name, estimator="relax")
  for k, v in settings.items():
    config.estimator_settings[k] = v
  est = vae.validate_config(config)
  model, objective, tx = vae._build(config, est)
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (20, 36)),
                       jnp.uint8)
  step = vae.make_train_step(objective, tx, "threshold", jax.random.PRNGKey(1))
  state, _ = step(vae.init_state(config, model, tx, est, jax.random.PRNGKey(0)),
                  images, np.arange(10))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "state", state)
  checkpointer.wait_until_finished()
  fresh = vae.init_state(config, model, tx, est, jax.random.PRNGKey(5))
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, fresh)
  restored = checkpointer.restore(tmp_path / "state", abstract)
  assert (jax.tree_util.tree_structure(restored)
          == jax.tree_util.tree_structure(state))
  a = step(state, images, np.arange(10, 20))
  b = step(restored, images, np.arange(10, 20))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


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


def test_two_layer_accepts_relaxed_and_stateful_estimators():
  for name in ("st_gumbel_softmax", "gumbel_softmax", "reinmax", "relax"):
    vae.validate_config(_tiny(model="two_layer", estimator=name))
  config = _tiny(model="two_layer", estimator="relax")
  config.estimator_settings.include_f = True
  with pytest.raises(ValueError, match="two_layer.*include_f=False"):
    vae.validate_config(config)


def test_bad_model_options_are_rejected():
  # (pin_first_logit and learn_temperature are bools; ConfigDict refuses
  # anything else when the field is set.)
  with pytest.raises(ValueError, match="Unknown weight_init 'xavier'; "
                     "allowed: lecun, glorot"):
    vae.validate_config(_tiny(weight_init="xavier"))
  with pytest.raises(ValueError, match="learn_temperature=True needs"):
    vae.validate_config(_tiny(learn_temperature=True))  # arsm has no tau


def test_learned_temperature_trains_with_the_model():
  config = _tiny(estimator="st_gumbel_softmax", learn_temperature=True)
  est = vae.validate_config(config)
  model, objective, tx = vae._build(config, est)
  state = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  assert float(state.params["params"]["log_temperature"]) == 0.0  # tau = 1
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (20, 36)),
                       jnp.uint8)
  step = vae.make_train_step(objective, tx, "threshold", jax.random.PRNGKey(1))
  new, _ = step(state, images, np.arange(10))
  assert float(new.params["params"]["log_temperature"]) != 0.0
  preset = vae_config.get_config("st_gumbel_learned")
  assert preset.learn_temperature and preset.estimator == "st_gumbel_softmax"


def test_a_learned_temperature_run_logs_its_temperature(tmp_path):
  config = _tiny(estimator="st_gumbel_softmax", learn_temperature=True,
                 num_epochs=2)
  workdir = str(tmp_path / "tau")
  summary = vae.train_and_evaluate(config, workdir)
  epochs = [r for r in _rows(workdir) if "valid_neg_elbo" in r]
  taus = [r["temperature"] for r in epochs]
  assert len(taus) == 2 and all(t > 0 for t in taus)
  assert taus[0] != 1.0 and taus[1] != taus[0]   # it moves from tau0 = 1
  assert summary["final_temperature"] == taus[-1]
  # The logged value is the model's own: exp of the parameter it trains.
  est = vae.validate_config(config)
  model, _, tx = vae._build(config, est)
  params = vae.init_state(config, model, tx, est,
                          jax.random.PRNGKey(0)).params
  assert float(vae.learned_temperature(model, params)) == pytest.approx(1.0)
  plain_config = _tiny()
  plain_est = vae.validate_config(plain_config)
  plain_model = vae._build(plain_config, plain_est)[0]
  with pytest.raises(ValueError, match="built without learned_temperature"):
    vae.learned_temperature(plain_model, params)
  # A fixed-temperature run logs none.
  plain = vae.train_and_evaluate(_tiny(num_epochs=1), str(tmp_path / "fix"))
  assert plain["final_temperature"] is None
  assert all("temperature" not in r for r in _rows(str(tmp_path / "fix")))


def test_unknown_estimator_setting_and_preset_are_rejected():
  config = _tiny()
  with pytest.raises(AttributeError, match="bogus"):   # the config is locked
    config.estimator_settings.bogus = 1
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

  reported = helpers.record_progress(monkeypatch)
  summary = vae.train_and_evaluate(_tiny(num_epochs=3), workdir)
  # It started from the checkpoint of step 10: steps 1-10 were not redone.
  assert min(step for _, step in reported) == 11, reported
  assert _rows(workdir) == _rows(full_dir)
  for key in ("final_valid_neg_elbo", "final_test_neg_iwae",
              "final_train_neg_elbo", "final_grad_variance"):
    assert summary[key] == full_summary[key]


def test_resume_with_a_different_config_is_refused(uninterrupted):
  workdir, _ = uninterrupted
  with pytest.raises(ValueError, match="different config.*learning_rate"):
    vae.train_and_evaluate(_tiny(num_epochs=3, learning_rate=1e-2), workdir)
