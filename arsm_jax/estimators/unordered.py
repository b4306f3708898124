r"""The unordered set estimator with its leave-one-out baseline (Kool et al. 2020).

The sample S is k distinct outcomes drawn without replacement (Gumbel-top-k
by stochastic beam search, see :mod:`arsm_jax.estimators.wor`); only the set
matters, not the order. With :math:`p(S)` the probability of drawing the set
S (in any order), :math:`p^{D \setminus A}` probabilities when the outcomes
A are removed from the domain (renormalised), and the leave-one-out ratios

.. math::

  R(S, s) = \frac{p^{D \setminus \{s\}}(S \setminus \{s\})}{p(S)}, \qquad
  R_2(S, s, s') = \frac{p^{D \setminus \{s, s'\}}(S \setminus \{s, s'\})}
                       {p^{D \setminus \{s\}}(S \setminus \{s\})},

the estimate is

.. math::

  g = \sum_{s \in S} p(s) R(S, s) \big(f(s) - b_s\big) \nabla_\phi \log p(s),
  \qquad
  b_s = p(s) f(s) + \sum_{s' \in S \setminus \{s\}} p(s') R_2(S, s, s') f(s').

:math:`p(s) R(S, s)` is the probability that s was drawn first given the set,
so g is the Rao-Blackwellisation, over the order, of the single-sample
REINFORCE term of the first draw with baseline :math:`b_s`, which is p(s)
f(s) plus (1 - p(s)) times the unordered set estimate on
:math:`D \setminus \{s\}` from the other k-1 draws: its conditional mean given
the first draw is :math:`E_p[f]`, so g is unbiased. The value
:math:`\sum_s p(s) R(S, s) f(s)` is the unbiased unordered set estimate of
:math:`E_p[f]` and gives the weights of the pathwise term.

Inclusion probabilities. With :math:`r = 1 - \sum_{s \in S} p(s)` the mass
outside S, and :math:`a_t = p(t) / r`, every probability above is
:math:`I(A) = \int_0^1 \prod_{t \in A} (1 - u^{a_t})\, du` for a subset A of
S (the set A is the top of the Gumbels exactly when the largest Gumbel
outside it, whose CDF is u, lies below all of A's). Quadrature (our choice;
the paper uses a generic numerical integral): substitute
:math:`u = \exp(-e^x)`, giving
:math:`I(A) = \int_{\mathbb{R}} e^{x - e^x} \prod_{t \in A}(1 - e^{-a_t e^x})\, dx`,
a smooth log-concave integrand with a Gumbel-like right tail and an
exponential left tail, and apply the trapezoidal rule in log space on
``QUADRATURE_POINTS = 256`` equally spaced points of
:math:`[\min(0, -\log \max_t a_t) - 20,\ \log(k + 1) + 3]` (one grid for all
subsets; :math:`\log a_t` is capped at 30). When S holds the whole support
(r = 0: :math:`C^K \le k`, or masked categories; detected by an extra beam
that finds no further outcome) every ratio is 1 and g is the exact gradient.
r is computed as :math:`1 - \sum_S p(s)` in the logits' precision, so in
float32 the ratios lose accuracy when r is below about 1e-6; the affected
terms carry probability of that order. Truncation is below
:math:`e^{-20}` relative; the trapezoidal rule converges exponentially for
such integrands; ``tests/test_wor_unordered_indecater_gumbel_rao.py``
checks the ratios against exact enumeration of the :math:`k!` orders.

Cost: :math:`\min(k, C^K)` evaluations of f per draw, plus
:math:`O(k^3 \cdot 256)` arithmetic for the ratios.

References:
  Kool, van Hoof and Welling. Estimating gradients for discrete random
  variables by sampling without replacement. ICLR 2020.
  Kool, van Hoof and Welling. Stochastic beams and where to find them. ICML
  2019.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry
from arsm_jax.estimators import wor

Array = jax.Array

QUADRATURE_POINTS = 256
_MAX_LOG_A = 30.0
_LEFT_MARGIN = 20.0
_RIGHT_MARGIN = 3.0


def log_rest_mass(log_p: Array, valid: Array) -> Array:
  """``log(1 - sum_{s in S} p(s))`` over the valid slots (float rounding limits
  its accuracy when the rest mass is below ~1e-6 of the total)."""
  total = jnp.minimum(logsumexp(jnp.where(valid, log_p, -jnp.inf)), 0.0)
  return wor.log1mexp(total)


def log_set_probabilities(log_p: Array, valid: Array, log_r: Array,
                          num_points: int = QUADRATURE_POINTS):
  r"""Log of :math:`I(A)` for A = S, S minus one, and S minus two elements.

  Args:
    log_p: ``[n]`` log-probabilities of the outcomes of S.
    valid: ``[n]`` bool; invalid slots are not part of S.
    log_r: log of the probability mass outside S (``-inf`` when S is the
      whole support: every ratio is then 1).
    num_points: trapezoidal-rule points.

  Returns:
    ``(log_i, log_i1, log_i2)``: scalar :math:`\log p(S)`, ``[n]``
    :math:`\log p^{D \setminus s}(S \setminus s)` and ``[n, n]``
    :math:`\log p^{D \setminus \{s, s'\}}(S \setminus \{s, s'\})` (its diagonal
    equals ``log_i1``).
  """
  n = log_p.shape[0]
  dtype = log_p.dtype
  log_a = jnp.minimum(jnp.where(valid, log_p, 0.0) - log_r, _MAX_LOG_A)  # [n]
  max_log_a = jnp.max(jnp.where(valid, log_a, -jnp.inf))
  lo = jnp.minimum(0.0, -max_log_a) - _LEFT_MARGIN
  hi = jnp.log(jnp.asarray(n + 1.0, dtype)) + _RIGHT_MARGIN
  x = jnp.linspace(0.0, 1.0, num_points, dtype=dtype) * (hi - lo) + lo  # [N]
  log_h = jnp.log((hi - lo) / (num_points - 1))
  base_term = x - jnp.exp(x)                                 # [N]
  # log(1 - exp(-a_t e^x)) for each element and point.
  ell = wor.log_inclusion(log_a[:, None] + x[None, :], 0.0)  # [n, N]
  ell = jnp.where(valid[:, None], ell, 0.0)
  eye = jnp.eye(n, dtype=dtype)
  keep1 = 1.0 - eye                                          # [n, n]: i != a
  keep2 = keep1[:, None, :] * keep1[None, :, :]              # [n, n, n]
  log_i = logsumexp(base_term + jnp.sum(ell, axis=0)) + log_h
  log_i1 = logsumexp(base_term + keep1 @ ell, axis=-1) + log_h  # [n]
  log_i2 = logsumexp(base_term + jnp.einsum("abi,in->abn", keep2, ell),
                     axis=-1) + log_h                         # [n, n]
  # S is the whole support: p(S) = 1 and every ratio is exactly 1.
  exhaustive = jnp.isneginf(log_r)
  return (jnp.where(exhaustive, 0.0, log_i),
          jnp.where(exhaustive, 0.0, log_i1),
          jnp.where(exhaustive, 0.0, log_i2))


def unordered_set(key, logits: Array, f: contract.Objective, *,
                  num_samples: int = 4) -> contract.EstimatorOutput:
  r"""Unordered set estimator with the built-in baseline (module docstring).

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays.
    num_samples: k >= 2 distinct samples (evaluations of f; fewer when
      :math:`C^K < k`).

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput` with the
    ``min(k, C^K)`` samples, weights :math:`p(s) R(S, s)` (zero beyond the
    support), ``value`` the unordered set estimate and
    ``num_evals = min(k, C^K)``.
  """
  k = wor.check_num_samples(num_samples, "unordered_set")
  dtype = logits.dtype
  beams, _, valid, onehots, n = wor.draw(key, logits, k, extra=1)
  log_p = jnp.where(valid, beams.log_p[:n], -jnp.inf)          # [n]
  if beams.log_p.shape[0] == n:
    # C**K <= k: S is the whole space and every ratio is 1 (no quadrature).
    log_i, log_i1, log_i2 = (jnp.zeros((), dtype), jnp.zeros((n,), dtype),
                             jnp.zeros((n, n), dtype))
  else:
    # The extra beam finds no outcome iff S holds the whole support (r = 0).
    exhaustive = jnp.isneginf(beams.log_p[n])
    log_r = jnp.where(exhaustive, -jnp.inf, log_rest_mass(log_p, valid))
    log_i, log_i1, log_i2 = log_set_probabilities(log_p, valid, log_r)
  log_p0 = jnp.where(valid, log_p, 0.0)
  weights = jnp.where(valid, jnp.exp(log_p0 + log_i1 - log_i), 0.0)  # [n]
  # Row s: p(s') R2(S, s, s') for s' != s and p(s) on the diagonal.
  eye = jnp.eye(n, dtype=bool)
  log_b = log_p0[None, :] + jnp.where(eye, 0.0, log_i2 - log_i1[:, None])
  b_weights = jnp.where(valid[None, :] & valid[:, None], jnp.exp(log_b), 0.0)
  values = evaluation.evaluate_many(f, onehots, dtype)         # [n]
  values = jnp.where(valid, values, 0.0)
  baselines = b_weights @ values                               # [n]
  scores = onehots - jax.nn.softmax(logits, axis=-1)           # [n, K, C]
  grad = jnp.einsum("n,nkc->kc", weights * (values - baselines), scores)
  return contract.EstimatorOutput(grad, onehots, weights,
                                  jnp.sum(weights * values),
                                  jnp.asarray(n, jnp.int32))


registry.register(
    "unordered_set", unordered_set, unbiased=True,
    check_settings=wor.check_wor_settings,
    cost="min(num_samples, C**K); plus O(num_samples^3 · 256) arithmetic for "
    "the leave-one-out ratios",
    reference=f"{wor.WOR_REFERENCE} {wor.BEAMS_REFERENCE}",
    description="Unordered set estimator (Kool et al. 2020) over num_samples "
    "(default 4) samples without replacement, built-in leave-one-out "
    "baseline; min(k, C**K) evaluations.")
