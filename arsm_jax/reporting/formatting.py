"""Numbers and blocks of text as the results tables show them."""

from __future__ import annotations

import csv
import io
import statistics
from typing import Any, Iterable, Optional


def fmt(value: Any) -> str:
  """A CSV cell: floats to 6 significant digits, ``None`` empty."""
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.6g}"
  return str(value)


def to_csv(rows: list[dict], columns: Iterable[str]) -> str:
  """``rows`` as CSV text with the header ``columns`` (cells by :func:`fmt`)."""
  columns = tuple(columns)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: fmt(row[k]) for k in columns})
  return buf.getvalue()


def settings_text(settings: dict) -> str:
  """``key=value;...`` sorted by key."""
  return ";".join(f"{k}={settings[k]}" for k in sorted(settings))


def median_range(values: Iterable[Optional[float]]) -> str:
  """``median (min-max)`` to two decimals, the median alone for one value."""
  values = [v for v in values if v is not None]
  if not values:
    return ""
  med = statistics.median(values)
  if len(values) == 1:
    return f"{med:.2f}"
  return f"{med:.2f} ({min(values):.2f}-{max(values):.2f})"


def or_dash(value: Any, spec: str) -> str:
  """``value`` formatted by ``spec``, ``-`` for ``None``."""
  return "-" if value is None else format(value, spec)


def median_text(value: Optional[float]) -> str:
  """A median of episodes to solve, "not reached" for ``None``."""
  return "not reached" if value is None else f"{value:g}"


def interval_text(low: Optional[float], high: Optional[float]) -> str:
  """``[low, high]`` of a median's interval, "not reached" for ``None``."""
  return f"[{median_text(low)}, {median_text(high)}]"


def splice(text: str, block: str, start: str, end: str, path: str) -> str:
  """``text`` with what lies between ``start`` and ``end`` replaced by
  ``block``.

  Raises:
    ValueError: naming ``path`` when a marker is missing.
  """
  head, sep, rest = text.partition(start)
  _, sep2, tail = rest.partition(end)
  if not sep or not sep2:
    raise ValueError(f"{path} lacks the markers {start} ... {end}; put them "
                     "where the generated text belongs.")
  return f"{head}{start}\n{block}{end}{tail}"
