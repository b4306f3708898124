r"""Speed of the VAE training step per estimator, and ARSM against its floor.

    python benchmarks/vae_step.py                       # all registered
    python benchmarks/vae_step.py --estimators=reinforce,arsm --rounds=3

For each estimator: the jitted training step (encoder, estimator, decoder,
backward pass, Adam) of the ``nonlinear`` VAE at batch 200, K = 20, C = 10 in
ms/step and as a ratio to REINFORCE's step. Also the time of one decoder
forward pass (with the Bernoulli log-likelihood) over
``batch x (C(C-1)/2 + 1)`` latent vectors: every ARSM step must evaluate the
decoder on that many vectors, so ``ARSM step / decoder pass`` says how close
the step is to its floor (the issue's target is <= 1.5).

Timings are interleaved: each round times every candidate once (median of
``--iters`` steps), and the median over rounds is reported, so a busy machine
slows all candidates alike. Ratios are meaningful; absolute numbers depend on
the load. For reference, the authors' TensorFlow code takes 0.32-0.34 s per
step of this setting on these machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax import estimators
from arsm_jax.models import vae as vae_models
from arsm_jax.tasks import vae
# The configs live beside the package, not in it: make the repository root
# importable when this file is run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import vae as vae_config  # pylint: disable=g-import-not-at-top,wrong-import-position

# Names the nonlinear VAE cannot use at K = 20, C = 10.
_SKIP = {"exact"}
# Settings matching the presets (equal evaluations per step for RLOO).
_SETTINGS = {"reinforce_loo": {"num_samples": 46}}


def _step_timer(name: str, batch: int, images, iters: int):
  config = vae_config.get_config("arsm_nonlinear")
  config.estimator = name
  for k, v in _SETTINGS.get(name, {}).items():
    config.estimator_settings[k] = v
  config.batch_size = batch
  est = vae.validate_config(config)
  model, objective, tx = vae._build(config, est)
  state = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  step = vae.make_train_step(objective, tx, "threshold", jax.random.PRNGKey(1))
  idx = np.arange(batch)
  state = jax.block_until_ready(step(state, images, idx))   # compile

  def run():
    nonlocal state
    times = []
    for _ in range(iters):
      t = time.perf_counter()
      state = jax.block_until_ready(step(state, images, idx))
      times.append(time.perf_counter() - t)
    return statistics.median(times)

  evals = vae.evals_per_image(est, config.num_latents, config.num_categories)
  return run, evals


def _decoder_timer(batch: int, iters: int):
  num_latents, num_cats = 20, 10
  num = batch * (num_cats * (num_cats - 1) // 2 + 1)
  model = vae_models.make_model("nonlinear")
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 784)),
                      jnp.zeros((1, num_latents, num_cats)))
  z = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(1),
                                        (num, num_latents), 0, num_cats),
                     num_cats)
  x = (jax.random.uniform(jax.random.PRNGKey(2), (num, 784)) < 0.2).astype(
      jnp.float32)

  @jax.jit
  def forward(params, z, x):
    pix = model.apply(params, z, method=model.decode)
    return jnp.sum(vae_models.bernoulli_log_prob(pix, x))

  @jax.jit
  def forward_only(params, z):
    return jnp.sum(model.apply(params, z, method=model.decode))

  def timer(fn, *args):
    jax.block_until_ready(fn(*args))

    def run():
      times = []
      for _ in range(iters):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
      return statistics.median(times)
    return run

  return timer(forward, params, z, x), timer(forward_only, params, z), num


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--estimators", default="all",
                      help="comma-separated names, or 'all' registered")
  parser.add_argument("--batch_size", type=int, default=200)
  parser.add_argument("--iters", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  names = (estimators.names() if args.estimators == "all"
           else [n.strip() for n in args.estimators.split(",") if n.strip()])
  names = [n for n in names if n not in _SKIP]
  for must in ("reinforce", "arsm"):
    if must not in names:
      names.append(must)

  images = jnp.asarray(np.random.default_rng(0).integers(
      0, 256, (args.batch_size, 784)), jnp.uint8)
  print(f"devices: {jax.devices()}; batch {args.batch_size}, nonlinear VAE, "
        "K = 20, C = 10; compiling ...", flush=True)
  timers, evals = {}, {}
  for name in names:
    timers[name], evals[name] = _step_timer(name, args.batch_size, images,
                                            args.iters)
  with_lik, decoder, num_latents = _decoder_timer(args.batch_size, args.iters)
  timers["decoder floor"] = decoder
  timers["decoder + likelihood"] = with_lik

  samples = {k: [] for k in timers}
  for r in range(args.rounds):
    for k, run in timers.items():
      samples[k].append(run())
    print(f"round {r + 1}/{args.rounds} done", flush=True)
  ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}

  base = ms["reinforce"]
  print(f"\n{'estimator':<20}{'ms/step':>10}{'x REINFORCE':>13}"
        f"{'evals/image':>13}")
  for name in names:
    print(f"{name:<20}{ms[name]:>10.1f}{ms[name] / base:>13.2f}"
          f"{evals[name]:>13d}")
  floor, lik = ms["decoder floor"], ms["decoder + likelihood"]
  print(f"\ndecoder forward over {num_latents} latents (batch x 46): "
        f"{floor:.1f} ms; with the Bernoulli log-likelihood: {lik:.1f} ms")
  print(f"ARSM step / decoder forward: {ms['arsm'] / floor:.2f} "
        "(target <= 1.5)")
  print(f"ARSM step / (decoder forward + likelihood): {ms['arsm'] / lik:.2f}")
  print(f"ARSM step vs the authors' 0.32-0.34 s: "
        f"{330.0 / ms['arsm']:.1f}x faster")


if __name__ == "__main__":
  main()
