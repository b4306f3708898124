r"""Policy-gradient learners: ARSM with counterfactual rollouts, A2C, RELAX,
REINFORCE.

All learners maximise the expected discounted return of an episode. One
episode is collected per update with a fixed-capacity ``lax.while_loop``
(buffers of length ``max_steps``, stopped when the episode ends), so every
function here is pure, ``jit``-able and ``vmap``-able over seeds.

**ARSM** (Yin, Yue and Zhou 2019, section 3 of the notes). The action at step
t is drawn by the augmentation, :math:`a_t = \arg\min_i(\log\varpi_{ti} -
\phi_{ti})`, :math:`\varpi_t \sim \mathrm{Dir}(1_C)`, and the gradient with
respect to the step's logits is ARSM with :math:`f(a) = Q(s_t, a)`:

.. math::

  g_{tc} = \sum_j \Big[Q(s_t, a_t^{c\rightleftharpoons j})
           - \tfrac1C \sum_m Q(s_t, a_t^{m\rightleftharpoons j})\Big]
           \big(\tfrac1C - \varpi_{tj}\big).

``Q(s_t, a_t)`` is the observed discounted return-to-go ``G_t``; for every
*distinct* pseudo action ``b != a_t`` one rollout from the visited state
``s_t`` (first action b, then the current policy until the episode ends or
reaches the step cap) estimates ``Q(s_t, b)``. Since the formula is unchanged
by subtracting ``G_t`` from every Q, the rollouts accumulate
``Q(s_t, b) - G_t`` reward by reward against the episode (see
:func:`rollout`), which keeps float32 rounding out of the gradient. Steps
whose pseudo actions all equal ``a_t`` have :math:`g_t = 0` exactly and cost
nothing. The policy parameters get
:math:`\sum_t \partial\phi_t/\partial\theta \cdot g_t` through the surrogate
:math:`\sum_t \mathrm{sg}(g_t)\cdot\phi_t(\theta)` (the usual
:math:`\gamma^t` factor of the discounted policy-gradient theorem is dropped,
as the authors and most A2C code do).

**The rollout cap.** With ``max_rollouts = R > 0`` at most
``S = max(1, R // (C - 1))`` steps get rollouts (each such step needs at most
``C - 1`` rollouts, so an episode never does more than ``max(R, C - 1)``).
Call a step *eligible* if it has a pseudo action different from ``a_t``, and
let N be the number of eligible steps. If ``N <= S`` every eligible step gets
its rollouts (nothing is dropped). Otherwise S eligible steps are drawn
uniformly without replacement (independently of everything else) and each
chosen step's :math:`g_t` is multiplied by ``N / S``. Given the episode and
the Dirichlet draws each eligible step is chosen with probability ``S / N``,
and the selection is independent of the rollouts, so this Horvitz-Thompson
reweighting keeps the estimate unbiased (the tabular-MDP test checks it with
the cap binding); it adds variance when the cap binds. With ``R <= 0``
(uncapped) every eligible step gets its rollouts. For CartPole (C = 2) the
cap is exactly R rollouts, i.e. 16 as published; for Acrobot (C = 3) it is 8
steps, at most 16 rollouts. This is ``rollout_budget="unbiased"``.

**The authors' budget rule** (``rollout_budget="authors"``): the eligible
steps are visited in a uniformly random order and each is taken, with all of
its rollouts, while the rollouts used so far plus its own still fit in R;
the first step that does not fit ends the walk. The other steps get zero
gradient and nothing is reweighted, so when the cap binds the estimate is
biased (each eligible step's expected contribution is scaled by k/N for k
steps taken, so long episodes count less) and has lower variance. For C = 2
it takes the same steps as the unbiased rule, without the ``N / S`` weight;
for C = 3 it takes up to R steps (at least R/2 when that many are eligible).

**A2C**: advantage actor-critic, a learned value function :math:`V` (a
separate MLP of the same shape), advantages by GAE(:math:`\lambda`) over the
episode, critic regressed onto :math:`\hat A_t + V(s_t)`. With
:math:`\lambda = 1` the advantage is the Monte-Carlo return minus
:math:`V(s_t)`. An episode cut by the step cap (not terminated) bootstraps
from :math:`V(s_T)` at its last state (``a2c_bootstrap_truncated``), since
the critic does not see the time.

**RELAX** (``relax``, Grathwohl et al. 2018): the score function with a
learned, action-dependent control variate :math:`c_\varphi(s, z)` of the
state and the relaxed action, made unbiased by its reparameterised
correction; :math:`\varphi` minimises the estimator's variance with its own
Adam (see :func:`relax_policy_gradient`).

**REINFORCE with a moving-average baseline** (``reinforce_ma``): score
function with advantage :math:`G_t - b`, where b is an exponential moving
average of the per-episode mean return-to-go.

Episode-end conventions: the step cap is a time limit that belongs to the
state (rollouts from step t stop at the same cap), and ARSM's and the score
function learners' returns are not bootstrapped beyond it, so their Q is
that of the finite-horizon problem; only A2C's critic bootstraps at the cap.

Diagnostics in every learner's ``info``: the mean policy entropy over the
episode's steps and the fraction of its steps with a pseudo action that
differs from the action (:func:`episode_diagnostics`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from arsm_jax import envs as envs_lib
from arsm_jax.estimators import swap
from arsm_jax.models import policy as policy_lib

Array = jax.Array
ApplyFn = Callable[[Any, Array], Array]

LEARNERS = ("arsm", "a2c", "reinforce_ma", "relax")


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


def arsm_step_gradient(q_values: Array, pseudo: Array, pi: Array) -> Array:
  r"""ARSM gradient w.r.t. one step's logits from action values.

  Args:
    q_values: ``[C]`` estimates of :math:`Q(s_t, b)`; only the entries of
      actions that appear in ``pseudo`` are used.
    pseudo: ``[C, C]`` pseudo actions :math:`a^{c\rightleftharpoons j}`.
    pi: ``[C]`` the Dirichlet draw.

  Returns:
    ``[C]``: :math:`\sum_j (F_{cj} - \bar F_{\cdot j})(1/C - \pi_j)`.
  """
  num_actions = pi.shape[-1]
  f = q_values[pseudo]                                      # [C, C] = F[c, j]
  centred = f - jnp.mean(f, axis=0, keepdims=True)
  return centred @ (1.0 / num_actions - pi)


ROLLOUT_BUDGETS = ("unbiased", "authors")


def rollout_capacity(max_steps: int, num_actions: int, max_rollouts: int,
                     rollout_budget: str = "unbiased") -> int:
  """Number of step slots with rollouts per episode (see the module doc).

  Under ``"unbiased"`` every chosen step is budgeted ``C - 1`` rollouts, so
  ``S = max(1, R // (C - 1))``; under ``"authors"`` a step costs the rollouts
  it actually needs (at least one), so up to ``R`` steps can get them.
  """
  if rollout_budget not in ROLLOUT_BUDGETS:
    raise ValueError(f"rollout_budget must be one of {ROLLOUT_BUDGETS}; got "
                     f"{rollout_budget!r}.")
  if max_rollouts <= 0:
    return max_steps
  if rollout_budget == "authors":
    return min(max_steps, max_rollouts)
  return min(max_steps, max(1, max_rollouts // (num_actions - 1)))


class RolloutPlan(NamedTuple):
  """An episode and the rollouts ARSM needs from it (``S`` step slots).

  Attributes:
    episode: the :class:`Episode`.
    idx: ``[S]`` steps given rollout slots.
    weight: ``[S]`` weight of each slot's gradient (0 if unused): the
      Horvitz-Thompson ``N / S`` under the unbiased rule, 1 under the
      authors'.
    pseudo: ``[S, C, C]`` pseudo actions of those steps.
    actions: ``[S, C-1]`` the actions other than the taken one.
    active: ``[S, C-1]`` which of them need a rollout.
    starts: pytree of ``[S, ...]`` visited states to roll out from.
    keys: ``[S, C-1, 2]`` rollout keys.
    eligible_steps: number of steps with a pseudo action != the action.
  """

  episode: Episode
  idx: Array
  weight: Array
  pseudo: Array
  actions: Array
  active: Array
  starts: Any
  keys: Array
  eligible_steps: Array


def plan_rollouts(ep: Episode, key, *, max_rollouts: int,
                  rollout_key: Optional[Array] = None,
                  rollout_budget: str = "unbiased") -> RolloutPlan:
  """Picks the steps and pseudo actions of an episode to roll out.

  See the module doc for which steps get rollouts when the cap binds.

  Args:
    ep: the episode.
    key: PRNG key for the selection and (without ``rollout_key``) for the
      rollouts, one independent key each.
    max_rollouts: the cap (<= 0: uncapped).
    rollout_key: if given, every rollout uses this key (common random
      numbers; pass ``replay_key`` of the episode's key).
    rollout_budget: ``"unbiased"`` (S eligible steps uniformly, reweighted
      by N / S) or ``"authors"`` (eligible steps in a random order, each
      taken while its rollouts still fit in the cap; no reweighting, so
      biased when the cap binds).
  """
  num_steps, num_actions = ep.logits.shape
  k_sel, k_roll = jax.random.split(key)
  pseudo = step_pseudo_actions(ep.log_pi, ep.logits)        # [T, C, C]
  offsets = 1 + jnp.arange(num_actions - 1, dtype=jnp.int32)
  others = (ep.actions[:, None] + offsets) % num_actions    # [T, C-1]
  need = jnp.any(pseudo[:, None, :, :] == others[:, :, None, None],
                 axis=(-2, -1)) & ep.mask[:, None]          # [T, C-1]
  eligible = jnp.any(need, axis=-1)                         # [T]
  num_eligible = jnp.sum(eligible)

  capacity = rollout_capacity(num_steps, num_actions, max_rollouts,
                              rollout_budget)
  if capacity >= num_steps:
    idx = jnp.arange(num_steps)
    chosen = eligible
    weight = chosen.astype(jnp.float32)
  else:
    u = jax.random.uniform(k_sel, (num_steps,))
    # Eligible steps in a uniformly random order (ineligible ones last).
    _, idx = jax.lax.top_k(jnp.where(eligible, u, -1.0), capacity)  # [S]
    chosen = eligible[idx]
    if rollout_budget == "authors":
      # Walk the random order, taking a step while its rollouts still fit.
      cost = jnp.sum(need[idx], axis=-1)                    # [S]
      chosen = chosen & (jnp.cumsum(cost) <= max_rollouts)
      weight = chosen.astype(jnp.float32)
    else:
      num_chosen = jnp.minimum(num_eligible, capacity)
      scale = num_eligible / jnp.maximum(num_chosen, 1)
      weight = jnp.where(chosen, scale, 0.0).astype(jnp.float32)

  num_slots = idx.shape[0] * (num_actions - 1)
  if rollout_key is None:
    keys = jax.random.split(k_roll, num_slots)
  else:
    keys = jnp.broadcast_to(rollout_key, (num_slots,) + rollout_key.shape)
  return RolloutPlan(
      episode=ep, idx=idx, weight=weight, pseudo=pseudo[idx],
      actions=others[idx], active=need[idx] & chosen[:, None],
      starts=jax.tree_util.tree_map(lambda x: x[idx], ep.states),
      keys=keys.reshape((idx.shape[0], num_actions - 1) + keys.shape[1:]),
      eligible_steps=num_eligible.astype(jnp.int32))


def arsm_plan(env: envs_lib.JaxEnv, apply_fn: ApplyFn, params, key, *,
              gamma: float, max_rollouts: int,
              common_random_numbers: bool = False,
              rollout_budget: str = "unbiased") -> RolloutPlan:
  """Collects an episode and picks the steps and pseudo actions to roll out.

  With ``common_random_numbers`` every rollout draws its later actions with
  the episode's own keys (:func:`replay_key`), so a pseudo action's rollout
  and the observed continuation differ through the first action rather than
  through independent noise. Still unbiased: the keys of steps after t are
  independent of step t's Dirichlet draw, and the capped selection is
  independent of all rollouts. ``rollout_budget`` is passed to
  :func:`plan_rollouts`.
  """
  k_ep, k_plan = jax.random.split(key)
  ep = collect_episode(env, apply_fn, params, k_ep, gamma)
  return plan_rollouts(
      ep, k_plan, max_rollouts=max_rollouts,
      rollout_key=replay_key(k_ep) if common_random_numbers else None,
      rollout_budget=rollout_budget)


def vmapped_rollouts(env: envs_lib.JaxEnv, apply_fn: ApplyFn, params,
                     plan: RolloutPlan, gamma: float) -> tuple[Array, Array]:
  """All of a plan's rollouts at once: ``vmap`` over (step, action) pairs.

  Returns:
    ``[S, C-1]`` differences ``Q(s_t, b) - G_t`` (see :func:`rollout` with a
    ``reference``) and ``[S, C-1]`` numbers of environment steps.
  """

  def one(k, state, t, b, act):
    return rollout(env, apply_fn, params, k, state, t, b, gamma, act,
                   reference=plan.episode)

  over_actions = jax.vmap(one, in_axes=(0, None, None, 0, 0))
  return jax.vmap(over_actions)(plan.keys, plan.starts, plan.idx,
                                plan.actions, plan.active)


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


def arsm_finish(apply_fn: ApplyFn, params, plan: RolloutPlan,
                q_minus_g: Array, steps: Array) -> tuple[Any, dict[str, Array]]:
  """The policy gradient from a plan and its rollouts.

  Args:
    apply_fn: the policy.
    params: its parameters.
    plan: the :class:`RolloutPlan`.
    q_minus_g: ``[S, C-1]`` rollout estimates of ``Q(s_t, b) - G_t`` for the
      plan's ``actions`` (ARSM's centred values are unchanged by subtracting
      the same ``G_t`` from every entry, and the taken action's entry is
      then exactly 0).
    steps: ``[S, C-1]`` environment steps of each rollout.
  """
  ep = plan.episode
  num_slots, num_actions = plan.pseudo.shape[:2]
  q = jnp.zeros((num_slots, num_actions), jnp.float32)
  rows = jnp.arange(num_slots)[:, None]
  q = q.at[rows, plan.actions].set(
      jnp.where(plan.active, q_minus_g, 0.0))               # [S, C]
  g = jax.vmap(arsm_step_gradient)(q, plan.pseudo, ep.pi[plan.idx])
  g = jax.lax.stop_gradient(g * plan.weight[:, None])       # [S, C]
  obs = ep.obs[plan.idx]

  def surrogate(p):
    logits = jax.vmap(lambda o: apply_fn(p, o))(obs)       # [S, C]
    return jnp.sum(g * logits)

  grads = jax.grad(surrogate)(params)
  rollout_steps = jnp.sum(jnp.where(plan.active, steps, 0))
  info = {
      "reward": jnp.sum(ep.rewards),
      "length": ep.length,
      "num_rollouts": jnp.sum(plan.active).astype(jnp.int32),
      "rollout_steps": rollout_steps,
      "env_steps": ep.length + rollout_steps,
      "eligible_steps": plan.eligible_steps,
      **episode_diagnostics(ep, plan.eligible_steps),
  }
  return grads, info


def arsm_policy_gradient(env: envs_lib.JaxEnv, apply_fn: ApplyFn, params, key,
                         *, gamma: float, max_rollouts: int,
                         common_random_numbers: bool = False,
                         rollout_budget: str = "unbiased"
                         ) -> tuple[Any, dict[str, Array]]:
  """One ARSM estimate of the policy gradient from one episode.

  :func:`arsm_plan`, then :func:`vmapped_rollouts`, then :func:`arsm_finish`.

  Returns:
    ``(grads, info)``: ``grads`` is shaped like ``params`` and estimates the
    gradient of the expected return (ascent direction); ``info`` has the
    episode's ``reward`` and ``length``, ``num_rollouts``, ``rollout_steps``
    and ``env_steps`` (episode plus rollout steps), ``eligible_steps``, and
    the :func:`episode_diagnostics`.
  """
  plan = arsm_plan(env, apply_fn, params, key, gamma=gamma,
                   max_rollouts=max_rollouts,
                   common_random_numbers=common_random_numbers,
                   rollout_budget=rollout_budget)
  returns, steps = vmapped_rollouts(env, apply_fn, params, plan, gamma)
  return arsm_finish(apply_fn, params, plan, returns, steps)


def _log_probs_taken(apply_fn, params, ep: Episode) -> Array:
  logits = jax.vmap(lambda o: apply_fn(params, o))(ep.obs)  # [T, C]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  return jnp.take_along_axis(logp, ep.actions[:, None], axis=1)[:, 0]


def _episode_info(ep: Episode) -> dict[str, Array]:
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
  return discounted_returns(deltas, ep.mask, gamma * lam)


def conditional_gumbel(log_probs: Array, action: Array, key) -> Array:
  r"""Gumbel-max perturbations conditioned on their argmax.

  Draws :math:`\tilde z \sim p(z \mid \arg\max z = b)` for
  :math:`z_i = \log p_i + g_i`, :math:`g_i` standard Gumbel, reparameterised
  in ``log_probs``. Given b, the maximum :math:`\tilde z_b` is a standard
  Gumbel (independent of b), and the other coordinates are independent
  Gumbels of location :math:`\log p_i` truncated below :math:`\tilde z_b`:
  with :math:`E_i = -\log v_i`, :math:`v \sim U(0, 1)^C`,

  .. math::

    \tilde z_b = -\log E_b, \qquad
    \tilde z_i = -\log\big(E_i / p_i + E_b\big) \quad (i \ne b),

  since :math:`e^{-\tilde z_i} - e^{-\tilde z_b}` is exponential with rate
  :math:`p_i`. Computed as a ``logaddexp`` so tiny :math:`p_i` stay finite.

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
  log_e = jnp.log(-jnp.log(v))                              # [C] log E_i
  top = -log_e[action]
  rest = -jnp.logaddexp(log_e - log_probs, log_e[action])
  return jnp.where(jnp.arange(log_probs.shape[0]) == action, top, rest)


class RelaxParams(NamedTuple):
  """RELAX's control-variate parameters (phi).

  Attributes:
    net: parameters of :class:`~arsm_jax.models.policy.ControlVariate`.
    log_temperature: log of the Gumbel-Softmax temperature of the relaxed
      actions it sees (learned with the net).
  """

  net: Any
  log_temperature: Array


def relax_policy_gradient(env: envs_lib.JaxEnv, apply_fn: ApplyFn,
                          cv_fn: Callable[[Any, Array, Array], Array], params,
                          cv_params: RelaxParams, key, *, gamma: float
                          ) -> tuple[Any, RelaxParams, dict[str, Array]]:
  r"""One RELAX estimate of the policy gradient and of its variance gradient.

  Discrete-action RELAX (Grathwohl et al. 2018, section 3.3 and appendix).
  At step t the action :math:`b_t = \arg\max_c z_{tc}` with
  :math:`z_t = \phi_t + g_t` (policy logits plus Gumbel noise: the episode's
  Dirichlet draw gives :math:`g_{tc} = -\log\varpi_{tc}` up to a per-step
  constant, and the augmentation's action is exactly that argmax),
  :math:`\tilde z_t \sim p(z \mid b_t)` from :func:`conditional_gumbel`, and
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
    cv_params: :class:`RelaxParams`.
    key: PRNG key.
    gamma: discount.

  Returns:
    ``(grads, cv_grads, info)``: ``grads`` shaped like ``params`` (ascent
    direction), ``cv_grads`` the gradient of :math:`\|\hat g\|^2` w.r.t.
    ``cv_params`` (descent direction), ``info`` as :func:`_episode_info`.
  """
  k_ep, k_cond = jax.random.split(key)
  ep = collect_episode(env, apply_fn, params, k_ep, gamma)
  return relax_episode_gradient(apply_fn, cv_fn, params, cv_params, ep,
                                k_cond)


def relax_episode_gradient(apply_fn: ApplyFn,
                           cv_fn: Callable[[Any, Array, Array], Array], params,
                           cv_params: RelaxParams, ep: Episode, key
                           ) -> tuple[Any, RelaxParams, dict[str, Array]]:
  r""":func:`relax_policy_gradient` from a collected episode.

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
    z_cond = jax.vmap(conditional_gumbel)(log_probs, ep.actions, cond_keys)
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
  return grads, cv_grads, _episode_info(ep)


class TrainState(NamedTuple):
  """Per-seed training state (a pytree; ``vmap`` over seeds).

  Attributes:
    params: policy parameters.
    opt_state: the policy's Adam state.
    critic_params: A2C's value-function parameters, RELAX's
      :class:`RelaxParams` (``()`` otherwise).
    critic_opt_state: their Adam state (``()`` otherwise).
    baseline: REINFORCE's moving-average baseline (0 otherwise).
  """

  params: Any
  opt_state: Any
  critic_params: Any
  critic_opt_state: Any
  baseline: Array


@dataclasses.dataclass(frozen=True)
class Learner:
  """A learner: pure functions of a :class:`TrainState` and a key.

  Attributes:
    name: learner name.
    env: the environment.
    init: ``init(key) -> TrainState``.
    estimate: ``estimate(state, key) -> (policy_grad, info)``: one estimate
      of the policy gradient (ascent direction) from one fresh episode, used
      for the gradient-variance measurements.
    update: ``update(state, key) -> (state, info)``: one training episode
      (with ``test_episode``, ``info`` adds ``test_reward``, the reward of
      one fresh episode of the updated stochastic policy).
    update_from_episode: ``update_from_episode(state, episode, key) ->
      (state, info)``: the update from an episode collected elsewhere (a
      host simulator); ``key`` is RELAX's key for the conditional
      relaxations. None for ``arsm``, which needs rollouts.
  """

  name: str
  env: envs_lib.JaxEnv
  init: Callable[[Array], TrainState]
  estimate: Callable[[TrainState, Array], tuple[Any, dict[str, Array]]]
  update: Callable[[TrainState, Array], tuple[TrainState, dict[str, Array]]]
  update_from_episode: Optional[Callable[
      [TrainState, Episode, Array], tuple[TrainState, dict[str, Array]]]] = None


# fold_in data of the test episode's key, out of the range of the training
# key's own uses (split), so the training stream does not change with it.
_TEST_EPISODE_FOLD = 0x7e57


def test_episode_key(key: Array) -> Array:
  """Key of the test episode after the update that used ``key``."""
  return jax.random.fold_in(key, _TEST_EPISODE_FOLD)


def make_learner(name: str, env: envs_lib.JaxEnv, *, learning_rate: float,
                 gamma: float, max_rollouts: int = 16,
                 hidden: tuple[int, ...] = (10, 10),
                 critic_learning_rate: float = 0.03, gae_lambda: float = 0.95,
                 baseline_decay: float = 0.9,
                 common_random_numbers: bool = False,
                 rollout_budget: str = "unbiased",
                 a2c_bootstrap_truncated: bool = True,
                 relax_temperature: float = 0.5,
                 relax_learning_rate: float = 0.03,
                 test_episode: bool = False) -> Learner:
  """Builds learner ``name`` (one of :data:`LEARNERS`) for ``env``.

  Args:
    name: the learner.
    env: the environment.
    learning_rate: Adam step size of the policy.
    gamma: discount.
    max_rollouts: ARSM's rollout cap per episode (<= 0: uncapped).
    hidden: hidden widths of the policy, critic and control-variate MLPs.
    critic_learning_rate: Adam step size of A2C's critic.
    gae_lambda: A2C's GAE lambda.
    baseline_decay: ``reinforce_ma``'s moving-average decay.
    common_random_numbers: ARSM's rollouts reuse the episode's keys.
    rollout_budget: ARSM's rule when the cap binds (:data:`ROLLOUT_BUDGETS`).
    a2c_bootstrap_truncated: A2C bootstraps from the critic at the state
      where the step cap cut the episode (see :func:`gae_advantages`).
    relax_temperature: RELAX's initial Gumbel-Softmax temperature.
    relax_learning_rate: Adam step size of RELAX's control variate.
    test_episode: after each update, run one episode of the updated policy
      and report its reward as ``test_reward``.

  Raises:
    ValueError: for an unknown name or rollout budget, or a non-positive
      RELAX temperature or learning rate.
  """
  if name not in LEARNERS:
    raise ValueError(f"Unknown learner {name!r}; known: {', '.join(LEARNERS)}.")
  if rollout_budget not in ROLLOUT_BUDGETS:
    raise ValueError(f"rollout_budget must be one of {ROLLOUT_BUDGETS}; got "
                     f"{rollout_budget!r}.")
  for field, value in (("relax_temperature", relax_temperature),
                       ("relax_learning_rate", relax_learning_rate)):
    if not value > 0:
      raise ValueError(f"{field} must be > 0; got {value}.")
  net = policy_lib.policy(env.num_actions, hidden)
  critic = policy_lib.Value(hidden=tuple(hidden))
  control_variate = policy_lib.ControlVariate(hidden=tuple(hidden))
  tx = optax.adam(learning_rate)
  critic_tx = optax.adam(relax_learning_rate if name == "relax"
                         else critic_learning_rate)
  apply_fn = net.apply
  dummy = jnp.zeros(env.obs_shape, jnp.float32)

  def init(key):
    k_pol, k_val = jax.random.split(key)
    params = net.init(k_pol, dummy)
    critic_params, critic_opt = (), ()
    if name == "a2c":
      critic_params = critic.init(k_val, dummy)
      critic_opt = critic_tx.init(critic_params)
    elif name == "relax":
      critic_params = RelaxParams(
          net=control_variate.init(k_val, dummy[None],
                                   jnp.zeros((1, env.num_actions))),
          log_temperature=jnp.log(jnp.asarray(relax_temperature,
                                              jnp.float32)))
      critic_opt = critic_tx.init(critic_params)
    return TrainState(params, tx.init(params), critic_params, critic_opt,
                      jnp.zeros((), jnp.float32))

  def ascend(state, grads):
    neg = jax.tree_util.tree_map(jnp.negative, grads)
    updates, opt_state = tx.update(neg, state.opt_state, state.params)
    return state._replace(params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)

  def estimate_and_aux(state, key):
    """Policy gradient plus what ``update`` needs besides it."""
    if name == "arsm":
      grads, info = arsm_policy_gradient(env, apply_fn, state.params, key,
                                         gamma=gamma, max_rollouts=max_rollouts,
                                         common_random_numbers=(
                                             common_random_numbers),
                                         rollout_budget=rollout_budget)
      return grads, info, None
    if name == "relax":
      k_ep, k_cond = jax.random.split(key)
      ep = collect_episode(env, apply_fn, state.params, k_ep, gamma)
      return episode_estimate(state, ep, k_cond)
    ep = collect_episode(env, apply_fn, state.params, key, gamma)
    return episode_estimate(state, ep, key)

  def episode_estimate(state, ep, key):
    """The gradient of a learner without rollouts from a given episode."""
    if name == "relax":
      grads, cv_grads, info = relax_episode_gradient(
          apply_fn, control_variate.apply, state.params, state.critic_params,
          ep, key)
      return grads, info, cv_grads
    info = _episode_info(ep)
    if name == "a2c":

      def critic_loss(cp):
        values = critic.apply(cp, ep.obs)                   # [T]
        final_value = None
        if a2c_bootstrap_truncated:
          final_value = jax.lax.stop_gradient(critic.apply(cp, ep.final_obs))
        adv = gae_advantages(ep, jax.lax.stop_gradient(values), gamma,
                             gae_lambda, final_value)
        target = jax.lax.stop_gradient(adv + values)
        err = jnp.where(ep.mask, target - values, 0.0)
        return 0.5 * jnp.sum(err ** 2) / jnp.maximum(ep.length, 1), adv

      (_, adv), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
          state.critic_params)
      return score_function_gradient(apply_fn, state.params, ep, adv), info, (
          critic_grads)
    # reinforce_ma
    adv = ep.returns - state.baseline
    mean_return = jnp.sum(ep.returns) / jnp.maximum(ep.length, 1)
    return score_function_gradient(apply_fn, state.params, ep, adv), info, (
        mean_return)

  def estimate(state, key):
    grads, info, _ = estimate_and_aux(state, key)
    return grads, info

  def apply_update(state, grads, aux):
    new = ascend(state, grads)
    if name in ("a2c", "relax"):
      updates, copt = critic_tx.update(aux, state.critic_opt_state,
                                       state.critic_params)
      new = new._replace(
          critic_params=optax.apply_updates(state.critic_params, updates),
          critic_opt_state=copt)
    elif name == "reinforce_ma":
      new = new._replace(baseline=baseline_decay * state.baseline
                         + (1.0 - baseline_decay) * aux)
    return new

  def update(state, key):
    grads, info, aux = estimate_and_aux(state, key)
    new = apply_update(state, grads, aux)
    if test_episode:
      test = collect_episode(env, apply_fn, new.params, test_episode_key(key),
                             gamma)
      info = {**info, "test_reward": jnp.sum(test.rewards)}
    return new, info

  def update_from_episode(state, ep, key):
    grads, info, aux = episode_estimate(state, ep, key)
    return apply_update(state, grads, aux), info

  return Learner(name=name, env=env, init=init, estimate=estimate,
                 update=update,
                 update_from_episode=(None if name == "arsm"
                                      else update_from_episode))
