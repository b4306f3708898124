"""The estimator contract, its registry and the input checks every estimator shares.

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
diagnostics need.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

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
  """

  name: str
  estimate_fn: EstimateFn
  settings: tuple[tuple[str, Any], ...] = ()
  unbiased: bool = True
  pathwise: bool = False
  stateful: bool = False
  init_fn: Optional[Callable[..., Any]] = None

  @property
  def kwargs(self) -> dict[str, Any]:
    return dict(self.settings)

  def estimate(self, key, logits, f: Objective, state=None) -> EstimatorOutput:
    """One draw with everything it produced; see :class:`EstimatorOutput`."""
    logits = check_logits(logits, self.name)
    check_objective(f, logits)
    if self.stateful:
      if state is None:
        raise ValueError(
            f"Estimator {self.name!r} is stateful: pass state=est.init(key, "
            "logits) and carry the returned EstimatorOutput.state forward.")
      return self.estimate_fn(key, logits, f, state=state, **self.kwargs)
    if state is not None:
      raise ValueError(f"Estimator {self.name!r} is stateless; got a state.")
    return self.estimate_fn(key, logits, f, **self.kwargs)

  def init(self, key, logits):
    """Initial state of a stateful estimator (``None`` for stateless ones)."""
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


@dataclasses.dataclass(frozen=True)
class _Entry:
  factory: Callable[..., Estimator]
  description: str


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, estimate_fn: EstimateFn, *, description: str,
             unbiased: bool = True, pathwise: bool = False,
             init_fn: Optional[Callable[..., Any]] = None) -> None:
  """Adds an estimator to the registry.

  The keyword-only parameters of ``estimate_fn`` (after ``key, logits, f``)
  are its settings; ``get(name, **settings)`` binds them, and unknown settings
  are rejected with a ``ValueError`` listing the allowed ones.
  """
  if name in _REGISTRY:
    raise ValueError(f"An estimator named {name!r} is already registered.")
  params = inspect.signature(estimate_fn).parameters
  allowed = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
  allowed.discard("state")

  def factory(**settings) -> Estimator:
    unknown = set(settings) - allowed
    if unknown:
      raise ValueError(
          f"Unknown setting(s) {sorted(unknown)} for estimator {name!r}; "
          f"allowed: {sorted(allowed) or 'none'}.")
    return Estimator(name=name, estimate_fn=estimate_fn,
                     settings=tuple(sorted(settings.items())),
                     unbiased=unbiased, pathwise=pathwise,
                     stateful=init_fn is not None, init_fn=init_fn)

  _REGISTRY[name] = _Entry(factory, description)


def names() -> list[str]:
  """Names of all registered estimators, sorted."""
  return sorted(_REGISTRY)


def describe() -> dict[str, str]:
  """One-line description of each registered estimator."""
  return {n: _REGISTRY[n].description for n in names()}


def get(name: str | Estimator, **settings) -> Estimator:
  """Returns the estimator registered as ``name`` with ``settings`` bound.

  Args:
    name: a registered name (see :func:`names`), or an :class:`Estimator`,
      which is returned as is (settings must then be empty).
    **settings: estimator settings, e.g. ``get('reinforce_loo',
      num_samples=4)``.

  Raises:
    ValueError: for an unknown name (the message lists the known ones) or an
      unknown setting.
  """
  if isinstance(name, Estimator):
    if settings:
      raise ValueError("Settings cannot be added to an Estimator instance; "
                       "call get(name, **settings) instead.")
    return name
  if name not in _REGISTRY:
    raise ValueError(
        f"Unknown estimator {name!r}; known estimators: {', '.join(names())}.")
  return _REGISTRY[name].factory(**settings)


# ----------------------------------------------------------------------------
# Input checks. They run at trace time, so they cost nothing under jit.


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
