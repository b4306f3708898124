r"""ARSM against the number of categories C and of dimensions K.

    python benchmarks/scaling.py                  # C = 2..1000 (K = 1), K = 1..1000 (C = 10)
    python benchmarks/scaling.py --quick          # fewer sizes

For each size it prints, from one process (so the columns are comparable):

* ``arsm``: one full ARSM draw (augment, pseudo actions, f on the swap pairs,
  merge) on a cheap f, microseconds per draw inside a jitted ``lax.scan``;
* ``fast pv``: the O(K C^2) pseudo actions alone;
* ``naive pv``: swap-then-argmin pseudo actions, O(K C^3), skipped where its
  ``[K, C, C, C]`` intermediate would pass ``--naive_limit_mb``;
* ``temp MB``: XLA's temporary-buffer size for one ARSM draw
  (``compiled.memory_analysis()``), the peak working memory beyond inputs
  and outputs;
* the fitted growth exponents (slope of log time against log size over the
  larger half of the sizes) and the fast/naive time ratio.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax import estimators
from arsm_jax.estimators import swap

_QUICK = flags.DEFINE_bool("quick", False, "Fewer sizes.")
_DRAWS = flags.DEFINE_integer("draws", 20, "Draws per timed scan.")
_NAIVE_LIMIT = flags.DEFINE_float(
    "naive_limit_mb", 1500.0, "Skip the naive pseudo actions when their "
    "[K, C, C, C] intermediate exceeds this many MB.")


def _objective(num_dims, num_cats):
  w = jax.random.normal(jax.random.PRNGKey(0), (num_dims, num_cats))
  return lambda z: jnp.tanh(jnp.sum(z * w))


def _time_scan(fn, num_dims, num_cats, draws):
  """Microseconds per call of fn(key, logits) -> array, inside a scan."""
  logits = jax.random.normal(jax.random.PRNGKey(1), (num_dims, num_cats))

  def run(key):
    def body(acc, k):
      return acc + jnp.sum(fn(k, logits)).astype(jnp.float32), None
    return jax.lax.scan(body, 0.0, jax.random.split(key, draws))[0]

  compiled = jax.jit(run).lower(jax.random.PRNGKey(0)).compile()
  jax.block_until_ready(compiled(jax.random.PRNGKey(0)))
  best = float("inf")
  for r in range(3):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.PRNGKey(r + 1)))
    best = min(best, time.perf_counter() - t0)
  return 1e6 * best / draws


def _temp_mb(num_dims, num_cats):
  f = _objective(num_dims, num_cats)
  est = estimators.get("arsm")
  logits = jnp.zeros((num_dims, num_cats))
  compiled = jax.jit(lambda k: est(k, logits, f)).lower(
      jax.random.PRNGKey(0)).compile()
  analysis = compiled.memory_analysis()
  if analysis is None:
    return float("nan")
  return analysis.temp_size_in_bytes / 2**20


def _fast_pv(k, logits):
  aug = swap.augment(k, logits)
  return swap.pseudo_actions(aug.log_pi, logits)


def _naive_pv(k, logits):
  aug = swap.augment(k, logits)
  return swap._pseudo_actions_naive(aug.log_pi, logits)


def _sweep(label, sizes, shape_of, draws):
  print(f"\n{label}")
  print(f"{'size':>6} {'arsm us':>11} {'fast pv us':>11} {'naive pv us':>12}"
        f" {'naive/fast':>10} {'temp MB':>9}")
  rows = []
  for n in sizes:
    num_dims, num_cats = shape_of(n)
    f = _objective(num_dims, num_cats)
    est = estimators.get("arsm")
    t_arsm = _time_scan(lambda k, lg: est(k, lg, f), num_dims, num_cats, draws)
    t_fast = _time_scan(_fast_pv, num_dims, num_cats, draws)
    naive_mb = 4 * num_dims * num_cats**3 / 2**20
    if naive_mb <= _NAIVE_LIMIT.value:
      t_naive = _time_scan(_naive_pv, num_dims, num_cats, max(2, draws // 4))
    else:
      t_naive = float("nan")
    mb = _temp_mb(num_dims, num_cats)
    rows.append((n, t_arsm, t_fast, t_naive))
    naive_txt = (f"{t_naive:12.1f}" if np.isfinite(t_naive)
                 else f"{'> ' + str(int(naive_mb)) + 'MB':>12}")
    print(f"{n:6d} {t_arsm:11.1f} {t_fast:11.1f} {naive_txt} "
          f"{t_naive / t_fast:10.1f} {mb:9.2f}", flush=True)
  rows = np.array(rows)
  upper = rows[len(rows) // 2:]
  for col, name in ((1, "arsm"), (2, "fast pv"), (3, "naive pv")):
    ok = np.isfinite(upper[:, col])
    if ok.sum() >= 2:
      slope = np.polyfit(np.log(upper[ok, 0]), np.log(upper[ok, col]), 1)[0]
      print(f"  growth exponent of {name:8s} over sizes "
            f"{int(upper[ok, 0].min())}..{int(upper[ok, 0].max())}: {slope:.2f}")


def main(argv):
  del argv
  draws = _DRAWS.value
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
  if _QUICK.value:
    cats = [2, 10, 30, 100, 300]
    dims = [1, 10, 100, 300]
  else:
    cats = [2, 5, 10, 30, 100, 300, 1000]
    dims = [1, 3, 10, 30, 100, 300, 1000]
  _sweep("Against C (K = 1)", cats, lambda n: (1, n), draws)
  _sweep("Against K (C = 10)", dims, lambda n: (n, 10), draws)


if __name__ == "__main__":
  app.run(main)
