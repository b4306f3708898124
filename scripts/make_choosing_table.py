r"""Builds the estimator table of docs/choosing.md from the results files.

    PYTHONPATH=$PWD python scripts/make_choosing_table.py            # print
    PYTHONPATH=$PWD python scripts/make_choosing_table.py --write    # update

Inputs (each optional; a missing file leaves its columns "not run"):

* ``--diagnostics_md`` (default ``docs/diagnostics_table.md``) and
  ``--diagnostics`` (default ``docs/results/diagnostics/table.json`` and
  ``docs/results/diagnostics_new/table.json`` and
  ``docs/results/diagnostics_successors/table.json``, the ``table.json`` that
  ``experiments/diagnostics.py --workdir=...`` writes; their rows replace
  the markdown's): variance x evaluations per problem.
* ``--vae`` (default ``docs/results/vae.csv``): one row per 100-epoch VAE
  run, with a ``label`` (or ``estimator``) column naming the row as this
  table does (e.g. ``reinforce_wor (k=4)``) and any of the columns
  ``valid_neg_elbo``, ``test_neg_elbo``, ``train_neg_elbo``, ``iwae``,
  ``s_per_step``. Rows for an epoch other than 100 are skipped when an
  ``epochs`` column says so.
* ``--step`` (default ``docs/results/vae_step_new.json`` and
  ``docs/results/vae_step_successors.json``, from ``benchmarks/vae_step.py
  --estimators=new|successors --out=...``): step time relative to ARSM.

With ``--check`` it fails when that table is stale. With ``--write`` the table replaces the text between the markers
``<!-- choosing-table:start -->`` and ``<!-- choosing-table:end -->`` of
``--doc`` (default ``docs/choosing.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics

from arsm_jax import estimators

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
# the estimator (``make_results._VAE_OPTIONS`` writes them into ``settings``).
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
  formula, value = COST[base]
  if value is None and isinstance(samples, int):
    value = samples
  if samples == "arsm":
    return "46"
  return "" if value is None else str(value)


def table(diag, vae, step) -> str:
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--diagnostics", default=",".join([
      os.path.join(_ROOT, "docs", "results", "diagnostics", "table.json"),
      os.path.join(_ROOT, "docs", "results", "diagnostics_new", "table.json"),
      os.path.join(_ROOT, "docs", "results", "diagnostics_successors",
                   "table.json"),
  ]), help="comma-separated table.json files (later ones win)")
  parser.add_argument("--diagnostics_md", default=os.path.join(
      _ROOT, "docs", "diagnostics_table.md"))
  parser.add_argument("--vae", default=os.path.join(_ROOT, "docs", "results",
                                                    "vae.csv"))
  parser.add_argument("--step", default=",".join([
      os.path.join(_ROOT, "docs", "results", "vae_step_new.json"),
      os.path.join(_ROOT, "docs", "results", "vae_step_successors.json"),
      # CARMS again after its pairwise pmf was made cheaper (same numbers).
      os.path.join(_ROOT, "docs", "results",
                   "vae_step_successors_carms.json"),
  ]), help="comma-separated vae_step.py --out files (later ones win)")
  parser.add_argument("--doc", default=os.path.join(_ROOT, "docs",
                                                    "choosing.md"))
  parser.add_argument("--write", action="store_true")
  parser.add_argument("--check", action="store_true",
                      help="fail if --doc's table differs from the results")
  args = parser.parse_args()
  text = table(load_diagnostics(
      [p for p in args.diagnostics.split(",") if p], args.diagnostics_md),
               load_vae(args.vae), load_step(args.step))
  if not (args.write or args.check):
    print(text)
    return
  with open(args.doc) as fh:
    doc = fh.read()
  if START not in doc or END not in doc:
    raise SystemExit(f"{args.doc} lacks the markers {START} ... {END}.")
  head, rest = doc.split(START, 1)
  _, tail = rest.split(END, 1)
  new_doc = head + START + "\n" + text + END + tail
  if args.check:
    if new_doc != doc:
      raise SystemExit(f"{args.doc}'s table is stale: run "
                       "scripts/make_choosing_table.py --write.")
    return
  with open(args.doc, "w") as fh:
    fh.write(new_doc)


if __name__ == "__main__":
  main()
