r"""ARSM policy gradient with counterfactual rollouts (Yin, Yue and Zhou 2019).

Section 3 of the notes. The action at step t is drawn by the augmentation,
:math:`a_t = \arg\min_i(\log\varpi_{ti} - \phi_{ti})`,
:math:`\varpi_t \sim \mathrm{Dir}(1_C)`, and the gradient with respect to
the step's logits is ARSM with :math:`f(a) = Q(s_t, a)`
(:func:`arsm_jax.estimators.arsm.swap_merge`, shared with the estimator):

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
:func:`~arsm_jax.rl.episodes.rollout`), which keeps float32 rounding out of
the gradient. Steps whose pseudo actions all equal ``a_t`` have
:math:`g_t = 0` exactly and cost nothing. The policy parameters get
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
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from arsm_jax import config_checks as checks
from arsm_jax import envs as envs_lib
from arsm_jax.estimators import arsm as arsm_estimator
from arsm_jax.rl import episodes
from arsm_jax.rl import learner as learner_lib

Array = jax.Array
ApplyFn = episodes.ApplyFn
Episode = episodes.Episode

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
      numbers; pass :func:`~arsm_jax.rl.episodes.replay_key` of the
      episode's key).
    rollout_budget: ``"unbiased"`` (S eligible steps uniformly, reweighted
      by N / S) or ``"authors"`` (eligible steps in a random order, each
      taken while its rollouts still fit in the cap; no reweighting, so
      biased when the cap binds).
  """
  num_steps, num_actions = ep.logits.shape
  k_sel, k_roll = jax.random.split(key)
  pseudo = episodes.step_pseudo_actions(ep.log_pi, ep.logits)        # [T, C, C]
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


def collect_and_plan(env: envs_lib.JaxEnv, apply_fn: ApplyFn, params, key, *,
              gamma: float, max_rollouts: int,
              common_random_numbers: bool = False,
              rollout_budget: str = "unbiased") -> RolloutPlan:
  """Collects an episode and picks the steps and pseudo actions to roll out.

  With ``common_random_numbers`` every rollout draws its later actions with
  the episode's own keys (:func:`~arsm_jax.rl.episodes.replay_key`), so a
  pseudo action's rollout and the observed continuation differ through the
  first action rather than through independent noise. Still unbiased: the keys of steps after t are
  independent of step t's Dirichlet draw, and the capped selection is
  independent of all rollouts. ``rollout_budget`` is passed to
  :func:`plan_rollouts`.
  """
  k_ep, k_plan = jax.random.split(key)
  ep = episodes.collect_episode(env, apply_fn, params, k_ep, gamma)
  return plan_rollouts(
      ep, k_plan, max_rollouts=max_rollouts,
      rollout_key=episodes.replay_key(k_ep) if common_random_numbers else None,
      rollout_budget=rollout_budget)


def vmapped_rollouts(env: envs_lib.JaxEnv, apply_fn: ApplyFn, params,
                     plan: RolloutPlan, gamma: float) -> tuple[Array, Array]:
  """All of a plan's rollouts at once: ``vmap`` over (step, action) pairs.

  Returns:
    ``[S, C-1]`` differences ``Q(s_t, b) - G_t`` (see
    :func:`~arsm_jax.rl.episodes.rollout` with a ``reference``) and
    ``[S, C-1]`` numbers of environment steps.
  """

  def one(k, state, t, b, act):
    return episodes.rollout(env, apply_fn, params, k, state, t, b, gamma, act,
                   reference=plan.episode)

  over_actions = jax.vmap(one, in_axes=(0, None, None, 0, 0))
  return jax.vmap(over_actions)(plan.keys, plan.starts, plan.idx,
                                plan.actions, plan.active)


def gradient_from_rollouts(apply_fn: ApplyFn, params, plan: RolloutPlan,
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
  g = jax.vmap(lambda qs, pv, p: arsm_estimator.swap_merge(qs[pv], p[None])[0])(
      q, plan.pseudo, ep.pi[plan.idx])                      # [S, C]
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
      **episodes.episode_diagnostics(ep, plan.eligible_steps),
  }
  return grads, info


def policy_gradient(env: envs_lib.JaxEnv, apply_fn: ApplyFn, params, key,
                         *, gamma: float, max_rollouts: int,
                         common_random_numbers: bool = False,
                         rollout_budget: str = "unbiased"
                         ) -> tuple[Any, dict[str, Array]]:
  """One ARSM estimate of the policy gradient from one episode.

  :func:`collect_and_plan`, then :func:`vmapped_rollouts`, then
  :func:`gradient_from_rollouts`.

  Returns:
    ``(grads, info)``: ``grads`` is shaped like ``params`` and estimates the
    gradient of the expected return (ascent direction); ``info`` has the
    episode's ``reward`` and ``length``, ``num_rollouts``, ``rollout_steps``
    and ``env_steps`` (episode plus rollout steps), ``eligible_steps``, and
    the :func:`~arsm_jax.rl.episodes.episode_diagnostics`.
  """
  plan = collect_and_plan(env, apply_fn, params, key, gamma=gamma,
                   max_rollouts=max_rollouts,
                   common_random_numbers=common_random_numbers,
                   rollout_budget=rollout_budget)
  returns, steps = vmapped_rollouts(env, apply_fn, params, plan, gamma)
  return gradient_from_rollouts(apply_fn, params, plan, returns, steps)


class ArsmTrainState(NamedTuple):
  """ARSM's train state (a pytree; ``vmap`` over seeds).

  Attributes:
    params: policy parameters.
    opt_state: their Adam state.
  """

  params: Any
  opt_state: Any


def make(setup: learner_lib.Setup, *, max_rollouts: int = 16,
         rollout_budget: str = "unbiased",
         common_random_numbers: bool = False) -> learner_lib.Learner:
  """The ARSM learner (its settings: ``config.learner_settings.arsm``).

  Args:
    setup: the environment, policy and discount.
    max_rollouts: rollout cap per episode (the authors: 16); 0 or -1 =
      uncapped, every step with a distinct pseudo action.
    rollout_budget: which steps get rollouts when the cap binds, one of
      :data:`ROLLOUT_BUDGETS` (see the module docstring).
    common_random_numbers: rollouts reuse the episode's random numbers for
      their later actions (:func:`collect_and_plan`; still unbiased).
  """
  check_settings(dict(max_rollouts=max_rollouts,
                      rollout_budget=rollout_budget,
                      common_random_numbers=common_random_numbers))
  env, gamma = setup.env, setup.gamma
  net = learner_lib.policy_net(setup)
  tx = optax.adam(setup.learning_rate)

  def init(key):
    params, _ = learner_lib.init_policy(net, env, key)
    return ArsmTrainState(params, tx.init(params))

  def estimate(state, key):
    return policy_gradient(env, net.apply, state.params, key, gamma=gamma,
                           max_rollouts=max_rollouts,
                           common_random_numbers=common_random_numbers,
                           rollout_budget=rollout_budget)

  def update(state, key):
    grads, info = estimate(state, key)
    params, opt_state = learner_lib.ascend(tx, state.params, state.opt_state,
                                           grads)
    return ArsmTrainState(params, opt_state), info

  return learner_lib.Learner(init=init, estimate=estimate, update=update)


def check_settings(settings: Mapping[str, Any],
                   where: str = "learner_settings.arsm") -> None:
  """Checks ARSM's settings; an error names ``config.<where>.<field>``."""
  fields = {f"{where}.{k}": v for k, v in settings.items()}
  checks.integer(fields, f"{where}.max_rollouts")
  if settings["max_rollouts"] < -1:
    raise checks.fail(f"{where}.max_rollouts", settings["max_rollouts"],
                      ">= 1, or 0 / -1 for uncapped")
  checks.choice(fields, f"{where}.rollout_budget", ROLLOUT_BUDGETS,
                noun="rollout budget")
  checks.boolean(fields, f"{where}.common_random_numbers")
