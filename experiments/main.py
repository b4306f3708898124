r"""Command-line launcher for every arsm_jax experiment.

    python experiments/main.py --config=configs/toy.py --workdir=/tmp/toy
    python experiments/main.py --config=configs/toy.py --workdir=/tmp/toy \
        --config.num_iterations=500 --config.estimators=arsm,reinforce

The config's ``experiment`` field picks the task; all work happens in
``arsm_jax.tasks.<experiment>.train_and_evaluate(config, workdir)``, which a
notebook can call directly (or ``arsm_jax.experiments``, which finds the
configs by name). Configs are locked: a mistyped override
(``--config.num_iteration=5``) is an error, not a silently ignored flag.

Without the ``[experiments]`` extra (or ``[lunarlander]`` for LunarLander)
the launcher stops with one line naming the extra to install.
"""

import logging as std_logging

try:
  from absl import app
  from absl import flags
  from absl import logging
  from ml_collections import config_flags
except ModuleNotFoundError as e:
  raise SystemExit(
      f"experiments/main.py needs {e.name}, which is not installed: "
      "pip install 'arsm_jax[experiments]'") from None

from arsm_jax import parallel
from arsm_jax import runs
from arsm_jax import tasks

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for metrics, checkpoints, figures and the "
    "summary. Re-running with the same workdir resumes.")
config_flags.DEFINE_config_file(
    "config", None, "Experiment configuration file (configs/*.py[:preset]).",
    lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def quiet_backend_probe() -> None:
  """Hides JAX's INFO lines about platforms it probed and did not find.

  Without an accelerator every launch would start with "Unable to initialize
  backend 'tpu'"; that is logged at INFO by ``jax._src.xla_bridge``, whose
  warnings and errors (a GPU present but unusable, ...) still show.
  """
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_backend_probe()
  config = flags.FLAGS.config
  try:
    # Before anything is compiled or written: a missing extra is one line.
    tasks.check_requirements(config.experiment, config)
    try:
      parallel.initialize_distributed()
    except (ValueError, RuntimeError) as e:
      # A bad multi-process launch (process id out of range, coordinator
      # unreachable in time): one line, not a traceback.
      raise SystemExit(f"distributed launch: {e}") from None
    logging.info("Experiment %r, workdir %s\n%s", config.experiment,
                 _WORKDIR.value, config)
    tasks.train_and_evaluate(config, _WORKDIR.value)
  except (tasks.MissingExtraError, runs.WorkdirError,
          runs.CheckpointError) as e:
    # A missing extra, a workdir that is not the run's or is in use, no
    # restorable checkpoint: one line, not a traceback.
    raise SystemExit(str(e)) from None


if __name__ == "__main__":
  app.run(main)
