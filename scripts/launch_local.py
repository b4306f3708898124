r"""Runs one command as several JAX processes on this machine (localhost only).

    python scripts/launch_local.py --num_processes=2 --devices_per_process=2 \
        -- python experiments/main.py --config=configs/vae.py:tiny \
        --config.num_devices=0 --workdir=/tmp/vae_2x2

starts ``num_processes`` copies of the command, each with
``JAX_COORDINATOR_ADDRESS=127.0.0.1:<port>`` (a free port unless
``--port``), ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, ``JAX_PLATFORMS=cpu``,
``XLA_FLAGS=--xla_force_host_platform_device_count=<devices_per_process>``
and gloo CPU collectives: the same program a cluster runs, one host's worth
of processes at a time (see ``arsm_jax/parallel.py``). The timeouts
``--init_timeout`` and ``--heartbeat_timeout`` (seconds) bound how long a
process waits for the others to start and how long a dead process goes
unnoticed. Process 0's output is shown as is, the others' with a
``[p<i>]`` prefix. The launcher exits with the first non-zero exit status of
a process; when one fails, those still running after ``--grace`` seconds
are killed. Rerunning the same command resumes from the last checkpoint.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on right now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(base, process_id, num_processes, port, devices, init_timeout,
                heartbeat_timeout):
  env = dict(base)
  env.update({
      "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "JAX_NUM_PROCESSES": str(num_processes),
      "JAX_PROCESS_ID": str(process_id),
      "JAX_PLATFORMS": "cpu",
      "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
      "ARSM_INIT_TIMEOUT_S": str(init_timeout),
      "ARSM_HEARTBEAT_TIMEOUT_S": str(heartbeat_timeout),
  })
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  flags.append(f"--xla_force_host_platform_device_count={devices}")
  env["XLA_FLAGS"] = " ".join(flags)
  return env


def _relay(stream, prefix):
  for line in iter(stream.readline, ""):
    sys.stderr.write(prefix + line)
    sys.stderr.flush()
  stream.close()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=1)
  parser.add_argument("--port", type=int, default=0,
                      help="coordinator port (0: a free one)")
  parser.add_argument("--init_timeout", type=int, default=60)
  parser.add_argument("--heartbeat_timeout", type=int, default=10)
  parser.add_argument("--grace", type=float, default=30.0,
                      help="seconds the others get to stop after a failure")
  parser.add_argument("--pid_file", default="",
                      help="write 'process_id pid' lines here")
  parser.add_argument("command", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("no command to run (put it after --)")
  if args.num_processes < 1:
    parser.error(f"--num_processes={args.num_processes}; must be >= 1")
  if args.devices_per_process < 1:
    parser.error(f"--devices_per_process={args.devices_per_process}; must be "
                 ">= 1")
  port = args.port or free_port()

  procs, relays = [], []
  for i in range(args.num_processes):
    env = process_env(os.environ, i, args.num_processes, port,
                      args.devices_per_process, args.init_timeout,
                      args.heartbeat_timeout)
    if i == 0:
      proc = subprocess.Popen(command, env=env)
    else:
      proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
      relay = threading.Thread(target=_relay, args=(proc.stdout, f"[p{i}] "),
                               daemon=True)
      relay.start()
      relays.append(relay)
    procs.append(proc)
  sys.stderr.write(
      f"launch_local: {args.num_processes} processes x "
      f"{args.devices_per_process} CPU devices, coordinator 127.0.0.1:{port},"
      f" pids {' '.join(str(p.pid) for p in procs)}\n")
  sys.stderr.flush()
  if args.pid_file:
    with open(args.pid_file, "w") as fh:
      fh.write("".join(f"{i} {p.pid}\n" for i, p in enumerate(procs)))

  status = 0
  failed_at = None
  try:
    while any(p.poll() is None for p in procs):
      for i, p in enumerate(procs):
        rc = p.poll()
        if rc not in (None, 0) and status == 0:
          status = rc if rc > 0 else 128 - rc
          failed_at = time.time()
          sys.stderr.write(f"launch_local: process {i} exited with status "
                           f"{rc}; waiting up to {args.grace:g}s for the "
                           "others.\n")
      if failed_at is not None and time.time() - failed_at > args.grace:
        for i, p in enumerate(procs):
          if p.poll() is None:
            sys.stderr.write(f"launch_local: killing process {i} (pid "
                             f"{p.pid}).\n")
            p.kill()
      time.sleep(0.2)
  except KeyboardInterrupt:
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGINT)
    for p in procs:
      p.wait()
    status = status or 130
  for relay in relays:
    relay.join(timeout=5)
  if status == 0:
    for i, p in enumerate(procs):
      if p.returncode:
        rc = p.returncode
        status = rc if rc > 0 else 128 - rc
        break
  return status


if __name__ == "__main__":
  sys.exit(main())
