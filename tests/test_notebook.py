"""Executes notebooks/quickstart.ipynb end to end; any failing cell fails."""

import os

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")


def test_quickstart_notebook_runs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      nb, timeout=300, kernel_name="python3",
      resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
  client.execute()
  outputs = [o for cell in nb.cells if cell.cell_type == "code"
             for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  # The figures were drawn.
  assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3


def _stream(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", [])
                 if o.get("output_type") == "stream")


def test_committed_outputs_match_the_registry():
  """The outputs the docs show (execution is off there) list every estimator
  registered today: rerun the notebook when one is added."""
  from arsm_jax import estimators  # pylint: disable=g-import-not-at-top
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.get("outputs") for c in code), "a cell has no saved output"
  names = estimators.names()
  assert f"estimators: {names}" in _stream(code[0])
  drawn = {line.split()[0] for line in _stream(code[1]).splitlines()
           if "evals=" in line}
  assert drawn == set(names)
  measured = {line.split()[0] for line in _stream(code[2]).splitlines()
              if "variance=" in line}
  assert measured == set(names) - {"exact"}
  intro = nb.cells[0].source
  assert "RUNTIME" not in intro and "arsm_jax[experiments]" not in intro
