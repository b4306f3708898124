r"""RELAX (Grathwohl et al. 2018) for a policy of discrete actions.

The score function with a learned, action-dependent control variate
:math:`c_\varphi(s, z)` of the state and the relaxed action, made unbiased by
its reparameterised correction; :math:`\varphi` minimises the estimator's
variance with its own Adam (see :func:`policy_gradient`). The relaxation
conditional on the action is the estimators' conditional Gumbel sample
(:func:`arsm_jax.estimators.gumbel_rao.conditional_gumbel`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from arsm_jax import config_checks as checks
from arsm_jax import envs as envs_lib
from arsm_jax.estimators import gumbel_rao
from arsm_jax.models import policy as policy_lib
from arsm_jax.rl import episodes
from arsm_jax.rl import learner as learner_lib

Array = jax.Array
ApplyFn = episodes.ApplyFn
Episode = episodes.Episode


def draw_conditional_gumbel(log_probs: Array, action: Array, key) -> Array:
  r"""One step's ``[C]`` :math:`\tilde z \sim p(z \mid \arg\max z = b)`.

  The exponentials of the shared sampler
  (:func:`arsm_jax.estimators.gumbel_rao.conditional_gumbel`) are
  :math:`E_c = -\log v_c`, :math:`v \sim U(0, 1)^C`, as in the estimator
  RELAX.

  Args:
    log_probs: ``[C]`` normalised log-probabilities.
    action: the conditioning argmax b.
    key: PRNG key.

  Returns:
    ``[C]`` :math:`\tilde z` with ``argmax == action``.
  """
  tiny = jnp.finfo(log_probs.dtype).tiny
  v = jax.random.uniform(key, log_probs.shape, log_probs.dtype, minval=tiny,
                         maxval=1.0)
  return gumbel_rao.conditional_gumbel(jnp.log(-jnp.log(v)), log_probs,
                                       action)


class ControlVariateParams(NamedTuple):
  """RELAX's control-variate parameters (phi).

  Attributes:
    net: parameters of :class:`~arsm_jax.models.policy.ControlVariate`.
    log_temperature: log of the Gumbel-Softmax temperature of the relaxed
      actions it sees (learned with the net).
  """

  net: Any
  log_temperature: Array


CvFn = Callable[[Any, Array, Array], Array]


def policy_gradient(env: envs_lib.JaxEnv, apply_fn: ApplyFn, cv_fn: CvFn,
                    params, cv_params: ControlVariateParams, key, *,
                    gamma: float
                    ) -> tuple[Any, ControlVariateParams, dict[str, Array]]:
  r"""One RELAX estimate of the policy gradient and of its variance gradient.

  Discrete-action RELAX (Grathwohl et al. 2018, section 3.3 and appendix).
  At step t the action :math:`b_t = \arg\max_c z_{tc}` with
  :math:`z_t = \phi_t + g_t` (policy logits plus Gumbel noise: the episode's
  Dirichlet draw gives :math:`g_{tc} = -\log\varpi_{tc}` up to a per-step
  constant, and the augmentation's action is exactly that argmax),
  :math:`\tilde z_t \sim p(z \mid b_t)` from
  :func:`arsm_jax.estimators.gumbel_rao.conditional_gumbel`, and
  the control variate sees the relaxed actions
  :math:`\sigma(z/\tau)`, which the per-step constant does not change:

  .. math::

    \hat g = \sum_t \big[G_t - c_\varphi(s_t, \tilde z_t)\big]
             \nabla_\theta\log\pi(b_t\mid s_t)
             + \nabla_\theta c_\varphi(s_t, z_t)
             - \nabla_\theta c_\varphi(s_t, \tilde z_t),

  unbiased for every :math:`\varphi` (the :math:`\gamma^t` factor is
  dropped as for the other learners). :math:`\varphi` (the net and
  :math:`\log\tau`) descends :math:`\nabla_\varphi\|\hat g\|^2`, the
  gradient of the estimator's variance since its mean does not depend on
  :math:`\varphi`.

  Args:
    env: the environment.
    apply_fn: ``apply_fn(params, obs) -> logits [C]``.
    cv_fn: ``cv_fn(net_params, obs [T, D], relaxed [T, C]) -> [T]``.
    params: policy parameters.
    cv_params: :class:`ControlVariateParams`.
    key: PRNG key.
    gamma: discount.

  Returns:
    ``(grads, cv_grads, info)``: ``grads`` shaped like ``params`` (ascent
    direction), ``cv_grads`` the gradient of :math:`\|\hat g\|^2` w.r.t.
    ``cv_params`` (descent direction), ``info`` as
    :func:`~arsm_jax.rl.episodes.episode_info`.
  """
  k_ep, k_cond = jax.random.split(key)
  ep = episodes.collect_episode(env, apply_fn, params, k_ep, gamma)
  return episode_gradient(apply_fn, cv_fn, params, cv_params, ep, k_cond)


def episode_gradient(apply_fn: ApplyFn, cv_fn: CvFn, params,
                     cv_params: ControlVariateParams, ep: Episode, key
                     ) -> tuple[Any, ControlVariateParams, dict[str, Array]]:
  r""":func:`policy_gradient` from a collected episode.

  ``key`` draws the conditional relaxations :math:`\tilde z_t`.
  """
  num_steps = ep.mask.shape[0]
  cond_keys = jax.random.split(key, num_steps)
  mask = ep.mask.astype(jnp.float32)
  returns = jnp.where(ep.mask, ep.returns, 0.0)

  def relaxations(p):
    logits = jax.vmap(lambda o: apply_fn(p, o))(ep.obs).astype(jnp.float32)
    log_probs = jax.nn.log_softmax(logits)                  # [T, C]
    z = logits - ep.log_pi                                  # [T, C]
    z_cond = jax.vmap(draw_conditional_gumbel)(log_probs, ep.actions,
                                               cond_keys)
    return log_probs, z, z_cond

  def surrogate(p, p_coef, phi):
    log_probs, z, z_cond = relaxations(p)
    _, _, z_cond_coef = relaxations(p_coef)
    inv_tau = jnp.exp(-phi.log_temperature)

    def c(zz):
      return cv_fn(phi.net, ep.obs, jax.nn.softmax(zz * inv_tau, axis=-1))

    log_pi_b = jnp.take_along_axis(log_probs, ep.actions[:, None], 1)[:, 0]
    # The score term's coefficient depends on phi but not on theta.
    coef = returns - c(z_cond_coef)
    return jnp.sum(mask * (coef * log_pi_b + c(z) - c(z_cond)))

  def estimate(phi):
    return jax.grad(surrogate)(params, jax.lax.stop_gradient(params), phi)

  def squared_norm(phi):
    g = estimate(phi)
    return sum(jnp.sum(x ** 2) for x in jax.tree_util.tree_leaves(g)), g

  cv_grads, grads = jax.grad(squared_norm, has_aux=True)(cv_params)
  return grads, cv_grads, episodes.episode_info(ep)


class RelaxTrainState(NamedTuple):
  """RELAX's train state (a pytree; ``vmap`` over seeds).

  Attributes:
    params: policy parameters.
    opt_state: their Adam state.
    cv_params: the control variate's :class:`ControlVariateParams`.
    cv_opt_state: their Adam state.
  """

  params: Any
  opt_state: Any
  cv_params: ControlVariateParams
  cv_opt_state: Any


def make(setup: learner_lib.Setup, *, learning_rate: float = 0.03,
         temperature: float = 0.5) -> learner_lib.Learner:
  """The RELAX learner (its settings: ``config.learner_settings.relax``).

  Args:
    setup: the environment, policy and discount.
    learning_rate: Adam step size of the control variate (the policy's is
      ``setup.learning_rate``).
    temperature: initial Gumbel-Softmax temperature of the relaxed actions
      the control variate sees (learned with it afterwards).
  """
  check_settings(dict(learning_rate=learning_rate, temperature=temperature))
  env, gamma = setup.env, setup.gamma
  net = learner_lib.policy_net(setup)
  control_variate = policy_lib.ControlVariate(hidden=tuple(setup.hidden))
  tx = optax.adam(setup.learning_rate)
  cv_tx = optax.adam(learning_rate)

  def init(key):
    params, k_cv = learner_lib.init_policy(net, env, key)
    cv_params = ControlVariateParams(
        net=control_variate.init(k_cv, learner_lib.dummy_obs(env)[None],
                                 jnp.zeros((1, env.num_actions))),
        log_temperature=jnp.log(jnp.asarray(temperature, jnp.float32)))
    return RelaxTrainState(params, tx.init(params), cv_params,
                           cv_tx.init(cv_params))

  def estimate(state, key):
    grads, _, info = policy_gradient(env, net.apply, control_variate.apply,
                                     state.params, state.cv_params, key,
                                     gamma=gamma)
    return grads, info

  def update_from_episode(state, ep, key):
    grads, cv_grads, info = episode_gradient(
        net.apply, control_variate.apply, state.params, state.cv_params, ep,
        key)
    params, opt_state = learner_lib.ascend(tx, state.params, state.opt_state,
                                           grads)
    cv_params, cv_opt_state = learner_lib.descend(
        cv_tx, state.cv_params, state.cv_opt_state, cv_grads)
    return RelaxTrainState(params, opt_state, cv_params, cv_opt_state), info

  def update(state, key):
    k_ep, k_cond = jax.random.split(key)
    ep = episodes.collect_episode(env, net.apply, state.params, k_ep, gamma)
    return update_from_episode(state, ep, k_cond)

  return learner_lib.Learner(init=init, estimate=estimate, update=update,
                             update_from_episode=update_from_episode)


def check_settings(settings: Mapping[str, Any],
                   where: str = "learner_settings.relax") -> None:
  """Checks RELAX's settings; an error names ``config.<where>.<field>``."""
  fields = {f"{where}.{k}": v for k, v in settings.items()}
  checks.positive_number(fields, f"{where}.learning_rate")
  checks.positive_number(fields, f"{where}.temperature")
