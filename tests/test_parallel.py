"""Data-parallel VAE training on 4 forced host devices: really sharded, same metrics.

Runs in a subprocess so that XLA_FLAGS (which must be set before JAX starts)
does not affect the other tests. The subprocess wraps
``vae.make_train_step`` to record, at the first step of each run, the
shardings of the state and images the step receives and the compiled step's
HLO: with 4 devices the per-device batch (``B / 4`` rows) and an all-reduce
(the gradient mean) must appear in it, and neither with 1 device, so the test
fails if data parallelism is switched off. Every metrics row of the two runs
is then compared.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, re, sys
    import jax
    from configs import vae as vae_config
    from arsm_jax.tasks import vae

    assert jax.device_count() == 4, jax.devices()
    original = vae.make_train_step
    seen = {}

    def recording_make_train_step(*args, **kwargs):
      step = original(*args, **kwargs)

      def call(state, images, idx):
        if "hlo" not in seen:
          leaves = jax.tree_util.tree_leaves(state.params)
          seen["param_devices"] = min(len(l.sharding.device_set)
                                      for l in leaves)
          seen["images_devices"] = len(images.sharding.device_set)
          compiled = step.lower(state, images, idx).compile()
          seen["hlo"] = compiled.as_text()
        return step(state, images, idx)

      return call

    vae.make_train_step = recording_make_train_step
    out = {}
    for n in (1, 4):
      seen.clear()
      config = vae_config.get_config("tiny")
      config.num_devices = n
      config.num_epochs = 2
      config.variance_every_steps = 0
      workdir = f"{sys.argv[1]}/dp{n}"
      vae.train_and_evaluate(config, workdir)
      with open(f"{workdir}/metrics.jsonl") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
      hlo = seen["hlo"]
      pixels, batch = config.synthetic_pixels, config.batch_size
      out[n] = {
          "rows": rows,
          "param_devices": seen["param_devices"],
          "images_devices": seen["images_devices"],
          "all_reduce": bool(re.search(r"all-reduce(-start)?\\(", hlo)),
          "per_device_batch": [b for b in (batch, batch // 4)
                               if f"[{b},{pixels}]" in hlo],
          "batch": batch,
      }
    print("RESULT" + json.dumps(out))
""")

# Fields that measure time, not the computation.
TIMING = ("time", "sec", "wall", "elapsed", "per_s", "steps_per")


def _close(a, b, rtol=1e-3):
  if isinstance(a, (int, float)) and isinstance(b, (int, float)):
    if isinstance(a, float) and math.isnan(a):
      return isinstance(b, float) and math.isnan(b)
    return abs(a - b) <= rtol * max(abs(a), abs(b), 1e-6)
  return a == b


def test_four_device_data_parallel_is_sharded_and_matches_one_device(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4",
             PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  out = json.loads(line[len("RESULT"):])
  one, four = out["1"], out["4"]
  batch = one["batch"]

  # One device: nothing split, no collective.
  assert one["param_devices"] == 1 and one["images_devices"] == 1, one
  assert not one["all_reduce"], "an all-reduce in the 1-device step"
  assert one["per_device_batch"] == [batch], one["per_device_batch"]
  # Four devices: state and data on all four, the step partitioned over the
  # batch (B / 4 rows per device) with an all-reduce for the gradient mean.
  assert four["param_devices"] == 4 and four["images_devices"] == 4, four
  assert four["all_reduce"], "no all-reduce in the 4-device step"
  assert four["per_device_batch"] == [batch // 4], four["per_device_batch"]

  rows1, rows4 = one["rows"], four["rows"]
  assert len(rows1) == len(rows4) > 0, (len(rows1), len(rows4))
  compared = 0
  for r1, r4 in zip(rows1, rows4):
    assert sorted(r1) == sorted(r4), (r1, r4)
    for key, v1 in r1.items():
      if any(t in key for t in TIMING):
        continue
      assert _close(v1, r4[key]), (key, r1, r4)
      compared += 1
  assert compared >= len(rows1), "no metric values were compared"
