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
arrays), ``config.json`` (what identifies the learner's run) and
``result.json``; ``rl.png``. The lifecycle is :mod:`arsm_jax.runs`. A finished
learner is not rerun when the same command is repeated with the same config;
an unfinished one resumes from its newest readable orbax checkpoint
(``checkpoints/``, every ``checkpoint_every`` episodes; a damaged one is
reported and skipped) and ends with the curves of an uninterrupted run. A
learner's run is identified by the whole config except ``RESUMABLE_FIELDS``
and the other learners' settings (``learner_settings.<other>``): under any
other change the rerun is refused, naming the differing fields, unless
``config.fresh`` is set (the learner's folder is emptied and it runs again).

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
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from arsm_jax import config_checks as checks
from arsm_jax import envs
from arsm_jax import parallel
from arsm_jax import rl as rl_lib
from arsm_jax import runs
from arsm_jax import workdirs
from arsm_jax import writers
from arsm_jax.rl import registry

Array = jax.Array

# Log-variance reported for an estimate with exactly zero variance (ARSM
# when no rollout's return differs from the episode's: no signal at all).
LOG_VARIANCE_FLOOR = float(np.log(1e-30))

# Fields that may differ between a run and its resumption.
PLOT_FILE = "rl.png"
RESUMABLE_FIELDS = ("learner", "checkpoint_every", "num_workers")


def learner_list(config) -> list[str]:
  return checks.names(config, "learner", registry.LEARNERS, "learner")


def validate_config(config) -> list[str]:
  """Checks the config before anything is compiled; returns the learners."""
  checks.choice(config, "env", envs.SUPPORTED, noun="environment",
                unknown="Unsupported", label="supported")
  for field in ("num_seeds", "num_episodes", "moving_average_window",
                "num_workers"):
    checks.integer(config, field, low=1)
  checks.positive_number(config, "learning_rate")
  checks.number(config, "gamma", 0.0, 1.0, low_open=True)
  checks.boolean(config, "test_episode")
  for name in registry.LEARNERS:
    registry.check_settings(name, config.learner_settings[name])
  checks.integer(config, "max_episode_steps", low=0)
  checks.integer(config, "variance_every", low=0)
  if config.variance_every:
    checks.integer(config, "variance_draws", low=2)
  checks.integer(config, "checkpoint_every", low=0)
  names = learner_list(config)
  if config.env in envs.HOST_ENVS:
    if config.learner_settings.arsm.common_random_numbers:
      raise checks.fail("learner_settings.arsm.common_random_numbers", True,
                        f"False for {config.env} (not implemented there)")
    if config.variance_every:
      raise checks.fail("variance_every", config.variance_every,
                        f"0 for {config.env} (no gradient-variance "
                        "measurement on the host)")
  checks.widths(config, "hidden")
  return names


def check_processes(config) -> None:
  """Refuses a config that cannot run under this many processes.

  Called once JAX knows the processes (after
  :func:`~arsm_jax.parallel.initialize_distributed`), before any work: the
  seeds are split evenly over the processes, and a host environment runs in
  one process only.
  """
  count = jax.process_count()
  if count == 1:
    return
  if config.env in envs.HOST_ENVS:
    raise ValueError(
        f"env={config.env!r} runs on the host in one process; it cannot run "
        f"under {count} processes (run it without the launcher).")
  parallel.process_rows(config.num_seeds, "num_seeds")


def _learner_kwargs(name: str, config) -> dict[str, Any]:
  """The options of :func:`arsm_jax.rl.registry.make` for learner ``name``
  besides the environment: the common ones and its own settings."""
  return dict(learning_rate=config.learning_rate, gamma=config.gamma,
              hidden=tuple(config.hidden),
              settings=config.learner_settings[name].to_dict())


def make_learner(name: str, config) -> rl_lib.Learner:
  env = envs.make(config.env, config.max_episode_steps)
  return registry.make(name, env, test_episode=config.test_episode,
                       **_learner_kwargs(name, config))


def solved_threshold(config) -> float:
  """The moving-average reward at which ``config.env`` counts as solved."""
  if config.env in envs.HOST_ENVS:
    return envs.HOST_ENVS[config.env][1]
  return envs.make(config.env).solved_threshold


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


def run_identity(config, name: str) -> dict[str, Any]:
  """What identifies learner ``name``'s run: the config minus resumable
  fields and the other learners' settings. The learner's own settings are
  flat ``learner_settings.<name>.<field>`` entries, so a changed one is named
  as the override that sets it."""
  values = runs.config_json(config)
  settings = values.pop("learner_settings")[name]
  current = runs.identity(values, RESUMABLE_FIELDS)
  current.update({f"learner_settings.{name}.{field}": value
                  for field, value in settings.items()})
  current["learner"] = name
  return current


def _grad_log_variance(learner: rl_lib.Learner, draws: int):
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


def _empty_history(config) -> dict[str, Any]:
  """Per-episode arrays ``[E, S]``, filled in as episodes finish."""
  shape = (config.num_episodes, config.num_seeds)
  history = {"reward": np.zeros(shape, np.float32),
             "length": np.zeros(shape, np.int32),
             "num_rollouts": np.zeros(shape, np.int32),
             "env_steps": np.zeros(shape, np.int32),
             "entropy": np.zeros(shape, np.float32),
             "eligible_fraction": np.zeros(shape, np.float32)}
  if config.test_episode:
    history["test_reward"] = np.zeros(shape, np.float32)
  return history


def _episode_scalars(info, ma, test_ma=None) -> dict[str, Any]:
  """The logged metrics over seeds (the last axis) of ``info``'s arrays.

  Args:
    info: per-episode arrays, ``[S]`` (one episode) or ``[E, S]``.
    ma: the moving-average reward, shaped like ``info["reward"]``.
    test_ma: the same of the test episodes (``None`` without them).

  Returns:
    Scalars (or ``[E]`` arrays) by metric name.
  """

  def spread(prefix, x):
    return {f"{prefix}_median": np.median(x, axis=-1),
            f"{prefix}_p10": np.percentile(x, 10, axis=-1),
            f"{prefix}_p90": np.percentile(x, 90, axis=-1)}

  out = {"reward_median": np.median(info["reward"], axis=-1),
         "reward_mean": np.mean(info["reward"], axis=-1),
         **spread("moving_average", ma),
         "num_rollouts_mean": np.mean(info["num_rollouts"], axis=-1),
         "env_steps_mean": np.mean(info["env_steps"], axis=-1),
         **spread("entropy", np.asarray(info["entropy"])),
         **spread("eligible_fraction", np.asarray(info["eligible_fraction"]))}
  if test_ma is not None:
    out["test_reward_median"] = np.median(info["test_reward"], axis=-1)
    out.update(spread("test_moving_average", test_ma))
  return out


def _numpy_tree(tree):
  return jax.tree_util.tree_map(np.array, tree)


def _seed_keys(config):
  """Per-seed ``(init, train, variance)`` keys, each ``[num_seeds, 2]``."""
  base = jax.random.PRNGKey(config.seed)
  seed_keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(
      jnp.arange(config.num_seeds))
  return jax.vmap(lambda k: jax.random.split(k, 3))(seed_keys).transpose(
      1, 0, 2)


def progress_every(num_episodes: int) -> int:
  """Episodes between two progress lines: about 20 lines a run."""
  return max(1, num_episodes // 20)


def _progress_extra(history, ma, recent) -> dict[str, Any]:
  """A progress line's numbers: the median over seeds of the moving average
  and, for learners with rollouts, the rollouts so far (all seeds)."""
  extra = {"moving_average_median": float(np.median(ma))}
  done = recent.stop
  rollouts = int(history["num_rollouts"][:done].sum())
  if rollouts:
    extra["rollouts"] = rollouts
  return extra


def _train_jax(name, config, run):
  """All seeds of a learner, vmapped; one update per episode.

  On a host simulator (learners without rollouts) the episodes are collected
  on the host and only the updates are vmapped (:class:`host.HostBatch`).

  Everything logged at step e (the episode's rewards, the variance measured
  at the parameters after e updates) is written before the checkpoint of
  step e, so a resumed run cuts its metrics back to the checkpoint's step.
  """
  with contextlib.ExitStack() as stack:
    if config.env in envs.HOST_ENVS:
      from arsm_jax.rl import host  # pylint: disable=g-import-not-at-top
      trainer = host.HostBatch(config.env, name,
                               max_steps=config.max_episode_steps,
                               num_workers=config.num_workers,
                               test_episode=config.test_episode,
                               **_learner_kwargs(name, config))
      stack.callback(trainer.close)
    else:
      trainer = None
    return _train_vmapped(name, config, run, trainer)


def _train_vmapped(name, config, run, trainer):
  """:func:`_train_jax` given the host trainer (``None`` for a JAX env).

  Under several processes (a JAX env only) each process trains its
  :func:`~arsm_jax.parallel.process_rows` of the seeds; every episode's
  per-seed results are gathered on every process
  (:func:`~arsm_jax.parallel.gather_rows`), so the history, the rows
  (written by process 0) and the result are those of one process. A
  checkpoint holds every seed's state, gathered the same way.
  """
  num_episodes, num_seeds = config.num_episodes, config.num_seeds
  every = config.variance_every
  init_keys, train_keys, var_keys = _seed_keys(config)
  sharded = jax.process_count() > 1
  rows = parallel.process_rows(num_seeds, "num_seeds")

  if trainer is not None:
    learner = trainer.learner
    update, variance = trainer.update, None
  else:
    learner = make_learner(name, config)
    update = jax.jit(jax.vmap(learner.update))
    variance = (_grad_log_variance(learner, config.variance_draws)
                if every else None)

  def episode_keys(keys, e):
    return jax.vmap(lambda k: jax.random.fold_in(k, e))(keys)

  num_measures = -(-num_episodes // every) if every else 0
  log_var = np.zeros((num_measures, num_seeds), np.float32)

  def snapshot(states, history, log_var, train_seconds):
    out = {"states": states, "history": history,
           "train_seconds": np.asarray(train_seconds, np.float32)}
    if num_measures:    # orbax refuses arrays of size zero
      out["log_grad_variance"] = log_var
    return out

  saved, start = run.restore_or_initialize(snapshot(
      jax.vmap(learner.init)(init_keys), _empty_history(config), log_var, 0))
  states = saved["states"]
  if sharded:
    states = jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)[rows]),
                                    states)
    train_keys, var_keys = train_keys[rows], var_keys[rows]
    logging.info("rl: process %d of %d trains seeds %d:%d of %d.",
                 jax.process_index(), jax.process_count(), rows.start,
                 rows.stop, num_seeds)
  history = _numpy_tree(saved["history"])
  if num_measures:
    log_var = np.array(saved["log_grad_variance"])
  train_seconds = float(saved["train_seconds"])
  if start:
    logging.info("rl: %s resumes at episode %d.", name, start)

  logging.info("rl: %s on %s, %d seeds x %d episodes%s: compiling.", name,
               config.env, num_seeds, num_episodes,
               f" from episode {start}" if start else "")
  t0 = time.time()
  if trainer is None:
    update = update.lower(states, train_keys).compile()
  if variance is not None:
    variance = variance.lower(states, var_keys).compile()
  compile_seconds = time.time() - t0

  logging.info("rl: %s compiled in %.1fs.", name, compile_seconds)
  window = config.moving_average_window
  progress = writers.ProgressReporter(
      num_episodes, every_secs=60.0, name=f"rl/{name}", first_step=start,
      every_steps=progress_every(num_episodes), unit="episode",
      first_compiles=trainer is not None)

  def measure(e):
    lv = parallel.gather_rows(
        np.asarray(variance(states, episode_keys(var_keys, e))))
    log_var[e // every] = lv
    run.write(e, {
        "log_grad_variance_median": np.median(lv),
        "log_grad_variance_p10": np.percentile(lv, 10),
        "log_grad_variance_p90": np.percentile(lv, 90)})

  if variance is not None and start == 0:
    measure(0)
  for e in range(start, num_episodes):
    t1 = time.time()
    states, info = update(states, episode_keys(train_keys, e))
    info = parallel.gather_rows(jax.tree_util.tree_map(np.asarray, info))
    train_seconds += time.time() - t1
    for k in history:
      history[k][e] = info[k]
    done = e + 1
    recent = slice(max(done - window, 0), done)
    ma = history["reward"][recent].mean(axis=0)             # [S]
    test_ma = (history["test_reward"][recent].mean(axis=0)  # [S]
               if "test_reward" in history else None)
    run.write(done, _episode_scalars(info, ma, test_ma))
    if variance is not None and done % every == 0 and done < num_episodes:
      measure(done)
    progress(done, _progress_extra(history, ma, recent))
    if (config.checkpoint_every and done % config.checkpoint_every == 0
        and done < num_episodes):
      run.checkpoint(done, snapshot(parallel.gather_rows(states), history,
                                    log_var, train_seconds))

  var_episodes = np.arange(num_measures) * every
  return history, (var_episodes, log_var), train_seconds, compile_seconds


def _train_host(name, config, run):
  """ARSM's seeds one after the other on a host simulator (no variance)."""
  from arsm_jax.rl import host  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  num_episodes, num_seeds = config.num_episodes, config.num_seeds
  fresh = {"history": _empty_history(config),
           "seeds_done": np.zeros((), np.int32),
           "train_seconds": np.zeros((), np.float32)}
  # The metrics are written at the end only: none are kept on resumption.
  saved, _ = run.restore_or_initialize(fresh, rows_follow_checkpoints=False)
  history = _numpy_tree(saved["history"])
  first_seed = int(saved["seeds_done"])
  train_seconds = float(saved["train_seconds"])
  if first_seed:
    logging.info("rl: %s resumes at seed %d.", name, first_seed)
  settings = config.learner_settings.arsm
  trainer = host.HostArsm(
      config.env, learning_rate=config.learning_rate, gamma=config.gamma,
      max_rollouts=settings.max_rollouts, max_steps=config.max_episode_steps,
      hidden=tuple(config.hidden), num_workers=config.num_workers,
      rollout_budget=settings.rollout_budget,
      test_episode=config.test_episode)
  init_keys, train_keys, _ = _seed_keys(config)
  compile_seconds = 0.0
  try:
    for s in range(first_seed, num_seeds):
      state = trainer.init(init_keys[s])
      progress = writers.ProgressReporter(
          num_episodes, every_secs=60.0, name=f"rl/{name}/seed{s}",
          every_steps=progress_every(num_episodes), unit="episode",
          first_compiles=s == first_seed)
      for e in range(num_episodes):
        t1 = time.time()
        state, info = trainer.update(state,
                                     jax.random.fold_in(train_keys[s], e))
        if s == 0 and e == 0:
          compile_seconds = time.time() - t0
        else:
          train_seconds += time.time() - t1
        for k in history:
          history[k][e, s] = info[k]
        recent = slice(max(e + 1 - config.moving_average_window, 0), e + 1)
        progress(e + 1, {
            "moving_average": float(history["reward"][recent, s].mean()),
            "rollouts": int(history["num_rollouts"][:e + 1, s].sum())})
      if config.checkpoint_every and s + 1 < num_seeds:
        run.checkpoint(s + 1, {
            "history": history,
            "seeds_done": np.asarray(s + 1, np.int32),
            "train_seconds": np.asarray(train_seconds, np.float32)})
  finally:
    trainer.close()
  window = config.moving_average_window
  ma = moving_average(history["reward"], window)              # [E, S]
  test_ma = (moving_average(history["test_reward"], window)   # [E, S]
             if "test_reward" in history else None)
  run.write_many(np.arange(1, num_episodes + 1),
                 _episode_scalars(history, ma, test_ma))
  no_variance = (np.zeros((0,), np.int64), np.zeros((0, num_seeds)))
  return history, no_variance, train_seconds, compile_seconds


def run_learner(name: str, config, workdir: str) -> dict[str, Any]:
  """Trains ``config.num_seeds`` seeds of one learner (or loads the result).

  A saved run under a different config (:func:`run_identity`) is refused,
  naming the differing fields, unless ``config.fresh`` is set.
  """
  with runs.Run(os.path.join(workdir, name), run_identity(config, name),
                what=f"rl run of {name}", resumable=RESUMABLE_FIELDS,
                fresh=runs.wants_fresh(config)) as run:
    saved = run.finished_result()
    if saved is not None:
      return saved
    train = (_train_host if config.env in envs.HOST_ENVS and name == "arsm"
             else _train_jax)
    history, (var_episodes, log_var), train_seconds, compile_seconds = train(
        name, config, run)
    result, curves = _result(name, config, history, var_episodes, log_var,
                             train_seconds, compile_seconds)
    run.save_result(result, curves)
  logging.info("rl: %s on %s: episodes to solve %s (median %s), %.0f env "
               "steps/s", name, config.env, result["episodes_to_solve"],
               result["median_episodes_to_solve"],
               result["env_steps_per_second"])
  result.update(curves)
  return result


def _result(name, config, history, var_episodes, log_var, train_seconds,
            compile_seconds) -> tuple[dict[str, Any], dict[str, Any]]:
  """A finished learner's ``result.json`` values and curves."""
  num_seeds = config.num_seeds
  window = config.moving_average_window

  threshold = solved_threshold(config)
  curves = dict(history)                                      # [E, S]
  curves["variance_episode"] = var_episodes
  curves["log_grad_variance"] = log_var
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
  return result, curves


def finished_learners(config, workdir: str,
                      skip=()) -> dict[str, dict[str, Any]]:
  """The learners (not in ``skip``) finished in ``workdir`` under ``config``.

  A learner's saved run counts when its ``result.json`` is there and its
  ``config.json`` is :func:`run_identity` of ``config`` (up to
  ``RESUMABLE_FIELDS``): the run this config would make. One made with
  another config is left out, with a log line naming the differing fields.

  Returns:
    ``{name: result with curves}`` (:func:`runs.load_result`), in
    ``registry.LEARNERS`` order.
  """
  out = {}
  for name in registry.LEARNERS:
    logdir = os.path.join(workdir, name)
    config_path = os.path.join(logdir, runs.CONFIG_FILE)
    if (name in skip
        or not os.path.exists(os.path.join(logdir, runs.RESULT_FILE))
        or not os.path.exists(config_path)):
      continue
    saved = writers.read_json(config_path, f"config of the rl run of {name}")
    diff = runs.differences(runs.identity(saved, RESUMABLE_FIELDS),
                            runs.identity(run_identity(config, name),
                                          RESUMABLE_FIELDS))
    if diff:
      logging.info("rl: the finished %s run in %s has another config (%s); "
                   "it is left out of summary.json.", name, logdir,
                   ", ".join(k for k, _, _ in diff))
      continue
    out[name] = runs.load_result(logdir)
  return out


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Runs every learner in ``config.learner`` on ``config.env``.

  The summary, curves and figure also cover the learners that an earlier
  command finished in ``workdir`` under the same config
  (:func:`finished_learners`): ``--config.learner=arsm`` after a run of
  ``arsm,a2c`` reports both.

  Returns:
    ``{"summary": {name: {...}}, "curves": {name: {...}}}``; the summary is
    also written to ``workdir/summary.json`` and the figure to ``rl.png``.
  """
  names = validate_config(config)
  check_processes(config)
  with workdirs.hold_workdir(workdir, registry.LEARNERS + (PLOT_FILE,),
                             what="rl run"):
    return _train_and_evaluate(config, workdir, names)


def _train_and_evaluate(config, workdir, names) -> dict[str, Any]:
  """:func:`train_and_evaluate` once it holds the workdir."""
  results = {name: run_learner(name, config, workdir) for name in names}
  results.update(finished_learners(config, workdir, skip=names))
  curve_keys = ("reward", "length", "num_rollouts", "env_steps",
                "moving_average", "variance_episode", "log_grad_variance",
                "entropy", "eligible_fraction")
  if config.test_episode:
    curve_keys += ("test_reward", "test_moving_average")
  summary = {name: {k: v for k, v in r.items() if k not in curve_keys}
             for name, r in results.items()}
  runs.write_summary(workdir, {
      "env": config.env,
      "config": runs.config_json(config),
      "learners": summary,
  })
  curves = {name: {k: r[k] for k in curve_keys} for name, r in results.items()}
  if config.plot and jax.process_index() == 0:
    from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
    plotting.plot_rl(results, config, solved_threshold(config),
                     os.path.join(workdir, PLOT_FILE), LOG_VARIANCE_FLOOR)
  return {"summary": summary, "curves": curves}
