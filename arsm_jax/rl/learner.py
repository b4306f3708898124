"""What every RL learner is: the :class:`Learner` pair of pure functions.

A learner module (:mod:`~arsm_jax.rl.arsm`, :mod:`~arsm_jax.rl.a2c`,
:mod:`~arsm_jax.rl.relax`, :mod:`~arsm_jax.rl.reinforce_ma`) defines its own
train state (a ``NamedTuple`` pytree whose ``params`` field holds the
policy's parameters) and a ``make(setup, **settings) -> Learner``. The
keyword-only arguments of ``make`` are the learner's settings, with their
defaults; ``check_settings`` checks them up front. :mod:`arsm_jax.rl.registry`
maps the learners' names to their modules.

Every learner trains the same policy (a Flax MLP, :func:`policy_net`) with
Adam ascending the expected return (:func:`ascend`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from arsm_jax import envs as envs_lib
from arsm_jax.models import policy as policy_lib
from arsm_jax.rl import episodes

Array = jax.Array
Info = dict[str, Array]


class Setup(NamedTuple):
  """What every learner is built from, besides its own settings.

  Attributes:
    env: the environment.
    learning_rate: Adam step size of the policy.
    gamma: discount.
    hidden: hidden widths of the policy MLP (and of A2C's critic and RELAX's
      control variate).
  """

  env: envs_lib.JaxEnv
  learning_rate: float
  gamma: float
  hidden: tuple[int, ...] = (10, 10)


@dataclasses.dataclass(frozen=True)
class Learner:
  """A learner: pure functions of its train state and a key.

  Attributes:
    init: ``init(key) -> state``.
    estimate: ``estimate(state, key) -> (policy_grad, info)``: one estimate
      of the policy gradient (ascent direction) from one fresh episode, used
      for the gradient-variance measurements.
    update: ``update(state, key) -> (state, info)``: one training episode.
    update_from_episode: ``update_from_episode(state, episode, key) ->
      (state, info)``: the update from an episode collected elsewhere (a
      host simulator); ``key`` is RELAX's key for the conditional
      relaxations. None for ``arsm``, which needs rollouts.
  """

  init: Callable[[Array], Any]
  estimate: Callable[[Any, Array], tuple[Any, Info]]
  update: Callable[[Any, Array], tuple[Any, Info]]
  update_from_episode: Optional[Callable[
      [Any, episodes.Episode, Array], tuple[Any, Info]]] = None


def policy_net(setup: Setup) -> policy_lib.MLP:
  """The policy MLP of ``setup``: observation -> ``[C]`` logits."""
  return policy_lib.policy(setup.env.num_actions, setup.hidden)


def dummy_obs(env: envs_lib.JaxEnv) -> Array:
  """A zero observation of ``env`` (to initialise networks)."""
  return jnp.zeros(env.obs_shape, jnp.float32)


def init_policy(net: policy_lib.MLP, env: envs_lib.JaxEnv,
                key: Array) -> tuple[Any, Array]:
  """The policy's initial parameters and a key for the learner's own ones.

  Every learner splits its init key in two: the first initialises the
  policy, the second is the learner's (A2C's critic, RELAX's control
  variate; unused by the others).
  """
  k_policy, k_own = jax.random.split(key)
  return net.init(k_policy, dummy_obs(env)), k_own


def descend(tx: optax.GradientTransformation, params, opt_state,
            grads) -> tuple[Any, Any]:
  """One optimiser step of ``params`` down the loss gradient ``grads``.

  Returns:
    ``(params, opt_state)`` after the step.
  """
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def ascend(tx: optax.GradientTransformation, params, opt_state,
           grads) -> tuple[Any, Any]:
  """One optimiser step of ``params`` up the ascent direction ``grads``."""
  return descend(tx, params, opt_state,
                 jax.tree_util.tree_map(jnp.negative, grads))


def update_on_own_episode(setup: Setup, net: policy_lib.MLP,
                          update_from_episode: Callable[..., Any]):
  """``update(state, key)``: one episode of the current policy with ``key``,
  then ``update_from_episode(state, episode, key)`` (the learners that draw
  nothing else from the key: A2C, REINFORCE)."""

  def update(state, key):
    ep = episodes.collect_episode(setup.env, net.apply, state.params, key,
                                  setup.gamma)
    return update_from_episode(state, ep, key)

  return update


# fold_in data of the test episode's key, out of the range of the training
# key's own uses (split), so the training stream does not change with it.
_TEST_EPISODE_FOLD = 0x7e57


def test_episode_key(key: Array) -> Array:
  """Key of the test episode after the update that used ``key``."""
  return jax.random.fold_in(key, _TEST_EPISODE_FOLD)


def with_test_episode(learner: Learner, setup: Setup) -> Learner:
  """``learner`` whose ``update`` also runs one episode of the updated
  stochastic policy and reports its reward as ``test_reward``."""
  apply_fn = policy_net(setup).apply

  def update(state, key):
    new, info = learner.update(state, key)
    test = episodes.collect_episode(setup.env, apply_fn, new.params,
                                    test_episode_key(key), setup.gamma)
    return new, {**info, "test_reward": jnp.sum(test.rewards)}

  return dataclasses.replace(learner, update=update)
