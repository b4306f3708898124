"""The run lifecycle shared by every experiment (toy, VAE, RL).

A *run* lives in a log directory and is identified by its config: the whole
config minus a declared set of fields that may change when a run resumes
(``num_epochs``, where files are cached, how often to checkpoint, ...). This
module gives each task the same five pieces:

* **Identity.** :func:`check_config` compares the config a directory was
  made with (its ``config.json``) against the current one. A difference is a
  ``ValueError`` naming each differing field with its saved and its new
  value. The one way to start over is ``config.fresh = True``
  (``--config.fresh=True``): :func:`check_config` then deletes what the
  directory holds and the run starts from scratch. :func:`save_config`
  writes the current config once the checks pass.
* **Checkpoints.** :class:`Checkpoints` saves and restores a pytree with
  orbax. On restore a checkpoint that cannot be read is reported in one log
  line naming it, moved aside (``<dir>/damaged_checkpoints/<step>``) and the next older
  one is tried; with none readable the run starts fresh.
* **Metric sinks.** :func:`truncate_metrics` cuts ``metrics.jsonl`` and every
  TensorBoard event file of a directory back to the restored step, so a
  resumed run logs each step once. :class:`~arsm_jax.writers.MetricWriter`
  flushes ``metrics.jsonl`` at every row, and tasks call
  :meth:`~arsm_jax.writers.MetricWriter.flush` before each checkpoint, so
  every row up to a checkpoint's step is on disk when the checkpoint is.
* **Finished results.** :func:`save_result` / :func:`load_result`:
  ``result.json`` plus ``curves.npz`` of a finished run.
* **Atomic files.** Configs, results, curves and summaries go through
  :func:`arsm_jax.writers.write_json` / :func:`~arsm_jax.writers.write_npz`:
  written to a temporary file in the same directory, then renamed, so a kill
  at any moment leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import shutil
import struct
from typing import Any, Iterable, Mapping, Optional

from absl import logging
import jax
import numpy as np

from arsm_jax import writers

CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
CURVES_FILE = "curves.npz"
CHECKPOINT_DIR = "checkpoints"
# Fields of every task that never change what a run computes.
ALWAYS_RESUMABLE = ("fresh", "plot")


# ----------------------------------------------------------------------------
# Identity.


def config_json(config) -> dict[str, Any]:
  """The config as plain JSON values (tuples become lists)."""
  as_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.loads(json.dumps(as_dict, default=writers.json_default))


def wants_fresh(config) -> bool:
  """``config.fresh`` (absent means False)."""
  return bool(config.get("fresh", False))


def identity(values: Mapping[str, Any],
             resumable: Iterable[str] = ()) -> dict[str, Any]:
  """``values`` without ``resumable`` and :data:`ALWAYS_RESUMABLE` fields."""
  drop = set(resumable) | set(ALWAYS_RESUMABLE)
  return {k: v for k, v in values.items() if k not in drop}


def differences(saved: Mapping[str, Any],
                current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
  """``(field, saved value, current value)`` for each field that differs."""
  missing = "<absent>"
  return [(k, saved.get(k, missing), current.get(k, missing))
          for k in sorted(set(saved) | set(current))
          if saved.get(k, missing) != current.get(k, missing)]


def clear(logdir: str) -> None:
  """Deletes everything in ``logdir`` (the directory itself stays)."""
  if not os.path.isdir(logdir):
    return
  for entry in os.listdir(logdir):
    path = os.path.join(logdir, entry)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def check_config(logdir: str, current: Mapping[str, Any], *,
                 resumable: Iterable[str] = (), fresh: bool = False,
                 added_fields: Optional[Mapping[str, Any]] = None,
                 what: str = "run") -> None:
  """Refuses to mix configs in ``logdir``; with ``fresh`` empties it instead.

  Args:
    logdir: the run's directory (may not exist yet).
    current: the current config as JSON values (:func:`config_json`).
    resumable: fields allowed to differ from the saved config.
    fresh: delete what ``logdir`` holds instead of checking.
    added_fields: fields added to the config after runs were saved, with the
      value that reproduces what those runs did: a saved config without such
      a field is read as having this value.
    what: the run's name in the error message.

  Raises:
    ValueError: ``logdir`` holds a run made with a different config (the
      message names every differing field with its saved and new value), or
      results without a ``config.json`` to compare with.
  """
  if fresh:
    if os.path.isdir(logdir) and os.listdir(logdir):
      logging.info("%s: config.fresh is set; deleting what %s holds.", what,
                   logdir)
    clear(logdir)
    return
  path = os.path.join(logdir, CONFIG_FILE)
  if not os.path.exists(path):
    leftovers = [f for f in (RESULT_FILE, CHECKPOINT_DIR, writers.METRICS_FILE)
                 if os.path.exists(os.path.join(logdir, f))]
    if RESULT_FILE in leftovers or CHECKPOINT_DIR in leftovers:
      raise ValueError(
          f"{logdir} holds a {what} ({', '.join(leftovers)}) without the "
          f"{CONFIG_FILE} that identifies it (made by an older version?); "
          "use a new workdir, or set config.fresh=True to delete it and "
          "start again.")
    clear(logdir)   # only partial metrics of a run that never checkpointed
    return
  with open(path) as fh:
    saved = json.load(fh)
  saved = {**(added_fields or {}), **saved}
  diff = differences(identity(saved, resumable), identity(current, resumable))
  if diff:
    fields = "; ".join(f"{k}: saved {old!r}, now {new!r}"
                       for k, old, new in diff)
    allowed = sorted(set(resumable) | set(ALWAYS_RESUMABLE))
    raise ValueError(
        f"{logdir} holds a {what} with a different config ({fields}). Use a "
        "new workdir, the original settings, or config.fresh=True to delete "
        f"the saved {what} and start again. Only {', '.join(allowed)} may "
        "change on resumption.")


def save_config(logdir: str, current: Mapping[str, Any]) -> None:
  """Writes ``logdir/config.json`` atomically."""
  writers.write_json(os.path.join(logdir, CONFIG_FILE), dict(current))


# ----------------------------------------------------------------------------
# Finished results.


def save_result(logdir: str, result: Mapping[str, Any],
                curves: Mapping[str, Any]) -> None:
  """Writes ``curves.npz`` then ``result.json`` (the latter marks it done)."""
  writers.write_npz(os.path.join(logdir, CURVES_FILE), curves)
  writers.write_json(os.path.join(logdir, RESULT_FILE), dict(result))


def load_result(logdir: str) -> Optional[dict[str, Any]]:
  """A finished run's ``result.json`` with its curves added, or ``None``.

  Only call it after :func:`check_config` has accepted ``logdir``.
  """
  path = os.path.join(logdir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as fh:
    result = json.load(fh)
  with np.load(os.path.join(logdir, CURVES_FILE)) as arrays:
    result.update({k: arrays[k] for k in arrays.files})
  return result


# ----------------------------------------------------------------------------
# Metric sinks.


def read_rows(logdir: str) -> list[dict[str, Any]]:
  """The rows of ``logdir/metrics.jsonl`` (a torn last line is skipped)."""
  path = os.path.join(logdir, writers.METRICS_FILE)
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as fh:
    for line in fh:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        if line.endswith("\n"):
          raise
  return rows


def _truncate_jsonl(path: str, step: int) -> None:
  if not os.path.exists(path):
    return
  with open(path) as fh:
    lines = fh.readlines()
  keep = []
  for line in lines:
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      continue                       # a row torn by a kill
    if row["step"] <= step:
      keep.append(line if line.endswith("\n") else line + "\n")
  if keep != lines:
    writers.atomic_write(path, lambda fh: fh.writelines(keep), "w")


def event_records(path: str) -> list[tuple[bytes, bytes]]:
  """``(framed record, event bytes)`` of a TFRecord file, in order.

  A TFRecord is ``uint64 length, uint32 crc, data, uint32 crc``; a record
  torn at the end of the file (a killed writer) is left out.
  """
  with open(path, "rb") as fh:
    blob = fh.read()
  out, pos = [], 0
  while pos + 12 <= len(blob):
    (length,) = struct.unpack("<Q", blob[pos:pos + 8])
    end = pos + 12 + length + 4
    if end > len(blob):
      break
    out.append((blob[pos:end], blob[pos + 12:pos + 12 + length]))
    pos = end
  return out


def _event_step(data: bytes) -> int:
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  event = event_pb2.Event()
  event.ParseFromString(data)
  return int(event.step)


def event_scalars(logdir: str) -> list[tuple[str, int, float]]:
  """``(tag, step, value)`` of every scalar in ``logdir``'s event files."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = []
  for name in sorted(os.listdir(logdir)):
    if not name.startswith("events.out.tfevents"):
      continue
    for _, data in event_records(os.path.join(logdir, name)):
      event = event_pb2.Event()
      event.ParseFromString(data)
      for value in event.summary.value:
        out.append((value.tag, int(event.step), float(value.simple_value)))
  return out


def _truncate_events(path: str, step: int) -> None:
  records = event_records(path)
  keep = [framed for framed, data in records if _event_step(data) <= step]
  if len(keep) == len(records) and sum(map(len, keep)) == os.path.getsize(
      path):
    return
  writers.write_bytes(path, b"".join(keep))


def truncate_metrics(logdir: str, step: int) -> None:
  """Drops every metric logged after ``step`` (jsonl and TensorBoard).

  ``step`` is the step of the restored checkpoint; 0 (nothing restored: the
  run starts from scratch) drops every row, those of step 0 included.
  """
  if step <= 0:
    step = -1
  _truncate_jsonl(os.path.join(logdir, writers.METRICS_FILE), step)
  if os.path.isdir(logdir):
    for name in os.listdir(logdir):
      if name.startswith("events.out.tfevents"):
        _truncate_events(os.path.join(logdir, name), step)


# ----------------------------------------------------------------------------
# Checkpoints.


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

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._manager.save(int(step), args=ocp.args.StandardSave(state))

  def restore(self, target: Any) -> tuple[Any, int]:
    """The newest readable checkpoint shaped like ``target``, and its step.

    Returns ``(target, 0)`` when there is none. Each unreadable checkpoint is
    reported in one warning naming it, and moved to
    ``<logdir>/damaged_checkpoints/<step>``.
    """
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    damaged = False
    state, restored_step = target, 0
    for step in sorted(self._manager.all_steps(), reverse=True):
      path = os.path.join(self.directory, str(step))
      try:
        state = self._manager.restore(
            step, args=ocp.args.StandardRestore(abstract))
        restored_step = step
        break
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("%s: checkpoint %s cannot be read (%s); trying an "
                        "older one.", self.name, path, _short(e))
        aside = os.path.join(os.path.dirname(self.directory), 
                             "damaged_checkpoints", str(step))
        if jax.process_index() == 0:   # several processes: one moves it
          if os.path.exists(aside):
            shutil.rmtree(aside)
          os.makedirs(os.path.dirname(aside), exist_ok=True)
          shutil.move(path, aside)
        damaged = True
    if damaged:
      if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        multihost_utils.sync_global_devices("runs/damaged_checkpoints")
      self._manager.close()
      self._manager = self._make_manager()
    if restored_step:
      logging.info("%s: resumed from the checkpoint at step %d.", self.name,
                   restored_step)
    elif damaged:
      logging.warning("%s: no readable checkpoint; starting fresh.", self.name)
    return state, restored_step

  def wait(self) -> None:
    """Blocks until a checkpoint being written is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def delete_all(self) -> None:
    """Removes the checkpoint directory (a finished run needs none).

    Call :meth:`close` first.
    """
    shutil.rmtree(self.directory, ignore_errors=True)
