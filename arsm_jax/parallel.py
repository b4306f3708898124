"""Data parallelism with ``jax.sharding``: one code path for one or many devices.

A training loop builds a :class:`DataParallel` from its config's
``num_devices`` field, places its train state (and the dataset it indexes)
with ``dp.replicate``, and inside its jitted step constrains the batch with
``jax.lax.with_sharding_constraint(x, dp.batch_sharding)``: the leading axis
is split over the mesh's ``'data'`` axis, XLA's SPMD partitioner splits the
per-example work, and means over the batch become all-reduces. With one
device the mesh has one entry and the same code runs unchanged.

Several processes (hosts, or processes on one machine, see
``scripts/launch_local.py``): :func:`initialize_distributed` (called by
``experiments/main.py``) wraps ``jax.distributed.initialize``; every process
then runs the same program and ``jax.devices()`` lists every process's
devices. The mesh then spans all of them (``num_devices`` must be 0 or the
global count), each process puts only its own rows of every batch on its
devices (:meth:`DataParallel.global_batch`) and the jitted step is the same.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Optional

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

DATA_AXIS = "data"


# Environment variables read by :func:`initialize_distributed`.
ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
# Seconds to wait for every process to reach the coordinator (JAX: 300).
ENV_INIT_TIMEOUT = "ARSM_INIT_TIMEOUT_S"
# Seconds without a heartbeat after which a process counts as dead and the
# others stop with an error (JAX: 100).
ENV_HEARTBEAT_TIMEOUT = "ARSM_HEARTBEAT_TIMEOUT_S"


def _env_int(name: str, default: Optional[int], low: int) -> Optional[int]:
  text = os.environ.get(name)
  if text is None:
    return default
  try:
    value = int(text)
  except ValueError:
    value = None
  if value is None or value < low:
    raise ValueError(f"${name}={text!r}; it must be an integer >= {low}.")
  return value


def initialize_distributed() -> None:
  """Initialises multi-process JAX when the usual environment variables are set.

  Reads ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0),
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, and optionally
  ``ARSM_INIT_TIMEOUT_S`` / ``ARSM_HEARTBEAT_TIMEOUT_S`` (bounds on waiting
  for the others to start, and for noticing that one died). A run without
  ``JAX_COORDINATOR_ADDRESS`` does nothing (one process). With more than one
  process the CPU backend's collectives are set to gloo (unless
  ``JAX_CPU_COLLECTIVES_IMPLEMENTATION`` chooses), so that processes of
  forced CPU devices on one machine can run the same program as a cluster.

  Raises:
    ValueError: a variable is missing or malformed, or the process id is not
      in ``[0, JAX_NUM_PROCESSES)``.
  """
  address = os.environ.get(ENV_ADDRESS)
  if address is None:
    return
  if ":" not in address:
    raise ValueError(f"${ENV_ADDRESS}={address!r}; it must be host:port of "
                     "process 0's coordinator.")
  for name in (ENV_NUM_PROCESSES, ENV_PROCESS_ID):
    if name not in os.environ:
      raise ValueError(f"${ENV_ADDRESS} is set but ${name} is not; set both "
                       f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID}.")
  num_processes = _env_int(ENV_NUM_PROCESSES, None, low=1)
  process_id = _env_int(ENV_PROCESS_ID, None, low=0)
  if process_id >= num_processes:
    raise ValueError(
        f"${ENV_PROCESS_ID}={process_id} is out of range: with "
        f"{ENV_NUM_PROCESSES}={num_processes} the process ids are 0.."
        f"{num_processes - 1}.")
  init_timeout = _env_int(ENV_INIT_TIMEOUT, 300, low=1)
  heartbeat = _env_int(ENV_HEARTBEAT_TIMEOUT, 100, low=1)
  if (num_processes > 1
      and "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  logging.info("parallel: process %d of %d, coordinator %s (timeouts: %ds "
               "to start, %ds heartbeat).", process_id, num_processes,
               address, init_timeout, heartbeat)
  if process_id != 0:
    # JAX's own wait for an absent coordinator ends in an abort with a C++
    # stack trace; a plain TCP probe first fails with a readable error.
    _wait_for_coordinator(address, init_timeout, process_id, num_processes)
  try:
    jax.distributed.initialize(
        coordinator_address=address, num_processes=num_processes,
        process_id=process_id, initialization_timeout=init_timeout,
        heartbeat_timeout_seconds=heartbeat)
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeError(
        f"process {process_id} of {num_processes} could not join the "
        f"coordinator at {address} within {init_timeout}s "
        f"(${ENV_INIT_TIMEOUT}): is process 0 running and the address "
        f"reachable? ({type(e).__name__}: {' '.join(str(e).split())[:300]})"
    ) from e


def _wait_for_coordinator(address: str, timeout: float, process_id: int,
                          num_processes: int) -> None:
  """Waits until ``address`` accepts TCP connections; raises after timeout."""
  host, _, port = address.rpartition(":")
  host = host.strip("[]")
  deadline = time.monotonic() + timeout
  error = None
  while time.monotonic() < deadline:
    try:
      with socket.create_connection((host, int(port)), timeout=1.0):
        return
    except OSError as e:
      error = e
      time.sleep(0.2)
  raise RuntimeError(
      f"process {process_id} of {num_processes}: the coordinator at "
      f"{address} (process 0) could not be reached within {timeout:g}s "
      f"(${ENV_INIT_TIMEOUT}); is process 0 running and the address "
      f"reachable from here? Last error: {error}")


def is_main_process() -> bool:
  """True in process 0, the one that writes metrics, summaries and figures."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches ``barrier(name)`` (no-op for one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def local(x: Any) -> Any:
  """A replicated array's copy on this process's first device (else ``x``).

  Lets each process evaluate replicated parameters by itself, without
  collectives; a fully addressable array (one process) is returned as is.
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if not x.is_fully_replicated:
      raise ValueError(f"local() needs a replicated array; got {x.sharding}.")
    return x.addressable_data(0)
  return x


def local_tree(tree: Any) -> Any:
  """:func:`local` applied to every leaf of ``tree``."""
  return jax.tree_util.tree_map(local, tree)


class DataParallel:
  """A 1-D mesh over devices for data parallelism.

  Args:
    num_devices: how many devices to use; ``0`` or ``None`` means all of
      ``jax.devices()``.
  """

  def __init__(self, num_devices: Optional[int] = None):
    # Ordered by process, so that each process's devices hold one contiguous
    # block of the batch (its share); one process: jax.devices() order.
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if num_devices in (None, 0):
      num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
      raise ValueError(
          f"num_devices={num_devices} but {len(devices)} device(s) are "
          f"available ({devices[0].platform}); use 0 for all of them.")
    self.num_processes = jax.process_count()
    if self.num_processes > 1 and num_devices != len(devices):
      raise ValueError(
          f"num_devices={num_devices} with {self.num_processes} processes: "
          f"the mesh must span every process's devices; use 0 (all "
          f"{len(devices)}) or {len(devices)}.")
    self.mesh = Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,))
    self.num_devices = num_devices
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

  @property
  def multi_process(self) -> bool:
    return self.num_processes > 1

  def check_batch_size(self, batch_size: int) -> None:
    if batch_size % self.num_devices:
      raise ValueError(
          f"batch_size={batch_size} must be divisible by the number of "
          f"devices in the mesh ({self.num_devices}"
          + (f" over {self.num_processes} processes" if self.multi_process
             else "") + ").")

  def replicate(self, tree: Any) -> Any:
    """Places every leaf of ``tree`` on all devices of the mesh.

    With several processes every process must pass the same values; they
    are placed from host copies (a device_put of process-local jax arrays
    onto a mesh of one device per process makes arrays orbax cannot save).
    """
    if self.multi_process:
      tree = jax.tree_util.tree_map(
          lambda x: (np.asarray(x) if isinstance(x, jax.Array)
                     and x.is_fully_addressable else x), tree)
    return jax.device_put(tree, self.replicated)

  def local_rows(self, batch_size: int) -> slice:
    """The rows of a ``[batch_size, ...]`` batch this process's devices hold."""
    self.check_batch_size(batch_size)
    index_map = self.batch_sharding.addressable_devices_indices_map(
        (batch_size,))
    starts = [ix[0].start or 0 for ix in index_map.values()]
    stops = [batch_size if ix[0].stop is None else ix[0].stop
             for ix in index_map.values()]
    return slice(min(starts), max(stops))

  def global_batch(self, local_data: np.ndarray, batch_size: int) -> Any:
    """The global ``[batch_size, ...]`` array built from this process's rows.

    Args:
      local_data: this process's rows, ``[batch_size / num_processes, ...]``
        (rows :meth:`local_rows` of the global batch).
      batch_size: the global batch size.

    Returns:
      A ``jax.Array`` split over the mesh's data axis.
    """
    shape = (batch_size,) + tuple(local_data.shape[1:])
    return jax.make_array_from_process_local_data(
        self.batch_sharding, local_data, shape)


def process_rows(num_rows: int, what: str = "rows") -> slice:
  """This process's contiguous share of ``num_rows`` independent rows.

  Process p of P takes rows ``p * num_rows / P`` up to ``(p + 1) * num_rows
  / P`` (all of them with one process), so that :func:`gather_rows` puts
  the rows back in their order.

  Args:
    num_rows: how many rows (seeds, ...) there are in all.
    what: the config field that counts them, for the error message.

  Raises:
    ValueError: ``num_rows`` is not divisible by the number of processes.
  """
  count = jax.process_count()
  if num_rows % count:
    raise ValueError(f"{what}={num_rows} must be divisible by the number of "
                     f"processes ({count}).")
  share = num_rows // count
  return slice(jax.process_index() * share,
               (jax.process_index() + 1) * share)


def gather_rows(tree: Any) -> Any:
  """Every process's :func:`process_rows` of each leaf, concatenated in
  process order, as NumPy on every process; ``tree`` itself (unchanged)
  with one process."""
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)
