"""Tests of the RL learners (arsm_jax.rl): RELAX, the authors' rollout
budget, A2C's GAE, episodes, the registry's settings, short training runs of
A2C, RELAX and REINFORCE with a moving-average baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import envs
from arsm_jax import rl
from arsm_jax.models import policy as policy_lib
from arsm_jax.rl import a2c
from arsm_jax.rl import arsm
from arsm_jax.rl import episodes
from arsm_jax.rl import registry
from arsm_jax.rl import relax
from arsm_jax.tasks import rl as rl_task
from configs import rl as rl_config
from tests.test_rl import _HORIZON
from tests.test_rl import _exact_value
from tests.test_rl import _tabular_apply
from tests.test_rl import _tabular_env
from tests.test_rl import _tabular_params


def test_conditional_gumbel_has_the_argmax_and_mixes_to_gumbel():
  log_probs = jax.nn.log_softmax(jnp.array([1.5, -0.3, 0.2, -2.0]))
  num_draws = 20000
  k_b, k_z = jax.random.split(jax.random.PRNGKey(0))
  actions = jax.random.categorical(k_b, log_probs, shape=(num_draws,))
  # RELAX's per-step relaxation: the estimators' conditional Gumbel sample.
  cond = relax.draw_conditional_gumbel
  z = jax.jit(jax.vmap(cond, in_axes=(None, 0, 0)))(
      log_probs, actions, jax.random.split(k_z, num_draws))  # [N, C]
  np.testing.assert_array_equal(np.argmax(z, axis=1), actions)
  assert np.all(np.isfinite(z))
  # With b ~ p, (b, z~) has the law of (argmax z, z): z_i = log p_i + Gumbel,
  # mean log p_i + Euler's gamma, variance pi^2 / 6. Four coordinates with
  # |z| < 4.5 each: a false failure has probability below 3e-5.
  se = np.sqrt(np.pi ** 2 / 6 / num_draws)
  zscore = (np.asarray(z, np.float64).mean(axis=0)
            - (np.asarray(log_probs) + np.euler_gamma)) / se
  assert np.max(np.abs(zscore)) < 4.5, zscore
  # Tiny probabilities stay finite (no exp overflow in the truncation).
  tiny = jax.nn.log_softmax(jnp.array([0.0, -80.0, 80.0]))
  zt = cond(tiny, jnp.asarray(1), jax.random.PRNGKey(2))
  assert np.all(np.isfinite(zt)) and int(np.argmax(zt)) == 1


def _tabular_control_variate(key, scale):
  """A control variate of the tabular MDP and parameters for it."""
  cv = policy_lib.ControlVariate(hidden=(8,))
  net = cv.init(key, jnp.zeros((1, 4)), jnp.zeros((1, 3)))
  # Scaled up so the control-variate terms are not negligible beside the
  # score term.
  net = jax.tree_util.tree_map(lambda x: scale * x, net)
  params = relax.ControlVariateParams(net=net, log_temperature=jnp.log(0.5))
  return cv.apply, params


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_relax_policy_gradient_unbiased_on_tabular_mdp(scale):
  env = _tabular_env()
  params = _tabular_params()
  cv_fn, cv_params = _tabular_control_variate(jax.random.PRNGKey(4), scale)
  exact = np.asarray(jax.grad(_exact_value)(params, 1.0))
  num_draws = 10000
  grads, cv_grads, _ = jax.jit(jax.vmap(
      lambda k: relax.policy_gradient(
          env, _tabular_apply, cv_fn, params, cv_params, k, gamma=1.0)))(
              jax.random.split(jax.random.PRNGKey(12), num_draws))
  grads = np.asarray(grads, np.float64)                     # [N, 4, C]
  assert all(np.all(np.isfinite(x))
             for x in jax.tree_util.tree_leaves(cv_grads))
  mean = grads.mean(axis=0)
  se = grads.std(axis=0, ddof=1) / np.sqrt(num_draws)
  # The terminal state's logits are never used: exactly zero.
  fixed = se == 0
  np.testing.assert_allclose(mean[fixed], exact[fixed], atol=1e-6)
  assert np.sum(~fixed) >= 9
  # At most 9 free coordinates, |z| < 4.5 each: two-sided normal tail 6.8e-6
  # per coordinate, so a false failure has probability below 1e-4.
  z = (mean[~fixed] - exact[~fixed]) / se[~fixed]
  assert np.max(np.abs(z)) < 4.5, (z, mean, exact)


def test_relax_variance_gradient_is_that_of_the_squared_norm():
  # cv_grads is d/dphi of |g_hat|^2 for the same draw: compare with a
  # central finite difference along the temperature and along one weight.
  env = _tabular_env()
  params = _tabular_params()
  cv_fn, cv_params = _tabular_control_variate(jax.random.PRNGKey(4), 3.0)
  key = jax.random.PRNGKey(8)

  estimate = jax.jit(lambda phi: relax.policy_gradient(
      env, _tabular_apply, cv_fn, params, phi, key, gamma=1.0)[:2])

  def sq_norm(phi):
    return jnp.sum(estimate(phi)[0] ** 2)

  _, cv_grads = estimate(cv_params)
  eps = 1e-2
  up = cv_params._replace(log_temperature=cv_params.log_temperature + eps)
  down = cv_params._replace(log_temperature=cv_params.log_temperature - eps)
  fd = (sq_norm(up) - sq_norm(down)) / (2 * eps)
  assert float(cv_grads.log_temperature) == pytest.approx(float(fd), rel=0.05,
                                                          abs=1e-3)
  assert abs(float(cv_grads.log_temperature)) > 1e-3


def _episode(rewards, length, terminated):
  num_steps = len(rewards)
  mask = np.arange(num_steps) < length
  zeros = jnp.zeros((num_steps, 2))
  return episodes.Episode(
      obs=zeros, states=jnp.zeros((num_steps,)),
      actions=jnp.zeros((num_steps,), jnp.int32),
      rewards=jnp.asarray(rewards, jnp.float32), pi=zeros, log_pi=zeros,
      logits=zeros, mask=jnp.asarray(mask), returns=jnp.zeros((num_steps,)),
      length=jnp.asarray(length, jnp.int32), final_obs=jnp.zeros((1,)),
      terminated=jnp.asarray(terminated))


@pytest.mark.parametrize("terminated,bootstrap", [
    (True, True),    # terminated: V(s_T) = 0 even with a final value
    (False, True),   # truncated by the cap: bootstrap from V(s_T)
    (False, False),  # truncated, final_value=None: treated as terminal
])
def test_gae_against_hand_computation(terminated, bootstrap):
  gamma, lam = 0.9, 0.8
  rewards = [1.0, 2.0, -3.0, 4.0, 0.0]                      # 4 steps + pad
  values = np.array([0.5, -1.0, 2.0, 0.3, 0.0])
  final_value = 1.7
  length = 4
  ep = _episode(rewards, length, terminated)
  adv = a2c.gae_advantages(
      ep, jnp.asarray(values, jnp.float32), gamma, lam,
      jnp.asarray(final_value) if bootstrap else None)
  # By hand: delta_t = r_t + gamma V_{t+1} - V_t with V_4 = V(s_T) or 0,
  # A_t = sum_k (gamma lam)^k delta_{t+k}.
  v_next = [values[1], values[2], values[3],
            final_value if (bootstrap and not terminated) else 0.0]
  deltas = [rewards[t] + gamma * v_next[t] - values[t] for t in range(length)]
  expected = [sum((gamma * lam) ** (k - t) * deltas[k]
                  for k in range(t, length)) for t in range(length)] + [0.0]
  np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
  # The truncated bootstrap moves every advantage by (gamma lam)^(T-1-t)
  # gamma V(s_T); a spot value: A_3 = 4 + 0.9 * 1.7 - 0.3 = 5.23.
  if bootstrap and not terminated:
    assert float(adv[3]) == pytest.approx(5.23, rel=1e-5)


def test_episode_records_termination_and_final_observation():
  env = _tabular_env()
  # Action 2 from state 0 leads to the terminal state at once.
  to_end = jnp.tile(jnp.array([-50.0, -50.0, 50.0]), (4, 1))
  ep = episodes.collect_episode(env, _tabular_apply, to_end,
                                jax.random.PRNGKey(0), 1.0)
  assert int(ep.length) == 1 and bool(ep.terminated)
  np.testing.assert_array_equal(ep.final_obs, jax.nn.one_hot(3, 4))
  # Action 0 cycles 0 -> 1 -> 2 -> 1: cut by the step cap, not terminated.
  cycle = jnp.tile(jnp.array([50.0, -50.0, -50.0]), (4, 1))
  ep = episodes.collect_episode(env, _tabular_apply, cycle,
                                jax.random.PRNGKey(0), 1.0)
  assert int(ep.length) == _HORIZON and not bool(ep.terminated)
  np.testing.assert_array_equal(ep.final_obs, jax.nn.one_hot(1, 4))


def _uniform_episodes(name, keys):
  env = envs.make(name, max_steps=200)
  net = policy_lib.policy(env.num_actions)
  params = jax.tree_util.tree_map(
      jnp.zeros_like, net.init(jax.random.PRNGKey(0), jnp.zeros(env.obs_shape)))
  return jax.jit(jax.vmap(lambda k: episodes.collect_episode(
      env, net.apply, params, k, 0.99)))(keys)


_NUM_ACROBOT = 4


@pytest.fixture(scope="module")
def acrobot_plans():
  # Acrobot (C = 3) with a uniform policy: ~200 eligible steps, each needing
  # one or two rollouts; the authors' plan of each with a budget of 16.
  eps = _uniform_episodes("Acrobot-v1",
                          jax.random.split(jax.random.PRNGKey(0), _NUM_ACROBOT))
  plans = jax.jit(jax.vmap(lambda e, k: arsm.plan_rollouts(
      e, k, max_rollouts=16, rollout_budget="authors")))(
          eps, jax.random.split(jax.random.PRNGKey(1), _NUM_ACROBOT))
  return eps, plans


@pytest.mark.slow
@pytest.mark.parametrize("i", range(_NUM_ACROBOT))
def test_authors_budget_takes_steps_in_order_until_rollouts_are_used(
    acrobot_plans, i):
  eps, plans = acrobot_plans
  ep, plan = jax.tree_util.tree_map(lambda x: x[i], (eps, plans))
  budget = 16
  need = np.asarray(episodes.step_pseudo_actions(ep.log_pi, ep.logits))
  active = np.asarray(plan.active)                          # [S, 2]
  chosen = active.any(axis=1)
  assert int(plan.eligible_steps) > budget
  assert active.sum() <= budget
  np.testing.assert_array_equal(plan.weight, chosen.astype(np.float32))
  # A chosen step rolls out exactly its pseudo actions that differ from a_t.
  idx = np.asarray(plan.idx)
  for s in np.nonzero(chosen)[0]:
    t = idx[s]
    wanted = set(np.unique(need[t])) - {int(ep.actions[t])}
    assert set(np.asarray(plan.actions)[s][active[s]]) == wanted
  # The chosen steps are a prefix of the random order, and the first step
  # left out would have overrun the budget.
  first_out = int(np.argmin(chosen)) if not chosen.all() else len(chosen)
  assert chosen[:first_out].all() and not chosen[first_out:].any()
  if first_out < len(chosen):
    t = idx[first_out]
    cost = len(set(np.unique(need[t])) - {int(ep.actions[t])})
    assert cost >= 1 and active.sum() + cost > budget
  # At least budget - 1 rollouts are used (a step costs at most 2).
  assert active.sum() >= budget - 1


@pytest.mark.slow
def test_authors_budget_with_two_actions_is_the_unreweighted_plan():
  ep = jax.tree_util.tree_map(
      lambda x: x[0], _uniform_episodes("CartPole-v1",
                                        jax.random.PRNGKey(3)[None]))
  key = jax.random.PRNGKey(4)
  plans = {rule: arsm.plan_rollouts(ep, key, max_rollouts=4,
                                    rollout_budget=rule)
           for rule in arsm.ROLLOUT_BUDGETS}
  assert int(plans["authors"].eligible_steps) > 4
  for field in ("idx", "actions", "active", "keys"):
    np.testing.assert_array_equal(getattr(plans["authors"], field),
                                  getattr(plans["unbiased"], field))
  np.testing.assert_array_equal(plans["authors"].weight, np.ones(4))
  # Ours reweights every chosen step by N / S.
  np.testing.assert_allclose(
      plans["unbiased"].weight,
      np.full(4, int(plans["unbiased"].eligible_steps) / 4), rtol=1e-6)
  with pytest.raises(ValueError, match="rollout_budget"):
    arsm.rollout_capacity(10, 2, 4, "greedy")


@pytest.mark.slow
def test_test_episode_leaves_training_unchanged_and_diagnostics_in_range():
  env = _tabular_env()
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  out = {}
  for test_episode in (False, True):
    learner = rl.make("arsm", env, learning_rate=0.03, gamma=0.99,
                      test_episode=test_episode)
    states = jax.vmap(learner.init)(keys)
    out[test_episode] = jax.jit(jax.vmap(learner.update))(states, keys)
  for a, b in zip(jax.tree_util.tree_leaves(out[False][0]),
                  jax.tree_util.tree_leaves(out[True][0])):
    np.testing.assert_array_equal(a, b)
  info = out[True][1]
  assert "test_reward" in info and "test_reward" not in out[False][1]
  # Tabular rewards lie in [-1, 2], at most three steps.
  assert np.all(np.abs(np.asarray(info["test_reward"])) <= 6)
  entropy = np.asarray(info["entropy"])
  assert np.all((entropy > 0) & (entropy <= np.log(3) + 1e-6))
  frac = np.asarray(info["eligible_fraction"])
  np.testing.assert_allclose(
      frac, np.asarray(info["eligible_steps"]) / np.asarray(info["length"]))


def _train(name, num_episodes, seeds=8, max_steps=200):
  env = envs.make("CartPole-v1", max_steps=max_steps)
  learner = rl.make(name, env, learning_rate=0.03, gamma=0.99)
  keys = jax.random.split(jax.random.PRNGKey(0), seeds)
  states = jax.vmap(learner.init)(keys)
  update = jax.jit(jax.vmap(learner.update))
  rewards = []
  for e in range(num_episodes):
    states, info = update(
        states, jax.vmap(lambda k, e=e: jax.random.fold_in(k, e))(keys))
    rewards.append(np.asarray(info["reward"]))
    for leaf in jax.tree_util.tree_leaves(states):
      assert np.all(np.isfinite(leaf))
  return np.stack(rewards)                                  # [E, seeds]


@pytest.mark.slow
@pytest.mark.parametrize("name,episodes", [
    ("a2c", 60), ("reinforce_ma", 60), ("relax", 60)])
def test_short_cartpole_run_improves_reward(name, episodes):
  rewards = _train(name, episodes)
  first, last = rewards[:10].mean(), rewards[-10:].mean()
  # Criterion: random policies balance ~20 steps; with seed 0 the mean over
  # 8 seeds of the last ten of 60 episodes must be at least twice that of
  # the first ten and 25 steps more (measured: a2c 21 -> 70, reinforce_ma
  # 21 -> 93, relax 20 -> 59).
  assert last > 2 * first and last > first + 25, (first, last)


@pytest.mark.slow
def test_host_batch_runs_relax_on_lunarlander():
  host = pytest.importorskip("arsm_jax.rl.host")
  pytest.importorskip("Box2D")
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  # relax (a2c and reinforce_ma share the same host path).
  for name in ("relax",):
    trainer = host.HostBatch("LunarLander-v3", name, max_steps=30,
                             test_episode=True, learning_rate=0.03,
                             gamma=0.99)
    learner = trainer.learner
    states = jax.vmap(learner.init)(keys)
    before = states.params
    states, info = trainer.update(states, keys)
    trainer.close()
    assert info["reward"].shape == info["test_reward"].shape == (2,)
    assert np.all((info["length"] >= 1) & (info["length"] <= 30))
    assert np.all(info["num_rollouts"] == 0)
    assert np.all(np.isfinite(info["entropy"]))
    moved = [np.max(np.abs(np.asarray(a) - np.asarray(b)))
             for a, b in zip(jax.tree_util.tree_leaves(states.params),
                             jax.tree_util.tree_leaves(before))]
    assert max(moved) > 0


@pytest.mark.parametrize("learner,field,value", [
    ("arsm", "rollout_budget", "greedy"), ("relax", "temperature", 0.0),
    ("relax", "learning_rate", -1.0), ("reinforce_ma", "baseline_decay", 1.0),
    ("a2c", "gae_lambda", 1.5), ("a2c", "critic_learning_rate", 0.0)])
def test_learner_settings_validated_before_compiling(learner, field, value):
  config = rl_config.get_config("tiny")
  config.learner_settings[learner][field] = value
  with pytest.raises(ValueError,
                     match=f"config.learner_settings.{learner}.{field}"):
    rl_task.validate_config(config)
  # The same check when a learner is built in Python.
  with pytest.raises(ValueError, match=f"learner_settings.{learner}.{field}"):
    rl.make(learner, envs.make("CartPole-v1"), learning_rate=0.03,
            gamma=0.99, settings={field: value})


def test_registry_settings_are_the_learners_keyword_arguments():
  defaults = registry.default_settings()
  assert sorted(defaults) == sorted(registry.LEARNERS)
  assert defaults.a2c.to_dict() == {"critic_learning_rate": 0.03,
                                    "gae_lambda": 0.95,
                                    "bootstrap_truncated": True}
  assert defaults.arsm.to_dict() == {"max_rollouts": 16,
                                     "rollout_budget": "unbiased",
                                     "common_random_numbers": False}
  assert defaults.relax.to_dict() == {"learning_rate": 0.03,
                                      "temperature": 0.5}
  assert defaults.reinforce_ma.to_dict() == {"baseline_decay": 0.9}
  env = envs.make("CartPole-v1")
  with pytest.raises(ValueError, match=r"config.learner_settings.a2c must "
                     r"have the fields .*differs in \['gae_lamda'\]"):
    rl.make("a2c", env, learning_rate=0.03, gamma=0.99,
            settings={"gae_lamda": 0.9})
  with pytest.raises(ValueError, match="Unknown learner 'ppo'; known: arsm"):
    rl.make("ppo", env, learning_rate=0.03, gamma=0.99)


@pytest.mark.parametrize("name,state_fields", [
    ("arsm", ("params", "opt_state")),
    ("a2c", ("params", "opt_state", "critic_params", "critic_opt_state")),
    ("relax", ("params", "opt_state", "cv_params", "cv_opt_state")),
    ("reinforce_ma", ("params", "opt_state", "baseline"))])
def test_each_learner_has_its_own_state(name, state_fields):
  learner = rl.make(name, envs.make("CartPole-v1"), learning_rate=0.03,
                    gamma=0.99)
  state = learner.init(jax.random.PRNGKey(0))
  assert state._fields == state_fields
  assert (learner.update_from_episode is None) == (name == "arsm")
