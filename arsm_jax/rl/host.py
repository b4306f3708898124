r"""Learners on a simulator outside JAX: LunarLander (gymnasium, Box2D).

ARSM (:class:`HostArsm`) reaches visited states by replay, below; the
learners without rollouts (:class:`HostBatch`) only collect episodes on the
host.

A Box2D world cannot be copied, so a visited state is reached again the way
the authors did it: reset with the episode's seed and replay the action
prefix. Everything random in ``LunarLander-v3`` (terrain, initial push,
engine dispersion) comes from the environment's generator, which the reset
seeds, so the replay reaches exactly the visited state (the test checks that
replaying the taken action reproduces the observed return).

One training episode:

1. on the host, the policy (a NumPy copy of the Flax MLP) acts with actions
   drawn by the Dirichlet augmentation, recording what
   :class:`~arsm_jax.rl.episodes.Episode` holds;
2. :func:`~arsm_jax.rl.arsm.plan_rollouts` (jitted) picks the steps and
   pseudo actions to roll out, with the same cap and reweighting as the JAX
   environments;
3. the rollouts (replay, pseudo action, then the policy) run on the host,
   spread over worker processes when ``num_workers > 1``;
4. :func:`~arsm_jax.rl.arsm.gradient_from_rollouts` and Adam (jitted) update
   the policy.

Rollouts return ``Q(s_t, b) - G_t`` accumulated reward by reward against the
episode, as the JAX rollouts do.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from arsm_jax import envs
from arsm_jax.models import policy as policy_lib
from arsm_jax.rl import arsm
from arsm_jax.rl import episodes
from arsm_jax.rl import learner as learner_lib
from arsm_jax.rl import registry

HOST_ENVS = envs.HOST_ENVS

_ENV_CACHE: dict[str, Any] = {}


def _make(name: str):
  if name not in _ENV_CACHE:
    import gymnasium  # pylint: disable=g-import-not-at-top
    _ENV_CACHE[name] = gymnasium.make(name).unwrapped
  return _ENV_CACHE[name]


def numpy_params(params) -> list[tuple[np.ndarray, np.ndarray]]:
  """The Flax MLP's Dense layers as NumPy ``(kernel, bias)`` pairs."""
  layers = params["params"]
  return [(np.asarray(layers[f"Dense_{i}"]["kernel"], np.float32),
           np.asarray(layers[f"Dense_{i}"]["bias"], np.float32))
          for i in range(len(layers))]


def numpy_logits(layers, obs: np.ndarray) -> np.ndarray:
  x = np.asarray(obs, np.float32)
  for i, (w, b) in enumerate(layers):
    x = x @ w + b
    if i < len(layers) - 1:
      x = np.maximum(x, 0.0)
  return x


def augment(rng_seed: int, t: int, logits: np.ndarray):
  """NumPy Dirichlet augmentation at step t: ``(pi, log_pi, action)``.

  The draw depends only on ``(rng_seed, t)``, so a rollout with the
  episode's ``rng_seed`` makes the episode's draws (as
  :func:`arsm_jax.rl.episodes.step_keys` does for the JAX environments).
  """
  rng = np.random.default_rng([rng_seed, t])
  e = np.maximum(rng.standard_exponential(logits.shape[-1]).astype(np.float32),
                 np.finfo(np.float32).tiny)
  log_pi = np.log(e) - np.log(e.sum())
  return np.exp(log_pi), log_pi, int(np.argmin(log_pi - logits))


def collect(name: str, layers, seed: int, rng_seed: int, max_steps: int):
  """One host episode; returns NumPy arrays padded to ``max_steps``."""
  env = _make(name)
  obs, _ = env.reset(seed=seed)
  num_actions = int(env.action_space.n)
  out = {
      "obs": np.zeros((max_steps,) + obs.shape, np.float32),
      "actions": np.zeros((max_steps,), np.int32),
      "rewards": np.zeros((max_steps,), np.float32),
      "pi": np.zeros((max_steps, num_actions), np.float32),
      "log_pi": np.zeros((max_steps, num_actions), np.float32),
      "logits": np.zeros((max_steps, num_actions), np.float32),
  }
  t, terminated = 0, False
  while t < max_steps:
    logits = numpy_logits(layers, obs)
    pi, log_pi, action = augment(rng_seed, t, logits)
    out["obs"][t], out["logits"][t] = obs, logits
    out["pi"][t], out["log_pi"][t], out["actions"][t] = pi, log_pi, action
    obs, reward, terminated, _, _ = env.step(action)
    out["rewards"][t] = reward
    t += 1
    if terminated:
      break
  out["length"] = t
  out["final_obs"] = np.asarray(obs, np.float32)
  out["terminated"] = bool(terminated)
  return out


def replay_rollout(job) -> tuple[float, int, int]:
  """Replays ``prefix`` from ``reset(seed)``, takes ``action``, then the policy.

  Args:
    job: ``(name, layers, seed, prefix, action, rng_seed, gamma, max_steps,
      ref_rewards, ref_returns)``; ``ref_*`` are the episode's rewards and
      returns-to-go (``None`` for the plain discounted return).

  Returns:
    ``(Q - G_t or the return, rollout steps, replayed prefix steps)``.
  """
  (name, layers, seed, prefix, action, rng_seed, gamma, max_steps,
   ref_rewards, ref_returns) = job
  env = _make(name)
  env.reset(seed=seed)
  for a in prefix:
    env.step(int(a))
  t = len(prefix)
  ret, disc, n = 0.0, 1.0, 0
  while t < max_steps:
    obs, reward, terminated, _, _ = env.step(int(action))
    # float32 as in the recorded episode, so equal rewards cancel exactly.
    reward = float(np.float32(reward))
    if ref_rewards is not None:
      reward = reward - float(ref_rewards[t])
    ret += disc * reward
    disc *= gamma
    n += 1
    t += 1
    if terminated:
      break
    action = augment(rng_seed, t, numpy_logits(layers, obs))[2]
  if ref_returns is not None and t < max_steps:
    ret -= disc * ref_returns[t]
  return ret, n, len(prefix)


def _episode(arrays, max_steps: int, gamma: float) -> episodes.Episode:
  """A host-collected episode (padded numpy arrays) as an Episode."""
  mask = jnp.arange(max_steps) < arrays["length"]
  return episodes.Episode(
      obs=arrays["obs"], states=jnp.zeros((max_steps,)),
      actions=arrays["actions"], rewards=arrays["rewards"],
      pi=arrays["pi"], log_pi=arrays["log_pi"], logits=arrays["logits"],
      mask=mask,
      returns=episodes.discounted_returns(arrays["rewards"], mask, gamma),
      length=jnp.asarray(arrays["length"], jnp.int32),
      final_obs=arrays["final_obs"],
      terminated=jnp.asarray(arrays["terminated"], bool))


class HostArsm:
  """ARSM policy-gradient training on a host simulator (one seed at a time).

  Args:
    name: environment id (a key of :data:`HOST_ENVS`).
    learning_rate: Adam step size.
    gamma: discount.
    max_rollouts: rollout cap per episode (<= 0: uncapped).
    max_steps: step cap (0 = the environment's, 1000 for LunarLander-v3).
    hidden: hidden widths of the policy.
    num_workers: worker processes for the rollouts (1 = in this process).
    rollout_budget: the rule when the cap binds
      (:data:`~arsm_jax.rl.arsm.ROLLOUT_BUDGETS`).
    test_episode: after each update, run one episode of the updated policy
      and report its reward as ``test_reward``.
  """

  def __init__(self, name: str, *, learning_rate: float, gamma: float,
               max_rollouts: int, max_steps: int = 0,
               hidden: tuple[int, ...] = (10, 10), num_workers: int = 1,
               rollout_budget: str = "unbiased", test_episode: bool = False):
    if name not in HOST_ENVS:
      raise ValueError(f"Unsupported host environment {name!r}; supported: "
                       f"{', '.join(HOST_ENVS)}.")
    self.name = name
    self.max_steps = max_steps or HOST_ENVS[name][0]
    self.solved_threshold = HOST_ENVS[name][1]
    env = _make(name)
    self.num_actions = int(env.action_space.n)
    self.obs_shape = tuple(env.observation_space.shape)
    self.gamma = gamma
    self.test_episode = test_episode
    arsm.check_settings(dict(max_rollouts=max_rollouts,
                             rollout_budget=rollout_budget,
                             common_random_numbers=False))
    self.net = policy_lib.policy(self.num_actions, hidden)
    self.tx = optax.adam(learning_rate)
    self._pool: Optional[concurrent.futures.Executor] = None
    if num_workers > 1:
      self._pool = concurrent.futures.ProcessPoolExecutor(
          num_workers, mp_context=multiprocessing.get_context("spawn"))
    apply_fn = self.net.apply

    def prepare(arrays, key):
      ep = _episode(arrays, self.max_steps, gamma)
      plan = arsm.plan_rollouts(ep, key, max_rollouts=max_rollouts,
                                rollout_budget=rollout_budget)
      seeds = jax.vmap(jax.vmap(
          lambda k: jax.random.randint(k, (), 0, 2**31 - 1)))(plan.keys)
      return plan, seeds

    def finish(state, plan, diffs, steps):
      grads, info = arsm.gradient_from_rollouts(apply_fn, state.params, plan,
                                                diffs, steps)
      params, opt_state = learner_lib.ascend(self.tx, state.params,
                                             state.opt_state, grads)
      return arsm.ArsmTrainState(params, opt_state), info

    self._prepare = jax.jit(prepare)
    self._finish = jax.jit(finish)

  def init(self, key) -> arsm.ArsmTrainState:
    params = self.net.init(key, jnp.zeros(self.obs_shape, jnp.float32))
    return arsm.ArsmTrainState(params, self.tx.init(params))

  def close(self):
    if self._pool is not None:
      self._pool.shutdown()

  def update(self, state: arsm.ArsmTrainState,
             key) -> tuple[arsm.ArsmTrainState, dict[str, Any]]:
    """One training episode; ``info`` adds ``replay_steps`` to the usual."""
    k_ep, k_plan = jax.random.split(key)
    seed, rng_seed = (int(x) for x in jax.random.randint(
        k_ep, (2,), 0, 2**31 - 1))
    layers = numpy_params(state.params)
    arrays = collect(self.name, layers, seed, rng_seed, self.max_steps)
    plan, seeds = self._prepare(arrays, k_plan)
    active = np.asarray(plan.active)
    idx, acts = np.asarray(plan.idx), np.asarray(plan.actions)
    seeds = np.asarray(seeds)
    rewards = np.asarray(plan.episode.rewards)
    returns = np.asarray(plan.episode.returns)
    pairs = list(zip(*np.nonzero(active)))
    jobs = [(self.name, layers, seed, arrays["actions"][:idx[i]],
             int(acts[i, j]), int(seeds[i, j]), self.gamma, self.max_steps,
             rewards, returns) for i, j in pairs]
    if self._pool is not None and len(jobs) > 1:
      results = list(self._pool.map(replay_rollout, jobs))
    else:
      results = [replay_rollout(job) for job in jobs]
    diffs = np.zeros(active.shape, np.float32)
    steps = np.zeros(active.shape, np.int32)
    replay_steps = 0
    for (i, j), (d, n, pre) in zip(pairs, results):
      diffs[i, j], steps[i, j] = d, n
      replay_steps += pre
    state, info = self._finish(state, plan, jnp.asarray(diffs),
                               jnp.asarray(steps))
    info = {k: np.asarray(v) for k, v in info.items()}
    info["replay_steps"] = np.asarray(replay_steps)
    info["env_steps"] = info["env_steps"] + replay_steps
    if self.test_episode:
      test_seed, test_rng = (int(x) for x in jax.random.randint(
          learner_lib.test_episode_key(key), (2,), 0, 2**31 - 1))
      test = collect(self.name, numpy_params(state.params), test_seed,
                     test_rng, self.max_steps)
      info["test_reward"] = np.asarray(
          np.sum(test["rewards"][:test["length"]], dtype=np.float32))
    return state, info


def collect_job(job) -> dict[str, Any]:
  """:func:`collect` from one tuple (for a process pool)."""
  return collect(*job)


class HostBatch:
  """The learners without rollouts (a2c, relax, reinforce_ma) on a host
  simulator, all seeds per update.

  Each update collects one episode per seed on the host (the seeds'
  episodes spread over ``num_workers`` processes), pads them into
  :class:`~arsm_jax.rl.episodes.Episode` buffers of the step cap, and
  applies the learner's ``update_from_episode`` to all seeds at once (jitted
  and ``vmap``-ped). The same interface as a jitted, vmapped
  :attr:`~arsm_jax.rl.learner.Learner.update`: ``update(states, keys)``
  with per-seed keys ``[S, 2]``.

  Args:
    name: environment id (a key of :data:`HOST_ENVS`).
    learner: ``'a2c'``, ``'relax'`` or ``'reinforce_ma'``.
    max_steps: step cap (0 = the environment's).
    num_workers: worker processes for the episodes (1 = in this process).
    test_episode: also run one episode of each updated policy and report
      its reward as ``test_reward``.
    **kwargs: the other arguments of :func:`~arsm_jax.rl.registry.make`
      (``learning_rate``, ``gamma``, ``hidden``, ``settings``).
  """

  def __init__(self, name: str, learner: str, *, max_steps: int = 0,
               num_workers: int = 1, test_episode: bool = False, **kwargs):
    if name not in HOST_ENVS:
      raise ValueError(f"Unsupported host environment {name!r}; supported: "
                       f"{', '.join(HOST_ENVS)}.")
    if learner == "arsm":
      raise ValueError("arsm on a host simulator needs replayed rollouts: "
                       "use HostArsm.")
    self.name = name
    self.max_steps = max_steps or HOST_ENVS[name][0]
    env = _make(name)
    self.num_actions = int(env.action_space.n)
    self.obs_shape = tuple(env.observation_space.shape)
    self.test_episode = test_episode

    def no_jax_env(*args):
      raise NotImplementedError(f"{name} is simulated on the host.")

    jax_env = envs.JaxEnv(name=name, num_actions=self.num_actions,
                          obs_shape=self.obs_shape, max_steps=self.max_steps,
                          solved_threshold=HOST_ENVS[name][1],
                          reset=no_jax_env, step=no_jax_env)
    self.learner = registry.make(learner, jax_env, **kwargs)
    gamma = kwargs["gamma"]
    self._pool: Optional[concurrent.futures.Executor] = None
    if num_workers > 1:
      self._pool = concurrent.futures.ProcessPoolExecutor(
          num_workers, mp_context=multiprocessing.get_context("spawn"))

    def episode(arrays):
      return _episode(arrays, self.max_steps, gamma)

    def update(states, arrays, keys):
      eps = jax.vmap(episode)(arrays)
      return jax.vmap(self.learner.update_from_episode)(states, eps, keys)

    self._update = jax.jit(update)
    self.init = jax.jit(jax.vmap(self.learner.init))

  def close(self):
    if self._pool is not None:
      self._pool.shutdown()

  def _collect(self, params, keys) -> list[dict[str, Any]]:
    """One host episode per seed from per-seed keys ``[S, 2]``."""
    seeds = np.asarray(jax.vmap(
        lambda k: jax.random.randint(k, (2,), 0, 2**31 - 1))(keys))
    jobs = []
    for s in range(seeds.shape[0]):
      layers = numpy_params(jax.tree_util.tree_map(lambda x, s=s: x[s],
                                                   params))
      jobs.append((self.name, layers, int(seeds[s, 0]), int(seeds[s, 1]),
                   self.max_steps))
    if self._pool is not None and len(jobs) > 1:
      return list(self._pool.map(collect_job, jobs))
    return [collect_job(job) for job in jobs]

  def update(self, states, keys) -> tuple[Any, dict[str, Any]]:
    """One training episode per seed; ``info`` holds ``[S]`` arrays."""
    k_ep, k_aux = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    episodes = self._collect(states.params, k_ep)
    arrays = {k: np.stack([np.asarray(ep[k]) for ep in episodes])
              for k in episodes[0]}
    states, info = self._update(states, arrays, k_aux)
    info = {k: np.asarray(v) for k, v in info.items()}
    if self.test_episode:
      tests = self._collect(states.params,
                            jax.vmap(learner_lib.test_episode_key)(keys))
      info["test_reward"] = np.asarray(
          [np.sum(t["rewards"][:t["length"]]) for t in tests], np.float32)
    return states, info
