r"""Poster-style VAE figure: -ELBO against iteration, one colour per estimator.

    python experiments/vae_figure.py \
        --workdirs=runs/vae_arsm_nonlinear,runs/vae_reinforce_loo,runs/vae_st_gumbel \
        --out=runs/vae_figure.png

Training -ELBO (per-epoch mean) is drawn solid, test -ELBO dashed (every
``test_every_epochs`` epochs), and with ``--valid`` validation -ELBO dotted.
The estimator of each workdir is read from its ``config.json``; runs still in
progress are drawn up to their last logged epoch.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from arsm_jax import plotting
from arsm_jax import writers

_WORKDIRS = flags.DEFINE_list("workdirs", None, "VAE workdirs to compare.")
_OUT = flags.DEFINE_string("out", "vae_figure.png", "Output image path.")
_VALID = flags.DEFINE_bool("valid", False, "Also draw validation -ELBO.")
_YMAX = flags.DEFINE_float("ymax", 200.0, "Upper y limit (nats); 0 = auto.")
flags.mark_flags_as_required(["workdirs"])


def main(argv):
  del argv
  runs = [load_run(w) for w in _WORKDIRS.value]
  plotting.plot_vae(runs, _OUT.value, valid=_VALID.value, ymax=_YMAX.value)
  for workdir, run in zip(_WORKDIRS.value, runs):
    df = run["metrics"]
    if "valid_neg_elbo" in df:
      last = df[df["valid_neg_elbo"].notna()].tail(1)
      if len(last):
        logging.info("%s: epoch %d, step %d, valid -ELBO %.2f", workdir,
                     int(last["epoch"].iloc[0]), int(last["step"].iloc[0]),
                     float(last["valid_neg_elbo"].iloc[0]))
  logging.info("wrote %s", _OUT.value)


def load_run(workdir: str) -> dict:
  """Metrics (a DataFrame) and config of one VAE workdir."""
  with open(os.path.join(workdir, "config.json")) as fh:
    config = json.load(fh)
  return {"config": config, "metrics": writers.read_metrics(workdir)}


if __name__ == "__main__":
  app.run(main)
