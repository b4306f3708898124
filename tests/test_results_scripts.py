"""The results tables are built from collected summaries, never typed."""

import csv
import importlib.util
import json
import os

import pytest

from configs import vae as vae_config
from arsm_jax.tasks import vae

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(REPO, "scripts", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def two_seed_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  workdirs = []
  for seed in (0, 1):
    config = vae_config.get_config("tiny")
    config.seed = seed
    config.num_epochs = 1
    config.variance_every_steps = 0
    workdir = str(root / f"s{seed}")
    vae.train_and_evaluate(config, workdir)
    workdirs.append(workdir)
  return workdirs


def test_collect_then_table_matches_summaries(two_seed_runs, tmp_path,
                                              monkeypatch):
  collect_run = _load("collect_run")
  make_results = _load("make_results")
  results = tmp_path / "results"
  monkeypatch.setattr(collect_run, "REPO", str(tmp_path))
  for seed, workdir in enumerate(two_seed_runs):
    out = collect_run.collect("vae", f"tiny_s{seed}", workdir,
                              f"python experiments/main.py --seed={seed}")
    assert os.path.exists(os.path.join(out, "metrics.jsonl"))
  os.rename(tmp_path / "docs" / "results", results)

  texts = make_results.outputs(str(results))
  rows = list(csv.DictReader(texts[str(results / "vae.csv")].splitlines()))
  assert [r["run"] for r in rows] == ["tiny_s0", "tiny_s1"]
  for row, workdir in zip(rows, two_seed_runs):
    with open(os.path.join(workdir, "summary.json")) as fh:
      summary = json.load(fh)
    assert float(row["train_neg_elbo"]) == pytest.approx(
        summary["final_train_neg_elbo"], rel=1e-5)
    assert float(row["test_neg_iwae"]) == pytest.approx(
        summary["final_test_neg_iwae"], rel=1e-5)
    assert row["command"].endswith(f"--seed={row['seed']}")
  table = texts[str(results / "vae_table.md")]
  body = [line for line in table.splitlines()[2:] if line]
  assert len(body) == 1 and "| 0,1 |" in body[0], table
  expected = sorted(float(r["valid_neg_elbo"]) for r in rows)
  assert f"{sum(expected) / 2:.2f} ({expected[0]:.2f}-{expected[1]:.2f})" \
      in body[0]

  figure = tmp_path / "fig.png"
  assert make_results.vae_figure(make_results.vae_runs(str(results)),
                                 "nonlinear", str(figure), authors=True)
  assert figure.stat().st_size > 1000
  assert not make_results.vae_figure(make_results.vae_runs(str(results)),
                                     "two_layer", str(tmp_path / "no.png"),
                                     authors=False)


def test_collect_refuses_unfinished_run(tmp_path):
  collect_run = _load("collect_run")
  with pytest.raises(SystemExit, match="not finished"):
    collect_run.collect("vae", "x", str(tmp_path), "cmd")
