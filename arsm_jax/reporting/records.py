r"""Run records: copied from a finished run's workdir, read back for reporting.

Training runs live outside the repository (checkpoints are large); what the
published tables and figures are made from is small and is kept in
``docs/results/<experiment>/<name>/``, with ``command.txt``, the command that
produced the run:

* VAE: ``summary.json``, ``config.json`` and ``metrics.jsonl``.
* RL: the top ``summary.json`` and, per learner of its ``learners``,
  ``<learner>/config.json`` (what identifies the learner's run) and
  ``<learner>/curves.npz``, a reduced copy of the run's per-seed curves
  (:data:`RL_CURVES`: per-episode rewards and diagnostics ``[E, S]``, the
  gradient log variances ``[M, S]`` at episodes ``[M]``), compressed, the
  diagnostics in float16; the moving averages are recomputed from the
  rewards by :func:`arsm_jax.tasks.rl.moving_average` when read.
  ``metrics.jsonl`` and the TensorBoard events are not copied (they repeat
  the curves).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Optional

import numpy as np

from arsm_jax import experiments
from arsm_jax.tasks import rl as rl_task

# The repository this package sits in, and its results and docs folders (the
# defaults of every reader and writer here).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RESULTS = os.path.join(REPO, "docs", "results")
DOCS = os.path.join(REPO, "docs")
EXPERIMENTS = ("vae", "rl")

_VAE_FILES = ("summary.json", "config.json", "metrics.jsonl")
# RL curves kept, with the dtype they are stored in. Rewards stay float32
# (integers for CartPole and Acrobot, so exact); entropy and the eligible
# fraction only feed figures and per-seed summaries, float16 is plenty.
RL_CURVES = {
    "reward": np.float32,                 # [E, S]
    "test_reward": np.float32,            # [E, S], when test_episode
    "entropy": np.float16,                # [E, S]
    "eligible_fraction": np.float16,      # [E, S]
    "num_rollouts": np.int32,             # [E, S]
    "length": np.int32,                   # [E, S]
    "log_grad_variance": np.float32,      # [M, S]
    "variance_episode": np.int32,         # [M]
}

# The configs/rl.py preset whose defaults an environment's runs are compared
# to (its name also names the environment's figure).
RL_PRESETS = {"CartPole-v1": "cartpole", "Acrobot-v1": "acrobot",
              "LunarLander-v3": "lunarlander"}
# Config fields that are not options: what the run is of, and the columns.
_NOT_OPTIONS = ("experiment", "env", "learner", "num_seeds", "num_episodes")
# The authors' protocol options first, in this order; the rest sorted.
_OPTION_ORDER = ("rollout_budget", "max_episode_steps", "max_rollouts",
                 "common_random_numbers")


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as fh:
    return json.load(fh)


def _read_rows(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as fh:
    return [json.loads(line) for line in fh if line.strip()]


def _read_command(folder: str) -> str:
  with open(os.path.join(folder, "command.txt"), encoding="utf-8") as fh:
    return fh.read().strip()


def _require_summary(workdir: str) -> str:
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} holds no summary.json: the run is not "
                            "finished (rerun its command to resume it).")
  return path


def _collect_vae(workdir: str, out: str) -> None:
  for root, _, files in os.walk(workdir):
    if "checkpoints" in root.split(os.sep):
      continue
    for fname in files:
      if fname in _VAE_FILES:
        rel = os.path.relpath(os.path.join(root, fname), workdir)
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(root, fname), os.path.join(out, rel))


def reduce_rl_curves(source: str, dest: str) -> None:
  """Writes the :data:`RL_CURVES` of ``source`` (a curves.npz) to ``dest``.

  Raises:
    ValueError: when ``source`` lacks a curve (``test_reward`` is optional).
  """
  with np.load(source) as saved:
    missing = [k for k in RL_CURVES if k not in saved
               and k != "test_reward"]
    if missing:
      raise ValueError(f"{source} lacks the curves {missing}; it holds "
                       f"{sorted(saved.files)}.")
    kept = {k: np.asarray(saved[k]).astype(dtype)
            for k, dtype in RL_CURVES.items() if k in saved}
  np.savez_compressed(dest, **kept)


def _collect_rl(workdir: str, out: str) -> None:
  summary_path = _require_summary(workdir)
  summary = _read_json(summary_path)
  shutil.copyfile(summary_path, os.path.join(out, "summary.json"))
  for learner in summary["learners"]:
    src = os.path.join(workdir, learner)
    for fname in ("config.json", "curves.npz"):
      if not os.path.exists(os.path.join(src, fname)):
        raise FileNotFoundError(f"{src} holds no {fname}, though summary.json "
                                f"lists the learner {learner!r}.")
    dest = os.path.join(out, learner)
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(os.path.join(src, "config.json"),
                    os.path.join(dest, "config.json"))
    reduce_rl_curves(os.path.join(src, "curves.npz"),
                     os.path.join(dest, "curves.npz"))


def collect(experiment: str, name: str, workdir: str, command: str,
            results: str = RESULTS) -> str:
  """Copies the record of ``workdir`` to ``<results>/<experiment>/<name>``.

  Returns:
    That folder.

  Raises:
    ValueError: for an experiment other than ``vae`` or ``rl``.
    FileNotFoundError: when the run is not finished (no ``summary.json``) or
      an RL learner's files are missing.
  """
  if experiment not in EXPERIMENTS:
    raise ValueError(f"Unknown experiment {experiment!r}; known: "
                     f"{', '.join(EXPERIMENTS)}.")
  workdir = os.path.expanduser(workdir)
  _require_summary(workdir)
  out = os.path.join(results, experiment, name)
  if experiment == "rl" and os.path.isdir(out):
    shutil.rmtree(out)    # a recollected run keeps no stale learner
  os.makedirs(out, exist_ok=True)
  if experiment == "rl":
    _collect_rl(workdir, out)
  else:
    _collect_vae(workdir, out)
  with open(os.path.join(out, "command.txt"), "w", encoding="utf-8") as fh:
    fh.write(command.strip() + "\n")
  return out


def vae_runs(results: str = RESULTS) -> list[dict]:
  """The collected VAE runs by folder name: ``{"name", "summary",
  "metrics" (the rows of metrics.jsonl), "command"}``."""
  root = os.path.join(results, "vae")
  runs = []
  if not os.path.isdir(root):
    return runs
  for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    summary_path = os.path.join(folder, "summary.json")
    if not os.path.exists(summary_path):
      continue
    metrics_path = os.path.join(folder, "metrics.jsonl")
    runs.append({"name": name, "summary": _read_json(summary_path),
                 "metrics": (_read_rows(metrics_path)
                             if os.path.exists(metrics_path) else []),
                 "command": _read_command(folder)})
  return runs


def rl_defaults(env: str) -> dict:
  """``configs/rl.py``'s config for ``env`` as plain JSON values."""
  preset = RL_PRESETS.get(env)
  config = experiments.get_config(f"rl:{preset}" if preset else "rl")
  if preset is None:
    config.env = env
  return json.loads(json.dumps(config.to_dict()))


def _setting_names(defaults: dict, learner: Optional[str]) -> dict:
  """How a learner's own settings are named in its saved config, mapped to
  the name the tables show.

  A setting ``s`` of learner ``L`` is saved as ``learner_settings.L.s`` (the
  nested config), or, in runs made before the settings nested, as ``s`` or
  ``L_s``. The tables show ``s``, or ``L.s`` where ``s`` is also a shared
  field (RELAX's ``learning_rate`` is its control variate's, not the
  policy's).
  """
  names = {}
  for setting in defaults.get("learner_settings", {}).get(learner, {}):
    shown = f"{learner}.{setting}" if setting in defaults else setting
    for saved in (f"learner_settings.{learner}.{setting}",
                  f"{learner}_{setting}", setting):
      names.setdefault(saved, shown)
  return names


def _learner_defaults(defaults: dict, learner: Optional[str]) -> dict:
  """``defaults`` under the names the tables show: the shared fields, and
  the learner's own settings (``learner_settings.<learner>``)."""
  flat = {k: v for k, v in defaults.items() if k != "learner_settings"}
  own = defaults.get("learner_settings", {}).get(learner, {})
  flat.update({(f"{learner}.{k}" if k in flat else k): v
               for k, v in own.items()})
  return flat


def _option_value(value: Any) -> str:
  if isinstance(value, (list, tuple)):
    return "(" + ",".join(str(v) for v in value) + ")"
  return str(value)


def rl_options(env: str, learner_config: dict,
               defaults: Optional[dict] = None) -> str:
  """``field=value;...`` for the fields of a learner's run that differ from
  the defaults of ``env`` (:func:`rl_defaults`; the authors' protocol
  options first)."""
  learner = learner_config.get("learner")
  defaults = rl_defaults(env) if defaults is None else defaults
  names = _setting_names(defaults, learner)
  shown = {names.get(k, k): v for k, v in learner_config.items()
           if k not in _NOT_OPTIONS and k != "learner_settings"}
  defaults = _learner_defaults(defaults, learner)
  missing = object()
  changed = [k for k, v in shown.items() if defaults.get(k, missing) != v]
  changed.sort(key=lambda k: (_OPTION_ORDER.index(k) if k in _OPTION_ORDER
                              else len(_OPTION_ORDER), k))
  return ";".join(f"{k}={_option_value(shown[k])}" for k in changed)


def _load_curves(path: str, window: int) -> dict[str, np.ndarray]:
  with np.load(path) as saved:
    curves = {k: np.asarray(saved[k]) for k in saved.files}
  curves["moving_average"] = rl_task.moving_average(curves["reward"], window)
  if "test_reward" in curves:
    curves["test_moving_average"] = rl_task.moving_average(
        curves["test_reward"], window)
  return curves


def _rl_learner(folder: str, learner: str, result: dict, env: str,
                defaults: dict) -> dict:
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
  return {"name": learner, "result": result, "config": config,
          "options": rl_options(env, config, defaults), "curves": curves}


def rl_runs(results: str = RESULTS) -> list[dict]:
  """The collected RL runs: per run its summary, command and learners.

  Each run is ``{"name", "env", "summary", "command", "learners"}``, each
  learner ``{"name", "result" (its summary entry), "config", "options"
  (:func:`rl_options`), "curves"}``, the moving averages recomputed from
  the rewards.

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
    env = summary["env"]
    if env not in defaults:
      defaults[env] = rl_defaults(env)
    learners = [_rl_learner(folder, learner, result, env, defaults[env])
                for learner, result in summary["learners"].items()]
    runs.append({"name": name, "env": env, "summary": summary,
                 "command": _read_command(folder), "learners": learners})
  return runs
