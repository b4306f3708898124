"""The README's estimator table comes from the registry."""

import os
import subprocess
import sys

from arsm_jax.reporting import estimator_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_estimator_table_is_up_to_date():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
    text = fh.read()
  expected = estimator_table.updated_readme(
      text, estimator_table.readme_table(estimator_table.rows()))
  assert text == expected, ("README.md's estimator table is out of date: run "
                            "python scripts/estimator_table.py")


def test_readme_table_shortens_citations():
  short = estimator_table.short_reference
  assert short("Kool, van Hoof and Welling. Buy 4 REINFORCE samples, get a "
               "baseline for free! ICLR workshop 2019.") == (
                   "Kool, van Hoof and Welling 2019")
  assert short("Liu et al. Bridging discrete and continuous. NeurIPS 2023."
               ) == "Liu et al. 2023"
  assert short("Liu et al. 2023") == "Liu et al. 2023"
  assert short("Jang, Gu, Poole 2017; Maddison, Mnih, Teh. The concrete "
               "distribution. ICLR 2017.") == (
                   "Jang, Gu, Poole 2017; Maddison, Mnih, Teh 2017")
  assert estimator_table.short_cost("C(C-1)/2+1 (K>1), C (K=1); 1 when "
                                    "skipped") == "C(C-1)/2+1 (K>1), C (K=1)"


def test_a_stale_table_is_replaced_and_the_script_checks_the_readme():
  with open(estimator_table.README, encoding="utf-8") as fh:
    text = fh.read()
  stale = estimator_table.updated_readme(text, "| old |\n")
  assert stale != text
  assert estimator_table.updated_readme(
      stale, estimator_table.readme_table(estimator_table.rows())) == text
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "estimator_table.py"),
       "--check"], capture_output=True, text=True, cwd=REPO,
      env={**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-2000:]
