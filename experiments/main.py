r"""Command-line launcher for every arsm_jax experiment, in a clone.

    python experiments/main.py --config=configs/toy.py --workdir=/tmp/toy
    python experiments/main.py --config=configs/toy.py --workdir=/tmp/toy \
        --config.num_iterations=500 --config.estimators=arsm,reinforce

The same command as ``arsm-jax`` (installed with the package) and
``python -m arsm_jax``: all of it is in :mod:`arsm_jax.cli`, and the work in
``arsm_jax.tasks.<experiment>.train_and_evaluate(config, workdir)``, which a
notebook can call directly. ``--help`` lists the experiments, their presets
and fields. Configs are locked: a mistyped override
(``--config.num_iteration=5``) is one line naming the field and its close
matches, exit status 2 (``--verbose`` adds the traceback).
"""

import os
import sys

# Run from a clone without installing: the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from arsm_jax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

if __name__ == "__main__":
  sys.exit(cli.main())
