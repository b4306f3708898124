r"""The RL experiment (poster figure 3): ARSM policy gradient against A2C.

Each learner in ``config.learner`` trains ``config.num_seeds`` independent
policies at once (the update is ``vmap``-ped over seeds and ``jit``-ted), one
episode per update, for ``config.num_episodes`` episodes. Every
``variance_every`` episodes (from episode 0) the variance of the
policy-gradient estimate is measured at the current parameters of each seed
from ``variance_draws`` independent one-episode estimates (mean over
parameters of the per-coordinate variance; its log is plotted).

From a notebook::

    from arsm_jax.tasks import rl
    from configs import rl as rl_config
    result = rl.train_and_evaluate(rl_config.get_config("cartpole"), "/tmp/rl")

Outputs in ``workdir``: ``summary.json`` (episodes to solve per seed, their
median, env steps/s, ...); per learner a folder ``<name>/`` with
``metrics.jsonl`` (per episode: median/mean reward, median and 10th/90th
percentile moving average, mean rollouts; the log gradient variance at the
measurement episodes, floored at ``LOG_VARIANCE_FLOOR`` = log(1e-30) when the
estimate is exactly constant), TensorBoard events, ``curves.npz`` (per-seed
arrays) and ``result.json``; ``rl.png``. A finished learner is not rerun when the
same command is repeated with the same config; an unfinished one resumes
from its last checkpoint (``checkpoint.pkl``, every ``checkpoint_every``
episodes).

LunarLander-v3 (gymnasium, Box2D) runs outside JAX (:mod:`arsm_jax.rl.host`),
with no variance measurement: ARSM seeds one after the other, rollouts by
replay (``env_steps`` then also counts the replayed prefix steps); the
learners without rollouts collect one host episode per seed and update all
seeds at once.

Per episode every learner also logs the policy's mean entropy and the
fraction of steps with a pseudo action that differs from the action, and
(``test_episode``) the reward of one test episode of the updated stochastic
policy (the authors' score), with its own episodes to solve.

Solved (gym's rule): episode e >= W counts as solved when the mean reward of
episodes e-W+1..e is at least the threshold (CartPole-v1: 475, Acrobot-v1:
-100), W = ``moving_average_window`` (100). ``episodes_to_solve`` is the first
such e, ``null`` when never reached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from arsm_jax import envs
from arsm_jax import tasks
from arsm_jax import writers
from arsm_jax.rl import learners as learners_lib

Array = jax.Array

_EPISODE_KEYS = ("reward", "length", "num_rollouts", "env_steps", "entropy",
                 "eligible_fraction")


def _episode_keys(config) -> tuple[str, ...]:
  return _EPISODE_KEYS + (("test_reward",) if config.test_episode else ())
# Log-variance reported for an estimate with exactly zero variance (ARSM
# when no rollout's return differs from the episode's: no signal at all).
LOG_VARIANCE_FLOOR = float(np.log(1e-30))


def learner_list(config) -> list[str]:
  return tasks.name_list(config.learner, "learner", "learner",
                         learners_lib.LEARNERS)


def validate_config(config) -> list[str]:
  """Checks the config before anything is compiled; returns the learners."""
  if config.env not in envs.SUPPORTED:
    raise ValueError(f"Unsupported environment {config.env!r}; supported: "
                     f"{', '.join(envs.SUPPORTED)}.")
  for field in ("num_seeds", "num_episodes", "moving_average_window"):
    if config[field] < 1:
      raise ValueError(f"{field} must be >= 1; got {config[field]}.")
  for field in ("learning_rate", "critic_learning_rate",
                "relax_learning_rate", "relax_temperature"):
    if not config[field] > 0:
      raise ValueError(f"{field} must be > 0; got {config[field]}.")
  if not 0.0 < config.gamma <= 1.0:
    raise ValueError(f"gamma must be in (0, 1]; got {config.gamma}.")
  if not 0.0 <= config.gae_lambda <= 1.0:
    raise ValueError(f"gae_lambda must be in [0, 1]; got {config.gae_lambda}.")
  if not 0.0 <= config.baseline_decay < 1.0:
    raise ValueError(
        f"baseline_decay must be in [0, 1); got {config.baseline_decay}.")
  if config.rollout_budget not in learners_lib.ROLLOUT_BUDGETS:
    raise ValueError(f"rollout_budget must be one of "
                     f"{', '.join(learners_lib.ROLLOUT_BUDGETS)}; got "
                     f"{config.rollout_budget!r}.")
  if config.max_rollouts < -1:
    raise ValueError(f"max_rollouts must be >= 1, or 0 / -1 for uncapped; "
                     f"got {config.max_rollouts}.")
  if config.max_episode_steps < 0:
    raise ValueError(f"max_episode_steps must be >= 0 (0 = the environment's "
                     f"limit); got {config.max_episode_steps}.")
  if config.variance_every < 0:
    raise ValueError(f"variance_every must be >= 0 (0 = never); got "
                     f"{config.variance_every}.")
  if config.variance_every and config.variance_draws < 2:
    raise ValueError(f"variance_draws must be >= 2 to measure a variance; got "
                     f"{config.variance_draws}.")
  if config.checkpoint_every < 0:
    raise ValueError(f"checkpoint_every must be >= 0; got "
                     f"{config.checkpoint_every}.")
  if config.num_workers < 1:
    raise ValueError(f"num_workers must be >= 1; got {config.num_workers}.")
  if config.env in envs.HOST_ENVS:
    if config.common_random_numbers:
      raise ValueError("common_random_numbers is not implemented for "
                       f"{config.env}.")
    if config.variance_every:
      raise ValueError(f"variance_every must be 0 for {config.env} (no "
                       "gradient-variance measurement on the host); got "
                       f"{config.variance_every}.")
  hidden = tuple(config.hidden)
  if not hidden or any(int(h) < 1 for h in hidden):
    raise ValueError(f"hidden must list positive widths; got {hidden}.")
  return learner_list(config)


def _learner_kwargs(config) -> dict[str, Any]:
  return dict(
      learning_rate=config.learning_rate, gamma=config.gamma,
      max_rollouts=config.max_rollouts, hidden=tuple(config.hidden),
      critic_learning_rate=config.critic_learning_rate,
      gae_lambda=config.gae_lambda, baseline_decay=config.baseline_decay,
      common_random_numbers=config.common_random_numbers,
      rollout_budget=config.rollout_budget,
      a2c_bootstrap_truncated=config.a2c_bootstrap_truncated,
      relax_temperature=config.relax_temperature,
      relax_learning_rate=config.relax_learning_rate)


def make_learner(name: str, config) -> learners_lib.Learner:
  env = envs.make(config.env, config.max_episode_steps)
  return learners_lib.make_learner(name, env, test_episode=config.test_episode,
                                   **_learner_kwargs(config))


def moving_average(rewards: np.ndarray, window: int) -> np.ndarray:
  """Mean of the last ``min(window, e)`` episodes at each episode e.

  Args:
    rewards: ``[E, S]`` episode rewards of S seeds.
    window: W.

  Returns:
    ``[E, S]``.
  """
  csum = np.cumsum(rewards, axis=0)
  out = np.empty_like(csum, dtype=np.float64)
  e = np.arange(1, rewards.shape[0] + 1)
  start = np.maximum(e - window, 0)
  prev = np.where((start > 0)[:, None], csum[np.maximum(start - 1, 0)], 0.0)
  out[:] = (csum - prev) / (e - start)[:, None]
  return out


def episodes_to_solve(rewards: np.ndarray, window: int,
                      threshold: float) -> list[Any]:
  """First episode (1-based) whose ``window``-episode mean reaches threshold."""
  ma = moving_average(rewards, window)
  out = []
  for s in range(rewards.shape[1]):
    hit = np.nonzero((ma[:, s] >= threshold)
                     & (np.arange(1, len(ma) + 1) >= window))[0]
    out.append(int(hit[0]) + 1 if hit.size else None)
  return out


def median_episodes(solve: list[Any]) -> Any:
  """Median with unsolved seeds counted as infinitely slow (None if so)."""
  vals = np.array([np.inf if v is None else v for v in solve], np.float64)
  med = float(np.median(vals))
  return med if np.isfinite(med) else None


def _config_hash(config, name: str) -> str:
  keys = ("env", "num_seeds", "num_episodes", "learning_rate",
          "critic_learning_rate", "gamma", "max_rollouts", "max_episode_steps",
          "gae_lambda", "baseline_decay", "variance_every", "variance_draws",
          "seed")
  blob = {k: config[k] for k in keys}
  blob["hidden"] = list(config.hidden)
  blob["name"] = name
  blob["test_episode"] = bool(config.test_episode)
  if name != "arsm":
    blob.pop("max_rollouts")
  else:
    if config.common_random_numbers:
      blob["common_random_numbers"] = True
    if config.rollout_budget != "unbiased":
      blob["rollout_budget"] = config.rollout_budget
  if name == "a2c":
    blob["a2c_bootstrap_truncated"] = bool(config.a2c_bootstrap_truncated)
  if name == "relax":
    blob["relax_learning_rate"] = config.relax_learning_rate
    blob["relax_temperature"] = config.relax_temperature
  return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _grad_log_variance(learner: learners_lib.Learner, draws: int):
  """``(states, keys) -> [num_seeds]`` log mean per-coordinate variance.

  Seeds and draws share one ``vmap`` axis (cheaper to compile than two).
  """

  def measure(states, keys):
    num_seeds = keys.shape[0]
    rep = jax.tree_util.tree_map(lambda x: jnp.repeat(x, draws, axis=0),
                                 states)
    draw_keys = jax.vmap(lambda k: jax.random.split(k, draws))(keys)
    grads, _ = jax.vmap(learner.estimate)(
        rep, draw_keys.reshape((num_seeds * draws,) + keys.shape[1:]))
    flat = jnp.concatenate(
        [g.reshape(num_seeds, draws, -1)
         for g in jax.tree_util.tree_leaves(grads)], axis=2)
    var = jnp.mean(jnp.var(flat, axis=1, ddof=1), axis=1)
    return jnp.maximum(jnp.log(var), LOG_VARIANCE_FLOOR)

  return jax.jit(measure)


def _save_checkpoint(path: str, payload: dict[str, Any]) -> None:
  tmp = path + ".tmp"
  with open(tmp, "wb") as fh:
    pickle.dump(payload, fh)
  os.replace(tmp, path)


def _truncate_metrics(logdir: str, last_step: int) -> None:
  """Drops metrics.jsonl rows logged after the checkpoint being resumed."""
  path = os.path.join(logdir, writers.METRICS_FILE)
  if not os.path.exists(path):
    return
  def keep(row):
    # The variance row at ``last_step`` is measured again after resuming.
    return row["step"] < last_step or (row["step"] == last_step
                                       and "reward_median" in row)

  with open(path) as fh:
    rows = [line for line in fh if line.strip() and keep(json.loads(line))]
  with open(path + ".tmp", "w") as fh:
    fh.writelines(rows)
  os.replace(path + ".tmp", path)


def _seed_keys(config):
  """Per-seed ``(init, train, variance)`` keys, each ``[num_seeds, 2]``."""
  base = jax.random.PRNGKey(config.seed)
  seed_keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(
      jnp.arange(config.num_seeds))
  return jax.vmap(lambda k: jax.random.split(k, 3))(seed_keys).transpose(
      1, 0, 2)


def _diagnostic_scalars(info) -> dict[str, Any]:
  """Median and 10th/90th percentile over seeds of the policy diagnostics."""
  out = {}
  for k in ("entropy", "eligible_fraction"):
    x = np.asarray(info[k])
    out.update({f"{k}_median": np.median(x), f"{k}_p10": np.percentile(x, 10),
                f"{k}_p90": np.percentile(x, 90)})
  return out


def _train_jax(name, config, logdir, ckpt, ckpt_path, digest):
  """All seeds of a learner, vmapped; one update per episode.

  On a host simulator (learners without rollouts) the episodes are collected
  on the host and only the updates are vmapped (:class:`host.HostBatch`).
  """
  num_episodes = config.num_episodes
  init_keys, train_keys, var_keys = _seed_keys(config)
  trainer = None
  if config.env in envs.HOST_ENVS:
    from arsm_jax.rl import host  # pylint: disable=g-import-not-at-top
    trainer = host.HostBatch(config.env, name,
                             max_steps=config.max_episode_steps,
                             num_workers=config.num_workers,
                             test_episode=config.test_episode,
                             **_learner_kwargs(config))
    learner = trainer.learner
    update, variance = trainer.update, None
  else:
    learner = make_learner(name, config)
    update = jax.jit(jax.vmap(learner.update))
    variance = (_grad_log_variance(learner, config.variance_draws)
                if config.variance_every else None)

  def episode_keys(keys, e):
    return jax.vmap(lambda k: jax.random.fold_in(k, e))(keys)

  if ckpt is not None:
    start = ckpt["episode"]
    fresh = jax.vmap(learner.init)(init_keys)
    states = jax.tree_util.tree_map(lambda f, x: jnp.asarray(x, f.dtype),
                                    fresh, ckpt["states"])
    history = ckpt["history"]
    var_history = ckpt["var_history"]
    train_seconds = ckpt["train_seconds"]
    logging.info("rl: %s resumes at episode %d.", name, start)
    _truncate_metrics(logdir, start)
  else:
    start = 0
    states = jax.vmap(learner.init)(init_keys)
    history = {k: [] for k in _episode_keys(config)}
    var_history = {"episode": [], "log_grad_variance": []}
    train_seconds = 0.0

  t0 = time.time()
  if trainer is None:
    update = update.lower(states, train_keys).compile()
  if variance is not None:
    variance = variance.lower(states, var_keys).compile()
  compile_seconds = time.time() - t0

  window = config.moving_average_window
  progress = writers.ProgressReporter(num_episodes, name=f"rl/{name}",
                                      first_step=start)
  with contextlib.ExitStack() as stack:
    if trainer is not None:
      stack.callback(trainer.close)
    writer = stack.enter_context(writers.MetricWriter(logdir))
    for e in range(start, num_episodes):
      if variance is not None and e % config.variance_every == 0:
        lv = np.asarray(variance(states, episode_keys(var_keys, e)))
        var_history["episode"].append(e)
        var_history["log_grad_variance"].append(lv)
        writer.write_scalars(e, {
            "log_grad_variance_median": np.median(lv),
            "log_grad_variance_p10": np.percentile(lv, 10),
            "log_grad_variance_p90": np.percentile(lv, 90)})
      t1 = time.time()
      states, info = update(states, episode_keys(train_keys, e))
      info = jax.tree_util.tree_map(np.asarray, info)
      train_seconds += time.time() - t1
      for k in history:
        history[k].append(info[k])
      recent = np.stack(history["reward"][-window:])         # [<=W, S]
      ma = recent.mean(axis=0)
      scalars = {
          "reward_median": np.median(info["reward"]),
          "reward_mean": np.mean(info["reward"]),
          "moving_average_median": np.median(ma),
          "moving_average_p10": np.percentile(ma, 10),
          "moving_average_p90": np.percentile(ma, 90),
          "num_rollouts_mean": np.mean(info["num_rollouts"]),
          "env_steps_mean": np.mean(info["env_steps"]),
          **_diagnostic_scalars(info)}
      if "test_reward" in history:
        test_ma = np.stack(history["test_reward"][-window:]).mean(axis=0)
        scalars.update({
            "test_reward_median": np.median(info["test_reward"]),
            "test_moving_average_median": np.median(test_ma),
            "test_moving_average_p10": np.percentile(test_ma, 10),
            "test_moving_average_p90": np.percentile(test_ma, 90)})
      writer.write_scalars(e + 1, scalars)
      progress(e + 1, {"moving_average_median": np.median(ma)})
      if (config.checkpoint_every and (e + 1) % config.checkpoint_every == 0
          and e + 1 < num_episodes):
        writer.flush()
        _save_checkpoint(ckpt_path, {
            "config_hash": digest, "episode": e + 1,
            "states": jax.tree_util.tree_map(np.asarray, states),
            "history": history, "var_history": var_history,
            "train_seconds": train_seconds})

  return history, var_history, train_seconds, compile_seconds


def _train_host(name, config, logdir, ckpt, ckpt_path, digest):
  """Seeds one after the other on a host simulator (ARSM only, no variance)."""
  from arsm_jax.rl import host  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  trainer = host.HostArsm(
      config.env, learning_rate=config.learning_rate, gamma=config.gamma,
      max_rollouts=config.max_rollouts, max_steps=config.max_episode_steps,
      hidden=tuple(config.hidden), num_workers=config.num_workers,
      rollout_budget=config.rollout_budget, test_episode=config.test_episode)
  init_keys, train_keys, _ = _seed_keys(config)
  num_episodes = config.num_episodes
  if ckpt is not None:
    per_seed, train_seconds = ckpt["per_seed"], ckpt["train_seconds"]
    logging.info("rl: %s resumes at seed %d.", name, len(per_seed))
  else:
    per_seed, train_seconds = [], 0.0
  compile_seconds = 0.0
  try:
    for s in range(len(per_seed), config.num_seeds):
      state = trainer.init(init_keys[s])
      hist = {k: [] for k in _episode_keys(config)}
      progress = writers.ProgressReporter(num_episodes,
                                          name=f"rl/{name}/seed{s}")
      for e in range(num_episodes):
        t1 = time.time()
        state, info = trainer.update(state,
                                     jax.random.fold_in(train_keys[s], e))
        if s == 0 and e == 0:
          compile_seconds = time.time() - t0
        else:
          train_seconds += time.time() - t1
        for k in hist:
          hist[k].append(info[k])
        progress(e + 1, {"reward": info["reward"]})
      per_seed.append({k: np.stack(v) for k, v in hist.items()})
      if config.checkpoint_every and s + 1 < config.num_seeds:
        _save_checkpoint(ckpt_path, {
            "config_hash": digest, "per_seed": per_seed,
            "train_seconds": train_seconds})
  finally:
    trainer.close()
  history = {k: [np.stack([p[k][e] for p in per_seed])
                 for e in range(num_episodes)] for k in _episode_keys(config)}
  rewards = np.stack(history["reward"])                       # [E, S]
  ma = moving_average(rewards, config.moving_average_window)
  with writers.MetricWriter(logdir) as writer:
    writer.write_many(np.arange(1, num_episodes + 1), {
        "reward_median": np.median(rewards, axis=1),
        "reward_mean": np.mean(rewards, axis=1),
        "moving_average_median": np.median(ma, axis=1),
        "moving_average_p10": np.percentile(ma, 10, axis=1),
        "moving_average_p90": np.percentile(ma, 90, axis=1),
        "num_rollouts_mean": np.mean(np.stack(history["num_rollouts"]), 1),
        "env_steps_mean": np.mean(np.stack(history["env_steps"]), 1),
        **{f"{k}_median": np.median(np.stack(history[k]), axis=1)
           for k in ("entropy", "eligible_fraction", "test_reward")
           if k in history}})
  var_history = {"episode": [], "log_grad_variance": []}
  return history, var_history, train_seconds, compile_seconds


def run_learner(name: str, config, workdir: str) -> dict[str, Any]:
  """Trains ``config.num_seeds`` seeds of one learner (or loads the result)."""
  logdir = os.path.join(workdir, name)
  done_path = os.path.join(logdir, "result.json")
  ckpt_path = os.path.join(logdir, "checkpoint.pkl")
  digest = _config_hash(config, name)
  saved = writers.load_finished(logdir, digest)
  if saved is not None:
    logging.info("rl: %s already done in %s; loading it.", name, logdir)
    return saved

  ckpt = None
  if os.path.exists(ckpt_path) and not os.path.exists(done_path):
    with open(ckpt_path, "rb") as fh:
      ckpt = pickle.load(fh)
    if ckpt.get("config_hash") != digest:
      ckpt = None
  if ckpt is None and os.path.isdir(logdir):
    shutil.rmtree(logdir)
  os.makedirs(logdir, exist_ok=True)

  if config.env in envs.HOST_ENVS and name == "arsm":
    history, var_history, train_seconds, compile_seconds = _train_host(
        name, config, logdir, ckpt, ckpt_path, digest)
  else:
    history, var_history, train_seconds, compile_seconds = _train_jax(
        name, config, logdir, ckpt, ckpt_path, digest)
  threshold = (envs.HOST_ENVS[config.env][1] if config.env in envs.HOST_ENVS
               else envs.make(config.env).solved_threshold)
  num_seeds = config.num_seeds
  window = config.moving_average_window

  curves = {k: np.stack(v) for k, v in history.items()}       # [E, S]
  if var_history["episode"]:
    curves["variance_episode"] = np.asarray(var_history["episode"])
    curves["log_grad_variance"] = np.stack(var_history["log_grad_variance"])
  else:
    curves["variance_episode"] = np.zeros((0,), np.int64)
    curves["log_grad_variance"] = np.zeros((0, num_seeds))
  curves["moving_average"] = moving_average(curves["reward"], window)
  solve = episodes_to_solve(curves["reward"], window, threshold)
  total_steps = int(np.sum(curves["env_steps"]))
  result = {
      "learner": name,
      "env": config.env,
      "solved_threshold": threshold,
      "episodes_to_solve": solve,
      "median_episodes_to_solve": median_episodes(solve),
      "num_solved": int(sum(v is not None for v in solve)),
      "final_moving_average_median": float(
          np.median(curves["moving_average"][-1])),
      "mean_rollouts_per_episode": float(np.mean(curves["num_rollouts"])),
      "total_env_steps": total_steps,
      "total_episode_steps": int(np.sum(curves["length"])),
      "train_seconds": train_seconds,
      "compile_seconds": compile_seconds,
      "env_steps_per_second": total_steps / max(train_seconds, 1e-9),
      "num_seeds": num_seeds,
      "num_episodes": config.num_episodes,
      "config_hash": digest,
      "final_entropy_median": float(np.median(curves["entropy"][-1])),
      "final_eligible_fraction_median": float(
          np.median(curves["eligible_fraction"][-1])),
  }
  if "test_reward" in curves:
    # The authors' score: one test episode of the stochastic policy after
    # each update, with the same solved rule.
    curves["test_moving_average"] = moving_average(curves["test_reward"],
                                                   window)
    test_solve = episodes_to_solve(curves["test_reward"], window, threshold)
    result.update({
        "test_episodes_to_solve": test_solve,
        "median_test_episodes_to_solve": median_episodes(test_solve),
        "num_test_solved": int(sum(v is not None for v in test_solve)),
        "final_test_moving_average_median": float(
            np.median(curves["test_moving_average"][-1]))})
  np.savez(os.path.join(logdir, "curves.npz"), **curves)
  writers.write_json(done_path, result)
  if os.path.exists(ckpt_path):
    os.remove(ckpt_path)
  logging.info("rl: %s on %s: episodes to solve %s (median %s), %.0f env "
               "steps/s", name, config.env, solve,
               result["median_episodes_to_solve"],
               result["env_steps_per_second"])
  result.update(curves)
  return result


def plot_rl(results: dict[str, dict[str, Any]], config, path: str) -> None:
  """Moving-average reward and log gradient variance: median, 10-90% band."""
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for name, r in results.items():
    col = plotting.color(name)
    ma = np.asarray(r["moving_average"])                     # [E, S]
    x = np.arange(1, ma.shape[0] + 1)
    axes[0].plot(x, np.median(ma, axis=1), color=col, label=name)
    axes[0].fill_between(x, np.percentile(ma, 10, axis=1),
                         np.percentile(ma, 90, axis=1), color=col, alpha=0.2)
    lv = np.maximum(np.asarray(r["log_grad_variance"]),
                    LOG_VARIANCE_FLOOR)                      # [M, S]
    if lv.size:
      xv = np.asarray(r["variance_episode"])
      axes[1].plot(xv, np.median(lv, axis=1), color=col, label=name)
      axes[1].fill_between(xv, np.percentile(lv, 10, axis=1),
                           np.percentile(lv, 90, axis=1), color=col,
                           alpha=0.2)
  threshold = (envs.HOST_ENVS[config.env][1] if config.env in envs.HOST_ENVS
               else envs.make(config.env).solved_threshold)
  axes[0].axhline(threshold, color="k", ls=":", lw=0.8)
  axes[0].set_title(f"{config.env}: moving-average reward "
                    f"({config.moving_average_window} episodes)")
  axes[1].set_title(f"log variance of the policy gradient "
                    f"({config.variance_draws} estimates)")
  axes[1].set_ylabel(f"log variance (floor {LOG_VARIANCE_FLOOR:.0f}: "
                     "exactly zero)")
  for ax in axes:
    ax.set_xlabel("episode")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.suptitle(f"median of {config.num_seeds} seeds, bands 10th-90th "
               "percentile")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Runs every learner in ``config.learner`` on ``config.env``.

  Returns:
    ``{"summary": {name: {...}}, "curves": {name: {...}}}``; the summary is
    also written to ``workdir/summary.json`` and the figure to ``rl.png``.
  """
  names = validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  results = {name: run_learner(name, config, workdir) for name in names}
  curve_keys = ("reward", "length", "num_rollouts", "env_steps",
                "moving_average", "variance_episode", "log_grad_variance",
                "entropy", "eligible_fraction")
  if config.test_episode:
    curve_keys += ("test_reward", "test_moving_average")
  summary = {name: {k: v for k, v in r.items()
                    if k not in curve_keys and k != "config_hash"}
             for name, r in results.items()}
  writers.write_json(os.path.join(workdir, "summary.json"), {
      "env": config.env,
      "config": json.loads(config.to_json()),
      "learners": summary,
  })
  curves = {name: {k: r[k] for k in curve_keys} for name, r in results.items()}
  if config.plot:
    plot_rl(results, config, os.path.join(workdir, "rl.png"))
  return {"summary": summary, "curves": curves}
