r"""Relaxed (pathwise) estimators: Gumbel-Softmax, straight-through, ReinMax.

All three differentiate ``f`` through its one-hot input, so they are biased
and **need f to be differentiable in z**: ``f`` must accept any real
``[K, C]`` array (not only one-hot ones) and depend on it through
differentiable operations. An ``f`` that indexes with ``argmax(z)``, casts z
to integers, compares it, rounds it or stops its gradient has a gradient that
is zero by construction; these estimators detect that when they are traced
and raise a ``ValueError`` instead of returning silent zeros (see
:func:`check_differentiable`).

With Gumbel noise :math:`g_{kc}` and temperature :math:`\tau`:

* ``gumbel_softmax``: :math:`y = \mathrm{softmax}((\phi + g)/\tau)`,
  gradient :math:`\nabla_\phi f(y)`. f is evaluated at the relaxed sample.
* ``st_gumbel_softmax``: forward pass at the hard sample
  :math:`D = \mathrm{onehot}(\arg\max(\phi + g))`, backward pass as if the
  input were y: gradient :math:`J_y^\top \nabla f(D)`.
* ``reinmax``: forward at :math:`D \sim \mathrm{Cat}(\mathrm{softmax}(\phi))`;
  with :math:`\pi_0 = \mathrm{softmax}(\phi)` and
  :math:`\pi_1 = (\mathrm{softmax}(\phi/\tau) + D)/2` the gradient is
  :math:`\big(2 J(\pi_1) - \tfrac12 J(\pi_0)\big)^\top \nabla f(D)`, where
  :math:`J(p) = \mathrm{diag}(p) - p p^\top` is the softmax Jacobian at p
  (a Heun step; unbiased for f linear in z, at :math:`\tau = 1`). The
  authors recommend :math:`\tau \ge 1`.

Masked categories (logit ``-inf``) get relaxed weight 0, are never drawn and
get zero gradient. The temperature may be a traced scalar (learned with the
model; see ``arsm_jax.objectives.vae``).

Cost: one evaluation of f and of its gradient in z per draw.

References:
  Jang, Gu and Poole. Categorical reparameterization with Gumbel-Softmax.
  ICLR 2017. Maddison, Mnih and Teh. The Concrete distribution. ICLR 2017.
  Liu, Zhao, Chen, Gao, Wu and Han. Bridging discrete and backpropagation:
  straight-through and beyond (ReinMax). NeurIPS 2023.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry

Array = jax.Array
sg = jax.lax.stop_gradient


def check_temperature(temperature, who: str):
  """Checks that a temperature is a positive finite number; returns it.

  A JAX array (a learned temperature, traced under ``jit``/``grad``) is
  accepted as it is if it is a floating-point scalar; its value cannot be
  checked at trace time, so keep it positive by construction (e.g.
  ``exp(log_temperature)``).
  """
  if isinstance(temperature, jax.Array):
    if temperature.shape != () or not jnp.issubdtype(temperature.dtype,
                                                     jnp.floating):
      raise ValueError(f"{who}: a temperature array must be a floating-point "
                       f"scalar; got shape {temperature.shape}, dtype "
                       f"{temperature.dtype}.")
    return temperature
  try:
    value = float(temperature)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{who}: temperature must be a positive number; got "
                     f"{temperature!r}.") from e
  if not value > 0 or value == float("inf"):
    raise ValueError(f"{who}: temperature must be positive and finite; got "
                     f"{temperature!r}.")
  return value


def _output_depends_on_input(fn: Callable[[Array], Array], probe) -> bool:
  """Whether ``fn``'s tangent output depends on its input tangent.

  Traces the JVP of ``fn`` to a jaxpr and follows data dependence from the
  input tangent to the output tangent. Operations without a derivative
  (integer casts, ``argmax``, comparisons, ``round``, ``stop_gradient``) give
  symbolic zero tangents that JAX replaces by constants, so the dependence is
  cut. Any equation with a dependent input is taken to make all of its
  outputs dependent (conservative: control flow and calls never produce a
  false alarm).
  """
  def tangent_out(z, t):
    return jax.jvp(fn, (z,), (t,))[1]

  jaxpr = jax.make_jaxpr(tangent_out)(probe, probe).jaxpr
  dependent = {id(v) for v in jaxpr.invars[1:]}
  for eqn in jaxpr.eqns:
    if any(id(v) in dependent for v in eqn.invars):
      dependent.update(id(v) for v in eqn.outvars)
  return id(jaxpr.outvars[0]) in dependent


def check_differentiable(f: contract.Objective, logits: Array,
                         who: str) -> None:
  """Raises ``ValueError`` if ``f`` cannot be differentiated in its input.

  Runs at trace time (no cost under ``jit``). It rejects an ``f`` whose output
  is not floating point and one whose gradient with respect to z is zero by
  construction.
  """
  probe = jax.ShapeDtypeStruct(logits.shape, logits.dtype)
  out = jax.eval_shape(f, probe)
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(
        f"{who} differentiates f through its one-hot input, but f returns "
        f"{out.dtype}, which has no gradient. Return a float from f or use an "
        f"estimator that only evaluates f (arsm, reinforce_loo, relax, ...).")
  try:
    depends = _output_depends_on_input(f, probe)
  except Exception as e:  # Re-raised with context; the cause is chained.
    raise ValueError(
        f"{who} differentiates f through its one-hot input, but JAX could not "
        f"differentiate f: {type(e).__name__}: {e}") from e
  if not depends:
    raise ValueError(
        f"{who} differentiates f through its one-hot input, but f's output "
        "does not depend differentiably on z (it goes through argmax, integer "
        "casts, comparisons, rounding or stop_gradient), so the gradient would "
        "be zero. Write f as a smooth function of z (e.g. z @ table instead of "
        "table[argmax(z)]) or use an estimator that only evaluates f (arsm, "
        "reinforce_loo, relax, ...).")


def _gumbel(key, logits: Array) -> Array:
  return jax.random.gumbel(key, logits.shape, logits.dtype)


def _softmax_jacobian_map(logits: Array, probs: Array) -> Array:
  r"""A function of ``logits`` whose value is ``probs`` (held fixed) and whose
  Jacobian with respect to ``logits`` is the softmax Jacobian
  :math:`\mathrm{diag}(p) - p p^\top` at ``p = probs``.
  """
  # Zero offset in value; masked (-inf) logits would give nan, so they get 0.
  offset = jnp.where(jnp.isneginf(logits), 0.0, logits - sg(logits))
  weights = probs * jnp.exp(offset)                           # [K, C]
  return weights / jnp.sum(weights, axis=-1, keepdims=True)


def gumbel_softmax(key, logits: Array, f: contract.Objective, *,
                   temperature: float = 1.0) -> contract.EstimatorOutput:
  r"""Gumbel-Softmax (Concrete): the pathwise gradient at the relaxed sample.

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective, differentiable in its ``[K, C]`` input.
    temperature: :math:`\tau > 0`; lower is less biased and noisier. A
      number, or a traced scalar (a temperature learned with the model).

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput` whose single
    sample is the relaxed sample y (rows on the simplex, not one-hot) and whose
    value is ``f(y)``. Through y, :func:`arsm_jax.expectation` passes the
    pathwise gradient to a traced temperature.
  """
  tau = check_temperature(temperature, "gumbel_softmax")
  check_differentiable(f, logits, "gumbel_softmax")
  dtype = logits.dtype
  g = _gumbel(key, logits)                                    # [K, C]
  relaxed = lambda lg: jax.nn.softmax((lg + g) / tau, axis=-1)
  value, grad = jax.value_and_grad(
      lambda lg: evaluation.call_objective(f, relaxed(lg), dtype))(logits)
  y = relaxed(logits)
  return contract.EstimatorOutput(grad, y[None], jnp.ones((1,), dtype), value,
                                  jnp.asarray(1, jnp.int32))


def st_gumbel_softmax(key, logits: Array, f: contract.Objective, *,
                      temperature: float = 1.0) -> contract.EstimatorOutput:
  r"""Straight-through Gumbel-Softmax: hard forward, relaxed backward.

  f is evaluated at the one-hot sample :math:`D = \mathrm{onehot}(\arg\max(\phi
  + g))` (exactly a draw from :math:`\mathrm{Cat}(\mathrm{softmax}(\phi))`) and
  differentiated there; the gradient reaches the logits as if the input had
  been :math:`\mathrm{softmax}((\phi + g)/\tau)`.

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective, differentiable in its ``[K, C]`` input.
    temperature: :math:`\tau > 0` of the backward relaxation: a number, or
      a traced scalar (a temperature learned with the model).

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput` whose single
    sample is the hard sample D. It is written ``D + (y - sg(y))`` with ``y``
    the relaxed sample at the given (stopped) logits: exactly D in value, and
    through it :func:`arsm_jax.expectation` passes the gradient of f at D to
    a traced temperature, as training :math:`\tau` with the model in the
    straight-through construction does.
  """
  tau = check_temperature(temperature, "st_gumbel_softmax")
  check_differentiable(f, logits, "st_gumbel_softmax")
  dtype = logits.dtype
  num_cats = logits.shape[1]
  g = _gumbel(key, logits)
  hard = jax.nn.one_hot(jnp.argmax(logits + g, axis=-1), num_cats, dtype=dtype)

  def surrogate(lg):
    soft = jax.nn.softmax((lg + g) / tau, axis=-1)
    return evaluation.call_objective(f, hard + soft - sg(soft), dtype)

  value, grad = jax.value_and_grad(surrogate)(logits)
  soft = jax.nn.softmax((logits + g) / tau, axis=-1)
  sample = hard + (soft - sg(soft))                           # == hard
  return contract.EstimatorOutput(grad, sample[None], jnp.ones((1,), dtype),
                                  value, jnp.asarray(1, jnp.int32))


def reinmax(key, logits: Array, f: contract.Objective, *,
            temperature: float = 1.0) -> contract.EstimatorOutput:
  r"""ReinMax (Liu et al., 2023): a second-order straight-through estimator.

  f is evaluated and differentiated at the hard sample
  :math:`D \sim \mathrm{Cat}(\mathrm{softmax}(\phi))`; the gradient is
  :math:`(2 J(\pi_1) - \tfrac12 J(\pi_0))^\top \nabla f(D)` with
  :math:`\pi_0 = \mathrm{softmax}(\phi)`,
  :math:`\pi_1 = (\mathrm{softmax}(\phi/\tau) + D)/2`.

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective, differentiable in its ``[K, C]`` input.
    temperature: :math:`\tau > 0`; the authors recommend :math:`\tau \ge 1`.
  """
  tau = check_temperature(temperature, "reinmax")
  check_differentiable(f, logits, "reinmax")
  dtype = logits.dtype
  num_cats = logits.shape[1]
  z = jax.random.categorical(key, logits, axis=-1)
  hard = jax.nn.one_hot(z, num_cats, dtype=dtype)             # [K, C]

  def surrogate(lg):
    pi0 = jax.nn.softmax(lg, axis=-1)
    pi1 = 0.5 * (jax.nn.softmax(sg(lg) / tau, axis=-1) + hard)
    heun = 2.0 * _softmax_jacobian_map(lg, pi1) - 0.5 * pi0
    return evaluation.call_objective(f, hard + heun - sg(heun), dtype)

  value, grad = jax.value_and_grad(surrogate)(logits)
  return contract.EstimatorOutput(grad, hard[None], jnp.ones((1,), dtype),
                                  value, jnp.asarray(1, jnp.int32))


_JANG = ("Jang, Gu and Poole. Categorical reparameterization with "
         "Gumbel-Softmax. ICLR 2017.")
_MADDISON = ("Maddison, Mnih and Teh. The Concrete distribution: a continuous "
             "relaxation of discrete random variables. ICLR 2017.")
_COST = "1 (and one gradient of f in z)"


def check_relaxed_settings(name: str, settings) -> None:
  """The ``check_settings`` hook: the temperature, at ``get`` time."""
  check_temperature(settings["temperature"], name)


registry.register(
    "gumbel_softmax", gumbel_softmax, unbiased=False, pathwise=True,
    check_settings=check_relaxed_settings, cost=_COST,
    reference=f"{_JANG} {_MADDISON}",
    description="Gumbel-Softmax: pathwise gradient of f at the relaxed sample "
    "(temperature, default 1.0); biased, f must be differentiable in z.")
registry.register(
    "st_gumbel_softmax", st_gumbel_softmax, unbiased=False, pathwise=True,
    check_settings=check_relaxed_settings, cost=_COST, reference=_JANG,
    description="Straight-through Gumbel-Softmax: f at the hard sample, "
    "relaxed backward pass (temperature, default 1.0); biased.")
registry.register(
    "reinmax", reinmax, unbiased=False, pathwise=True,
    check_settings=check_relaxed_settings, cost=_COST,
    reference="Liu, Zhao, Chen, Gao, Wu and Han. Bridging discrete and "
    "backpropagation: straight-through and beyond. NeurIPS 2023.",
    description="ReinMax (Liu et al. 2023): Heun-corrected straight-through "
    "(temperature, default 1.0); biased, f must be differentiable in z.")
