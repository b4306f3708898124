r"""Gradient diagnostics table for every registered estimator.

    python experiments/diagnostics.py --workdir=runs/diagnostics

For each problem and estimator it measures, over ``--num_draws`` independent
draws at fixed logits: the variance (mean over coordinates), squared bias and
MSE against the exact gradient (by enumeration), the evaluations of f per
draw (from ``num_evals``, and counted on the host over ``--count_draws``
draws), and variance x evaluations (the variance at equal cost, if cost is
spent on averaging draws). Problems:

* ``toy phi=0``: the toy of poster figure 1 (C = R = 30, K = 1) at phi = 0;
* ``toy trained``: the same at the phi reached by ``--trained_steps``
  iterations of exact gradient ascent (step size 1) from 0;
* ``random K=4 C=5``: random logits N(0, 1) and a random non-additive smooth
  f, ``v^T A v / K + sin(w . v)`` with ``v`` the flattened one-hot z.

Estimators use the ``estimator_settings`` of ``--config`` (default
``configs/toy.py``: Gumbel-Softmax at 0.2, RELAX's 10-10 control variate,
RLOO with 2 draws; override them as in ``experiments/main.py``, e.g.
``--config.estimator_settings.gumbel_softmax.temperature=0.5``). Extra rows: RELAX with
its control variate first trained for ``--relax_train_steps`` steps at the
problem's logits, and RLOO, REINFORCE without replacement and the unordered
set estimator with as many samples as ARSM's measured evaluations (equal
cost; on the toy, K = 1 and C = 30 samples without replacement are the
whole space, so those rows are exact). IndeCateR costs K*C evaluations
(for K = 1 it is exact) and Gumbel-Rao one. ``VARIANTS`` adds rows of
ARSM's successors: ARSM and ARS with partial integration, CARMS at M = 8,
DisARM at 4 and 8 evaluations and its other binarisations, and RLOO at
k = 4 and 8 beside them. Writes ``table.md``, ``table.csv`` and ``table.json`` to
``--workdir`` and prints the markdown table. Takes a few minutes on 2 CPU
cores.
"""

import csv
import math
import os
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from arsm_jax import diagnostics
from arsm_jax import estimators
from arsm_jax import writers
from arsm_jax.tasks import toy

_TOY_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                           "configs", "toy.py")
config_flags.DEFINE_config_file(
    "config", _TOY_CONFIG, "Toy config whose problem and estimator_settings "
    "are used.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where to write the tables.")
_NUM_DRAWS = flags.DEFINE_integer("num_draws", 10_000,
                                  "Draws per estimator and problem.")
_COUNT_DRAWS = flags.DEFINE_integer(
    "count_draws", 20, "Draws whose f evaluations are counted on the host.")
_TRAINED_STEPS = flags.DEFINE_integer(
    "trained_steps", 2000, "Exact-gradient iterations giving the partly "
    "trained toy phi.")
_RELAX_TRAIN_STEPS = flags.DEFINE_integer(
    "relax_train_steps", 2000, "Control-variate training steps for the "
    "'relax (trained cv)' rows.")
_ESTIMATORS = flags.DEFINE_list(
    "estimators", None, "Estimators to measure (default: all registered).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
flags.mark_flags_as_required(["workdir"])

# Multi-sample estimators also measured at ARSM's evaluations per draw.
EQUAL_EVALS = (("reinforce_loo", "num_samples"),
               ("reinforce_wor", "num_samples"),
               ("unordered_set", "num_samples"))
# More rows of a measured estimator: (name, settings, label). ARSM's
# successors (issue 29) at the settings the guide compares.
VARIANTS = (
    ("arsm", {"partial_integration": True}, "arsm (partial_integration)"),
    ("ars", {"partial_integration": True}, "ars (partial_integration)"),
    ("carms", {"num_samples": 8}, "carms (M=8)"),
    ("disarm", {"num_pairs": 2}, "disarm (4 evals)"),
    ("disarm", {"num_pairs": 4}, "disarm (8 evals)"),
    ("disarm", {"importance_weight": False, "logits_order": None},
     "disarm (stick-breaking, no IW)"),
    ("disarm", {"importance_weight": False, "logits_order": "ascending"},
     "disarm (stick-breaking ascending, no IW)"),
    ("disarm", {"importance_weight": False, "binarisation": "tree",
                "logits_order": None}, "disarm (tree, no IW)"),
    ("reinforce_loo", {"num_samples": 4}, "reinforce_loo (k=4)"),
    ("reinforce_loo", {"num_samples": 8}, "reinforce_loo (k=8)"),
)

COLUMNS = ("problem", "estimator", "unbiased", "variance", "bias_sq",
           "noise_floor", "mse", "max_abs_bias_z", "evals_per_draw",
           "evals_counted", "variance_x_evals")


def random_problem(seed: int, num_dims: int = 4, num_cats: int = 5):
  """Random logits and a smooth non-additive ``f(z) = v'Av/K + sin(w.v)``."""
  rng = np.random.default_rng(seed)
  size = num_dims * num_cats
  logits = jnp.asarray(rng.normal(size=(num_dims, num_cats)), jnp.float32)
  a = jnp.asarray(rng.normal(size=(size, size)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(size,)), jnp.float32)

  def f(z):
    v = z.reshape(-1)
    return v @ a @ v / num_dims + jnp.sin(w @ v)

  return logits, f


def trained_toy_phi(config, steps: int) -> jax.Array:
  """phi after ``steps`` iterations of exact gradient ascent from zero."""
  f = toy.make_objective(config.num_categories, config.reward_scale)
  exact = estimators.get("exact")

  def step(phi, _):
    return phi + config.learning_rate * exact(None, phi, f), None

  phi0 = jnp.zeros((1, config.num_categories), jnp.float32)
  return jax.jit(lambda p: jax.lax.scan(step, p, None, length=steps)[0])(phi0)


def _train_relax(est, key, logits, f, steps: int):
  state = est.init(key, logits)

  def step(s, k):
    return est.estimate(k, logits, f, state=s).state, None

  return jax.jit(lambda s: jax.lax.scan(
      step, s, jax.random.split(key, steps))[0])(state)


def _row(problem, label, est, key, logits, f, state=None):
  t0 = time.time()
  stats = diagnostics.gradient_stats(est, key, logits, f, _NUM_DRAWS.value,
                                     state=state)
  counted, reported = diagnostics.count_evaluations(
      est, key, logits, f, _COUNT_DRAWS.value, state=state)
  if not np.array_equal(counted, reported):
    raise RuntimeError(f"{label} on {problem}: num_evals {reported} differs "
                       f"from the host count {counted}.")
  s = stats.summary()
  row = {
      "problem": problem,
      "estimator": label,
      "unbiased": est.unbiased,
      "variance": s["mean_variance"],
      "bias_sq": s["mean_bias_sq"],
      "noise_floor": s["noise_floor"],
      "mse": s["mean_mse"],
      "max_abs_bias_z": s["max_abs_bias_z"],
      "evals_per_draw": s["evals_per_draw"],
      "evals_counted": float(np.mean(counted)),
      "variance_x_evals": s["variance_x_evals"],
  }
  logging.info("%s / %s: %s (%.1fs)", problem, label, row, time.time() - t0)
  return row


def _fmt(v) -> str:
  if isinstance(v, bool):
    return "yes" if v else "no"
  if isinstance(v, float):
    if math.isnan(v):
      return "n/a"
    if v == 0 or math.isinf(v):
      return f"{v:g}"
    if abs(v) >= 1e4 or abs(v) < 1e-2:
      return f"{v:.2e}"
    return f"{v:.3g}"
  return str(v)


def markdown(rows, header: str) -> str:
  titles = ("problem", "estimator", "unbiased", "variance", "bias²",
            "noise floor (var/N)", "MSE", "max |bias z|", "evals/draw",
            "evals counted", "variance × evals")
  lines = [header, "", "| " + " | ".join(titles) + " |",
           "|" + "---|" * len(titles)]
  for r in rows:
    lines.append("| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = flags.FLAGS.config
  names = _ESTIMATORS.value or estimators.names()
  settings = {n: dict(config.estimator_settings[n].to_dict())
              for n in config.estimator_settings}
  key = jax.random.PRNGKey(_SEED.value)

  toy_f = toy.make_objective(config.num_categories, config.reward_scale)
  phi_trained = trained_toy_phi(config, _TRAINED_STEPS.value)
  p_last = float(jax.nn.softmax(phi_trained[0])[-1])
  rand_logits, rand_f = random_problem(_SEED.value)
  problems = [
      ("toy phi=0", jnp.zeros((1, config.num_categories)), toy_f),
      ("toy trained", phi_trained, toy_f),
      ("random K=4 C=5", rand_logits, rand_f),
  ]

  rows = []
  for problem, logits, f in problems:
    arsm_evals = None
    for name in names:
      est = estimators.get(name, **settings.get(name, {}))
      rows.append(_row(problem, name, est, key, logits, f))
      if name == "arsm":
        arsm_evals = rows[-1]["evals_per_draw"]
      for base_name, extra, label in VARIANTS:
        if base_name == name:
          rows.append(_row(problem, label,
                           estimators.get(name, **{**settings.get(name, {}),
                                                   **extra}),
                           key, logits, f))
      if name == "relax":
        state = _train_relax(est, jax.random.fold_in(key, 1), logits, f,
                             _RELAX_TRAIN_STEPS.value)
        rows.append(_row(problem, "relax (trained cv)", est, key, logits, f,
                         state=state))
    if arsm_evals is not None:
      # Equal evaluations of f: the multi-sample estimators at ARSM's count.
      n = max(2, int(round(arsm_evals)))
      for name, setting in EQUAL_EVALS:
        if name in names:
          est = estimators.get(name, **{setting: n})
          rows.append(_row(problem, f"{name} (n={n})", est, key,
                           logits, f))

  header = (
      f"Gradient diagnostics, {_NUM_DRAWS.value} draws per row (seed "
      f"{_SEED.value}); variance, bias² and MSE are means over coordinates; "
      f"'toy trained' is phi after {_TRAINED_STEPS.value} exact-gradient "
      f"iterations (probability of the best category {p_last:.3f}); "
      f"'relax (trained cv)' trained its control variate for "
      f"{_RELAX_TRAIN_STEPS.value} steps at that problem's logits; evals "
      f"counted on the host over {_COUNT_DRAWS.value} draws.")
  table = markdown(rows, header)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(os.path.join(_WORKDIR.value, "table.md"), "w") as fh:
    fh.write(table)
  with open(os.path.join(_WORKDIR.value, "table.csv"), "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  writers.write_json(os.path.join(_WORKDIR.value, "table.json"), {
      "num_draws": _NUM_DRAWS.value, "seed": _SEED.value,
      "trained_steps": _TRAINED_STEPS.value, "trained_prob_last": p_last,
      "relax_train_steps": _RELAX_TRAIN_STEPS.value,
      "settings": settings, "rows": rows})
  print(table)


if __name__ == "__main__":
  app.run(main)
