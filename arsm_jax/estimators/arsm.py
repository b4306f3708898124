r"""The augment-REINFORCE family: AR, ARS and ARSM (Yin, Yue and Zhou, 2019).

For one C-way dimension with logits :math:`\phi` and :math:`\pi\sim\mathrm{Dir}(1_C)`:

.. math::

  g^{AR}_c   &= f(z)\,(1 - C\pi_c) \\
  g^{ARS}_c  &= \Big[f(z^{c\rightleftharpoons j}) - \tfrac1C\sum_m f(z^{m\rightleftharpoons j})\Big](1 - C\pi_j)
               \quad (j \text{ uniform}) \\
  g^{ARSM}_c &= \sum_j \Big[f(z^{c\rightleftharpoons j}) - \tfrac1C\sum_m f(z^{m\rightleftharpoons j})\Big]\big(\tfrac1C - \pi_j\big)

For K dimensions the same swap acts on every dimension at once, so one
``[C, C]`` matrix ``F[c, j] = f(z^{c<->j})`` serves all K rows; only the
weights :math:`1/C - \pi_{kj}` depend on k. ``F`` is symmetric with ``f(z)`` on
its diagonal, so ARSM evaluates f on at most ``C(C-1)/2 + 1`` vectors.

References:
  Yin, Yue and Zhou. ARSM: Augment-REINFORCE-Swap-Merge Estimator for
  Gradient Backpropagation Through Categorical Variables. ICML 2019.
"""

from __future__ import annotations

import numbers
from typing import Optional

import jax
import jax.numpy as jnp

from arsm_jax.estimators import base
from arsm_jax.estimators import swap

Array = jax.Array


def _onehot(z: Array, num_cats: int, dtype) -> Array:
  return jax.nn.one_hot(z, num_cats, dtype=dtype)


def _single(onehot: Array, dtype) -> tuple[Array, Array]:
  """samples/weights for an estimator built around one sample."""
  return onehot[None], jnp.ones((1,), dtype)


def _zero_masked(grad: Array, logits: Array) -> Array:
  """Masked categories (logit -inf) have true gradient zero: make it exact."""
  return jnp.where(jnp.isneginf(logits), jnp.zeros_like(grad), grad)


def _distinct_rows(rows: Array, capacity: int):
  """Distinct rows of an int array ``[N, K]`` with a static capacity.

  Returns:
    ``(unique, inverse, count)``: ``unique`` ``[capacity, K]`` holds the
    distinct rows in sorted order (unused slots repeat ``rows[-1]``),
    ``rows == unique[inverse]`` whenever ``count <= capacity``.
  """
  order = jnp.lexsort(rows.T[::-1])                         # sort rows
  ordered = rows[order]
  is_new = jnp.concatenate(
      [jnp.ones((1,), bool), jnp.any(ordered[1:] != ordered[:-1], axis=1)])
  group = jnp.cumsum(is_new) - 1                            # [N]
  inverse = jnp.zeros_like(group).at[order].set(group)
  unique = jnp.broadcast_to(rows[-1], (capacity,) + rows.shape[1:])
  unique = unique.at[group].set(ordered, mode="drop")
  return unique, inverse, group[-1] + 1


def arsm(key, logits: Array, f: base.Objective, *,
         eval_batch_size: Optional[int] = None,
         max_distinct: Optional[int] = None,
         skip_if_all_equal: bool = False) -> base.EstimatorOutput:
  r"""Augment-REINFORCE-swap-merge: one Dirichlet draw, all C(C-1)/2 swaps.

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays, returning a scalar.
    eval_batch_size: evaluate f on the pseudo vectors in chunks of this size
      (``lax.map``) instead of all at once (``vmap``), to bound memory at
      large C: each chunk builds its own ``[eval_batch_size, K, C]`` one-hot
      vectors, so the scratch memory left is the ``O(K C^2)`` of the pseudo
      actions themselves instead of the ``O(K C^3)`` of all their one-hot
      vectors. The estimate is the same either way.
    max_distinct: evaluation saving for expensive f (K > 1): evaluate f only
      on the distinct pseudo vectors, in a buffer of this static size. When a
      draw has more distinct vectors than that, it falls back to evaluating
      all pairs, so the estimate is always the same as without the option.
      Under ``vmap`` f runs on all ``max_distinct`` slots (unused ones hold a
      copy of z); ``num_evals`` reports the distinct count.
    skip_if_all_equal: when every pseudo vector equals z, evaluate f on z
      alone (a ``lax.cond``). Worth it for an expensive f evaluated draw by
      draw; leave it off when draws are vectorised (a minibatch under
      ``vmap``), where the ``cond`` becomes a ``select`` that runs both
      branches and copies everything f closes over once per item. Either
      way the estimate is then exactly zero.

  Returns:
    An :class:`~arsm_jax.estimators.base.EstimatorOutput`; ``num_evals`` is
    ``C(C-1)/2 + 1`` (``C`` when K = 1, where f is tabulated on the C
    categories instead; the number of distinct pseudo vectors with
    ``max_distinct``), or 1 for a skipped draw with ``skip_if_all_equal``.
  """
  dtype = logits.dtype
  num_dims, num_cats = logits.shape
  aug = swap.augment(key, logits)
  rows, cols, pair_index = swap.upper_pairs(num_cats)
  pv = swap.pseudo_actions(aug.log_pi, logits)              # [K, C, C]
  onehot_z = _onehot(aug.z, num_cats, dtype)                # [K, C]

  if num_dims == 1:
    all_same = jnp.all(pv == aug.z[:, None, None])
    # One dimension: every pseudo vector is one of the C one-hot vectors, so
    # C evaluations (never more than C(C-1)/2 + 1) give the whole matrix.
    def evaluate(_):
      if eval_batch_size is None:
        table = base.evaluate_many(
            f, jnp.eye(num_cats, dtype=dtype)[:, None], dtype)  # [C]
      else:
        cats = jnp.arange(num_cats, dtype=jnp.int32)[:, None]  # [C, 1]
        table = base.evaluate_indices(f, cats, num_cats, dtype,
                                      eval_batch_size)      # [C]
      return table[pv[0]], table[aug.z[0]], jnp.asarray(num_cats, jnp.int32)

  else:
    num_full = rows.size + 1
    # Pseudo vectors of the upper pairs, then z: [M + 1, K].
    pairs = jnp.concatenate([pv[:, rows, cols], aug.z[:, None]], axis=1).T
    # Every swap gives z, read from the pairs already built (F uses only
    # them). Checked on the [K, C, C] pseudo actions instead, XLA recomputed
    # them in a fusion of its own (1.2 % of the VAE step); the two agree
    # unless two scores tie exactly (pv is then not exactly symmetric).
    all_same = jnp.all(pairs == aug.z[None, :])

    def evaluate_all(_):
      values = base.evaluate_indices(f, pairs, num_cats, dtype,
                                     eval_batch_size)       # [M + 1]
      return values, jnp.asarray(num_full, jnp.int32)

    def evaluate_distinct(_):
      unique, inverse, count = _distinct_rows(pairs, int(max_distinct))

      def dedup(_):
        values = base.evaluate_indices(f, unique, num_cats, dtype,
                                       eval_batch_size)     # [capacity]
        return values[inverse], count.astype(jnp.int32)

      return jax.lax.cond(count > int(max_distinct), evaluate_all, dedup, None)

    def evaluate(_):
      values, n = (evaluate_all if max_distinct is None else
                   evaluate_distinct)(None)
      return values[pair_index], values[-1], n              # [C, C], f(z)

  def skip(_):
    f_z = base.call_objective(f, onehot_z, dtype)
    return (jnp.broadcast_to(f_z, (num_cats, num_cats)), f_z,
            jnp.asarray(1, jnp.int32))

  # F[c, j] = f(z^{c<->j}). When every swap gives z, F is f(z) everywhere
  # and the estimate exactly zero.
  if skip_if_all_equal:
    f_matrix, f_z, num_evals = jax.lax.cond(all_same, skip, evaluate, None)
  else:
    f_matrix, f_z, num_evals = evaluate(None)
    f_matrix = jnp.where(all_same, f_z, f_matrix)
  centred = f_matrix - jnp.mean(f_matrix, axis=0, keepdims=True)
  weights = 1.0 / num_cats - aug.pi                         # [K, C] over j
  grad = weights @ centred.T                                # [K, C] over c
  grad = _zero_masked(grad, logits)
  samples, w = _single(onehot_z, dtype)
  return base.EstimatorOutput(grad, samples, w, f_z, num_evals)


def ars(key, logits: Array, f: base.Objective, *,
        eval_batch_size: Optional[int] = None) -> base.EstimatorOutput:
  r"""Augment-REINFORCE-swap with one reference category j drawn uniformly.

  Evaluates f on the C pseudo vectors of column j (one of which is z).
  """
  dtype = logits.dtype
  num_cats = logits.shape[1]
  key_pi, key_ref = jax.random.split(key)
  aug = swap.augment(key_pi, logits)
  ref = jax.random.randint(key_ref, (), 0, num_cats)
  cats = jnp.arange(num_cats, dtype=jnp.int32)
  pv = swap.swap_argmin(aug.log_pi, logits, cats, ref)      # [K, C]
  values = base.evaluate_indices(f, pv.T, num_cats, dtype,
                                 eval_batch_size)           # [C]
  weight = 1.0 - num_cats * aug.pi[:, ref]                  # [K]
  grad = weight[:, None] * (values - jnp.mean(values))[None, :]
  grad = _zero_masked(grad, logits)
  f_z = values[ref]
  samples, w = _single(_onehot(aug.z, num_cats, dtype), dtype)
  return base.EstimatorOutput(grad, samples, w, f_z,
                              jnp.asarray(num_cats, jnp.int32))


def ar(key, logits: Array, f: base.Objective) -> base.EstimatorOutput:
  r"""Augment-REINFORCE: ``f(z) (1 - C pi)``, one evaluation of f."""
  dtype = logits.dtype
  num_cats = logits.shape[1]
  aug = swap.augment(key, logits)
  onehot_z = _onehot(aug.z, num_cats, dtype)
  f_z = base.call_objective(f, onehot_z, dtype)
  grad = _zero_masked(f_z * (1.0 - num_cats * aug.pi), logits)
  samples, w = _single(onehot_z, dtype)
  return base.EstimatorOutput(grad, samples, w, f_z, jnp.asarray(1, jnp.int32))


def check_arsm_settings(name: str, settings) -> None:
  """``check_settings`` hook of ``arsm`` (and of ``arsm_multi``)."""
  base.check_int(settings["eval_batch_size"], "eval_batch_size", name,
                 allow_none=True)
  if settings["max_distinct"] is not None and not (
      isinstance(settings["max_distinct"], numbers.Integral)
      and not isinstance(settings["max_distinct"], bool)
      and settings["max_distinct"] >= 1):
    raise ValueError(f"{name}: max_distinct must be >= 1 (an int) or None; "
                     f"got {settings['max_distinct']!r}.")
  base.check_bool(settings["skip_if_all_equal"], "skip_if_all_equal", name)


def check_ars_settings(name: str, settings) -> None:
  """``check_settings`` hook of ``ars`` (and of ``ars_multi``)."""
  base.check_int(settings["eval_batch_size"], "eval_batch_size", name,
                 allow_none=True)


REFERENCE = ("Yin, Yue and Zhou. ARSM: Augment-REINFORCE-Swap-Merge Estimator "
             "for Gradient Backpropagation Through Categorical Variables. "
             "ICML 2019.")

base.register(
    "arsm", arsm, unbiased=True, check_settings=check_arsm_settings,
    cost="C(C-1)/2+1 (K>1), C (K=1); the distinct pseudo vectors with "
    "max_distinct; 1 for a draw skipped by skip_if_all_equal",
    reference=REFERENCE,
    description="Augment-REINFORCE-swap-merge: all swap pairs, "
    "C(C-1)/2+1 evaluations per draw (C when K = 1; 1 with "
    "skip_if_all_equal when every pseudo action equals z).")
base.register(
    "ars", ars, unbiased=True, check_settings=check_ars_settings, cost="C",
    reference=REFERENCE,
    description="Augment-REINFORCE-swap: one uniformly drawn reference "
    "category, C evaluations per draw.")
base.register(
    "ar", ar, unbiased=True, cost="1", reference=REFERENCE,
    description="Augment-REINFORCE: f(z)(1 - C pi), one evaluation.")
