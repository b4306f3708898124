"""What a run owns in its directory, and one run at a time per workdir.

A run deletes only what a run wrote (:data:`RUN_FILES`, plus the names a
task adds): a directory holding anything else is refused in one line
(:class:`WorkdirError`) instead of emptied. :func:`lock_workdir` takes an
exclusive ``flock`` on ``.arsm_jax.lock``, so the same command started twice
refuses the second; the kernel releases the lock when its process dies, so a
killed run's lock is taken over by the next one. The processes of one
multi-process run are one run: process 0 locks.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
from typing import Iterable, Iterator

import jax

from arsm_jax.checkpoints import CHECKPOINT_DIR
from arsm_jax.checkpoints import DAMAGED_DIR

CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
CURVES_FILE = "curves.npz"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".arsm_jax.lock"
# What a run writes in its directory (names, or glob patterns): the only
# entries a run ever deletes. Tasks add their own (figures, subdirectories).
RUN_FILES = (CONFIG_FILE, RESULT_FILE, CURVES_FILE, CHECKPOINT_DIR,
             DAMAGED_DIR, SUMMARY_FILE, LOCK_FILE, "metrics.jsonl",
             "events.out.tfevents.*", ".tmp-*")


class WorkdirError(ValueError):
  """A workdir holds what a run did not write, or another run is using it."""


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


def refuse_foreign(logdir: str, foreign: list[str], what: str) -> None:
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
    refuse_foreign(workdir, foreign, what)


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


@contextlib.contextmanager
def hold_workdir(workdir: str, runs: Iterable[str], what: str) -> Iterator[str]:
  """Holds a workdir whose runs live in subdirectories (toy, RL).

  Locks it (process 0) and refuses it when its top holds anything but those
  runs' folders, :data:`RUN_FILES` and the task's figures.

  Args:
    workdir: the directory.
    runs: names (or glob patterns) of the entries the task writes there.
    what: the task's runs in messages ("toy run").

  Yields:
    ``workdir``.
  """
  with lock_workdir(workdir, what=what):
    check_workdir(workdir, extra=tuple(runs), what=what)
    yield workdir
