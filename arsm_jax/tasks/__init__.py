"""The experiments. Each module has ``train_and_evaluate(config, workdir)``.

``get(name)`` imports the task module named by ``config.experiment``; tasks
are imported lazily so that, say, the toy does not need TFDS.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TASKS = {
    "toy": "arsm_jax.tasks.toy",
    "vae": "arsm_jax.tasks.vae",
    "rl": "arsm_jax.tasks.rl",
}


def get(name: str) -> ModuleType:
  """Returns the task module for ``name`` ('toy', 'vae', 'rl')."""
  if name not in TASKS:
    raise ValueError(
        f"Unknown experiment {name!r}; known experiments: {', '.join(TASKS)}.")
  try:
    return importlib.import_module(TASKS[name])
  except ModuleNotFoundError as e:
    if e.name == TASKS[name]:
      raise ValueError(f"Experiment {name!r} is not implemented yet.") from e
    raise


def train_and_evaluate(config, workdir: str):
  """Runs ``config.experiment`` with ``config``, writing into ``workdir``."""
  return get(config.experiment).train_and_evaluate(config, workdir)
