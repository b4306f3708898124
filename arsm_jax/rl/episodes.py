r"""Episodes and rollouts: what every RL learner collects and measures.

One episode is collected per update with a fixed-capacity ``lax.while_loop``
(buffers of length ``max_steps``, stopped when the episode ends), so every
function here is pure, ``jit``-able and ``vmap``-able over seeds. Actions are
drawn by ARSM's Dirichlet augmentation
(:func:`arsm_jax.estimators.swap.augment`) whatever the learner, so every
learner's episode carries the draws that define its pseudo actions.

Episode-end conventions: the step cap is a time limit that belongs to the
state (rollouts from step t stop at the same cap), and ARSM's and the score
function learners' returns are not bootstrapped beyond it, so their Q is
that of the finite-horizon problem; only A2C's critic bootstraps at the cap.

Diagnostics in every learner's ``info`` (:func:`episode_info`): the mean
policy entropy over the episode's steps and the fraction of its steps with a
pseudo action that differs from the action (:func:`episode_diagnostics`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from arsm_jax import envs as envs_lib
from arsm_jax.estimators import swap

Array = jax.Array
ApplyFn = Callable[[Any, Array], Array]


class Episode(NamedTuple):
  """One episode in fixed-size buffers (entries at ``t >= length`` are zero).

  Attributes:
    obs: ``[T, *obs_shape]`` observation before the action at step t.
    states: pytree of ``[T, ...]`` environment states before step t.
    actions: ``[T]`` int32 actions.
    rewards: ``[T]`` rewards.
    pi: ``[T, C]`` the Dirichlet draws that chose the actions.
    log_pi: ``[T, C]``.
    logits: ``[T, C]`` policy logits at step t.
    mask: ``[T]`` True for steps of the episode.
    returns: ``[T]`` discounted return-to-go.
    length: number of steps.
    final_obs: ``[*obs_shape]`` observation after the last step (the state
      an A2C critic bootstraps from when the episode was truncated).
    terminated: True if the episode ended by termination, False if it was
      cut by the step cap (truncation).
  """

  obs: Array
  states: Any
  actions: Array
  rewards: Array
  pi: Array
  log_pi: Array
  logits: Array
  mask: Array
  returns: Array
  length: Array
  final_obs: Array
  terminated: Array


def step_keys(key, t):
  """Action and environment keys of step t (same in episodes and rollouts)."""
  return jax.random.split(jax.random.fold_in(key, t))


def discounted_returns(rewards: Array, mask: Array, gamma: float) -> Array:
  """Return-to-go ``G_t = r_t + gamma G_{t+1}`` over the masked steps."""

  def back(g_next, x):
    r, m = x
    g = jnp.where(m, r + gamma * g_next, 0.0)
    return g, g

  _, g = jax.lax.scan(back, jnp.zeros((), rewards.dtype), (rewards, mask),
                      reverse=True)
  return g


def replay_key(key: Array) -> Array:
  """The key with which :func:`rollout` replays the episode drawn with ``key``.

  A rollout from the visited state ``ep.states[t]`` at step t, with first
  action ``ep.actions[t]`` and this key, draws the same actions and
  environment noise as the episode and so returns ``ep.returns[t]``.
  """
  return jax.random.split(key)[1]


def collect_episode(env: envs_lib.JaxEnv, apply_fn: ApplyFn, params, key,
                    gamma: float) -> Episode:
  """Runs one episode with actions drawn by the Dirichlet augmentation.

  The action and environment keys of step t are
  ``step_keys(replay_key(key), t)``, the scheme :func:`rollout` uses.
  """
  num_steps = env.max_steps
  num_actions = env.num_actions
  k_reset = jax.random.split(key)[0]
  k_steps = replay_key(key)
  obs0, state0 = env.reset(k_reset)

  def buf(x):
    x = jnp.asarray(x)
    return jnp.zeros((num_steps,) + x.shape, x.dtype)

  bufs = Episode(
      obs=buf(obs0),
      states=jax.tree_util.tree_map(buf, state0),
      actions=jnp.zeros((num_steps,), jnp.int32),
      rewards=jnp.zeros((num_steps,), jnp.float32),
      pi=jnp.zeros((num_steps, num_actions), jnp.float32),
      log_pi=jnp.zeros((num_steps, num_actions), jnp.float32),
      logits=jnp.zeros((num_steps, num_actions), jnp.float32),
      mask=jnp.zeros((num_steps,), bool),
      returns=jnp.zeros((num_steps,), jnp.float32),
      length=jnp.zeros((), jnp.int32),
      final_obs=jnp.zeros_like(obs0),
      terminated=jnp.zeros((), bool))

  def cond(carry):
    t, _, _, done, _ = carry
    return jnp.logical_and(~done, t < num_steps)

  def body(carry):
    t, obs, state, _, b = carry
    k_act, k_env = step_keys(k_steps, t)
    logits = apply_fn(params, obs).astype(jnp.float32)      # [C]
    aug = swap.augment(k_act, logits[None])
    action = aug.z[0]
    next_obs, next_state, reward, terminated = env.step(k_env, state, action)
    b = b._replace(
        obs=b.obs.at[t].set(obs),
        states=jax.tree_util.tree_map(lambda bb, x: bb.at[t].set(x),
                                      b.states, state),
        actions=b.actions.at[t].set(action),
        rewards=b.rewards.at[t].set(reward),
        pi=b.pi.at[t].set(aug.pi[0]),
        log_pi=b.log_pi.at[t].set(aug.log_pi[0]),
        logits=b.logits.at[t].set(logits),
        mask=b.mask.at[t].set(True),
        length=t + 1,
        final_obs=next_obs,
        terminated=terminated)
    return t + 1, next_obs, next_state, terminated, b

  init = (jnp.zeros((), jnp.int32), obs0, state0, jnp.zeros((), bool), bufs)
  _, _, _, _, ep = jax.lax.while_loop(cond, body, init)
  return ep._replace(returns=discounted_returns(ep.rewards, ep.mask, gamma))


def rollout(env: envs_lib.JaxEnv, apply_fn: ApplyFn, params, key, state,
            t: Array, action: Array, gamma: float, active: Array = True,
            reference: Optional[Episode] = None) -> tuple[Array, Array]:
  r"""Discounted return of taking ``action`` in ``state`` at step ``t``.

  After the first action the current policy acts (its draw at step t' uses
  ``step_keys(key, t')``, as in :func:`collect_episode`) until termination
  or the step cap.

  With ``reference`` (the episode that visited ``state``) the rollout returns
  the *difference* :math:`Q(s_t, b) - G_t` with the episode's return-to-go,
  accumulated step by step as :math:`\sum_k \gamma^k (r^b_{t+k} -
  r_{t+k})` (minus the discounted rest of the episode if the rollout ends
  first). Where the rollout's rewards equal the episode's (Acrobot's -1 per
  step, CartPole's +1) the difference is then exactly zero instead of the
  float32 rounding error between two long sums; Adam would otherwise turn
  that systematic rounding error into full-size steps.

  Args:
    env: the environment.
    apply_fn: ``apply_fn(params, obs) -> logits [C]``.
    params: policy parameters.
    key: rollout key.
    state: environment state before step t.
    t: step index of ``state`` in its episode.
    action: first action.
    gamma: discount.
    active: when False nothing is simulated (used for the unused slots of a
      fixed-size batch of rollouts; their value is meaningless).
    reference: the episode to measure the return against, or None.

  Returns:
    ``(discounted return or its difference with the episode's, number of
    environment steps taken)``.
  """
  num_steps = env.max_steps

  def cond(carry):
    t_, *_, done, _ = carry
    return jnp.logical_and(~done, t_ < num_steps)

  def body(carry):
    t_, state_, action_, ret, disc, _, n = carry
    _, k_env = step_keys(key, t_)
    obs, state_, reward, terminated = env.step(k_env, state_, action_)
    if reference is not None:
      reward = reward - reference.rewards[t_]
    ret = ret + disc * reward
    k_act, _ = step_keys(key, t_ + 1)
    logits = apply_fn(params, obs).astype(jnp.float32)
    next_action = swap.augment(k_act, logits[None]).z[0]
    return (t_ + 1, state_, next_action, ret, disc * gamma, terminated, n + 1)

  init = (jnp.asarray(t, jnp.int32), state, jnp.asarray(action, jnp.int32),
          jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32),
          ~jnp.asarray(active, bool), jnp.zeros((), jnp.int32))
  t_end, _, _, ret, disc, _, n = jax.lax.while_loop(cond, body, init)
  if reference is not None:
    rest = jnp.where(t_end < num_steps,
                     reference.returns[jnp.minimum(t_end, num_steps - 1)], 0.0)
    ret = ret - disc * rest
  return ret, n


def step_pseudo_actions(log_pi: Array, logits: Array) -> Array:
  """``[T, C, C]`` pseudo actions of every step (K = 1 per step)."""
  return jax.vmap(lambda lp, lg: swap.pseudo_actions(lp[None], lg[None])[0])(
      log_pi, logits)


def eligible_mask(ep: Episode) -> Array:
  """``[T]`` True at steps with a pseudo action that differs from the action.

  Those are the steps where ARSM's gradient can be non-zero (and that need
  rollouts); the pseudo actions come from the episode's Dirichlet draws, so
  this is defined for every learner's episodes.
  """
  pseudo = step_pseudo_actions(ep.log_pi, ep.logits)        # [T, C, C]
  differs = jnp.any(pseudo != ep.actions[:, None, None], axis=(-2, -1))
  return differs & ep.mask


def episode_diagnostics(ep: Episode,
                        num_eligible: Optional[Array] = None
                        ) -> dict[str, Array]:
  r"""Per-episode policy diagnostics.

  Args:
    ep: the episode.
    num_eligible: its number of eligible steps if already counted.

  Returns:
    ``entropy``: the policy's entropy :math:`-\sum_c p_c\log p_c` (nats)
    averaged over the episode's steps; ``eligible_fraction``: the fraction of
    its steps with a pseudo action that differs from the action (0 for a
    deterministic policy, where ARSM has no signal).
  """
  logp = jax.nn.log_softmax(ep.logits)                      # [T, C]
  ent = -jnp.sum(jnp.where(logp > -jnp.inf, jnp.exp(logp) * logp, 0.0),
                 axis=-1)                                   # [T]
  length = jnp.maximum(ep.length, 1).astype(jnp.float32)
  if num_eligible is None:
    num_eligible = jnp.sum(eligible_mask(ep))
  return {"entropy": jnp.sum(jnp.where(ep.mask, ent, 0.0)) / length,
          "eligible_fraction": num_eligible.astype(jnp.float32) / length}


def _log_probs_taken(apply_fn, params, ep: Episode) -> Array:
  logits = jax.vmap(lambda o: apply_fn(params, o))(ep.obs)  # [T, C]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  return jnp.take_along_axis(logp, ep.actions[:, None], axis=1)[:, 0]


def episode_info(ep: Episode) -> dict[str, Array]:
  """The ``info`` of a learner without rollouts: the episode's reward,
  length, steps and :func:`episode_diagnostics`."""
  zero = jnp.zeros((), jnp.int32)
  num_eligible = jnp.sum(eligible_mask(ep)).astype(jnp.int32)
  return {"reward": jnp.sum(ep.rewards), "length": ep.length,
          "num_rollouts": zero, "rollout_steps": zero,
          "env_steps": ep.length, "eligible_steps": num_eligible,
          **episode_diagnostics(ep, num_eligible)}


def score_function_gradient(apply_fn: ApplyFn, params, ep: Episode,
                            advantages: Array) -> Any:
  r"""``grad_theta sum_t sg(A_t) log pi(a_t | s_t)`` over the episode."""
  adv = jax.lax.stop_gradient(jnp.where(ep.mask, advantages, 0.0))
  return jax.grad(
      lambda p: jnp.sum(adv * _log_probs_taken(apply_fn, p, ep)))(params)
