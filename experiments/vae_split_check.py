r"""How much easier is the authors' validation set than the last 5k in TFDS order?

    python experiments/vae_split_check.py --workdir=runs/vae_split_check

The authors validated on the first 5,000 images of the original MNIST
training file (TensorFlow's ``read_data_sets``); ``validation_split='last'``
takes the last 5,000 in TFDS's shuffled order instead. This trains the
default ARSM VAE for ``--epochs`` epochs on the training images in neither
set (50,409 of them; the two sets share 409) and evaluates the same model on
both every epoch: the run's ``valid_neg_elbo`` is the paper's set and its
``test_neg_elbo`` the TFDS-last set. It prints the per-epoch difference.
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np

from arsm_jax import data as data_lib
from arsm_jax import writers
from arsm_jax.tasks import vae
# The configs live beside the package, not in it: make the repository root
# importable when this file is run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import vae as vae_config  # pylint: disable=g-import-not-at-top,wrong-import-position

_WORKDIR = flags.DEFINE_string("workdir", "runs/vae_split_check", "Output.")
_EPOCHS = flags.DEFINE_integer("epochs", 8, "Training epochs.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS folder (default: "
                                "the config's).")


def main(argv):
  del argv
  config = vae_config.get_config()
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  config.num_epochs = _EPOCHS.value
  config.test_every_epochs = 1
  config.iwae_samples = 2          # The IWAE bound is not needed here.
  config.variance_every_steps = 0
  train = data_lib.load_split("mnist", "train", config.data_dir)
  paper = data_lib.original_order("train", len(train))[:5000]
  last = np.arange(len(train) - 5000, len(train))
  rest = np.setdiff1d(np.arange(len(train)), np.union1d(paper, last))
  splits = {"train": train[rest], "validation": train[paper],
            "test": train[last]}
  vae.train_and_evaluate(config, _WORKDIR.value, splits=splits)
  rows = (writers.read_metrics(_WORKDIR.value)
          .dropna(subset=["test_neg_elbo"]).to_dict("records"))
  print(f"{len(rest)} training images; -ELBO of the same model (nats):")
  print("epoch  paper first-5k  TFDS last-5k  difference")
  for r in rows:
    print(f"{int(r['epoch']):5d}  {r['valid_neg_elbo']:14.2f}  "
          f"{r['test_neg_elbo']:12.2f}  {r['test_neg_elbo'] - r['valid_neg_elbo']:10.2f}")


if __name__ == "__main__":
  app.run(main)
