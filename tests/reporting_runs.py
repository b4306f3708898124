"""Synthetic RL run folders in the layout arsm_jax.tasks.rl writes, collected
as the reporting tests read them."""

import json
import os

import numpy as np

from configs import rl as rl_config
from arsm_jax import runs
from arsm_jax.reporting import records
from arsm_jax.tasks import rl as rl_task

E, S, W = 6, 3, 3        # episodes, seeds, moving-average window
FLOOR = rl_task.LOG_VARIANCE_FLOOR
# Acrobot-v1 rewards [E, S]: seed 0 solves at episode 5 (window mean -80),
# seed 1 never reaches the goal, seed 2 solves at episode 3.
REWARD = np.array([[-500, -500, -90], [-500, -500, -90], [-80, -500, -90],
                   [-90, -500, -90], [-70, -500, -90], [-60, -500, -90]],
                  np.float32)


def acrobot_config(**overrides):
  config = rl_config.get_config("acrobot")
  config.num_seeds = S
  config.num_episodes = E
  config.moving_average_window = W
  config.variance_every = 2
  for key, value in overrides.items():
    if key in config:
      setattr(config, key, value)
    else:   # a learner's own setting (config.learner_settings.<learner>)
      owner, = [n for n, own in config.learner_settings.items() if key in own]
      config.learner_settings[owner][key] = value
  return config


def curves(reward):
  """The arrays of a learner's curves.npz [E, S] (log variance [M, S])."""
  rng = np.random.default_rng(0)
  eligible = np.full((E, S), 0.5, np.float32)
  eligible[2:, 1] = 0.0                      # seed 1: 0 from episode 3 on
  log_var = np.array([[3.0, 2.0, 1.0], [1.0, FLOOR, 1.0],
                      [1.0, FLOOR, 1.0]], np.float32)   # seed 1: 0 from 2
  length = np.minimum(-reward, 500).astype(np.int32)
  return {
      "reward": reward, "test_reward": reward + 1.0,
      "moving_average": rl_task.moving_average(reward, W),
      "test_moving_average": rl_task.moving_average(reward + 1.0, W),
      "entropy": rng.uniform(0.0, 1.1, (E, S)).astype(np.float32),
      "eligible_fraction": eligible,
      "num_rollouts": np.where(eligible > 0, 8, 0).astype(np.int32),
      "length": length, "env_steps": 3 * length,
      "log_grad_variance": log_var,
      "variance_episode": np.array([0, 2, 4]),
  }


def write_rl_run(workdir, learners):
  """learners: name -> (config, reward [E, S]); returns the summary."""
  os.makedirs(workdir)
  summary = {"env": "Acrobot-v1", "learners": {}}
  for name, (config, reward) in learners.items():
    folder = os.path.join(workdir, name)
    os.makedirs(folder)
    c = curves(reward)
    np.savez(os.path.join(folder, "curves.npz"), **c)
    with open(os.path.join(folder, "config.json"), "w") as fh:
      json.dump(rl_task.run_identity(config, name), fh)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as fh:
      fh.write('{"step": 1}\n')
    solve = rl_task.episodes_to_solve(reward, W, -100.0)
    test_solve = rl_task.episodes_to_solve(reward + 1.0, W, -100.0)
    summary["config"] = runs.config_json(config)
    summary["learners"][name] = {
        "learner": name, "env": "Acrobot-v1", "solved_threshold": -100.0,
        "episodes_to_solve": solve,
        "median_episodes_to_solve": rl_task.median_episodes(solve),
        "num_solved": sum(v is not None for v in solve),
        "test_episodes_to_solve": test_solve,
        "median_test_episodes_to_solve": rl_task.median_episodes(test_solve),
        "num_test_solved": sum(v is not None for v in test_solve),
        "final_moving_average_median": float(
            np.median(c["moving_average"][-1])),
        "final_test_moving_average_median": float(
            np.median(c["test_moving_average"][-1])),
        "final_entropy_median": 0.5, "final_eligible_fraction_median": 0.25,
        "mean_rollouts_per_episode": 4.0, "env_steps_per_second": 1234.5,
        "num_seeds": S, "num_episodes": E}
  with open(os.path.join(workdir, "summary.json"), "w") as fh:
    json.dump(summary, fh)
  return summary


def collected_acrobot_runs(tmp_path):
  """Two collected synthetic Acrobot runs under ``tmp_path/docs/results``;
  returns (results, docs) folders."""
  results = tmp_path / "docs" / "results"
  default = write_rl_run(str(tmp_path / "w_default"), {
      "arsm": (acrobot_config(), REWARD),
      "a2c": (acrobot_config(critic_learning_rate=0.01), REWARD[:, ::-1])})
  write_rl_run(str(tmp_path / "w_authors"), {
      "arsm": (acrobot_config(rollout_budget="authors",
                              max_episode_steps=3000), REWARD[:, [1, 1, 2]])})
  assert default["learners"]["arsm"]["episodes_to_solve"] == [5, None, 3]
  for name in ("default", "authors"):
    out = records.collect("rl", f"acro_{name}", str(tmp_path / f"w_{name}"),
                          f"python experiments/main.py --x={name}",
                          results=str(results))
    assert sorted(os.listdir(out)) == sorted(
        ["summary.json", "command.txt", "arsm"]
        + (["a2c"] if name == "default" else []))
    assert sorted(os.listdir(os.path.join(out, "arsm"))) == [
        "config.json", "curves.npz"]
  return results, tmp_path / "docs"
