"""Writes notebooks/quickstart.ipynb from the cells below (run to regenerate)."""

import os

import nbformat
from nbformat import v4

CELLS = [
    ("md", """# arsm_jax quickstart

Gradient estimators for categorical variables in JAX. This notebook:

1. estimates one gradient with every registered estimator,
2. compares their variance and bias against the exact gradient on a small problem,
3. trains a tiny categorical model with `arsm_jax.expectation` inside `jax.grad`,
4. launches the toy experiment of the ARSM paper through `train_and_evaluate`.

It needs the `[experiments]` extra (`pip install '.[experiments]'` in a clone, or the README's set-up, `bash scripts/setup.sh`) and runs from any directory; on 2 otherwise idle CPU cores it runs in about 1.5 minutes (81 s; 4.5 minutes when the cores were shared with other jobs), most of it compilation and section 2's variances."""),
    ("code", """import os, tempfile
import jax, jax.numpy as jnp, numpy as np, optax
import matplotlib.pyplot as plt
import arsm_jax
from arsm_jax import estimators, diagnostics

print("jax", jax.__version__, "on", jax.devices()[0].platform)
print("estimators:", estimators.names())"""),
    ("md", """## 1. One gradient from each estimator

A problem with K = 3 categorical dimensions of C = 4 categories. `f` maps a one-hot `[K, C]` array to a scalar; it is smooth in `z` so that the relaxed (Gumbel-Softmax family) estimators, which differentiate `f`, apply too."""),
    ("code", """K, C = 3, 4
W = jax.random.normal(jax.random.PRNGKey(0), (K, C))
def f(z):                                   # z: one-hot [K, C]
    s = jnp.sum(z * W)
    return jnp.sin(2.0 * s) + 0.5 * s ** 2   # not additive over dimensions

logits = jax.random.normal(jax.random.PRNGKey(1), (K, C))
key = jax.random.PRNGKey(2)
exact = estimators.get("exact")(key, logits, f)
print("exact gradient (first row):", np.round(np.asarray(exact[0]), 4))
for name in estimators.names():
    est = estimators.get(name)
    state = est.init(key, logits)            # None for stateless estimators
    out = est.estimate(key, logits, f, state=state)
    print(f"{name:18s} evals={int(out.num_evals):3d}  grad[0]={np.round(np.asarray(out.grad[0]), 4)}")"""),
    ("md", """## 2. Variance and bias against the exact gradient

`diagnostics.gradient_stats` draws each estimator many times and compares with the exact gradient, computed by enumerating all C^K outcomes. The right panel charges each estimator for its evaluations of `f` (variance × evaluations): the fair comparison when evaluations cost."""),
    ("code", """rows = []
for name in estimators.names():
    if name == "exact":
        continue
    s = diagnostics.gradient_stats(name, jax.random.PRNGKey(3), logits, f, 2000).summary()
    rows.append((name, s["mean_variance"], s["mean_bias_sq"], s["evals_per_draw"]))
    print(f"{name:18s} variance={s['mean_variance']:.3e}  bias^2={s['mean_bias_sq']:.2e}  evals/draw={s['evals_per_draw']:.1f}")

names = [r[0] for r in rows]
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
axes[0].barh(names, [r[1] for r in rows], color="tab:blue", label="variance")
axes[0].barh(names, [max(r[2], 1e-12) for r in rows], color="tab:red", alpha=0.6, label="bias$^2$")
axes[0].set_xscale("log"); axes[0].legend(); axes[0].set_title("per-coordinate variance and bias$^2$")
axes[1].barh(names, [r[1] * r[3] for r in rows], color="tab:green")
axes[1].set_xscale("log"); axes[1].set_title("variance x evaluations of f")
plt.tight_layout(); plt.show()"""),
    ("md", """## 3. A tiny categorical model trained with `jax.grad`

An encoder maps `x` to logits of K = 4 categorical variables with C = 5 categories; a linear decoder reconstructs `x` from the one-hot code. `arsm_jax.expectation` returns per-item surrogates whose gradient is the ARSM estimate for the encoder and the pathwise gradient for the decoder, so one `jax.grad` trains both."""),
    ("code", """def loss(params, key, x):                                   # x: [B, D]
    logits = (x @ params["enc"]).reshape(-1, 4, 5)           # [B, K=4, C=5]
    def f(z, x_item):                                        # one item; z one-hot [K, C]
        return jnp.sum((z.reshape(-1) @ params["dec"] - x_item) ** 2)
    return arsm_jax.expectation(key, logits, f, x, estimator="arsm").mean()

x = jax.random.normal(jax.random.PRNGKey(0), (64, 8))
params = {"enc": 0.1 * jax.random.normal(jax.random.PRNGKey(1), (8, 20)), "dec": jnp.zeros((20, 8))}
opt = optax.adam(1e-2)

@jax.jit
def train_step(params, opt_state, step):
    value, grads = jax.value_and_grad(loss)(params, jax.random.fold_in(jax.random.PRNGKey(2), step), x)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

opt_state, losses = opt.init(params), []
for step in range(400):
    params, opt_state, value = train_step(params, opt_state, step)
    losses.append(float(value))
print(f"loss: first 20 steps {np.mean(losses[:20]):.3f}, last 20 steps {np.mean(losses[-20:]):.3f}")
assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:20])
plt.figure(figsize=(6, 3)); plt.plot(losses); plt.xlabel("step"); plt.ylabel("reconstruction loss"); plt.show()"""),
    ("md", """## 4. The toy experiment from a notebook

The same code path as `arsm-jax --config=toy --workdir=...` (`arsm_jax.experiments` finds the configs by name, from any directory), on a smaller setting (C = R = 10, 1,000 iterations) so that it runs in seconds."""),
    ("code", """from arsm_jax import experiments       # needs the [experiments] extra

config = experiments.get_config("toy")     # configs/toy.py; "toy:quick" picks a preset
config.num_categories, config.reward_scale, config.num_iterations = 10, 10.0, 1000
config.estimators = "exact,reinforce,ar,arsm"
workdir = tempfile.mkdtemp(prefix="toy_")
result = experiments.train_and_evaluate(config, workdir)
for name, s in result["summary"].items():
    print(f"{name:10s} expected reward {s['final_expected_reward']:.4f} (optimum {result['optimum']:.4f})")
from IPython.display import Image, display
display(Image(os.path.join(workdir, "toy.png")))"""),
]


def main():
  nb = v4.new_notebook()
  nb.cells = [v4.new_markdown_cell(src) if kind == "md" else v4.new_code_cell(src)
              for kind, src in CELLS]
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                               "language": "python"}
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "quickstart.ipynb")
  nbformat.write(nb, path)
  print("wrote", path)


if __name__ == "__main__":
  main()
