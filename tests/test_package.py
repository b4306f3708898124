"""The package as a user gets it: a light import, configs by name, the launcher.

The import checks run in fresh subprocesses, so what other tests imported
does not hide a heavy import.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib

import pytest

import arsm_jax
from arsm_jax import experiments
from arsm_jax import tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What a user of the estimators alone must not pay for.
HEAVY = ("flax", "tensorflow_datasets", "tensorflow", "gymnax", "gymnasium",
         "orbax", "matplotlib", "pandas", "tensorboardX", "ml_collections",
         "numpyro", "funsor", "equinox")

# A meta-path hook that records, for each heavy top-level module, the first
# file of this package or its tests that caused it to be imported.
_IMPORT_PROBE = textwrap.dedent("""
    import json, sys, traceback
    HEAVY = set(json.loads(sys.argv[1]))
    culprits = {}

    class Probe:
      def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in HEAVY and top not in culprits:
          frames = [f"{fs.filename}:{fs.lineno}"
                    for fs in traceback.extract_stack()
                    if "arsm_jax" in fs.filename]
          culprits[top] = frames[-1] if frames else "?"
        return None

    sys.meta_path.insert(0, Probe())
    exec(sys.argv[2])
    loaded = sorted(m for m in HEAVY if m in sys.modules)
    print(json.dumps({m: culprits.get(m, "?") for m in loaded}))
""")


def _heavy_imports(statement: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join(
                 [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(
                     os.pathsep) if p]))
  proc = subprocess.run(
      [sys.executable, "-c", _IMPORT_PROBE, json.dumps(HEAVY), statement],
      cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_arsm_jax_is_light():
  assert _heavy_imports("import arsm_jax") == {}


def test_estimators_expectation_diagnostics_import_nothing_heavy():
  loaded = _heavy_imports(
      "from arsm_jax import estimators, expectation, diagnostics\n"
      "import arsm_jax.expectation")
  # The value names the file and line that imported each heavy module.
  assert loaded == {}, f"heavy modules imported (module: importer): {loaded}"


def test_lazy_submodules():
  assert arsm_jax.diagnostics.__name__ == "arsm_jax.diagnostics"
  assert arsm_jax.experiments is experiments
  assert callable(arsm_jax.expectation)
  assert {"diagnostics", "experiments"} <= set(dir(arsm_jax))
  with pytest.raises(AttributeError, match="no_such_thing"):
    arsm_jax.no_such_thing  # pylint: disable=pointless-statement


def _project():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
    return tomllib.load(fh)


def test_version_in_one_place_and_changelog():
  pyproject = _project()
  assert pyproject["project"]["dynamic"] == ["version"]
  assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
      "attr": "arsm_jax.__version__"}
  assert re.fullmatch(r"\d+\.\d+\.\d+", arsm_jax.__version__)
  with open(os.path.join(REPO, "CHANGELOG.md"), encoding="utf-8") as fh:
    changelog = fh.read()
  assert f"## {arsm_jax.__version__}" in changelog


def test_core_requirements_are_light():
  project = _project()["project"]
  core = [re.split(r"[<>=\[ ]", r.strip())[0].lower()
          for r in project["dependencies"]]
  assert sorted(core) == ["jax", "jaxlib", "numpy", "optax"]
  extras = project["optional-dependencies"]
  assert {"experiments", "numpyro", "equinox", "lunarlander", "test", "docs",
          "all"} <= set(extras)


def test_metadata_is_complete():
  project = _project()["project"]
  assert project["license"] == "Apache-2.0" and project["authors"]
  assert "Typing :: Typed" in project["classifiers"]
  assert any(c.startswith("Programming Language :: Python :: 3.1")
             for c in project["classifiers"])
  assert project["scripts"] == {"arsm-jax": "arsm_jax.cli:console_main"}
  for name in ("arsm_jax/py.typed", "CITATION.cff",
               ".pre-commit-config.yaml"):
    assert os.path.isfile(os.path.join(REPO, name)), name
  with open(os.path.join(REPO, "CITATION.cff"), encoding="utf-8") as fh:
    citation = fh.read()
  assert f'version: "{arsm_jax.__version__}"' in citation


def test_requirements_pin_every_extra():
  """Every package of an extra has a pin in requirements.txt."""
  with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as fh:
    pinned = {re.split(r"[=\[]", line)[0].lower().replace("_", "-")
              for line in fh if line.strip() and not line.startswith("#")}
  extras = _project()["project"]["optional-dependencies"]
  for name, reqs in extras.items():
    if name == "all":
      continue
    for r in reqs:
      package = re.split(r"[<>=\[ ]", r)[0].lower().replace("_", "-")
      assert package in pinned, (name, package)


@pytest.mark.parametrize("spec,experiment", [
    ("toy", "toy"), ("toy:quick", "toy"), ("vae:arsm_nonlinear", "vae"),
    ("vae:tiny", "vae"), ("rl:acrobot", "rl"),
    (os.path.join("configs", "rl.py") + ":tiny", "rl"),
])
def test_get_config_by_name(spec, experiment):
  config = experiments.get_config(spec)
  assert config.experiment == experiment


def test_get_config_presets_match_the_config_files():
  assert experiments.get_config("toy:quick").num_iterations == 500
  assert experiments.get_config("vae:arsm_linear").model == "linear"
  assert experiments.get_config("rl:acrobot").env == "Acrobot-v1"


def test_get_config_rejects_unknown_names():
  with pytest.raises(ValueError, match="Unknown experiment 'nope'.*rl, toy"):
    experiments.get_config("nope")
  with pytest.raises(ValueError, match="Unknown toy preset 'nope'"):
    experiments.get_config("toy:nope")
  with pytest.raises(FileNotFoundError, match="missing.py"):
    experiments.get_config("configs/missing.py")


def test_get_config_from_another_directory(tmp_path):
  code = ("from arsm_jax import experiments; "
          "c = experiments.get_config('vae:tiny'); print(c.dataset)")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH",
                                                              "")]))
  proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "synthetic"


def test_missing_extra_is_one_clear_error(monkeypatch):
  real = tasks.importlib.util.find_spec
  absent = {"orbax"}
  monkeypatch.setattr(
      tasks.importlib.util, "find_spec",
      lambda name, *a: None if name in absent else real(name, *a))
  with pytest.raises(tasks.MissingExtraError,
                     match=r"^The vae experiment needs orbax, which is not "
                     r"installed: pip install '\.\[experiments\]' in a clone of arsm_jax "
                     r"\(or pip install '/path/to/arsm_jax\[experiments\]'\)$"):
    tasks.check_requirements("vae")
  absent = {"orbax", "gymnasium"}
  with pytest.raises(tasks.MissingExtraError,
                     match=r"needs gymnasium, orbax, which are not installed: "
                     r"pip install '\.\[experiments,lunarlander\]' in a clone"):
    tasks.check_requirements("rl", experiments.get_config("rl:lunarlander"))
  absent = {"gymnasium"}
  config = experiments.get_config("rl:lunarlander")
  with pytest.raises(tasks.MissingExtraError,
                     match=r"LunarLander-v3 needs gymnasium.*"
                     r"pip install '\.\[lunarlander\]' in a clone"):
    tasks.check_requirements("rl", config)
  tasks.check_requirements("rl", experiments.get_config("rl:cartpole"))
  tasks.check_requirements("toy")


# Imports of the named top-level modules fail, as if they were not installed.
_BLOCKER = textwrap.dedent("""
    import os, sys
    class Block:
      names = set(os.environ["BLOCK_MODULES"].split(","))
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
          raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
    sys.meta_path.insert(0, Block())
""")


def _launch(tmp_path, *args, block=""):
  (tmp_path / "block").mkdir(exist_ok=True)
  (tmp_path / "block" / "sitecustomize.py").write_text(_BLOCKER)
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  env["BLOCK_MODULES"] = block
  env["PYTHONPATH"] = os.pathsep.join(
      [str(tmp_path / "block"), REPO, os.environ.get("PYTHONPATH", "")])
  return subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "main.py"), *args],
      cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("block,config,extra", [
    ("ml_collections", "configs/toy.py", "experiments"),
    ("matplotlib", "configs/toy.py", "experiments"),
    ("tensorflow_datasets", "configs/vae.py", "experiments"),
    ("gymnasium", "configs/rl.py:lunarlander", "lunarlander"),
])
def test_launcher_without_an_extra_fails_with_one_line(tmp_path, block, config,
                                                       extra):
  workdir = tmp_path / "run"
  proc = _launch(tmp_path, f"--config={config}", f"--workdir={workdir}",
                 block=block)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-3000:]
  assert block in lines[0] and f"pip install '.[{extra}]' in a clone" in lines[0]
  assert f"'/path/to/arsm_jax[{extra}]'" in lines[0]
  assert not workdir.exists()


@pytest.mark.slow
def test_launch_prints_no_backend_probe_noise(tmp_path):
  proc = _launch(tmp_path, "--config=configs/toy.py",
                 f"--workdir={tmp_path / 'run'}", "--config.estimators=arsm",
                 "--config.num_iterations=20", "--config.variance_every=10",
                 "--config.plot=False")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Unable to initialize backend" not in proc.stderr
  assert "expected reward" in proc.stderr  # The run's own log still shows.


def test_readme_is_a_front_door():
  with open(os.path.join(REPO, "README.md"), "rb") as fh:
    readme = fh.read()
  assert len(readme) <= 8000, len(readme)
  text = readme.decode("utf-8")
  for command in (
      "bash scripts/setup.sh && .venv/bin/python experiments/main.py "
      "--config=configs/toy.py --workdir=runs/toy",
      "bash scripts/setup.sh && .venv/bin/python -m pytest -q -n auto tests"):
    assert command in text
  for page in ("docs/experiments/toy.md", "docs/experiments/vae.md",
               "docs/experiments/rl.md"):
    assert f"({page})" in text and os.path.isfile(os.path.join(REPO, page))
