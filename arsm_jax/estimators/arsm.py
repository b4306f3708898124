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

Partial integration (ARSM+ and ARS+ of Dong, Mnih and Tucker 2021, their
code's ``arsmp``/``arsp``; option ``partial_integration``, off by default):

* ARSM+: the term of dimension k and reference j is dropped when every
  pseudo action of that dimension in column j equals :math:`z_k`
  (:math:`z_k^{c\rightleftharpoons j} = z_k` for all c), i.e. the weight
  :math:`1/C - \pi_{kj}` becomes
  :math:`(1/C - \pi_{kj})\,1[\exists c: z_k^{c\rightleftharpoons j} \ne z_k]`.
* ARS+: besides the same indicator, :math:`\pi_{kj}` in :math:`1 - C\pi_{kj}`
  is replaced by its conditional expectation given everything the estimate
  depends on. A second index :math:`l \ne j` is drawn uniformly; given
  :math:`r = \pi_{kj} + \pi_{kl}` and the other entries, :math:`\pi_{kj}` is
  uniform on [0, r], and the set of its values that leave all C pseudo
  actions of dimension k unchanged is an interval (each pseudo action's set
  is one, see :func:`_ars_interval`), so the expectation is its midpoint.
  We compute that interval exactly from the two moving scores; the authors'
  code bounds only the score of the position that receives :math:`\pi_j`
  and can return a wider interval.

Both are Rao-Blackwellisations: unbiased, with variance never above the
plain estimator's (checked against exact enumeration and on the
diagnostics problems in ``tests/test_successors.py``).

Memory. With K > 1, ARSM evaluates f on ``C(C-1)/2 + 1`` pseudo vectors.
By default (``eval_batch_size=None``) their one-hot arrays are built all at
once when they fit in :data:`SCRATCH_BYTES` (every C up to a few hundred at
small K, the VAE's C = 10 included) and otherwise in chunks sized to fit
(:func:`auto_eval_batch_size`); the estimate is the same either way.

References:
  Yin, Yue and Zhou. ARSM: Augment-REINFORCE-Swap-Merge Estimator for
  Gradient Backpropagation Through Categorical Variables. ICML 2019.
  Dong, Mnih and Tucker. Coupled gradient estimators for discrete latent
  variables. NeurIPS 2021 (ARSM+ and ARS+).
"""

from __future__ import annotations

import numbers
from typing import Optional

import jax
import jax.numpy as jnp

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry
from arsm_jax.estimators import swap
from arsm_jax.estimators import validation

Array = jax.Array

# Scratch budget for the one-hot pseudo vectors ARSM builds at once when
# eval_batch_size is left at None: 256 MiB.
SCRATCH_BYTES = 256 * 2**20


def auto_eval_batch_size(num_vectors: int, num_dims: int, num_cats: int,
                         itemsize: int = 4,
                         budget: Optional[int] = None) -> Optional[int]:
  """The chunk size ARSM uses when ``eval_batch_size`` is ``None``.

  Returns:
    ``None`` (evaluate all ``num_vectors`` one-hot ``[K, C]`` arrays in one
    ``vmap``) when they fit in ``budget`` bytes, else the largest chunk that
    does (at least 1). At C = 1000, K = 2 in float32 that is 33,554 of the
    499,501 vectors: 256 MiB of one-hot scratch instead of 4 GB. ``budget``
    defaults to :data:`SCRATCH_BYTES`.
  """
  budget = SCRATCH_BYTES if budget is None else budget
  per_vector = num_dims * num_cats * itemsize
  if num_vectors * per_vector <= budget:
    return None
  return max(1, budget // per_vector)


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


def swap_merge(f_matrix: Array, pi: Array,
               keep: Optional[Array] = None) -> Array:
  r"""ARSM's gradient from the values of the pseudo actions.

  .. math::

    g_{kc} = \sum_j \Big[F_{cj} - \tfrac1C \sum_m F_{mj}\Big]
             \big(\tfrac1C - \pi_{kj}\big)

  Shared by the estimator :func:`arsm` (one ``F`` for all K dimensions) and
  the RL learner :mod:`arsm_jax.rl.arsm` (``F`` of one step's action values,
  K = 1).

  Args:
    f_matrix: ``[C, C]`` :math:`F_{cj} = f(z^{c\rightleftharpoons j})`.
    pi: ``[K, C]`` the Dirichlet draws.
    keep: optional ``[K, C]`` bool over j; the terms where it is False are
      dropped (ARSM+'s indicator, see the module docstring).

  Returns:
    ``[K, C]`` over c.
  """
  num_cats = pi.shape[-1]
  centred = f_matrix - jnp.mean(f_matrix, axis=0, keepdims=True)
  weights = 1.0 / num_cats - pi                             # [K, C] over j
  if keep is not None:
    weights = jnp.where(keep, weights, 0.0)
  return weights @ centred.T                                # [K, C] over c


def arsm(key, logits: Array, f: contract.Objective, *,
         eval_batch_size: Optional[int] = None,
         max_distinct: Optional[int] = None,
         skip_if_all_equal: bool = False,
         partial_integration: bool = False) -> contract.EstimatorOutput:
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
      vectors. ``None`` (the default) picks the size with
      :func:`auto_eval_batch_size`: all at once when their one-hot arrays
      fit in :data:`SCRATCH_BYTES`, else chunks that do. The estimate is
      the same either way.
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
    partial_integration: ARSM+ (Dong, Mnih and Tucker 2021): drop the term
      of dimension k and reference j when all of that dimension's pseudo
      actions in column j equal z_k. Same evaluations, variance never
      higher; off by default so published numbers stay as they were.

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput`; ``num_evals`` is
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
        table = evaluation.evaluate_many(
            f, jnp.eye(num_cats, dtype=dtype)[:, None], dtype)  # [C]
      else:
        cats = jnp.arange(num_cats, dtype=jnp.int32)[:, None]  # [C, 1]
        table = evaluation.evaluate_indices(f, cats, num_cats, dtype,
                                            eval_batch_size)  # [C]
      return table[pv[0]], table[aug.z[0]], jnp.asarray(num_cats, jnp.int32)

  else:
    num_full = rows.size + 1
    batch_size = eval_batch_size
    if batch_size is None:
      batch_size = auto_eval_batch_size(num_full, num_dims, num_cats,
                                        jnp.dtype(dtype).itemsize)
    # Pseudo vectors of the upper pairs, then z: [M + 1, K].
    pairs = jnp.concatenate([pv[:, rows, cols], aug.z[:, None]], axis=1).T
    # Every swap gives z, read from the pairs already built (F uses only
    # them). Checked on the [K, C, C] pseudo actions instead, XLA recomputed
    # them in a fusion of its own (1.2 % of the VAE step); the two agree
    # unless two scores tie exactly (pv is then not exactly symmetric).
    all_same = jnp.all(pairs == aug.z[None, :])

    def evaluate_all(_):
      values = evaluation.evaluate_indices(f, pairs, num_cats, dtype,
                                           batch_size)      # [M + 1]
      return values, jnp.asarray(num_full, jnp.int32)

    def evaluate_distinct(_):
      unique, inverse, count = _distinct_rows(pairs, int(max_distinct))

      def dedup(_):
        values = evaluation.evaluate_indices(f, unique, num_cats, dtype,
                                             batch_size)    # [capacity]
        return values[inverse], count.astype(jnp.int32)

      return jax.lax.cond(count > int(max_distinct), evaluate_all, dedup, None)

    def evaluate(_):
      values, n = (evaluate_all if max_distinct is None else
                   evaluate_distinct)(None)
      return values[pair_index], values[-1], n              # [C, C], f(z)

  def skip(_):
    f_z = evaluation.call_objective(f, onehot_z, dtype)
    return (jnp.broadcast_to(f_z, (num_cats, num_cats)), f_z,
            jnp.asarray(1, jnp.int32))

  # F[c, j] = f(z^{c<->j}). When every swap gives z, F is f(z) everywhere
  # and the estimate exactly zero.
  if skip_if_all_equal:
    f_matrix, f_z, num_evals = jax.lax.cond(all_same, skip, evaluate, None)
  else:
    f_matrix, f_z, num_evals = evaluate(None)
    f_matrix = jnp.where(all_same, f_z, f_matrix)
  moves = None
  if partial_integration:
    # Column j of dimension k moves somewhere: z_k^{c<->j} != z_k for a c.
    moves = jnp.any(pv != aug.z[:, None, None], axis=1)     # [K, C] over j
  grad = swap_merge(f_matrix, aug.pi, moves)                # [K, C] over c
  grad = _zero_masked(grad, logits)
  samples, w = _single(onehot_z, dtype)
  return contract.EstimatorOutput(grad, samples, w, f_z, num_evals)


def _ars_interval(log_pi: Array, logits: Array, pv: Array, ref: Array,
                  other: Array) -> tuple[Array, Array]:
  r"""The interval of :math:`\pi_{kj}` values that keep column j's pseudo actions.

  Hold every entry of :math:`\pi_k` fixed except :math:`\pi_{kj} = t` and
  :math:`\pi_{kl} = r - t` (j = ``ref``, l = ``other``, r their sum). In the
  swap (m, j) one position P holds t (score :math:`\log t - \phi_P`, rising
  in t) and one position Q holds r - t (score :math:`\log(r - t) - \phi_Q`,
  falling): (P, Q) = (j, l) for m = j, (l, j) for m = l, and (m, l) otherwise.
  The other positions keep their scores; c is their smallest. With
  :math:`t^* = r\,\sigma(\phi_P - \phi_Q)` where the two moving scores
  cross, the pseudo action a stays the same exactly for t in

  * a = P: :math:`[0, \min(e^{c + \phi_P}, t^*))`,
  * a = Q: :math:`(\max(r - e^{c + \phi_Q}, t^*), r]`,
  * otherwise: :math:`(e^{c + \phi_P}, r - e^{c + \phi_Q})`,

  and all C pseudo actions stay the same on the intersection.

  Args:
    log_pi: ``[K, C]``.
    logits: ``[K, C]``.
    pv: ``[K, C]`` pseudo actions :math:`z_k^{m \rightleftharpoons j}` over m.
    ref: scalar j.
    other: scalar l != j.

  Returns:
    ``(lo, hi)``, each ``[K]``, with ``0 <= lo <= pi_kj <= hi <= r``.
  """
  num_cats = logits.shape[1]
  m = jnp.arange(num_cats, dtype=jnp.int32)
  p_pos = jnp.where(m == ref, ref, jnp.where(m == other, other, m))   # [C]
  q_pos = jnp.where(m == other, ref, other)                           # [C]
  # Scores of swap (m, j): position i holds pi at perm[m, i].
  idx = jnp.broadcast_to(m, (num_cats, num_cats))                     # [m, i]
  perm = jnp.where(idx == m[:, None], ref, jnp.where(idx == ref, m[:, None],
                                                     idx))
  scores = log_pi[:, perm] - logits[:, None, :]                       # [K, m, i]
  fixed = (idx != p_pos[:, None]) & (idx != q_pos[:, None])           # [m, i]
  c = jnp.min(jnp.where(fixed, scores, jnp.inf), axis=-1)             # [K, m]
  r = jnp.exp(log_pi[:, ref]) + jnp.exp(log_pi[:, other])             # [K]
  r_m = r[:, None]
  phi_p = logits[:, p_pos]                                            # [K, m]
  phi_q = logits[:, q_pos]

  def edge(phi):  # e^{c + phi}: the t at which a moving score meets c.
    return jnp.where(jnp.isneginf(phi), 0.0, jnp.exp(c + phi))

  crossing = r_m * jnp.where(
      jnp.isneginf(phi_q), 1.0,
      jnp.where(jnp.isneginf(phi_p), 0.0,
                jax.nn.sigmoid(jnp.where(jnp.isneginf(phi_p), 0.0, phi_p)
                               - jnp.where(jnp.isneginf(phi_q), 0.0, phi_q))))
  is_p = pv == p_pos[None, :]
  is_q = pv == q_pos[None, :]
  lo = jnp.where(is_p, 0.0, jnp.where(
      is_q, jnp.maximum(r_m - edge(phi_q), crossing), edge(phi_p)))
  hi = jnp.where(is_p, jnp.minimum(edge(phi_p), crossing), jnp.where(
      is_q, r_m, r_m - edge(phi_q)))
  lo = jnp.clip(jnp.max(lo, axis=1), 0.0, r)
  hi = jnp.clip(jnp.min(hi, axis=1), 0.0, r)
  return lo, jnp.maximum(hi, lo)


def ars(key, logits: Array, f: contract.Objective, *,
        eval_batch_size: Optional[int] = None,
        partial_integration: bool = False) -> contract.EstimatorOutput:
  r"""Augment-REINFORCE-swap with one reference category j drawn uniformly.

  Evaluates f on the C pseudo vectors of column j (one of which is z).

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays.
    eval_batch_size: evaluate the C pseudo vectors in chunks of this size.
    partial_integration: ARS+ (Dong, Mnih and Tucker 2021): a second index
      l != j is drawn, :math:`\pi_{kj}` is replaced by the midpoint of the
      interval that leaves dimension k's pseudo actions unchanged
      (:func:`_ars_interval`), and the term is dropped when all of them
      equal z_k. Same evaluations, variance never higher; off by default.
  """
  dtype = logits.dtype
  num_cats = logits.shape[1]
  key_pi, key_ref = jax.random.split(key)
  aug = swap.augment(key_pi, logits)
  ref = jax.random.randint(key_ref, (), 0, num_cats)
  cats = jnp.arange(num_cats, dtype=jnp.int32)
  pv = swap.swap_argmin(aug.log_pi, logits, cats, ref)      # [K, C]
  values = evaluation.evaluate_indices(f, pv.T, num_cats, dtype,
                                       eval_batch_size)     # [C]
  pi_ref = aug.pi[:, ref]                                   # [K]
  if partial_integration:
    shift = jax.random.randint(jax.random.fold_in(key_ref, 1), (), 1,
                               num_cats)
    other = (ref + shift) % num_cats                        # l != j
    lo, hi = _ars_interval(aug.log_pi, logits, pv, ref, other)
    pi_ref = 0.5 * (lo + hi)
  weight = 1.0 - num_cats * pi_ref                          # [K]
  if partial_integration:
    weight = jnp.where(jnp.any(pv != aug.z[:, None], axis=1), weight, 0.0)
  grad = weight[:, None] * (values - jnp.mean(values))[None, :]
  grad = _zero_masked(grad, logits)
  f_z = values[ref]
  samples, w = _single(_onehot(aug.z, num_cats, dtype), dtype)
  return contract.EstimatorOutput(grad, samples, w, f_z,
                                  jnp.asarray(num_cats, jnp.int32))


def ar(key, logits: Array, f: contract.Objective) -> contract.EstimatorOutput:
  r"""Augment-REINFORCE: ``f(z) (1 - C pi)``, one evaluation of f."""
  dtype = logits.dtype
  num_cats = logits.shape[1]
  aug = swap.augment(key, logits)
  onehot_z = _onehot(aug.z, num_cats, dtype)
  f_z = evaluation.call_objective(f, onehot_z, dtype)
  grad = _zero_masked(f_z * (1.0 - num_cats * aug.pi), logits)
  samples, w = _single(onehot_z, dtype)
  return contract.EstimatorOutput(grad, samples, w, f_z,
                                  jnp.asarray(1, jnp.int32))


def check_arsm_settings(name: str, settings) -> None:
  """``check_settings`` hook of ``arsm`` (and of ``arsm_multi``)."""
  validation.check_int(settings["eval_batch_size"], "eval_batch_size", name,
                       allow_none=True)
  if settings["max_distinct"] is not None and not (
      isinstance(settings["max_distinct"], numbers.Integral)
      and not isinstance(settings["max_distinct"], bool)
      and settings["max_distinct"] >= 1):
    raise ValueError(f"{name}: max_distinct must be >= 1 (an int) or None; "
                     f"got {settings['max_distinct']!r}.")
  validation.check_bool(settings["skip_if_all_equal"], "skip_if_all_equal",
                        name)
  validation.check_bool(settings["partial_integration"], "partial_integration",
                        name)


def check_ars_settings(name: str, settings) -> None:
  """``check_settings`` hook of ``ars`` (and of ``ars_multi``)."""
  validation.check_int(settings["eval_batch_size"], "eval_batch_size", name,
                       allow_none=True)
  validation.check_bool(settings["partial_integration"], "partial_integration",
                        name)


REFERENCE = ("Yin, Yue and Zhou. ARSM: Augment-REINFORCE-Swap-Merge Estimator "
             "for Gradient Backpropagation Through Categorical Variables. "
             "ICML 2019.")

registry.register(
    "arsm", arsm, unbiased=True, check_settings=check_arsm_settings,
    cost="C(C-1)/2+1 (K>1), C (K=1); the distinct pseudo vectors with "
    "max_distinct; 1 for a draw skipped by skip_if_all_equal",
    reference=REFERENCE,
    description="Augment-REINFORCE-swap-merge: all swap pairs, "
    "C(C-1)/2+1 evaluations per draw (C when K = 1; 1 with "
    "skip_if_all_equal when every pseudo action equals z); "
    "partial_integration=True is ARSM+ (Dong et al. 2021).")
registry.register(
    "ars", ars, unbiased=True, check_settings=check_ars_settings, cost="C",
    reference=REFERENCE,
    description="Augment-REINFORCE-swap: one uniformly drawn reference "
    "category, C evaluations per draw; partial_integration=True is ARS+ "
    "(Dong et al. 2021).")
registry.register(
    "ar", ar, unbiased=True, cost="1", reference=REFERENCE,
    description="Augment-REINFORCE: f(z)(1 - C pi), one evaluation.")
