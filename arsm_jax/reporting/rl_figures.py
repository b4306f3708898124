r"""Figure 3's panels, drawn from the collected RL runs.

* ``docs/rl_<env>.png`` (for the environments that have runs): the poster's
  figure-3 panels, moving-average reward of the training and of the test
  episodes (median over seeds, 10th-90th percentile band) and the log
  gradient variance, one colour per (learner, options), per (learner,
  options) the run with the most seeds, one row of panels per episode step
  cap, panels without data left out;
* ``docs/rl_acrobot_collapse.png``: per ARSM run on Acrobot-v1, per seed,
  policy entropy, eligible fraction and log gradient variance against
  episode, seeds that never solved in red.
"""

from __future__ import annotations

import os

import numpy as np

from arsm_jax.reporting import records
from arsm_jax.reporting import rl
from arsm_jax.tasks import rl as rl_task

COLLAPSE_ENV = "Acrobot-v1"
COLLAPSE_FILE = "rl_acrobot_collapse.png"


def figure_file(env: str) -> str:
  """``rl_<preset or env>.png``."""
  return f"rl_{records.RL_PRESETS.get(env, env.split('-')[0].lower())}.png"


def _label(learner: dict) -> str:
  r = learner["result"]
  label = learner["name"]
  if learner["options"]:
    label += f" [{learner['options'].replace(';', '; ')}]"
  return label + f" ({r['num_solved']}/{r['num_seeds']} solved)"


def _env_learners(runs: list[dict], env: str) -> list[tuple[dict, dict]]:
  pairs = [(run, learner) for run in runs if run["env"] == env
           for learner in run["learners"]]
  return sorted(pairs, key=lambda p: rl.sort_key(
      {"env": env, "learner": p[1]["name"], "options": p[1]["options"],
       "seeds": p[1]["result"]["num_seeds"], "run": p[0]["name"]}))


def figure_learners(runs: list[dict], env: str) -> list[tuple[dict, dict]]:
  """The (run, learner) pairs ``env``'s figure draws: per (learner,
  options) the run with the most seeds (then episodes), so that a band is
  drawn from all the seeds collected, and the seeds of a smaller run of the
  same learner (the poster's ten, which a 50-seed run repeats) are not drawn
  twice."""
  best = {}
  for run, learner in _env_learners(runs, env):
    key = (learner["name"], learner["options"])
    size = (learner["result"]["num_seeds"], learner["result"]["num_episodes"])
    if key not in best or size > best[key][0]:
      best[key] = (size, run, learner)
  chosen = {id(learner) for _, _, learner in best.values()}
  return [(run, learner) for run, learner in _env_learners(runs, env)
          if id(learner) in chosen]


def figure_groups(pairs: list[tuple[dict, dict]], env: str) -> list[dict]:
  """The rows of ``env``'s figure, one per episode step cap
  (``max_episode_steps``: rewards of 3,000-step episodes are on another
  scale than those of 500-step ones), smallest cap first: ``{"title",
  "cap", "series"}`` as :func:`arsm_jax.plotting.plot_rl_groups` takes
  them."""
  by_cap, seen = {}, {}
  for _, learner in pairs:
    c = learner["curves"]
    by_cap.setdefault(rl.step_cap(env, learner), []).append({
        "label": _label(learner), "learner": learner["name"],
        "variant": seen.get(learner["name"], 0),
        "moving_average": c["moving_average"],
        "test_moving_average": c.get("test_moving_average"),
        "log_grad_variance": c["log_grad_variance"],
        "variance_episode": c["variance_episode"]})
    seen[learner["name"]] = seen.get(learner["name"], 0) + 1
  default_cap = rl.env_step_limit(env)
  return [{"title": ("episodes up to the environment's own step limit"
                     if cap is None else
                     f"episodes of at most {cap:,} steps"
                     + (" (the environment's limit)" if cap == default_cap
                        else "")),
           "cap": cap, "series": by_cap[cap]}
          for cap in sorted(by_cap, key=lambda c: (c is None, c or 0))]


def figure(runs: list[dict], env: str, path: str) -> bool:
  """Draws ``env``'s figure-3 panels (the runs of :func:`figure_learners`,
  in the rows of :func:`figure_groups`); returns False when it has no
  run."""
  pairs = figure_learners(runs, env)
  if not pairs:
    return False
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  first = pairs[0][1]
  window = first["config"].get("moving_average_window", 100)
  plotting.plot_rl_groups(
      figure_groups(pairs, env), path,
      f"{env}: median over seeds (seeds solved/seeds in each label), bands "
      f"10th-90th percentile, moving average over {window} episodes",
      first["result"]["solved_threshold"], rl_task.LOG_VARIANCE_FLOOR)
  return True


def _collapse_pairs(runs: list[dict]) -> list[tuple[dict, dict]]:
  return [(run, learner) for run, learner in _env_learners(runs, COLLAPSE_ENV)
          if learner["name"] == "arsm"
          and learner["result"]["num_seeds"] <= rl.POSTER_SEEDS]


def collapse_figure(runs: list[dict], path: str) -> bool:
  """Per-seed diagnostics of each ARSM run on :data:`COLLAPSE_ENV` of at
  most :data:`rl.POSTER_SEEDS` seeds; False when none."""
  pairs = _collapse_pairs(runs)
  if not pairs:
    return False
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  rows = []
  for _, learner in pairs:
    c = learner["curves"]
    cap = rl.step_cap(COLLAPSE_ENV, learner)
    rows.append({
        "label": _label(learner), "step_cap": cap,
        "entropy": c["entropy"].astype(np.float32),
        "eligible_fraction": c["eligible_fraction"].astype(np.float32),
        "log_grad_variance": c["log_grad_variance"],
        "variance_episode": c["variance_episode"],
        "ended_early": (np.cumsum(c["length"] < cap, axis=0)
                        if cap and "length" in c else None),
        "solved": [v is not None
                   for v in learner["result"]["episodes_to_solve"]]})
  plotting.plot_rl_seeds(rows, path, f"{COLLAPSE_ENV}, ARSM: per seed (red: "
                         "never solved, blue: solved)",
                         rl_task.LOG_VARIANCE_FLOOR)
  return True


def paths(runs: list[dict], docs: str = records.DOCS) -> list[str]:
  """The RL figures the collected runs give (one per environment, and the
  collapse figure when ARSM ran on :data:`COLLAPSE_ENV`)."""
  out = [os.path.join(docs, figure_file(env))
         for env in sorted({run["env"] for run in runs})]
  if _collapse_pairs(runs):
    out.append(os.path.join(docs, COLLAPSE_FILE))
  return out


def draw(runs: list[dict], docs: str = records.DOCS) -> list[str]:
  """Draws every RL figure of :func:`paths`; returns the paths."""
  for env in sorted({run["env"] for run in runs}):
    figure(runs, env, os.path.join(docs, figure_file(env)))
  collapse_figure(runs, os.path.join(docs, COLLAPSE_FILE))
  return paths(runs, docs)
