r"""RELAX (Grathwohl et al., 2018) for categorical variables, with a learned
control variate.

Write :math:`p = \mathrm{softmax}(\phi)`, draw Gumbel noise and set
:math:`z = \log p + g`, :math:`b = \arg\max z` (so b has law
:math:`\mathrm{Cat}(p)`), and draw :math:`\tilde z \sim p(z \mid b)` by
reparameterisation with fresh uniforms v:

.. math::

  \tilde z_b = -\log(-\log v_b), \qquad
  \tilde z_i = -\log\Big(-\frac{\log v_i}{p_i} - \log v_b\Big) \quad (i \ne b).

With a control variate :math:`c_\rho(z)` the estimate

.. math::

  g = \big[f(b) - c_\rho(\tilde z)\big]\nabla_\phi \log p(b)
      + \nabla_\phi c_\rho(z) - \nabla_\phi c_\rho(\tilde z)

is unbiased for every :math:`\rho`. Here
:math:`c_\rho(z) = \mathrm{MLP}_\rho(\mathrm{softmax}(z/\lambda))` on the
flattened ``[K * C]`` relaxed sample (hidden sizes ``hidden_sizes``, tanh),
with temperature :math:`\lambda` learned alongside :math:`\rho` unless
``learn_temperature=False``. Only :math:`f(b)` is evaluated: f need not be
differentiable, one evaluation per draw.

State. The network parameters and their optax Adam state are the estimator's
state (a :class:`RelaxState` pytree; nothing global)::

    est = estimators.get("relax")
    state = est.init(key, logits)                     # RelaxState
    out = est.estimate(key, logits, f, state=state)   # out.grad, out.state

Every ``estimate`` returns, in ``out.state``, the state after one Adam step on
:math:`\lVert g \rVert^2` (whose gradient in :math:`\rho` is that of the
estimator's variance, the mean being fixed). ``out.grad`` is computed with the
incoming parameters. Carry ``out.state`` into the next call to train the
control variate alongside the model.

References:
  Grathwohl, Choi, Wu, Roeder and Duvenaud. Backpropagation through the void:
  optimizing control variates for black-box gradient estimation. ICLR 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from arsm_jax.estimators import base
from arsm_jax.estimators import relaxed

Array = jax.Array


class RelaxState(NamedTuple):
  """RELAX's learned state.

  Attributes:
    params: ``{"net": <flax params of the control-variate MLP>,
      "log_temperature": scalar}``.
    opt_state: the optax Adam state of ``params``.
  """

  params: Any
  opt_state: Any


class ControlVariate(nn.Module):
  """MLP from the flattened relaxed sample ``[K * C]`` to a scalar."""

  hidden_sizes: Sequence[int] = (10, 10)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    for size in self.hidden_sizes:
      x = jnp.tanh(nn.Dense(size)(x))
    return nn.Dense(1)(x)[0]


def _hidden(hidden_sizes) -> tuple[int, ...]:
  sizes = tuple(hidden_sizes)
  if any(isinstance(h, bool) or int(h) != h or h < 1 for h in sizes):
    raise ValueError(f"relax: hidden_sizes must be positive integers; got "
                     f"{hidden_sizes!r}.")
  return tuple(int(h) for h in sizes)


def _optimizer(cv_learning_rate) -> optax.GradientTransformation:
  if not float(cv_learning_rate) > 0:
    raise ValueError(f"relax: cv_learning_rate must be > 0; got "
                     f"{cv_learning_rate!r}.")
  return optax.adam(float(cv_learning_rate))


def relax_init(key, logits: Array, *, hidden_sizes: Sequence[int] = (10, 10),
               temperature: float = 0.5, cv_learning_rate: float = 1e-3,
               learn_temperature: bool = True) -> RelaxState:
  """Initial control-variate parameters and Adam state for ``logits [K, C]``."""
  del learn_temperature  # Only used by relax().
  tau = relaxed.check_temperature(temperature, "relax")
  net = ControlVariate(_hidden(hidden_sizes))
  optimizer = _optimizer(cv_learning_rate)
  x = jnp.zeros((logits.size,), logits.dtype)
  params = {
      "net": net.init(key, x),
      "log_temperature": jnp.log(jnp.asarray(tau, logits.dtype)),
  }
  return RelaxState(params, optimizer.init(params))


def _conditional_gumbel(v: Array, b: Array, probs: Array) -> Array:
  r"""Reparameterised :math:`\tilde z \sim p(z \mid \arg\max z = b)`.

  Args:
    v: ``[K, C]`` uniforms in (0, 1).
    b: ``[K]`` the sampled categories.
    probs: ``[K, C]`` ``softmax(logits)``; the result is differentiable in it.
  """
  num_cats = probs.shape[1]
  log_v = jnp.log(v)                                          # [K, C]
  log_v_b = jnp.take_along_axis(log_v, b[:, None], axis=1)    # [K, 1]
  at_b = jax.nn.one_hot(b, num_cats, dtype=bool)              # [K, C]
  safe_p = jnp.maximum(probs, jnp.finfo(probs.dtype).tiny)
  others = -jnp.log(-log_v / safe_p - log_v_b)
  return jnp.where(at_b, -jnp.log(-log_v_b), others)


def relax(key, logits: Array, f: base.Objective, *, state: RelaxState,
          hidden_sizes: Sequence[int] = (10, 10), temperature: float = 0.5,
          cv_learning_rate: float = 1e-3,
          learn_temperature: bool = True) -> base.EstimatorOutput:
  r"""One RELAX draw and one Adam step of its control variate.

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays (evaluated once, never
      differentiated).
    state: a :class:`RelaxState` from ``init``.
    hidden_sizes: hidden layer widths of the control-variate MLP.
    temperature: initial temperature of the relaxation inside the control
      variate (used by ``init``; afterwards the state holds it).
    cv_learning_rate: Adam step size for the control variate.
    learn_temperature: train the temperature with the network.

  Returns:
    An :class:`~arsm_jax.estimators.base.EstimatorOutput` with
    ``num_evals = 1`` and ``state`` the updated :class:`RelaxState`.
  """
  del temperature  # The state holds the (learned) temperature.
  net = ControlVariate(_hidden(hidden_sizes))
  optimizer = _optimizer(cv_learning_rate)
  dtype = logits.dtype
  num_cats = logits.shape[1]
  key_u, key_v = jax.random.split(key)
  gumbel = jax.random.gumbel(key_u, logits.shape, dtype)      # [K, C]
  v = jax.random.uniform(key_v, logits.shape, dtype,
                         minval=jnp.finfo(dtype).tiny, maxval=1.0)
  b = jnp.argmax(jax.nn.log_softmax(logits, axis=-1) + gumbel, axis=-1)  # [K]
  onehot_b = jax.nn.one_hot(b, num_cats, dtype=dtype)         # [K, C]
  f_b = base.call_objective(f, onehot_b, dtype)
  score = onehot_b - jax.nn.softmax(logits, axis=-1)          # [K, C]

  def z_of(lg):
    return jax.nn.log_softmax(lg, axis=-1) + gumbel

  def z_tilde_of(lg):
    return _conditional_gumbel(v, b, jax.nn.softmax(lg, axis=-1))

  def estimate_with(params):
    log_tau = params["log_temperature"]
    if not learn_temperature:
      log_tau = jax.lax.stop_gradient(log_tau)

    def cv(z):
      relaxed_z = jax.nn.softmax(z * jnp.exp(-log_tau), axis=-1)
      return net.apply(params["net"], relaxed_z.reshape(-1)).astype(dtype)

    grad_c_z = jax.grad(lambda lg: cv(z_of(lg)))(logits)
    c_tilde, grad_c_tilde = jax.value_and_grad(
        lambda lg: cv(z_tilde_of(lg)))(logits)
    grad = (f_b - c_tilde) * score + grad_c_z - grad_c_tilde  # [K, C]
    return jnp.sum(grad ** 2), grad

  (_, grad), param_grads = jax.value_and_grad(
      estimate_with, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(param_grads, state.opt_state,
                                        state.params)
  new_state = RelaxState(optax.apply_updates(state.params, updates), opt_state)
  return base.EstimatorOutput(grad, onehot_b[None], jnp.ones((1,), dtype), f_b,
                              jnp.asarray(1, jnp.int32), new_state)


base.register(
    "relax", relax, unbiased=True, init_fn=relax_init,
    description="RELAX (Grathwohl et al. 2018): learned control variate "
    "(MLP on the relaxed sample, Adam on the squared estimate), 1 "
    "evaluation; stateful.")
