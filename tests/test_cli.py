"""The arsm-jax command (arsm_jax.cli): help, one-line config errors, runs.

Issue 31. Subprocesses on tiny configs; the only run is a 20-iteration toy.
"""

import os
import subprocess
import sys

import pytest

from arsm_jax import cli
from arsm_jax import experiments

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(*args, how="module", cwd=None):
  """Runs the command as ``python -m arsm_jax`` or ``experiments/main.py``."""
  start = ([sys.executable, "-m", "arsm_jax"] if how == "module" else
           [sys.executable, os.path.join(REPO, "experiments", "main.py")])
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
      [REPO, os.environ.get("PYTHONPATH", "")]))
  return subprocess.run([*start, *args], cwd=cwd or REPO, capture_output=True,
                        text=True, timeout=600, env=env)


def test_help_lists_experiments_presets_and_commented_fields(tmp_path):
  proc = _command("--help", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = proc.stdout
  assert out.startswith("usage: arsm-jax --config=EXPERIMENT[:PRESET]")
  for name in experiments.names():
    assert f"\n{name}: " in out
  for preset in ("quick", "arsm_linear", "st_gumbel_learned", "acrobot_authors",
                 "lunarlander", "tiny"):
    assert f"    {preset} " in out
  # A field, its default and its comment.
  assert "    num_iterations = 5000\n        Gradient-ascent iterations" in out
  assert "    num_episodes = 900\n        Training episodes per run" in out
  assert "    num_epochs = 100" in out


def test_help_for_one_experiment():
  proc = _command("--config=rl", "--help", how="script")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "\nrl: " in proc.stdout and "\nvae: " not in proc.stdout


def test_field_comments_read_the_config_source():
  comments = cli.field_comments(experiments.config_path("vae"))
  assert comments["num_categories"] == "C, categories of each latent variable."
  assert "Data." not in comments["dataset"]      # section headings dropped
  assert comments["num_validation"] == comments["validation_split"]


@pytest.mark.parametrize("args,line", [
    # An unknown field, with its close matches.
    (["--config=configs/vae.py:tiny", "--config.num_epoch=1"],
     "--config.num_epoch: config has no field 'num_epoch'; did you mean "
     "num_epochs"),
    # A value of the wrong type: the field, what it takes, the default.
    (["--config=toy", "--config.num_iterations=abc"],
     "--config.num_iterations=abc: config.num_iterations takes an integer "
     "(default 5000); got 'abc'."),
    (["--config=toy", "--config.plot=maybe"],
     "--config.plot=maybe: config.plot takes True or False"),
    # A bad value: the task's own check, naming what is allowed.
    (["--config=vae:tiny", "--config.estimator=foo"],
     "Unknown estimator 'foo'; registered: ar, ar_multi"),
    (["--config=vae:tiny", "--config.num_epochs=0"], "config.num_epochs"),
    # An unknown preset or experiment.
    (["--config=toy:nope"],
     "--config=toy:nope: Unknown toy preset 'nope'; known: quick."),
    (["--config=vea:tiny"], "unknown experiment 'vea'; did you mean vae? "
     "allowed: rl, toy, vae."),
    (["--config=toy", "--workdri=x"], "Unknown command line flag 'workdri'"),
])
def test_config_errors_are_one_line_exit_2(tmp_path, args, line):
  workdir = tmp_path / "run"
  proc = _command(*args, f"--workdir={workdir}")
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-3000:]
  assert line in lines[0], lines[0]
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()


def test_verbose_shows_the_traceback(tmp_path):
  proc = _command("--config=vae:tiny", "--config.num_epoch=1", "--verbose",
                  f"--workdir={tmp_path / 'run'}", how="script")
  assert proc.returncode == 2
  assert "Traceback" in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "--config.num_epoch: config has no field")


def test_missing_flags_are_named():
  proc = _command("--config=toy")
  assert proc.returncode == 2
  assert proc.stderr.strip() == (
      "--workdir required, e.g. arsm-jax --config=toy --workdir=runs/toy "
      "(arsm-jax --help lists the experiments)")


def test_a_changed_config_on_rerun_is_one_line_exit_2(tmp_path):
  tiny = ["--config=toy", f"--workdir={tmp_path}", "--config.estimators=arsm",
          "--config.num_iterations=20", "--config.variance_every=10",
          "--config.plot=False"]
  # From another directory, configs by path from the shipped copy.
  first = _command(*tiny, cwd=tmp_path)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "toy: arsm" in first.stderr and "expected reward" in first.stderr
  proc = _command(*tiny, "--config.seed=1", how="script")
  assert proc.returncode == 2, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert "with a different config (seed: saved 0, now 1)" in last
  assert "Traceback" not in proc.stderr and "reward_scale" not in proc.stderr


def test_config_paths_fall_back_to_the_shipped_configs(tmp_path, monkeypatch):
  shipped = experiments.config_path("vae")
  assert cli.resolve_spec("configs/vae.py:tiny") == (
      os.path.join("configs", "vae.py:tiny") if os.path.isfile(
          "configs/vae.py") else shipped + ":tiny")
  monkeypatch.chdir(tmp_path)
  assert cli.resolve_spec("configs/vae.py:tiny") == shipped + ":tiny"
  assert cli.resolve_spec("rl") == experiments.config_path("rl")
  with pytest.raises(cli.ConfigError, match="no file 'elsewhere/vae.py'"):
    cli.resolve_spec("elsewhere/vae.py")


def test_the_console_script_is_declared():
  import tomllib  # pylint: disable=g-import-not-at-top
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
    project = tomllib.load(fh)["project"]
  assert project["scripts"] == {"arsm-jax": "arsm_jax.cli:console_main"}
