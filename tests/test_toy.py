"""The toy experiment end to end, its launcher and its config."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from arsm_jax import writers
from arsm_jax.tasks import toy
from configs import toy as toy_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(**overrides):
  config = toy_config.get_config()
  config.num_categories = 8
  config.reward_scale = 8.0
  config.num_iterations = 200
  config.variance_every = 50
  config.variance_draws = 20
  config.estimators = "exact,arsm,reinforce"
  config.update(overrides)
  return config


def test_train_and_evaluate_writes_summary_metrics_and_figure(tmp_path):
  workdir = str(tmp_path)
  result = toy.train_and_evaluate(small_config(), workdir)
  with open(os.path.join(workdir, "summary.json")) as fh:
    summary = json.load(fh)
  assert set(summary["estimators"]) == {"exact", "arsm", "reinforce"}
  for name, s in summary["estimators"].items():
    assert 0.5 < s["final_expected_reward"] <= summary["optimum"] + 1e-6, name
    assert s["seconds"] > 0
  # Exact gradient ascent improves on the uniform start (0.5 + (C+1)/(2CR)).
  start = 0.5 + 9 / (2 * 8 * 8)
  assert summary["estimators"]["exact"]["final_expected_reward"] > start + 0.02
  df = writers.read_metrics(os.path.join(workdir, "arsm"))
  per_step = df.dropna(subset=["expected_reward"])
  assert len(per_step) == 200
  assert np.all(np.diff(per_step["step"].to_numpy()) == 1)
  var = df.dropna(subset=["grad_variance"])
  assert len(var) == 4 and np.all(var["grad_variance"] > 0)
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "arsm")))
  assert os.path.getsize(os.path.join(workdir, "toy.png")) > 10_000
  assert result["curves"]["arsm"]["expected_reward"].shape == (200,)


def test_rerun_loads_saved_results_and_changed_config_refuses_or_reruns(
    tmp_path):
  workdir = str(tmp_path)
  config = small_config(estimators="arsm", plot=False)
  first = toy.train_and_evaluate(config, workdir)
  done = os.path.join(workdir, "arsm", "result.json")
  stamp = os.path.getmtime(done)
  second = toy.train_and_evaluate(config, workdir)
  assert os.path.getmtime(done) == stamp
  np.testing.assert_array_equal(first["curves"]["arsm"]["expected_reward"],
                                second["curves"]["arsm"]["expected_reward"])
  config.seed = 1
  # A different config is refused, naming the field and both values...
  with pytest.raises(ValueError, match=r"different config \(seed: saved 0, "
                     r"now 1\).*config.fresh=True"):
    toy.train_and_evaluate(config, workdir)
  assert os.path.getmtime(done) == stamp
  # ...the plot and another estimator's settings are not part of the run...
  config.seed = 0
  config.plot = True
  config.learning_rates.ar = 0.1
  toy.train_and_evaluate(config, workdir)
  assert os.path.getmtime(done) == stamp
  # ...and config.fresh starts the run again under the new config.
  config.seed = 1
  config.fresh = True
  toy.train_and_evaluate(config, workdir)
  assert os.path.getmtime(done) != stamp


@pytest.mark.parametrize("field,value,match", [
    ("estimators", "arsm,armsm", "Unknown estimator.*armsm"),
    ("num_iterations", 230, "multiple of variance_every"),
    ("num_categories", 1, "num_categories must be >= 2"),
    ("variance_draws", 0, "variance_draws must be >= 1"),
])
def test_bad_config_fails_before_running(tmp_path, field, value, match):
  with pytest.raises(ValueError, match=match):
    toy.train_and_evaluate(small_config(**{field: value}), str(tmp_path))


def test_published_setting_arsm_and_exact_reach_the_optimum(tmp_path):
  # The paper's setting: C = R = 30, 5,000 iterations, step size 1.
  config = toy_config.get_config()
  config.estimators = "exact,arsm"
  config.plot = False
  summary = toy.train_and_evaluate(config, str(tmp_path))["summary"]
  for name in ("exact", "arsm"):
    assert summary[name]["final_expected_reward"] >= 0.532, summary[name]


def run_launcher(*args):
  return subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "main.py"), *args],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_launcher_with_overrides(tmp_path):
  proc = run_launcher("--config=configs/toy.py:quick", f"--workdir={tmp_path}",
                      "--config.estimators=arsm,ar", "--config.plot=False",
                      "--config.num_iterations=100")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "summary.json") as fh:
    summary = json.load(fh)
  assert set(summary["estimators"]) == {"arsm", "ar"}
  assert summary["num_iterations"] == 100


def test_launcher_rejects_a_mistyped_field(tmp_path):
  proc = run_launcher("--config=configs/toy.py", f"--workdir={tmp_path}",
                      "--config.num_iteration=5")
  assert proc.returncode != 0
  assert "num_iteration" in proc.stderr
  assert not (tmp_path / "summary.json").exists()
