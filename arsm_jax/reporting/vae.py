r"""Figure 2's results: the VAE runs' CSV, table and -ELBO panels.

* ``vae.csv``: one row per collected run (:data:`COLUMNS`);
* ``vae_table.md``: the same, grouped over seeds (median and range);
* the poster's figure-2 panels, -ELBO against iteration, train solid and
  test dashed, one colour per estimator, the median over seeds; the
  authors' logged ARSM points (:data:`AUTHORS_ARSM_LOG`, see
  ``ARSM_notes.md``) on the one-layer panel;
* :func:`headline`: the README's line on figure 2.
"""

from __future__ import annotations

import functools
import statistics

from arsm_jax import experiments
from arsm_jax.reporting import formatting

COLUMNS = (
    "run", "model", "estimator", "settings", "learning_rate", "seed",
    "validation_split", "decoder_samples", "epochs", "f_evals_per_image",
    "train_neg_elbo", "valid_neg_elbo", "best_valid_neg_elbo",
    "test_neg_elbo", "test_neg_iwae", "grad_variance", "seconds_per_step",
    "command")

# The authors' only published training log (one-layer nonlinear ARSM, lr
# 3e-4, threshold MNIST, batch 200): epoch index -> (train, validation).
AUTHORS_ARSM_LOG = {0: (228.35, 194.28), 99: (97.70, 99.72)}

# Training options outside estimator_settings that change what a run is; a
# run's values that differ from configs/vae.py's defaults join its settings
# text. Runs saved before an option existed had its default.
MODEL_OPTIONS = ("learn_temperature", "pin_first_logit", "weight_init")

# The figure-2 protocol's learning rate, the one the headline compares at.
HEADLINE_LR, HEADLINE_LR_TEXT = 3e-4, "3e-4"
_MODEL_ORDER = {"nonlinear": 0, "two_layer": 1, "linear": 2}


@functools.cache
def option_defaults() -> dict:
  """The defaults of :data:`MODEL_OPTIONS` in ``configs/vae.py``."""
  config = experiments.get_config("vae")
  return {k: config[k] for k in MODEL_OPTIONS}


def _model_options(cfg: dict) -> dict:
  return {k: cfg[k] for k, default in option_defaults().items()
          if k in cfg and cfg[k] != default}


def row(run: dict) -> dict:
  """The :data:`COLUMNS` of a collected run (:func:`records.vae_runs`)."""
  s = run["summary"]
  cfg = s.get("config", {})
  return {
      "run": run["name"],
      "model": s["model"],
      "estimator": s["estimator"],
      "settings": formatting.settings_text(
          {**s.get("estimator_settings", {}), **_model_options(cfg)}),
      "learning_rate": s["learning_rate"],
      "seed": s["seed"],
      "validation_split": cfg.get("validation_split", "last"),
      "decoder_samples": cfg.get("decoder_samples", 0),
      "epochs": int(s["final_epoch"]),
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


def csv(rows: list[dict]) -> str:
  return formatting.to_csv(rows, COLUMNS)


def group_key(r: dict) -> tuple:
  """What the seeds of one table line share."""
  return (r["model"], r["estimator"], r["settings"], r["learning_rate"],
          r["decoder_samples"])


def table(rows: list[dict]) -> str:
  """Markdown: one line per (model, estimator, settings, lr), over seeds."""
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault(group_key(r), []).append(r)
  lines = [
      "| model | estimator | settings | lr | seeds | epochs | f evals/image "
      "| train | valid | best valid | test | test IWAE-100 | grad var "
      "| s/step |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for key in sorted(groups, key=lambda k: (_MODEL_ORDER.get(k[0], 9), k[1:])):
    members = groups[key]
    model, est, settings, lr, dec = key
    if dec:
      settings = ";".join(filter(None, [settings, f"decoder_samples={dec}"]))
    def col(column, members=members):
      return formatting.median_range([m[column] for m in members])
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


def _median_curve(runs: list[dict], column: str) -> tuple[list, list]:
  """Steps and the median over runs of ``column`` at the steps all share."""
  per_run = [{r["step"]: r[column] for r in run["metrics"]
              if column in r and r[column] is not None} for run in runs]
  if not per_run:
    return [], []
  steps = sorted(set.intersection(*(set(d) for d in per_run)))
  return steps, [statistics.median(d[s] for d in per_run) for s in steps]


def _steps_per_epoch(runs: list[dict]) -> int:
  """The runs' common steps per epoch (train images // batch size).

  Raises:
    ValueError: when the runs' epochs differ in steps.
  """
  steps = {run["summary"]["steps_per_epoch"] for run in runs}
  if len(steps) != 1:
    raise ValueError(f"The runs' epochs have {sorted(steps)} steps; the "
                     "authors' log needs one number of steps per epoch.")
  return steps.pop()


def _authors_points(steps_per_epoch: int) -> list[dict]:
  points = []
  for epoch, (train, valid) in AUTHORS_ARSM_LOG.items():
    step = (epoch + 1) * steps_per_epoch
    first = epoch == min(AUTHORS_ARSM_LOG)
    points.append({"step": step, "value": train, "marker": "*",
                   "label": "authors' ARSM log, train" if first else None})
    points.append({"step": step, "value": valid, "marker": "^",
                   "hollow": True, "label": ("authors' ARSM log, validation"
                                             if first else None)})
  return points


def figure(runs: list[dict], model: str, path: str, authors: bool) -> bool:
  """Draws one figure-2 panel; returns False when no run has this model.

  One line group per estimator, so that each has one colour and one legend
  entry: of its settings the one with the most seeds, of those the lowest
  final median validation -ELBO (every run is in the table).
  """
  runs = [r for r in runs if r["summary"]["model"] == model]
  if not runs:
    return False
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  groups: dict[tuple, list[dict]] = {}
  for run in runs:
    groups.setdefault(group_key(row(run)), []).append(run)
  def final_valid(key):
    values = _median_curve(groups[key], "valid_neg_elbo")[1]
    return values[-1] if len(values) else float("inf")
  def rank(key):
    return (-len(groups[key]), final_valid(key))
  best: dict[str, tuple] = {}
  for key in groups:
    if key[1] not in best or rank(key) < rank(best[key[1]]):
      best[key[1]] = key
  series, seen = [], {}
  for key in sorted(best.values(), key=final_valid):
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
  points = _authors_points(_steps_per_epoch(runs)) if authors else []
  shown = sum(len(groups[k]) for k in best.values())
  title = (f"{model} VAE, threshold MNIST, batch 200. One run per estimator "
           "(most seeds, then lowest final validation -ELBO; "
           f"{len(best)} of {len(groups)} settings, {shown} of {len(runs)} "
           "runs; all are in the table); legend from best to worst")
  plotting.plot_vae_panel(series, path, title, points)
  return True


def _valid_text(members: list[dict], note: str = "") -> str:
  """``median (median of n seeds[; note])`` of the validation -ELBO."""
  median = statistics.median(m["valid_neg_elbo"] for m in members)
  seeds = (f"median of {len(members)} seeds" if len(members) > 1
           else "one seed")
  return f"{median:.2f} ({seeds}{note})"


def headline(rows: list[dict]) -> str:
  """ARSM against the authors' log, the best estimator at ARSM's
  evaluations, and the best at fewer, from the 100-epoch one-layer
  nonlinear runs at :data:`HEADLINE_LR` (ARSM's model options left out)."""
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    if (r["model"] == "nonlinear" and r["learning_rate"] == HEADLINE_LR
        and r["epochs"] == 100):
      groups.setdefault(group_key(r), []).append(r)
  arsm = groups.get(("nonlinear", "arsm", "", HEADLINE_LR, 0))
  if not arsm:
    return "no 100-epoch ARSM run has been collected yet."
  evals = arsm[0]["f_evals_per_image"]
  authors = f"; the authors' log: {AUTHORS_ARSM_LOG[99][1]:.2f} at epoch 99"
  text = (f"after 100 epochs ARSM's validation −ELBO is "
          f"{_valid_text(arsm, authors)}")
  ranked = sorted((g for k, g in groups.items() if k[1] != "arsm"),
                  key=lambda g: statistics.median(
                      m["valid_neg_elbo"] for m in g))
  def best(keep):
    return next((g for g in ranked if keep(g[0]["f_evals_per_image"])), None)
  def name(group):
    settings = group[0]["settings"]
    return f"`{group[0]['estimator']}`" + (f" ({settings})" if settings else "")
  equal = best(lambda e: e == evals)
  if equal:
    text += (f"; at its {evals} evaluations per image, the best is "
             f"{name(equal)} at {_valid_text(equal)}")
  fewer = best(lambda e: e < evals)
  if fewer:
    text += (f"; with fewer, the best is {name(fewer)} at "
             f"{_valid_text(fewer)} with {fewer[0]['f_evals_per_image']} "
             "evaluations")
  return text + "."
