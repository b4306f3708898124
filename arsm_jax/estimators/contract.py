r"""The estimator contract: a single-draw function, what it returns, its edge.

An estimator is a pure single-draw function

    est(key, logits, f) -> jax.Array          # shaped like logits, [K, C]

returning one draw of an estimate of

    grad_logits E_{z ~ Cat(softmax(logits))}[ f(onehot(z)) ].

``f`` maps a one-hot float array ``[K, C]`` to a scalar and must be traceable
by JAX. Everything else (several draws, minibatches, surrogate losses for
``jax.grad``) composes on top of that function; see ``arsm_jax.expectation``.

Each registered estimator (``arsm_jax.estimators.registry``) is an
:class:`Estimator`: calling it gives the contract above, and
:meth:`Estimator.estimate` gives the richer :class:`EstimatorOutput` (the
sample that was drawn, ``f`` at that sample, the number of ``f``
evaluations) that the differentiable-expectation layer and the diagnostics
need.

Inputs checked at the contract's edge. ``Estimator.estimate``, ``__call__``
and ``init`` check, when they are traced (so at no cost under ``jit``; the
checks are in ``arsm_jax.estimators.validation``):

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

State over a batch. A stateful estimator draws once per item of a batch,
every item starting from the same state; :meth:`Estimator.item_state` gives
that per-item state and :meth:`Estimator.batch_update` combines the items'
new states into the batch's new state. Both are hooks an estimator
registers (RELAX: each item starts without the previous gradient, and the
batch takes one optimiser step on the mean gradient); by default an item
sees the state unchanged and the batch's state is the items' mean.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from arsm_jax.estimators import validation

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
    needs_key: ``False`` for estimators that ignore the key (``exact``), which
      then also accept ``key=None``.
    item_state_fn: for stateful estimators, ``(state) -> state``: the state
      each item of a batch starts from (see :meth:`item_state`); ``None``
      for the state itself.
    batch_update_fn: for stateful estimators, ``(state, item_states,
      **settings) -> state``: the batch's new state (see
      :meth:`batch_update`); ``None`` for the items' mean.
  """

  name: str
  estimate_fn: EstimateFn
  settings: tuple[tuple[str, Any], ...] = ()
  unbiased: bool = True
  pathwise: bool = False
  stateful: bool = False
  init_fn: Optional[Callable[..., Any]] = None
  needs_key: bool = True
  item_state_fn: Optional[Callable[[Any], Any]] = None
  batch_update_fn: Optional[Callable[..., Any]] = None

  @property
  def kwargs(self) -> dict[str, Any]:
    return dict(self.settings)

  def estimate(self, key, logits, f: Objective, state=None) -> EstimatorOutput:
    """One draw with everything it produced; see :class:`EstimatorOutput`.

    A draw whose logits have an undefined row returns NaN (see the module
    docstring, "Undefined distributions").
    """
    key = validation.check_key(key, self.name, allow_none=not self.needs_key)
    logits = validation.check_logits(logits, self.name)
    validation.check_objective(f, logits)
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
    key = validation.check_key(key, f"{self.name}.init",
                               allow_none=not self.needs_key)
    if not self.stateful:
      return None
    logits = validation.check_logits(logits, self.name)
    return self.init_fn(key, logits, **self.kwargs)

  def item_state(self, state):
    """The state each item of a batch draws with, given the batch's state.

    The ``item_state_fn`` hook of the estimator (RELAX zeroes the gradient
    its state carries from the previous update); without one, ``state``
    itself.
    """
    if self.item_state_fn is None:
      return state
    return self.item_state_fn(state)

  def batch_update(self, state, item_states):
    """The batch's new state from the new states of its items.

    Args:
      state: the state of the batch (before :meth:`item_state`).
      item_states: the ``EstimatorOutput.state`` of each item, stacked: every
        leaf has a leading batch axis ``[B, ...]``.

    Returns:
      The ``batch_update_fn`` hook's result (RELAX: one optimiser step on the
      items' mean control-variate gradient); without one, the mean over the
      items of each leaf, in the leaf's dtype (an int32 step count stays
      int32).
    """
    if self.batch_update_fn is not None:
      return self.batch_update_fn(state, item_states, **self.kwargs)
    return jax.tree_util.tree_map(
        lambda s: jnp.mean(s, axis=0).astype(s.dtype), item_states)

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
