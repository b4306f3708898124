r"""Exact expectation and gradient by enumerating all C^K outcomes.

.. math::

  \mathcal{E}(\phi) = \sum_z q_\phi(z) f(z), \qquad
  \frac{\partial \mathcal{E}}{\partial \phi_{kc}}
    = \sum_z q_\phi(z)\,\big(f(z) - \mathcal{E}\big)\,\mathbb{1}[z_k = c].

Used as ground truth in tests and diagnostics, and as the "true gradient"
column of the toy experiment.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry
from arsm_jax.estimators import validation

Array = jax.Array

DEFAULT_MAX_OUTCOMES = 100_000


@functools.lru_cache(maxsize=None)
def _outcomes(num_dims: int, num_cats: int) -> np.ndarray:
  """All C^K outcomes as an int32 array ``[C^K, K]``."""
  grid = np.indices((num_cats,) * num_dims).reshape(num_dims, -1).T
  return grid.astype(np.int32)


def _enumerate(logits: Array, f: contract.Objective, max_outcomes: int,
               eval_batch_size: Optional[int]):
  num_dims, num_cats = logits.shape
  count = num_cats ** num_dims
  if count > max_outcomes:
    raise ValueError(
        f"exact: enumerating C**K = {num_cats}**{num_dims} = {count} outcomes "
        f"exceeds max_outcomes={max_outcomes}. Raise it with "
        f"get('exact', max_outcomes=...) or exact_value(..., max_outcomes=...)"
        " if the memory allows.")
  outcomes = jnp.asarray(_outcomes(num_dims, num_cats))      # [N, K]
  onehots = jax.nn.one_hot(outcomes, num_cats, dtype=logits.dtype)  # [N, K, C]
  log_probs = jax.nn.log_softmax(logits, axis=-1)            # [K, C]
  per_dim = jnp.take_along_axis(log_probs.T, outcomes, axis=0)  # [N, K]
  probs = jnp.exp(jnp.sum(per_dim, axis=-1))                 # [N]
  values = evaluation.evaluate_many(f, onehots, logits.dtype, eval_batch_size)
  return onehots, probs, values


def exact_value(logits, f: contract.Objective, *,
                max_outcomes: int = DEFAULT_MAX_OUTCOMES) -> Array:
  """``E_{z ~ Cat(softmax(logits))}[f(onehot(z))]`` by enumeration.

  Args:
    logits: ``[K, C]`` floating point.
    f: objective on one-hot ``[K, C]`` arrays.
    max_outcomes: refuse (``ValueError``) when ``C**K`` exceeds this.
  """
  max_outcomes = validation.check_int(max_outcomes, "max_outcomes",
                                      "exact_value")
  logits = validation.check_logits(logits, "exact_value")
  validation.check_objective(f, logits)
  _, probs, values = _enumerate(logits, f, max_outcomes, None)
  return jnp.sum(probs * values)


def exact(key, logits: Array, f: contract.Objective, *,
          max_outcomes: int = DEFAULT_MAX_OUTCOMES,
          eval_batch_size: Optional[int] = None) -> contract.EstimatorOutput:
  """The true gradient (``key`` is ignored). ``samples`` are all outcomes."""
  del key
  onehots, probs, values = _enumerate(logits, f, max_outcomes, eval_batch_size)
  value = jnp.sum(probs * values)
  grad = jnp.einsum("n,nkc->kc", probs * (values - value), onehots)
  return contract.EstimatorOutput(grad, onehots, probs, value,
                                  jnp.asarray(values.shape[0], jnp.int32))


def check_exact_settings(name: str, settings) -> None:
  """``check_settings`` hook of ``exact``."""
  validation.check_int(settings["max_outcomes"], "max_outcomes", name)
  validation.check_int(settings["eval_batch_size"], "eval_batch_size", name,
                       allow_none=True)


registry.register(
    "exact", exact, unbiased=True, check_settings=check_exact_settings,
    needs_key=False, cost="C**K (every outcome)",
    reference="Enumeration of all outcomes (no approximation).",
    description="True gradient by enumerating all C**K outcomes "
    "(refuses above max_outcomes).")
