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
import numpy as np

from arsm_jax import plotting
from arsm_jax import writers

_WORKDIRS = flags.DEFINE_list("workdirs", None, "VAE workdirs to compare.")
_OUT = flags.DEFINE_string("out", "vae_figure.png", "Output image path.")
_VALID = flags.DEFINE_bool("valid", False, "Also draw validation -ELBO.")
_YMAX = flags.DEFINE_float("ymax", 200.0, "Upper y limit (nats); 0 = auto.")
flags.mark_flags_as_required(["workdirs"])


def load_run(workdir: str) -> dict:
  """Metrics (a DataFrame) and config of one VAE workdir."""
  with open(os.path.join(workdir, "config.json")) as fh:
    config = json.load(fh)
  return {"config": config, "metrics": writers.read_metrics(workdir)}


def main(argv):
  del argv
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  titles = set()
  seen = {}
  for workdir in _WORKDIRS.value:
    run = load_run(workdir)
    cfg, df = run["config"], run["metrics"]
    name = cfg["estimator"]
    label = f"{name} (lr {cfg['learning_rate']:g})"
    color = plotting.color(name)
    # Repeated estimators (other learning rates, say) are drawn fainter.
    alpha = 1.0 / (1 + seen.get(name, 0))
    seen[name] = seen.get(name, 0) + 1
    titles.add(f"{cfg['model']}, {cfg['dataset']} ({cfg['binarization']}), "
               f"batch {cfg['batch_size']}")
    curves = (("train_neg_elbo", "-", "train"), ("test_neg_elbo", "--", "test"))
    if _VALID.value:
      curves += (("valid_neg_elbo", ":", "valid"),)
    for column, style, kind in curves:
      if column not in df:
        continue
      rows = df[df[column].notna()]
      ax.plot(rows["step"], rows[column], style, color=color, lw=1.4,
              alpha=alpha, marker="o" if kind == "test" else None, ms=3,
              label=f"{label}, {kind}")
    last = df[df["valid_neg_elbo"].notna()].tail(1) if "valid_neg_elbo" in df \
        else None
    if last is not None and len(last):
      logging.info("%s: epoch %d, step %d, valid -ELBO %.2f", workdir,
                   int(last["epoch"].iloc[0]), int(last["step"].iloc[0]),
                   float(last["valid_neg_elbo"].iloc[0]))
  ax.set_xlabel("iteration")
  ax.set_ylabel("-ELBO (nats)")
  if _YMAX.value:
    low = ax.get_ylim()[0]
    ax.set_ylim(low if np.isfinite(low) else None, _YMAX.value)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  ax.set_title("; ".join(sorted(titles)), fontsize=9)
  fig.tight_layout()
  fig.savefig(_OUT.value, dpi=120)
  logging.info("wrote %s", _OUT.value)


if __name__ == "__main__":
  app.run(main)
