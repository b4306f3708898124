r"""RELAX (Grathwohl et al., 2018) for categorical variables, with a learned
control variate.

Write :math:`p = \mathrm{softmax}(\phi)`, draw Gumbel noise and set
:math:`z = \log p + g`, :math:`b = \arg\max z` (so b has law
:math:`\mathrm{Cat}(p)`), and draw :math:`\tilde z \sim p(z \mid b)` by
reparameterisation with fresh uniforms v (:math:`e = -\log v`):

.. math::

  \tilde z_b = -\log e_b, \qquad
  \tilde z_i = -\log\Big(\frac{e_i}{p_i} + e_b\Big)
             = -\mathrm{logaddexp}(\log e_i - \log p_i,\ \log e_b)
  \quad (i \ne b),

computed in log space, so logits far apart (:math:`p_i \approx e^{-60}`) stay
finite. With a control variate :math:`c(z)` the estimate

.. math::

  g = \big[f(b) - c(\tilde z)\big]\nabla_\phi \log p(b)
      + \nabla_\phi c(z) - \nabla_\phi c(\tilde z)

is unbiased for every continuous c. The control variate is the one of the
paper's discrete-VAE experiments,

.. math::

  c(z) = \eta \, f(\sigma_\lambda(z)) + r_\rho(\sigma_\lambda(z)), \qquad
  \sigma_\lambda(z) = \mathrm{softmax}(z / \lambda),

with :math:`r_\rho` an MLP on the flattened ``[K * C]`` relaxed sample
(hidden sizes ``hidden_sizes``, tanh). The :math:`\eta f` term is used with
``include_f=True``; it needs f differentiable (and continuous) in z, as
Gumbel-Softmax does, and costs two more evaluations of f and its gradient
per draw. With the default ``include_f=False`` only :math:`f(b)` is
evaluated (f may be any black box, one evaluation per draw) and
:math:`c = r_\rho`. :math:`\eta` (started at 1, unconstrained: any value
keeps the estimate unbiased) and :math:`\log\lambda` (started at
``log(temperature)``, so :math:`\lambda > 0`) are learned with :math:`\rho`
unless ``learn_temperature=False``. Masked categories (logit ``-inf``) are
never drawn and get exactly zero gradient.

State. The parameters, their optax Adam state and the last control-variate
gradient form the estimator's state (a :class:`RelaxState` pytree of arrays
and dicts; it checkpoints with orbax)::

    est = estimators.get("relax")
    state = est.init(key, logits)                     # RelaxState
    out = est.estimate(key, logits, f, state=state)   # out.grad, out.state

The control variate is trained to minimise the variance proxy
:math:`\lVert g \rVert^2` (its gradient in the control-variate parameters is
that of the estimator's variance, the mean being fixed). ``out.grad`` is
computed with the incoming parameters; ``out.state`` is the state after one
Adam step on this draw's proxy, with ``out.state.cv_grad`` that step's
gradient. Carry ``out.state`` into the next call to train the control
variate alongside the model. In a minibatch, :func:`arsm_jax.expectation`
instead averages the items' ``cv_grad`` and takes one Adam step on the batch
mean (:func:`batch_update`): one optimiser step on the batch objective.

Cost: 1 evaluation of f per draw (``include_f=False``), 3 with its gradient
at two relaxed points (``include_f=True``); plus the control-variate
network and its second derivatives for the update.

References:
  Grathwohl, Choi, Wu, Roeder and Duvenaud. Backpropagation through the void:
  optimizing control variates for black-box gradient estimation. ICLR 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from arsm_jax.estimators import base
from arsm_jax.estimators import relaxed

Array = jax.Array


class RelaxState(NamedTuple):
  """RELAX's learned state (a pytree of arrays and dicts).

  Attributes:
    params: ``{"net": [{"w", "b"}, ...] (the layers of r_rho, see
      :func:`init_control_variate`), "log_temperature": scalar,
      "f_scale": scalar (eta)}``.
    opt_state: the optax Adam state of ``params``.
    cv_grad: the gradient (shaped like ``params``) of the variance proxy
      that produced the last update; zeros in a fresh state.
  """

  params: Any
  opt_state: Any
  cv_grad: Any


def init_control_variate(key, input_size: int,
                         hidden_sizes: Sequence[int] = (10, 10)) -> list:
  r"""Parameters of the MLP :math:`r_\rho` from ``[input_size]`` to a scalar.

  Each layer is ``{"w": [n_in, n_out], "b": [n_out]}``, ``w`` drawn with
  LeCun-normal initialisation and ``b`` zero (as ``flax.linen.Dense``
  does), in float32; the list is a pytree of arrays.

  Args:
    key: PRNG key.
    input_size: length of the flattened relaxed sample, ``K * C``.
    hidden_sizes: hidden layer widths (tanh); a final layer of width 1
      follows.

  Returns:
    ``[{"w", "b"}, ...]``, one entry per layer (``len(hidden_sizes) + 1``).
  """
  sizes = (int(input_size),) + tuple(hidden_sizes) + (1,)
  keys = jax.random.split(key, len(sizes) - 1)
  init_w = jax.nn.initializers.lecun_normal()
  return [{"w": init_w(k, (n_in, n_out), jnp.float32),
           "b": jnp.zeros((n_out,), jnp.float32)}
          for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])]


def apply_control_variate(net_params, x: Array) -> Array:
  """The MLP on one flattened relaxed sample ``x [K * C]``; a scalar."""
  for layer in net_params[:-1]:
    x = jnp.tanh(x @ layer["w"] + layer["b"])
  last = net_params[-1]
  return (x @ last["w"] + last["b"])[0]


def _hidden(hidden_sizes) -> tuple[int, ...]:
  try:
    sizes = tuple(hidden_sizes)
  except TypeError as e:
    raise ValueError(f"relax: hidden_sizes must be a sequence of positive "
                     f"integers; got {hidden_sizes!r}.") from e
  if any(isinstance(h, bool) or int(h) != h or h < 1 for h in sizes):
    raise ValueError(f"relax: hidden_sizes must be positive integers; got "
                     f"{hidden_sizes!r}.")
  return tuple(int(h) for h in sizes)


def _optimizer(cv_learning_rate) -> optax.GradientTransformation:
  if isinstance(cv_learning_rate, bool) or not (
      isinstance(cv_learning_rate, (int, float)) and cv_learning_rate > 0):
    raise ValueError(f"relax: cv_learning_rate must be > 0; got "
                     f"{cv_learning_rate!r}.")
  return optax.adam(float(cv_learning_rate))


def _check_flag(value, name: str) -> bool:
  if not isinstance(value, bool):
    raise ValueError(f"relax: {name} must be True or False; got {value!r}.")
  return value


def relax_init(key, logits: Array, *, hidden_sizes: Sequence[int] = (10, 10),
               temperature: float = 0.5, cv_learning_rate: float = 1e-3,
               learn_temperature: bool = True,
               include_f: bool = False) -> RelaxState:
  """Initial control-variate parameters and Adam state for ``logits [K, C]``."""
  _check_flag(learn_temperature, "learn_temperature")
  _check_flag(include_f, "include_f")
  tau = relaxed.check_temperature(temperature, "relax")
  hidden = _hidden(hidden_sizes)
  optimizer = _optimizer(cv_learning_rate)
  params = {
      "net": init_control_variate(key, logits.size, hidden),
      "log_temperature": jnp.log(jnp.asarray(tau, logits.dtype)),
      "f_scale": jnp.ones((), logits.dtype),
  }
  return RelaxState(params, optimizer.init(params),
                    jax.tree_util.tree_map(jnp.zeros_like, params))


def apply_cv_gradient(state: RelaxState, cv_grad, *,
                      cv_learning_rate: float = 1e-3) -> RelaxState:
  """One Adam step of the control variate along ``cv_grad``."""
  optimizer = _optimizer(cv_learning_rate)
  updates, opt_state = optimizer.update(cv_grad, state.opt_state, state.params)
  return RelaxState(optax.apply_updates(state.params, updates), opt_state,
                    cv_grad)


def without_gradient(state: RelaxState) -> RelaxState:
  """``state`` with ``cv_grad`` zeroed (what each batch item starts from)."""
  return state._replace(
      cv_grad=jax.tree_util.tree_map(jnp.zeros_like, state.cv_grad))


def batch_update(state: RelaxState, item_grads, *,
                 cv_learning_rate: float = 1e-3,
                 **unused_settings) -> RelaxState:
  r"""One Adam step on the batch mean of the items' control-variate gradients.

  Args:
    state: the state every item of the batch used.
    item_grads: the items' ``cv_grad``, each leaf with a leading batch axis
      ``[B, ...]``.
    cv_learning_rate: the Adam step size (the estimator's setting).
    **unused_settings: the estimator's other settings (ignored).

  Returns:
    ``apply_cv_gradient(state, mean_b item_grads[b])``: the gradient of the
    batch objective :math:`\frac1B \sum_b \lVert g_b \rVert^2`. Items whose
    gradient is not finite are left out of the mean; if none is finite the
    state is returned unchanged, so a NaN batch never poisons the control
    variate.
  """
  del unused_settings
  leaves = jax.tree_util.tree_leaves(item_grads)
  batch = leaves[0].shape[0]
  finite = jnp.ones((batch,), bool)
  for leaf in leaves:
    finite &= jnp.all(jnp.isfinite(leaf.reshape(batch, -1)), axis=1)
  count = jnp.sum(finite)
  mean = jax.tree_util.tree_map(
      lambda g: jnp.sum(jnp.where(
          finite.reshape((batch,) + (1,) * (g.ndim - 1)), g, 0), axis=0)
      / jnp.maximum(count, 1).astype(g.dtype), item_grads)
  new = apply_cv_gradient(state, mean, cv_learning_rate=cv_learning_rate)
  return jax.tree_util.tree_map(
      lambda a, b: jnp.where(count > 0, a, b), new, state)


def _conditional_gumbel(v: Array, b: Array, log_p: Array) -> Array:
  r"""Reparameterised :math:`\tilde z \sim p(z \mid \arg\max z = b)`.

  Args:
    v: ``[K, C]`` uniforms in (0, 1).
    b: ``[K]`` the sampled categories.
    log_p: ``[K, C]`` ``log_softmax(logits)``, finite (masked entries
      replaced by any finite value); the result is differentiable in it.

  Returns:
    ``[K, C]``, in the location of :math:`z = \log p + g`.
  """
  num_cats = log_p.shape[1]
  log_e = jnp.log(-jnp.log(v))                                # [K, C]
  log_e_b = jnp.take_along_axis(log_e, b[:, None], axis=1)    # [K, 1]
  at_b = jax.nn.one_hot(b, num_cats, dtype=bool)              # [K, C]
  others = -jnp.logaddexp(log_e - log_p, log_e_b)
  return jnp.where(at_b, -log_e_b, others)


def _relaxed_sample(z: Array, log_tau: Array, masked: Array) -> Array:
  r""":math:`\mathrm{softmax}(z/\lambda)` with masked entries exactly 0.

  ``z`` must be finite everywhere; masked entries are replaced by ``-inf``
  after scaling, so they get zero weight and zero gradient.
  """
  scaled = jnp.where(masked, -jnp.inf, z * jnp.exp(-log_tau))
  return jax.nn.softmax(scaled, axis=-1)


def _check_state(state, logits: Array) -> None:
  """Checks that ``state`` is a RelaxState made for logits of this size."""
  try:
    size = state.params["net"][0]["w"].shape[0]
  except (AttributeError, IndexError, KeyError, TypeError):
    raise ValueError(
        "relax: state must be the RelaxState of est.init(key, logits) (or "
        f"the state a previous draw returned); got {type(state).__name__}."
    ) from None
  if size != logits.size:
    raise ValueError(
        f"relax: the state was made for logits of {size} entries (K * C), "
        f"but these logits have shape {tuple(logits.shape)} ({logits.size} "
        "entries); make the state with est.init(key, logits) for logits of "
        "this shape.")


def relax(key, logits: Array, f: base.Objective, *, state: RelaxState,
          hidden_sizes: Sequence[int] = (10, 10), temperature: float = 0.5,
          cv_learning_rate: float = 1e-3, learn_temperature: bool = True,
          include_f: bool = False) -> base.EstimatorOutput:
  r"""One RELAX draw and one Adam step of its control variate.

  Args:
    key: PRNG key.
    logits: ``[K, C]``; ``-inf`` entries are masked categories.
    f: objective on one-hot ``[K, C]`` arrays. With ``include_f=False`` it is
      evaluated once and never differentiated; with ``include_f=True`` it is
      also evaluated and differentiated at two relaxed samples.
    state: a :class:`RelaxState` from ``init``.
    hidden_sizes: hidden layer widths of the control-variate MLP
      :math:`r_\rho`.
    temperature: initial temperature :math:`\lambda` of the relaxation inside
      the control variate (used by ``init``; afterwards the state holds it).
    cv_learning_rate: Adam step size for the control variate.
    learn_temperature: train :math:`\lambda` with the network.
    include_f: add :math:`\eta f(\sigma_\lambda(z))` to the control variate
      (Grathwohl et al.'s discrete-VAE control variate); f must then be
      differentiable in z.

  Returns:
    An :class:`~arsm_jax.estimators.base.EstimatorOutput` with ``num_evals``
    1 (3 with ``include_f``) and ``state`` the updated :class:`RelaxState`.
  """
  del temperature  # The state holds the (learned) temperature.
  _check_state(state, logits)
  _check_flag(learn_temperature, "learn_temperature")
  if _check_flag(include_f, "include_f"):
    relaxed.check_differentiable(f, logits, "relax with include_f=True")
  _hidden(hidden_sizes)  # Checks the settings at trace time.
  _optimizer(cv_learning_rate)
  dtype = logits.dtype
  num_cats = logits.shape[1]
  masked = jnp.isneginf(logits)                               # [K, C]
  key_u, key_v = jax.random.split(key)
  gumbel = jax.random.gumbel(key_u, logits.shape, dtype)      # [K, C]
  v = jax.random.uniform(key_v, logits.shape, dtype,
                         minval=jnp.finfo(dtype).tiny, maxval=1.0)
  b = jnp.argmax(jax.nn.log_softmax(logits, axis=-1) + gumbel, axis=-1)  # [K]
  onehot_b = jax.nn.one_hot(b, num_cats, dtype=dtype)         # [K, C]
  f_b = base.call_objective(f, onehot_b, dtype)
  score = onehot_b - jax.nn.softmax(logits, axis=-1)          # [K, C]

  def log_p_of(lg):
    # Masked entries replaced by 0: finite values that the relaxation masks.
    return jnp.where(masked, 0.0, jax.nn.log_softmax(lg, axis=-1))

  def z_of(lg):
    return log_p_of(lg) + gumbel

  def z_tilde_of(lg):
    return _conditional_gumbel(v, b, log_p_of(lg))

  def estimate_with(params):
    log_tau = params["log_temperature"]
    if not learn_temperature:
      log_tau = jax.lax.stop_gradient(log_tau)

    def cv(z):
      soft = _relaxed_sample(z, log_tau, masked)              # [K, C]
      out = apply_control_variate(params["net"], soft.reshape(-1))
      out = out.astype(dtype)
      if include_f:
        out = out + params["f_scale"] * base.call_objective(f, soft, dtype)
      return out

    grad_c_z = jax.grad(lambda lg: cv(z_of(lg)))(logits)
    c_tilde, grad_c_tilde = jax.value_and_grad(
        lambda lg: cv(z_tilde_of(lg)))(logits)
    grad = (f_b - c_tilde) * score + grad_c_z - grad_c_tilde  # [K, C]
    return jnp.sum(grad ** 2), grad

  (_, grad), cv_grad = jax.value_and_grad(
      estimate_with, has_aux=True)(state.params)
  new_state = apply_cv_gradient(state, cv_grad,
                                cv_learning_rate=cv_learning_rate)
  return base.EstimatorOutput(grad, onehot_b[None], jnp.ones((1,), dtype), f_b,
                              jnp.asarray(3 if include_f else 1, jnp.int32),
                              new_state)


def check_relax_settings(name: str, settings) -> None:
  """The ``check_settings`` hook: every setting, at ``get`` time."""
  del name  # The messages name "relax", as the trace-time checks do.
  _hidden(settings["hidden_sizes"])
  relaxed.check_temperature(settings["temperature"], "relax")
  _optimizer(settings["cv_learning_rate"])
  _check_flag(settings["learn_temperature"], "learn_temperature")
  _check_flag(settings["include_f"], "include_f")


base.register(
    "relax", relax, unbiased=True, init_fn=relax_init,
    check_settings=check_relax_settings,
    cost="1 (3 with include_f=True); with include_f also two gradients of "
    "f in z; plus the control-variate network and its second derivatives",
    reference="Grathwohl, Choi, Wu, Roeder and Duvenaud. Backpropagation "
    "through the void: optimizing control variates for black-box gradient "
    "estimation. ICLR 2018.",
    description="RELAX (Grathwohl et al. 2018): learned control variate "
    "eta*f(relaxed z) (include_f=True) + MLP of the relaxed sample, Adam on "
    "the squared estimate; 1 evaluation (3 with include_f); stateful.")
