r"""Builds the estimator table of docs/choosing.md from the results files.

    PYTHONPATH=$PWD python scripts/make_choosing_table.py            # print
    PYTHONPATH=$PWD python scripts/make_choosing_table.py --write    # update
    PYTHONPATH=$PWD python scripts/make_choosing_table.py --check    # stale?

Inputs and the table: :mod:`arsm_jax.reporting.choosing`.
"""

import sys

from absl import app
from absl import flags

from arsm_jax.reporting import choosing

_DIAGNOSTICS = flags.DEFINE_list(
    "diagnostics", list(choosing.DIAGNOSTICS),
    "table.json files of experiments/diagnostics.py (later ones win).")
_DIAGNOSTICS_MD = flags.DEFINE_string(
    "diagnostics_md", choosing.DIAGNOSTICS_MD, "The committed markdown table.")
_VAE = flags.DEFINE_string("vae", choosing.VAE_CSV, "The VAE runs' CSV.")
_STEP = flags.DEFINE_list(
    "step", list(choosing.STEP),
    "benchmarks/vae_step.py --out files (later ones win).")
_DOC = flags.DEFINE_string("doc", choosing.DOC, "The page holding the table.")
_WRITE = flags.DEFINE_bool("write", False, "Write the table into --doc.")
_CHECK = flags.DEFINE_bool("check", False,
                           "Fail if --doc's table differs from the results.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}.")
  text = choosing.table(
      choosing.load_diagnostics(_DIAGNOSTICS.value, _DIAGNOSTICS_MD.value),
      choosing.load_vae(_VAE.value), choosing.load_step(",".join(_STEP.value)))
  if not (_WRITE.value or _CHECK.value):
    sys.stdout.write(text)
    return
  with open(_DOC.value, encoding="utf-8") as fh:
    doc = fh.read()
  new_doc = choosing.updated_doc(doc, text, _DOC.value)
  if _CHECK.value and new_doc != doc:
    sys.exit(f"{_DOC.value}'s table is stale: run "
             "scripts/make_choosing_table.py --write.")
  if _WRITE.value and new_doc != doc:
    with open(_DOC.value, "w", encoding="utf-8") as fh:
      fh.write(new_doc)


if __name__ == "__main__":
  app.run(main)
