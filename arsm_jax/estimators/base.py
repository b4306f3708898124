r"""The estimator contract, its registry and the input checks every estimator shares.

An estimator is a pure single-draw function

    est(key, logits, f) -> jax.Array          # shaped like logits, [K, C]

returning one draw of an estimate of

    grad_logits E_{z ~ Cat(softmax(logits))}[ f(onehot(z)) ].

``f`` maps a one-hot float array ``[K, C]`` to a scalar and must be traceable
by JAX. Everything else (several draws, minibatches, surrogate losses for
``jax.grad``) composes on top of that function; see ``arsm_jax.expectation``.

Each registered estimator is an :class:`Estimator`: calling it gives the
contract above, and :meth:`Estimator.estimate` gives the richer
:class:`EstimatorOutput` (the sample that was drawn, ``f`` at that sample, the
number of ``f`` evaluations) that the differentiable-expectation layer and the
diagnostics need. :func:`info` lists each estimator's properties, cost and
reference.

Inputs checked at the contract's edge. ``Estimator.estimate``, ``__call__``
and ``init`` check, when they are traced (so at no cost under ``jit``):

* ``key``: one PRNG key, typed (``jax.random.key(seed)``) or raw (the
  ``uint32[2]`` of ``jax.random.PRNGKey(seed)``). An int seed, ``None`` or a
  batch of keys is a ``ValueError`` saying what to pass (``jax.vmap`` over
  the keys, or ``arsm_jax.expectation``, for many draws). Under ``jax.vmap``
  each item's key is a single key, as it should be. Estimators that ignore
  the key (``exact``) also accept ``None``.
* ``logits``: a floating-point ``[K, C]`` array with C >= 2.
* ``f``: maps a one-hot ``[K, C]`` array to a real scalar.

Settings are checked by ``get(name, **settings)`` (unknown names, and bad
values through each estimator's ``check_settings`` hook), before anything is
traced.

Undefined distributions. A row of logits is *undefined* when it contains a
NaN or ``+inf``, or when all its entries are ``-inf``: no categorical
distribution has those logits. If any of the K rows is undefined, every
estimator returns

* ``grad``: NaN in all ``K * C`` entries,
* ``value`` and ``weights``: NaN (so through ``arsm_jax.expectation`` both
  the loss and every gradient of it are NaN, and a broken encoder cannot
  keep training on finite numbers),
* ``state`` (stateful estimators such as RELAX): the input state, unchanged,
  so one NaN batch never poisons a learned control variate.

``samples`` and ``num_evals`` are those of a stand-in draw: the estimator
runs on all-zero logits of the same shape (a uniform distribution), so no
NaN enters ``f`` or the estimator's internals, and its outputs are then
replaced as above with ``jnp.where``. The check is per draw and works
under ``jit`` and ``vmap`` (under ``vmap`` only the items with an undefined
row become NaN). It is implemented once, here, so every registered estimator
follows it without code of its own.

Masked categories (``-inf`` in a row that also has a finite entry) are
*defined*: such a category has probability zero, is never drawn and gets an
exactly zero gradient, with no NaN anywhere; logits far apart (``[0., 60.,
-60., 1e3]``) give finite estimates. Every registered estimator must do
that itself (``tests/test_reliability.py`` checks all of them on the same
inputs).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
import os
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Objective = Callable[[Array], Array]


class EstimatorOutput(NamedTuple):
  """Everything one draw of an estimator produces.

  Attributes:
    grad: the gradient estimate, shaped like ``logits`` ``[K, C]``.
    samples: the one-hot samples ``[S, K, C]`` the estimate is built around
      (S = 1 for single-draw estimators, n for n-draw ones, C**K for
      ``exact``; relaxed estimators give their relaxed sample).
    weights: ``[S]`` weights with ``value = sum_s weights[s] * f(samples[s])``.
      The differentiable-expectation layer differentiates that weighted sum
      pathwise to reach the parameters ``f`` closes over.
    value: the estimate of the expectation itself, ``f`` at the sample for
      single-draw estimators.
    num_evals: how many times ``f`` was evaluated for this draw (int32
      scalar). For ARSM this is the number of distinct swap pairs evaluated.
    state: the updated estimator state for stateful estimators (RELAX), else
      ``None``.
  """

  grad: Array
  samples: Array
  weights: Array
  value: Array
  num_evals: Array
  state: Any = None


EstimateFn = Callable[..., EstimatorOutput]
SettingsCheck = Callable[[str, Mapping[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class Estimator:
  """A registered estimator with its settings bound.

  Instances are hashable (settings are stored as a sorted tuple), so they can
  be closed over or passed as static arguments to ``jax.jit``.

  Attributes:
    name: registry name.
    estimate_fn: ``(key, logits, f, **settings) -> EstimatorOutput`` (stateful
      estimators also take ``state=``).
    settings: the bound keyword settings, as a sorted tuple of pairs.
    unbiased: whether the estimate is unbiased for any ``f``.
    pathwise: whether the estimate differentiates ``f`` through its one-hot
      input (relaxed estimators). Those need ``f`` differentiable in ``z``.
    stateful: whether the estimator carries learned state (see ``init``).
    init_fn: for stateful estimators, ``(key, logits, **settings) -> state``.
    needs_key: ``False`` for estimators that ignore the key (``exact``), which
      then also accept ``key=None``.
  """

  name: str
  estimate_fn: EstimateFn
  settings: tuple[tuple[str, Any], ...] = ()
  unbiased: bool = True
  pathwise: bool = False
  stateful: bool = False
  init_fn: Optional[Callable[..., Any]] = None
  needs_key: bool = True

  @property
  def kwargs(self) -> dict[str, Any]:
    return dict(self.settings)

  def estimate(self, key, logits, f: Objective, state=None) -> EstimatorOutput:
    """One draw with everything it produced; see :class:`EstimatorOutput`.

    A draw whose logits have an undefined row returns NaN (see the module
    docstring, "Undefined distributions").
    """
    key = check_key(key, self.name, allow_none=not self.needs_key)
    logits = check_logits(logits, self.name)
    check_objective(f, logits)
    if self.stateful and state is None:
      raise ValueError(
          f"Estimator {self.name!r} is stateful: pass state=est.init(key, "
          "logits) and carry the returned EstimatorOutput.state forward.")
    if not self.stateful and state is not None:
      raise ValueError(f"Estimator {self.name!r} is stateless; got a state.")
    undefined = undefined_rows(logits).any()                  # bool scalar
    # The estimator runs on a harmless stand-in when the draw is undefined,
    # so no NaN reaches f, lax.cond branches or a learned state.
    stand_in = jnp.where(undefined, jnp.zeros_like(logits), logits)
    if self.stateful:
      out = self.estimate_fn(key, stand_in, f, state=state, **self.kwargs)
    else:
      out = self.estimate_fn(key, stand_in, f, **self.kwargs)
    return _undefined_to_nan(undefined, out, state if self.stateful else None)

  def init(self, key, logits):
    """Initial state of a stateful estimator (``None`` for stateless ones)."""
    key = check_key(key, f"{self.name}.init", allow_none=not self.needs_key)
    if not self.stateful:
      return None
    logits = check_logits(logits, self.name)
    return self.init_fn(key, logits, **self.kwargs)

  def __call__(self, key, logits, f: Objective, state=None) -> Array:
    """The public contract: a single-draw gradient estimate shaped like logits."""
    return self.estimate(key, logits, f, state=state).grad

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.settings)
    return f"Estimator({self.name}{', ' if args else ''}{args})"


def undefined_rows(logits: Array) -> Array:
  """``[K]`` bool: rows with a NaN or ``+inf``, or with every entry ``-inf``."""
  bad_entry = jnp.isnan(logits) | jnp.isposinf(logits)        # [K, C]
  return jnp.any(bad_entry, axis=-1) | jnp.all(jnp.isneginf(logits), axis=-1)


def _undefined_to_nan(undefined: Array, out: EstimatorOutput,
                      state: Any) -> EstimatorOutput:
  """Applies the undefined-distribution policy to one draw's output."""

  def nan_if_undefined(x):
    x = jnp.asarray(x)
    return jnp.where(undefined, jnp.full_like(x, jnp.nan), x)

  new_state = out.state
  if state is not None:
    new_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(undefined, old, new).astype(
            jnp.result_type(new)), out.state, state)
  return out._replace(grad=nan_if_undefined(out.grad),
                      weights=nan_if_undefined(out.weights),
                      value=nan_if_undefined(out.value), state=new_state)


class EstimatorInfo(NamedTuple):
  """What :func:`info` reports about one registered estimator.

  Attributes:
    description: one line.
    unbiased: unbiased for any ``f``.
    pathwise: differentiates ``f`` in its one-hot input (``f`` must be
      differentiable in z).
    stateful: carries learned state (``est.init``).
    cost: evaluations of ``f`` per draw, e.g. ``"C(C-1)/2+1 (K>1), C (K=1)"``
      (``None`` when not given at registration).
    reference: the paper(s) it comes from (``None`` when not given).
    settings: each setting's name and default, ``{name: default}``.
  """

  description: str
  unbiased: bool
  pathwise: bool
  stateful: bool
  cost: Optional[str]
  reference: Optional[str]
  settings: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class _Entry:
  factory: Callable[..., Estimator]
  info: EstimatorInfo


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, estimate_fn: EstimateFn, *, description: str,
             unbiased: bool = True, pathwise: bool = False,
             init_fn: Optional[Callable[..., Any]] = None,
             check_settings: Optional[SettingsCheck] = None,
             needs_key: bool = True, cost: Optional[str] = None,
             reference: Optional[str] = None) -> None:
  """Adds an estimator to the registry.

  The keyword-only parameters of ``estimate_fn`` (after ``key, logits, f``)
  are its settings; ``get(name, **settings)`` binds them, and unknown settings
  are rejected with a ``ValueError`` listing the allowed ones.

  Args:
    name: the registry name.
    estimate_fn: ``(key, logits, f, **settings) -> EstimatorOutput``
      (stateful estimators also take ``state=``).
    description: one line for :func:`describe` and :func:`info`.
    unbiased: whether the estimate is unbiased for any ``f``.
    pathwise: whether it differentiates ``f`` in its one-hot input.
    init_fn: ``(key, logits, **settings) -> state`` for a stateful estimator.
    check_settings: optional ``(name, settings) -> None`` called by ``get``
      with every setting (defaults filled in); it raises a ``ValueError``
      naming the setting, the bad value and what is allowed.
    needs_key: ``False`` for an estimator that ignores its key, which may then
      be ``None``.
    cost: evaluations of ``f`` per draw, in words (for :func:`info`).
    reference: the paper(s) the estimator comes from (for :func:`info`).
  """
  if name in _REGISTRY:
    raise ValueError(f"An estimator named {name!r} is already registered.")
  params = inspect.signature(estimate_fn).parameters
  defaults = {n: p.default for n, p in params.items()
              if p.kind is p.KEYWORD_ONLY and n != "state"}

  def factory(**settings) -> Estimator:
    unknown = set(settings) - set(defaults)
    if unknown:
      raise ValueError(
          f"Unknown setting(s) {sorted(unknown)} for estimator {name!r}; "
          f"allowed: {sorted(defaults) or 'none'}.")
    if check_settings is not None:
      check_settings(name, {**defaults, **settings})
    return Estimator(name=name, estimate_fn=estimate_fn,
                     settings=tuple(sorted(settings.items())),
                     unbiased=unbiased, pathwise=pathwise,
                     stateful=init_fn is not None, init_fn=init_fn,
                     needs_key=needs_key)

  _REGISTRY[name] = _Entry(factory, EstimatorInfo(
      description=description, unbiased=unbiased, pathwise=pathwise,
      stateful=init_fn is not None, cost=cost, reference=reference,
      settings=dict(defaults)))


def names() -> list[str]:
  """Names of all registered estimators, sorted."""
  return sorted(_REGISTRY)


def describe() -> dict[str, str]:
  """One-line description of each registered estimator."""
  return {n: _REGISTRY[n].info.description for n in names()}


def info() -> dict[str, EstimatorInfo]:
  """Properties, cost, reference and settings of each registered estimator.

  Returns:
    ``{name: EstimatorInfo}`` in sorted name order; see :class:`EstimatorInfo`.
    A setting without a default maps to ``inspect.Parameter.empty``.
  """
  return {n: _REGISTRY[n].info for n in names()}


def get(name: str | Estimator, **settings) -> Estimator:
  """Returns the estimator registered as ``name`` with ``settings`` bound.

  Args:
    name: a registered name (see :func:`names`), or an :class:`Estimator`,
      which is returned as is (settings must then be empty).
    **settings: estimator settings, e.g. ``get('reinforce_loo',
      num_samples=4)``.

  Raises:
    ValueError: for an unknown name (the message lists the known ones), an
      unknown setting, or a setting value the estimator does not allow.
  """
  if isinstance(name, Estimator):
    if settings:
      raise ValueError("Settings cannot be added to an Estimator instance; "
                       "call get(name, **settings) instead.")
    return name
  if not isinstance(name, str) or name not in _REGISTRY:
    raise ValueError(
        f"Unknown estimator {name!r}; known estimators: {', '.join(names())}.")
  return _REGISTRY[name].factory(**settings)


# ----------------------------------------------------------------------------
# Setting checks, for the check_settings hooks.


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


# ----------------------------------------------------------------------------
# Input checks. They run at trace time, so they cost nothing under jit.


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


def check_logits(logits, who: str = "estimator") -> Array:
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


def check_objective(f: Objective, logits: Array) -> None:
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


def call_objective(f: Objective, onehot: Array, dtype) -> Array:
  """Evaluates f on one one-hot array and casts the result to ``dtype``."""
  return jnp.asarray(f(onehot)).astype(dtype)


def evaluate_many(f: Objective, onehots: Array, dtype,
                  batch_size: Optional[int] = None) -> Array:
  """Evaluates f on a stack of one-hot arrays ``[N, K, C]`` -> ``[N]``.

  Args:
    f: the objective.
    onehots: ``[N, K, C]``.
    dtype: result dtype.
    batch_size: ``None`` vectorises over all N at once (``vmap``); an integer
      evaluates in chunks of that size (``lax.map``), bounding peak memory for
      large C.
  """
  fn = lambda z: call_objective(f, z, dtype)
  if batch_size is None:
    return jax.vmap(fn)(onehots)
  return jax.lax.map(fn, onehots, batch_size=int(batch_size))


def evaluate_indices(f: Objective, indices: Array, num_cats: int, dtype,
                     batch_size: Optional[int] = None) -> Array:
  """Evaluates f on the one-hot vectors of category indices ``[N, K]`` -> ``[N]``.

  Args:
    f: the objective.
    indices: ``[N, K]`` int categories; item n is ``onehot(indices[n])``.
    num_cats: C.
    dtype: result dtype (and that of the one-hot arrays).
    batch_size: ``None`` builds all ``[N, K, C]`` one-hot arrays and
      vectorises over them (``vmap``); an integer evaluates in chunks of that
      size (``lax.map``), each chunk building its own ``[batch_size, K, C]``
      one-hot arrays, so peak memory is set by the chunk, not by N.
  """
  if batch_size is None:
    return evaluate_many(f, jax.nn.one_hot(indices, num_cats, dtype=dtype),
                         dtype)
  fn = lambda z: call_objective(f, jax.nn.one_hot(z, num_cats, dtype=dtype),
                                dtype)
  return jax.lax.map(fn, indices, batch_size=int(batch_size))
