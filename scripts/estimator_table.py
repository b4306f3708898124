r"""Writes README.md's estimator table from the registry.

    PYTHONPATH=$PWD python scripts/estimator_table.py           # rewrite it
    PYTHONPATH=$PWD python scripts/estimator_table.py --check   # fail if stale

The table and the docs' reference page: :mod:`arsm_jax.reporting.estimator_table`.
"""

import sys

from absl import app
from absl import flags

from arsm_jax.reporting import estimator_table

_CHECK = flags.DEFINE_bool("check", False,
                           "Exit 1 if README.md's table is out of date.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}.")
  with open(estimator_table.README, encoding="utf-8") as fh:
    text = fh.read()
  new = estimator_table.updated_readme(
      text, estimator_table.readme_table(estimator_table.rows()))
  if new != text and _CHECK.value:
    sys.exit("README.md's estimator table is out of date: run "
             "python scripts/estimator_table.py")
  if new != text:
    with open(estimator_table.README, "w", encoding="utf-8") as fh:
      fh.write(new)


if __name__ == "__main__":
  app.run(main)
