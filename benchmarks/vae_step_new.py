r"""VAE step cost of the issue-15 estimators relative to ARSM.

    PYTHONPATH=$PWD nice python benchmarks/vae_step_new.py \
        --out=docs/results/vae_step_new.json

Times the jitted training step (encoder, estimator, decoder, backward pass,
Adam) of the ``nonlinear`` VAE at batch 200, K = 20, C = 10, for ARSM and
each candidate with its settings (``reinforce_wor`` and ``unordered_set`` at
k = 4 and 8, ``indecater``, ``gumbel_rao``), interleaved over ``--rounds``
rounds (median of ``--iters`` steps per round, median over rounds), so a
busy machine slows all alike: the ratios to ARSM are what to read. Random
images stand in for MNIST (the step cost does not depend on pixel values).
Used to plan the 100-epoch runs of issue 15; the JSON it writes feeds
``scripts/make_choosing_table.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax.tasks import vae

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import vae as vae_config  # pylint: disable=g-import-not-at-top,wrong-import-position

CANDIDATES = (
    ("arsm", "arsm", {}),
    ("reinforce_wor (k=4)", "reinforce_wor", {"num_samples": 4}),
    ("reinforce_wor (k=8)", "reinforce_wor", {"num_samples": 8}),
    ("unordered_set (k=4)", "unordered_set", {"num_samples": 4}),
    ("unordered_set (k=8)", "unordered_set", {"num_samples": 8}),
    ("indecater", "indecater", {}),
    ("gumbel_rao", "gumbel_rao", {}),
)


def _timer(name: str, settings: dict, batch: int, images, iters: int):
  config = vae_config.get_config("arsm_nonlinear")
  config.estimator = name
  for k, v in settings.items():
    config.estimator_settings[k] = v
  config.batch_size = batch
  est = vae.validate_config(config)
  model, objective, tx = vae._build(config, est)  # pylint: disable=protected-access
  state = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  step = vae.make_train_step(objective, tx, "threshold", jax.random.PRNGKey(1))
  idx = np.arange(batch)
  t = time.perf_counter()
  state = jax.block_until_ready(step(state, images, idx))
  compile_s = time.perf_counter() - t

  def run():
    nonlocal state
    times = []
    for _ in range(iters):
      t = time.perf_counter()
      state = jax.block_until_ready(step(state, images, idx))
      times.append(time.perf_counter() - t)
    return statistics.median(times)

  evals = vae.evals_per_image(est, config.num_latents, config.num_categories)
  return run, evals, compile_s


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--only", default="",
                      help="comma-separated labels to time (default all)")
  parser.add_argument("--batch_size", type=int, default=200)
  parser.add_argument("--iters", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--out", default="", help="JSON file to write")
  args = parser.parse_args()
  only = {s.strip() for s in args.only.split(",") if s.strip()}
  chosen = [c for c in CANDIDATES if not only or c[0] in only or c[0] == "arsm"]
  images = jnp.asarray(np.random.default_rng(0).integers(
      0, 256, (args.batch_size, 784)), jnp.uint8)
  print(f"devices: {jax.devices()}; batch {args.batch_size}", flush=True)
  timers = {}
  for label, name, settings in chosen:
    timers[label] = _timer(name, settings, args.batch_size, images, args.iters)
    print(f"compiled {label} in {timers[label][2]:.1f}s", flush=True)
  samples = {k: [] for k in timers}
  for r in range(args.rounds):
    for label, (run, _, _) in timers.items():
      samples[label].append(run())
    print(f"round {r + 1}/{args.rounds} done", flush=True)
  ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
  base = ms["arsm"]
  rows = []
  print(f"\n{'estimator':<22}{'ms/step':>10}{'x ARSM':>9}{'evals/image':>13}")
  for label in timers:
    evals = timers[label][1]
    rows.append({"label": label, "ms_per_step": ms[label],
                 "ratio_to_arsm": ms[label] / base, "evals_per_image": evals})
    print(f"{label:<22}{ms[label]:>10.1f}{ms[label] / base:>9.2f}{evals:>13d}")
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
      json.dump({"batch_size": args.batch_size, "iters": args.iters,
                 "rounds": args.rounds, "devices": str(jax.devices()),
                 "rows": rows}, fh, indent=1)


if __name__ == "__main__":
  main()
