r"""Builds the published results tables and figures from the collected runs.

    python scripts/make_results.py            # rewrites every output below
    python scripts/make_results.py --check    # fails if an output is stale

Inputs are the folders ``docs/results/vae/<run>/`` written by
``scripts/collect_run.py`` (``summary.json``, ``metrics.jsonl``,
``command.txt``); nothing here is typed by hand. Outputs:

* ``docs/results/vae.csv``: one row per finished run;
* ``docs/results/vae_table.md``: the same, grouped over seeds (median and
  range), for ``docs/experiments/vae.md``;
* ``docs/vae_one_layer.png``, ``docs/vae_two_layer.png``: the poster's
  figure-2 panels, -ELBO against iteration, train solid and test dashed, one
  colour per estimator, the median over seeds; the authors' logged ARSM
  points (epochs 0 and 99, see ``ARSM_notes.md``) on the one-layer panel.

and from ``docs/results/rl/<run>/`` (``summary.json``, ``command.txt``, per
learner ``config.json`` and the reduced ``curves.npz``):

* ``docs/results/rl.csv``: one row per (env, learner, options) of each run;
  ``options`` are the learner's config fields that differ from
  ``configs/rl.py``'s defaults for that environment (``seeds`` and
  ``episodes`` are columns of their own); the median episodes to solve with
  its percentile bootstrap interval (:func:`median_interval`:
  :data:`BOOTSTRAP_RESAMPLES` resamples of the seeds, seed
  :data:`BOOTSTRAP_SEED`, unsolved seeds infinitely slow; an empty cell is
  "not reached");
* ``docs/results/rl_table.md``: the same, for ``docs/experiments/rl.md``;
* ``docs/results/rl_arsm_seeds.md``: per ARSM run of at most ten seeds and
  per seed, what its policy ended as (entropy, eligible fraction, rollouts
  over the last window of episodes; from which episode the gradient was
  exactly zero for good);
* ``docs/rl_cartpole.png``, ``docs/rl_acrobot.png``, ``docs/rl_lunarlander.png``
  (for the environments that have runs): the poster's figure-3 panels,
  moving-average reward of the training and of the test episodes (median
  over seeds, 10th-90th percentile band) and the log gradient variance, one
  colour per (learner, options), per (learner, options) the run with the
  most seeds, one row of panels per episode step cap, panels without data
  left out;
* ``docs/rl_acrobot_collapse.png``: per ARSM run on Acrobot-v1, per seed,
  policy entropy, eligible fraction and log gradient variance against
  episode, seeds that never solved in red.

and, from both, the README's summary of figures 2 and 3 (the text between
``<!-- results-headlines:start -->`` and ``<!-- results-headlines:end -->``);
and in ``docs/experiments/rl.md`` the text between ``<!-- rl-seeds:start -->``
and ``<!-- rl-seeds:end -->``: figure 3's rows with a bootstrap interval of
each median, whether the first ten seeds of a larger run repeat the
ten-seed run, and which comparisons survive the intervals.

``--check`` compares the text outputs and fails when an RL figure is missing
(figures are not compared byte for byte).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import sys
import textwrap

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "docs", "results")
DOCS = os.path.join(REPO, "docs")
if REPO not in sys.path:
  sys.path.insert(0, REPO)    # configs/ (the RL defaults)

VAE_COLUMNS = (
    "run", "model", "estimator", "settings", "learning_rate", "seed",
    "validation_split", "decoder_samples", "epochs", "f_evals_per_image",
    "train_neg_elbo", "valid_neg_elbo", "best_valid_neg_elbo",
    "test_neg_elbo", "test_neg_iwae", "grad_variance", "seconds_per_step",
    "command")

# The authors' only published training log (one-layer nonlinear ARSM, lr
# 3e-4, threshold MNIST, batch 200): epoch index -> (train, validation).
AUTHORS_ARSM_LOG = {0: (228.35, 194.28), 99: (97.70, 99.72)}
STEPS_PER_EPOCH = 275


def _read_json(path):
  with open(path) as fh:
    return json.load(fh)


def _read_rows(path):
  with open(path) as fh:
    return [json.loads(line) for line in fh if line.strip()]


def _settings_text(settings: dict) -> str:
  return ";".join(f"{k}={settings[k]}" for k in sorted(settings)) or ""


def vae_runs(results: str = RESULTS) -> list[dict]:
  """The collected VAE runs, each a dict of its summary, metrics and command."""
  root = os.path.join(results, "vae")
  runs = []
  if not os.path.isdir(root):
    return runs
  for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    summary_path = os.path.join(folder, "summary.json")
    if not os.path.exists(summary_path):
      continue
    with open(os.path.join(folder, "command.txt")) as fh:
      command = fh.read().strip()
    metrics_path = os.path.join(folder, "metrics.jsonl")
    runs.append({"name": name, "summary": _read_json(summary_path),
                 "metrics": (_read_rows(metrics_path)
                             if os.path.exists(metrics_path) else []),
                 "command": command})
  return runs


# Training options outside estimator_settings that change what a run is,
# with their defaults (configs/vae.py); a run's non-default ones join its
# settings text. Runs saved before an option existed had its default.
_VAE_OPTIONS = {"learn_temperature": False, "pin_first_logit": False,
                "weight_init": "lecun"}


def _model_options(cfg: dict) -> dict:
  return {k: cfg[k] for k, default in _VAE_OPTIONS.items()
          if k in cfg and cfg[k] != default}


def f_evals_per_image(s: dict) -> int:
  """Decoder evaluations per image and step of a VAE run's summary."""
  return s["evals_per_image_per_step"]


def vae_row(run: dict) -> dict:
  s = run["summary"]
  cfg = s.get("config", {})
  return {
      "run": run["name"],
      "model": s["model"],
      "estimator": s["estimator"],
      "settings": _settings_text({**s.get("estimator_settings", {}),
                                  **_model_options(cfg)}),
      "learning_rate": s["learning_rate"],
      "seed": s["seed"],
      "validation_split": cfg.get("validation_split", "last"),
      "decoder_samples": cfg.get("decoder_samples", 0),
      "epochs": int(s["final_epoch"]),
      "f_evals_per_image": f_evals_per_image(s),
      "train_neg_elbo": s["final_train_neg_elbo"],
      "valid_neg_elbo": s["final_valid_neg_elbo"],
      "best_valid_neg_elbo": s["best_valid_neg_elbo"],
      "test_neg_elbo": s["final_test_neg_elbo"],
      "test_neg_iwae": s["final_test_neg_iwae"],
      "grad_variance": s["final_grad_variance"],
      "seconds_per_step": s["seconds_per_step_this_session"],
      "command": run["command"],
  }


def _fmt(v) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return f"{v:.6g}"
  return str(v)


def _csv(rows: list[dict], columns) -> str:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _fmt(row[k]) for k in columns})
  return buf.getvalue()


def vae_csv(rows: list[dict]) -> str:
  return _csv(rows, VAE_COLUMNS)


def _group_key(row: dict) -> tuple:
  return (row["model"], row["estimator"], row["settings"],
          row["learning_rate"], row["decoder_samples"])


def _median_range(values) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return ""
  med = statistics.median(values)
  if len(values) == 1:
    return f"{med:.2f}"
  return f"{med:.2f} ({min(values):.2f}-{max(values):.2f})"


def vae_table(rows: list[dict]) -> str:
  """Markdown: one line per (model, estimator, settings, lr), over seeds."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault(_group_key(row), []).append(row)
  lines = [
      "| model | estimator | settings | lr | seeds | epochs | f evals/image "
      "| train | valid | best valid | test | test IWAE-100 | grad var "
      "| s/step |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  order = {"nonlinear": 0, "two_layer": 1, "linear": 2}
  for key in sorted(groups, key=lambda k: (order.get(k[0], 9), k[1:])):
    members = groups[key]
    model, est, settings, lr, dec = key
    if dec:
      settings = ";".join(filter(None, [settings, f"decoder_samples={dec}"]))
    def col(column, members=members):
      return _median_range([m[column] for m in members])
    var = [m["grad_variance"] for m in members if m["grad_variance"]]
    sps = [m["seconds_per_step"] for m in members if m["seconds_per_step"]]
    cells = [
        model, est, settings or "-", f"{lr:g}",
        ",".join(str(m["seed"]) for m in members),
        ",".join(sorted({str(m["epochs"]) for m in members})),
        str(members[0]["f_evals_per_image"]), col("train_neg_elbo"),
        col("valid_neg_elbo"), col("best_valid_neg_elbo"),
        col("test_neg_elbo"), col("test_neg_iwae"),
        f"{statistics.median(var):.3g}" if var else "-",
        f"{statistics.median(sps):.3f}" if sps else "-"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _median_curve(runs: list[dict], column: str):
  """Steps and the median over runs of ``column`` at the steps all share."""
  per_run = []
  for run in runs:
    per_run.append({r["step"]: r[column] for r in run["metrics"]
                    if column in r and r[column] is not None})
  if not per_run:
    return [], []
  steps = sorted(set.intersection(*(set(d) for d in per_run)))
  return steps, [statistics.median(d[s] for d in per_run) for s in steps]


def vae_figure(runs: list[dict], model: str, path: str,
               authors: bool) -> bool:
  """Draws one figure-2 panel; returns False when no run has this model."""
  runs = [r for r in runs if r["summary"]["model"] == model]
  if not runs:
    return False
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  groups: dict[tuple, list[dict]] = {}
  for run in runs:
    groups.setdefault(_group_key(vae_row(run)), []).append(run)
  # One line group per estimator, so that each has one colour and one legend
  # entry: the one run with the most seeds, of those the lowest final median
  # validation -ELBO; every run is in the table.
  def final_valid(key):
    values = _median_curve(groups[key], "valid_neg_elbo")[1]
    return values[-1] if len(values) else float("inf")
  def rank(key):
    return (-len(groups[key]), final_valid(key))
  best: dict[str, tuple] = {}
  for key in groups:
    if key[1] not in best or rank(key) < rank(best[key[1]]):
      best[key[1]] = key
  series, seen = [], {}
  for key in sorted(best.values(), key=final_valid):
    _, est, settings, lr, dec = key
    members = groups[key]
    label = est + (f" [{settings}]" if settings else "") + f", lr {lr:g}"
    if dec:
      label += f", decoder_samples={dec}"
    if len(members) > 1:
      label += f", median of {len(members)} seeds"
    # Repeats of an estimator (another lr or setting) are drawn fainter.
    series.append({"label": label, "estimator": est,
                   "alpha": 1.0 / (1 + seen.get(est, 0)),
                   "train": _median_curve(members, "train_neg_elbo"),
                   "test": _median_curve(members, "test_neg_elbo")})
    seen[est] = seen.get(est, 0) + 1
  points = []
  if authors:
    for epoch, (train, valid) in AUTHORS_ARSM_LOG.items():
      step = (epoch + 1) * STEPS_PER_EPOCH
      first = epoch == min(AUTHORS_ARSM_LOG)
      points.append({"step": step, "value": train, "marker": "*",
                     "label": "authors' ARSM log, train" if first else None})
      points.append({"step": step, "value": valid, "marker": "^",
                     "hollow": True, "label": ("authors' ARSM log, validation"
                                               if first else None)})
  shown = sum(len(groups[k]) for k in best.values())
  title = (f"{model} VAE, threshold MNIST, batch 200. One run per estimator "
           "(most seeds, then lowest final validation -ELBO; "
           f"{len(best)} of {len(groups)} settings, {shown} of {len(runs)} "
           "runs; all are in the table); legend from best to worst")
  plotting.plot_vae_panel(series, path, title, points)
  return True


# ----------------------------------------------------------------------------
# RL (figure 3)

RL_COLUMNS = (
    "env", "learner", "options", "seeds", "episodes",
    "median_episodes_to_solve", "median_interval_low",
    "median_interval_high", "seeds_solved", "episodes_to_solve",
    "median_test_episodes_to_solve", "test_seeds_solved",
    "final_moving_average_median", "final_test_moving_average_median",
    "final_entropy_median", "final_eligible_fraction_median",
    "mean_rollouts_per_episode", "total_env_steps", "total_episode_steps",
    "train_seconds", "env_steps_per_second", "run", "command")

# configs/rl.py preset whose defaults an environment's runs are compared to,
# and the figure each environment's runs go to.
RL_ENVS = {"CartPole-v1": "cartpole", "Acrobot-v1": "acrobot",
           "LunarLander-v3": "lunarlander"}
RL_LEARNERS = ("arsm", "a2c", "relax", "reinforce_ma")
# Config fields that are not options: what the run is of, and the columns.
_NOT_OPTIONS = ("experiment", "env", "learner", "num_seeds", "num_episodes")
# The authors' protocol options first, in this order; the rest sorted.
_OPTION_ORDER = ("rollout_budget", "max_episode_steps", "max_rollouts",
                 "common_random_numbers")
# Each environment's own step cap (arsm_jax.envs), used when
# max_episode_steps is 0.
RL_STEP_LIMITS = {"CartPole-v1": 500, "Acrobot-v1": 500,
                  "LunarLander-v3": 1000}
# arsm_jax.tasks.rl.LOG_VARIANCE_FLOOR: the log variance logged for an
# estimate that is exactly constant (kept here to spare the jax import).
LOG_VARIANCE_FLOOR = float(np.log(1e-30))
# Measurements at most this far above the floor count as exactly zero (the
# floor is stored in float32).
_FLOOR_TOLERANCE = 1e-3
# The bootstrap interval of the median episodes to solve: its level, the
# number of resamples and the fixed seed of its random numbers.
BOOTSTRAP_LEVEL = 0.90
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
# The poster's number of seeds; the per-seed table and the collapse figure
# cover the ARSM runs of at most this many seeds (the larger runs are
# summarised by their intervals).
POSTER_SEEDS = 10


def bootstrap_medians(solve, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> np.ndarray:
  """``[resamples]`` medians of the episodes to solve ``solve`` (per seed,
  ``None`` for never) over resamples of the seeds with replacement.

  Unsolved seeds count as infinitely slow, as in
  ``arsm_jax.tasks.rl.median_episodes``, so a median is ``inf`` when half or
  more of a resample's seeds never solve (the median of an even number is
  the mean of the middle two).
  """
  values = np.array([np.inf if v is None else v for v in solve], np.float64)
  if not values.size:
    raise ValueError("no seeds to resample")
  rng = np.random.default_rng(seed)
  picks = rng.integers(0, values.size, (resamples, values.size))
  return np.median(values[picks], axis=1)


def _quantiles(values: np.ndarray, level: float) -> tuple:
  """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
  ``values``, each one of the values (no interpolation, so that infinite
  values stay infinite)."""
  low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2],
                          method="inverted_cdf")
  return float(low), float(high)


def median_interval(solve, level: float = BOOTSTRAP_LEVEL,
                    resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> tuple:
  """Percentile bootstrap interval ``(low, high)`` of the median episodes to
  solve; an end is ``None`` ("not reached") where that quantile of the
  resampled medians is infinite."""
  low, high = _quantiles(bootstrap_medians(solve, resamples, seed), level)
  return (low if np.isfinite(low) else None,
          high if np.isfinite(high) else None)


def median_difference_interval(slow, fast, level: float = BOOTSTRAP_LEVEL,
                               resamples: int = BOOTSTRAP_RESAMPLES) -> tuple:
  """Bootstrap interval of ``median(slow) - median(fast)`` (episodes to
  solve per seed of two learners, resampled independently).

  Returns ``(low, high, defined)``: the quantiles over the ``defined``
  resamples where at least one of the two medians is reached (where both
  are not, the difference is undefined), ``inf`` or ``-inf`` where one
  median is not reached; ``None`` when no resample has a defined one.
  """
  with np.errstate(invalid="ignore"):                 # inf - inf: nan
    diff = (bootstrap_medians(slow, resamples, BOOTSTRAP_SEED + 1)
            - bootstrap_medians(fast, resamples, BOOTSTRAP_SEED))
  diff = diff[~np.isnan(diff)]
  if not diff.size:
    return None
  return (*_quantiles(diff, level), int(diff.size))


def rl_moving_average(rewards: np.ndarray, window: int) -> np.ndarray:
  """``[E, S]`` mean of the last ``min(window, e)`` rewards at episode e.

  The computation of ``arsm_jax.tasks.rl.moving_average`` (the collected
  curves keep the rewards only).
  """
  csum = np.cumsum(rewards, axis=0)
  e = np.arange(1, rewards.shape[0] + 1)
  start = np.maximum(e - window, 0)
  prev = np.where((start > 0)[:, None], csum[np.maximum(start - 1, 0)], 0.0)
  return ((csum - prev) / (e - start)[:, None]).astype(np.float64)


def _env_key(env: str) -> str:
  return RL_ENVS.get(env, env.split("-")[0].lower())


def rl_defaults(env: str) -> dict:
  """``configs/rl.py``'s config for ``env`` as plain JSON values."""
  from configs import rl as rl_config  # pylint: disable=g-import-not-at-top
  preset = RL_ENVS.get(env)
  config = rl_config.get_config(preset or "")
  if preset is None:
    config.env = env
  return json.loads(json.dumps(config.to_dict()))


def _option_value(value) -> str:
  if isinstance(value, (list, tuple)):
    return "(" + ",".join(str(v) for v in value) + ")"
  return str(value)


def rl_options(env: str, learner_config: dict,
               defaults: dict | None = None) -> str:
  """``field=value;...`` for the fields of a learner's run that differ from
  the defaults of ``env`` (the authors' protocol options first)."""
  defaults = rl_defaults(env) if defaults is None else defaults
  missing = object()
  changed = [k for k, v in learner_config.items()
             if k not in _NOT_OPTIONS and defaults.get(k, missing) != v]
  changed.sort(key=lambda k: (_OPTION_ORDER.index(k) if k in _OPTION_ORDER
                              else len(_OPTION_ORDER), k))
  return ";".join(f"{k}={_option_value(learner_config[k])}" for k in changed)


def _load_curves(path: str, window: int) -> dict:
  with np.load(path) as saved:
    curves = {k: np.asarray(saved[k]) for k in saved.files}
  curves["moving_average"] = rl_moving_average(curves["reward"], window)
  if "test_reward" in curves:
    curves["test_moving_average"] = rl_moving_average(curves["test_reward"],
                                                      window)
  return curves


def rl_runs(results: str = RESULTS) -> list[dict]:
  """The collected RL runs: per run its summary, command and learners.

  Each learner is ``{"name", "result" (its summary entry), "config",
  "options", "curves"}``, the moving averages recomputed from the rewards.

  Raises:
    ValueError: when a learner's config.json is missing, or its curves do
      not give its summary's final moving average (curves and summary from
      different runs).
  """
  root = os.path.join(results, "rl")
  runs = []
  if not os.path.isdir(root):
    return runs
  defaults = {}
  for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    summary_path = os.path.join(folder, "summary.json")
    if not os.path.exists(summary_path):
      continue
    summary = _read_json(summary_path)
    with open(os.path.join(folder, "command.txt")) as fh:
      command = fh.read().strip()
    env = summary["env"]
    if env not in defaults:
      defaults[env] = rl_defaults(env)
    learners = []
    for learner, result in summary["learners"].items():
      config_path = os.path.join(folder, learner, "config.json")
      if not os.path.exists(config_path):
        raise ValueError(f"{config_path} is missing: recollect the run with "
                         "scripts/collect_run.py --experiment=rl.")
      config = _read_json(config_path)
      curves = _load_curves(os.path.join(folder, learner, "curves.npz"),
                            config.get("moving_average_window", 100))
      final = float(np.median(curves["moving_average"][-1]))
      if abs(final - result["final_moving_average_median"]) > 1e-3 * (
          1 + abs(final)):
        raise ValueError(
            f"{folder}/{learner}: the curves give a final moving average "
            f"{final}, the summary {result['final_moving_average_median']}; "
            "recollect the run.")
      learners.append({"name": learner, "result": result, "config": config,
                       "options": rl_options(env, config, defaults[env]),
                       "curves": curves})
    runs.append({"name": name, "env": env, "summary": summary,
                 "command": command, "learners": learners})
  return runs


def _solve_text(solve) -> str:
  return " ".join("-" if v is None else str(v) for v in solve)


def _rl_sort_key(row: dict) -> tuple:
  env_order = list(RL_ENVS)
  learner = row["learner"]
  return (env_order.index(row["env"]) if row["env"] in env_order
          else len(env_order), row["env"],
          RL_LEARNERS.index(learner) if learner in RL_LEARNERS
          else len(RL_LEARNERS), learner, row["options"] != "",
          row["options"], row["seeds"], row["run"])


def rl_rows(runs: list[dict]) -> list[dict]:
  """One row per (run, learner), sorted by env, learner, options.

  Each row has the columns :data:`RL_COLUMNS` (``median_interval_low`` and
  ``_high``: :func:`median_interval`, ``None``, an empty cell in the CSV,
  for "not reached", as for the median) and ``solve``, the episodes to
  solve per seed as a list.
  """
  rows = []
  for run in runs:
    for learner in run["learners"]:
      r = learner["result"]
      interval = median_interval(r["episodes_to_solve"])
      rows.append({
          "env": run["env"],
          "learner": learner["name"],
          "options": learner["options"],
          "seeds": r["num_seeds"],
          "episodes": r["num_episodes"],
          "median_episodes_to_solve": r["median_episodes_to_solve"],
          "median_interval_low": interval[0],
          "median_interval_high": interval[1],
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
  return sorted(rows, key=_rl_sort_key)


def rl_csv(rows: list[dict]) -> str:
  return _csv(rows, RL_COLUMNS)


def _or_dash(value, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def _median_text(value) -> str:
  return "not reached" if value is None else f"{value:g}"


def _interval_text(low, high) -> str:
  """``[low, high]`` of a median's interval, "not reached" for ``None``."""
  return f"[{_median_text(low)}, {_median_text(high)}]"


def _per_seed_text(row: dict) -> str:
  """The episodes to solve per seed of a table row; runs of more than
  :data:`POSTER_SEEDS` seeds have theirs in rl.csv only."""
  if row["seeds"] > POSTER_SEEDS:
    return "in rl.csv"
  return row["episodes_to_solve"].replace("-", "–")


def rl_table(rows: list[dict]) -> str:
  """Markdown: one line per (env, learner, options) of each run."""
  lines = [
      "| env | learner | options | seeds × episodes "
      "| episodes to solve (per seed) | median "
      f"| {BOOTSTRAP_LEVEL:.0%} interval of the median | solved "
      "| test: median "
      "| test: solved | final moving average | final test moving average "
      "| final entropy | eligible fraction | rollouts/episode | env steps/s "
      "| run |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    seeds = row["seeds"]
    test_solved = row["test_seeds_solved"]
    cells = [
        row["env"], f"`{row['learner']}`",
        row["options"].replace(";", "; ") or "-",
        f"{seeds} × {row['episodes']}",
        _per_seed_text(row),
        _median_text(row["median_episodes_to_solve"]),
        _interval_text(row["median_interval_low"],
                       row["median_interval_high"]),
        f"{row['seeds_solved']}/{seeds}",
        ("-" if test_solved is None
         else _median_text(row["median_test_episodes_to_solve"])),
        "-" if test_solved is None else f"{test_solved}/{seeds}",
        _or_dash(row["final_moving_average_median"], ".1f"),
        _or_dash(row["final_test_moving_average_median"], ".1f"),
        _or_dash(row["final_entropy_median"], ".3f"),
        _or_dash(row["final_eligible_fraction_median"], ".3f"),
        _or_dash(row["mean_rollouts_per_episode"], ".1f"),
        f"{row['env_steps_per_second']:,.0f}", row["run"]]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _zero_from(log_var: np.ndarray, episodes: np.ndarray):
  """First measurement episode from which every later one is at the floor."""
  zero = log_var <= LOG_VARIANCE_FLOOR + _FLOOR_TOLERANCE
  if not zero.size or not zero[-1]:
    return None
  nonzero = np.nonzero(~zero)[0]
  first = nonzero[-1] + 1 if nonzero.size else 0
  return int(episodes[first])


def _stays_zero_from(values: np.ndarray):
  """First episode (1-based) from which ``values`` is exactly 0 for good."""
  if not values.size or values[-1] != 0:
    return None
  nonzero = np.nonzero(values != 0)[0]
  return int(nonzero[-1]) + 2 if nonzero.size else 1


def rl_seed_rows(runs: list[dict]) -> list[dict]:
  """Per ARSM learner of each run of at most :data:`POSTER_SEEDS` seeds and
  per seed, what its policy ended as.

  The episodes that ended before the step cap (on Acrobot-v1: reached the
  goal), over the whole run and over the last ``moving_average_window``
  episodes, and the last of them (1-based); over that window also the mean entropy, the mean eligible
  fraction (steps with a pseudo action that differs from the action) and the
  episodes without any rollout; the episode from which the measured gradient
  variance is exactly zero for good (``None`` if it is not at the end) and
  from which the eligible fraction stays exactly 0.
  """
  rows = []
  for run in runs:
    for learner in run["learners"]:
      if (learner["name"] != "arsm"
          or learner["result"]["num_seeds"] > POSTER_SEEDS):
        continue
      c = learner["curves"]
      window = learner["config"].get("moving_average_window", 100)
      last = slice(-window, None)
      cap = (learner["config"].get("max_episode_steps")
             or RL_STEP_LIMITS.get(run["env"]))
      early = (c["length"] < cap if cap and "length" in c
               else None)                                    # [E, S]
      solve = learner["result"]["episodes_to_solve"]
      for s, solved_at in enumerate(solve):
        rows.append({
            "env": run["env"], "options": learner["options"],
            "run": run["name"], "seed": s, "solved_at": solved_at,
            "final_moving_average": float(c["moving_average"][-1, s]),
            "window": window, "step_cap": cap,
            "ended_early": None if early is None else int(early[:, s].sum()),
            "ended_early_last": (None if early is None
                                 else int(early[last, s].sum())),
            "last_ended_early": (None if early is None
                                 or not early[:, s].any()
                                 else int(np.nonzero(early[:, s])[0][-1]) + 1),
            "episodes": int(c["reward"].shape[0]),
            "entropy_last": float(np.mean(
                c["entropy"][last, s].astype(np.float64))),
            "eligible_last": float(np.mean(
                c["eligible_fraction"][last, s].astype(np.float64))),
            "no_rollout_last": int(np.sum(c["num_rollouts"][last, s] == 0)),
            "zero_gradient_from": _zero_from(c["log_grad_variance"][:, s],
                                             c["variance_episode"]),
            "eligible_zero_from": _stays_zero_from(
                c["eligible_fraction"][:, s]),
        })
  order = {env: i for i, env in enumerate(RL_ENVS)}
  return sorted(rows, key=lambda r: (order.get(r["env"], len(order)),
                                     r["env"], r["options"] != "",
                                     r["options"], r["run"], r["seed"]))


def rl_seed_table(rows: list[dict]) -> str:
  """Markdown of :func:`rl_seed_rows`."""
  lines = [
      "| env | options | seed | solved at | final moving average "
      "| episodes ended before the cap: all, last W | last such episode "
      "| entropy, last W | eligible fraction, last W "
      "| episodes without rollouts, last W | gradient exactly 0 from "
      "| eligible fraction 0 from |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    cells = [
        row["env"], row["options"].replace(";", "; ") or "-",
        str(row["seed"]), _or_dash(row["solved_at"], "d"),
        f"{row['final_moving_average']:.1f}",
        ("-" if row["ended_early"] is None else
         f"{row['ended_early']}/{row['episodes']}, "
         f"{row['ended_early_last']}/{row['window']}"),
        _or_dash(row["last_ended_early"], "d"),
        f"{row['entropy_last']:.3f}",
        f"{row['eligible_last']:.3f}",
        f"{row['no_rollout_last']}/{row['window']}",
        _or_dash(row["zero_gradient_from"], "d"),
        _or_dash(row["eligible_zero_from"], "d")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _rl_label(learner: dict) -> str:
  r = learner["result"]
  label = learner["name"]
  if learner["options"]:
    label += f" [{learner['options'].replace(';', '; ')}]"
  return label + f" ({r['num_solved']}/{r['num_seeds']} solved)"


def _env_learners(runs: list[dict], env: str) -> list[tuple[dict, dict]]:
  pairs = [(run, learner) for run in runs if run["env"] == env
           for learner in run["learners"]]
  return sorted(pairs, key=lambda p: _rl_sort_key(
      {"env": env, "learner": p[1]["name"], "options": p[1]["options"],
       "seeds": p[1]["result"]["num_seeds"], "run": p[0]["name"]}))


def _step_cap(env: str, learner: dict):
  return (learner["config"].get("max_episode_steps")
          or RL_STEP_LIMITS.get(env))


def rl_figure_learners(runs: list[dict], env: str) -> list[tuple[dict, dict]]:
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


def rl_figure_groups(pairs: list[tuple[dict, dict]], env: str) -> list[dict]:
  """The rows of ``env``'s figure, one per episode step cap
  (``max_episode_steps``: rewards of 3,000-step episodes are on another
  scale than those of 500-step ones), smallest cap first: ``{"title",
  "cap", "series"}`` as :func:`arsm_jax.plotting.plot_rl_groups` takes
  them."""
  by_cap, seen = {}, {}
  for _, learner in pairs:
    c = learner["curves"]
    by_cap.setdefault(_step_cap(env, learner), []).append({
        "label": _rl_label(learner), "learner": learner["name"],
        "variant": seen.get(learner["name"], 0),
        "moving_average": c["moving_average"],
        "test_moving_average": c.get("test_moving_average"),
        "log_grad_variance": c["log_grad_variance"],
        "variance_episode": c["variance_episode"]})
    seen[learner["name"]] = seen.get(learner["name"], 0) + 1
  default_cap = RL_STEP_LIMITS.get(env)
  return [{"title": ("episodes up to the environment's own step limit"
                     if cap is None else
                     f"episodes of at most {cap:,} steps"
                     + (" (the environment's limit)" if cap == default_cap
                        else "")),
           "cap": cap, "series": by_cap[cap]}
          for cap in sorted(by_cap, key=lambda c: (c is None, c or 0))]


def rl_figure(runs: list[dict], env: str, path: str) -> bool:
  """Draws ``env``'s figure-3 panels (the runs of
  :func:`rl_figure_learners`, in the rows of :func:`rl_figure_groups`);
  returns False when it has no run."""
  pairs = rl_figure_learners(runs, env)
  if not pairs:
    return False
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  groups = rl_figure_groups(pairs, env)
  first = pairs[0][1]
  window = first["config"].get("moving_average_window", 100)
  plotting.plot_rl_groups(
      groups, path,
      f"{env}: median over seeds (seeds solved/seeds in each label), bands "
      f"10th-90th percentile, moving average over {window} episodes",
      first["result"]["solved_threshold"], LOG_VARIANCE_FLOOR)
  return True


def rl_collapse_figure(runs: list[dict], path: str,
                       env: str = "Acrobot-v1") -> bool:
  """Per-seed diagnostics of each ARSM run on ``env`` of at most
  :data:`POSTER_SEEDS` seeds; False when none."""
  pairs = [(run, learner) for run, learner in _env_learners(runs, env)
           if learner["name"] == "arsm"
           and learner["result"]["num_seeds"] <= POSTER_SEEDS]
  if not pairs:
    return False
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  rows = []
  for _, learner in pairs:
    c = learner["curves"]
    cap = (learner["config"].get("max_episode_steps")
           or RL_STEP_LIMITS.get(env))
    rows.append({
        "label": _rl_label(learner), "step_cap": cap,
        "entropy": c["entropy"].astype(np.float32),
        "eligible_fraction": c["eligible_fraction"].astype(np.float32),
        "log_grad_variance": c["log_grad_variance"],
        "variance_episode": c["variance_episode"],
        "ended_early": (np.cumsum(c["length"] < cap, axis=0)
                        if cap and "length" in c else None),
        "solved": [v is not None
                   for v in learner["result"]["episodes_to_solve"]]})
  plotting.plot_rl_seeds(rows, path, f"{env}, ARSM: per seed (red: never "
                         "solved, blue: solved)", LOG_VARIANCE_FLOOR)
  return True


def rl_figure_paths(runs: list[dict], docs: str = DOCS) -> list[str]:
  """The RL figures the collected runs give (one per environment, and the
  collapse figure when ARSM ran on Acrobot-v1)."""
  paths = [os.path.join(docs, f"rl_{_env_key(env)}.png")
           for env in sorted({run["env"] for run in runs})]
  if any(learner["name"] == "arsm"
         and learner["result"]["num_seeds"] <= POSTER_SEEDS for run in runs
         if run["env"] == "Acrobot-v1" for learner in run["learners"]):
    paths.append(os.path.join(docs, "rl_acrobot_collapse.png"))
  return paths


def draw_rl_figures(runs: list[dict], docs: str = DOCS) -> list[str]:
  """Draws every RL figure of :func:`rl_figure_paths`; returns the paths."""
  for env in sorted({run["env"] for run in runs}):
    rl_figure(runs, env, os.path.join(docs, f"rl_{_env_key(env)}.png"))
  rl_collapse_figure(runs, os.path.join(docs, "rl_acrobot_collapse.png"))
  return rl_figure_paths(runs, docs)


# The README's one-line summaries of figures 2 and 3 sit between these
# markers and are written here, so they cannot drift from the tables.
HEADLINES_START = "<!-- results-headlines:start -->"
HEADLINES_END = "<!-- results-headlines:end -->"
_LEARNER_NAMES = {"arsm": "ARSM", "a2c": "A2C", "relax": "RELAX",
                  "reinforce_ma": "REINFORCE"}


# The figure-2 protocol's learning rate, the one the headline compares at.
HEADLINE_LR, HEADLINE_LR_TEXT = 3e-4, "3e-4"


def _headline_runs(rows: list[dict]) -> dict[tuple, list[dict]]:
  """The 100-epoch one-layer nonlinear runs at ``HEADLINE_LR``, grouped as
  the VAE table groups them."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    if (row["model"] == "nonlinear" and row["learning_rate"] == HEADLINE_LR
        and row["epochs"] == 100):
      groups.setdefault(_group_key(row), []).append(row)
  return groups


def _valid_text(members: list[dict], note: str = "") -> str:
  """``median (median of n seeds[; note])`` of the validation -ELBO."""
  median = statistics.median(m["valid_neg_elbo"] for m in members)
  seeds = (f"median of {len(members)} seeds" if len(members) > 1
           else "one seed")
  return f"{median:.2f} ({seeds}{note})"


def vae_headline(rows: list[dict]) -> str:
  """ARSM against the authors' log, the best estimator at ARSM's
  evaluations, and the best at fewer, from the one-layer nonlinear runs."""
  groups = _headline_runs(rows)
  arsm = groups.get(("nonlinear", "arsm", "", HEADLINE_LR, 0))
  if not arsm:
    return "no 100-epoch ARSM run has been collected yet."
  evals = arsm[0]["f_evals_per_image"]
  authors = f"; the authors' log: {AUTHORS_ARSM_LOG[99][1]:.2f} at epoch 99"
  text = (f"after 100 epochs ARSM's validation −ELBO is "
          f"{_valid_text(arsm, authors)}")
  # The others, ARSM's model options left out, by median validation -ELBO.
  ranked = sorted((g for k, g in groups.items() if k[1] != "arsm"),
                  key=lambda g: statistics.median(
                      m["valid_neg_elbo"] for m in g))
  def best(keep):
    return next((g for g in ranked if keep(g[0]["f_evals_per_image"])), None)
  def name(group):
    settings = group[0]["settings"]
    return f"`{group[0]['estimator']}`" + (f" ({settings})" if settings else "")
  equal = best(lambda e: e == evals)
  if equal:
    text += (f"; at its {evals} evaluations per image, the best is "
             f"{name(equal)} at {_valid_text(equal)}")
  fewer = best(lambda e: e < evals)
  if fewer:
    text += (f"; with fewer, the best is {name(fewer)} at "
             f"{_valid_text(fewer)} with {fewer[0]['f_evals_per_image']} "
             "evaluations")
  return text + "."


# Fewer seeds than this in an environment's largest set: the generated text
# says that its intervals carry the uncertainty of few seeds.
RL_MANY_SEEDS = 50
# docs/experiments/rl.md's generated block (the seeds, intervals and what
# survives them) sits between these markers.
RL_SEEDS_START = "<!-- rl-seeds:start -->"
RL_SEEDS_END = "<!-- rl-seeds:end -->"


def _name(learner: str) -> str:
  return _LEARNER_NAMES.get(learner, learner)


def _largest_default_rows(rows: list[dict], env: str) -> list[dict]:
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


def solved_difference_interval(solve, base, level: float = BOOTSTRAP_LEVEL,
                               resamples: int = BOOTSTRAP_RESAMPLES) -> tuple:
  """Bootstrap interval ``(low, high)`` of the share of seeds ``solve``
  solves minus the share ``base`` solves (each resampled independently)."""
  def shares(values, seed):
    solved = np.array([v is not None for v in values], np.float64)
    rng = np.random.default_rng(seed)
    return solved[rng.integers(0, solved.size,
                               (resamples, solved.size))].mean(axis=1)
  return _quantiles(shares(solve, BOOTSTRAP_SEED + 3)
                    - shares(base, BOOTSTRAP_SEED + 2), level)


def _points(value: float) -> str:
  return f"{value * 100:+.0f}".replace("-", "−")


def rl_comparison(arsm: dict, other: dict) -> str:
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
  low, high = solved_difference_interval(other["solve"], arsm["solve"])
  verdict = (f"{name} solves more seeds" if low > 0 else
             "ARSM solves more seeds" if high < 0 else
             "no difference at this level")
  return (text + f" Seeds solved, {name}'s share minus ARSM's: "
          f"{_points(share)} percentage points ({BOOTSTRAP_LEVEL:.0%} "
          f"interval [{_points(low)}, {_points(high)}]): {verdict}.")


def _median_comparison(arsm: dict, other: dict) -> str:
  """The medians' part of :func:`rl_comparison`."""
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
            f"{(1 + BOOTSTRAP_LEVEL) / 2:.0%} of the resamples.")
  else:
    text += "the intervals overlap, so this does not rank them"
    slow, fast, diff_name = other, arsm, f"{name}'s median minus ARSM's"
  diff = median_difference_interval(slow["solve"], fast["solve"])
  if diff is None or np.isinf(diff[0]):
    return text + "."           # the slower one's median is not reached
  point = ""
  if (slow["median_episodes_to_solve"] is not None
      and fast["median_episodes_to_solve"] is not None):
    point = _diff_text(slow["median_episodes_to_solve"]
                       - fast["median_episodes_to_solve"]) + " episodes, "
  over = ("" if diff[2] == BOOTSTRAP_RESAMPLES else
          f", over the {diff[2]:,} resamples where at least one median is "
          "reached")
  return (text + f" ({diff_name}: {point}{BOOTSTRAP_LEVEL:.0%} interval "
          f"[{_diff_text(diff[0])}, {_diff_text(diff[1])}]{over}).")


def rl_first_seeds(runs: list[dict]) -> list[str]:
  """Per run of more than :data:`POSTER_SEEDS` seeds and learner that a
  :data:`POSTER_SEEDS`-seed run of the same environment, options and
  episodes also has: on how many of the first seeds the two give identical
  training rewards (the seeds are ``fold_in(base, i)`` in both), and,
  where not all, what the first seeds of the larger run give."""
  lines = []
  small = {}
  for run in runs:
    for learner in run["learners"]:
      if learner["result"]["num_seeds"] == POSTER_SEEDS:
        small.setdefault((run["env"], learner["name"], learner["options"],
                          learner["result"]["num_episodes"]),
                         (run, learner))
  def order(learner):
    name = learner["name"]
    return (RL_LEARNERS.index(name) if name in RL_LEARNERS
            else len(RL_LEARNERS), name)
  for run in runs:
    parts = []
    for learner in sorted(run["learners"], key=order):
      r = learner["result"]
      key = (run["env"], learner["name"], learner["options"],
             r["num_episodes"])
      if r["num_seeds"] <= POSTER_SEEDS or key not in small:
        continue
      other_run, other = small[key]
      n = POSTER_SEEDS
      same = int(np.sum(np.all(
          learner["curves"]["reward"][:, :n] == other["curves"]["reward"],
          axis=0)))
      first = r["episodes_to_solve"][:n]
      equal = sum(a == b for a, b in zip(first,
                                         other["result"]["episodes_to_solve"]))
      part = f"{_name(learner['name'])} {same}/{n}"
      if same < n:
        solved = sum(v is not None for v in first)
        theirs = other["result"]
        part += (f" (episodes to solve, or never, equal on {equal}/{n}; its "
                 f"first {n} seeds: {solved}/{n} solved, median "
                 f"{_median_text(rl_median(first))}, against "
                 f"{theirs['num_solved']}/{n} and "
                 f"{_median_text(theirs['median_episodes_to_solve'])})")
      parts.append(part)
      compared = other_run["name"]
    if parts:
      lines.append(
          f"The first {POSTER_SEEDS} of the {r['num_seeds']} seeds of "
          f"`{run['name']}` against `{compared}`, seeds with identical "
          "training rewards in every episode: " + ", ".join(parts) + ".")
  return lines


def rl_median(solve) -> float | None:
  """``arsm_jax.tasks.rl.median_episodes`` (unsolved seeds infinitely
  slow; ``None`` when that median is)."""
  med = float(np.median([np.inf if v is None else v for v in solve]))
  return med if np.isfinite(med) else None


def rl_seeds_block(rows: list[dict], runs: list[dict]) -> str:
  """The markdown of docs/experiments/rl.md's generated block: figure 3's
  rows (default options) with their intervals, the first-seeds check and,
  per environment, ARSM against each other learner on its largest run."""
  low_q, high_q = (1 - BOOTSTRAP_LEVEL) / 2, (1 + BOOTSTRAP_LEVEL) / 2
  out = [
      f"Intervals: percentile bootstrap, {BOOTSTRAP_RESAMPLES:,} resamples "
      "of the seeds with replacement (NumPy's `default_rng` seeded with "
      f"{BOOTSTRAP_SEED}), the {low_q:.0%} and {high_q:.0%} quantiles of the "
      "resampled medians; unsolved seeds count as infinitely slow, so an "
      "end is \"not reached\" when at least that share of the resampled "
      "medians is.", "",
      "| env | learner | seeds × episodes | solved | median "
      f"| {BOOTSTRAP_LEVEL:.0%} interval | run |",
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
  for line in rl_first_seeds(runs):
    out += [line, ""]
  for env in RL_ENVS:
    largest = _largest_default_rows(rows, env)
    arsm = next((r for r in largest if r["learner"] == "arsm"), None)
    if arsm is None:
      continue
    items = [rl_comparison(arsm, r) for r in largest if r is not arsm]
    if not items:
      continue
    head = (f"{env}, {arsm['seeds']} seeds × {arsm['episodes']} episodes "
            f"(`{arsm['run']}`)")
    if arsm["seeds"] < RL_MANY_SEEDS:
      head += (f", only {arsm['seeds']} seeds: its intervals carry that "
               "uncertainty")
    out.append(f"* {head}:")
    out += [f"  * {item}" for item in items]
    steps = [r for r in largest if r.get("total_env_steps")]
    if steps:
      out.append("  * Environment steps over all seeds, rollouts included "
                 "(in parentheses: the episodes' own): " + ", ".join(
                     f"{_name(r['learner'])} "
                     f"{r['total_env_steps'] / 1e6:,.1f} million"
                     + (f" ({r['total_episode_steps'] / 1e6:,.1f} million)"
                        if r.get("total_episode_steps")
                        and r["total_episode_steps"] != r["total_env_steps"]
                        else "")
                     for r in steps) + ".")
  return "\n".join(out).rstrip("\n") + "\n"


def rl_headline(rows: list[dict]) -> str:
  """Per environment, each learner's seeds solved, median episodes to solve
  and its interval, on the environment's largest run with default
  options."""
  parts = []
  for env in RL_ENVS:
    largest = _largest_default_rows(rows, env)
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


def readme_headlines(vae: list[dict], rl: list[dict]) -> str:
  """The markdown between the README's headline markers."""
  bullets = [
      "[Categorical VAE on binarised MNIST](docs/experiments/vae.md) "
      f"(figure 2; one layer, lr {HEADLINE_LR_TEXT}): "
      f"{vae_headline(vae)}",
      "[Reinforcement learning](docs/experiments/rl.md) (figure 3; default "
      "options): seeds solved; median episodes to solve where reached "
      f"({BOOTSTRAP_LEVEL:.0%} bootstrap interval). "
      f"{rl_headline(rl)}"]
  return "".join(textwrap.fill(b, 78, initial_indent="* ",
                               subsequent_indent="  ", break_on_hyphens=False,
                               break_long_words=False) + "\n"
                 for b in bullets)


def splice(text: str, block: str, start: str, end: str, path: str) -> str:
  """``text`` with what lies between ``start`` and ``end`` replaced by
  ``block``; a ValueError naming ``path`` when a marker is missing."""
  head, sep, rest = text.partition(start)
  _, sep2, tail = rest.partition(end)
  if not sep or not sep2:
    raise ValueError(f"{path} lacks the markers {start} ... {end}; put them "
                     "where the generated text belongs.")
  return f"{head}{start}\n{block}{end}{tail}"


def outputs(results: str = RESULTS, readme: str | None = None,
            rl_page: str | None = None) -> dict[str, str]:
  """The text outputs, path -> content (the figures are written directly).

  With ``readme`` (a path), the README with its headline block regenerated
  is one of them; with ``rl_page`` (docs/experiments/rl.md), that page with
  its block between :data:`RL_SEEDS_START` and :data:`RL_SEEDS_END`
  regenerated (:func:`rl_seeds_block`).
  """
  rows = [vae_row(r) for r in vae_runs(results)]
  runs = rl_runs(results)
  rl = rl_rows(runs)
  texts = {os.path.join(results, "vae.csv"): vae_csv(rows),
           os.path.join(results, "vae_table.md"): vae_table(rows),
           os.path.join(results, "rl.csv"): rl_csv(rl),
           os.path.join(results, "rl_table.md"): rl_table(rl),
           os.path.join(results, "rl_arsm_seeds.md"): rl_seed_table(
               rl_seed_rows(runs))}
  if readme is not None:
    with open(readme, encoding="utf-8") as fh:
      texts[readme] = splice(fh.read(), readme_headlines(rows, rl),
                             HEADLINES_START, HEADLINES_END, readme)
  if rl_page is not None:
    with open(rl_page, encoding="utf-8") as fh:
      texts[rl_page] = splice(fh.read(), rl_seeds_block(rl, runs),
                              RL_SEEDS_START, RL_SEEDS_END, rl_page)
  return texts


def main(argv=None, results: str = RESULTS, docs: str = DOCS) -> int:
  """Writes (or with ``--check`` checks) every output; returns the exit code.

  ``results`` and ``docs`` are the input and figure folders (tests point them
  elsewhere).
  """
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="only check that the text outputs are up to date "
                      "and the RL figures exist")
  args = parser.parse_args(argv)
  repo = os.path.dirname(docs)
  stale = []
  readme = os.path.join(repo, "README.md")
  rl_page = os.path.join(docs, "experiments", "rl.md")
  texts = outputs(results, readme if os.path.exists(readme) else None,
                  rl_page if os.path.exists(rl_page) else None)
  for path, text in texts.items():
    old = (open(path, encoding="utf-8").read() if os.path.exists(path)
           else None)
    if old != text:
      stale.append(os.path.relpath(path, repo))
      if not args.check:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
          fh.write(text)
  rl = rl_runs(results)
  if args.check:
    stale += [os.path.relpath(p, repo) for p in rl_figure_paths(rl, docs)
              if not os.path.exists(p)]
    if stale:
      print("stale (run python scripts/make_results.py):", *stale)
      return 1
    return 0
  runs = vae_runs(results)
  vae_figure(runs, "nonlinear", os.path.join(docs, "vae_one_layer.png"), True)
  vae_figure(runs, "two_layer", os.path.join(docs, "vae_two_layer.png"), False)
  vae_figure(runs, "linear", os.path.join(docs, "vae_linear.png"), False)
  draw_rl_figures(rl, docs)
  for path in stale:
    print("wrote", path)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
