r"""Times the VAE training step, in one process or several (launch_local.py).

    python scripts/time_vae_step.py --num_devices=1            # 1 x 1
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python scripts/time_vae_step.py --num_devices=2        # 1 x 2
    python scripts/launch_local.py --num_processes=2 --devices_per_process=1 \
        -- python scripts/time_vae_step.py --num_devices=0     # 2 x 1

trains the default VAE (nonlinear, K=20, C=10, ARSM, batch 200) on synthetic
784-pixel images for ``--steps`` steps through ``vae.train_and_evaluate`` and
reports the median wall time of a step (the first, which compiles, left
out), each step timed to ``block_until_ready``; with several processes it
includes building the global batch from each process's rows and the gloo
all-reduces. Process 0 prints one ``RESULT {...}`` line. Evaluation runs
between epochs but is not timed.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from arsm_jax import parallel  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_devices", type=int, default=1)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--estimator", default="arsm")
  args = parser.parse_args()
  parallel.initialize_distributed()
  import jax  # pylint: disable=g-import-not-at-top
  from configs import vae as vae_config  # pylint: disable=g-import-not-at-top
  from arsm_jax.tasks import vae  # pylint: disable=g-import-not-at-top

  times = []
  original = vae.make_train_step

  def timed_make_train_step(*a, **k):
    step = original(*a, **k)

    def call(*b):
      start = time.perf_counter()
      out = jax.block_until_ready(step(*b))
      times.append(time.perf_counter() - start)
      return out

    return call

  vae.make_train_step = timed_make_train_step
  config = vae_config.get_config("arsm_nonlinear")
  config.estimator = args.estimator
  config.dataset = "synthetic"
  config.synthetic_sizes = (200 * args.steps // 2, 200, 200)
  config.num_epochs = 2
  config.num_devices = args.num_devices
  config.variance_every_steps = 0
  config.iwae_samples = 2
  config.test_every_epochs = 2
  config.checkpoint_every_steps = 0
  config.progress_every_secs = 0.0
  with tempfile.TemporaryDirectory() as tmp:
    # Every process must use the same workdir: process 0 makes it.
    workdir = os.path.join(os.environ.get("TIME_VAE_WORKDIR", tmp), "run")
    config.fresh = True
    vae.train_and_evaluate(config, workdir)
  steady = sorted(times[1:])
  result = {
      "processes": jax.process_count(),
      "devices": jax.device_count(),
      "estimator": args.estimator,
      "batch_size": config.batch_size,
      "steps_timed": len(steady),
      "median_step_s": steady[len(steady) // 2],
      "images_per_s": config.batch_size / steady[len(steady) // 2],
  }
  if jax.process_index() == 0:
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
