r"""The estimator table of ``docs/choosing.md``, from the results files.

Inputs (each optional; a missing file leaves its columns "not run"; the
defaults are :data:`DIAGNOSTICS`, :data:`DIAGNOSTICS_MD`, :data:`VAE_CSV` and
:data:`STEP`):

* the diagnostics: the committed markdown table (``docs/diagnostics_table.md``)
  and the ``table.json`` files that ``experiments/diagnostics.py
  --workdir=...`` writes (their rows replace the markdown's; later files
  win): variance x evaluations per problem (:func:`load_diagnostics`);
* ``docs/results/vae.csv``: the 100-epoch one-layer VAE runs
  (:func:`load_vae`);
* the ``--out`` files of ``benchmarks/vae_step.py`` (``--estimators=
  multi_sample`` and ``antithetic``, and CARMS alone): step time relative
  to ARSM (:func:`load_step`).

:func:`updated_doc` puts the table between :data:`START` and :data:`END`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics

from arsm_jax import estimators
from arsm_jax.reporting import formatting
from arsm_jax.reporting import records

_RESULTS = records.RESULTS
DIAGNOSTICS = tuple(os.path.join(_RESULTS, *p, "table.json") for p in (
    ("diagnostics",), ("diagnostics_multi_sample",),
    ("diagnostics_antithetic",)))
DIAGNOSTICS_MD = os.path.join(records.DOCS, "diagnostics_table.md")
VAE_CSV = os.path.join(_RESULTS, "vae.csv")
# Later files win: CARMS again after its pairwise pmf was made cheaper (the
# same numbers).
STEP = tuple(os.path.join(_RESULTS, f"vae_step_{name}.json")
             for name in ("multi_sample", "antithetic", "carms"))
DOC = os.path.join(records.DOCS, "choosing.md")
START, END = "<!-- choosing-table:start -->", "<!-- choosing-table:end -->"
PROBLEMS = ("toy phi=0", "toy trained", "random K=4 C=5")
# VAE: K = 20 latents of C = 10 categories.
VAE_K, VAE_C = 20, 10

# f evaluations per draw: formula, and its value at the VAE's K and C.
COST = {
    "arsm": ("C(C-1)/2+1 (K>1), C (K=1)", VAE_C * (VAE_C - 1) // 2 + 1),
    "arsm_multi": ("2 x arsm", 2 * (VAE_C * (VAE_C - 1) // 2 + 1)),
    "ars": ("C", VAE_C),
    "ars_multi": ("2C", 2 * VAE_C),
    "ar": ("1", 1),
    "ar_multi": ("2", 2),
    "exact": ("C^K", None),
    "reinforce": ("1", 1),
    "reinforce_loo": ("n", None),
    "reinforce_wor": ("min(k, C^K)", None),
    "unordered_set": ("min(k, C^K)", None),
    "indecater": ("K*C", VAE_K * VAE_C),
    "gumbel_rao": ("1 (+ grad of f)", 1),
    "gumbel_softmax": ("1 (+ grad of f)", 1),
    "st_gumbel_softmax": ("1 (+ grad of f)", 1),
    "reinmax": ("1 (+ grad of f)", 1),
    "relax": ("1 (+ control variate)", 1),
    "carms": ("M", None),
    "disarm": ("2 x num_pairs", None),
}
# Rows of the table: (label, diagnostics label, base estimator, samples).
# A diagnostics label ending in '(n=*)' means 'at ARSM's evaluations'.
ROWS = (
    ("arsm", "arsm", "arsm", None),
    ("reinforce_loo (n=2)", "reinforce_loo", "reinforce_loo", 2),
    ("reinforce_loo (n = ARSM's evals)", "reinforce_loo (n=*)",
     "reinforce_loo", "arsm"),
    ("reinforce_loo (n=46)", None, "reinforce_loo", 46),
    ("reinforce_wor (k=4)", "reinforce_wor", "reinforce_wor", 4),
    ("reinforce_wor (k=8)", None, "reinforce_wor", 8),
    ("reinforce_wor (k = ARSM's evals)", "reinforce_wor (n=*)",
     "reinforce_wor", "arsm"),
    ("unordered_set (k=4)", "unordered_set", "unordered_set", 4),
    ("unordered_set (k=8)", None, "unordered_set", 8),
    ("unordered_set (k = ARSM's evals)", "unordered_set (n=*)",
     "unordered_set", "arsm"),
    ("indecater", "indecater", "indecater", None),
    # ARSM's successors (issue 29) and RLOO at their evaluations.
    # (samples "own": no fallback to the plain estimator's VAE and step.)
    ("arsm (partial_integration)", "arsm (partial_integration)", "arsm",
     "own"),
    ("ars (partial_integration)", "ars (partial_integration)", "ars", "own"),
    ("carms (M=4)", "carms", "carms", 4),
    ("carms (M=8)", "carms (M=8)", "carms", 8),
    ("reinforce_loo (n=4)", "reinforce_loo (k=4)", "reinforce_loo", 4),
    ("reinforce_loo (n=8)", "reinforce_loo (k=8)", "reinforce_loo", 8),
    ("disarm", "disarm", "disarm", 2),
    ("disarm (4 evals)", "disarm (4 evals)", "disarm", 4),
    ("disarm (8 evals)", "disarm (8 evals)", "disarm", 8),
    ("disarm (stick-breaking, no IW)", "disarm (stick-breaking, no IW)",
     "disarm", 2),
    ("disarm (stick-breaking ascending, no IW)",
     "disarm (stick-breaking ascending, no IW)", "disarm", 2),
    ("disarm (tree, no IW)", "disarm (tree, no IW)", "disarm", 2),
    ("reinforce", "reinforce", "reinforce", None),
    ("relax", "relax", "relax", None),
    ("relax (trained cv)", "relax (trained cv)", "relax", None),
    ("gumbel_rao", "gumbel_rao", "gumbel_rao", None),
    ("st_gumbel_softmax", "st_gumbel_softmax", "st_gumbel_softmax", None),
    ("gumbel_softmax", "gumbel_softmax", "gumbel_softmax", None),
    ("reinmax", "reinmax", "reinmax", None),
)


def _fmt(v, digits: int = 3) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "not run"
  if isinstance(v, float):
    if v == 0:
      return "0 (exact)"
    if abs(v) >= 1e4 or abs(v) < 1e-2:
      return f"{v:.2e}"
    return f"{v:.{digits}g}"
  return str(v)


def load_diagnostics(paths, markdown_path: str):
  """{(problem, label): row} with 'variance_x_evals' and 'evals_per_draw'.

  Rows of ``markdown_path`` (the committed table) come first; rows of the
  JSON files in ``paths`` replace them (later files win).
  """
  rows = []
  if markdown_path and os.path.exists(markdown_path):
    with open(markdown_path) as fh:
      for line in fh:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 11 and cells[0] in PROBLEMS:
          rows.append({"problem": cells[0], "estimator": cells[1],
                       "evals_per_draw": float(cells[8]),
                       "variance_x_evals": float(cells[10])})
  for path in paths:
    if os.path.exists(path):
      with open(path) as fh:
        rows.extend(json.load(fh)["rows"])
  out = {}
  for r in rows:
    label = re.sub(r"\(n=\d+\)$", "(n=*)", r["estimator"])
    out[(r["problem"], label)] = r
  return out


def vae_label(row: dict) -> str:
  """The table's label of a vae.csv row: estimator, and k or n if it has one.

  ``reinforce_loo`` with ``num_samples=46`` is ``reinforce_loo (n=46)``,
  ``unordered_set`` with ``num_samples=4`` is ``unordered_set (k=4)``; an
  explicit ``label`` column wins.
  """
  if row.get("label"):
    return row["label"]
  name = row.get("estimator", "")
  settings = _settings(row)
  if "num_samples" in settings and name in ("reinforce_loo", "reinforce_wor",
                                            "unordered_set", "carms"):
    letter = {"reinforce_loo": "n", "carms": "M"}.get(name, "k")
    return f"{name} ({letter}={settings['num_samples']})"
  if name == "carms":
    return "carms (M=4)"
  if name == "disarm":
    pairs = int(settings.get("num_pairs", 1))
    return "disarm" if pairs == 1 else f"disarm ({2 * pairs} evals)"
  if name == "arsm" and settings.get("partial_integration") == "True":
    return "arsm (partial_integration)"
  return name


# Settings that change the model's parameterisation or initialisation, not
# the estimator (``vae.MODEL_OPTIONS``, written into ``settings`` when not
# the default).
# The guide compares estimators on the default model, so rows with any of
# them are left out rather than pooled with the default runs' seeds.
MODEL_OPTIONS = ("pin_first_logit", "weight_init")


def _settings(row: dict) -> dict:
  return dict(item.split("=", 1) for item in
              (row.get("settings") or "").split(";") if "=" in item)


def load_vae(path: str):
  """{label: row} of the 100-epoch one-layer nonlinear VAE runs.

  Runs of a non-default model (a setting in ``MODEL_OPTIONS``) are skipped.
  The seeds of one label and learning rate are merged into one row holding
  their medians (validation -ELBO, seconds per step) and their count
  (``seeds``); of a label's learning rates the one with the lowest median
  is kept, and shown beside the number. Empty when the file is absent.
  """
  if not os.path.exists(path):
    return {}
  groups: dict[tuple, list[dict]] = {}
  with open(path, newline="") as fh:
    for row in csv.DictReader(fh):
      row = {k.strip().lower(): (v or "").strip() for k, v in row.items()}
      if row.get("epochs") and float(row["epochs"]) != 100:
        continue
      if row.get("model", "nonlinear") != "nonlinear":
        continue
      if any(option in _settings(row) for option in MODEL_OPTIONS):
        continue
      label = vae_label(row)
      if not label or _number(row, "valid_neg_elbo") is None:
        continue
      groups.setdefault((label, row.get("learning_rate", "")), []).append(row)
  out = {}
  for (label, _), rows in groups.items():
    merged = dict(rows[0], seeds=str(len(rows)))
    for name in ("valid_neg_elbo", "seconds_per_step"):
      values = [v for v in (_number(r, name) for r in rows) if v is not None]
      merged[name] = repr(statistics.median(values)) if values else ""
    best = out.get(label)
    if best is None or (_number(merged, "valid_neg_elbo")
                        < _number(best, "valid_neg_elbo")):
      out[label] = merged
  return out


def load_step(paths: str):
  """{label: row} of the ``--out`` files of benchmarks/vae_step.py.

  ``paths`` is one path or several separated by commas; a later file's row
  replaces an earlier one's (each file's ratios are to its own ARSM step).
  """
  out = {}
  for path in (p for p in paths.split(",") if p):
    if os.path.exists(path):
      with open(path) as fh:
        out.update({r["label"]: r for r in json.load(fh)["rows"]})
  return out


def _number(row, *names):
  for n in names:
    if row and row.get(n) not in (None, ""):
      try:
        return float(row[n])
      except ValueError:
        return None
  return None


def vae_evals(base: str, samples) -> str:
  """Evaluations per image of a table row in the VAE, "" when unknown."""
  formula, value = COST[base]
  if value is None and isinstance(samples, int):
    value = samples
  if samples == "arsm":
    return "46"
  return "" if value is None else str(value)


def table(diag, vae, step) -> str:
  """The markdown table: one line per :data:`ROWS` entry."""
  titles = ["estimator", "unbiased", "f evals / draw", "at K=20, C=10",
            *(f"var x evals, {p}" for p in PROBLEMS),
            "VAE valid -ELBO, 100 ep.", "VAE s / step", "step / ARSM step"]
  lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
  for label, diag_label, base, samples in ROWS:
    unbiased = "yes" if estimators.get(base).unbiased else "no"
    cells = [f"`{label}`", unbiased, COST[base][0], vae_evals(base, samples)]
    for p in PROBLEMS:
      r = diag.get((p, diag_label)) if diag_label else None
      cells.append(_fmt(r["variance_x_evals"]) if r else "-")
    v = vae.get(label) or (vae.get(base) if samples is None else None)
    value = _number(v, "valid_neg_elbo", "validation_neg_elbo",
                    "test_neg_elbo", "train_neg_elbo")
    elbo = "not run" if value is None else f"{value:.2f}"
    if value is not None and v.get("learning_rate"):
      lr = f"{float(v['learning_rate']):.0e}".replace("e-0", "e-")
      seeds = int(v.get("seeds") or 1)
      elbo += (f" (lr {lr}, median of {seeds} seeds)" if seeds > 1
               else f" (lr {lr})")
    cells.append(elbo)
    cells.append(_fmt(_number(v, "seconds_per_step", "s_per_step")))
    s = step.get(label) or (step.get(base) if samples is None else None)
    cells.append(_fmt(s["ratio_to_arsm"]) if s else "not run")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def updated_doc(doc: str, text: str, path: str = DOC) -> str:
  """``doc`` with its table between :data:`START` and :data:`END` replaced
  by ``text``.

  Raises:
    ValueError: naming ``path`` when a marker is missing.
  """
  return formatting.splice(doc, text, START, END, path)
