"""The VAE's data: the splits, the batches fed to the step, the fixed sets."""

from __future__ import annotations

import time
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax import data as data_lib
from arsm_jax import parallel


def load_data(config) -> dict[str, np.ndarray]:
  if config.dataset == "synthetic":
    return data_lib.synthetic(tuple(int(s) for s in config.synthetic_sizes),
                              int(config.synthetic_pixels), seed=config.seed)
  return data_lib.load(config.dataset, config.data_dir,
                       config.cache_dir if config.cache_images else None,
                       config.num_validation, config.validation_split)


def batch_feed(config, images: np.ndarray, dp: parallel.DataParallel):
  """``batch(perm, pos) -> (images, idx)``: the arguments of the step for
  the batch at ``pos`` of the epoch permutation ``perm``.

  One process: the training images live on the devices and the step indexes
  them. Several: each process puts only its rows of every batch on its own
  devices (:meth:`~arsm_jax.parallel.DataParallel.global_batch`).
  """
  b = config.batch_size
  if not dp.multi_process:
    on_devices = dp.replicate(jnp.asarray(images))
    return lambda perm, pos: (on_devices, perm[pos * b:(pos + 1) * b])
  rows = dp.local_rows(b)
  logging.info("vae: process %d of %d feeds rows %d:%d of every batch of %d "
               "to its %d devices (the mesh has %d).", jax.process_index(),
               jax.process_count(), rows.start, rows.stop, b,
               jax.local_device_count(), dp.num_devices)

  def batch(perm, pos):
    idx = np.asarray(perm[pos * b:(pos + 1) * b])
    return dp.global_batch(images[idx[rows]], b), None

  return batch


def fixed_sets(config, splits, key):
  """The validation and test sets (NumPy) and the variance batch, binarised
  once (dynamic binarisation: with fixed keys)."""
  valid, test, var_x = (
      data_lib.binarize(x, config.binarization, jax.random.fold_in(key, i))
      for i, x in enumerate((splits["validation"], splits["test"],
                             splits["train"][:config.variance_batch_size])))
  return np.asarray(valid), np.asarray(test), var_x


def load_splits(config, splits: Optional[dict[str, np.ndarray]]
                 ) -> dict[str, np.ndarray]:
  """``splits``, or the images ``config`` names; checks the batch sizes."""
  t_start = time.time()
  splits = load_data(config) if splits is None else splits
  num_train = len(splits["train"])
  for field in ("batch_size", "variance_batch_size"):
    if config[field] > num_train:
      raise ValueError(f"config.{field} ({config[field]}) exceeds the "
                       f"{num_train} training images.")
  logging.info("vae: %d/%d/%d images loaded in %.1fs; %d steps per epoch.",
               num_train, len(splits["validation"]), len(splits["test"]),
               time.time() - t_start, num_train // config.batch_size)
  return splits
