"""Metric output shared by all experiments: JSON lines, TensorBoard, progress.

Every experiment writes its scalars through :class:`MetricWriter`, which puts
them in two places under the workdir:

* ``metrics.jsonl``: one JSON object per call, ``{"step": ..., name: value}``,
  read with :func:`read_metrics` (a pandas DataFrame) or ``pd.read_json(path,
  lines=True)``;
* TensorBoard event files (through tensorboardX), for ``tensorboard --logdir``.

``metrics.jsonl`` is flushed at every row; call :meth:`MetricWriter.flush`
before saving a checkpoint so the TensorBoard events are on disk too.
:func:`truncate_metrics` cuts both back to a restored step, so a resumed
run (:class:`arsm_jax.runs.Run`) logs each step once. The atomic file
writers (:func:`write_json`, :func:`write_npz`) live here as well.

:class:`ProgressReporter` logs a smoothed rate and the time left for long
loops.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import time
from typing import Any, Callable, Mapping, Optional

from absl import logging
import numpy as np

METRICS_FILE = "metrics.jsonl"


def _to_float(v: Any) -> float:
  return float(np.asarray(v))


class MetricWriter:
  """Writes scalars to ``<logdir>/metrics.jsonl`` and TensorBoard events.

  Args:
    logdir: directory to write into (created if missing).
    tensorboard: also write TensorBoard event files.
  """

  _opened = 0

  def __init__(self, logdir: str, tensorboard: bool = True):
    os.makedirs(logdir, exist_ok=True)
    self.logdir = logdir
    self._jsonl = open(os.path.join(logdir, METRICS_FILE), "a")
    self._tb = None
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        # A suffix unique to this writer: two writers opened in the same
        # second (a quick resume) must not share one event file.
        MetricWriter._opened += 1
        self._tb = SummaryWriter(
            logdir=logdir, flush_secs=30,
            filename_suffix=f".{os.getpid()}.{MetricWriter._opened}")
      except ImportError:
        logging.warning("tensorboardX is not installed: writing only %s.",
                        METRICS_FILE)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = {k: _to_float(v) for k, v in scalars.items()}
    record = {"step": int(step)}
    record.update({k: (v if math.isfinite(v) else str(v))
                   for k, v in values.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    # Every row reaches the file at once: a kill loses no row that was
    # logged before the checkpoint the run resumes from.
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in values.items():
        self._tb.add_scalar(k, v, int(step))

  def write_many(self, steps, columns: Mapping[str, Any]) -> None:
    """Writes arrays of scalars, one row per step: ``columns[name][i]`` at ``steps[i]``."""
    arrays = {k: np.asarray(v) for k, v in columns.items()}
    for i, step in enumerate(np.asarray(steps)):
      self.write_scalars(int(step), {k: a[i] for k, a in arrays.items()})

  def flush(self) -> None:
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    self.flush()
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


class NullWriter:
  """A :class:`MetricWriter` that writes nothing (processes other than 0)."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    del step, scalars

  def write_many(self, steps, columns: Mapping[str, Any]) -> None:
    del steps, columns

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def read_metrics(logdir: str):
  """Reads ``<logdir>/metrics.jsonl`` into a pandas DataFrame."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  path = os.path.join(logdir, METRICS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No {METRICS_FILE} in {logdir!r}.")
  return pd.read_json(path, lines=True)


class ProgressReporter:
  r"""Logs progress lines: step, a smoothed rate, elapsed time and the ETA.

  Call it after every step; it logs at most every ``every_secs`` seconds
  and, with ``every_steps``, at every multiple of ``every_steps`` steps
  (either one suffices), always at the first step and on ``force``.

  The first step after the start (or a resume) holds compilation, so the
  rate is measured from its end: the first line says how long that step
  took, and later ones give the mean rate since then (evaluations and
  checkpoints in between included), which the ETA divides the remaining
  steps by. A mean over the whole run does not jump between a slow step and
  a quick one as a per-call rate does, and its ETA is within a factor of two
  of the truth from a tenth of a run of steady cost to near its end, where
  one evaluation can be most of what is left (``tests/test_progress.py``).

  Args:
    num_steps: total steps of the loop (for the ETA).
    every_secs: minimum seconds between two time-triggered lines
      (``math.inf``: only ``every_steps``).
    name: prefix of the log lines.
    first_step: the step the loop starts from (after a resume).
    every_steps: also log at every multiple of this many steps (0: never).
    unit: what a step is called in the lines ("step", "episode").
    clock: seconds as a float (``time.monotonic``; a fake one in tests).
    first_compiles: the first step compiles (said in its line).
  """

  def __init__(self, num_steps: int, every_secs: float = 10.0,
               name: str = "train", first_step: int = 0,
               every_steps: int = 0, unit: str = "step",
               clock: Callable[[], float] = time.monotonic,
               first_compiles: bool = True):
    self.first_compiles = first_compiles
    self.num_steps = num_steps
    self.every_secs = every_secs
    self.every_steps = every_steps
    self.name = name
    self.unit = unit
    self._clock = clock
    self._t0 = self._last_t = clock()
    self._first = first_step
    self._base: Optional[tuple[int, float]] = None   # end of the first step
    self.last_message: Optional[str] = None

  def rate(self, step: int, now: float) -> float:
    """Steps per second since the end of the first step (nan before)."""
    if self._base is None or step <= self._base[0] or now <= self._base[1]:
      return float("nan")
    return (step - self._base[0]) / (now - self._base[1])

  def eta(self, step: int, now: float) -> float:
    """Seconds left at the smoothed rate (inf before it is known)."""
    rate = self.rate(step, now)
    if not math.isfinite(rate) or rate <= 0:
      return float("inf") if step < self.num_steps else 0.0
    return (self.num_steps - step) / rate

  def __call__(self, step: int, extra: Optional[Mapping[str, Any]] = None,
               force: bool = False) -> Optional[str]:
    """Logs a line if one is due; returns it (else None)."""
    now = self._clock()
    first = self._base is None
    if first:
      self._base = (step, now)
    due = (force or first
           or (self.every_steps and step % self.every_steps == 0)
           or now - self._last_t >= self.every_secs)
    if not due:
      return None
    elapsed = now - self._t0
    units = f"{self.unit}s"
    if first:
      took = (f"{format_seconds(elapsed)} for the first {self.unit}"
              + (" (compilation included)" if self.first_compiles else ""))
      msg = (f"[{self.name}] {self.unit} {step}/{self.num_steps} ({took})")
    else:
      rate = self.rate(step, now)
      if not math.isfinite(rate):
        shown = f"{units}/s ?"
      elif rate >= 1 or not rate:
        shown = f"{rate:.3g} {units}/s"
      else:
        shown = f"{1 / rate:.3g} s/{self.unit}"
      msg = (f"[{self.name}] {self.unit} {step}/{self.num_steps} ({shown}, "
             f"elapsed {format_seconds(elapsed)}, ETA "
             f"{format_seconds(self.eta(step, now))})")
    if extra:
      msg += " " + " ".join(f"{k}={_format(v)}" for k, v in extra.items())
    logging.info(msg)
    self._last_t = now
    self.last_message = msg
    return msg


class PeriodicAction:
  """Calls ``action(step)`` after every ``every`` steps (0: never), and after
  ``last_step`` when given (clu's ``periodic_actions`` in small)."""

  def __init__(self, every: int, action: Callable[[int], None],
               last_step: Optional[int] = None):
    self.every, self.action, self.last_step = every, action, last_step

  def __call__(self, step: int) -> None:
    if (self.every and step % self.every == 0) or step == self.last_step:
      self.action(step)


def _format(v: Any) -> str:
  if isinstance(v, str):
    return v
  return f"{_to_float(v):.4g}"


def format_seconds(secs: float) -> str:
  """``'1h02m03s'``, ``'4m05s'``; ``'?'`` for an unknown (inf, nan) time."""
  if not math.isfinite(secs):
    return "?"
  secs = int(secs)
  h, rem = divmod(secs, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# ----------------------------------------------------------------------------
# Atomic files: a kill at any moment leaves the old file or the new one.


def atomic_write(path: str, write: Callable[[Any], None], mode: str) -> None:
  """Calls ``write(fh)`` on a temporary file beside ``path``, then renames it."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                             suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, mode) as fh:
      write(fh)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def read_json(path: str, what: str = "", fix: str = "") -> dict[str, Any]:
  """The JSON object in ``path``; a damaged file is one clear ``ValueError``.

  Args:
    path: the file (``config.json``, ``result.json``, ``summary.json``...).
    what: what the file is, for the message (default: its name).
    fix: what to do about a damaged file (a default is given).

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: ``path`` is not valid UTF-8 JSON (a file cut short by a
      full disk, or edited by hand) or holds something other than an object;
      the message names the file, where it breaks and what to do.
  """
  what = what or os.path.basename(path)
  fix = fix or ("Restore it, or move it (or its folder) aside to start that "
                "run again; or use a new workdir.")
  try:
    with open(path, encoding="utf-8") as fh:
      obj = json.load(fh)
  except json.JSONDecodeError as e:
    problem = f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
  except UnicodeDecodeError as e:
    problem = f"not text ({e.reason} at byte {e.start})"
  else:
    if isinstance(obj, dict):
      return obj
    problem = f"a JSON {type(obj).__name__}, not an object"
  raise ValueError(f"The {what} {path} ({os.path.getsize(path)} bytes) is "
                   f"damaged: it is {problem}. {fix}")


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as JSON atomically (temporary file, then rename)."""
  atomic_write(path, lambda fh: json.dump(
      obj, fh, indent=2, sort_keys=True, default=json_default), "w")


def write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` atomically."""
  atomic_write(path, lambda fh: fh.write(data), "wb")


def write_npz(path: str, arrays: Mapping[str, Any]) -> None:
  """Writes ``np.savez`` of ``arrays`` atomically."""
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
  write_bytes(path, buf.getvalue())


def json_default(obj):
  """``json.dump``'s ``default``: numpy values and tuples as lists/numbers."""
  if isinstance(obj, (np.generic, np.ndarray)):
    return obj.tolist()
  if isinstance(obj, tuple):
    return list(obj)
  raise TypeError(f"Not JSON serialisable: {type(obj).__name__}")


# ----------------------------------------------------------------------------
# Metric files cut back to a step (a resumed run logs each step once).


def read_rows(logdir: str) -> list[dict[str, Any]]:
  """The rows of ``logdir/metrics.jsonl`` (a torn last line is skipped)."""
  path = os.path.join(logdir, METRICS_FILE)
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
    atomic_write(path, lambda fh: fh.writelines(keep), "w")


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
  write_bytes(path, b"".join(keep))


def truncate_metrics(logdir: str, step: int) -> None:
  """Drops every metric logged after ``step`` (jsonl and TensorBoard).

  ``step`` is the step of the restored checkpoint; 0 (nothing restored: the
  run starts from scratch) deletes the metric files.
  """
  if not os.path.isdir(logdir):
    return
  names = [n for n in os.listdir(logdir)
           if n == METRICS_FILE or n.startswith("events.out.tfevents")]
  for name in names:
    path = os.path.join(logdir, name)
    if step <= 0:
      os.remove(path)
    elif name == METRICS_FILE:
      _truncate_jsonl(path, step)
    else:
      _truncate_events(path, step)
