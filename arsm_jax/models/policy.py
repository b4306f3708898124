"""RL networks: the policy, the A2C critic, the RELAX control variate."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """``obs [..., D] -> [..., num_outputs]`` through ReLU hidden layers.

  Attributes:
    num_outputs: number of actions for a policy (its logits), 1 for a value
      function.
    hidden: widths of the hidden layers (the paper: two of 10).
  """

  num_outputs: int
  hidden: Sequence[int] = (10, 10)

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    x = jnp.asarray(obs, jnp.float32)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_outputs)(x)


def policy(num_actions: int, hidden: Sequence[int] = (10, 10)) -> MLP:
  """The policy network: observations to action logits."""
  return MLP(num_outputs=num_actions, hidden=tuple(hidden))


class Value(nn.Module):
  """The critic of A2C: observations to a scalar state value."""

  hidden: Sequence[int] = (10, 10)

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    return MLP(num_outputs=1, hidden=tuple(self.hidden))(obs)[..., 0]


class ControlVariate(nn.Module):
  r"""RELAX's control variate :math:`c_\varphi(s, z)`: an MLP of the state
  and the relaxed action.

  ``(obs [..., D], relaxed [..., C]) -> [...]``: the observation and the
  relaxed (Gumbel-Softmax) action are concatenated and mapped through ReLU
  hidden layers to a scalar.
  """

  hidden: Sequence[int] = (10, 10)

  @nn.compact
  def __call__(self, obs: jax.Array, relaxed: jax.Array) -> jax.Array:
    x = jnp.concatenate([jnp.asarray(obs, jnp.float32),
                         jnp.asarray(relaxed, jnp.float32)], axis=-1)
    return MLP(num_outputs=1, hidden=tuple(self.hidden))(x)[..., 0]
