"""The run lifecycle shared by every experiment (toy, VAE, RL).

Every task runs through :class:`Run`, which does the same steps in one
order::

    with runs.Run(logdir, identity, what="vae run", lock=True) as run:
      state, step = run.restore_or_initialize(init_state)   # resumes
      for ...:
        run.write(step, scalars)                            # metrics
        run.checkpoint(step, state)                         # periodically
      run.write_summary(summary)                            # at the end

1. **One run at a time** (``lock=True``, or
   :func:`~arsm_jax.workdirs.hold_workdir` for tasks whose runs live in
   subdirectories): :func:`~arsm_jax.workdirs.lock_workdir`.
2. **Identity.** The directory's ``config.json`` must equal the current
   identity (the config minus the fields that may change on resumption);
   a difference is a :class:`ConfigMismatchError` naming each field. The
   one way to start over is ``config.fresh``, which deletes the files a run
   writes (:func:`~arsm_jax.workdirs.run_files`) and nothing else: a
   directory without a ``config.json`` holding files no run writes is
   refused (:class:`~arsm_jax.workdirs.WorkdirError`).
3. **Restore or initialise** from the newest readable checkpoint
   (:class:`~arsm_jax.checkpoints.Checkpoints`: damaged ones are reported
   and skipped).
4. **Metric truncation** (:func:`~arsm_jax.writers.truncate_metrics`):
   ``metrics.jsonl`` and every TensorBoard event file are cut back to the
   restored step, so a resumed run logs each step once.
5. **Writers** (:class:`~arsm_jax.writers.MetricWriter`): ``metrics.jsonl``
   and TensorBoard. Every row also updates a :class:`MetricRecord` kept in
   memory and saved in each checkpoint, from which the summary is built.
6. **Periodic checkpoints** (:meth:`Run.checkpoint`), the rows up to them
   flushed first.
7. **The end**: :meth:`Run.write_summary` (``summary.json``) or
   :meth:`Run.save_result` (``result.json`` + ``curves.npz``, for the runs
   of a workdir, which are loaded instead of rerun).

Several processes (``jax.process_count() > 1``) are one run: only process 0
locks, checks, deletes and writes files (rows, events, configs, summaries);
every process takes part in the checkpoint saves and restores, which orbax
does collectively. Arrays that live on one process only (host-local jax
arrays, NumPy) are saved as NumPy, which orbax writes from process 0. Files
are written atomically (:func:`arsm_jax.writers.write_json`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Any, Callable, Iterable, Mapping, Optional

from absl import logging
import jax
import numpy as np

from arsm_jax import parallel
from arsm_jax import writers
from arsm_jax.checkpoints import CHECKPOINT_DIR
from arsm_jax.checkpoints import Checkpoints
from arsm_jax.workdirs import CONFIG_FILE
from arsm_jax.workdirs import CURVES_FILE
from arsm_jax.workdirs import foreign_files
from arsm_jax.workdirs import lock_workdir
from arsm_jax.workdirs import refuse_foreign
from arsm_jax.workdirs import remove_run_files
from arsm_jax.workdirs import RESULT_FILE
from arsm_jax.workdirs import run_files
from arsm_jax.workdirs import SUMMARY_FILE
from arsm_jax.workdirs import WorkdirError

# Fields of every task that never change what a run computes.
ALWAYS_RESUMABLE = ("fresh", "plot")


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


def check_config(logdir: str, current: Mapping[str, Any], *,
                 resumable: Iterable[str] = (), fresh: bool = False,
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
      refuse_foreign(logdir, foreign, what)
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
# The lifecycle.


def _scalar(value: Any) -> float:
  return float(np.asarray(value))


class MetricRecord:
  """What a run's summary needs of its metrics, kept in memory.

  For each tracked metric, its last value and step; for each minimised one,
  also the row (tracked values written with it) where it was lowest first.
  :meth:`tree` and :meth:`load` turn it into NumPy arrays of a fixed shape
  and back, so it is saved in every checkpoint and a resumed run's summary
  covers the steps before the resumption too.

  Args:
    tracked: metric names to keep.
    minimised: tracked names whose lowest row is kept as well.
  """

  def __init__(self, tracked: Iterable[str] = (),
               minimised: Iterable[str] = ()):
    self.tracked = tuple(tracked)
    self.minimised = tuple(minimised)
    unknown = sorted(set(self.minimised) - set(self.tracked))
    if unknown:
      raise ValueError(f"MetricRecord: minimised metrics {unknown} are not "
                       f"tracked ({', '.join(self.tracked)}).")
    self._last: dict[str, tuple[int, float]] = {}
    self._best: dict[str, dict[str, float]] = {}

  def observe(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Takes the tracked values of one row written at ``step``."""
    row = {k: _scalar(v) for k, v in scalars.items() if k in self.tracked}
    for name, value in row.items():
      self._last[name] = (int(step), value)
    for name in self.minimised:
      if name in row and (name not in self._best
                          or row[name] < self._best[name][name]):
        self._best[name] = {"step": int(step), **row}

  def last(self, name: str) -> Optional[float]:
    """The last value written of ``name`` (``None`` if never)."""
    return self._last[name][1] if name in self._last else None

  def best_row(self, name: str) -> dict[str, float]:
    """The first row where minimised ``name`` was lowest (``{}`` if none)."""
    return dict(self._best.get(name, {}))

  def tree(self) -> dict[str, np.ndarray]:
    """The record as float64 arrays (NaN: never written)."""
    out = {}
    for name in self.tracked:
      step, value = self._last.get(name, (-1, np.nan))
      out[f"last/{name}"] = np.array([step, value], np.float64)
    for name in self.minimised:
      row = self._best.get(name, {})
      out[f"best/{name}"] = np.array(
          [row.get("step", -1)] + [row.get(t, np.nan) for t in self.tracked],
          np.float64)
    return out

  def load(self, tree: Mapping[str, Any]) -> None:
    """Replaces the record by a :meth:`tree` (of a restored checkpoint)."""
    self._last, self._best = {}, {}
    for name in self.tracked:
      step, value = np.asarray(tree[f"last/{name}"]).tolist()
      if step >= 0:
        self._last[name] = (int(step), value)
    for name in self.minimised:
      step, *values = np.asarray(tree[f"best/{name}"]).tolist()
      if step >= 0:
        self._best[name] = {"step": int(step), **{
            t: v for t, v in zip(self.tracked, values) if not np.isnan(v)}}


def _checkpointed(state: Any, record: MetricRecord) -> dict[str, Any]:
  """What a checkpoint holds: the state, and the record if it has one."""
  if not record.tracked:
    return {"state": state}
  return {"state": state, "record": record.tree()}


class Run:
  """The lifecycle of one run in ``logdir`` (see the module docstring).

  Args:
    logdir: the run's directory (created if missing).
    identity: what identifies the run, as JSON values (:func:`config_json`);
      saved as ``config.json``.
    what: the run's name in messages ("vae run", "toy run of arsm").
    resumable: identity fields allowed to change on resumption.
    fresh: delete the run's files and start again (``config.fresh``).
    extra: names or glob patterns of further files the run writes.
    lock: lock ``logdir`` while the run is open (a run that is a whole
      workdir; :func:`~arsm_jax.workdirs.hold_workdir` locks the others).
    max_to_keep: how many checkpoints to keep.
    tracked: metrics kept in memory for the summary (:class:`MetricRecord`).
    minimised: tracked metrics whose lowest row is kept as well.
  """

  def __init__(self, logdir: str, identity: Mapping[str, Any], *,
               what: str = "run", resumable: Iterable[str] = (),
               fresh: bool = False, extra: Iterable[str] = (),
               lock: bool = False, max_to_keep: int = 2,
               tracked: Iterable[str] = (), minimised: Iterable[str] = ()):
    self.logdir, self.identity, self.what = logdir, dict(identity), what
    self.resumable, self.extra = tuple(resumable), tuple(extra)
    self.fresh, self.max_to_keep = fresh, max_to_keep
    self.record = MetricRecord(tracked, minimised)
    self.writes_files = jax.process_index() == 0
    self.writer = writers.NullWriter()
    self._lock = lock
    self._checkpoints: Optional[Checkpoints] = None
    self._stack = contextlib.ExitStack()

  def __enter__(self) -> "Run":
    with contextlib.ExitStack() as stack:
      if self._lock:
        stack.enter_context(lock_workdir(self.logdir, self.what))
      if self.writes_files:
        check_config(self.logdir, self.identity, resumable=self.resumable,
                     fresh=self.fresh, what=self.what, extra=self.extra)
      parallel.barrier(f"runs/{self.logdir}/checked")
      self._stack = stack.pop_all()
    return self

  def __exit__(self, *exc) -> None:
    # Also on an error: finishes the checkpoint in flight, flushes, unlocks.
    try:
      if self._checkpoints is not None:
        self._checkpoints.close()
      self.writer.close()
    finally:
      self._stack.close()

  def finished_result(self) -> Optional[dict[str, Any]]:
    """The saved result of a run that finished (:meth:`save_result`), which
    the task returns instead of training again; ``None`` if there is none."""
    result = load_result(self.logdir)
    if result is not None:
      logging.info("%s: already done in %s; loading it.", self.what,
                   self.logdir)
    return result

  def restore_or_initialize(
      self, target: Any, *, checkpoints: bool = True,
      rows_follow_checkpoints: bool = True,
      check_restored: Optional[Callable[[int], None]] = None
  ) -> tuple[Any, int]:
    """Restores the newest readable checkpoint, else starts from ``target``.

    Then cuts the metrics back to the restored step, saves the identity and
    opens the writers.

    Args:
      target: the initial state; a checkpoint must have its structure.
      checkpoints: the run saves checkpoints (False: it always starts from
        ``target``).
      rows_follow_checkpoints: the metric rows are written as the run goes,
        up to each checkpoint's step; False (rows written only at the end):
        every row is dropped on resumption.
      check_restored: called with the restored step before anything is
        changed on disk; raises to refuse the run (e.g. one that went
        further than the config asks).

    Returns:
      ``(state, step)``: step 0 when nothing was restored.
    """
    state, step = target, 0
    if checkpoints:
      self._checkpoints = Checkpoints(self.logdir, self.max_to_keep,
                                      name=self.what)
      saved, step = self._checkpoints.restore(
          _checkpointed(target, self.record))
      state = saved["state"]
      if step and self.record.tracked:
        self.record.load(saved["record"])
    if check_restored is not None:
      check_restored(step)
    if self.writes_files:
      writers.truncate_metrics(self.logdir, step if rows_follow_checkpoints else 0)
      save_config(self.logdir, self.identity)
      self.writer = writers.MetricWriter(self.logdir)
    parallel.barrier(f"runs/{self.logdir}/restored")
    return state, step

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Writes one row (process 0) and records it (every process)."""
    self.writer.write_scalars(step, scalars)
    self.record.observe(step, scalars)

  def write_many(self, steps, columns: Mapping[str, Any]) -> None:
    """Writes a row per step: ``columns[name][i]`` at ``steps[i]``."""
    arrays = {k: np.asarray(v) for k, v in columns.items()}
    for i, step in enumerate(np.asarray(steps)):
      self.write(int(step), {k: a[i] for k, a in arrays.items()})

  def checkpoint(self, step: int, state: Any) -> None:
    """Saves ``state`` and the metric record at ``step`` (every process).

    The rows written so far reach the disk first.
    """
    self.writer.flush()
    self._checkpoints.save(step, _checkpointed(state, self.record))

  def save_result(self, result: Mapping[str, Any],
                  curves: Mapping[str, Any]) -> None:
    """Marks the run finished: ``result.json`` and ``curves.npz`` (process
    0); its checkpoints are deleted (a finished run needs none)."""
    self.writer.flush()
    if self._checkpoints is not None:
      self._checkpoints.close()
      self._checkpoints = None
    if self.writes_files:
      save_result(self.logdir, result, curves)
      shutil.rmtree(os.path.join(self.logdir, CHECKPOINT_DIR),
                    ignore_errors=True)
    parallel.barrier(f"runs/{self.logdir}/result")

  def write_summary(self, summary: Mapping[str, Any]) -> None:
    """Writes ``summary.json`` (process 0)."""
    write_summary(self.logdir, summary)


def read_checkpoint(logdir: str, target: Any, tracked: Iterable[str] = (),
                    minimised: Iterable[str] = ()) -> tuple[Any, int]:
  """The state of the newest readable checkpoint a :class:`Run` saved in
  ``logdir`` (for analyses of a run), and its step; ``(target, 0)`` without
  one. ``tracked`` and ``minimised`` are the run's (its record's shape)."""
  ckpts = Checkpoints(logdir, name=logdir)
  try:
    saved, step = ckpts.restore(
        _checkpointed(target, MetricRecord(tracked, minimised)))
  finally:
    ckpts.close()
  return saved["state"], step


def write_summary(directory: str, summary: Mapping[str, Any]) -> None:
  """Writes ``directory/summary.json`` from process 0; the others wait."""
  if jax.process_index() == 0:
    writers.write_json(os.path.join(directory, SUMMARY_FILE), dict(summary))
  parallel.barrier(f"runs/{directory}/summary")
