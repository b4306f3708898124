"""The estimator registry: every estimator by name, with what it is and costs.

An estimator module registers its estimate function once, at import, with
:func:`register`; :func:`get` binds settings (checked by the estimator's
``check_settings`` hook before anything is traced) and returns an
:class:`~arsm_jax.estimators.Estimator`. :func:`names`,
:func:`describe` and :func:`info` list what is registered.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, NamedTuple, Optional

from arsm_jax.estimators import contract

SettingsCheck = Callable[[str, Mapping[str, Any]], None]


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
  factory: Callable[..., contract.Estimator]
  info: EstimatorInfo


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, estimate_fn: contract.EstimateFn, *,
             description: str, unbiased: bool = True, pathwise: bool = False,
             init_fn: Optional[Callable[..., Any]] = None,
             item_state_fn: Optional[Callable[[Any], Any]] = None,
             batch_update_fn: Optional[Callable[..., Any]] = None,
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
    item_state_fn: a stateful estimator's ``(state) -> state``, the state
      each item of a batch draws with (``Estimator.item_state``); default
      the state itself.
    batch_update_fn: a stateful estimator's ``(state, item_states,
      **settings) -> state``, the batch's new state from its items' new
      states stacked ``[B, ...]`` (``Estimator.batch_update``); default their
      mean.
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
  if init_fn is None and (item_state_fn is not None
                          or batch_update_fn is not None):
    raise ValueError(f"Estimator {name!r}: item_state_fn and batch_update_fn "
                     "are hooks of a stateful estimator; pass init_fn too.")
  params = inspect.signature(estimate_fn).parameters
  defaults = {n: p.default for n, p in params.items()
              if p.kind is p.KEYWORD_ONLY and n != "state"}

  def factory(**settings) -> contract.Estimator:
    unknown = set(settings) - set(defaults)
    if unknown:
      raise ValueError(
          f"Unknown setting(s) {sorted(unknown)} for estimator {name!r}; "
          f"allowed: {sorted(defaults) or 'none'}.")
    if check_settings is not None:
      check_settings(name, {**defaults, **settings})
    return contract.Estimator(
        name=name, estimate_fn=estimate_fn,
        settings=tuple(sorted(settings.items())), unbiased=unbiased,
        pathwise=pathwise, stateful=init_fn is not None, init_fn=init_fn,
        needs_key=needs_key, item_state_fn=item_state_fn,
        batch_update_fn=batch_update_fn)

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


def get(name: str | contract.Estimator, **settings) -> contract.Estimator:
  """Returns the estimator registered as ``name`` with ``settings`` bound.

  Args:
    name: a registered name (see :func:`names`), or an
      :class:`~arsm_jax.estimators.Estimator`, which is returned as is
      (settings must then be empty).
    **settings: estimator settings, e.g. ``get('reinforce_loo',
      num_samples=4)``.

  Raises:
    ValueError: for an unknown name (the message lists the known ones), an
      unknown setting, or a setting value the estimator does not allow.
  """
  if isinstance(name, contract.Estimator):
    if settings:
      raise ValueError("Settings cannot be added to an Estimator instance; "
                       "call get(name, **settings) instead.")
    return name
  if not isinstance(name, str) or name not in _REGISTRY:
    raise ValueError(
        f"Unknown estimator {name!r}; known estimators: {', '.join(names())}.")
  return _REGISTRY[name].factory(**settings)
