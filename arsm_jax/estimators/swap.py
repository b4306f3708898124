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
argmin over C for every pair (``_pseudo_actions_naive``, the reference
kept for tests and benchmarks).
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


def _smallest_three(scores: Array) -> tuple[Array, Array]:
  """Indices and values of the three smallest scores per row, ``[K, 3]``.

  With C < 3 the missing entries get index C (matching no category) and score
  +inf.
  """
  num_dims, num_cats = scores.shape
  n = min(3, num_cats)
  neg_top, top = jax.lax.top_k(-scores, n)
  if n < 3:
    pad = 3 - n
    top = jnp.concatenate(
        [top, jnp.full((num_dims, pad), num_cats, top.dtype)], axis=1)
    neg_top = jnp.concatenate(
        [neg_top, jnp.full((num_dims, pad), -jnp.inf, neg_top.dtype)], axis=1)
  return top, -neg_top


def _resolve(top, top_scores, c_idx, j_idx, score_at_c, score_at_j):
  """Argmin after a swap, from the three smallest scores and the two new ones.

  ``top``/``top_scores`` are ``[K, 3]``; ``c_idx``/``j_idx`` broadcast to the
  pair shape; ``score_at_c``/``score_at_j`` are ``[K, *pairs]``.
  """
  expand = (slice(None),) + (None,) * (score_at_c.ndim - 1)
  t = [top[:, i][expand] for i in range(3)]                 # [K, 1, ...]
  s = [top_scores[:, i][expand] for i in range(3)]
  ok = [(ti != c_idx) & (ti != j_idx) for ti in t]          # [K, *pairs]
  # Best untouched position r: the first of the three smallest not in {c, j}.
  r = jnp.where(ok[0], t[0], jnp.where(ok[1], t[1], t[2]))
  r_score = jnp.where(ok[0], s[0], jnp.where(ok[1], s[1], s[2]))
  best = jnp.where(score_at_c < r_score, c_idx, r)
  best_score = jnp.minimum(score_at_c, r_score)
  best = jnp.where(score_at_j < best_score, j_idx, best)
  return best.astype(jnp.int32)


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
  c_idx, j_idx = jnp.broadcast_arrays(jnp.asarray(c_idx, jnp.int32),
                                      jnp.asarray(j_idx, jnp.int32))
  top, top_scores = _smallest_three(log_pi - logits)
  # After the swap, position c holds pi_j and position j holds pi_c.
  score_at_c = jnp.take(log_pi, j_idx, axis=1) - jnp.take(logits, c_idx, axis=1)
  score_at_j = jnp.take(log_pi, c_idx, axis=1) - jnp.take(logits, j_idx, axis=1)
  return _resolve(top, top_scores, c_idx, j_idx, score_at_c, score_at_j)


def pseudo_actions(log_pi: Array, logits: Array) -> Array:
  r"""All pseudo actions, ``[K, C, C]`` with entry ``[k, c, j]`` = :math:`z_k^{c \rightleftharpoons j}`.

  O(K C^2), by broadcasting rather than gathering. The matrix is symmetric in
  (c, j) and its diagonal is z.
  """
  num_cats = logits.shape[1]
  idx = jnp.arange(num_cats, dtype=jnp.int32)
  top, top_scores = _smallest_three(log_pi - logits)
  score_at_c = log_pi[:, None, :] - logits[:, :, None]      # [K, c, j]
  score_at_j = log_pi[:, :, None] - logits[:, None, :]
  return _resolve(top, top_scores, idx[:, None], idx[None, :], score_at_c,
                  score_at_j)


def _pseudo_actions_naive(log_pi: Array, logits: Array) -> Array:
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
