"""Multi-process runs on localhost: 2 processes x 2 forced CPU devices.

Each run is a subprocess (``scripts/launch_local.py`` for several processes,
plain Python for one) in its own session with a time limit; on a timeout or
a failed assertion the whole process group is killed. Everything stays on
127.0.0.1 (free ports). The runs use a one-step-per-epoch variant of the
``tiny`` config (20 training images, batch 20), so every metrics row's
``train_neg_elbo`` is one step's training -ELBO.

Tolerance: the 2 x 2, 1 x 4 and 1 x 1 runs compute the same step with the
batch's sums reduced in different orders (per device, then across devices
and processes), so values agree to float32 rounding: relative 1e-5 (observed
differences are about 1e-7).
"""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "scripts", "launch_local.py")
RTOL = 1e-5

# The start of every process a test launches: logging to stderr, then the
# JAX distributed system from the launcher's environment.
STARTUP = textwrap.dedent("""
    import json, os, sys
    from absl import logging
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    from arsm_jax import parallel
    parallel.initialize_distributed()
""")

# Trains the tiny VAE with JSON overrides in each workdir given; with
# TEST_STEP_DELAY each step sleeps (so that a test can kill it mid-run).
RUNNER = STARTUP + textwrap.dedent("""
    import time
    from configs import vae as vae_config
    from arsm_jax.tasks import vae

    delay = float(os.environ.get("TEST_STEP_DELAY", "0"))
    if delay:
      original = vae.make_train_step
      def slow_make_train_step(*args, **kwargs):
        step = original(*args, **kwargs)
        def call(*a):
          out = step(*a)
          time.sleep(delay)
          return out
        return call
      vae.make_train_step = slow_make_train_step
    for workdir, overrides in json.loads(sys.argv[1]):
      config = vae_config.get_config("tiny")
      for key, value in overrides.items():
        setattr(config, key, tuple(value) if isinstance(value, list) else value)
      vae.train_and_evaluate(config, workdir)
""")

# One step per epoch: each row's train_neg_elbo is one step's.
BASE = {"synthetic_sizes": [20, 40, 40], "batch_size": 20, "num_epochs": 4,
        "checkpoint_every_steps": 2, "variance_every_steps": 2}


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             PYTHONUNBUFFERED="1")
  for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
              "JAX_PROCESS_ID"):
    env.pop(key, None)
  env.update(extra)
  return env


def _kill_group(proc):
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()


def _run(cmd, timeout, env):
  """Runs cmd in its own session; kills the whole group on timeout."""
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  try:
    out, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    _kill_group(proc)
    pytest.fail(f"{cmd[:4]}... ran past {timeout}s: "
                f"{(proc.stdout.read() or '')[-3000:]}")
  finally:
    if proc.poll() is None:
      _kill_group(proc)
  return proc.returncode, out


def _launch_cmd(jobs, num_processes=2, devices=2, extra=()):
  return [sys.executable, LAUNCH, f"--num_processes={num_processes}",
          f"--devices_per_process={devices}", "--init_timeout=60",
          "--heartbeat_timeout=5", "--grace=20", *extra, "--",
          sys.executable, "-c", RUNNER, json.dumps(jobs)]


def _single_cmd(jobs):
  return [sys.executable, "-c", RUNNER, json.dumps(jobs)]


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as fh:
    return [json.loads(line) for line in fh if line.strip()]


def _close(a, b):
  if isinstance(a, float) and isinstance(b, float):
    return abs(a - b) <= RTOL * max(abs(a), abs(b), 1e-6)
  return a == b


def _assert_same_rows(rows_a, rows_b, what):
  assert len(rows_a) == len(rows_b) > 0, (what, len(rows_a), len(rows_b))
  compared = 0
  for ra, rb in zip(rows_a, rows_b):
    assert sorted(ra) == sorted(rb), (what, ra, rb)
    for key, va in ra.items():
      assert _close(va, rb[key]), (what, key, ra, rb)
      compared += isinstance(va, float)
  assert compared >= len(rows_a), what


# The toy through the command line, on two estimators.
TOY = [os.path.join(REPO, "experiments", "main.py"), "--config=toy:quick",
       "--config.estimators=arsm,reinforce", "--config.num_iterations=20",
       "--config.variance_every=10", "--config.plot=False"]


def test_toy_under_two_processes_writes_each_row_once(tmp_path):
  multi, single = str(tmp_path / "p2"), str(tmp_path / "p1")
  code, out = _run([sys.executable, LAUNCH, "--num_processes=2",
                    "--devices_per_process=1", "--init_timeout=60",
                    "--heartbeat_timeout=5", "--grace=20", "--",
                    sys.executable, *TOY, f"--workdir={multi}"],
                   timeout=300, env=_env())
  assert code == 0, out[-4000:]
  code, out = _run([sys.executable, *TOY, f"--workdir={single}"],
                   timeout=300, env=_env())
  assert code == 0, out[-4000:]
  for name in ("arsm", "reinforce"):
    rows = _rows(os.path.join(multi, name))
    # Process 0 alone wrote: 20 iterations and 2 variance measurements,
    # each row once, in one event file.
    assert len(rows) == 22, [r["step"] for r in rows]
    keys = [(r["step"], tuple(sorted(r))) for r in rows]
    assert len(keys) == len(set(keys)), keys
    events = [f for f in os.listdir(os.path.join(multi, name))
              if f.startswith("events.out")]
    assert len(events) == 1, events
    assert rows == _rows(os.path.join(single, name))
  with open(os.path.join(multi, "summary.json")) as fh:
    assert sorted(json.load(fh)["estimators"]) == ["arsm", "reinforce"]


@pytest.mark.slow
def test_two_processes_match_one_process_four_and_one_device(tmp_path):
  multi = str(tmp_path / "p2x2")
  code, out = _run(_launch_cmd([[multi, dict(BASE, num_devices=0)]]),
                   timeout=300, env=_env())
  assert code == 0, out[-4000:]
  # Each process fed only its half of every batch, to its own 2 devices.
  assert "process 0 of 2 feeds rows 0:10 of every batch of 20" in out, out
  assert "process 1 of 2 feeds rows 10:20 of every batch of 20" in out, out

  singles = [[str(tmp_path / f"p1x{n}"), dict(BASE, num_devices=n)]
             for n in (4, 1)]
  code, out1 = _run(_single_cmd(singles), timeout=300, env=_env(
      XLA_FLAGS="--xla_force_host_platform_device_count=4"))
  assert code == 0, out1[-4000:]

  rows2 = _rows(multi)
  steps = [r["step"] for r in rows2 if "train_neg_elbo" in r]
  assert steps == [1, 2, 3, 4], steps   # one training -ELBO per step
  # Process 0 alone wrote: one row per step and metric, one event file.
  keys = [(r["step"], tuple(sorted(r))) for r in rows2]
  assert len(keys) == len(set(keys)), keys
  events = [f for f in os.listdir(multi) if f.startswith("events.out")]
  assert len(events) == 1, events
  assert os.path.exists(os.path.join(multi, "summary.json"))
  assert sorted(os.listdir(os.path.join(multi, "checkpoints"))) == ["2", "4"]
  for workdir, _ in singles:
    _assert_same_rows(rows2, _rows(workdir), f"2x2 vs {workdir}")

  # 2 processes x 1 device (one device per process is a case of its own
  # for orbax's saving of the replicated state).
  multi1 = str(tmp_path / "p2x1")
  code, out = _run(_launch_cmd([[multi1, dict(BASE, num_devices=0)]],
                               devices=1), timeout=300, env=_env())
  assert code == 0, out[-4000:]
  _assert_same_rows(rows2, _rows(multi1), "2x2 vs 2x1")
  with open(os.path.join(multi, "summary.json")) as fh:
    summary = json.load(fh)
  assert math.isfinite(summary["final_test_neg_iwae"]), summary


@pytest.mark.slow
def test_killed_process_stops_the_other_and_rerun_resumes(tmp_path):
  work = str(tmp_path / "killed")
  ref = str(tmp_path / "reference")
  config = dict(BASE, num_epochs=8, num_devices=0)
  pid_file = str(tmp_path / "pids")
  cmd = _launch_cmd([[work, config]], extra=(f"--pid_file={pid_file}",))
  proc = subprocess.Popen(cmd, cwd=REPO, env=_env(TEST_STEP_DELAY="0.5"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)
  try:
    deadline = time.time() + 240
    checkpoint = os.path.join(work, "checkpoints", "4")
    while not os.path.isdir(checkpoint):
      assert proc.poll() is None, proc.stdout.read()[-4000:]
      assert time.time() < deadline, "no checkpoint at step 4 in time"
      time.sleep(0.1)
    with open(pid_file) as fh:
      pids = dict(tuple(map(int, line.split())) for line in fh)
    killed_at = time.time()
    os.kill(pids[1], signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    stopped_after = time.time() - killed_at
  finally:
    if proc.poll() is None:
      _kill_group(proc)
  assert proc.returncode != 0, out[-4000:]
  # Process 0 noticed (heartbeat 5 s) and stopped by itself, not by the
  # launcher's kill after its 20 s grace.
  assert "another task died" in out or "heartbeat" in out.lower(), out[-4000:]
  assert "launch_local: killing process 0" not in out, out[-4000:]
  assert stopped_after < 60, stopped_after
  assert len([r for r in _rows(work) if "train_neg_elbo" in r]) < 8

  code, out = _run(_launch_cmd([[work, config]]), timeout=300, env=_env())
  assert code == 0, out[-4000:]
  assert "resumed from the checkpoint at step" in out, out[-4000:]
  code, out1 = _run(_single_cmd([[ref, dict(config, num_devices=4)]]),
                    timeout=300, env=_env(
                        XLA_FLAGS="--xla_force_host_platform_device_count=4"))
  assert code == 0, out1[-4000:]
  _assert_same_rows(_rows(work), _rows(ref), "resumed 2x2 vs uninterrupted")


@pytest.mark.slow
def test_process_id_out_of_range_fails_clearly(tmp_path):
  code, out = _run(_single_cmd([[str(tmp_path / "w"), BASE]]), timeout=120,
                   env=_env(JAX_COORDINATOR_ADDRESS="127.0.0.1:1",
                            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="2"))
  assert code != 0
  assert ("JAX_PROCESS_ID=2 is out of range: with JAX_NUM_PROCESSES=2 the "
          "process ids are 0..1") in out, out[-3000:]


@pytest.mark.slow
def test_unreachable_coordinator_fails_in_bounded_time(tmp_path):
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:   # a port that nothing listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  start = time.time()
  code, out = _run(_single_cmd([[str(tmp_path / "w"), BASE]]), timeout=120,
                   env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1",
                            ARSM_INIT_TIMEOUT_S="3"))
  assert code != 0
  assert f"the coordinator at 127.0.0.1:{port} (process 0) could not be " \
         "reached within 3s" in out, out[-3000:]
  assert time.time() - start < 60


@pytest.mark.slow
def test_batch_not_divisible_over_global_devices_fails_clearly(tmp_path):
  # 18 images per batch over 2 processes x 2 devices.
  code, out = _run(_launch_cmd([[str(tmp_path / "w"),
                                 dict(BASE, batch_size=18, num_devices=0)]]),
                   timeout=180, env=_env())
  assert code != 0
  assert ("batch_size must be divisible by the number of devices (4; "
          "config.num_devices=0); got 18") in out, out[-3000:]
  assert not os.path.exists(str(tmp_path / "w" / "checkpoints"))


# Trains rl:tiny with JSON overrides in each workdir given; with
# TEST_STOP_AFTER_CHECKPOINT=n every process stops right after saving the
# checkpoint of episode n (an interrupted run, for the resumption test).
RL_RUNNER = STARTUP + textwrap.dedent("""
    from arsm_jax import runs
    from arsm_jax.tasks import rl
    from configs import rl as rl_config

    stop = int(os.environ.get("TEST_STOP_AFTER_CHECKPOINT", "0"))
    if stop:
      original = runs.Run.checkpoint
      def checkpoint_then_stop(self, step, state):
        original(self, step, state)
        if step == stop:
          raise SystemExit(f"stopped after the checkpoint of episode {step}")
      runs.Run.checkpoint = checkpoint_then_stop
    for workdir, overrides in json.loads(sys.argv[1]):
      config = rl_config.get_config("tiny").unlock()
      config.plot = False
      for key, value in overrides.items():
        setattr(config, key, value)
      rl.train_and_evaluate(config, workdir)
""")

# Numbers of summary.json that measure time, not results.
RL_TIMINGS = ("compile_seconds", "train_seconds", "env_steps_per_second")


def _rl_launch(jobs, num_processes=2):
  return [sys.executable, LAUNCH, f"--num_processes={num_processes}",
          "--devices_per_process=1", "--init_timeout=60",
          "--heartbeat_timeout=5", "--grace=20", "--",
          sys.executable, "-c", RL_RUNNER, json.dumps(jobs)]


def _assert_same_rl_rows(rows_a, rows_b, what):
  """Equal rows; the gradient-variance measurement to float32 rounding.

  Every seed's episodes are the same computation under one or two processes
  (bit for bit); the variance measurement vmaps seeds and draws on one axis,
  whose length (seeds x draws) halves per process, and XLA may then reduce
  a draw's gradient in another order (about one float32 ulp, seen for a2c).
  """
  assert len(rows_a) == len(rows_b) > 0, (what, len(rows_a), len(rows_b))
  for ra, rb in zip(rows_a, rows_b):
    assert sorted(ra) == sorted(rb), (what, ra, rb)
    for key, va in ra.items():
      if key.startswith("log_grad_variance"):
        assert abs(va - rb[key]) <= 1e-6 * max(abs(va), 1.0), (what, key, ra,
                                                               rb)
      else:
        assert va == rb[key], (what, key, ra, rb)


@pytest.mark.slow
def test_rl_seeds_split_over_two_processes_match_one_process(tmp_path):
  multi, single = str(tmp_path / "p2"), str(tmp_path / "p1")
  learners = {"learner": "a2c,arsm"}
  code, out = _run(_rl_launch([[multi, learners]]), timeout=400, env=_env())
  assert code == 0, out[-4000:]
  # Each process trained its own seed (per learner).
  for p in (0, 1):
    assert out.count(f"rl: process {p} of 2 trains seeds {p}:{p + 1} of 2"
                     ) == 2, out[-4000:]
  code, out = _run([sys.executable, "-c", RL_RUNNER,
                    json.dumps([[single, learners]])], timeout=400,
                   env=_env())
  assert code == 0, out[-4000:]
  for name in ("a2c", "arsm"):
    rows = _rows(os.path.join(multi, name))
    # Process 0 alone wrote: one row per episode (6) and per variance
    # measurement (episodes 0 and 3), each once, in one event file.
    assert [r["step"] for r in rows if "reward_median" in r] == [
        1, 2, 3, 4, 5, 6], rows
    assert [r["step"] for r in rows if "log_grad_variance_median" in r] == [
        0, 3], rows
    assert len(rows) == 8, rows
    events = [f for f in os.listdir(os.path.join(multi, name))
              if f.startswith("events.out")]
    assert len(events) == 1, events
    _assert_same_rl_rows(rows, _rows(os.path.join(single, name)), name)
  with open(os.path.join(multi, "summary.json")) as fh:
    summary2 = json.load(fh)["learners"]
  with open(os.path.join(single, "summary.json")) as fh:
    summary1 = json.load(fh)["learners"]
  assert sorted(summary2) == ["a2c", "arsm"]
  for name in summary1:
    drop = lambda s: {k: v for k, v in s.items() if k not in RL_TIMINGS}  # pylint: disable=cell-var-from-loop
    assert drop(summary2[name]) == drop(summary1[name]), name
    assert summary2[name]["num_seeds"] == 2

  # Interrupted under 2 processes after the checkpoint of episode 4 (of 6),
  # then rerun: it resumes there and ends with the uninterrupted rows.
  resumed = str(tmp_path / "resumed")
  only_a2c = {"learner": "a2c"}
  code, out = _run(_rl_launch([[resumed, only_a2c]]), timeout=400,
                   env=_env(TEST_STOP_AFTER_CHECKPOINT="4"))
  assert code != 0, out[-4000:]
  assert "stopped after the checkpoint of episode 4" in out, out[-4000:]
  assert not os.path.exists(os.path.join(resumed, "a2c", "result.json"))
  code, out = _run(_rl_launch([[resumed, only_a2c]]), timeout=400, env=_env())
  assert code == 0, out[-4000:]
  assert "rl: a2c resumes at episode 4" in out, out[-4000:]
  _assert_same_rl_rows(_rows(os.path.join(resumed, "a2c")),
                       _rows(os.path.join(single, "a2c")), "resumed a2c")


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message", [
    ({"num_seeds": 3},
     "num_seeds=3 must be divisible by the number of processes (2)."),
    ({"env": "LunarLander-v3", "learner": "arsm", "variance_every": 0},
     "env='LunarLander-v3' runs on the host in one process; it cannot run "
     "under 2 processes"),
])
def test_rl_refuses_what_two_processes_cannot_run(tmp_path, overrides,
                                                  message):
  workdir = str(tmp_path / "w")
  code, out = _run(_rl_launch([[workdir, overrides]]), timeout=180,
                   env=_env())
  assert code != 0
  assert message in out, out[-3000:]
  assert not os.path.exists(workdir)
