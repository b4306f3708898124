r"""Command-line launcher for every arsm_jax experiment.

    python experiments/main.py --config=configs/toy.py --workdir=/tmp/toy
    python experiments/main.py --config=configs/toy.py --workdir=/tmp/toy \
        --config.num_iterations=500 --config.estimators=arsm,reinforce

The config's ``experiment`` field picks the task; all work happens in
``arsm_jax.tasks.<experiment>.train_and_evaluate(config, workdir)``, which a
notebook can call directly. Configs are locked: a mistyped override
(``--config.num_iteration=5``) is an error, not a silently ignored flag.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from arsm_jax import parallel
from arsm_jax import tasks

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for metrics, checkpoints, figures and the "
    "summary. Re-running with the same workdir resumes.")
config_flags.DEFINE_config_file(
    "config", None, "Experiment configuration file (configs/*.py[:preset]).",
    lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  parallel.initialize_distributed()
  config = flags.FLAGS.config
  logging.info("Experiment %r, workdir %s\n%s", config.experiment,
               _WORKDIR.value, config)
  tasks.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
