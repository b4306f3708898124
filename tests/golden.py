"""Golden outputs of tiny runs of every task (issue 28's safety net).

Each case is a tiny run; its ``metrics.jsonl`` and ``summary.json`` (less the
wall-clock fields) were recorded before the experiment layer was rebuilt, and
``tests/test_golden.py`` checks that the rebuilt layer gives the same numbers.

    python -m tests.golden --record   # rewrite tests/data/golden/ (on purpose only)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "data", "golden")


def _toy():
  from arsm_jax import experiments
  config = experiments.get_config("toy:quick")
  config.num_iterations = 60
  config.variance_every = 20
  config.variance_draws = 8
  config.plot = False
  return config


def _vae(**overrides):
  from arsm_jax import experiments
  config = experiments.get_config("vae:tiny")
  config.num_epochs = 1
  config.update(overrides)
  return config


def _rl(learner):
  from arsm_jax import experiments
  config = experiments.get_config("rl:tiny")
  config.learner = learner
  config.num_episodes = 4
  config.plot = False
  return config


# name -> (config factory, run folder relative to the workdir holding the
# files; RL and the toy keep one per learner or estimator).
CASES = {
    "toy_quick": (_toy, None),
    "vae_tiny_one_layer": (lambda: _vae(), ""),
    "vae_tiny_two_layer": (lambda: _vae(model="two_layer"), ""),
    "vae_tiny_dedup": (lambda: _vae(dedup=True), ""),
    "rl_tiny_arsm": (lambda: _rl("arsm"), None),
    "rl_tiny_a2c": (lambda: _rl("a2c"), None),
    "rl_tiny_relax": (lambda: _rl("relax"), None),
    "rl_tiny_reinforce_ma": (lambda: _rl("reinforce_ma"), None),
}

# Wall-clock fields differ from run to run; everything else must not.
_TIMING_WORDS = ("seconds", "time", "per_sec", "steps_per", "date", "hostname")


def strip_timing(obj):
  """``obj`` without the fields that measure wall-clock time."""
  if isinstance(obj, dict):
    return {k: strip_timing(v) for k, v in obj.items()
            if not any(w in k for w in _TIMING_WORDS)}
  if isinstance(obj, list):
    return [strip_timing(v) for v in obj]
  return obj


def _read_jsonl(path):
  with open(path) as f:
    return [strip_timing(json.loads(line)) for line in f if line.strip()]


def collect(workdir: str) -> dict:
  """Every ``metrics.jsonl`` and ``summary.json`` under ``workdir``, keyed by
  their path relative to it, with timing fields removed."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), workdir)
      if name == "metrics.jsonl":
        out[rel] = _read_jsonl(os.path.join(root, name))
      elif name == "summary.json":
        with open(os.path.join(root, name)) as f:
          out[rel] = strip_timing(json.load(f))
  return dict(sorted(out.items()))


def run_case(name: str, workdir: str) -> dict:
  from arsm_jax import experiments
  factory, _ = CASES[name]
  experiments.train_and_evaluate(factory(), workdir)
  return collect(workdir)


def golden_path(name: str) -> str:
  return os.path.join(GOLDEN_DIR, f"{name}.json")


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--record", action="store_true")
  parser.add_argument("cases", nargs="*", default=list(CASES))
  args = parser.parse_args()
  os.makedirs(GOLDEN_DIR, exist_ok=True)
  for name in args.cases:
    with tempfile.TemporaryDirectory() as tmp:
      out = run_case(name, os.path.join(tmp, "w"))
    if args.record:
      with open(golden_path(name), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(name, sorted(out))


if __name__ == "__main__":
  main()
