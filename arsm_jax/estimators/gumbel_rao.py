r"""Gumbel-Rao: straight-through Gumbel-Softmax, Rao-Blackwellised (Paulus et al. 2021).

The straight-through Gumbel-Softmax estimate is
:math:`J_\tau(G)^\top \nabla f(D)`, with :math:`D = \mathrm{onehot}(\arg\max(\phi
+ G))` and :math:`J_\tau(G) = \partial\, \mathrm{softmax}((\phi + G)/\tau) /
\partial \phi`, the noise G held fixed. Gumbel-Rao replaces the Jacobian by
its conditional expectation given the hard sample,

.. math::

  g = \frac1M \sum_{m=1}^M J_\tau(G^{(m)})^\top \nabla f(D), \qquad
  G^{(m)} \sim \mathrm{Gumbel} \mid \arg\max(\phi + G^{(m)}) = D,

a Monte Carlo Rao-Blackwellisation: the same expectation as
``st_gumbel_softmax`` at the same temperature, and no more variance. Per
dimension :math:`J_\tau^\top v = (y \odot (v - \langle y, v\rangle))/\tau`
with :math:`y = \mathrm{softmax}((\phi + G)/\tau)`.

Conditional sampler (our own; Paulus et al., appendix; also Tucker et al.
2017): with :math:`\log\pi = \mathrm{log\_softmax}(\phi)` and independent
:math:`E_c \sim \mathrm{Exp}(1)`, the perturbed log-probabilities
:math:`x_c = \log\pi_c + G_c` given :math:`\arg\max = D` are
:math:`x_D = -\log E_D` and
:math:`x_c = -\log(E_c / \pi_c + E_D)` for :math:`c \ne D`, computed as
:math:`-\mathrm{logaddexp}(\log E_c - \log\pi_c, \log E_D)`. Masked
categories get :math:`x_c = -\infty`, so y and the gradient are 0 there.
The hard sample D is drawn from its own key; it has the law of
``st_gumbel_softmax``'s hard sample (the argmax of perturbed logits).

Choices: M defaults to 10 (the paper studies M from 1 to 1000 and leaves it
open; the cost of M is arithmetic only) and :math:`\tau` to 1.0, as for
``st_gumbel_softmax``.

Like the other relaxed estimators it differentiates f in z, is biased and
needs f differentiable in z (checked at trace time).

Cost: 1 evaluation of f and one gradient of f per draw, plus O(M K C)
arithmetic.

References:
  Paulus, Maddison and Krause. Rao-Blackwellizing the straight-through
  Gumbel-Softmax gradient estimator. ICLR 2021.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import loo
from arsm_jax.estimators import registry
from arsm_jax.estimators import relaxed
from arsm_jax.estimators import validation

Array = jax.Array


def conditional_gumbel(log_e: Array, log_probs: Array, hard: Array) -> Array:
  r"""Perturbed log-probabilities conditioned on their argmax, from noise.

  The sampler of the module docstring: :math:`x_D = -\log E_D` and
  :math:`x_c = -\mathrm{logaddexp}(\log E_c - \log\pi_c, \log E_D)` for
  :math:`c \ne D`, reparameterised in ``log_probs``. The caller draws the
  independent standard exponentials :math:`E_c` (Gumbel-Rao and the RL
  learner ``relax`` draw them each their own way) and passes their logs.

  Args:
    log_e: ``[..., C]`` logs of independent standard exponentials, which
      broadcast against ``log_probs`` (Gumbel-Rao's ``[M, K, C]``).
    log_probs: ``[..., C]`` normalised log-probabilities; a ``-inf`` entry
      masks its category (``x_c = -inf`` there).
    hard: ``[...]`` int conditioning argmax, each with positive probability.

  Returns:
    The perturbed log-probabilities, shaped like ``log_e``, with argmax
    ``hard``.
  """
  num_cats = log_probs.shape[-1]
  onehot = jax.nn.one_hot(hard, num_cats, dtype=bool)          # [..., C]
  log_e_top = jnp.sum(jnp.where(onehot, log_e, 0.0), axis=-1, keepdims=True)
  masked = jnp.isneginf(log_probs)
  safe_lp = jnp.where(masked, 0.0, log_probs)
  others = -jnp.logaddexp(log_e - safe_lp, log_e_top)
  others = jnp.where(masked, -jnp.inf, others)
  return jnp.where(onehot, -log_e_top, others)


def gumbel_rao(key, logits: Array, f: contract.Objective, *,
               num_samples: int = 10,
               temperature: float = 1.0) -> contract.EstimatorOutput:
  r"""Gumbel-Rao from one hard sample and M conditional relaxations.

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective, differentiable in its ``[K, C]`` input.
    num_samples: M >= 1 conditional relaxed samples averaged (no extra
      evaluations of f).
    temperature: :math:`\tau > 0` of the relaxation.

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput` with the hard
    sample (weight 1), ``value = f(D)`` and ``num_evals = 1``.
  """
  m = loo.check_count(num_samples, "num_samples", "gumbel_rao", 1)
  tau = relaxed.check_temperature(temperature, "gumbel_rao")
  relaxed.check_differentiable(f, logits, "gumbel_rao")
  dtype = logits.dtype
  num_cats = logits.shape[1]
  # The M relaxations are [M, K, C] arrays (several at once: e, log e, the
  # perturbed logits, y): refused at trace time when they cannot fit.
  validation.check_memory("gumbel_rao", "num_samples", m,
                          4 * logits.size * jnp.dtype(dtype).itemsize,
                          "the relaxations of one draw")
  key_hard, key_cond = jax.random.split(key)
  hard_idx = jax.random.categorical(key_hard, logits, axis=-1)  # [K]
  hard = jax.nn.one_hot(hard_idx, num_cats, dtype=dtype)        # [K, C]
  value, grad_f = jax.value_and_grad(
      lambda z: evaluation.call_objective(f, z, dtype))(hard)   # [K, C]
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  # f's gradient at a masked category (say a log q(z) term's -inf) must not
  # reach the estimate: those coordinates get y = 0 and no gradient.
  grad_f = jnp.where(jnp.isneginf(logits), 0.0, grad_f)
  e = jax.random.exponential(key_cond, (m,) + logits.shape, dtype)
  log_e = jnp.log(jnp.maximum(e, jnp.finfo(dtype).tiny))        # [M, K, C]
  x = conditional_gumbel(log_e, log_probs, hard_idx)            # [M, K, C]
  y = jax.nn.softmax(x / tau, axis=-1)                          # [M, K, C]
  inner = jnp.sum(y * grad_f[None], axis=-1, keepdims=True)     # [M, K, 1]
  grad = jnp.mean(y * (grad_f[None] - inner), axis=0) / tau     # [K, C]
  return contract.EstimatorOutput(grad, hard[None], jnp.ones((1,), dtype),
                                  value, jnp.asarray(1, jnp.int32))


def check_gumbel_rao_settings(name: str, settings) -> None:
  """The ``check_settings`` hook: ``num_samples`` and ``temperature``."""
  loo.check_count(settings["num_samples"], "num_samples", name, 1)
  relaxed.check_temperature(settings["temperature"], name)


registry.register(
    "gumbel_rao", gumbel_rao, unbiased=False, pathwise=True,
    check_settings=check_gumbel_rao_settings,
    cost="1 (and one gradient of f in z); plus O(num_samples K C) arithmetic",
    reference="Paulus, Maddison and Krause. Rao-Blackwellizing the "
    "straight-through Gumbel-Softmax gradient estimator. ICLR 2021.",
    description="Gumbel-Rao (Paulus et al. 2021): straight-through "
    "Gumbel-Softmax averaged over num_samples (default 10) relaxations "
    "conditioned on the hard sample (temperature, default 1.0); biased, "
    "1 evaluation.")
