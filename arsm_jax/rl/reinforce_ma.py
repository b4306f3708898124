r"""REINFORCE with a moving-average baseline.

The score function with advantage :math:`G_t - b`, where b is an exponential
moving average of the per-episode mean return-to-go (updated after each
episode, so an episode's own returns never enter its baseline).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from arsm_jax import config_checks as checks
from arsm_jax.rl import episodes
from arsm_jax.rl import learner as learner_lib

Array = jax.Array


class ReinforceMaTrainState(NamedTuple):
  """REINFORCE's train state (a pytree; ``vmap`` over seeds).

  Attributes:
    params: policy parameters.
    opt_state: their Adam state.
    baseline: the moving-average baseline b.
  """

  params: Any
  opt_state: Any
  baseline: Array


def make(setup: learner_lib.Setup, *,
         baseline_decay: float = 0.9) -> learner_lib.Learner:
  """REINFORCE with a moving-average baseline
  (its settings: ``config.learner_settings.reinforce_ma``).

  Args:
    setup: the environment, policy and discount.
    baseline_decay: decay of the moving-average baseline, in [0, 1).
  """
  check_settings(dict(baseline_decay=baseline_decay))
  env, gamma = setup.env, setup.gamma
  net = learner_lib.policy_net(setup)
  tx = optax.adam(setup.learning_rate)

  def init(key):
    params, _ = learner_lib.init_policy(net, env, key)
    return ReinforceMaTrainState(params, tx.init(params),
                                 jnp.zeros((), jnp.float32))

  def gradient(state, ep):
    adv = ep.returns - state.baseline
    return episodes.score_function_gradient(net.apply, state.params, ep, adv)

  def estimate(state, key):
    ep = episodes.collect_episode(env, net.apply, state.params, key, gamma)
    return gradient(state, ep), episodes.episode_info(ep)

  def update_from_episode(state, ep, key):
    del key  # REINFORCE draws nothing beyond the episode.
    grads = gradient(state, ep)
    info = episodes.episode_info(ep)
    mean_return = jnp.sum(ep.returns) / jnp.maximum(ep.length, 1)
    params, opt_state = learner_lib.ascend(tx, state.params, state.opt_state,
                                           grads)
    baseline = (baseline_decay * state.baseline
                + (1.0 - baseline_decay) * mean_return)
    return ReinforceMaTrainState(params, opt_state, baseline), info

  update = learner_lib.update_on_own_episode(setup, net, update_from_episode)
  return learner_lib.Learner(init=init, estimate=estimate, update=update,
                             update_from_episode=update_from_episode)


def check_settings(settings: Mapping[str, Any],
                   where: str = "learner_settings.reinforce_ma") -> None:
  """Checks REINFORCE's settings; an error names
  ``config.<where>.<field>``."""
  fields = {f"{where}.{k}": v for k, v in settings.items()}
  checks.number(fields, f"{where}.baseline_decay", 0.0, 1.0, high_open=True)
