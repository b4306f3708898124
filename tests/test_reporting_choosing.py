"""docs/choosing.md's table is generated from the results files."""

import csv
import os
import subprocess
import sys

import pytest

from arsm_jax.reporting import choosing as m
from arsm_jax.reporting import vae

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_SEEDED_FIELDS = ("model", "estimator", "settings", "learning_rate", "seed",
                  "epochs", "valid_neg_elbo", "seconds_per_step")


def _write_csv(path, fields, rows):
  with open(path, "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow(fields)
    writer.writerows(rows)


def test_vae_rows_get_the_tables_labels():
  assert m.vae_label({"estimator": "arsm", "settings": ""}) == "arsm"
  assert m.vae_label({"estimator": "reinforce_loo",
                      "settings": "num_samples=46"}) == "reinforce_loo (n=46)"
  assert m.vae_label({"estimator": "unordered_set",
                      "settings": "num_samples=4;temperature=1"}) == (
                          "unordered_set (k=4)")
  assert m.vae_label({"estimator": "x", "label": "mine"}) == "mine"


def test_the_best_learning_rate_of_a_label_is_shown(tmp_path):
  path = tmp_path / "vae.csv"
  fields = ("model", "estimator", "settings", "learning_rate", "epochs",
            "valid_neg_elbo", "seconds_per_step")
  rows = [("nonlinear", "reinforce", "", "0.0003", "100", "110.5", "0.05"),
          ("nonlinear", "reinforce", "", "0.0001", "100", "104.25", "0.05"),
          ("nonlinear", "reinforce", "", "0.001", "20", "90.0", "0.05"),
          ("two_layer", "reinforce", "", "0.001", "100", "80.0", "0.05")]
  _write_csv(path, fields, rows)
  vae = m.load_vae(str(path))
  assert set(vae) == {"reinforce"}
  assert vae["reinforce"]["learning_rate"] == "0.0001"
  text = m.table({}, vae, {})
  line = next(l for l in text.splitlines() if l.startswith("| `reinforce` "))
  assert "104.25 (lr 1e-4)" in line
  assert "| `arsm` |" in text and "not run" in text


def test_seeds_are_merged_into_their_median_before_the_best_lr(tmp_path):
  path = tmp_path / "vae.csv"
  rows = [("nonlinear", "arsm", "", "0.0003", "0", "100", "100.0", "0.3"),
          ("nonlinear", "arsm", "", "0.0003", "1", "100", "99.0", "0.1"),
          ("nonlinear", "arsm", "", "0.0003", "2", "100", "99.5", "0.2"),
          # One lucky seed at another lr is above the median of three.
          ("nonlinear", "arsm", "", "0.0001", "0", "100", "99.6", "0.2")]
  _write_csv(path, _SEEDED_FIELDS, rows)
  vae = m.load_vae(str(path))
  assert vae["arsm"]["learning_rate"] == "0.0003"
  assert float(vae["arsm"]["valid_neg_elbo"]) == 99.5
  assert float(vae["arsm"]["seconds_per_step"]) == 0.2
  line = next(l for l in m.table({}, vae, {}).splitlines()
              if l.startswith("| `arsm` "))
  assert "99.50 (lr 3e-4, median of 3 seeds)" in line


def test_runs_of_another_model_option_are_not_pooled_as_seeds(tmp_path):
  # A pinned-logit or Glorot run of seed 0 is a different model, not a
  # fourth or fifth seed of the default one.
  path = tmp_path / "vae.csv"
  rows = [("nonlinear", "arsm", "", "0.0003", "0", "100", "100.0", "0.3"),
          ("nonlinear", "arsm", "pin_first_logit=True", "0.0003", "0", "100",
           "90.0", "0.3"),
          ("nonlinear", "arsm", "weight_init=glorot", "0.0003", "0", "100",
           "91.0", "0.3"),
          ("nonlinear", "st_gumbel_softmax", "learn_temperature=True",
           "0.0003", "0", "100", "112.0", "0.04")]
  _write_csv(path, _SEEDED_FIELDS, rows)
  vae = m.load_vae(str(path))
  assert float(vae["arsm"]["valid_neg_elbo"]) == 100.0
  assert vae["arsm"]["seeds"] == "1"
  # learn_temperature is an estimator's option: its run stays.
  assert float(vae["st_gumbel_softmax"]["valid_neg_elbo"]) == 112.0


def test_every_training_option_of_the_results_is_sorted():
  # An option that the VAE table writes into ``settings`` is either a model
  # option (left out of the guide) or an estimator's (learn_temperature);
  # a new one must be put on one side, or its runs would pool as seeds.
  assert set(vae.MODEL_OPTIONS) == (set(m.MODEL_OPTIONS)
                                    | {"learn_temperature"})


def test_the_committed_guide_is_up_to_date():
  out = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "make_choosing_table.py"),
       "--check"], capture_output=True, text=True, cwd=REPO,
      env={**os.environ, "PYTHONPATH": REPO})
  assert out.returncode == 0, out.stderr


def test_the_default_inputs_exist():
  """A renamed results file would leave its columns "not run" silently.
  (The first diagnostics file is where a rerun over every estimator writes;
  until then the committed markdown table stands in for it.)"""
  for path in (*m.DIAGNOSTICS[1:], m.DIAGNOSTICS_MD, m.VAE_CSV, *m.STEP,
               m.DOC):
    assert os.path.isfile(path), path


def test_the_table_needs_the_markers():
  with pytest.raises(ValueError, match="doc.md lacks the markers"):
    m.updated_doc("no table here\n", "| x |\n", "doc.md")
  doc = f"a\n{m.START}\nold\n{m.END}\nb\n"
  assert m.updated_doc(doc, "new\n") == f"a\n{m.START}\nnew\n{m.END}\nb\n"
