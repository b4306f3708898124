"""Every results output is written from the records, and checked."""

import json
import os
import subprocess
import sys

import pytest

from arsm_jax.reporting import formatting
from arsm_jax.reporting import readme
from arsm_jax.reporting import records
from arsm_jax.reporting import results
from tests import reporting_runs as synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_rl_figures_and_check(tmp_path):
  results_dir, docs = synthetic.collected_acrobot_runs(tmp_path)
  folders = dict(results=str(results_dir), docs=str(docs))
  assert results.stale(**folders)                     # nothing written
  assert results.update(**folders)
  figures = [docs / "rl_acrobot.png", docs / "rl_acrobot_collapse.png"]
  for figure in figures:
    assert figure.stat().st_size > 1000
  assert not (docs / "rl_cartpole.png").exists()
  first = figures[0].read_bytes()
  assert results.stale(**folders) == []

  summary_path = results_dir / "rl" / "acro_default" / "summary.json"
  summary = json.loads(summary_path.read_text())
  summary["learners"]["a2c"]["env_steps_per_second"] = 99.0
  summary_path.write_text(json.dumps(summary))
  assert results.stale(**folders) == [
      os.path.join("docs", "results", "rl.csv"),
      os.path.join("docs", "results", "rl_table.md")]
  assert results.update(**folders)
  assert ",99," in (results_dir / "rl.csv").read_text()
  assert figures[0].read_bytes() == first     # same curves, same bytes
  assert results.stale(**folders) == []
  figures[1].unlink()
  assert results.stale(**folders) == [
      os.path.join("docs", "rl_acrobot_collapse.png")]


def test_splice_needs_both_markers():
  start, end = readme.HEADLINES_START, readme.HEADLINES_END
  text = f"a\n{start}\nold\n{end}\nb\n"
  assert formatting.splice(text, "new\n", start, end, "R.md") == (
      f"a\n{start}\nnew\n{end}\nb\n")
  with pytest.raises(ValueError, match="R.md lacks the markers"):
    formatting.splice("a\nb\n", "new\n", start, end, "R.md")


def test_the_committed_results_and_readme_are_up_to_date():
  """What ``make_results.py --check`` compares, on the committed files."""
  readme_path = os.path.join(REPO, "README.md")
  rl_page = os.path.join(REPO, "docs", "experiments", "rl.md")
  for path, text in results.outputs(records.RESULTS, readme_path,
                                    rl_page).items():
    with open(path, encoding="utf-8") as fh:
      assert fh.read() == text, (
          f"{os.path.relpath(path, REPO)} is stale: run PYTHONPATH=$PWD "
          "python scripts/make_results.py")


def test_an_unlisted_estimator_gets_the_same_colour_in_every_process():
  """Colours of estimators outside ``plotting.COLORS`` come from the name, not
  from ``hash()``, which Python salts per process."""
  code = ("from arsm_jax import plotting; "
          "print(plotting.color('not_a_listed_estimator'))")
  colours = {
      subprocess.run([sys.executable, "-c", code], check=True,
                     capture_output=True, text=True,
                     env={**os.environ, "PYTHONHASHSEED": str(seed),
                          "PYTHONPATH": REPO}).stdout
      for seed in (1, 2, 3)}
  assert len(colours) == 1, colours
