"""Orbax checkpoints of one pytree, with a fallback past damaged ones.

:class:`Checkpoints` saves and restores a pytree in ``<logdir>/checkpoints``
(NumPy and Python scalars are stored as 0-d arrays, which orbax can
restore). On restore a checkpoint that cannot be read is reported in one log
line naming it and the next older one is tried; once an older one restores,
the unreadable newer ones are moved aside (``<logdir>/damaged_checkpoints/
<step>``). When *no* checkpoint restores, the cause is more likely a bug or
a changed program than damage: :class:`CheckpointError` names the first
failure, and nothing is moved. Runs use it through :class:`arsm_jax.runs.Run`.
"""

from __future__ import annotations

import logging as std_logging
import os
import shutil
from typing import Any

from absl import logging
import jax
import numpy as np

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"


class CheckpointError(RuntimeError):
  """No checkpoint of a run can be restored (see :meth:`Checkpoints.restore`)."""




class QuietOrbax(std_logging.Filter):
  """Drops orbax's per-save INFO lines (dozens per checkpoint)."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or (
        f"{os.sep}orbax{os.sep}" not in record.pathname)


def quiet_orbax() -> None:
  """Installs :class:`QuietOrbax` on absl's logger (once)."""
  logger = std_logging.getLogger("absl")
  if not any(isinstance(f, QuietOrbax) for f in logger.filters):
    logger.addFilter(QuietOrbax())


def _as_arrays(tree: Any) -> Any:
  """The leaves of ``tree`` as orbax can save and restore them.

  NumPy and Python scalars become 0-d arrays (orbax saves a ``np.float32``
  but cannot restore into one). With several processes, a jax array held by
  this process alone (not one global array over the processes) becomes a
  NumPy array, which orbax writes from process 0; it refuses to serialise
  a host-local ``jax.Array``.
  """
  multi_process = jax.process_count() > 1

  def leaf(x):
    if isinstance(x, (np.generic, bool, int, float)):
      return np.asarray(x)
    if (multi_process and isinstance(x, jax.Array)
        and x.is_fully_addressable):
      return np.asarray(x)
    return x

  return jax.tree_util.tree_map(leaf, tree)


def _short(error: BaseException) -> str:
  text = " ".join(str(error).split())
  if len(text) > 160:
    text = text[:157] + "..."
  return f"{type(error).__name__}: {text}"


class Checkpoints:
  """Orbax checkpoints of one pytree in ``<logdir>/checkpoints``.

  Args:
    logdir: the run's directory.
    max_to_keep: how many checkpoints to keep (older ones are deleted).
    name: the run's name in log lines.
  """

  def __init__(self, logdir: str, max_to_keep: int = 2, name: str = "run"):
    quiet_orbax()
    self.directory = os.path.join(os.path.abspath(logdir), CHECKPOINT_DIR)
    self.max_to_keep = max_to_keep
    self.name = name
    self._manager = self._make_manager()

  def _make_manager(self):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    return ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep,
                                             create=True))

  def save(self, step: int, state: Any) -> None:
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._manager.save(int(step),
                       args=ocp.args.StandardSave(_as_arrays(state)))

  def restore(self, target: Any) -> tuple[Any, int]:
    """The newest readable checkpoint shaped like ``target``, and its step.

    Returns ``(target, 0)`` when there is no checkpoint. Each unreadable
    checkpoint is reported in one warning naming it; once an older one
    restores, the unreadable ones are moved to
    ``<logdir>/damaged_checkpoints/<step>``.

    Raises:
      CheckpointError: there are checkpoints and none restores (a bug or a
        changed program is likelier than damage to all of them): names the
        newest one's failure and how to start over. Nothing is moved.
    """
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct,
                                      _as_arrays(target))
    failures = []                                # (path, short error)
    for step in sorted(self._manager.all_steps(), reverse=True):
      path = os.path.join(self.directory, str(step))
      try:
        state = self._manager.restore(
            step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("%s: checkpoint %s cannot be read (%s); trying an "
                        "older one.", self.name, path, _short(e))
        failures.append((path, _short(e)))
        continue
      if failures:
        self._move_aside([p for p, _ in failures])
      logging.info("%s: resumed from the checkpoint at step %d.", self.name,
                   step)
      return state, step
    if failures:
      path, error = failures[0]
      raise CheckpointError(
          f"{self.name}: none of the {len(failures)} checkpoints in "
          f"{self.directory} can be restored; the newest, {path}, fails with "
          f"{error}. If the code or the config's shapes changed since they "
          "were written, run the version that wrote them; to start over, "
          "set config.fresh=True (deletes this run's files only) or use a "
          "new workdir.")
    return target, 0

  def _move_aside(self, paths: list[str]) -> None:
    """Moves unreadable checkpoints to ``damaged_checkpoints/``."""
    if jax.process_index() == 0:      # several processes: one moves them
      for path in paths:
        aside = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR,
                             os.path.basename(path))
        if os.path.exists(aside):
          shutil.rmtree(aside)
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        shutil.move(path, aside)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("runs/damaged_checkpoints")
    self._manager.close()
    self._manager = self._make_manager()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
