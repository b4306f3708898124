r"""The augmentation and the swap: Dirichlet draws and pseudo actions.

Augment. With :math:`\pi \sim \mathrm{Dir}(1_C)`,
:math:`z = \arg\min_i (\log\pi_i - \phi_i)` has exactly the law
:math:`\mathrm{Cat}(\mathrm{softmax}(\phi))`.

Swap. :math:`\pi^{c \rightleftharpoons j}` exchanges entries c and j of
:math:`\pi`; the pseudo action is
:math:`z^{c \rightleftharpoons j} = \arg\min_i (\log\pi^{c \rightleftharpoons j}_i - \phi_i)`.
For a K-dimensional vector the same swap is applied to every dimension.

Fast pseudo actions. Write :math:`a_i = \log\pi_i - \phi_i`. After swapping c
and j only two scores change: position c now scores
:math:`\log\pi_j - \phi_c` and position j scores :math:`\log\pi_c - \phi_j`.
Every other position keeps its score, and the smallest of those is the first
of the three smallest :math:`a_i` that is neither c nor j. So each pair needs
a comparison of three numbers once the three smallest scores are known:
O(K C^2) for all pairs instead of the O(K C^3) of swapping and taking an
argmin over C for every pair (:func:`pseudo_actions_naive`, kept for tests
and benchmarks).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Augmentation(NamedTuple):
  """One Dirichlet draw per dimension and the action it selects.

  Attributes:
    pi: ``[K, C]`` Dirichlet(1) draws, rows summing to one.
    log_pi: ``[K, C]`` their logarithms.
    z: ``[K]`` int32 actions, ``argmin_i(log_pi - logits)``.
  """

  pi: Array
  log_pi: Array
  z: Array


def augment(key, logits: Array) -> Augmentation:
  """Draws ``pi ~ Dir(1_C)`` per row of ``logits`` and the action it selects."""
  dtype = logits.dtype
  # Dir(1) = normalised standard exponentials. Clipping away exact zeros
  # (probability ~1e-7 per entry in float32) keeps log pi finite, so masked
  # logits (-inf) never meet a -inf log pi and produce NaN.
  e = jax.random.exponential(key, logits.shape, dtype)
  e = jnp.maximum(e, jnp.finfo(dtype).tiny)
  log_pi = jnp.log(e) - jnp.log(jnp.sum(e, axis=-1, keepdims=True))
  pi = jnp.exp(log_pi)
  z = jnp.argmin(log_pi - logits, axis=-1).astype(jnp.int32)
  return Augmentation(pi, log_pi, z)


def swap_argmin(log_pi: Array, logits: Array, c_idx, j_idx) -> Array:
  r"""Pseudo actions :math:`z^{c \rightleftharpoons j}` for given index pairs.

  Args:
    log_pi: ``[K, C]``.
    logits: ``[K, C]``.
    c_idx: int array of first swap indices.
    j_idx: int array of second swap indices, broadcastable with ``c_idx``.

  Returns:
    int32 array ``[K, *broadcast(c_idx, j_idx).shape]``: for each dimension k
    and each pair, the argmin after swapping entries c and j of ``pi``.
  """
  num_dims, num_cats = logits.shape
  c_idx = jnp.asarray(c_idx, jnp.int32)
  j_idx = jnp.asarray(j_idx, jnp.int32)
  pair_shape = jnp.broadcast_shapes(c_idx.shape, j_idx.shape)
  c_idx = jnp.broadcast_to(c_idx, pair_shape)
  j_idx = jnp.broadcast_to(j_idx, pair_shape)
  scores = log_pi - logits                                  # [K, C]

  # The three smallest scores per dimension (fewer when C < 3, padded with
  # an index C that matches no pair and a score of +inf).
  n = min(3, num_cats)
  neg_top, top = jax.lax.top_k(-scores, n)                  # [K, n]
  if n < 3:
    pad = 3 - n
    top = jnp.concatenate(
        [top, jnp.full((num_dims, pad), num_cats, top.dtype)], axis=1)
    neg_top = jnp.concatenate(
        [neg_top, jnp.full((num_dims, pad), -jnp.inf, neg_top.dtype)], axis=1)
  top_scores = -neg_top                                     # [K, 3]

  # Best untouched position r: the first of the three not in {c, j}.
  expand = (slice(None),) + (None,) * len(pair_shape)
  t = [top[:, i][expand] for i in range(3)]                 # [K, 1, ...]
  s = [top_scores[:, i][expand] for i in range(3)]
  ok = [(ti != c_idx) & (ti != j_idx) for ti in t]          # [K, *pairs]
  r = jnp.where(ok[0], t[0], jnp.where(ok[1], t[1], t[2]))
  r_score = jnp.where(ok[0], s[0], jnp.where(ok[1], s[1], s[2]))

  # Scores of the two swapped positions.
  lp_c = jnp.take(log_pi, c_idx, axis=1)                    # [K, *pairs]
  lp_j = jnp.take(log_pi, j_idx, axis=1)
  phi_c = jnp.take(logits, c_idx, axis=1)
  phi_j = jnp.take(logits, j_idx, axis=1)
  score_at_c = lp_j - phi_c
  score_at_j = lp_c - phi_j

  c_b = jnp.broadcast_to(c_idx, r.shape)
  j_b = jnp.broadcast_to(j_idx, r.shape)
  best = jnp.where(score_at_c < r_score, c_b, r)
  best_score = jnp.minimum(score_at_c, r_score)
  best = jnp.where(score_at_j < best_score, j_b, best)
  return best.astype(jnp.int32)


def pseudo_actions(log_pi: Array, logits: Array) -> Array:
  r"""All pseudo actions, ``[K, C, C]`` with entry ``[k, c, j]`` = :math:`z_k^{c \rightleftharpoons j}`.

  O(K C^2). The matrix is symmetric in (c, j) and its diagonal is z.
  """
  num_cats = logits.shape[1]
  idx = jnp.arange(num_cats, dtype=jnp.int32)
  return swap_argmin(log_pi, logits, idx[:, None], idx[None, :])


def pseudo_actions_naive(log_pi: Array, logits: Array) -> Array:
  """Reference O(K C^3) pseudo actions: swap, then argmin over all C entries."""
  num_cats = logits.shape[1]
  perm = _swap_permutations(num_cats)                       # [C, C, C]
  swapped = log_pi[:, perm]                                 # [K, C, C, C]
  return jnp.argmin(swapped - logits[:, None, None, :], axis=-1).astype(
      jnp.int32)


@functools.lru_cache(maxsize=None)
def _swap_permutations(num_cats: int) -> np.ndarray:
  """``perm[c, j]`` is the index permutation that exchanges c and j."""
  perm = np.broadcast_to(np.arange(num_cats), (num_cats, num_cats, num_cats))
  perm = perm.copy()
  c, j = np.meshgrid(np.arange(num_cats), np.arange(num_cats), indexing="ij")
  perm[c, j, c] = j
  perm[c, j, j] = c
  return perm


@functools.lru_cache(maxsize=None)
def upper_pairs(num_cats: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Index helpers for the C(C-1)/2 off-diagonal swap pairs.

  Returns:
    ``(rows, cols, index)``: ``rows[m] < cols[m]`` enumerate the pairs, and
    ``index[c, j]`` is the position of pair (c, j) or (j, c) in that list, with
    the diagonal mapped to position ``M = C(C-1)/2`` (where the caller puts
    ``f(z)``).
  """
  rows, cols = np.triu_indices(num_cats, k=1)
  num_pairs = rows.size
  index = np.full((num_cats, num_cats), num_pairs, dtype=np.int32)
  index[rows, cols] = np.arange(num_pairs)
  index[cols, rows] = np.arange(num_pairs)
  return rows.astype(np.int32), cols.astype(np.int32), index
