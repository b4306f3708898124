r"""What figure 3's intervals say, in words.

* :func:`seeds_block`: the block of ``docs/experiments/rl.md`` between
  :data:`SEEDS_START` and :data:`SEEDS_END`: figure 3's rows with a bootstrap
  interval of each median, whether the first ten seeds of a larger run
  repeat the ten-seed run, and which comparisons survive the intervals;
* :func:`headline`: the README's line on figure 3.
"""

from __future__ import annotations

import numpy as np

from arsm_jax.reporting import bootstrap
from arsm_jax.reporting import formatting
from arsm_jax.reporting import rl
from arsm_jax.tasks import rl as rl_task

SEEDS_START = "<!-- rl-seeds:start -->"
SEEDS_END = "<!-- rl-seeds:end -->"
# Fewer seeds than this in an environment's largest set: the generated text
# says that its intervals carry the uncertainty of few seeds.
MANY_SEEDS = 50
_LEARNER_NAMES = {"arsm": "ARSM", "a2c": "A2C", "relax": "RELAX",
                  "reinforce_ma": "REINFORCE"}
_median_text = formatting.median_text
_interval_text = formatting.interval_text


def _name(learner: str) -> str:
  return _LEARNER_NAMES.get(learner, learner)


def largest_default_rows(rows: list[dict], env: str) -> list[dict]:
  """``env``'s rows with the default options of its run with the most seeds
  that has a default ARSM row (or, without one, of any run)."""
  default = [r for r in rows if r["env"] == env and not r["options"]]
  with_arsm = {r["run"] for r in default if r["learner"] == "arsm"}
  candidates = [r for r in default if r["run"] in with_arsm] or default
  if not candidates:
    return []
  run = max(candidates, key=lambda r: (r["seeds"], r["episodes"]))["run"]
  return [r for r in default if r["run"] == run]


def _upper(value) -> float:
  return np.inf if value is None else value


def _diff_text(value: float) -> str:
  if np.isinf(value):
    return "∞" if value > 0 else "−∞"
  return f"{value:g}".replace("-", "−")


def _points(value: float) -> str:
  return f"{value * 100:+.0f}".replace("-", "−")


def comparison(arsm: dict, other: dict) -> str:
  """ARSM's row against another learner's (same run): both medians with
  their intervals, whether the intervals are disjoint, the interval of the
  difference of the medians, and (when either solves a seed) the interval
  of the difference of the shares of seeds solved."""
  text = _median_comparison(arsm, other)
  if not arsm["seeds_solved"] and not other["seeds_solved"]:
    return text
  name = _name(other["learner"])
  share = (other["seeds_solved"] / other["seeds"]
           - arsm["seeds_solved"] / arsm["seeds"])
  low, high = bootstrap.solved_difference_interval(other["solve"],
                                                   arsm["solve"])
  verdict = (f"{name} solves more seeds" if low > 0 else
             "ARSM solves more seeds" if high < 0 else
             "no difference at this level")
  return (text + f" Seeds solved, {name}'s share minus ARSM's: "
          f"{_points(share)} percentage points ({bootstrap.LEVEL:.0%} "
          f"interval [{_points(low)}, {_points(high)}]): {verdict}.")


def _median_comparison(arsm: dict, other: dict) -> str:
  """The medians' part of :func:`comparison`."""
  name = _name(other["learner"])
  def summary(row):
    return (f"{_name(row['learner'])} {row['seeds_solved']}/{row['seeds']} "
            f"solved, median {_median_text(row['median_episodes_to_solve'])} "
            + _interval_text(row["median_interval_low"],
                             row["median_interval_high"]))
  text = f"{summary(arsm)}; {summary(other)}: "
  arsm_low = _upper(arsm["median_interval_low"])
  other_low = _upper(other["median_interval_low"])
  if _upper(arsm["median_interval_high"]) < other_low:
    text += "the intervals are disjoint, ARSM is faster"
    slow, fast, diff_name = other, arsm, f"{name}'s median minus ARSM's"
  elif _upper(other["median_interval_high"]) < arsm_low:
    text += f"the intervals are disjoint, {name} is faster"
    slow, fast, diff_name = arsm, other, f"ARSM's median minus {name}'s"
  elif np.isinf(arsm_low) and np.isinf(other_low):
    return (text + "neither median is reached in at least "
            f"{(1 + bootstrap.LEVEL) / 2:.0%} of the resamples.")
  else:
    text += "the intervals overlap, so this does not rank them"
    slow, fast, diff_name = other, arsm, f"{name}'s median minus ARSM's"
  diff = bootstrap.median_difference_interval(slow["solve"], fast["solve"])
  if diff is None or np.isinf(diff[0]):
    return text + "."           # the slower one's median is not reached
  point = ""
  if (slow["median_episodes_to_solve"] is not None
      and fast["median_episodes_to_solve"] is not None):
    point = _diff_text(slow["median_episodes_to_solve"]
                       - fast["median_episodes_to_solve"]) + " episodes, "
  over = ("" if diff[2] == bootstrap.RESAMPLES else
          f", over the {diff[2]:,} resamples where at least one median is "
          "reached")
  return (text + f" ({diff_name}: {point}{bootstrap.LEVEL:.0%} interval "
          f"[{_diff_text(diff[0])}, {_diff_text(diff[1])}]{over}).")


def _first_seeds_part(learner: dict, other: dict) -> str:
  """One learner's part of :func:`first_seeds`' line."""
  n = rl.POSTER_SEEDS
  same = int(np.sum(np.all(
      learner["curves"]["reward"][:, :n] == other["curves"]["reward"],
      axis=0)))
  first = learner["result"]["episodes_to_solve"][:n]
  part = f"{_name(learner['name'])} {same}/{n}"
  if same < n:
    theirs = other["result"]
    equal = sum(a == b for a, b in zip(first, theirs["episodes_to_solve"]))
    solved = sum(v is not None for v in first)
    part += (f" (episodes to solve, or never, equal on {equal}/{n}; its "
             f"first {n} seeds: {solved}/{n} solved, median "
             f"{_median_text(rl_task.median_episodes(first))}, against "
             f"{theirs['num_solved']}/{n} and "
             f"{_median_text(theirs['median_episodes_to_solve'])})")
  return part


def first_seeds(runs: list[dict]) -> list[str]:
  """Per run of more than :data:`rl.POSTER_SEEDS` seeds and learner that a
  :data:`rl.POSTER_SEEDS`-seed run of the same environment, options and
  episodes also has: on how many of the first seeds the two give identical
  training rewards (the seeds are ``fold_in(base, i)`` in both), and,
  where not all, what the first seeds of the larger run give."""
  small = {}
  for run in runs:
    for learner in run["learners"]:
      if learner["result"]["num_seeds"] == rl.POSTER_SEEDS:
        small.setdefault((run["env"], learner["name"], learner["options"],
                          learner["result"]["num_episodes"]),
                         (run, learner))
  def order(learner):
    name = learner["name"]
    return (rl.LEARNERS.index(name) if name in rl.LEARNERS
            else len(rl.LEARNERS), name)
  lines = []
  for run in runs:
    parts = []
    for learner in sorted(run["learners"], key=order):
      r = learner["result"]
      key = (run["env"], learner["name"], learner["options"],
             r["num_episodes"])
      if r["num_seeds"] <= rl.POSTER_SEEDS or key not in small:
        continue
      other_run, other = small[key]
      parts.append(_first_seeds_part(learner, other))
      compared, seeds = other_run["name"], r["num_seeds"]
    if parts:
      lines.append(
          f"The first {rl.POSTER_SEEDS} of the {seeds} seeds of "
          f"`{run['name']}` against `{compared}`, seeds with identical "
          "training rewards in every episode: " + ", ".join(parts) + ".")
  return lines


def _steps_line(largest: list[dict]) -> list[str]:
  steps = [r for r in largest if r.get("total_env_steps")]
  if not steps:
    return []
  return ["  * Environment steps over all seeds, rollouts included "
          "(in parentheses: the episodes' own): " + ", ".join(
              f"{_name(r['learner'])} "
              f"{r['total_env_steps'] / 1e6:,.1f} million"
              + (f" ({r['total_episode_steps'] / 1e6:,.1f} million)"
                 if r.get("total_episode_steps")
                 and r["total_episode_steps"] != r["total_env_steps"]
                 else "")
              for r in steps) + "."]


def seeds_block(rows: list[dict], runs: list[dict]) -> str:
  """The markdown of docs/experiments/rl.md's generated block: figure 3's
  rows (default options) with their intervals, the first-seeds check and,
  per environment, ARSM against each other learner on its largest run."""
  low_q, high_q = (1 - bootstrap.LEVEL) / 2, (1 + bootstrap.LEVEL) / 2
  out = [
      f"Intervals: percentile bootstrap, {bootstrap.RESAMPLES:,} resamples "
      "of the seeds with replacement (NumPy's `default_rng` seeded with "
      f"{bootstrap.SEED}), the {low_q:.0%} and {high_q:.0%} quantiles of the "
      "resampled medians; unsolved seeds count as infinitely slow, so an "
      "end is \"not reached\" when at least that share of the resampled "
      "medians is.", "",
      "| env | learner | seeds × episodes | solved | median "
      f"| {bootstrap.LEVEL:.0%} interval | run |",
      "|---|---|---|---|---|---|---|"]
  for row in rows:
    if row["options"]:
      continue
    out.append("| " + " | ".join([
        row["env"], f"`{row['learner']}`",
        f"{row['seeds']} × {row['episodes']}",
        f"{row['seeds_solved']}/{row['seeds']}",
        _median_text(row["median_episodes_to_solve"]),
        _interval_text(row["median_interval_low"],
                       row["median_interval_high"]),
        row["run"]]) + " |")
  out.append("")
  for line in first_seeds(runs):
    out += [line, ""]
  for env in rl.ENVS:
    largest = largest_default_rows(rows, env)
    arsm = next((r for r in largest if r["learner"] == "arsm"), None)
    if arsm is None:
      continue
    items = [comparison(arsm, r) for r in largest if r is not arsm]
    if not items:
      continue
    head = (f"{env}, {arsm['seeds']} seeds × {arsm['episodes']} episodes "
            f"(`{arsm['run']}`)")
    if arsm["seeds"] < MANY_SEEDS:
      head += (f", only {arsm['seeds']} seeds: its intervals carry that "
               "uncertainty")
    out.append(f"* {head}:")
    out += [f"  * {item}" for item in items]
    out += _steps_line(largest)
  return "\n".join(out).rstrip("\n") + "\n"


def headline(rows: list[dict]) -> str:
  """Per environment, each learner's seeds solved, median episodes to solve
  and its interval, on the environment's largest run with default
  options."""
  parts = []
  for env in rl.ENVS:
    largest = largest_default_rows(rows, env)
    if not largest:
      continue
    learners = []
    for row in largest:
      median = row["median_episodes_to_solve"]
      text = f"{_name(row['learner'])} {row['seeds_solved']}/{row['seeds']}"
      if median is not None:
        high = row["median_interval_high"]
        text += (f" ({median:g}; {_median_text(row['median_interval_low'])}"
                 f"–{'∞' if high is None else format(high, 'g')})")
      learners.append(text)
    parts.append(f"{env.split('-')[0]}, {largest[0]['episodes']} episodes: "
                 + ", ".join(learners))
  if not parts:
    return "no RL run has been collected yet."
  return "; ".join(parts) + "."
