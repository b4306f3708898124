r"""Copies a finished run's record from its workdir into ``docs/results/``.

    PYTHONPATH=$PWD python scripts/collect_run.py --experiment=vae \
        --name=arsm_nonlinear_s0 --workdir=~/runs/vae_arsm_nl_s0 \
        --command="python experiments/main.py --config=configs/vae.py ..."
    PYTHONPATH=$PWD python scripts/collect_run.py --experiment=rl \
        --name=rl_cartpole --workdir=~/runs/rl_cartpole \
        --command="python experiments/main.py --config=configs/rl.py:cartpole ..."

What is kept: :mod:`arsm_jax.reporting.records`; ``scripts/make_results.py``
builds the tables and figures from these folders only.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from arsm_jax.reporting import records

_EXPERIMENT = flags.DEFINE_enum("experiment", None, records.EXPERIMENTS,
                                "Which task the run is of.")
_NAME = flags.DEFINE_string("name", None, "The record's folder name.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The finished run's workdir.")
_COMMAND = flags.DEFINE_string("command", None, "The command that ran it.")
flags.mark_flags_as_required(["experiment", "name", "workdir", "command"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}.")
  try:
    out = records.collect(_EXPERIMENT.value, _NAME.value, _WORKDIR.value,
                          _COMMAND.value)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(str(e))
  logging.info("collected %s", out)


if __name__ == "__main__":
  app.run(main)
