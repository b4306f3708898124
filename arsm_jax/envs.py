"""Environment adapters for the RL experiment.

Every supported environment is a JAX-native gymnax environment wrapped in a
:class:`JaxEnv`: ``reset(key) -> (obs, state)`` and
``step(key, state, action) -> (obs, state, reward, terminated)`` are pure
functions and the state is a pytree, so a rollout from any visited state is a
function of that state that can be ``vmap``-ped over pseudo actions and
``jit``-ted.

Unlike gymnax's own ``Environment.step`` (which in gymnax 1.x returns six
values, ``obs, state, reward, terminated, truncated, info``, and resets
automatically), :meth:`JaxEnv.step` never resets: the learners keep the step
count themselves and end an episode at ``terminated`` or at the step cap
``max_steps``. ``terminated`` is the natural termination only (gymnax's
``step_env`` leaves the time limit out), so an episode that reaches the cap
without it was truncated. The cap therefore acts as a time limit that is
part of the state (the step index), the same for the observed episode and
for every rollout branching off it.

LunarLander-v3 (gymnasium with Box2D) is simulated outside JAX, on the host:
its state cannot be copied, so it has no :class:`JaxEnv`; the ARSM learner
reaches visited states by replay in :mod:`arsm_jax.rl.host`, where the
learners without rollouts also collect their episodes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array

# name -> (gymnax id, solved threshold on the 100-episode moving average).
_GYMNAX = {
    "CartPole-v1": ("CartPole-v1", 475.0),
    "Acrobot-v1": ("Acrobot-v1", -100.0),
}

JAX_ENVS = tuple(_GYMNAX)
# Simulated on the host (arsm_jax.rl.host): name -> (step cap, solved).
HOST_ENVS = {"LunarLander-v3": (1000, 200.0)}
SUPPORTED = JAX_ENVS + tuple(HOST_ENVS)


@dataclasses.dataclass(frozen=True)
class JaxEnv:
  """A JAX environment with pure ``reset`` and non-resetting ``step``.

  Attributes:
    name: environment id, e.g. ``'CartPole-v1'``.
    num_actions: number of discrete actions C.
    obs_shape: shape of one observation.
    max_steps: step cap of an episode (and of every rollout from it).
    solved_threshold: the 100-episode moving-average reward counted as solved.
    reset: ``reset(key) -> (obs, state)``.
    step: ``step(key, state, action) -> (obs, state, reward, terminated)``.
  """

  name: str
  num_actions: int
  obs_shape: tuple[int, ...]
  max_steps: int
  solved_threshold: float
  reset: Callable[[Array], tuple[Array, Any]]
  step: Callable[[Array, Any, Array], tuple[Array, Any, Array, Array]]


def make(name: str, max_steps: int = 0) -> JaxEnv:
  """Returns the adapter for environment ``name``.

  Args:
    name: one of :data:`JAX_ENVS`.
    max_steps: step cap per episode; ``0`` keeps the environment's own limit
      (500 for CartPole-v1 and Acrobot-v1).

  Raises:
    ValueError: for an unsupported name or a negative ``max_steps``.
  """
  if name in HOST_ENVS:
    raise ValueError(
        f"{name} is simulated outside JAX and has no JaxEnv; use "
        "arsm_jax.rl.host (HostArsm for arsm, HostBatch for the others).")
  if name not in _GYMNAX:
    raise ValueError(
        f"Unsupported environment {name!r}; supported: {', '.join(SUPPORTED)}.")
  if max_steps < 0:
    raise ValueError(f"max_steps must be >= 0 (0 = the environment's own "
                     f"limit); got {max_steps}.")
  import gymnax  # pylint: disable=g-import-not-at-top
  gym_id, threshold = _GYMNAX[name]
  env, params = gymnax.make(gym_id)
  if max_steps:
    params = params.replace(max_steps_in_episode=int(max_steps))
  cap = int(params.max_steps_in_episode)

  def reset(key):
    return env.reset_env(key, params)

  def step(key, state, action):
    obs, state, reward, terminated, _ = env.step_env(key, state, action, params)
    return (obs, state, jnp.asarray(reward, jnp.float32),
            jnp.asarray(terminated, bool))

  obs_shape = tuple(env.observation_space(params).shape)
  return JaxEnv(name=name, num_actions=int(env.num_actions),
                obs_shape=obs_shape, max_steps=cap,
                solved_threshold=threshold, reset=reset, step=step)
