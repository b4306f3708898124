"""Data parallelism with ``jax.sharding``: one code path for one or many devices.

A training loop builds a :class:`DataParallel` from its config's
``num_devices`` field, places its train state (and the dataset it indexes)
with ``dp.replicate``, and inside its jitted step constrains the batch with
``jax.lax.with_sharding_constraint(x, dp.batch_sharding)``: the leading axis
is split over the mesh's ``'data'`` axis, XLA's SPMD partitioner splits the
per-example work, and means over the batch become all-reduces. With one
device the mesh has one entry and the same code runs unchanged.

Multi-host: :func:`initialize_distributed` (called by
``experiments/main.py``) wraps ``jax.distributed.initialize``; every host then
runs the same program, ``jax.devices()`` lists all hosts' devices, and each
host holds the (replicated) dataset.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

DATA_AXIS = "data"


def initialize_distributed() -> None:
  """Initialises multi-host JAX when the usual environment variables are set.

  Reads ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID`` (or lets ``jax.distributed.initialize`` detect a
  cluster such as SLURM). A single-host run without them does nothing.
  """
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address is None:
    return
  jax.distributed.initialize(
      coordinator_address=address,
      num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
      process_id=int(os.environ["JAX_PROCESS_ID"]))


class DataParallel:
  """A 1-D mesh over devices for data parallelism.

  Args:
    num_devices: how many devices to use; ``0`` or ``None`` means all of
      ``jax.devices()``.
  """

  def __init__(self, num_devices: Optional[int] = None):
    devices = jax.devices()
    if num_devices in (None, 0):
      num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
      raise ValueError(
          f"num_devices={num_devices} but {len(devices)} device(s) are "
          f"available ({devices[0].platform}); use 0 for all of them.")
    self.mesh = Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,))
    self.num_devices = num_devices
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

  def check_batch_size(self, batch_size: int) -> None:
    if batch_size % self.num_devices:
      raise ValueError(
          f"batch_size={batch_size} must be divisible by the number of "
          f"devices in the mesh ({self.num_devices}).")

  def replicate(self, tree: Any) -> Any:
    """Places every leaf of ``tree`` on all devices of the mesh."""
    return jax.device_put(tree, self.replicated)
