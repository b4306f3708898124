r"""A2C: advantage actor-critic with GAE(:math:`\lambda`) advantages.

A learned value function :math:`V` (a separate MLP of the policy's shape),
advantages by GAE(:math:`\lambda`) over the episode, the critic regressed
onto :math:`\hat A_t + V(s_t)` with its own Adam, the policy by the score
function with those advantages. With :math:`\lambda = 1` the advantage is
the Monte-Carlo return minus :math:`V(s_t)`. An episode cut by the step cap
(not terminated) bootstraps from :math:`V(s_T)` at its last state
(``bootstrap_truncated``), since the critic does not see the time.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from arsm_jax import config_checks as checks
from arsm_jax.models import policy as policy_lib
from arsm_jax.rl import episodes
from arsm_jax.rl import learner as learner_lib

Array = jax.Array
Episode = episodes.Episode


def gae_advantages(ep: Episode, values: Array, gamma: float, lam: float,
                   final_value: Optional[Array] = None) -> Array:
  r"""GAE(:math:`\lambda`) advantages of an episode.

  :math:`\hat A_t = \sum_{k\ge0} (\gamma\lambda)^k \delta_{t+k}` with
  :math:`\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)` over the episode's
  steps. After the last step :math:`V(s_T) = 0` if the episode terminated;
  if it was truncated by the step cap, :math:`V(s_T)` is ``final_value``
  (the critic at ``ep.final_obs``), so a time limit the critic cannot see
  gives no conflicting targets. ``final_value=None`` treats every episode
  end as terminal.

  Args:
    ep: the episode (``rewards``, ``mask``, ``length``, ``terminated``).
    values: ``[T]`` critic values :math:`V(s_t)`.
    gamma: discount.
    lam: GAE lambda.
    final_value: scalar :math:`V(s_T)`, or None.

  Returns:
    ``[T]`` advantages (0 past the episode's end).
  """
  num_steps = values.shape[0]
  next_values = jnp.where(jnp.roll(ep.mask, -1).at[-1].set(False),
                          jnp.roll(values, -1), 0.0)        # [T]
  if final_value is not None:
    boot = jnp.where(ep.terminated, 0.0, final_value)
    last = jnp.arange(num_steps) == ep.length - 1
    next_values = jnp.where(last, boot, next_values)
  deltas = jnp.where(ep.mask, ep.rewards + gamma * next_values - values, 0.0)
  return episodes.discounted_returns(deltas, ep.mask, gamma * lam)


class A2CTrainState(NamedTuple):
  """A2C's train state (a pytree; ``vmap`` over seeds).

  Attributes:
    params: policy parameters.
    opt_state: their Adam state.
    critic_params: the value function's parameters.
    critic_opt_state: their Adam state.
  """

  params: Any
  opt_state: Any
  critic_params: Any
  critic_opt_state: Any


def make(setup: learner_lib.Setup, *, critic_learning_rate: float = 0.03,
         gae_lambda: float = 0.95,
         bootstrap_truncated: bool = True) -> learner_lib.Learner:
  """The A2C learner (its settings: ``config.learner_settings.a2c``).

  Args:
    setup: the environment, policy and discount.
    critic_learning_rate: Adam step size of the critic.
    gae_lambda: GAE lambda (1.0 = Monte-Carlo advantages).
    bootstrap_truncated: bootstrap from :math:`V(s_T)` when the step cap
      cuts an episode (never at termination); False treats the cap as
      termination (see :func:`gae_advantages`).
  """
  check_settings(dict(critic_learning_rate=critic_learning_rate,
                      gae_lambda=gae_lambda,
                      bootstrap_truncated=bootstrap_truncated))
  env, gamma = setup.env, setup.gamma
  net = learner_lib.policy_net(setup)
  critic = policy_lib.Value(hidden=tuple(setup.hidden))
  tx = optax.adam(setup.learning_rate)
  critic_tx = optax.adam(critic_learning_rate)

  def init(key):
    params, k_val = learner_lib.init_policy(net, env, key)
    critic_params = critic.init(k_val, learner_lib.dummy_obs(env))
    return A2CTrainState(params, tx.init(params), critic_params,
                         critic_tx.init(critic_params))

  def gradients(state, ep):
    """The policy's and the critic's gradients from an episode."""

    def critic_loss(cp):
      values = critic.apply(cp, ep.obs)                     # [T]
      final_value = None
      if bootstrap_truncated:
        final_value = jax.lax.stop_gradient(critic.apply(cp, ep.final_obs))
      adv = gae_advantages(ep, jax.lax.stop_gradient(values), gamma,
                           gae_lambda, final_value)
      target = jax.lax.stop_gradient(adv + values)
      err = jnp.where(ep.mask, target - values, 0.0)
      return 0.5 * jnp.sum(err ** 2) / jnp.maximum(ep.length, 1), adv

    (_, adv), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic_params)
    grads = episodes.score_function_gradient(net.apply, state.params, ep, adv)
    return grads, critic_grads

  def estimate(state, key):
    ep = episodes.collect_episode(env, net.apply, state.params, key, gamma)
    grads, _ = gradients(state, ep)
    return grads, episodes.episode_info(ep)

  def update_from_episode(state, ep, key):
    del key  # A2C draws nothing beyond the episode.
    grads, critic_grads = gradients(state, ep)
    info = episodes.episode_info(ep)
    params, opt_state = learner_lib.ascend(tx, state.params, state.opt_state,
                                           grads)
    critic_params, critic_opt_state = learner_lib.descend(
        critic_tx, state.critic_params, state.critic_opt_state, critic_grads)
    return A2CTrainState(params, opt_state, critic_params,
                         critic_opt_state), info

  update = learner_lib.update_on_own_episode(setup, net, update_from_episode)
  return learner_lib.Learner(init=init, estimate=estimate, update=update,
                             update_from_episode=update_from_episode)


def check_settings(settings: Mapping[str, Any],
                   where: str = "learner_settings.a2c") -> None:
  """Checks A2C's settings; an error names ``config.<where>.<field>``."""
  fields = {f"{where}.{k}": v for k, v in settings.items()}
  checks.positive_number(fields, f"{where}.critic_learning_rate")
  checks.number(fields, f"{where}.gae_lambda", 0.0, 1.0)
  checks.boolean(fields, f"{where}.bootstrap_truncated")
