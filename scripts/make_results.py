r"""Builds the published results tables and figures from the collected runs.

    python scripts/make_results.py            # rewrites every output below
    python scripts/make_results.py --check    # fails if an output is stale

Inputs are the folders ``docs/results/vae/<run>/`` written by
``scripts/collect_run.py`` (``summary.json``, ``metrics.jsonl``,
``command.txt``); nothing here is typed by hand. Outputs:

* ``docs/results/vae.csv``: one row per finished run;
* ``docs/results/vae_table.md``: the same, grouped over seeds (median and
  range), for ``docs/experiments/vae.md``;
* ``docs/vae_one_layer.png``, ``docs/vae_two_layer.png``: the poster's
  figure-2 panels, -ELBO against iteration, train solid and test dashed, one
  colour per estimator, the median over seeds; the authors' logged ARSM
  points (epochs 0 and 99, see ``ARSM_notes.md``) on the one-layer panel.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "docs", "results")

VAE_COLUMNS = (
    "run", "model", "estimator", "settings", "learning_rate", "seed",
    "validation_split", "decoder_samples", "epochs", "f_evals_per_image",
    "train_neg_elbo", "valid_neg_elbo", "best_valid_neg_elbo",
    "test_neg_elbo", "test_neg_iwae", "grad_variance", "seconds_per_step",
    "command")

# The authors' only published training log (one-layer nonlinear ARSM, lr
# 3e-4, threshold MNIST, batch 200): epoch index -> (train, validation).
AUTHORS_ARSM_LOG = {0: (228.35, 194.28), 99: (97.70, 99.72)}
STEPS_PER_EPOCH = 275


def _read_json(path):
  with open(path) as fh:
    return json.load(fh)


def _read_rows(path):
  with open(path) as fh:
    return [json.loads(line) for line in fh if line.strip()]


def _settings_text(settings: dict) -> str:
  return ";".join(f"{k}={settings[k]}" for k in sorted(settings)) or ""


def vae_runs(results: str = RESULTS) -> list[dict]:
  """The collected VAE runs, each a dict of its summary, metrics and command."""
  root = os.path.join(results, "vae")
  runs = []
  if not os.path.isdir(root):
    return runs
  for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    summary_path = os.path.join(folder, "summary.json")
    if not os.path.exists(summary_path):
      continue
    with open(os.path.join(folder, "command.txt")) as fh:
      command = fh.read().strip()
    metrics_path = os.path.join(folder, "metrics.jsonl")
    runs.append({"name": name, "summary": _read_json(summary_path),
                 "metrics": (_read_rows(metrics_path)
                             if os.path.exists(metrics_path) else []),
                 "command": command})
  return runs


def vae_row(run: dict) -> dict:
  s = run["summary"]
  cfg = s.get("config", {})
  return {
      "run": run["name"],
      "model": s["model"],
      "estimator": s["estimator"],
      "settings": _settings_text(s.get("estimator_settings", {})),
      "learning_rate": s["learning_rate"],
      "seed": s["seed"],
      "validation_split": cfg.get("validation_split", "last"),
      "decoder_samples": cfg.get("decoder_samples", 0),
      "epochs": s["final_epoch"],
      "f_evals_per_image": s["evals_per_image_per_step"],
      "train_neg_elbo": s["final_train_neg_elbo"],
      "valid_neg_elbo": s["final_valid_neg_elbo"],
      "best_valid_neg_elbo": s["best_valid_neg_elbo"],
      "test_neg_elbo": s["final_test_neg_elbo"],
      "test_neg_iwae": s["final_test_neg_iwae"],
      "grad_variance": s["final_grad_variance"],
      "seconds_per_step": s["seconds_per_step_this_session"],
      "command": run["command"],
  }


def _fmt(v) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return f"{v:.6g}"
  return str(v)


def vae_csv(rows: list[dict]) -> str:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=VAE_COLUMNS, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _fmt(row[k]) for k in VAE_COLUMNS})
  return buf.getvalue()


def _group_key(row: dict) -> tuple:
  return (row["model"], row["estimator"], row["settings"],
          row["learning_rate"], row["decoder_samples"])


def _median_range(values) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return ""
  med = statistics.median(values)
  if len(values) == 1:
    return f"{med:.2f}"
  return f"{med:.2f} ({min(values):.2f}-{max(values):.2f})"


def vae_table(rows: list[dict]) -> str:
  """Markdown: one line per (model, estimator, settings, lr), over seeds."""
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault(_group_key(row), []).append(row)
  lines = [
      "| model | estimator | settings | lr | seeds | epochs | f evals/image "
      "| train | valid | best valid | test | test IWAE-100 | grad var "
      "| s/step |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  order = {"nonlinear": 0, "two_layer": 1, "linear": 2}
  for key in sorted(groups, key=lambda k: (order.get(k[0], 9), k[1:])):
    members = groups[key]
    model, est, settings, lr, dec = key
    if dec:
      settings = ";".join(filter(None, [settings, f"decoder_samples={dec}"]))
    def col(column, members=members):
      return _median_range([m[column] for m in members])
    var = [m["grad_variance"] for m in members if m["grad_variance"]]
    sps = [m["seconds_per_step"] for m in members if m["seconds_per_step"]]
    cells = [
        model, est, settings or "-", f"{lr:g}",
        ",".join(str(m["seed"]) for m in members),
        ",".join(sorted({str(m["epochs"]) for m in members})),
        str(members[0]["f_evals_per_image"]), col("train_neg_elbo"),
        col("valid_neg_elbo"), col("best_valid_neg_elbo"),
        col("test_neg_elbo"), col("test_neg_iwae"),
        f"{statistics.median(var):.3g}" if var else "-",
        f"{statistics.median(sps):.3f}" if sps else "-"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _median_curve(runs: list[dict], column: str):
  """Steps and the median over runs of ``column`` at the steps all share."""
  per_run = []
  for run in runs:
    per_run.append({r["step"]: r[column] for r in run["metrics"]
                    if column in r and r[column] is not None})
  if not per_run:
    return [], []
  steps = sorted(set.intersection(*(set(d) for d in per_run)))
  return steps, [statistics.median(d[s] for d in per_run) for s in steps]


def vae_figure(runs: list[dict], model: str, path: str,
               authors: bool) -> bool:
  """Draws one figure-2 panel; returns False when no run has this model."""
  runs = [r for r in runs if r["summary"]["model"] == model]
  if not runs:
    return False
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  groups: dict[tuple, list[dict]] = {}
  for run in runs:
    groups.setdefault(_group_key(vae_row(run)), []).append(run)
  series, seen = [], {}
  for key in sorted(groups, key=lambda k: (k[1], k[2], -k[3])):
    _, est, settings, lr, dec = key
    members = groups[key]
    label = est + (f" [{settings}]" if settings else "") + f", lr {lr:g}"
    if dec:
      label += f", decoder_samples={dec}"
    if len(members) > 1:
      label += f", median of {len(members)} seeds"
    # Repeats of an estimator (another lr or setting) are drawn fainter.
    series.append({"label": label, "estimator": est,
                   "alpha": 1.0 / (1 + seen.get(est, 0)),
                   "train": _median_curve(members, "train_neg_elbo"),
                   "test": _median_curve(members, "test_neg_elbo")})
    seen[est] = seen.get(est, 0) + 1
  points = []
  if authors:
    for epoch, (train, valid) in AUTHORS_ARSM_LOG.items():
      step = (epoch + 1) * STEPS_PER_EPOCH
      first = epoch == min(AUTHORS_ARSM_LOG)
      points.append({"step": step, "value": train, "marker": "*",
                     "label": "authors' ARSM log, train" if first else None})
      points.append({"step": step, "value": valid, "marker": "^",
                     "hollow": True, "label": ("authors' ARSM log, validation"
                                               if first else None)})
  plotting.plot_vae_panel(
      series, path, f"{model} VAE, threshold MNIST, batch 200 "
      "(solid: train, dashed: test)", points)
  return True


def outputs(results: str = RESULTS) -> dict[str, str]:
  """The text outputs, path -> content (the figures are written directly)."""
  rows = [vae_row(r) for r in vae_runs(results)]
  return {os.path.join(results, "vae.csv"): vae_csv(rows),
          os.path.join(results, "vae_table.md"): vae_table(rows)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="only check that the text outputs are up to date")
  args = parser.parse_args(argv)
  stale = []
  for path, text in outputs().items():
    old = open(path).read() if os.path.exists(path) else None
    if old != text:
      stale.append(os.path.relpath(path, REPO))
      if not args.check:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
          fh.write(text)
  if args.check:
    if stale:
      print("stale (run python scripts/make_results.py):", *stale)
      return 1
    return 0
  runs = vae_runs()
  docs = os.path.join(REPO, "docs")
  vae_figure(runs, "nonlinear", os.path.join(docs, "vae_one_layer.png"), True)
  vae_figure(runs, "two_layer", os.path.join(docs, "vae_two_layer.png"), False)
  vae_figure(runs, "linear", os.path.join(docs, "vae_linear.png"), False)
  for path in stale:
    print("wrote", path)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
