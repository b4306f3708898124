"""Evaluating an objective on one or many one-hot arrays, for estimator code.

Every estimator evaluates ``f`` through these helpers, so the result has the
logits' dtype and a large set of evaluations can be chunked (``batch_size``)
to bound peak memory.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from arsm_jax.estimators.contract import Objective

Array = jax.Array


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
