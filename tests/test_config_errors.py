"""Issue 27, items 5-7: configs that say what they do, errors that say what to do.

Each test failed on the code before the fix (checked once on commit 9416cb8).
Cheap: tiny configs, synthetic or copied data, one short run at most.
"""

import json
import os
import shutil
import subprocess
import sys
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import config_checks
from arsm_jax import data
from arsm_jax import estimators
from arsm_jax import experiments
from arsm_jax import tasks
from arsm_jax import writers
from arsm_jax.tasks import rl
from arsm_jax.tasks import toy
from arsm_jax.estimators import validation
from arsm_jax.tasks import vae
from arsm_jax.tasks import vae_checks
from configs import rl as rl_config
from configs import toy as toy_config
from configs import vae as vae_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REAL_MNIST = os.path.join(os.path.dirname(REPO), "shared", "tfds", "mnist",
                           "3.0.1")
if not os.path.isdir(_REAL_MNIST):
  _REAL_MNIST = "/work/shared/tfds/mnist/3.0.1"


def _launch(*args, cwd=REPO):
  return subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "main.py"), *args],
      cwd=cwd, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


def _tiny_vae(**overrides):
  config = vae_config.get_config("tiny")
  for k, v in overrides.items():
    config[k] = v
  return config


# ----------------------------------------------------------------------------
# Item 5: what a config says is what runs.


def test_synthetic_data_refuses_the_paper_validation_split():
  with pytest.raises(ValueError, match="validation_split='paper' applies to "
                     "the TFDS datasets.*synthetic"):
    vae.validate_config(_tiny_vae(validation_split="paper"))
  vae.validate_config(_tiny_vae())     # 'last', the default, is fine


@pytest.mark.parametrize("spec,typo,field", [
    ("vae:tiny", "num_epoch", "num_epochs"),
    ("toy", "num_iteration", "num_iterations"),
    ("rl:tiny", "num_episode", "num_episodes"),
])
def test_configs_built_in_python_refuse_an_unknown_field(spec, typo, field):
  for config in (experiments.get_config(spec),
                 {"vae": vae_config, "toy": toy_config, "rl": rl_config}[
                     spec.split(":")[0]].get_config(*spec.split(":")[1:])):
    with pytest.raises(AttributeError,
                       match=f'"{typo}".*Did you mean "{field}"'):
      setattr(config, typo, 3)       # config.num_epoch = 3
    setattr(config, field, 3)                 # a field it has can be changed
    with config.unlocked():            # and one added on purpose
      config.extra = 1


def test_toy_maps_keyed_by_estimator_stay_open_and_are_checked():
  config = toy_config.get_config()
  config.learning_rates.ar = 0.1
  config.estimator_settings.ars = {"eval_batch_size": 4}
  toy.validate_config(config)
  config.estimator_settings.arsmm = {"skip_if_all_equal": False}
  with pytest.raises(ValueError, match="Unknown estimator 'arsmm'.*"
                     r"\(config.estimator_settings\)"):
    toy.validate_config(config)


def test_rl_summary_keeps_the_learners_finished_earlier(tmp_path):
  config = rl_config.get_config("tiny")
  config.plot = False
  config.variance_every = 0
  config.num_episodes = 3
  workdir = str(tmp_path / "rl")
  config.learner = "reinforce_ma"
  rl.train_and_evaluate(config, workdir)
  config.learner = "a2c"
  out = rl.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "summary.json")) as fh:
    summary = json.load(fh)
  assert set(summary["learners"]) == {"a2c", "reinforce_ma"}
  assert set(out["summary"]) == set(out["curves"]) == {"a2c", "reinforce_ma"}
  assert summary["learners"]["reinforce_ma"]["learner"] == "reinforce_ma"
  # A finished run of another config is not this config's: left out.
  config.gamma = 0.5
  assert rl.finished_learners(config, workdir) == {}
  config.gamma = rl_config.get_config("tiny").gamma
  assert set(rl.finished_learners(config, workdir, skip=("a2c",))) == {
      "reinforce_ma"}


# ----------------------------------------------------------------------------
# Item 6: every registered estimator's settings can be set by override.


def test_every_registered_setting_is_declared_and_unset_by_default():
  settings = vae_config.get_config().estimator_settings
  for name, info in estimators.info().items():
    for setting in info.settings:
      assert setting in settings, (name, setting)
  assert vae_checks.estimator_settings(vae_config.get_config()) == {}
  # Presets set theirs; config.json holds only the settings that are set,
  # as before every setting was declared (saved runs stay the same run).
  assert vae_checks.config_json(vae_config.get_config("reinforce_loo"))[
      "estimator_settings"] == {"num_samples": 46}
  assert vae_checks.config_json(vae_config.get_config())["estimator_settings"] == {}


def test_estimator_settings_errors_name_the_allowed_ones():
  config = _tiny_vae(estimator="reinforce_loo")
  config.estimator_settings.num_samples = 4
  assert vae.validate_config(config).kwargs == {"num_samples": 4}
  config.estimator = "arsm"              # a setting arsm does not take
  allowed = sorted(estimators.info()["arsm"].settings)
  with pytest.raises(ValueError, match=r"'num_samples'.*'arsm'; allowed: "
                     + re.escape(str(allowed)) +
                     r".*config.estimator_settings"):
    vae.validate_config(config)
  with pytest.raises(AttributeError, match='Did you mean "num_samples"'):
    config.estimator_settings.num_sample = 4   # no estimator has it


@pytest.mark.parametrize("overrides,settings", [
    (["estimator=relax", "estimator_settings.hidden_sizes=(20,20)",
      "estimator_settings.include_f=True", "estimator_settings.temperature=1"],
     {"hidden_sizes": (20, 20), "include_f": True, "temperature": 1.0}),
    (["estimator=arsm", "estimator_settings.eval_batch_size=64"],
     {"eval_batch_size": 64}),
    (["estimator=unordered_set", "estimator_settings.num_samples=3"],
     {"num_samples": 3}),
])
def test_command_line_overrides_parse_each_setting_type(overrides, settings,
                                                       monkeypatch):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                  lock_config=True)
  argv = (["main.py", f"--config={REPO}/configs/vae.py:tiny"]
          + [f"--config.{o}" for o in overrides])
  monkeypatch.setattr(sys, "argv", argv)   # config_flags reads it
  values(argv)
  est = vae.validate_config(values.config)
  assert est.kwargs == settings


def test_launcher_sets_any_estimator_setting(tmp_path):
  proc = _launch("--config=configs/vae.py:tiny", f"--workdir={tmp_path}",
                 "--config.estimator=reinforce_loo",
                 "--config.estimator_settings.num_samples=3",
                 "--config.num_epochs=1", "--config.variance_every_steps=0")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "summary.json") as fh:
    summary = json.load(fh)
  assert summary["estimator"] == "reinforce_loo"
  assert summary["estimator_settings"] == {"num_samples": 3}
  assert summary["evals_per_image_per_step"] == 3


def test_launcher_names_an_unknown_setting_and_the_known_ones(tmp_path):
  proc = _launch("--config=configs/vae.py:tiny", f"--workdir={tmp_path}",
                 "--config.estimator_settings.num_sample=3")
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("--config.estimator_settings.num_sample: "
                         "config.estimator_settings has no field "
                         "'num_sample'; did you mean num_samples?"), last
  fields = sorted(config_checks.estimator_settings_fields().keys())
  assert f"Its fields: {', '.join(fields)}." in last
  assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------------
# Item 7: one clear message naming the file or value and what to do.


def test_read_json_names_a_damaged_file(tmp_path):
  path = tmp_path / "config.json"
  path.write_text('{"seed": 0, "num_ep')
  with pytest.raises(ValueError, match=f"The config {path} .*bytes.* is "
                     "damaged: it is not valid JSON.*line 1.*Restore it"):
    writers.read_json(str(path), "config")
  path.write_bytes(b"\xff\xfe\x00")
  with pytest.raises(ValueError, match="is damaged: it is not text"):
    writers.read_json(str(path))
  path.write_text("[1, 2]")
  with pytest.raises(ValueError, match="a JSON list, not an object"):
    writers.read_json(str(path))
  path.write_text('{"a": 1}')
  assert writers.read_json(str(path)) == {"a": 1}


def _quick_toy():
  config = toy_config.get_config()
  config.estimators = "reinforce"
  config.num_iterations = 20
  config.variance_every = 10
  config.variance_draws = 2
  config.plot = False
  return config


@pytest.mark.parametrize("damaged", ["config.json", "result.json"])
def test_a_damaged_run_file_is_named(tmp_path, damaged):
  config = _quick_toy()
  workdir = str(tmp_path / "toy")
  toy.train_and_evaluate(config, workdir)
  path = os.path.join(workdir, "reinforce", damaged)
  with open(path, "r+") as fh:
    fh.truncate(7)
  with pytest.raises(ValueError, match=f"{path} .* is damaged: it is not "
                     "valid JSON"):
    toy.train_and_evaluate(config, workdir)


def test_an_empty_dataset_folder_is_named(tmp_path):
  (tmp_path / "mnist").mkdir()
  with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'mnist'} holds no "
                     "prepared mnist.*it is empty.*--config.data_dir"):
    data.load_split("mnist", "test", str(tmp_path), cache_dir=None)
  (tmp_path / "mnist" / "3.0.1").mkdir()
  with pytest.raises(FileNotFoundError, match="holds no prepared mnist.*"
                     "holds only 3.0.1"):
    data.load_split("mnist", "test", str(tmp_path), cache_dir=None)


@pytest.fixture
def mnist_test_copy(tmp_path, monkeypatch):
  """A data folder holding a copy of the prepared MNIST test split (4 MB)."""
  if not os.path.isdir(_REAL_MNIST):
    pytest.skip(f"no prepared TFDS mnist in {_REAL_MNIST}")
  folder = tmp_path / "tfds" / "mnist" / "3.0.1"
  folder.mkdir(parents=True)
  for name in ("dataset_info.json", "features.json",
               "mnist-test.array_record-00000-of-00001"):
    shutil.copyfile(os.path.join(_REAL_MNIST, name), folder / name)
  monkeypatch.setattr(data, "_MEMORY_CACHE", {})
  return folder


def test_a_renamed_array_record_file_is_named(mnist_test_copy):
  folder = mnist_test_copy
  shard = "mnist-test.array_record-00000-of-00001"
  os.rename(folder / shard, folder / "mnist-test.array_record")
  with pytest.raises(FileNotFoundError, match=f"needs {shard}, which is "
                     "missing.*the folder has mnist-test.array_record"):
    data.load_split("mnist", "test", str(folder.parent.parent), None)


def test_a_truncated_array_record_file_is_named(mnist_test_copy):
  folder = mnist_test_copy
  path = folder / "mnist-test.array_record-00000-of-00001"
  with open(path, "r+b") as fh:
    fh.truncate(os.path.getsize(path) // 2)
  with pytest.raises(ValueError, match=f"{path} is truncated or damaged"):
    data.load_split("mnist", "test", str(folder.parent.parent), None)


class _FakeSource:
  """Stands in for a TFDS data source of 28x28x1 images."""

  def __init__(self, images):
    self.images = images
    self.calls = 0

  def __len__(self):
    return len(self.images)

  def __getitems__(self, idx):
    self.calls += 1
    return [{"image": self.images[i].reshape(28, 28, 1)} for i in idx]


def test_a_truncated_image_cache_is_rebuilt(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  (tmp_path / "tfds" / "mnist").mkdir(parents=True)
  images = np.random.default_rng(0).integers(0, 256, (300, 784)).astype(
      np.uint8)
  source = _FakeSource(images)
  monkeypatch.setattr(tfds, "data_source",
                      lambda name, data_dir, download: {"train": source})
  monkeypatch.setattr(data, "_MEMORY_CACHE", {})
  root, cache = str(tmp_path / "tfds"), tmp_path / "cache"
  data.load_split("mnist", "train", root, str(cache))
  (path,) = cache.glob("mnist-train-*.npy")
  with open(path, "r+b") as fh:
    fh.truncate(os.path.getsize(path) - 1000)
  for _ in range(2):   # rebuilt once, then read from the rebuilt cache
    monkeypatch.setattr(data, "_MEMORY_CACHE", {})
    np.testing.assert_array_equal(
        data.load_split("mnist", "train", root, str(cache)), images)
  assert source.calls == 2
  np.testing.assert_array_equal(np.load(path), images)


def test_an_empty_workdir_is_refused(tmp_path):
  with pytest.raises(ValueError, match="workdir is ''; pass the folder"):
    tasks.train_and_evaluate(_quick_toy(), "")
  with pytest.raises(ValueError, match="workdir is ' '"):
    experiments.train_and_evaluate(_quick_toy(), " ")
  proc = _launch(f"--config={os.path.join(REPO, 'configs', 'toy.py')}",
                 "--workdir=", "--config.estimators=reinforce",
                 "--config.num_iterations=20", "--config.variance_every=10",
                 cwd=str(tmp_path))
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "--workdir is empty; pass the folder")
  assert not os.listdir(tmp_path)


def test_a_relax_state_for_other_logits_is_named():
  est = estimators.get("relax")
  state = est.init(jax.random.key(0), jnp.zeros((2, 4)))

  def f(z):
    return jnp.sum(z * jnp.arange(z.shape[-1]))

  with pytest.raises(ValueError, match=r"made for logits of 8 entries.*"
                     r"shape \(3, 5\) \(15 entries\).*est.init"):
    est(jax.random.key(1), jnp.zeros((3, 5)), f, state=state)
  assert est(jax.random.key(1), jnp.zeros((2, 4)), f, state=state).shape == (
      2, 4)


@pytest.mark.parametrize("name", ["reinforce_loo", "gumbel_rao"])
def test_a_sample_count_beyond_memory_is_refused_up_front(name, monkeypatch):
  # eval_shape traces without allocating: the check runs at trace time.
  monkeypatch.setattr(validation, "device_memory_bytes", lambda: 8 * 2**30)
  est = estimators.get(name, num_samples=10**9)

  def f(z):
    return jnp.sum(z * jnp.arange(z.shape[-1]))

  with pytest.raises(ValueError, match=f"{name}: num_samples=1000000000 needs "
                     r"at least [\d,.]+ GiB.*more than the 8.0 GiB.*at most "
                     "about"):
    jax.eval_shape(lambda k: est(k, jnp.zeros((3, 4)), f), jax.random.key(0))
  small = estimators.get(name, num_samples=4)
  assert small(jax.random.key(0), jnp.zeros((3, 4)), f).shape == (3, 4)
  # The VAE refuses it before loading or compiling anything.
  config = _tiny_vae(estimator=name)
  config.estimator_settings.num_samples = 10**9
  with pytest.raises(ValueError, match=f"estimator '{name}': config."
                     "estimator_settings.num_samples=1000000000 needs at "
                     "least .* GiB for one training step"):
    vae.validate_config(config)


def test_more_devices_than_there_are_is_refused():
  count = jax.device_count()
  with pytest.raises(ValueError, match=f"num_devices={count + 2}, but JAX "
                     f"sees only {count} device"):
    vae.validate_config(_tiny_vae(num_devices=count + 2, batch_size=20 * (
        count + 2)))
