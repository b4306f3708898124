"""Config checks shared by every task's ``validate_config``.

Each check reads one field, raises a ``ValueError`` when it is wrong, and
returns the value. There are two message shapes, each naming the field, the
bad value and what is allowed:

* types and ranges: ``config.batch_size must be an integer >= 1; got -5.``
* names: ``Unknown model 'deep'; allowed: linear, nonlinear (config.model).``

Checks run before any data loading or compilation, so a bad config fails in
milliseconds.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np


def fail(field: str, value: Any, allowed: str) -> ValueError:
  """``config.<field> must be <allowed>; got <value>.``"""
  return ValueError(f"config.{field} must be {allowed}; got {value!r}.")


def _is_int(value) -> bool:
  return (isinstance(value, (int, np.integer))
          and not isinstance(value, (bool, np.bool_)))


def _is_number(value) -> bool:
  return (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, (bool, np.bool_)))


def integer(config, field: str, low: Optional[int] = None,
            high: Optional[int] = None) -> int:
  """An int in ``[low, high]`` (either bound may be None)."""
  value = config[field]
  if not _is_int(value):
    raise fail(field, value, "an integer")
  if low is not None and value < low:
    raise fail(field, value, f">= {low}" if high is None
               else f"in [{low}, {high}]")
  if high is not None and value > high:
    raise fail(field, value, f"<= {high}" if low is None
               else f"in [{low}, {high}]")
  return int(value)


def positive_number(config, field: str) -> float:
  """A finite number > 0."""
  value = config[field]
  if not _is_number(value) or not math.isfinite(value) or value <= 0:
    raise fail(field, value, "a positive number")
  return float(value)


def number(config, field: str, low: float, high: float,
           low_open: bool = False, high_open: bool = False) -> float:
  """A finite number in the interval from ``low`` to ``high``."""
  value = config[field]
  interval = (f"{'(' if low_open else '['}{low:g}, {high:g}"
              f"{')' if high_open else ']'}")
  if not _is_number(value) or not math.isfinite(value):
    raise fail(field, value, f"a number in {interval}")
  if (value < low or value > high or (low_open and value == low)
      or (high_open and value == high)):
    raise fail(field, value, f"in {interval}")
  return float(value)


def non_negative_number(config, field: str) -> float:
  """A finite number >= 0."""
  value = config[field]
  if not _is_number(value) or not math.isfinite(value) or value < 0:
    raise fail(field, value, "a number >= 0")
  return float(value)


def boolean(config, field: str) -> bool:
  """``True`` or ``False`` (not a number or a string)."""
  value = config[field]
  if not isinstance(value, (bool, np.bool_)):
    raise fail(field, value, "True or False")
  return bool(value)


def widths(config, field: str) -> tuple[int, ...]:
  """A non-empty tuple of positive ints (a single int is one width)."""
  value = config[field]
  if _is_int(value):
    value = (value,)
  try:
    out = tuple(value)
  except TypeError:
    out = None
  if not out or any(not _is_int(w) or w < 1 for w in out):
    raise fail(field, value, "a tuple of positive ints")
  return tuple(int(w) for w in out)


def choice(config, field: str, allowed: Sequence[str], noun: str = "",
           unknown: str = "Unknown", label: str = "allowed") -> str:
  """One of ``allowed``; the message says ``<unknown> <noun> <value>``."""
  value = config[field]
  if value not in allowed:
    raise ValueError(f"{unknown} {noun or field} {value!r}; {label}: "
                     f"{', '.join(allowed)} (config.{field}).")
  return value


def names(config, field: str, known: Sequence[str], noun: str) -> list[str]:
  """Names from a comma-separated string or a sequence, each in ``known``.

  Raises ``ValueError`` naming the field, for an empty list, a name not in
  ``known`` or a repeat.
  """
  value = config[field]
  if isinstance(value, str):
    value = [n.strip() for n in value.split(",") if n.strip()]
  out = list(value)
  if not out:
    raise fail(field, config[field],
               f"comma-separated {noun} names from: {', '.join(known)}")
  bad = [n for n in out if n not in known]
  if bad:
    raise ValueError(f"Unknown {noun}(s) {bad}; allowed: {', '.join(known)} "
                     f"(config.{field}).")
  if len(set(out)) != len(out):
    raise fail(field, config[field], "a list of distinct names")
  return out


def multiple_of(config, field: str, of_field: str) -> None:
  """``config[field]`` is a multiple of ``config[of_field]``."""
  value, of = config[field], config[of_field]
  if value % of:
    raise fail(field, value, f"a multiple of {of_field} ({of})")


# ----------------------------------------------------------------------------
# Estimator settings in a config.


def _setting_type(default: Any) -> type:
  """The ml_collections field type of a setting with this default."""
  for t in (bool, int, float, str):   # bool before int: True is an int
    if isinstance(default, t):
      return t
  if isinstance(default, (tuple, list)):
    return tuple
  return object   # None or no default: any literal (--...=64, =None)


def estimator_settings_fields():
  """An ``ml_collections.ConfigDict`` declaring every registered setting.

  One unset field (``ml_collections`` placeholder, value ``None``) per
  setting name of any registered estimator (``num_samples``,
  ``temperature``, ``eval_batch_size``, ...), typed from its default, so a
  locked config accepts ``--config.estimator_settings.num_samples=4`` for
  whichever estimator ``config.estimator`` names, while a name no estimator
  has (``--config.estimator_settings.num_sample=4``) is still an error.
  :func:`estimator_settings` returns the fields that are set; a set one
  that the chosen estimator does not take is an error naming the ones it
  does (``estimators.get``).
  """
  from ml_collections import config_dict  # pylint: disable=g-import-not-at-top
  from arsm_jax import estimators  # pylint: disable=g-import-not-at-top
  types: dict[str, type] = {}
  for info in estimators.info().values():
    for name, default in info.settings.items():
      t = _setting_type(default)
      types[name] = t if types.get(name, t) is t else object
  return config_dict.ConfigDict(
      {name: config_dict.placeholder(types[name]) for name in sorted(types)})


def estimator_settings(settings) -> dict[str, Any]:
  """The settings that are set (not ``None``) in ``settings``, as a dict.

  ``settings`` is ``config.estimator_settings``: a ConfigDict of
  :func:`estimator_settings_fields` or of the settings themselves; an unset
  field means the estimator's default.
  """
  as_dict = settings.to_dict() if hasattr(settings, "to_dict") else dict(
      settings)
  return {k: v for k, v in as_dict.items() if v is not None}
