"""Tests of the RL experiment: rollouts, the ARSM policy gradient, the task."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import envs
from arsm_jax import parallel
from arsm_jax import rl as rl_lib
from arsm_jax import writers
from arsm_jax.estimators import arsm as arsm_estimator
from arsm_jax.models import policy as policy_lib
from arsm_jax.rl import arsm
from arsm_jax.rl import episodes
from arsm_jax.tasks import rl
from configs import rl as rl_config
from tests import helpers

# A tabular MDP small enough for exact values by enumeration: states 0, 1, 2
# and an absorbing terminal state 3, three actions, at most three steps.
# Transitions never lead back to state 0, so the logits of state 0 are used
# only at step 0 and their gradient is exactly the per-step ARSM estimate.
_NEXT = np.array([[1, 2, 3], [2, 1, 3], [1, 3, 2], [3, 3, 3]], np.int32)
_REWARD = np.array([[1.0, 0.0, 2.0], [0.5, 1.5, -1.0], [2.0, 0.0, 1.0],
                    [0.0, 0.0, 0.0]], np.float32)
_HORIZON = 3


def _tabular_env() -> envs.JaxEnv:
  nxt, rew = jnp.asarray(_NEXT), jnp.asarray(_REWARD)

  def reset(key):
    del key
    return jax.nn.one_hot(0, 4), {"s": jnp.zeros((), jnp.int32)}

  def step(key, state, action):
    del key
    s = state["s"]
    s_next = nxt[s, action]
    return (jax.nn.one_hot(s_next, 4), {"s": s_next}, rew[s, action],
            s_next == 3)

  return envs.JaxEnv(name="tabular", num_actions=3, obs_shape=(4,),
                     max_steps=_HORIZON, solved_threshold=0.0, reset=reset,
                     step=step)


def _tabular_apply(params, obs):
  return obs @ params                                       # [C]


def _exact_value(params, gamma):
  """Expected discounted return from state 0 by backward induction."""
  probs = jax.nn.softmax(params, axis=-1)                   # [4, C]
  nxt, rew = jnp.asarray(_NEXT), jnp.asarray(_REWARD)
  value = jnp.zeros(4)
  for _ in range(_HORIZON):
    q = rew + gamma * jnp.where(nxt == 3, 0.0, value[nxt])  # [4, C]
    value = jnp.sum(probs * q, axis=-1)
  return value[0]


def _tabular_params():
  return 0.7 * jax.random.normal(jax.random.PRNGKey(3), (4, 3))


@pytest.mark.parametrize("gamma,max_rollouts,rows,crn", [
    (1.0, 0, slice(None), False),  # uncapped, the whole policy gradient
    (1.0, 2, slice(None), False),  # cap binds: 1 step of up to 3 gets rollouts
    (1.0, 2, slice(None), True),   # the same with common random numbers
    (0.9, 2, slice(0, 1), False),  # discounted: the step-0 (per-step) estimate
])
def test_arsm_policy_gradient_unbiased_on_tabular_mdp(gamma, max_rollouts,
                                                      rows, crn):
  env = _tabular_env()
  params = _tabular_params()
  exact = np.asarray(jax.grad(_exact_value)(params, gamma))[rows]
  num_draws = 10000
  grads, info = jax.jit(jax.vmap(
      lambda k: arsm.policy_gradient(
          env, _tabular_apply, params, k, gamma=gamma,
          max_rollouts=max_rollouts, common_random_numbers=crn)))(
              jax.random.split(jax.random.PRNGKey(11), num_draws))
  grads = np.asarray(grads, np.float64)[:, rows]            # [N, rows, C]
  mean = grads.mean(axis=0)
  se = grads.std(axis=0, ddof=1) / np.sqrt(num_draws)
  if max_rollouts > 0:
    assert int(np.max(info["num_rollouts"])) <= max_rollouts
    # The cap binds on some episodes, so the reweighting is exercised.
    assert int(np.max(info["eligible_steps"])) > 1
  # The terminal state's logits are never used: exactly zero.
  fixed = se == 0
  np.testing.assert_allclose(mean[fixed], exact[fixed], atol=1e-6)
  assert np.sum(~fixed) >= 3
  # At most 9 free coordinates, |z| < 4.5 each: two-sided normal tail 6.8e-6
  # per coordinate, so a false failure has probability below 1e-4.
  z = (mean[~fixed] - exact[~fixed]) / se[~fixed]
  assert np.max(np.abs(z)) < 4.5, (z, mean, exact)


def test_rollout_from_visited_state_replays_the_episode():
  env = envs.make("CartPole-v1")
  net = policy_lib.policy(env.num_actions)
  params = net.init(jax.random.PRNGKey(0), jnp.zeros(env.obs_shape))
  key = jax.random.PRNGKey(5)
  ep = jax.jit(lambda p, k: episodes.collect_episode(env, net.apply, p, k,
                                                     0.99))(params, key)
  length = int(ep.length)
  assert 3 < length < env.max_steps
  # Every visited step with its taken action, then step 0 with the other one.
  ts = jnp.concatenate([jnp.arange(length), jnp.zeros((1,), jnp.int32)])
  acts = jnp.concatenate([ep.actions[:length], 1 - ep.actions[:1]])
  starts = jax.tree_util.tree_map(lambda x: x[ts], ep.states)
  replay = jax.jit(jax.vmap(
      lambda s, t, a, ref: episodes.rollout(env, net.apply, params,
                                            episodes.replay_key(key), s, t, a,
                                            0.99, reference=ref),
      in_axes=(0, 0, 0, None)), static_argnums=3)
  rets, steps = replay(starts, ts, acts, None)
  np.testing.assert_allclose(rets[:length], ep.returns[:length], rtol=1e-5)
  np.testing.assert_array_equal(steps[:length], length - np.arange(length))
  # The other action from the same state is a different future.
  assert float(rets[-1]) != pytest.approx(float(ep.returns[0]))
  # Measured against the episode, a replay differs from it by exactly 0.
  diffs, _ = jax.jit(jax.vmap(
      lambda s, t, a, ref: episodes.rollout(env, net.apply, params,
                                            episodes.replay_key(key), s, t, a,
                                            0.99, reference=ref),
      in_axes=(0, 0, 0, None)))(starts, ts, acts, ep)
  np.testing.assert_array_equal(diffs[:length], np.zeros(length))
  np.testing.assert_allclose(diffs[-1], rets[-1] - ep.returns[0], atol=1e-4)


def test_zero_gradient_when_pseudo_actions_equal_the_action():
  # Per step: all pseudo actions equal to a_t gives exactly zero whatever Q.
  pseudo = jnp.full((3, 3), 2, jnp.int32)
  g = arsm_estimator.swap_merge(jnp.array([5.0, -3.0, 7.0])[pseudo],
                                jnp.array([[0.2, 0.5, 0.3]]))
  np.testing.assert_array_equal(g, jnp.zeros((1, 3)))
  # A near-deterministic policy (logit gap 100): no rollouts, zero gradient.
  env = _tabular_env()
  params = jnp.tile(jnp.array([50.0, -50.0, -50.0]), (4, 1))
  grads, info = jax.jit(
      lambda k: arsm.policy_gradient(
          env, _tabular_apply, params, k, gamma=0.99, max_rollouts=0))(
              jax.random.PRNGKey(1))
  assert int(info["num_rollouts"]) == 0
  assert int(info["eligible_steps"]) == 0
  assert int(info["env_steps"]) == int(info["length"]) == _HORIZON
  np.testing.assert_array_equal(grads, jnp.zeros_like(grads))


def test_short_cartpole_run_improves_reward():
  env = envs.make("CartPole-v1", max_steps=200)
  learner = rl_lib.make("arsm", env, learning_rate=0.03, gamma=0.99,
                        settings={"max_rollouts": 16})
  keys = jax.random.split(jax.random.PRNGKey(0), 8)
  states = jax.vmap(learner.init)(keys)
  update = jax.jit(jax.vmap(learner.update))
  rewards = []
  for e in range(40):
    states, info = update(
        states, jax.vmap(lambda k, e=e: jax.random.fold_in(k, e))(keys))
    rewards.append(np.asarray(info["reward"]))
  rewards = np.stack(rewards)                               # [E, seeds]
  first, last = rewards[:10].mean(), rewards[-10:].mean()
  # Random policies balance ~20 steps; with seed 0 the last ten episodes
  # average several times that.
  assert last > first + 40, (first, last)
  assert last > 2 * first, (first, last)


def test_unsupported_environment_lists_supported():
  with pytest.raises(ValueError, match="CartPole-v1, Acrobot-v1, LunarLander"):
    envs.make("LunarLander-v2")
  with pytest.raises(ValueError, match="outside JAX"):
    envs.make("LunarLander-v3")


def test_lunarlander_replay_reaches_the_visited_state():
  host = pytest.importorskip("arsm_jax.rl.host")
  pytest.importorskip("Box2D")
  net = policy_lib.policy(4)
  layers = host.numpy_params(net.init(jax.random.PRNGKey(0), jnp.zeros(8)))
  ep = host.collect("LunarLander-v3", layers, seed=7, rng_seed=11,
                    max_steps=1000)
  length = ep["length"]
  rewards = ep["rewards"][:length].astype(np.float64)
  returns = np.zeros(length + 1)
  for t in reversed(range(length)):
    returns[t] = rewards[t] + 0.99 * returns[t + 1]
  ref_returns = np.zeros(1000, np.float32)                  # padded, as in use
  ref_returns[:length] = returns[:-1]
  for t in (0, length // 2, length - 1):
    job = ("LunarLander-v3", layers, 7, ep["actions"][:t],
           int(ep["actions"][t]), 11, 0.99, 1000)
    ret, steps, prefix = host.replay_rollout(job + (None, None))
    assert ret == pytest.approx(returns[t], rel=1e-5)
    assert (steps, prefix) == (length - t, t)
    diff, _, _ = host.replay_rollout(job + (ep["rewards"], ref_returns))
    assert diff == 0.0


def test_lunarlander_tiny_run(tmp_path):
  pytest.importorskip("Box2D")
  config = rl_config.get_config("lunarlander")
  config.num_seeds, config.num_episodes = 2, 2
  config.max_episode_steps, config.num_workers = 60, 1
  config.moving_average_window = 1
  out = rl.train_and_evaluate(config, str(tmp_path))
  curves = out["curves"]["arsm"]
  assert curves["reward"].shape == (2, 2)
  assert np.all(curves["num_rollouts"]
                <= config.learner_settings.arsm.max_rollouts)
  assert np.all(curves["env_steps"] >= curves["length"])
  config.learner = "arsm,a2c,relax"
  assert rl.validate_config(config) == ["arsm", "a2c", "relax"]
  config.learner_settings.arsm.common_random_numbers = True
  with pytest.raises(ValueError,
                     match="learner_settings.arsm.common_random_numbers"):
    rl.validate_config(config)


@pytest.mark.slow
def test_lunarlander_a2c_resumes_like_an_uninterrupted_run(tmp_path,
                                                           monkeypatch):
  pytest.importorskip("Box2D")
  config = rl_config.get_config("lunarlander")
  config.learner = "a2c"
  config.num_seeds, config.num_episodes = 2, 4
  config.max_episode_steps, config.num_workers = 20, 1
  config.moving_average_window, config.checkpoint_every = 2, 2
  config.plot = False
  resumed = str(tmp_path / "resumed")

  class Interrupted(Exception):
    pass

  def report(self, step, extra=None, force=False):
    del self, extra, force
    if step == 3:
      raise Interrupted()

  with monkeypatch.context() as m:
    m.setattr(rl.writers.ProgressReporter, "__call__", report)
    with pytest.raises(Interrupted):
      rl.train_and_evaluate(config, resumed)
  assert os.listdir(os.path.join(resumed, "a2c", "checkpoints"))  # episode 2
  reported = helpers.record_progress(monkeypatch)
  out = rl.train_and_evaluate(config, resumed)["curves"]["a2c"]
  # Started from the checkpoint of episode 2: episodes 1-2 were not redone.
  assert [step for _, step in reported] == [3, 4], reported
  full_dir = str(tmp_path / "full")
  full = rl.train_and_evaluate(config, full_dir)["curves"]["a2c"]
  assert out["reward"].shape == out["test_reward"].shape == (4, 2)
  assert np.all(out["num_rollouts"] == 0)
  for key, value in full.items():
    np.testing.assert_array_equal(out[key], value, err_msg=key)
  assert writers.read_rows(os.path.join(resumed, "a2c")) == writers.read_rows(
      os.path.join(full_dir, "a2c"))


@pytest.mark.slow
def test_lunarlander_arsm_resumes_at_the_next_seed(tmp_path, monkeypatch):
  # ARSM on a host simulator runs seeds one after the other and checkpoints
  # after each: a rerun must skip the finished seeds, not train them again.
  pytest.importorskip("Box2D")
  config = rl_config.get_config("lunarlander")
  config.learner = "arsm"
  config.num_seeds, config.num_episodes = 3, 2
  config.max_episode_steps, config.num_workers = 20, 1
  config.moving_average_window, config.checkpoint_every = 1, 1
  config.plot = False
  resumed = str(tmp_path / "resumed")

  class Interrupted(Exception):
    pass

  def report(self, step, extra=None, force=False):
    del extra, force
    if self.name.endswith("seed1") and step == 1:
      raise Interrupted()

  with monkeypatch.context() as m:
    m.setattr(rl.writers.ProgressReporter, "__call__", report)
    with pytest.raises(Interrupted):
      rl.train_and_evaluate(config, resumed)
  reported = helpers.record_progress(monkeypatch)
  out = rl.train_and_evaluate(config, resumed)["curves"]["arsm"]
  # Seed 0 was checkpointed: only seeds 1 and 2 ran again.
  assert sorted({name for name, _ in reported}) == [
      "rl/arsm/seed1", "rl/arsm/seed2"], reported
  full = rl.train_and_evaluate(config, str(tmp_path / "full"))
  for key, value in full["curves"]["arsm"].items():
    np.testing.assert_array_equal(out[key], value, err_msg=key)


@pytest.mark.parametrize("field,value,match", [
    ("env", "MountainCar-v0", "Unsupported environment"),
    ("learner", "arsm,ppo", "Unknown learner"),
    ("variance_draws", 1, "variance_draws"),
    ("gamma", 1.5, "gamma"),
    ("learner_settings.arsm.max_rollouts", -2,
     r"config.learner_settings.arsm.max_rollouts must be >= 1, or 0 / -1"),
    ("test_episode", None, "test_episode must be True or False"),
    ("learner_settings.a2c.bootstrap_truncated", None,
     "config.learner_settings.a2c.bootstrap_truncated must be True or False"),
])
def test_config_validated_before_compiling(field, value, match):
  config = rl_config.get_config("tiny")
  *path, last = field.split(".")
  node = config
  for part in path:
    node = node[part]
  node[last] = value
  with pytest.raises(ValueError, match=match):
    rl.validate_config(config)


def test_seeds_split_in_process_order_and_evenly(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert parallel.process_rows(6, "num_seeds") == slice(3, 6)
  config = rl_config.get_config("tiny")
  rl.check_processes(config)                   # 2 seeds over 2 processes
  config.num_seeds = 3
  with pytest.raises(ValueError, match=r"^num_seeds=3 must be divisible by "
                     r"the number of processes \(2\)\.$"):
    rl.check_processes(config)
  config.num_seeds = 2
  config.env = "LunarLander-v3"
  with pytest.raises(ValueError, match=r"cannot run under 2 processes"):
    rl.check_processes(config)


def test_episodes_to_solve_rule():
  rewards = np.zeros((6, 2))
  rewards[2:, 0] = 10.0
  # Window 2, threshold 10: seed 0 reaches it at episode 4, seed 1 never.
  assert rl.episodes_to_solve(rewards, 2, 10.0) == [4, None]
  assert rl.median_episodes([4, None]) is None
  assert rl.median_episodes([4, 6, None]) == 6.0


def test_train_and_evaluate_tiny_resumes_and_rerun_skips(tmp_path,
                                                        monkeypatch):
  config = rl_config.get_config("tiny")
  config.learner = "arsm"
  workdir = str(tmp_path / "resumed")

  # Interrupt the first run after episode 5 (checkpoint at episode 4).
  class Interrupted(Exception):
    pass

  def report(self, step, extra=None, force=False):
    del self, extra, force
    if step == 5:
      raise Interrupted()

  with monkeypatch.context() as m:
    m.setattr(rl.writers.ProgressReporter, "__call__", report)
    with pytest.raises(Interrupted):
      rl.train_and_evaluate(config, workdir)
  ckpt_dir = os.path.join(workdir, "arsm", "checkpoints")
  assert os.listdir(ckpt_dir)                    # the checkpoint of episode 4

  reported = helpers.record_progress(monkeypatch)
  out = rl.train_and_evaluate(config, workdir)
  # Started from the checkpoint of episode 4: episodes 1-4 were not redone.
  assert min(step for _, step in reported) == 5, reported
  summary = out["summary"]["arsm"]
  assert len(summary["episodes_to_solve"]) == config.num_seeds
  assert summary["total_env_steps"] >= summary["total_episode_steps"] > 0
  curves = out["curves"]["arsm"]
  assert curves["reward"].shape == (config.num_episodes, config.num_seeds)
  assert np.all(curves["num_rollouts"]
                <= config.learner_settings.arsm.max_rollouts)
  assert np.all(np.isfinite(curves["log_grad_variance"]))
  assert curves["log_grad_variance"].shape == (2, config.num_seeds)
  assert os.path.exists(os.path.join(workdir, "rl.png"))
  assert not os.path.exists(ckpt_dir)
  with open(os.path.join(workdir, "summary.json")) as fh:
    assert json.load(fh)["env"] == "CartPole-v1"
  metrics = os.path.join(workdir, "arsm", "metrics.jsonl")
  with open(metrics) as fh:
    steps = [json.loads(line)["step"] for line in fh
             if "reward_median" in line]
  assert steps == list(range(1, config.num_episodes + 1))
  # The policy diagnostics and the test episodes (tiny has test_episode).
  with open(metrics) as fh:
    last = json.loads(fh.readlines()[-1])
  for key in ("entropy_median", "eligible_fraction_p90", "test_reward_median",
              "test_moving_average_median"):
    assert np.isfinite(last[key]), key
  assert len(summary["test_episodes_to_solve"]) == config.num_seeds
  assert 0 <= summary["final_eligible_fraction_median"] <= 1
  assert curves["test_reward"].shape == curves["entropy"].shape == (
      config.num_episodes, config.num_seeds)
  stamp = os.path.getmtime(metrics)
  again = rl.train_and_evaluate(config, workdir)
  assert os.path.getmtime(metrics) == stamp
  np.testing.assert_array_equal(again["curves"]["arsm"]["reward"],
                                curves["reward"])
  # The resumed run's curves and metrics equal an uninterrupted run's.
  full_dir = str(tmp_path / "uninterrupted")
  full = rl.train_and_evaluate(config, full_dir)
  for key, value in full["curves"]["arsm"].items():
    np.testing.assert_array_equal(curves[key], value, err_msg=key)
  with open(os.path.join(full_dir, "arsm", "metrics.jsonl")) as fh:
    full_rows = [json.loads(line) for line in fh]
  with open(metrics) as fh:
    assert [json.loads(line) for line in fh] == full_rows
