r"""The experiments from Python: configs by name and one entry point.

    from arsm_jax import experiments

    config = experiments.get_config("toy")               # configs/toy.py
    config = experiments.get_config("vae:arsm_nonlinear")  # a preset
    config.num_epochs = 5
    result = experiments.train_and_evaluate(config, "runs/vae")

The same as ``python experiments/main.py --config=configs/vae.py:arsm_nonlinear
--workdir=runs/vae --config.num_epochs=5``, from any directory: the configs
are found in a source checkout (``configs/``) and in an installed package
(where they are shipped as ``arsm_jax/configs/``). They need the
``[experiments]`` extra (``pip install '.[experiments]'`` in a clone).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from arsm_jax import tasks

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CONFIG_DIRS = (
    # An installed wheel: setup.py maps configs/ to arsm_jax/configs/.
    os.path.join(_PACKAGE_DIR, "configs"),
    # A source checkout or an editable install.
    os.path.join(os.path.dirname(_PACKAGE_DIR), "configs"),
)


def config_dir() -> str:
  """The folder holding ``toy.py``, ``vae.py`` and ``rl.py``."""
  for d in _CONFIG_DIRS:
    if all(os.path.isfile(os.path.join(d, f"{n}.py")) for n in tasks.TASKS):
      return d
  raise FileNotFoundError(
      f"No experiment configs found; looked in {', '.join(_CONFIG_DIRS)}.")


def names() -> list[str]:
  """The experiments that have a config: 'rl', 'toy', 'vae'."""
  return sorted(tasks.TASKS)


def config_path(name: str) -> str:
  """The path of experiment ``name``'s config file (``.../configs/vae.py``)."""
  if name not in tasks.TASKS:
    raise ValueError(f"Unknown experiment {name!r}; known experiments: "
                     f"{', '.join(names())}.")
  return os.path.join(config_dir(), f"{name}.py")


def load_config_module(path: str):
  """Imports a config file by path, as ``--config=path`` does."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Config file {path!r} does not exist.")
  module_name = "_arsm_jax_config_" + os.path.splitext(
      os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except ModuleNotFoundError as e:
    raise tasks.MissingExtraError.for_modules(
        f"the config {os.path.basename(path)}", [e.name]) from e
  return module


def get_config(spec: str) -> Any:
  """Builds an experiment's config, as ``--config=...`` does.

  Args:
    spec: ``'<experiment>[:<preset>]'`` (``'toy'``, ``'vae:arsm_nonlinear'``,
      ``'rl:acrobot'``) or the path of a config file with an optional preset
      (``'configs/vae.py:tiny'``).

  Returns:
    The ``ml_collections.ConfigDict`` that the config file's
    ``get_config(preset)`` returns, locked as on the command line: change
    its fields freely, but a field it does not have (``config.num_epoch =
    3``) is an ``AttributeError`` naming it and its close matches (``with
    config.unlocked():`` adds one on purpose).

  Raises:
    ValueError: for an unknown experiment or preset.
    MissingExtraError: when the ``[experiments]`` extra is not installed.
  """
  name, sep, preset = spec.partition(":")
  if name.endswith(".py") or os.sep in name or "/" in name:
    path = name
  else:
    path = config_path(name)
  module = load_config_module(path)
  config = module.get_config(preset) if sep else module.get_config()
  if hasattr(config, "lock") and not config.is_locked:
    config.lock()   # A config file of one's own that did not lock it.
  return config


def train_and_evaluate(config, workdir: str):
  """Runs ``config.experiment`` with ``config``, writing into ``workdir``.

  Each experiment's ``arsm_jax.tasks.<experiment>.train_and_evaluate``; see
  :mod:`arsm_jax.tasks`. Re-running with the same ``workdir`` resumes.

  Raises:
    MissingExtraError: before anything runs, when the experiment (or its
      environment, for LunarLander) needs an extra that is not installed.
  """
  tasks.check_requirements(config.experiment, config)
  return tasks.train_and_evaluate(config, workdir)


__all__ = ["config_dir", "config_path", "get_config", "names",
           "train_and_evaluate"]
