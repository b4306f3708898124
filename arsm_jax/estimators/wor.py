r"""REINFORCE without replacement: k distinct samples by stochastic beam search.

Sampling. The outcomes :math:`s \in D` (all :math:`C^K` vectors) get
independent perturbed log-probabilities :math:`G_s \sim \mathrm{Gumbel}(\log
p(s))`; the k largest form a sample of k distinct outcomes without
replacement (Gumbel-top-k), in the order they would be drawn one by one.
Stochastic beam search (Kool, van Hoof and Welling, ICML 2019) finds the top
k without enumerating :math:`D`: it extends k partial vectors one dimension
at a time, giving each child prefix a Gumbel conditioned on the maximum over
its children being its parent's value, and keeps the k largest. Memory and
time are :math:`O(K \cdot k \cdot C)`. When fewer than k outcomes have
positive probability (:math:`C^K < k`, or masked categories), the sample is
the whole support.

Estimator. With :math:`S` the top k, :math:`\kappa` the (k+1)-th largest
perturbed log-probability (:math:`-\infty` if there is none) and
:math:`q(s, \kappa) = P(G_s > \kappa) = 1 - \exp(-\exp(\log p(s) - \kappa))`,
the priority-sampling weights :math:`w_s = p(s) / q(s, \kappa)` make
:math:`\sum_{s \in S} w_s h(s)` unbiased for :math:`E_p[h]` (Duffield, Lund and
Thorup 2007; Kool et al. 2019, 2020). The gradient is

.. math::

  g = \sum_{s \in S} w_s \big(f(s) - b_s\big) \nabla_\phi \log p(s)
    = \sum_{s \in S} w_s \nabla_\phi \log p(s)
      \sum_{s' \in S \setminus \{s\}} w_{s'} \big(f(s) - f(s')\big),

.. math::

  b_s = f(s) + \sum_{s' \in S \setminus \{s\}} w_{s'} \big(f(s') - f(s)\big),

with :math:`\nabla_\phi \log p(s) = \mathrm{onehot}(s) - \mathrm{softmax}(\phi)`.

The baseline is built in (no extra evaluations) and, like the leave-one-out
baseline with replacement, g only sees differences of f, so adding a
constant to f leaves it unchanged. Unbiasedness: given the other outcomes'
perturbations :math:`G_{-s}`, s is in S with probability
:math:`q(s, \kappa_{-s})` (where :math:`\kappa_{-s}`, the k-th largest of
:math:`G_{-s}`, equals :math:`\kappa` when s is in S), and :math:`b_s` is a
function of :math:`G_{-s}` alone (f(s) is a fixed number for a fixed s) whose
mean is :math:`f(s) + \sum_{t \ne s} p(t) (f(t) - f(s)) = E_p[f]` for every
s (the sum over :math:`S \setminus \{s\}` is a size-(k-1) priority sample of
:math:`D \setminus \{s\}`). So
:math:`E[g] = \sum_s \nabla p(s) (f(s) - E_p[f]) = \nabla E_p[f]`.

Choice where the papers leave one open: Kool et al. (2019 workshop, 2020)
normalise the importance weights of this estimator by their sum, which makes
it biased (consistent); here the weights stay unnormalised and the baseline
is the leave-one-out form above (our derivation), so the estimate is
unbiased. The beam search keeps k+1 beams (for :math:`\kappa`) and evaluates
f on the top k. When the sample is the whole support (:math:`\kappa =
-\infty`, w = p) g is the exact gradient.

Cost: :math:`\min(k, C^K)` evaluations of f per draw (``num_evals``). When
the support has fewer than k outcomes the spare slots repeat the first
sample with weight 0 (f is still evaluated there).

References:
  Kool, van Hoof and Welling. Stochastic beams and where to find them: the
  Gumbel-top-k trick for sampling sequences without replacement. ICML 2019.
  Kool, van Hoof and Welling. Estimating gradients for discrete random
  variables by sampling without replacement. ICLR 2020.
  Duffield, Lund and Thorup. Priority sampling for estimation of arbitrary
  subset sums. JACM 2007.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import loo
from arsm_jax.estimators import registry

Array = jax.Array
sg = jax.lax.stop_gradient


def log1mexp(x: Array) -> Array:
  r"""``log(1 - exp(x))`` for ``x <= 0``, accurate near 0 and for very negative x."""
  x = jnp.minimum(x, 0.0)
  return jnp.where(x > -0.6931, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


def gumbel_with_max(key, locations: Array, maximum: Array) -> Array:
  r"""Gumbels :math:`G_c \sim \mathrm{Gumbel}(\mathrm{locations}_c)` conditioned on :math:`\max_c G_c = \mathrm{maximum}`.

  Draws unconditional Gumbels g with maximum Z and maps them to
  :math:`-\log(e^{-T} - e^{-Z} + e^{-g})` (Kool et al. 2019, appendix B),
  computed stably. Rows with ``maximum = -inf`` and entries with
  ``locations = -inf`` give ``-inf``.

  Args:
    key: PRNG key.
    locations: ``[..., C]`` log-probabilities (``-inf`` allowed).
    maximum: ``[...]`` the maximum T to condition on.
  """
  dtype = locations.dtype
  valid = jnp.isfinite(locations) & jnp.isfinite(maximum)[..., None]
  loc = jnp.where(valid, locations, 0.0)
  g = loc + jax.random.gumbel(key, loc.shape, dtype)           # [..., C]
  g = jnp.where(valid, g, -jnp.inf)
  z = jnp.max(g, axis=-1, keepdims=True)
  t = jnp.where(jnp.isfinite(maximum), maximum, 0.0)[..., None]
  safe_g = jnp.where(valid, g, 0.0)
  safe_z = jnp.where(jnp.isfinite(z), z, 0.0)
  v = t - safe_g + log1mexp(safe_g - safe_z)                 # -inf at the max
  shifted = t - jax.nn.relu(v) - jnp.log1p(jnp.exp(-jnp.abs(v)))
  return jnp.where(valid, shifted, -jnp.inf)


class BeamSample(NamedTuple):
  r"""Top outcomes of the Gumbel-perturbed factorised categorical.

  Attributes:
    z: ``[B, K]`` int32 categories, sorted by decreasing ``perturbed``.
    log_p: ``[B]`` log-probabilities :math:`\log p(s)` (``-inf`` for slots
      beyond the support).
    perturbed: ``[B]`` perturbed log-probabilities :math:`G_s` (``-inf`` for
      slots beyond the support).
  """

  z: Array
  log_p: Array
  perturbed: Array


def stochastic_beam_search(key, log_probs: Array, num_beams: int) -> BeamSample:
  r"""The ``num_beams`` largest perturbed outcomes, by stochastic beam search.

  Exactly a Gumbel-top-k sample (without replacement) of the product
  distribution :math:`p(z) = \prod_k \mathrm{softmax}(\phi_k)_{z_k}`, without
  enumerating its :math:`C^K` outcomes.

  Args:
    key: PRNG key.
    log_probs: ``[K, C]`` log-probabilities (``-inf`` for masked categories).
    num_beams: B >= 1, static.

  Returns:
    A :class:`BeamSample` with B slots.
  """
  num_dims, num_cats = log_probs.shape
  dtype = log_probs.dtype
  key_root, key_dims = jax.random.split(key)
  root = jax.random.gumbel(key_root, (), dtype)    # G of the empty prefix
  neg_inf = jnp.asarray(-jnp.inf, dtype)
  log_p = jnp.full((num_beams,), neg_inf).at[0].set(0.0)      # [B]
  perturbed = jnp.full((num_beams,), neg_inf).at[0].set(root)  # [B]
  z = jnp.zeros((num_beams, num_dims), jnp.int32)            # [B, K]

  def step(carry, inputs):
    z, log_p, perturbed = carry
    dim, row, k = inputs
    cand_log_p = log_p[:, None] + row[None, :]                 # [B, C]
    cand = gumbel_with_max(k, cand_log_p, perturbed)          # [B, C]
    top, idx = jax.lax.top_k(cand.reshape(-1), num_beams)     # [B]
    parent, cat = idx // num_cats, idx % num_cats
    z = z[parent].at[:, dim].set(cat.astype(jnp.int32))
    return (z, cand_log_p.reshape(-1)[idx], top), None

  keys = jax.random.split(key_dims, num_dims)
  (z, log_p, perturbed), _ = jax.lax.scan(
      step, (z, log_p, perturbed),
      (jnp.arange(num_dims), log_probs, keys))
  return BeamSample(z, log_p, perturbed)


def check_num_samples(num_samples, who: str) -> int:
  return loo.check_count(num_samples, "num_samples", who, 2)


def support_size_bound(num_dims: int, num_cats: int, cap: int) -> int:
  """``min(C**K, cap)`` without forming a huge integer."""
  size = 1
  for _ in range(num_dims):
    size *= num_cats
    if size >= cap:
      return cap
  return size


def draw(key, logits: Array, num_samples: int, extra: int = 0):
  """Beam sample of ``min(k + extra, C^K)`` slots and its pieces.

  Returns ``(beams, log_probs, valid, onehots, n)`` where the first
  ``n = min(k, C^K)`` slots are the sample, ``valid`` marks slots inside the
  support and ``onehots`` ``[n, K, C]`` repeat slot 0 where not valid.
  """
  num_dims, num_cats = logits.shape
  log_probs = jax.nn.log_softmax(sg(logits), axis=-1)         # [K, C]
  width = support_size_bound(num_dims, num_cats, num_samples + extra)
  beams = stochastic_beam_search(key, log_probs, width)
  n = min(num_samples, width)
  valid = jnp.isfinite(beams.log_p[:n])                       # [n]
  z = jnp.where(valid[:, None], beams.z[:n], beams.z[0][None])  # [n, K]
  onehots = jax.nn.one_hot(z, num_cats, dtype=logits.dtype)   # [n, K, C]
  return beams, log_probs, valid, onehots, n


def log_inclusion(log_p: Array, threshold: Array) -> Array:
  r"""``log q = log P(G_s > kappa) = log(1 - exp(-exp(log_p - kappa)))``.

  Is 0 when ``kappa = -inf``. Uses ``log q = d - a/2`` for ``a = exp(d) < 1e-4``
  (error below ``a**2/24``).
  """
  d = jnp.where(jnp.isfinite(threshold), log_p - threshold, jnp.inf)
  a = jnp.exp(jnp.minimum(d, 80.0))
  small = a < 1e-4
  return jnp.where(small, d - 0.5 * a,
                   jnp.log(-jnp.expm1(-jnp.where(small, 1.0, a))))


def reinforce_wor(key, logits: Array, f: contract.Objective, *,
                  num_samples: int = 4) -> contract.EstimatorOutput:
  r"""REINFORCE without replacement, built-in baseline (module docstring).

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays.
    num_samples: k >= 2 distinct samples (evaluations of f; fewer when
      :math:`C^K < k`).

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput` with the
    ``min(k, C^K)`` samples, their priority weights :math:`w_s` (zero for
    slots beyond the support), ``value`` :math:`\sum_s w_s f(s)` and
    ``num_evals = min(k, C^K)``.
  """
  k = check_num_samples(num_samples, "reinforce_wor")
  dtype = logits.dtype
  beams, _, valid, onehots, n = draw(key, logits, k, extra=1)
  if beams.log_p.shape[0] > n:
    threshold = beams.perturbed[n]                             # kappa
  else:
    threshold = jnp.asarray(-jnp.inf, dtype)
  log_p = jnp.where(valid, beams.log_p[:n], 0.0)               # [n]
  log_w = log_p - log_inclusion(log_p, threshold)
  w = jnp.where(valid, jnp.exp(log_w), 0.0)                    # [n]
  values = evaluation.evaluate_many(f, onehots, dtype)         # [n]
  values = jnp.where(valid, values, 0.0)
  total = jnp.sum(w * values)
  # f(s) - b_s = sum_{s' != s} w_{s'} (f(s) - f(s')), formed pairwise.
  diffs = values[:, None] - values[None, :]                    # [n, n]
  advantages = jnp.sum(w[None, :] * diffs, axis=1)             # [n]
  scores = onehots - jax.nn.softmax(logits, axis=-1)           # [n, K, C]
  grad = jnp.einsum("n,nkc->kc", w * advantages, scores)
  return contract.EstimatorOutput(grad, onehots, w, total,
                                  jnp.asarray(n, jnp.int32))


def check_wor_settings(name: str, settings) -> None:
  """The ``check_settings`` hook (also used by ``unordered_set``)."""
  check_num_samples(settings["num_samples"], name)


BEAMS_REFERENCE = ("Kool, van Hoof and Welling. Stochastic beams and where to "
                   "find them: the Gumbel-top-k trick for sampling sequences "
                   "without replacement. ICML 2019.")
WOR_REFERENCE = ("Kool, van Hoof and Welling. Estimating gradients for "
                 "discrete random variables by sampling without replacement. "
                 "ICLR 2020.")

registry.register(
    "reinforce_wor", reinforce_wor, unbiased=True,
    check_settings=check_wor_settings,
    cost="min(num_samples, C**K); when C**K < num_samples the spare slots "
    "repeat a sample with weight 0",
    reference=f"{WOR_REFERENCE} {BEAMS_REFERENCE}",
    description="REINFORCE over num_samples (default 4) distinct samples "
    "drawn without replacement by stochastic beam search, priority weights "
    "and a built-in leave-one-out baseline; min(k, C**K) evaluations.")
