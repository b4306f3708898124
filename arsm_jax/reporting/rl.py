r"""Figure 3's tables: the RL runs' CSV, table and per-seed table.

* ``rl.csv``: one row per (env, learner, options) of each run
  (:data:`COLUMNS`); ``options`` are the learner's config fields that
  differ from ``configs/rl.py``'s defaults for that environment
  (:func:`arsm_jax.reporting.records.rl_options`; ``seeds`` and
  ``episodes`` are columns of their own); the median episodes to solve with
  its percentile bootstrap interval
  (:func:`arsm_jax.reporting.bootstrap.median_interval`; an empty cell is
  "not reached");
* ``rl_table.md``: the same, for ``docs/experiments/rl.md``;
* ``rl_arsm_seeds.md``: per ARSM run of at most :data:`POSTER_SEEDS` seeds
  and per seed, what its policy ended as (:func:`seed_rows`).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

from arsm_jax import envs
from arsm_jax.reporting import bootstrap
from arsm_jax.reporting import formatting
from arsm_jax.reporting import records
from arsm_jax.tasks import rl as rl_task

COLUMNS = (
    "env", "learner", "options", "seeds", "episodes",
    "median_episodes_to_solve", "median_interval_low",
    "median_interval_high", "seeds_solved", "episodes_to_solve",
    "median_test_episodes_to_solve", "test_seeds_solved",
    "final_moving_average_median", "final_test_moving_average_median",
    "final_entropy_median", "final_eligible_fraction_median",
    "mean_rollouts_per_episode", "total_env_steps", "total_episode_steps",
    "train_seconds", "env_steps_per_second", "run", "command")
# The order of environments and learners in every table and figure.
ENVS = tuple(records.RL_PRESETS)
LEARNERS = ("arsm", "a2c", "relax", "reinforce_ma")
# The poster's number of seeds; the per-seed table and the collapse figure
# cover the ARSM runs of at most this many seeds (the larger runs are
# summarised by their intervals).
POSTER_SEEDS = 10
# Measurements at most this far above rl_task.LOG_VARIANCE_FLOOR count as
# exactly zero (the floor is stored in float32).
_FLOOR_TOLERANCE = 1e-3


@functools.cache
def env_step_limit(env: str) -> Optional[int]:
  """The environment's own episode step limit (:mod:`arsm_jax.envs`)."""
  if env in envs.HOST_ENVS:
    return envs.HOST_ENVS[env][0]
  if env in envs.JAX_ENVS:
    return envs.make(env).max_steps
  return None


def step_cap(env: str, learner: dict) -> Optional[int]:
  """A learner's episode step cap: ``max_episode_steps``, or (when 0) the
  environment's own limit (:mod:`arsm_jax.envs`); ``None`` if unknown."""
  return learner["config"].get("max_episode_steps") or env_step_limit(env)


def sort_key(row: dict) -> tuple:
  """Env, learner (in :data:`ENVS`, :data:`LEARNERS` order), default
  options first, then options, seeds and run."""
  learner = row["learner"]
  return (ENVS.index(row["env"]) if row["env"] in ENVS else len(ENVS),
          row["env"],
          LEARNERS.index(learner) if learner in LEARNERS else len(LEARNERS),
          learner, row["options"] != "", row["options"], row["seeds"],
          row["run"])


def _solve_text(solve) -> str:
  return " ".join("-" if v is None else str(v) for v in solve)


def rows(runs: list[dict]) -> list[dict]:
  """One row per (run, learner) of :func:`records.rl_runs`, sorted by
  :func:`sort_key`.

  Each row has the columns :data:`COLUMNS` (``median_interval_low`` and
  ``_high``: :func:`bootstrap.median_interval`, ``None``, an empty cell in
  the CSV, for "not reached", as for the median) and ``solve``, the episodes
  to solve per seed as a list.
  """
  out = []
  for run in runs:
    for learner in run["learners"]:
      r = learner["result"]
      low, high = bootstrap.median_interval(r["episodes_to_solve"])
      out.append({
          "env": run["env"],
          "learner": learner["name"],
          "options": learner["options"],
          "seeds": r["num_seeds"],
          "episodes": r["num_episodes"],
          "median_episodes_to_solve": r["median_episodes_to_solve"],
          "median_interval_low": low,
          "median_interval_high": high,
          "seeds_solved": r["num_solved"],
          "solve": list(r["episodes_to_solve"]),
          "episodes_to_solve": _solve_text(r["episodes_to_solve"]),
          "median_test_episodes_to_solve": r.get(
              "median_test_episodes_to_solve"),
          "test_seeds_solved": r.get("num_test_solved"),
          "final_moving_average_median": r["final_moving_average_median"],
          "final_test_moving_average_median": r.get(
              "final_test_moving_average_median"),
          "final_entropy_median": r.get("final_entropy_median"),
          "final_eligible_fraction_median": r.get(
              "final_eligible_fraction_median"),
          "mean_rollouts_per_episode": r.get("mean_rollouts_per_episode"),
          "total_env_steps": r.get("total_env_steps"),
          "total_episode_steps": r.get("total_episode_steps"),
          "train_seconds": r.get("train_seconds"),
          "env_steps_per_second": r["env_steps_per_second"],
          "run": run["name"],
          "command": run["command"],
      })
  return sorted(out, key=sort_key)


def csv(table_rows: list[dict]) -> str:
  return formatting.to_csv(table_rows, COLUMNS)


def _per_seed_text(row: dict) -> str:
  """The episodes to solve per seed of a table row; runs of more than
  :data:`POSTER_SEEDS` seeds have theirs in rl.csv only."""
  if row["seeds"] > POSTER_SEEDS:
    return "in rl.csv"
  return row["episodes_to_solve"].replace("-", "–")


def table(table_rows: list[dict]) -> str:
  """Markdown: one line per (env, learner, options) of each run."""
  dash = formatting.or_dash
  lines = [
      "| env | learner | options | seeds × episodes "
      "| episodes to solve (per seed) | median "
      f"| {bootstrap.LEVEL:.0%} interval of the median | solved "
      "| test: median "
      "| test: solved | final moving average | final test moving average "
      "| final entropy | eligible fraction | rollouts/episode | env steps/s "
      "| run |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in table_rows:
    seeds = row["seeds"]
    test_solved = row["test_seeds_solved"]
    cells = [
        row["env"], f"`{row['learner']}`",
        row["options"].replace(";", "; ") or "-",
        f"{seeds} × {row['episodes']}",
        _per_seed_text(row),
        formatting.median_text(row["median_episodes_to_solve"]),
        formatting.interval_text(row["median_interval_low"],
                                 row["median_interval_high"]),
        f"{row['seeds_solved']}/{seeds}",
        ("-" if test_solved is None
         else formatting.median_text(row["median_test_episodes_to_solve"])),
        "-" if test_solved is None else f"{test_solved}/{seeds}",
        dash(row["final_moving_average_median"], ".1f"),
        dash(row["final_test_moving_average_median"], ".1f"),
        dash(row["final_entropy_median"], ".3f"),
        dash(row["final_eligible_fraction_median"], ".3f"),
        dash(row["mean_rollouts_per_episode"], ".1f"),
        f"{row['env_steps_per_second']:,.0f}", row["run"]]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def zero_from(log_var: np.ndarray, episodes: np.ndarray) -> Optional[int]:
  """First measurement episode from which every later one is at the floor
  (:data:`arsm_jax.tasks.rl.LOG_VARIANCE_FLOOR`)."""
  zero = log_var <= rl_task.LOG_VARIANCE_FLOOR + _FLOOR_TOLERANCE
  if not zero.size or not zero[-1]:
    return None
  nonzero = np.nonzero(~zero)[0]
  first = nonzero[-1] + 1 if nonzero.size else 0
  return int(episodes[first])


def _stays_zero_from(values: np.ndarray) -> Optional[int]:
  """First episode (1-based) from which ``values`` is exactly 0 for good."""
  if not values.size or values[-1] != 0:
    return None
  nonzero = np.nonzero(values != 0)[0]
  return int(nonzero[-1]) + 2 if nonzero.size else 1


def _seed_row(run: dict, learner: dict, s: int, solved_at) -> dict:
  c = learner["curves"]
  window = learner["config"].get("moving_average_window", 100)
  last = slice(-window, None)
  cap = step_cap(run["env"], learner)
  early = c["length"][:, s] < cap if cap and "length" in c else None  # [E]
  return {
      "env": run["env"], "options": learner["options"],
      "run": run["name"], "seed": s, "solved_at": solved_at,
      "final_moving_average": float(c["moving_average"][-1, s]),
      "window": window, "step_cap": cap,
      "ended_early": None if early is None else int(early.sum()),
      "ended_early_last": None if early is None else int(early[last].sum()),
      "last_ended_early": (None if early is None or not early.any()
                           else int(np.nonzero(early)[0][-1]) + 1),
      "episodes": int(c["reward"].shape[0]),
      "entropy_last": float(np.mean(
          c["entropy"][last, s].astype(np.float64))),
      "eligible_last": float(np.mean(
          c["eligible_fraction"][last, s].astype(np.float64))),
      "no_rollout_last": int(np.sum(c["num_rollouts"][last, s] == 0)),
      "zero_gradient_from": zero_from(c["log_grad_variance"][:, s],
                                      c["variance_episode"]),
      "eligible_zero_from": _stays_zero_from(c["eligible_fraction"][:, s]),
  }


def seed_rows(runs: list[dict]) -> list[dict]:
  """Per ARSM learner of each run of at most :data:`POSTER_SEEDS` seeds and
  per seed, what its policy ended as.

  The episodes that ended before the step cap (on Acrobot-v1: reached the
  goal), over the whole run and over the last ``moving_average_window``
  episodes, and the last of them (1-based); over that window also the mean
  entropy, the mean eligible fraction (steps with a pseudo action that
  differs from the action) and the episodes without any rollout; the
  episode from which the measured gradient variance is exactly zero for
  good (``None`` if it is not at the end) and from which the eligible
  fraction stays exactly 0.
  """
  out = []
  for run in runs:
    for learner in run["learners"]:
      if (learner["name"] != "arsm"
          or learner["result"]["num_seeds"] > POSTER_SEEDS):
        continue
      for s, solved_at in enumerate(learner["result"]["episodes_to_solve"]):
        out.append(_seed_row(run, learner, s, solved_at))
  order = {env: i for i, env in enumerate(ENVS)}
  return sorted(out, key=lambda r: (order.get(r["env"], len(order)),
                                    r["env"], r["options"] != "",
                                    r["options"], r["run"], r["seed"]))


def seed_table(table_rows: list[dict]) -> str:
  """Markdown of :func:`seed_rows`."""
  dash = formatting.or_dash
  lines = [
      "| env | options | seed | solved at | final moving average "
      "| episodes ended before the cap: all, last W | last such episode "
      "| entropy, last W | eligible fraction, last W "
      "| episodes without rollouts, last W | gradient exactly 0 from "
      "| eligible fraction 0 from |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in table_rows:
    cells = [
        row["env"], row["options"].replace(";", "; ") or "-",
        str(row["seed"]), dash(row["solved_at"], "d"),
        f"{row['final_moving_average']:.1f}",
        ("-" if row["ended_early"] is None else
         f"{row['ended_early']}/{row['episodes']}, "
         f"{row['ended_early_last']}/{row['window']}"),
        dash(row["last_ended_early"], "d"),
        f"{row['entropy_last']:.3f}",
        f"{row['eligible_last']:.3f}",
        f"{row['no_rollout_last']}/{row['window']}",
        dash(row["zero_gradient_from"], "d"),
        dash(row["eligible_zero_from"], "d")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
