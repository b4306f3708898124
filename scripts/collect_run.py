r"""Copies a finished run's record from its workdir into ``docs/results/``.

    python scripts/collect_run.py --experiment=vae --name=arsm_nonlinear_s0 \
        --workdir=~/runs/vae_arsm_nl_s0 \
        --command="python experiments/main.py --config=configs/vae.py ..."
    python scripts/collect_run.py --experiment=rl --name=rl_cartpole \
        --workdir=~/runs/rl_cartpole \
        --command="python experiments/main.py --config=configs/rl.py:cartpole ..."

Training runs live outside the repository (checkpoints are large); what the
published tables and figures are made from is small and is kept here, with
``command.txt``, the command that produced the run:

* VAE: ``summary.json``, ``config.json`` and ``metrics.jsonl``.
* RL: the top ``summary.json`` and, per learner of its ``learners``,
  ``<learner>/config.json`` (what identifies the learner's run) and
  ``<learner>/curves.npz``, a reduced copy of the run's per-seed curves
  (:data:`RL_CURVES`: per-episode rewards and diagnostics ``[E, S]``, the
  gradient log variances ``[M, S]`` at episodes ``[M]``), compressed, the
  diagnostics in float16; the moving averages are recomputed from the
  rewards by ``scripts/make_results.py``. ``metrics.jsonl`` and the
  TensorBoard events are not copied (they repeat the curves).

``scripts/make_results.py`` builds the tables and figures from these folders
only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FILES = ("summary.json", "config.json", "metrics.jsonl")

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


def _require_summary(workdir: str) -> str:
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    raise SystemExit(f"{workdir} holds no summary.json: the run is not "
                     "finished (rerun its command to resume it).")
  return path


def _collect_vae(workdir: str, out: str) -> None:
  for root, _, files in os.walk(workdir):
    if "checkpoints" in root.split(os.sep):
      continue
    for fname in files:
      if fname in _FILES:
        rel = os.path.relpath(os.path.join(root, fname), workdir)
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(root, fname), os.path.join(out, rel))


def reduce_rl_curves(source: str, dest: str) -> None:
  """Writes the :data:`RL_CURVES` of ``source`` (a curves.npz) to ``dest``."""
  with np.load(source) as saved:
    missing = [k for k in RL_CURVES if k not in saved
               and k != "test_reward"]
    if missing:
      raise SystemExit(f"{source} lacks the curves {missing}; it holds "
                       f"{sorted(saved.files)}.")
    kept = {k: np.asarray(saved[k]).astype(dtype)
            for k, dtype in RL_CURVES.items() if k in saved}
  np.savez_compressed(dest, **kept)


def _collect_rl(workdir: str, out: str) -> None:
  summary_path = _require_summary(workdir)
  with open(summary_path) as fh:
    summary = json.load(fh)
  shutil.copyfile(summary_path, os.path.join(out, "summary.json"))
  for learner in summary["learners"]:
    src = os.path.join(workdir, learner)
    for fname in ("config.json", "curves.npz"):
      if not os.path.exists(os.path.join(src, fname)):
        raise SystemExit(f"{src} holds no {fname}, though summary.json "
                         f"lists the learner {learner!r}.")
    dest = os.path.join(out, learner)
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(os.path.join(src, "config.json"),
                    os.path.join(dest, "config.json"))
    reduce_rl_curves(os.path.join(src, "curves.npz"),
                     os.path.join(dest, "curves.npz"))


def collect(experiment: str, name: str, workdir: str, command: str) -> str:
  """Copies the record of ``workdir`` to docs/results/<experiment>/<name>."""
  if experiment not in ("vae", "rl"):
    raise ValueError(f"Unknown experiment {experiment!r}; known: vae, rl.")
  workdir = os.path.expanduser(workdir)
  _require_summary(workdir)
  out = os.path.join(REPO, "docs", "results", experiment, name)
  if experiment == "rl" and os.path.isdir(out):
    shutil.rmtree(out)    # a recollected run keeps no stale learner
  os.makedirs(out, exist_ok=True)
  if experiment == "rl":
    _collect_rl(workdir, out)
  else:
    _collect_vae(workdir, out)
  with open(os.path.join(out, "command.txt"), "w") as fh:
    fh.write(command.strip() + "\n")
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experiment", required=True, choices=("vae", "rl"))
  parser.add_argument("--name", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--command", required=True)
  args = parser.parse_args(argv)
  print(collect(args.experiment, args.name, args.workdir, args.command))


if __name__ == "__main__":
  main(sys.argv[1:])
