r"""numpyro SVI on a 1-D Gaussian mixture: TraceGraph_ELBO against arsm_jax.numpyro.ELBO.

    taskset -c 0 python experiments/numpyro_mixture.py \
        --out=docs/numpyro_mixture.png --json=docs/results/numpyro_mixture.json

(about 8 minutes on one core). The model has N = 100 points from three
components (means -4, 0, 4, sd 0.7), a Normal prior on the three locations
(a continuous site, Normal guide) and one categorical site per point in a
plate, with an amortised guide whose logits are linear in x (the exact
posterior's form). It is trained with numpyro's ``TraceGraph_ELBO``
(REINFORCE, Rao-Blackwellised over the plate), with
``arsm_jax.numpyro.ELBO`` for ``arsm``, ``reinforce_loo`` and
``unordered_set`` (both with ``num_samples=4``, ARSM's 4 evaluations of f
per draw at C = 3), each as one K = 100 variable and with ``plate="data"``
(one draw per point, f its own terms), and with ``TraceEnum_ELBO`` (the categorical site
enumerated in the guide: the exact sum over z, the reference).

Measured:

* the gradient's variance at fixed parameters (the initial ones and those
  TraceEnum_ELBO reaches), summed over the guide's categorical parameters
  ``enc_w`` and over all parameters, from ``--num_draws`` draws;
* the ELBO against steps and against wall-clock time, the ELBO being the
  exact one (z enumerated by ``TraceEnum_ELBO``, the locations averaged over
  16 draws), every ``--eval_every`` steps, for ``--seeds`` seeds.
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import distributions as dist
from numpyro.distributions import constraints
from numpyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO

import arsm_jax.numpyro as anp

_OUT = flags.DEFINE_string("out", "numpyro_mixture.png", "Figure path.")
_JSON = flags.DEFINE_string("json", "numpyro_mixture.json", "Results path.")
_STEPS = flags.DEFINE_integer("num_steps", 600, "SVI steps per run.")
_EVAL = flags.DEFINE_integer("eval_every", 20, "Steps between ELBO checks.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per method.")
_DRAWS = flags.DEFINE_integer("num_draws", 1000,
                              "Gradient draws for the variance.")
_LR = flags.DEFINE_float("learning_rate", 0.05, "Adam step size.")

NUM_CATS, NUM_POINTS, SIGMA = 3, 100, 0.7
MEANS = np.array([-4.0, 0.0, 4.0])


def make_data(seed: int = 0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CATS, NUM_POINTS)
  return jnp.asarray(MEANS[labels] + SIGMA * rng.normal(size=NUM_POINTS),
                     jnp.float32)


def model(x):
  locs = numpyro.sample(
      "locs", dist.Normal(0.0, 10.0).expand([NUM_CATS]).to_event(1))
  with numpyro.plate("data", x.shape[0]):
    z = numpyro.sample("z", dist.Categorical(logits=jnp.zeros(NUM_CATS)))
    numpyro.sample("x", dist.Normal(locs[z], SIGMA), obs=x)


def make_guide(enumerate_z: bool = False):
  infer = {"enumerate": "parallel"} if enumerate_z else {}

  def guide(x):
    loc = numpyro.param("locs_loc", jnp.array([-1.0, 0.0, 1.0]))
    scale = numpyro.param("locs_scale", 0.1 * jnp.ones(NUM_CATS),
                          constraint=constraints.positive)
    numpyro.sample("locs", dist.Normal(loc, scale).to_event(1))
    w = numpyro.param("enc_w", jnp.zeros((2, NUM_CATS)))
    with numpyro.plate("data", x.shape[0]):
      numpyro.sample("z", dist.Categorical(logits=x[:, None] * w[0] + w[1]),
                     infer=infer)

  return guide


def methods():
  """``{label: (loss, guide)}`` in the figure's order."""
  guide = make_guide()
  return {
      "TraceGraph_ELBO": (TraceGraph_ELBO(), guide),
      "arsm": (anp.ELBO("arsm"), guide),
      "reinforce_loo (n=4)": (anp.ELBO("reinforce_loo", num_samples=4), guide),
      "unordered_set (n=4)": (anp.ELBO("unordered_set", num_samples=4), guide),
      "arsm (plate)": (anp.ELBO("arsm", plate="data"), guide),
      "reinforce_loo (n=4, plate)": (
          anp.ELBO("reinforce_loo", num_samples=4, plate="data"), guide),
      "unordered_set (n=4, plate)": (
          anp.ELBO("unordered_set", num_samples=4, plate="data"), guide),
      "TraceEnum_ELBO (exact in z)": (TraceEnum_ELBO(), make_guide(True)),
  }


def exact_elbo_fn(x):
  """``params -> ELBO`` with z summed out (locations: 16 draws)."""
  enum = TraceEnum_ELBO(num_particles=16)
  guide = make_guide(True)

  @jax.jit
  def elbo(params):
    return -enum.loss(jax.random.PRNGKey(123), params, model, guide, x)

  return elbo


def gradient_variance(loss, guide, params, x, num_draws):
  """Variance of the gradient at ``params``: summed over enc_w and over all."""

  def one(key):
    return jax.grad(lambda p: loss.loss(key, p, model, guide, x))(params)

  keys = jax.random.split(jax.random.PRNGKey(7), num_draws)
  grads = jax.jit(jax.vmap(one))(keys)
  var = jax.tree_util.tree_map(lambda g: float(jnp.sum(jnp.var(g, axis=0))),
                               grads)
  return {"enc_w": var["enc_w"], "all": float(sum(var.values()))}


def train(svi, update, x, seed, exact_elbo):
  """ELBO (exact) every eval_every steps, and the seconds spent in updates."""
  state = svi.init(jax.random.PRNGKey(seed), x)
  jax.block_until_ready(update(state, x))           # compile outside the clock
  steps, elbos, seconds, spent = [], [], [], 0.0
  for step in range(_STEPS.value + 1):
    if step % _EVAL.value == 0:
      steps.append(step)
      elbos.append(float(exact_elbo(svi.get_params(state))))
      seconds.append(spent)
    if step == _STEPS.value:
      break
    start = time.perf_counter()
    state, value = update(state, x)
    jax.block_until_ready(value)
    spent += time.perf_counter() - start
  return {"step": steps, "elbo": elbos, "seconds": seconds,
          "final_params": svi.get_params(state)}


def main(argv):
  del argv
  x = make_data()
  exact_elbo = exact_elbo_fn(x)
  runs = methods()
  results = {"command": ("taskset -c 0 python experiments/numpyro_mixture.py "
                         f"--num_steps={_STEPS.value} --seeds={_SEEDS.value} "
                         f"--num_draws={_DRAWS.value}"),
             "num_points": NUM_POINTS, "num_cats": NUM_CATS,
             "learning_rate": _LR.value, "methods": {}}
  curves = {}
  for label, (loss, guide) in runs.items():
    logging.info("training %s", label)
    svi = SVI(model, guide, numpyro.optim.Adam(_LR.value), loss=loss)
    update = jax.jit(svi.update)
    curves[label] = [train(svi, update, x, seed, exact_elbo)
                     for seed in range(_SEEDS.value)]
  # Parameters to measure the variance at: the initial ones and where the
  # exact (TraceEnum) training ended, seed 0.
  svi = SVI(model, make_guide(), numpyro.optim.Adam(_LR.value),
            loss=TraceGraph_ELBO())
  init_params = svi.get_params(svi.init(jax.random.PRNGKey(0), x))
  fitted = curves["TraceEnum_ELBO (exact in z)"][0]["final_params"]
  for label, (loss, guide) in runs.items():
    runs_ = curves[label]
    final = [r["elbo"][-1] for r in runs_]
    entry = {
        "final_elbo_median": float(np.median(final)),
        "final_elbo_per_seed": final,
        "seconds_per_step": float(np.median(
            [r["seconds"][-1] / _STEPS.value for r in runs_])),
        "curves": [{k: r[k] for k in ("step", "elbo", "seconds")}
                   for r in runs_],
    }
    if "TraceEnum" not in label:
      entry["grad_variance_init"] = gradient_variance(
          loss, guide, init_params, x, _DRAWS.value)
      entry["grad_variance_fitted"] = gradient_variance(
          loss, guide, fitted, x, _DRAWS.value)
    results["methods"][label] = entry
    logging.info("%s: %s", label, {k: v for k, v in entry.items()
                                    if k != "curves"})
  with open(_JSON.value, "w") as fh:
    json.dump(results, fh, indent=1)
  plot(results, _OUT.value)
  logging.info("wrote %s and %s", _JSON.value, _OUT.value)


def plot(results, path):
  import matplotlib                             # only the figure needs it
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  methods_ = results["methods"]
  base = {"TraceGraph_ELBO": "tab:gray", "arsm": "tab:red",
          "reinforce_loo": "tab:blue", "unordered_set": "tab:green",
          "TraceEnum_ELBO": "black"}
  colours = {m: base[m.split(" ")[0]] for m in methods_}
  styles = {m: ":" if "plate" in m else "-" for m in methods_}
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
  sampled = [m for m in methods_ if "grad_variance_init" in methods_[m]]
  pos = np.arange(len(sampled))
  for offset, key, hatch in ((-0.2, "grad_variance_init", ""),
                             (0.2, "grad_variance_fitted", "//")):
    for i, m in enumerate(sampled):
      axes[0].bar(pos[i] + offset, methods_[m][key]["enc_w"], 0.4,
                  color=colours[m], hatch=hatch, edgecolor="white",
                  alpha=0.55 if "plate" in m else 1.0)
  axes[0].set_yscale("log")
  axes[0].set_xticks(pos, [m.split(" ")[0] + ("\n(plate)" if "plate" in m
                                               else "") for m in sampled],
                     rotation=30, fontsize=7)
  axes[0].set_title("gradient variance, guide's logit weights\n"
                    "(plain: initial params; hatched: fitted)", fontsize=9)
  exact = methods_["TraceEnum_ELBO (exact in z)"]["final_elbo_median"]
  for label, entry in methods_.items():
    for i, curve in enumerate(entry["curves"]):
      kw = dict(color=colours[label], lw=1, alpha=0.8, ls=styles[label],
                label=label if i == 0 else None)
      axes[1].plot(curve["step"], curve["elbo"], **kw)
      axes[2].plot(curve["seconds"], curve["elbo"], **kw)
  for ax, xlabel in ((axes[1], "step"), (axes[2], "seconds (one core)")):
    ax.axhline(exact, color="black", ls=":", lw=0.8)
    ax.set_ylim(exact - 60, exact + 5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ELBO (z summed out)")
  axes[1].legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=70)


if __name__ == "__main__":
  app.run(main)
