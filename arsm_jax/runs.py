"""The run lifecycle shared by every experiment (toy, VAE, RL).

A *run* lives in a log directory and is identified by its config: the whole
config minus a declared set of fields that may change when a run resumes
(``num_epochs``, where files are cached, how often to checkpoint, ...). This
module gives each task the same five pieces:

* **Identity.** :func:`check_config` compares the config a directory was
  made with (its ``config.json``) against the current one. A difference is a
  ``ValueError`` naming each differing field with its saved and its new
  value. The one way to start over is ``config.fresh = True``
  (``--config.fresh=True``): :func:`check_config` then deletes the files a
  run writes (:func:`run_files`) and the run starts from scratch.
  :func:`save_config` writes the current config once the checks pass.
* **Ownership.** A run deletes only what a run wrote. A directory without a
  ``config.json`` that holds anything a run does not write (a user's notes,
  another experiment's run) is refused with one line naming what is there;
  :func:`check_workdir` does the same for the top of a workdir whose runs
  live in subdirectories (toy, RL).
* **One run at a time.** :func:`lock_workdir` takes an exclusive lock on the
  workdir (``flock`` on ``.arsm_jax.lock``), so the same command started
  twice refuses the second in one line. The kernel releases the lock when
  its process dies, so a killed run's lock is taken over by the next one.
  The processes of one multi-process run are one run: process 0 locks.
* **Checkpoints.** :class:`Checkpoints` saves and restores a pytree with
  orbax (NumPy and Python scalars are stored as 0-d arrays, which orbax can
  restore). On restore a checkpoint that cannot be read is reported in one
  log line naming it and the next older one is tried; once an older one
  restores, the unreadable newer ones are moved aside
  (``<dir>/damaged_checkpoints/<step>``). When *no* checkpoint restores, the
  cause is more likely a bug or a changed program than damage: the run stops
  with :class:`CheckpointError` naming the first failure, and moves nothing.
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

import contextlib
import fnmatch
import json
import logging as std_logging
import os
import shutil
import struct
from typing import Any, Iterable, Iterator, Mapping, Optional

from absl import logging
import jax
import numpy as np

from arsm_jax import writers

CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
CURVES_FILE = "curves.npz"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".arsm_jax.lock"
# Fields of every task that never change what a run computes.
ALWAYS_RESUMABLE = ("fresh", "plot")
# What a run writes in its directory (names, or glob patterns): the only
# entries a run ever deletes. Tasks add their own (figures, subdirectories).
RUN_FILES = (CONFIG_FILE, RESULT_FILE, CURVES_FILE, CHECKPOINT_DIR,
             DAMAGED_DIR, SUMMARY_FILE, LOCK_FILE, "metrics.jsonl",
             "events.out.tfevents.*", ".tmp-*")


class CheckpointError(RuntimeError):
  """No checkpoint of a run can be restored (see :meth:`Checkpoints.restore`)."""


class WorkdirError(ValueError):
  """A workdir holds what a run did not write, or another run is using it."""


class ConfigMismatchError(ValueError):
  """A workdir holds a run made with another config (a changed rerun)."""


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


def _is_run_file(name: str, extra: Iterable[str]) -> bool:
  return any(fnmatch.fnmatchcase(name, pattern)
             for pattern in (*RUN_FILES, *extra))


def run_files(logdir: str, extra: Iterable[str] = ()) -> list[str]:
  """The entries of ``logdir`` that a run writes (:data:`RUN_FILES`, ``extra``)."""
  if not os.path.isdir(logdir):
    return []
  extra = tuple(extra)
  return sorted(e for e in os.listdir(logdir) if _is_run_file(e, extra))


def foreign_files(logdir: str, extra: Iterable[str] = ()) -> list[str]:
  """The entries of ``logdir`` that no run writes: never deleted."""
  if not os.path.isdir(logdir):
    return []
  extra = tuple(extra)
  return sorted(e for e in os.listdir(logdir) if not _is_run_file(e, extra))


def remove_run_files(logdir: str, extra: Iterable[str] = ()) -> None:
  """Deletes what a run wrote in ``logdir`` (:func:`run_files`), nothing else.

  The lock file stays: the run that calls this holds it.
  """
  for entry in run_files(logdir, extra):
    if entry == LOCK_FILE:
      continue
    path = os.path.join(logdir, entry)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def _refuse_foreign(logdir: str, foreign: list[str], what: str) -> None:
  shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more"
                                    if len(foreign) > 4 else "")
  raise WorkdirError(
      f"{logdir} holds files that a {what} did not write ({shown}); a run "
      "only deletes its own files, so it will not start there. Use a new or "
      "empty workdir (or move those files away).")


def check_workdir(workdir: str, extra: Iterable[str] = (),
                  what: str = "run") -> None:
  """Refuses a workdir holding entries a run of this task does not write.

  For tasks whose runs live in subdirectories (one per estimator or learner,
  named in ``extra`` along with the task's figures): the top of the workdir
  must hold only those and :data:`RUN_FILES`.

  Raises:
    WorkdirError: naming up to four foreign entries.
  """
  foreign = foreign_files(workdir, extra)
  if foreign:
    _refuse_foreign(workdir, foreign, what)


@contextlib.contextmanager
def lock_workdir(workdir: str, what: str = "run") -> Iterator[None]:
  """Holds an exclusive lock on ``workdir`` for the duration of a run.

  Only process 0 of a multi-process run locks (its processes are one run).
  The lock is an ``flock`` on ``workdir/.arsm_jax.lock``, removed when the
  run ends. The kernel drops the lock when the holding process dies, so the
  file a killed run leaves behind is no obstacle: the next run takes it.

  Raises:
    WorkdirError: another run holds the lock (its pid is named).
  """
  if jax.process_index() != 0:
    yield
    return
  import fcntl  # pylint: disable=g-import-not-at-top
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
      raise WorkdirError(
          f"{workdir} is in use by another {what} (pid {holder}); wait for "
          "it to finish or use another workdir.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
      yield
    finally:
      os.remove(path)     # still held: no other run can be between
  finally:
    os.close(fd)          # also releases the lock


def check_config(logdir: str, current: Mapping[str, Any], *,
                 resumable: Iterable[str] = (), fresh: bool = False,
                 added_fields: Optional[Mapping[str, Any]] = None,
                 what: str = "run", extra: Iterable[str] = ()) -> None:
  """Refuses to mix configs in ``logdir``; with ``fresh`` starts it again.

  Only a run's own files (:func:`run_files`) are ever deleted: by ``fresh``,
  and when a directory without a ``config.json`` holds just the metrics of a
  run killed before its first checkpoint. Anything else in a directory
  without a ``config.json`` is refused.

  Args:
    logdir: the run's directory (may not exist yet).
    current: the current config as JSON values (:func:`config_json`).
    resumable: fields allowed to differ from the saved config.
    fresh: delete the run files ``logdir`` holds instead of checking.
    added_fields: fields added to the config after runs were saved, with the
      value that reproduces what those runs did: a saved config without such
      a field is read as having this value.
    what: the run's name in the error message.
    extra: names or glob patterns of further files the task writes.

  Raises:
    WorkdirError: ``logdir`` has no ``config.json`` and holds files no run
      writes.
    ConfigMismatchError: ``logdir`` holds a run made with a different
      config (the message names every differing field with its saved and
      new value); a ``ValueError``.
    ValueError: ``logdir`` holds results without a ``config.json`` to
      compare with.
  """
  path = os.path.join(logdir, CONFIG_FILE)
  if not os.path.exists(path):
    foreign = foreign_files(logdir, extra)
    if foreign:
      _refuse_foreign(logdir, foreign, what)
  if fresh:
    if run_files(logdir, extra):
      logging.info("%s: config.fresh is set; deleting the run files in %s.",
                   what, logdir)
    remove_run_files(logdir, extra)
    return
  if not os.path.exists(path):
    leftovers = [f for f in (RESULT_FILE, CHECKPOINT_DIR, writers.METRICS_FILE)
                 if os.path.exists(os.path.join(logdir, f))]
    if RESULT_FILE in leftovers or CHECKPOINT_DIR in leftovers:
      raise ValueError(
          f"{logdir} holds a {what} ({', '.join(leftovers)}) without the "
          f"{CONFIG_FILE} that identifies it (made by an older version?); "
          "use a new workdir, or set config.fresh=True to delete it and "
          "start again.")
    # Only metrics of a run killed before its first checkpoint.
    remove_run_files(logdir, extra)
    return
  saved = writers.read_json(path, f"config of the {what}")
  saved = {**(added_fields or {}), **saved}
  kind = saved.get("experiment")
  if kind and current.get("experiment") not in (None, kind):
    raise WorkdirError(
        f"{logdir} holds a {kind} run; a {current['experiment']} run will "
        "not start there. Use another workdir.")
  diff = differences(identity(saved, resumable), identity(current, resumable))
  if diff:
    fields = "; ".join(f"{k}: saved {old!r}, now {new!r}"
                       for k, old, new in diff)
    allowed = sorted(set(resumable) | set(ALWAYS_RESUMABLE))
    raise ConfigMismatchError(
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
  result = writers.read_json(path, "result")
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


def _as_arrays(tree: Any) -> Any:
  """NumPy and Python scalars as 0-d arrays: orbax saves a ``np.float32``
  but cannot restore into one, so every checkpointed scalar is an array."""

  def leaf(x):
    if isinstance(x, (np.generic, bool, int, float)):
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

  def delete_all(self) -> None:
    """Removes the checkpoint directory (a finished run needs none).

    Call :meth:`close` first.
    """
    shutil.rmtree(self.directory, ignore_errors=True)
