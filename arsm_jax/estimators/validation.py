"""Checks of estimator settings and of the inputs of one draw.

Settings checks (:func:`check_int`, :func:`check_bool`, :func:`check_memory`)
serve the ``check_settings`` hooks that ``registry.get`` calls before anything
is traced; each raises a one-line ``ValueError`` naming the estimator, the
setting, the bad value and what is allowed.

Input checks (:func:`check_key`, :func:`check_logits`,
:func:`check_objective`) run at the contract's edge (``Estimator.estimate``,
``__call__`` and ``init``; see ``arsm_jax.estimators.contract``). They look
only at shapes and dtypes, so under ``jit`` they run once, at trace time, and
cost nothing afterwards.
"""

from __future__ import annotations

import functools
import numbers
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np


def check_int(value, setting: str, who: str, *, minimum: int = 1,
              allow_none: bool = False) -> Optional[int]:
  """Checks that a setting is an integer ``>= minimum`` (or ``None``).

  Python and NumPy integers are accepted; bools, floats, strings and arrays
  are not.

  Returns:
    The value as a Python int (``None`` stays ``None``).

  Raises:
    ValueError: naming ``who``, the setting, the bad value and what is
      allowed.
  """
  if value is None and allow_none:
    return None
  if (isinstance(value, (bool, np.bool_))
      or not isinstance(value, numbers.Integral) or value < minimum):
    raise ValueError(f"{who}: {setting} must be an integer >= {minimum}"
                     f"{' or None' if allow_none else ''}; got {value!r}.")
  return int(value)


def device_memory_bytes() -> Optional[int]:
  """Memory of one device: an accelerator's ``bytes_limit``, else host RAM.

  ``None`` when neither can be found out.
  """
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  try:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
  except (AttributeError, OSError, ValueError):
    return None


def _gib(num_bytes: float) -> str:
  return f"{num_bytes / 2**30:,.1f} GiB"


def check_memory(who: str, setting: str, value: int, bytes_each: float,
                 what: str, limit: Optional[int] = None) -> None:
  """Refuses a count ``setting`` whose arrays cannot fit in a device's memory.

  Args:
    who: named first in the message (an estimator, ``config.estimator``...).
    setting: the count setting (``num_samples``).
    value: its value.
    bytes_each: bytes that one unit of it needs at least (one sample's
      arrays), so that ``value * bytes_each`` is a lower bound of the memory.
    what: what the memory is for (``"the samples of one draw"``).
    limit: the memory available; default :func:`device_memory_bytes`.

  Raises:
    ValueError: ``value * bytes_each`` exceeds ``limit``; the message gives
      both and the largest value that would fit.
  """
  limit = device_memory_bytes() if limit is None else limit
  needed = float(value) * float(bytes_each)
  if not limit or needed <= limit:
    return
  platform = jax.local_devices()[0].platform
  raise ValueError(
      f"{who}: {setting}={value} needs at least {_gib(needed)} for {what} "
      f"({value} x {bytes_each:,.0f} bytes), more than the {_gib(limit)} of "
      f"memory of one {platform} device; lower {setting} (at most about "
      f"{int(limit // bytes_each):,} fit).")


def check_bool(value, setting: str, who: str) -> bool:
  """Checks that a setting is ``True`` or ``False``; returns it."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{who}: {setting} must be True or False; got "
                     f"{value!r}.")
  return bool(value)


@functools.lru_cache(maxsize=None)
def _raw_key_shape(impl: str) -> tuple[int, ...]:
  del impl  # The cache key: the shape follows jax's default PRNG impl.
  return tuple(jax.eval_shape(lambda: jax.random.PRNGKey(0)).shape)


def check_key(key, who: str = "estimator", *, allow_none: bool = False):
  """Checks that ``key`` is one PRNG key, typed or raw; returns it unchanged.

  Only shapes and dtypes are looked at, so the check is free under ``jit``
  and under ``vmap`` sees each item's key.

  Args:
    key: ``jax.random.key(seed)`` (a typed key, shape ``()``) or
      ``jax.random.PRNGKey(seed)`` (raw ``uint32[2]`` under the default
      threefry implementation).
    who: named in the error message.
    allow_none: accept ``None`` (for estimators that ignore the key).

  Raises:
    ValueError: for an int seed, ``None``, a batch of keys or any other
      array, saying what to pass instead.
  """
  if key is None:
    if allow_none:
      return None
    raise ValueError(f"{who}: key is None; pass a PRNG key, e.g. "
                     "jax.random.key(0).")
  if isinstance(key, (numbers.Number, np.bool_)) or not (
      hasattr(key, "shape") and hasattr(key, "dtype")):
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
      raise ValueError(
          f"{who}: key must be a PRNG key, not the int seed {key!r}; pass "
          f"jax.random.key({key!r}).")
    raise ValueError(f"{who}: key must be a PRNG key (jax.random.key(seed)); "
                     f"got {type(key).__name__} {key!r}.")
  shape, dtype = tuple(key.shape), key.dtype
  batch_hint = ("an estimator draws once per key: for many draws use "
                "jax.vmap over the keys, or arsm_jax.expectation for a batch "
                "of logits")
  if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    if shape:
      raise ValueError(f"{who}: got a batch of keys of shape {shape}; pass a "
                       f"single key ({batch_hint}).")
    return key
  raw = _raw_key_shape(str(jax.config.jax_default_prng_impl))
  if dtype == jnp.uint32 and shape == raw:
    return key
  if dtype == jnp.uint32 and len(shape) > len(raw) and shape[-len(raw):] == raw:
    raise ValueError(f"{who}: got a batch of raw keys of shape {shape}; pass a "
                     f"single key, shape {raw} ({batch_hint}).")
  if not shape and jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f"{who}: key must be a PRNG key, not an integer scalar; "
                     "pass jax.random.key(seed).")
  raise ValueError(
      f"{who}: key must be one PRNG key: jax.random.key(seed), or the raw "
      f"uint32{list(raw)} of jax.random.PRNGKey(seed); got a {dtype} array "
      f"of shape {shape}.")


def check_logits(logits, who: str = "estimator") -> jax.Array:
  """Checks that logits are a floating-point ``[K, C]`` array with C >= 2."""
  logits = jnp.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(
        f"{who}: logits must be a 2-D array [K, C] (K dimensions, C "
        f"categories); got shape {logits.shape}. Use arsm_jax.expectation or "
        "jax.vmap for leading batch dimensions.")
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(
        f"{who}: logits must be floating point; got dtype {logits.dtype}.")
  if logits.shape[1] < 2:
    raise ValueError(
        f"{who}: need C >= 2 categories; got logits of shape {logits.shape}.")
  if logits.shape[0] < 1:
    raise ValueError(f"{who}: need K >= 1 dimensions; got shape {logits.shape}.")
  return logits


def check_objective(f: Callable[[jax.Array], Any], logits: jax.Array) -> None:
  """Checks that ``f`` maps a one-hot ``[K, C]`` array to a real scalar."""
  if not callable(f):
    raise ValueError(f"f must be callable; got {type(f).__name__}.")
  probe = jax.ShapeDtypeStruct(logits.shape, logits.dtype)
  try:
    out = jax.eval_shape(f, probe)
  except Exception as e:  # Re-raised with context; the cause is chained.
    raise ValueError(
        f"f could not be evaluated on a one-hot array of shape {logits.shape}"
        f": {type(e).__name__}: {e}") from e
  if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
    shape = getattr(out, "shape", type(out).__name__)
    raise ValueError(
        f"f must return a scalar for a one-hot input of shape {logits.shape}; "
        f"it returned {shape}.")
  if not (jnp.issubdtype(out.dtype, jnp.floating)
          or jnp.issubdtype(out.dtype, jnp.integer)
          or jnp.issubdtype(out.dtype, jnp.bool_)):
    raise ValueError(f"f must return a real scalar; it returned {out.dtype}.")
