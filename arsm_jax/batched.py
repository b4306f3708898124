r"""Batch-level deduplication: evaluate f once per distinct point of a minibatch.

ARSM needs f at the ``P = C(C-1)/2 + 1`` pseudo vectors of each draw (``C``
one-hot vectors when K = 1). For a confident encoder many of them coincide:
with logits of scale 10 only about 16 of the 46 vectors (K = 20, C = 10) of
an image are distinct. Skipping the copies per item under ``vmap`` saves
nothing (every item pays for a buffer of the largest size), so this module
pools the work of the whole batch:

1. ``points``: the P pseudo vectors of every item, ``[B, P, K]``, drawn with
   exactly the keys and Dirichlet draws the plain path uses;
2. dedup within each item: point p is *new* if no earlier point of the same
   item equals it;
3. pack the new (item, point) pairs of the whole batch into one buffer of
   static size N (``buffer_size``) and call f once over it, each slot with
   its item's own ``args``;
4. scatter the values back to ``[B, P]`` and ``combine``: run the registered
   ARSM estimator itself, with f replaced by a lookup into those values, so
   the estimate is produced by the very code of the plain path.

If the batch has more distinct points than N, a batch-level ``lax.cond``
evaluates f on all ``B * P`` points instead (the plain path's work), so the
result never depends on the buffer size. Estimates and gradients equal those
of ``arsm_jax.expectation(key, logits, f, *args, estimator='arsm')`` bit for
bit whenever f's value for a point does not depend on how many other points
are evaluated with it. That holds for elementwise and per-row reductions,
and for XLA CPU's dense layers at the sizes of the VAE (checked in
``benchmarks/vae_step.py``: ``identical``); GPU matrix libraries may pick a
different algorithm per batch shape and differ in the last bits.

Choosing ``buffer_size``. It is static (a new size compiles a new step), so
it is chosen by the caller from recent batches: :class:`BufferSizer` keeps
the largest total of distinct points seen over a window of recent batches,
adds headroom and rounds up to a multiple, so the size changes rarely; a
batch that still overflows costs one plain step and is never wrong. When the
size reaches ``B * P`` there is nothing to save and :func:`expectation` runs
the plain path (no bookkeeping at all).

The pathwise part (the gradient reaching f's parameters) is unchanged: f is
differentiated at each item's sample z, as in ``arsm_jax.expectation``.

References:
  Yin, Yue and Zhou. ARSM: Augment-REINFORCE-Swap-Merge Estimator for
  Gradient Backpropagation Through Categorical Variables. ICML 2019.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Callable, NamedTuple, Optional

from absl import logging
import jax
import jax.numpy as jnp

from arsm_jax import estimators as estimators_lib
from arsm_jax.estimators import swap
from arsm_jax.expectation import expectation as plain_expectation
from arsm_jax.expectation import score_term

Array = jax.Array
sg = jax.lax.stop_gradient


class DedupStats(NamedTuple):
  """What one deduplicated batch did.

  Attributes:
    num_distinct: ``[B]`` int32, distinct points per item.
    total: int32 scalar, distinct (item, point) pairs of the batch: the
      number :class:`BufferSizer` should observe.
    overflow: bool scalar, whether ``total`` exceeded the buffer and every
      point was evaluated.
  """

  num_distinct: Array
  total: Array
  overflow: Array


def num_points(num_dims: int, num_cats: int) -> int:
  """Points at which ARSM evaluates f per draw: ``C(C-1)/2 + 1``, or C at K = 1."""
  return num_cats if num_dims == 1 else num_cats * (num_cats - 1) // 2 + 1


def _check_estimator(estimator) -> estimators_lib.Estimator:
  est = estimators_lib.get(estimator)
  if est.name != "arsm":
    raise ValueError(
        f"batched: deduplication is implemented for 'arsm' only; got "
        f"estimator {est.name!r}.")
  return est


def points(key, logits: Array) -> Array:
  r"""The points of one ARSM draw, as category indices ``[P, K]``.

  The ``C(C-1)/2`` pseudo vectors :math:`z^{c \rightleftharpoons j}`, c < j,
  then z (for K = 1, the C categories, which ARSM tabulates instead). The
  Dirichlet draw is the one ``estimators.get('arsm')(key, logits, f)`` makes.

  Args:
    key: PRNG key of the draw.
    logits: ``[K, C]``.

  Returns:
    int32 ``[P, K]``.
  """
  num_dims, num_cats = logits.shape
  if num_dims == 1:
    return jnp.arange(num_cats, dtype=jnp.int32)[:, None]
  aug = swap.augment(key, logits)
  pv = swap.pseudo_actions(aug.log_pi, logits)              # [K, C, C]
  rows, cols, _ = swap.upper_pairs(num_cats)
  return jnp.concatenate([pv[:, rows, cols], aug.z[:, None]], axis=1).T


def _first_equal(pts: Array) -> Array:
  """``first[p]``: the smallest q with ``pts[q] == pts[p]``, for ``pts [P, K]``."""
  same = jnp.all(pts[:, None, :] == pts[None, :, :], axis=-1)   # [P, P]
  return jnp.argmax(same, axis=1).astype(jnp.int32)


def count_distinct(key, logits: Array) -> Array:
  """Distinct ARSM points per item for logits ``[B, K, C]`` -> int32 ``[B]``.

  Uses the per-item keys of :func:`expectation` (``split(key, B)``), so with
  the step's key it counts exactly what the step will evaluate.
  """
  logits = sg(jnp.asarray(logits))
  keys = jax.random.split(key, logits.shape[0])
  pts = jax.vmap(points)(keys, logits)                      # [B, P, K]
  first = jax.vmap(_first_equal)(pts)                       # [B, P]
  own = jnp.arange(pts.shape[1], dtype=jnp.int32)
  return jnp.sum(first == own, axis=1).astype(jnp.int32)


def _lookup(pts: Array, values: Array) -> Callable[[Array], Array]:
  """f for one item that returns the precomputed value at a one-hot point.

  A point outside ``pts`` gives NaN, so a mismatch with the estimator can
  never pass silently.
  """

  def f(onehot):
    z = jnp.argmax(onehot, axis=-1).astype(jnp.int32)      # [K]
    match = jnp.all(pts == z, axis=-1)                      # [P]
    value = values[jnp.argmax(match)]
    return jnp.where(jnp.any(match), value, jnp.nan).astype(values.dtype)

  return f


def expectation(key, logits: Array, f: Callable[..., Array], *args,
                estimator: str | estimators_lib.Estimator = "arsm",
                buffer_size: Optional[int] = None,
                return_stats: bool = False):
  r"""``arsm_jax.expectation`` for ARSM with f evaluated once per distinct point.

  Args:
    key: PRNG key, split into one key per item as ``arsm_jax.expectation``
      does.
    logits: ``[B, K, C]``.
    f: ``f(z, *args) -> scalar`` for one item, z one-hot ``[K, C]``.
    *args: per-item arguments of f; every leaf starts with B.
    estimator: ``'arsm'`` or an ARSM :class:`~arsm_jax.estimators.Estimator`
      (its settings are honoured).
    buffer_size: static number of f evaluations for the deduplicated points
      of the whole batch (see :class:`BufferSizer`). ``None``, or a value of
      at least ``B * P``, runs the plain path.
    return_stats: also return :class:`DedupStats`.

  Returns:
    ``[B]`` per-item surrogates, equal to ``arsm_jax.expectation``'s; with
    ``return_stats`` a pair ``(values, stats)``.

  Raises:
    ValueError: for a non-ARSM estimator, logits that are not ``[B, K, C]``,
      args without the batch dimension, or a ``buffer_size`` that is not a
      positive int.
  """
  est = _check_estimator(estimator)
  if buffer_size is not None and (isinstance(buffer_size, bool) or
                                  not isinstance(buffer_size, int) or
                                  buffer_size < 1):
    raise ValueError(f"batched: buffer_size must be a positive int or None; "
                     f"got {buffer_size!r}.")
  logits = jnp.asarray(logits)
  if logits.ndim != 3:
    raise ValueError(f"batched: logits must have shape [B, K, C]; got "
                     f"{logits.shape}.")
  batch, num_dims, num_cats = logits.shape
  for leaf in jax.tree_util.tree_leaves(args):
    if jnp.shape(leaf)[:1] != (batch,):
      raise ValueError(
          f"batched: every leaf of args must start with the batch size "
          f"{batch}; got a leaf of shape {jnp.shape(leaf)}.")
  num_pts = num_points(num_dims, num_cats)
  if buffer_size is None or buffer_size >= batch * num_pts:
    values = plain_expectation(key, logits, f, *args, estimator=est)
    if not return_stats:
      return values
    full = jnp.full((batch,), num_pts, jnp.int32)
    return values, DedupStats(full, jnp.asarray(batch * num_pts, jnp.int32),
                              jnp.asarray(False))

  keys = jax.random.split(key, batch)
  frozen = sg(logits)
  pts = jax.vmap(points)(keys, frozen)                      # [B, P, K]
  first = jax.vmap(_first_equal)(pts)                       # [B, P]
  own = jnp.arange(num_pts, dtype=jnp.int32)
  is_new = (first == own).reshape(-1)                       # [B * P]
  slot = jnp.cumsum(is_new.astype(jnp.int32)) - 1           # [B * P]
  total = slot[-1] + 1
  # The slot holding each point's value: that of its first copy in its item.
  base = (jnp.arange(batch, dtype=jnp.int32) * num_pts)[:, None]
  value_slot = slot[base + first]                           # [B, P]
  target = jnp.where(is_new, slot, buffer_size)             # drop the copies
  flat_item = jnp.repeat(jnp.arange(batch, dtype=jnp.int32), num_pts)
  flat_point = jnp.tile(own, batch)
  # Unused slots evaluate item 0's first point: a valid, discarded input.
  buf_item = jnp.zeros((buffer_size,), jnp.int32).at[target].set(
      flat_item, mode="drop")
  buf_point = jnp.zeros((buffer_size,), jnp.int32).at[target].set(
      flat_point, mode="drop")
  onehot = lambda idx: jax.nn.one_hot(idx, num_cats, dtype=logits.dtype)

  def evaluate_buffer(_):
    zs = onehot(pts[buf_item, buf_point])                   # [N, K, C]
    buf_args = jax.tree_util.tree_map(lambda a: a[buf_item], args)
    vals = jax.vmap(lambda z, a: sg(f(z, *a)))(zs, buf_args)   # [N]
    return vals[value_slot]                                 # [B, P]

  def evaluate_all(_):
    per_item = lambda p, a: jax.vmap(lambda z: sg(f(z, *a)))(onehot(p))
    return jax.vmap(per_item)(pts, args)                    # [B, P]

  overflow = total > buffer_size
  values = jax.lax.cond(overflow, evaluate_all, evaluate_buffer, None)

  def one(k, lg, p, v, a):
    # The plain path's per-item surrogate (arsm_jax.expectation), with the
    # estimator reading f's values from the table instead of calling f.
    out = est.estimate(k, sg(lg), _lookup(p, v))
    samples, weights = sg(out.samples), sg(out.weights)
    f_item = lambda z: f(z, *a)
    path = jnp.sum(weights * jax.vmap(f_item)(samples).astype(weights.dtype))
    score = score_term(sg(out.grad), lg)
    return path + score.astype(path.dtype)

  out = jax.vmap(one)(keys, logits, pts, values, args)
  if not return_stats:
    return out
  num_distinct = jnp.sum((first == own), axis=1).astype(jnp.int32)
  return out, DedupStats(num_distinct, total.astype(jnp.int32), overflow)


@dataclasses.dataclass
class BufferSizer:
  r"""A safe ``buffer_size`` from the totals of recent batches (host side).

  ``size`` is the largest total of distinct points among the last ``window``
  observed batches, times ``1 + headroom``, rounded up to ``multiple``
  (default ``num_points // 64``, at least 1) and
  capped at ``num_points`` (all points of a batch: no saving possible, the
  plain path). A size that would save less than ``min_saving`` of the
  evaluations is also raised to ``num_points``: the bookkeeping (dedup,
  packing, lookups) costs a few per cent of a step, so a small saving does
  not pay. Before any observation it is ``num_points``, the plain path.
  Rounding keeps the number of distinct sizes, hence of compilations, small;
  a batch above the size costs one plain step and is still exact.

  Attributes:
    num_points: ``B * P``, every point of a batch.
    headroom: relative margin over the recent maximum (default 0.1).
    multiple: sizes are multiples of this (``None``: ``num_points // 64``,
      at least 1).
    window: how many recent batches the maximum runs over (default 100).
    min_saving: the smallest fraction of evaluations worth saving (default
      0.1).
  """

  num_points: int
  headroom: float = 0.1
  multiple: Optional[int] = None
  window: int = 100
  min_saving: float = 0.1
  _recent: collections.deque = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    if self.multiple is None and isinstance(self.num_points, int):
      self.multiple = max(1, self.num_points // 64)
    for name in ("num_points", "multiple", "window"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"BufferSizer: {name} must be a positive int; got "
                         f"{value!r}.")
    if not (isinstance(self.headroom, (int, float)) and self.headroom >= 0):
      raise ValueError(f"BufferSizer: headroom must be a number >= 0; got "
                       f"{self.headroom!r}.")
    if not (isinstance(self.min_saving, (int, float))
            and 0 <= self.min_saving < 1):
      raise ValueError(f"BufferSizer: min_saving must be a number in [0, 1); "
                       f"got {self.min_saving!r}.")
    self._recent = collections.deque(maxlen=self.window)

  def observe(self, total: Any) -> int:
    """Records one batch's ``DedupStats.total`` (or a count) and returns ``size``."""
    self._recent.append(int(total))
    return self.size

  @property
  def largest(self) -> Optional[int]:
    """The largest observed total in the window (``None`` before any)."""
    return max(self._recent) if self._recent else None

  @property
  def size(self) -> int:
    if not self._recent:
      return self.num_points
    want = math.ceil(max(self._recent) * (1.0 + self.headroom))
    want = self.multiple * math.ceil(want / self.multiple)
    if want > (1.0 - self.min_saving) * self.num_points:
      return self.num_points
    return int(max(want, 1))


class ProbedBuffer:
  """The buffer of a training step, chosen from a few probe batches.

  At each epoch's start (and on resumption) :meth:`update` counts the
  distinct ARSM points of the epoch's first ``probe_batches`` batches at the
  current parameters (the encoder's logits and the pseudo actions only, with
  keys of their own) and gives the totals to a :class:`BufferSizer`.
  ``buffer`` is ``None`` (the plain step) while deduplicating would save too
  little, else the static buffer size of the step. The counts only choose
  the size: a batch with more distinct points than the buffer runs the plain
  evaluation, so the training numbers never depend on them. They depend
  only on the parameters and fixed keys, so several processes choose the
  same size.

  Args:
    encode: ``(params, raw_batch, key) -> logits [B, K, C]`` (the encoder on
      a batch of raw data, with the data's own randomness from ``key``).
    batch_size: B.
    num_dims: K.
    num_cats: C.
    probe_batches: batches counted per update.
    window: how many recent counts the size covers (default: five updates).
  """

  def __init__(self, encode: Callable[..., Array], batch_size: int,
               num_dims: int, num_cats: int, probe_batches: int = 4,
               window: Optional[int] = None):
    self.batch_size = int(batch_size)
    self.probe_batches = probe_batches
    self.num_points = self.batch_size * num_points(num_dims, num_cats)
    self.sizer = BufferSizer(self.num_points,
                             window=window or 5 * probe_batches)
    self.buffer: Optional[int] = None

    @jax.jit
    def count(params, raw, key):
      k_data, k_pts = jax.random.split(key)
      return jnp.sum(count_distinct(k_pts, encode(params, raw, k_data)))

    self._count = count

  def update(self, params: Any, data: Any, perm: Any, key: Array) -> bool:
    """Counts the probe batches of ``data[perm]``; whether ``buffer`` changed."""
    b = self.batch_size
    for i in range(min(self.probe_batches, len(perm) // b)):
      raw = data[perm[i * b:(i + 1) * b]]                   # [B, ...]
      self.sizer.observe(self._count(params, raw, jax.random.fold_in(key, i)))
    size = self.sizer.size
    new = None if size >= self.num_points else size
    if new == self.buffer:
      return False
    logging.info("batched: dedup buffer %s -> %s of %d points per batch "
                 "(largest recent count %d)", self.buffer or "plain",
                 new or "plain", self.num_points, self.sizer.largest)
    self.buffer = new
    return True
