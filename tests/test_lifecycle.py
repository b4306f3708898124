"""The run lifecycle (arsm_jax.runs) for the toy, the VAE and RL.

Identity (a different config is refused or, with ``config.fresh``, started
again), checkpoints that survive damage, metric sinks (jsonl and TensorBoard)
cut back to the restored step, and a fault test that kills runs.
"""

import collections
import gc
import json
import logging as std_logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import checkpoints
from arsm_jax import runs
from arsm_jax import workdirs
from arsm_jax import writers
from arsm_jax.tasks import rl
from arsm_jax.tasks import toy
from arsm_jax.tasks import vae
from configs import rl as rl_config
from configs import toy as toy_config
from configs import vae as vae_config
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Reading a damaged checkpoint makes orbax abandon its other pending shard
# reads, and each abandoned read reports the error again when it is
# garbage-collected, as an "exception ignored" warning in whichever test runs
# then. Sometimes one of them finishes after its asyncio loop has closed and
# reports "Event loop is closed" instead. The damage is the test's own doing:
# the tests that make it collect those reads themselves (gc.collect) and
# ignore exactly those two reports.
_READ_REPORT = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*_read_array_index_and_device_put"
    ":pytest.PytestUnraisableExceptionWarning")
_CLOSED_LOOP_REPORT = pytest.mark.filterwarnings(
    "ignore:(?s)Exception ignored in.*RuntimeError. Event loop is closed"
    ":pytest.PytestUnraisableExceptionWarning")


def _ABANDONED_READS(test):  # pylint: disable=invalid-name
  return _READ_REPORT(_CLOSED_LOOP_REPORT(test))


def _vae_tiny(**overrides):
  config = vae_config.get_config("tiny")
  config.num_epochs = 3
  with config.unlocked():
    config.update(overrides)
  return config


def _rl_tiny(**overrides):
  config = rl_config.get_config("tiny")
  config.learner = "arsm"
  config.plot = False
  with config.unlocked():
    config.update(overrides)
  return config


def _rows(logdir):
  return writers.read_rows(logdir)


def _steps_once(logdir):
  """Asserts every (tag, step) of the TensorBoard events appears once."""
  scalars = writers.event_scalars(logdir)
  assert scalars
  counts = collections.Counter((tag, step) for tag, step, _ in scalars)
  repeated = {k: n for k, n in counts.items() if n > 1}
  assert not repeated, repeated
  return scalars


def _tb_matches_jsonl(logdir):
  """The events hold exactly the jsonl's scalars (as float32)."""
  events = {(tag, step): v for tag, step, v in _steps_once(logdir)}
  rows = {}
  for row in _rows(logdir):
    for k, v in row.items():
      if k != "step":
        rows[(k, row["step"])] = float(np.float32(v))
  assert set(events) == set(rows)
  for k, v in rows.items():
    assert events[k] == pytest.approx(v, rel=1e-6, nan_ok=True), k


class _Killed(Exception):
  pass


def _interrupt_at(monkeypatch, step):
  """Makes the progress report of ``step`` raise :class:`_Killed`."""
  original = writers.ProgressReporter.__call__

  def report(self, s, *args, **kwargs):
    if s == step:
      raise _Killed()
    return original(self, s, *args, **kwargs)

  monkeypatch.setattr(writers.ProgressReporter, "__call__", report)
  return lambda: monkeypatch.setattr(writers.ProgressReporter, "__call__",
                                     original)


def _run_interrupted(monkeypatch, train, config, workdir, step):
  """Runs ``train(config, workdir)`` until the progress report of ``step``."""
  restore = _interrupt_at(monkeypatch, step)
  with pytest.raises(_Killed):
    train(config, workdir)
  restore()


def _damage_newest(ckpt_dir):
  """Truncates the largest file of the newest checkpoint to half its size."""
  newest = os.path.join(ckpt_dir, str(max(
      int(d) for d in os.listdir(ckpt_dir) if d.isdigit())))
  files = [os.path.join(root, f) for root, _, fs in os.walk(newest)
           for f in fs]
  victim = max(files, key=os.path.getsize)
  with open(victim, "r+b") as fh:
    fh.truncate(os.path.getsize(victim) // 2)
  return newest


class _Warnings(std_logging.Handler):

  def __init__(self):
    super().__init__(std_logging.WARNING)
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage())


@pytest.fixture
def warnings_log():
  handler = _Warnings()
  logger = std_logging.getLogger("absl")
  logger.addHandler(handler)
  yield handler.lines
  logger.removeHandler(handler)


# ----------------------------------------------------------------------------
# The pieces.


def test_check_config_names_fields_allows_resumable_and_fresh(tmp_path):
  logdir = str(tmp_path / "run")
  saved = {"lr": 0.1, "seed": 0, "num_epochs": 3, "hidden": [8, 8]}
  os.makedirs(logdir)
  runs.save_config(logdir, saved)
  runs.check_config(logdir, dict(saved, num_epochs=5),
                    resumable=("num_epochs",))
  with pytest.raises(ValueError, match=r"different config \(hidden: saved "
                     r"\[8, 8\], now \[8\]; lr: saved 0.1, now 0.2\)"):
    runs.check_config(logdir, dict(saved, lr=0.2, hidden=[8]))
  # A field the saved config lacks is a difference too.
  with pytest.raises(ValueError, match="split: saved '<absent>', now 'last'"):
    runs.check_config(logdir, dict(saved, split="last"))
  # fresh deletes the run's files and nothing else.
  (tmp_path / "run" / "notes.txt").write_text("mine")
  runs.check_config(logdir, dict(saved, lr=0.2), fresh=True)
  assert os.listdir(logdir) == ["notes.txt"]
  os.remove(os.path.join(logdir, "notes.txt"))
  # Results without a config.json cannot be identified: refused.
  runs.save_result(logdir, {"x": 1}, {"y": np.zeros(2)})
  with pytest.raises(ValueError, match="without the config.json"):
    runs.check_config(logdir, saved)


def test_truncate_metrics_cuts_jsonl_and_every_event_file(tmp_path):
  logdir = str(tmp_path)
  with writers.MetricWriter(logdir) as writer:
    for step in range(1, 11):
      writer.write_scalars(step, {"a": step, "b": -step})
  with writers.MetricWriter(logdir) as writer:   # a second event file
    writer.write_scalars(11, {"a": 11.0})
  # A row and an event record torn by a kill.
  with open(os.path.join(logdir, writers.METRICS_FILE), "a") as fh:
    fh.write('{"step": 12, "a"')
  events = [f for f in os.listdir(logdir) if "tfevents" in f]
  assert len(events) == 2
  with open(os.path.join(logdir, events[0]), "ab") as fh:
    fh.write(b"\x20\x00\x00")
  writers.truncate_metrics(logdir, 4)
  assert [r["step"] for r in _rows(logdir)] == [1, 2, 3, 4]
  assert sorted({s for _, s, _ in writers.event_scalars(logdir)}) == [1, 2, 3, 4]
  _tb_matches_jsonl(logdir)
  # Step 0: nothing was restored, so nothing logged before survives.
  writers.truncate_metrics(logdir, 0)
  assert _rows(logdir) == [] and writers.event_scalars(logdir) == []


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
  path = str(tmp_path / "summary.json")
  writers.write_json(path, {"a": 1})

  class Boom:
    pass

  with pytest.raises(TypeError):
    writers.write_json(path, {"a": Boom()})
  with open(path) as fh:
    assert json.load(fh) == {"a": 1}
  assert os.listdir(tmp_path) == ["summary.json"]


@_ABANDONED_READS
def test_damaged_checkpoints_fall_back_to_the_newest_readable(
    tmp_path, warnings_log):
  state = {"w": np.arange(4000, dtype=np.float32), "n": np.zeros((), np.int32)}
  ckpts = checkpoints.Checkpoints(str(tmp_path), max_to_keep=3, name="t")
  for step in (1, 2, 3):
    ckpts.save(step, {"w": state["w"] + step, "n": np.int32(step)})
  ckpts.close()
  damaged = _damage_newest(ckpts.directory)
  restored, step = checkpoints.Checkpoints(str(tmp_path), 3, name="t").restore(state)
  assert step == 2 and int(restored["n"]) == 2
  np.testing.assert_array_equal(restored["w"], state["w"] + 2)
  named = [line for line in warnings_log if damaged in line]
  assert len(named) == 1 and "cannot be read" in named[0], warnings_log
  assert len(named[0].splitlines()) == 1
  # Nothing readable: a clear error naming the newest failure, and nothing
  # is moved aside (all failing at once is likelier a bug than damage).
  before = sorted(os.listdir(ckpts.directory))
  assert before == ["1", "2"]
  _damage_newest(ckpts.directory)
  shutil.move(os.path.join(ckpts.directory, "2"), str(tmp_path / "keep"))
  _damage_newest(ckpts.directory)
  shutil.move(str(tmp_path / "keep"), os.path.join(ckpts.directory, "2"))
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"none of the 2 checkpoints.*checkpoints/2, fails "
                     r"with .*config.fresh=True"):
    checkpoints.Checkpoints(str(tmp_path), 3, name="t").restore(state)
  assert sorted(os.listdir(ckpts.directory)) == before
  gc.collect()


def test_numpy_scalars_in_a_checkpoint_restore(tmp_path):
  # The RL snapshot held np.float32(train_seconds): orbax saved it, then
  # refused to restore it, so every RL rerun started again from episode 0.
  target = {"seconds": np.float32(0.0), "done": np.int32(0),
            "w": np.zeros(3, np.float32)}
  ckpts = checkpoints.Checkpoints(str(tmp_path), 2, name="t")
  ckpts.save(7, {"seconds": np.float32(2.5), "done": np.int32(3),
                 "w": np.ones(3, np.float32)})
  ckpts.close()
  restored, step = checkpoints.Checkpoints(str(tmp_path), 2, name="t").restore(target)
  assert step == 7
  assert float(restored["seconds"]) == 2.5 and int(restored["done"]) == 3
  np.testing.assert_array_equal(restored["w"], np.ones(3))


def test_restore_that_fails_for_a_bug_is_an_error_not_a_fresh_start(
    tmp_path):
  ckpts = checkpoints.Checkpoints(str(tmp_path), 2, name="t")
  ckpts.save(3, {"w": np.ones(3, np.float32)})
  ckpts.close()
  # A target of another structure (a changed program) restores nothing.
  with pytest.raises(checkpoints.CheckpointError, match="none of the 1 checkpoints"):
    checkpoints.Checkpoints(str(tmp_path), 2, name="t").restore(
        {"w": np.zeros(3, np.float32), "extra": np.zeros(2, np.float32)})
  assert os.listdir(os.path.join(str(tmp_path), "checkpoints")) == ["3"]
  assert not os.path.exists(os.path.join(str(tmp_path), checkpoints.DAMAGED_DIR))


def test_host_local_arrays_are_saved_as_numpy_by_several_processes(
    monkeypatch):
  # orbax refuses to serialise a jax.Array held by one process of several
  # ("Cannot serialize host local jax.Array"): such arrays go as NumPy.
  tree = {"w": jnp.ones(3), "n": np.float32(2.0)}
  one = checkpoints._as_arrays(tree)
  assert isinstance(one["w"], jax.Array) and one["n"].shape == ()
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  several = checkpoints._as_arrays(tree)
  assert type(several["w"]) is np.ndarray and type(several["n"]) is np.ndarray
  np.testing.assert_array_equal(several["w"], np.ones(3))


# ----------------------------------------------------------------------------
# The lifecycle: one order, a summary from memory, process 0 writes.


def test_metric_record_keeps_last_and_best_rows_through_a_checkpoint():
  record = runs.MetricRecord(("epoch", "valid", "variance"), ("valid",))
  record.observe(3, {"variance": 0.5})
  record.observe(6, {"epoch": 1, "valid": 9.0})
  record.observe(12, {"epoch": 2, "valid": 7.0})
  record.observe(18, {"epoch": 3, "valid": 7.0, "other": 1.0})
  restored = runs.MetricRecord(("epoch", "valid", "variance"), ("valid",))
  restored.load(record.tree())
  for r in (record, restored):
    assert r.last("epoch") == 3.0 and r.last("variance") == 0.5
    assert r.last("other") is None
    # The first lowest row (a tie keeps the earlier one), with its epoch.
    assert r.best_row("valid") == {"step": 12, "epoch": 2.0, "valid": 7.0}
  with pytest.raises(ValueError, match=r"minimised metrics \['x'\]"):
    runs.MetricRecord(("a",), ("x",))


def _run_through(logdir, rows, checkpoint_at, checkpoints=True, **kwargs):
  with runs.Run(logdir, {"a": 1}, tracked=("loss",), **kwargs) as run:
    state, start = run.restore_or_initialize({"w": np.zeros(2, np.float32)},
                                             checkpoints=checkpoints)
    for step in range(start + 1, rows + 1):
      run.write(step, {"loss": 10.0 - step})
      if step == checkpoint_at:
        run.checkpoint(step, {"w": state["w"] + step})
    return run.record.last("loss"), start


def test_a_resumed_run_knows_the_metrics_before_its_checkpoint(tmp_path):
  logdir = str(tmp_path / "run")
  _run_through(logdir, 3, checkpoint_at=2)     # "killed" after step 3
  last, start = _run_through(logdir, 2, checkpoint_at=None)
  assert start == 2 and last == 8.0            # from the checkpoint's record
  assert [r["step"] for r in writers.read_rows(logdir)] == [1, 2]
  assert sorted({s for _, s, _ in writers.event_scalars(logdir)}) == [1, 2]


def test_only_process_zero_writes_files(tmp_path, monkeypatch):
  logdir = str(tmp_path / "run")
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  last, _ = _run_through(logdir, 3, checkpoint_at=None, checkpoints=False,
                         lock=True)
  assert last == 7.0                           # every process keeps a record
  runs.write_summary(logdir, {"x": 1})
  assert not os.path.exists(logdir)            # no row, event, config, lock


# ----------------------------------------------------------------------------
# A run deletes only what a run wrote, and holds its workdir alone.


def _toy_tiny(**overrides):
  config = toy_config.get_config("quick")
  config.estimators, config.plot = "arsm", False
  config.num_iterations, config.variance_every = 20, 10
  with config.unlocked():
    config.update(overrides)
  return config


def _user_files(root):
  """A user's files in ``root``: a note and a folder with data."""
  os.makedirs(os.path.join(root, "sub"), exist_ok=True)
  with open(os.path.join(root, "notes.txt"), "w") as fh:
    fh.write("important")
  with open(os.path.join(root, "sub", "data.bin"), "w") as fh:
    fh.write("x")
  return {"notes.txt": "important", os.path.join("sub", "data.bin"): "x"}


def _intact(root, files):
  for name, text in files.items():
    with open(os.path.join(root, name)) as fh:
      assert fh.read() == text, name


@pytest.mark.parametrize("fresh", [False, True])
def test_vae_refuses_a_workdir_with_files_it_did_not_write(tmp_path, fresh):
  workdir = str(tmp_path / "w")
  files = _user_files(workdir)
  with pytest.raises(workdirs.WorkdirError,
                     match=r"holds files that a vae run did not write "
                     r"\(notes.txt, sub\).*new or empty workdir"):
    vae.train_and_evaluate(_vae_tiny(fresh=fresh), workdir)
  _intact(workdir, files)
  assert sorted(os.listdir(workdir)) == ["notes.txt", "sub"]


def test_toy_and_rl_refuse_foreign_files_in_their_run_folders(tmp_path):
  toy_dir = str(tmp_path / "toy")
  files = _user_files(os.path.join(toy_dir, "arsm"))
  with pytest.raises(workdirs.WorkdirError, match=r"toy run of arsm did not write"):
    toy.train_and_evaluate(_toy_tiny(), toy_dir)
  _intact(os.path.join(toy_dir, "arsm"), files)
  rl_dir = str(tmp_path / "rl")
  files = _user_files(os.path.join(rl_dir, "arsm"))
  with pytest.raises(workdirs.WorkdirError, match=r"rl run of arsm did not write"):
    rl.train_and_evaluate(_rl_tiny(), rl_dir)
  _intact(os.path.join(rl_dir, "arsm"), files)
  # And at the top of the workdir (a home directory, say).
  top = str(tmp_path / "home")
  files = _user_files(top)
  for task, config in ((toy, _toy_tiny()), (rl, _rl_tiny())):
    with pytest.raises(workdirs.WorkdirError, match=r"notes.txt, sub"):
      task.train_and_evaluate(config, top)
  _intact(top, files)


def test_a_finished_run_is_never_replaced_by_another_experiment(tmp_path):
  workdir = str(tmp_path / "w")
  toy.train_and_evaluate(_toy_tiny(), workdir)
  before = sorted(os.listdir(workdir))
  with pytest.raises(workdirs.WorkdirError, match=r"arsm"):
    vae.train_and_evaluate(_vae_tiny(num_epochs=1), workdir)
  with pytest.raises(workdirs.WorkdirError, match=r"holds a toy run; a rl run"):
    rl.train_and_evaluate(_rl_tiny(), workdir)
  assert sorted(os.listdir(workdir)) == before
  assert runs.load_result(os.path.join(workdir, "arsm")) is not None


def test_fresh_deletes_only_the_runs_own_files(tmp_path):
  workdir = str(tmp_path / "w")
  toy.train_and_evaluate(_toy_tiny(), workdir)
  logdir = os.path.join(workdir, "arsm")
  with open(os.path.join(logdir, "notes.txt"), "w") as fh:
    fh.write("important")
  toy.train_and_evaluate(_toy_tiny(seed=1, fresh=True), workdir)
  _intact(logdir, {"notes.txt": "important"})
  with open(os.path.join(logdir, "config.json")) as fh:
    assert json.load(fh)["seed"] == 1


def test_a_second_run_in_a_workdir_in_use_is_refused(tmp_path):
  workdir = str(tmp_path / "w")
  with workdirs.lock_workdir(workdir):
    for task, config in ((toy, _toy_tiny()), (rl, _rl_tiny()),
                         (vae, _vae_tiny(num_epochs=1))):
      with pytest.raises(workdirs.WorkdirError,
                         match=rf"in use by another .*pid {os.getpid()}"):
        task.train_and_evaluate(config, workdir)
  assert not os.listdir(workdir)       # nothing ran; the lock is gone


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
  workdir = str(tmp_path / "w")
  child = textwrap.dedent(f"""
      import os, signal
      from arsm_jax import workdirs
      with workdirs.lock_workdir({workdir!r}):
        os.kill(os.getpid(), signal.SIGKILL)
  """)
  proc = subprocess.run([sys.executable, "-c", child], cwd=REPO,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, timeout=120)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  assert os.path.exists(os.path.join(workdir, workdirs.LOCK_FILE))
  with workdirs.lock_workdir(workdir):     # the stale lock is no obstacle
    pass


# ----------------------------------------------------------------------------
# VAE.


@pytest.fixture(scope="module")
def vae_full(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("vae") / "full")
  return workdir, vae.train_and_evaluate(_vae_tiny(), workdir)


@_ABANDONED_READS
def test_vae_resume_from_a_damaged_checkpoint_matches_uninterrupted(
    vae_full, tmp_path, monkeypatch, warnings_log):
  full_dir, full_summary = vae_full
  workdir = str(tmp_path / "resumed")
  # Checkpoints at steps 5 and 10, then killed after step 12's metrics.
  _run_interrupted(monkeypatch, vae.train_and_evaluate, _vae_tiny(), workdir,
                   13)
  assert any(r["step"] == 12 for r in _rows(workdir))
  damaged = _damage_newest(os.path.join(workdir, "checkpoints"))
  assert damaged.endswith(os.sep + "10")
  reported = helpers.record_progress(monkeypatch)
  summary = vae.train_and_evaluate(_vae_tiny(), workdir)
  gc.collect()
  assert sum(damaged in line for line in warnings_log) == 1
  assert min(step for _, step in reported) == 6, reported
  # Resumed from step 5: the rows of steps <= 5 were kept, later ones redone.
  assert _rows(workdir) == _rows(full_dir)
  for key in ("final_valid_neg_elbo", "final_test_neg_iwae",
              "final_train_neg_elbo", "final_grad_variance"):
    assert summary[key] == full_summary[key]
  _tb_matches_jsonl(workdir)


def test_vae_finished_run_with_fewer_epochs_is_refused(vae_full):
  full_dir, full_summary = vae_full
  with pytest.raises(ValueError, match=r"trained to step 18 \(3 epochs\).*"
                     r"num_epochs=1.*num_epochs >= 3"):
    vae.train_and_evaluate(_vae_tiny(num_epochs=1), full_dir)
  # The same config reports the finished run, consistently.
  again = vae.train_and_evaluate(_vae_tiny(), full_dir)
  assert again["num_epochs"] == again["final_epoch"] == 3
  assert again["seconds_per_step_this_session"] is None
  assert again["final_valid_neg_elbo"] == full_summary["final_valid_neg_elbo"]


def test_vae_different_config_is_refused_and_fresh_starts_again(
    vae_full, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(vae_full[0], workdir)
  with pytest.raises(ValueError, match=r"seed: saved 0, now 1"):
    vae.train_and_evaluate(_vae_tiny(seed=1, num_epochs=1), workdir)
  summary = vae.train_and_evaluate(_vae_tiny(seed=1, num_epochs=1,
                                             fresh=True), workdir)
  assert summary["final_epoch"] == 1
  assert [r["epoch"] for r in _rows(workdir) if "epoch" in r] == [1]
  with open(os.path.join(workdir, "config.json")) as fh:
    assert json.load(fh)["seed"] == 1


# ----------------------------------------------------------------------------
# RL.


@pytest.fixture(scope="module")
def rl_full(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("rl") / "full")
  return workdir, rl.train_and_evaluate(_rl_tiny(), workdir)


@_ABANDONED_READS
def test_rl_resume_from_a_damaged_checkpoint_matches_uninterrupted(
    rl_full, tmp_path, monkeypatch, warnings_log):
  full_dir, full = rl_full
  workdir = str(tmp_path / "resumed")
  # Checkpoints at episodes 2 and 4, then killed after episode 5.
  _run_interrupted(monkeypatch, rl.train_and_evaluate, _rl_tiny(), workdir, 5)
  damaged = _damage_newest(os.path.join(workdir, "arsm", "checkpoints"))
  reported = helpers.record_progress(monkeypatch)
  out = rl.train_and_evaluate(_rl_tiny(), workdir)
  gc.collect()
  assert sum(damaged in line for line in warnings_log) == 1
  # Resumed from episode 2 (4 was damaged): episodes 1-2 were not redone.
  assert min(step for _, step in reported) == 3, reported
  for key, value in full["curves"]["arsm"].items():
    np.testing.assert_array_equal(out["curves"]["arsm"][key], value, key)
  assert _rows(os.path.join(workdir, "arsm")) == _rows(
      os.path.join(full_dir, "arsm"))
  _tb_matches_jsonl(os.path.join(workdir, "arsm"))


def test_rl_identity_is_the_whole_config_minus_resumable_fields(
    rl_full, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(rl_full[0], workdir)
  metrics = os.path.join(workdir, "arsm", writers.METRICS_FILE)
  stamp = os.path.getmtime(metrics)
  # A window change changes the result: refused, never the old result.
  with pytest.raises(ValueError, match=r"moving_average_window: saved 3, "
                     "now 4"):
    rl.train_and_evaluate(_rl_tiny(moving_average_window=4), workdir)
  # So do ARSM's own settings and the test episodes every learner runs.
  budget = "learner_settings.arsm.rollout_budget"
  arsm_budget = {"learner_settings": {"arsm": {"rollout_budget": "authors"}}}
  for overrides, field in ((arsm_budget, budget),
                           ({"test_episode": False}, "test_episode")):
    with pytest.raises(ValueError, match=f"{field}: saved"):
      rl.train_and_evaluate(_rl_tiny(**overrides), workdir)
  # A2C's and RELAX's settings and the resumable fields do not touch ARSM's
  # run.
  rl.train_and_evaluate(_rl_tiny(
      learner_settings={
          "a2c": {"gae_lambda": 0.5, "critic_learning_rate": 1.0,
                  "bootstrap_truncated": False},
          "relax": {"temperature": 2.0, "learning_rate": 0.5}},
      checkpoint_every=3), workdir)
  assert os.path.getmtime(metrics) == stamp
  # fresh runs it again under the new config.
  out = rl.train_and_evaluate(_rl_tiny(moving_average_window=4, fresh=True),
                              workdir)
  assert os.path.getmtime(metrics) != stamp
  with open(os.path.join(workdir, "arsm", "config.json")) as fh:
    assert json.load(fh)["moving_average_window"] == 4
  assert out["curves"]["arsm"]["moving_average"].shape == (6, 2)


# ----------------------------------------------------------------------------
# Faults: SIGKILL at random points, one damaged checkpoint.

_CHILD = textwrap.dedent("""
    import os, signal, sys
    from arsm_jax import checkpoints, writers
    from arsm_jax.tasks import rl, vae
    sys.path.insert(0, {tests!r})
    import test_lifecycle as t

    kill_at, mode = int(os.environ["KILL_AT"]), os.environ["KILL_MODE"]
    count = [0]

    def tick():
      count[0] += 1
      if count[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "row":
      write = writers.MetricWriter.write_scalars
      def write_then_maybe_die(self, *a, **k):
        write(self, *a, **k)
        tick()
      writers.MetricWriter.write_scalars = write_then_maybe_die
    else:   # die while a checkpoint is being written
      save = checkpoints.Checkpoints.save
      def save_then_maybe_die(self, *a, **k):
        save(self, *a, **k)
        tick()
      checkpoints.Checkpoints.save = save_then_maybe_die
    vae.train_and_evaluate(t._vae_tiny(), os.path.join(sys.argv[1], "vae"))
    rl.train_and_evaluate(t._rl_tiny(), os.path.join(sys.argv[1], "rl"))
""")


@pytest.mark.slow
def test_runs_killed_at_random_points_end_as_uninterrupted(
    vae_full, rl_full, tmp_path):
  script = tmp_path / "child.py"
  script.write_text(_CHILD.format(tests=os.path.join(REPO, "tests")))
  workdir = str(tmp_path / "runs")
  rng = np.random.default_rng(0)
  # VAE: 7 metric rows and 4 checkpoints; RL: 8 rows and 2 checkpoints.
  plan = [("row", int(rng.integers(2, 8))), ("save", int(rng.integers(1, 4))),
          ("row", int(rng.integers(4, 12))), ("row", 0)]
  killed = 0
  for attempt, (mode, kill_at) in enumerate(plan):
    if attempt == 2:
      ckpt_dir = os.path.join(workdir, "vae", "checkpoints")
      if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
        _damage_newest(ckpt_dir)
    proc = subprocess.run(
        [sys.executable, str(script), workdir], cwd=REPO, timeout=240,
        capture_output=True, text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu", KILL_AT=str(kill_at),
                 KILL_MODE=mode, PYTHONPATH=REPO,
                 # Later children load what the first one compiled.
                 JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
                 JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0"))
    if kill_at:
      assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr[-3000:]
      killed += proc.returncode == -signal.SIGKILL
    else:
      assert proc.returncode == 0, proc.stderr[-3000:]
  assert killed >= 2
  with open(os.path.join(workdir, "vae", "summary.json")) as fh:
    summary = json.load(fh)
  for key in ("final_valid_neg_elbo", "final_test_neg_iwae",
              "final_train_neg_elbo", "final_grad_variance", "final_epoch",
              "best_valid_neg_elbo"):
    assert summary[key] == vae_full[1][key], key
  assert _rows(os.path.join(workdir, "vae")) == _rows(vae_full[0])
  _steps_once(os.path.join(workdir, "vae"))
  rl_dir = os.path.join(workdir, "rl", "arsm")
  assert _rows(rl_dir) == _rows(os.path.join(rl_full[0], "arsm"))
  saved = runs.load_result(rl_dir)
  for key, value in rl_full[1]["curves"]["arsm"].items():
    np.testing.assert_array_equal(saved[key], value, key)
  _steps_once(rl_dir)
