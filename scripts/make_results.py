r"""Builds the published results tables and figures from the collected runs.

    PYTHONPATH=$PWD python scripts/make_results.py           # rewrite them
    PYTHONPATH=$PWD python scripts/make_results.py --check   # fail if stale

What it writes and from what: :mod:`arsm_jax.reporting.results`.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from arsm_jax.reporting import results

_CHECK = flags.DEFINE_bool(
    "check", False, "Only check that the text outputs are up to date and the "
    "RL figures exist.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}.")
  if _CHECK.value:
    stale = results.stale()
    if stale:
      sys.exit("stale (run python scripts/make_results.py): "
               + " ".join(stale))
    return
  for path in results.update():
    logging.info("wrote %s", path)


if __name__ == "__main__":
  app.run(main)
