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

import difflib
import logging as std_logging
import sys

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


def unknown_field_message(error: Exception, argv) -> "str | None":
  """One line for an override of a field the config lacks (else None).

  ml_collections stops such an override (``--config.num_epoch=3``) with an
  ``AttributeError`` naming only the field; this names the flag, the close
  matches and, in a small group such as ``estimator_settings``, every field.
  """
  arg = error.args[0] if error.args else ""
  if isinstance(arg, KeyError) and arg.args:
    arg = arg.args[0]       # ml_collections wraps the KeyError of the lookup
  name = str(arg).split("\n")[0].strip("\"'")
  spec = next((a.split("=", 1)[1] for a in argv
               if a.startswith("--config=")), None)
  paths = [a[2:].split("=", 1)[0] for a in argv if a.startswith("--config.")]
  path = next((p for p in paths if p.split(".")[-1] == name), None)
  if spec is None or path is None:
    return None
  try:
    from arsm_jax import experiments  # pylint: disable=g-import-not-at-top
    node = experiments.get_config(spec)
    for part in path.split(".")[1:-1]:
      node = node[part]
    known = sorted(node.keys())
  except Exception:  # pylint: disable=broad-except
    return None
  close = difflib.get_close_matches(name, known, n=3)
  where = ".".join(path.split(".")[:-1])
  message = f"--{path}: {where} has no field {name!r}"
  if close:
    message += f"; did you mean {' or '.join(close)}?"
  if len(known) <= 20:
    message += f"{'' if close else '.'} Its fields: {', '.join(known)}."
  return message


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _WORKDIR.value.strip():
    raise SystemExit("--workdir is empty; pass the folder for the run's "
                     "files, e.g. --workdir=runs/vae (it is created if "
                     "missing; rerunning with it resumes).")
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
  _started = []

  def _main(argv):
    _started.append(True)
    return main(argv)

  try:
    app.run(_main)
  except AttributeError as e:
    # Raised while the flags are parsed (before main): an unknown field.
    message = None if _started else unknown_field_message(e, sys.argv)
    if message is None:
      raise
    raise SystemExit(message) from None
