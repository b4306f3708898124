"""The experiments. Each module has ``train_and_evaluate(config, workdir)``.

``get(name)`` imports the task module named by ``config.experiment``; tasks
are imported lazily so that, say, the toy does not need TFDS. The experiments
need the ``[experiments]`` extra (LunarLander also ``[lunarlander]``),
checked once per launch, before anything runs, by
``check_requirements(name, config)``, which the command line and
``arsm_jax.experiments.train_and_evaluate`` call; ``get`` turns an import
error of a missing extra into a :class:`MissingExtraError` too, whose
one-line message names the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

TASKS = {
    "toy": "arsm_jax.tasks.toy",
    "vae": "arsm_jax.tasks.vae",
    "rl": "arsm_jax.tasks.rl",
}

# Top-level modules each experiment imports (some only inside functions, so
# a missing one would otherwise surface mid-run), all from the
# [experiments] extra.
_COMMON = ("absl", "ml_collections", "matplotlib")
REQUIRED_MODULES = {
    "toy": _COMMON,
    "vae": _COMMON + ("flax", "tensorflow_datasets", "orbax"),
    "rl": _COMMON + ("flax", "gymnax", "orbax"),
}
# Modules of the [lunarlander] extra, needed by the RL experiment's
# LunarLander-v3 (simulated on the host).
LUNARLANDER_MODULES = ("gymnasium", "Box2D")
# Every module of the [experiments] extra, for import errors raised while a
# task module loads.
_EXTRA_OF_MODULE = {m: "experiments"
                    for ms in REQUIRED_MODULES.values() for m in ms}
_EXTRA_OF_MODULE.update({m: "experiments" for m in (
    "tensorboardX", "pandas", "etils", "array_record", "PIL",
    "importlib_resources")})
_EXTRA_OF_MODULE.update({m: "lunarlander" for m in LUNARLANDER_MODULES})


def install_command(extras: str) -> str:
  """How to install ``extras`` (``'experiments'``) while arsm_jax is not on
  PyPI: from a clone, or from the path of one."""
  return (f"pip install '.[{extras}]' in a clone of arsm_jax (or pip install "
          f"'/path/to/arsm_jax[{extras}]')")


class MissingExtraError(ImportError):
  """An experiment needs a module of an extra that is not installed."""

  @classmethod
  def for_modules(cls, what: str, modules: "list[str] | tuple[str, ...]",
                  extra: str = "experiments") -> "MissingExtraError":
    modules = sorted({m.split(".")[0] for m in modules if m})
    extras = {_EXTRA_OF_MODULE.get(m, extra) for m in modules} or {extra}
    # [lunarlander] alone is not enough: it adds to [experiments].
    names = ",".join(sorted(extras))
    verb = "are" if len(modules) > 1 else "is"
    return cls(f"{what} needs {', '.join(modules) or 'a missing module'}, "
               f"which {verb} not installed: {install_command(names)}")


def _missing(modules: "list[str] | tuple[str, ...]") -> list[str]:
  """The modules that cannot be found (looked up, not imported)."""
  missing = []
  for m in modules:
    try:
      found = importlib.util.find_spec(m) is not None
    except (ImportError, ValueError):  # A finder refused it: not usable.
      found = False
    if not found:
      missing.append(m)
  return missing


def check_requirements(name: str, config=None) -> None:
  """Raises :class:`MissingExtraError` if experiment ``name`` cannot run.

  Only looks the modules up (nothing is imported). With ``config``, an RL
  config on LunarLander also needs the ``[lunarlander]`` extra.
  """
  missing = _missing(REQUIRED_MODULES.get(name, ()))
  env = str(config.get("env", "")) if config is not None else ""
  if name == "rl" and env.startswith("LunarLander"):
    missing += _missing(LUNARLANDER_MODULES)
  if missing:
    what = f"The {name} experiment" + (f" on {env}" if env and name == "rl"
                                       else "")
    raise MissingExtraError.for_modules(what, missing)


def get(name: str) -> ModuleType:
  """Returns the task module for ``name`` ('toy', 'vae', 'rl').

  Raises:
    ValueError: for an unknown experiment.
    MissingExtraError: when a module the experiment needs is not installed.
  """
  if name not in TASKS:
    raise ValueError(
        f"Unknown experiment {name!r}; known experiments: {', '.join(TASKS)}.")
  try:
    return importlib.import_module(TASKS[name])
  except ModuleNotFoundError as e:
    if e.name == TASKS[name]:
      raise ValueError(f"Experiment {name!r} is not implemented yet.") from e
    if e.name and e.name.split(".")[0] in _EXTRA_OF_MODULE:
      raise MissingExtraError.for_modules(
          f"The {name} experiment", [e.name]) from e
    raise


def check_workdir(workdir) -> str:
  """Returns ``workdir``; an empty one (``--workdir=``) is a ``ValueError``."""
  if not isinstance(workdir, (str, os.PathLike)) or not str(workdir).strip():
    raise ValueError(
        f"workdir is {workdir!r}; pass the folder for the run's files, e.g. "
        "'runs/vae' (it is created if missing; rerunning with it resumes).")
  return os.fspath(workdir)


def train_and_evaluate(config, workdir: str):
  """Runs ``config.experiment`` with ``config``, writing into ``workdir``."""
  workdir = check_workdir(workdir)
  return get(config.experiment).train_and_evaluate(config, workdir)
