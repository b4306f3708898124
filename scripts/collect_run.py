r"""Copies a finished run's record from its workdir into ``docs/results/``.

    python scripts/collect_run.py --experiment=vae --name=arsm_nonlinear_s0 \
        --workdir=~/runs/vae_arsm_nl_s0 \
        --command="python experiments/main.py --config=configs/vae.py ..."

Training runs live outside the repository (checkpoints are large); what the
published tables and figures are made from is small and is kept here:
``summary.json``, ``config.json`` and ``metrics.jsonl`` (the VAE; for RL the
per-learner ``summary.json`` files), plus ``command.txt``, the command that
produced the run. ``scripts/make_results.py`` builds the tables and figures
from these folders only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FILES = ("summary.json", "config.json", "metrics.jsonl")


def collect(experiment: str, name: str, workdir: str, command: str) -> str:
  """Copies the record of ``workdir`` to docs/results/<experiment>/<name>."""
  workdir = os.path.expanduser(workdir)
  if not os.path.exists(os.path.join(workdir, "summary.json")):
    raise SystemExit(f"{workdir} holds no summary.json: the run is not "
                     "finished (rerun its command to resume it).")
  out = os.path.join(REPO, "docs", "results", experiment, name)
  os.makedirs(out, exist_ok=True)
  for root, _, files in os.walk(workdir):
    if "checkpoints" in root.split(os.sep):
      continue
    for fname in files:
      if fname in _FILES:
        rel = os.path.relpath(os.path.join(root, fname), workdir)
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(root, fname), os.path.join(out, rel))
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
