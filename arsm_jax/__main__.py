"""``python -m arsm_jax``: the ``arsm-jax`` command (see :mod:`arsm_jax.cli`)."""

import sys

from arsm_jax import cli

if __name__ == "__main__":
  sys.exit(cli.main([cli.PROG, *sys.argv[1:]]))
