"""The experiments. Each module has ``train_and_evaluate(config, workdir)``.

``get(name)`` imports the task module named by ``config.experiment``; tasks
are imported lazily so that, say, the toy does not need TFDS.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Sequence

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


def name_list(value, field: str, kind: str, known: Sequence[str]) -> list[str]:
  """Names from ``config.<field>``: a comma-separated string or a sequence.

  Raises ``ValueError`` naming the field, for an empty list, a name not in
  ``known`` (``kind`` words the message, e.g. 'estimator') or a repeat.
  """
  if isinstance(value, str):
    value = [n.strip() for n in value.split(",") if n.strip()]
  names = list(value)
  if not names:
    raise ValueError(f"config.{field} is empty; give comma-separated names "
                     f"from: {', '.join(known)}.")
  bad = [n for n in names if n not in known]
  if bad:
    raise ValueError(f"Unknown {kind}(s) {bad} in config.{field}; known: "
                     f"{', '.join(known)}.")
  if len(set(names)) != len(names):
    raise ValueError(f"config.{field} lists a name twice: {names}.")
  return names
