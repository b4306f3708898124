"""Data-parallel VAE training on 4 forced host devices matches one device.

Runs in a subprocess so that XLA_FLAGS (which must be set before JAX starts)
does not affect the other tests.
"""

import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    import numpy as np
    from configs import vae as vae_config
    from arsm_jax.tasks import vae

    assert jax.device_count() == 4, jax.devices()
    out = {}
    for n in (1, 4):
      config = vae_config.get_config("tiny")
      config.num_devices = n
      config.num_epochs = 2
      config.variance_every_steps = 0
      summary = vae.train_and_evaluate(config, f"{sys.argv[1]}/dp{n}")
      out[n] = {k: summary[k] for k in ("final_train_neg_elbo",
                                        "final_valid_neg_elbo")}
    print("RESULT" + json.dumps(out))
""")


def test_four_device_data_parallel_run_matches_one_device(tmp_path):
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
  for key in one:
    assert abs(one[key] - four[key]) <= 1e-3 * abs(one[key]), (key, one, four)
