r"""Microseconds per ARSM iteration on the toy (C = 30), JAX scan vs NumPy.

    python benchmarks/toy_speed.py [--num_categories=30] [--num_iterations=5000]

Both sides run the same algorithm in the same process: draw pi ~ Dir(1_C),
form the C x C matrix of pseudo actions, evaluate f on the distinct swap
pairs, merge, and take one gradient-ascent step. The JAX side is one jitted
``lax.scan`` over iterations (``arsm_jax.estimators.get('arsm')`` on the toy's
one-hot objective); the NumPy side is a plain per-iteration loop written
here, vectorised with NumPy the way a careful NumPy user would (it is not the
authors' code, which swaps and takes an argmin for every pair). Machines are
shared and noisy: read the ratio, not the absolute times.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax import estimators
from arsm_jax.tasks import toy

_C = flags.DEFINE_integer("num_categories", 30, "Categories C (and R).")
_T = flags.DEFINE_integer("num_iterations", 5000, "Iterations per timed run.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs; the best is kept.")


def numpy_arsm_step(rng, phi, rewards):
  """One ARSM gradient-ascent step in NumPy (K = 1)."""
  num_cats = phi.size
  e = rng.standard_exponential(num_cats)
  pi = e / e.sum()
  log_pi = np.log(pi)
  # Pseudo actions for all (c, j): swap entries c and j, then argmin.
  idx = np.arange(num_cats)
  swapped = np.broadcast_to(log_pi, (num_cats, num_cats, num_cats)).copy()
  swapped[idx[:, None], idx[None, :], idx[:, None]] = log_pi[None, :]
  swapped[idx[:, None], idx[None, :], idx[None, :]] = log_pi[:, None]
  pseudo = np.argmin(swapped - phi, axis=-1)                 # [C, C]
  f_matrix = rewards[pseudo]
  grad = (f_matrix - f_matrix.mean(axis=0)) @ (1.0 / num_cats - pi)
  return phi + grad


def time_numpy(num_cats, num_iterations, repeats):
  rewards = 0.5 + np.arange(1, num_cats + 1) / (num_cats * num_cats)
  best = float("inf")
  for r in range(repeats):
    rng = np.random.default_rng(r)
    phi = np.zeros(num_cats)
    t0 = time.perf_counter()
    for _ in range(num_iterations):
      phi = numpy_arsm_step(rng, phi, rewards)
    best = min(best, time.perf_counter() - t0)
  return 1e6 * best / num_iterations, phi


def time_jax(num_cats, num_iterations, repeats):
  est = estimators.get("arsm")
  f = toy.make_objective(num_cats, float(num_cats))

  def run(key):
    def step(phi, k):
      return phi + est(k, phi, f), None
    phi, _ = jax.lax.scan(step, jnp.zeros((1, num_cats)),
                          jax.random.split(key, num_iterations))
    return phi

  compiled = jax.jit(run).lower(jax.random.PRNGKey(0)).compile()
  jax.block_until_ready(compiled(jax.random.PRNGKey(0)))
  best = float("inf")
  for r in range(repeats):
    t0 = time.perf_counter()
    phi = jax.block_until_ready(compiled(jax.random.PRNGKey(r + 1)))
    best = min(best, time.perf_counter() - t0)
  return 1e6 * best / num_iterations, np.asarray(phi[0])


def main(argv):
  del argv
  num_cats, num_it, repeats = _C.value, _T.value, _REPEATS.value
  print(f"ARSM toy step, C = {num_cats}, {num_it} iterations, best of "
        f"{repeats}; device: {jax.devices()[0].device_kind}")
  # Interleave so that both see the same machine load.
  np_us, np_phi = time_numpy(num_cats, min(num_it, 2000), 1)
  jax_us, jax_phi = time_jax(num_cats, num_it, repeats)
  np_us2, _ = time_numpy(num_cats, min(num_it, 2000), max(1, repeats - 1))
  np_us = min(np_us, np_us2)
  print(f"  NumPy loop : {np_us:8.2f} us/iteration "
        f"(final P(best) {np.exp(np_phi[-1]) / np.exp(np_phi).sum():.3f})")
  print(f"  JAX scan   : {jax_us:8.2f} us/iteration "
        f"(final P(best) {np.exp(jax_phi[-1]) / np.exp(jax_phi).sum():.3f})")
  print(f"  ratio NumPy / JAX = {np_us / jax_us:.1f}x")


if __name__ == "__main__":
  app.run(main)
