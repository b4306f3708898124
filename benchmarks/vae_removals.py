r"""What removing parts of the ARSM VAE step would save (benchmark-local copies).

    python benchmarks/vae_removals.py [--iters=3 --rounds=3] [--json]

The profile of the ARSM step (``benchmarks/vae_step.py --breakdown``) shows,
besides the decoder, work that the estimate does not need. Each candidate
here is a benchmark-local copy of the code it would change, registered or
built in this process only, timed side by side with the plain step
(interleaved rounds, median), and checked for giving the same parameters
after one step:

* ``lean``: ARSM with the three smallest scores found by three ``argmin``
  passes instead of ``lax.top_k`` (a sort), and ``all_same`` computed from
  the ``[P, K]`` pairs already built (``arsm_jax/estimators/arsm.py`` does
  that itself since issue 32, so only the ``argmin`` passes differ from the
  plain step now). Not applied: the passes are under 1 % of the step, and
  they are not ``top_k`` at ties (with several ``+inf`` scores, masked
  categories, a pass can return an index already taken).
* ``gather``: the decoder's first layer applied to the one-hot latents as a
  gather of K rows of its kernel instead of a dense ``[K C, H]`` product
  (the same sum, in another order: equal up to rounding, not bit for bit).
  Changes ``arsm_jax/models/vae.py`` (owner: relax).
* ``lean+gather``: both.

Everything else (batch, model, keys) is as in ``benchmarks/vae_step.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry
from arsm_jax.estimators import swap
from arsm_jax.models import vae as vae_models
from arsm_jax.tasks import vae

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vae_step  # pylint: disable=g-import-not-at-top,wrong-import-position

sg = jax.lax.stop_gradient


def _smallest_three_argmin(scores):
  """The three smallest scores per row by three argmin passes ``[K, 3]``."""
  num_cats = scores.shape[1]
  idx, vals = [], []
  s = scores
  for _ in range(min(3, num_cats)):
    i = jnp.argmin(s, axis=1).astype(jnp.int32)
    idx.append(i)
    vals.append(jnp.take_along_axis(s, i[:, None], axis=1)[:, 0])
    s = jnp.where(jnp.arange(num_cats)[None, :] == i[:, None], jnp.inf, s)
  while len(idx) < 3:
    idx.append(jnp.full_like(idx[0], num_cats))
    vals.append(jnp.full_like(vals[0], jnp.inf))
  return jnp.stack(idx, 1), jnp.stack(vals, 1)


def _pseudo_actions_lean(log_pi, logits):
  num_cats = logits.shape[1]
  ids = jnp.arange(num_cats, dtype=jnp.int32)
  top, top_scores = _smallest_three_argmin(log_pi - logits)
  score_at_c = log_pi[:, None, :] - logits[:, :, None]
  score_at_j = log_pi[:, :, None] - logits[:, None, :]
  return swap._resolve(top, top_scores, ids[:, None], ids[None, :],  # pylint: disable=protected-access
                       score_at_c, score_at_j)


def arsm_lean(key, logits, f):
  """ARSM (K > 1, no settings) with the two removals of this benchmark."""
  dtype = logits.dtype
  num_cats = logits.shape[1]
  aug = swap.augment(key, logits)
  rows, cols, pair_index = swap.upper_pairs(num_cats)
  pv = _pseudo_actions_lean(aug.log_pi, logits)             # [K, C, C]
  pairs = jnp.concatenate([pv[:, rows, cols], aug.z[:, None]], axis=1).T
  all_same = jnp.all(pairs == aug.z[None, :])               # from [P, K]
  values = evaluation.evaluate_many(
      f, jax.nn.one_hot(pairs, num_cats, dtype=dtype), dtype)
  f_matrix, f_z = values[pair_index], values[-1]
  f_matrix = jnp.where(all_same, f_z, f_matrix)
  centred = f_matrix - jnp.mean(f_matrix, axis=0, keepdims=True)
  grad = (1.0 / num_cats - aug.pi) @ centred.T
  grad = jnp.where(jnp.isneginf(logits), jnp.zeros_like(grad), grad)
  onehot_z = jax.nn.one_hot(aug.z, num_cats, dtype=dtype)
  return contract.EstimatorOutput(grad, onehot_z[None], jnp.ones((1,), dtype),
                                  f_z, jnp.asarray(values.shape[0], jnp.int32))


registry.register("arsm_lean_benchmark", arsm_lean, unbiased=True,
                  description="benchmark-local ARSM copy (vae_removals.py)")


def _gather_objective(model, est):
  """The one-layer objective with a gather for the decoder's first layer."""
  num_lat, num_cats = model.num_latents, model.num_categories
  slope = 0.2

  def decode(params, z):                                    # z [..., K, C]
    p = params["params"]["decoder"]
    kernel = p["hidden_0"]["kernel"].reshape(num_lat, num_cats, -1)
    idx = jnp.argmax(z, axis=-1)                            # [..., K]
    rows = kernel[jnp.arange(num_lat), idx]                 # [..., K, H]
    h = jnp.sum(rows, axis=-2) + p["hidden_0"]["bias"]
    h = jax.nn.leaky_relu(h, slope)
    h = jax.nn.leaky_relu(h @ p["hidden_1"]["kernel"] + p["hidden_1"]["bias"],
                          slope)
    return h @ p["out"]["kernel"] + p["out"]["bias"]

  log_prior = -num_lat * np.log(num_cats)

  def neg_elbo_at(params, z, x, lq):
    return (-vae_models.bernoulli_log_prob(decode(params, z), x) - log_prior
            + vae_models.categorical_log_prob(z, lq))

  def loss(params, key, x, est_state):
    del est_state
    logits = model.apply(params, x, method=model.encode)
    k_est, _ = jax.random.split(key)
    from arsm_jax.expectation import expectation  # pylint: disable=g-import-not-at-top
    f = lambda z, xi, lq: neg_elbo_at(params, z, xi, lq)
    values = expectation(k_est, logits, f, x, jax.nn.log_softmax(logits),
                         estimator=est)
    return jnp.mean(values), (sg(values), None)

  return vae.Objective(loss, None, None, None)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch_size", type=int, default=200)
  parser.add_argument("--iters", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  batch = args.batch_size
  images = jnp.asarray(np.random.default_rng(0).integers(
      0, 256, (batch, 784)), jnp.uint8)
  idx = jnp.arange(batch)
  _, _, model, objective, tx, state = vae_step._setup("arsm", batch)  # pylint: disable=protected-access
  from arsm_jax import estimators  # pylint: disable=g-import-not-at-top
  lean = estimators.get("arsm_lean_benchmark")
  plain = estimators.get("arsm")
  objectives = {
      "plain": objective,
      "lean": vae.make_objective(model, lean),
      "gather": _gather_objective(model, plain),
      "lean+gather": _gather_objective(model, lean),
  }
  timers, after = {}, {}
  for name, obj in objectives.items():
    step = vae.make_train_step(obj, tx, "threshold", jax.random.PRNGKey(1))
    after[name] = jax.tree_util.tree_leaves(
        jax.block_until_ready(step(state, images, idx))[0].params)
    timers[name] = vae_step._stepper(step, state, images, idx, args.iters)  # pylint: disable=protected-access
  with_lik, _, _ = vae_step._decoder_timers(model, state.params, batch,  # pylint: disable=protected-access
                                            args.iters)
  timers["floor (decoder + likelihood)"] = with_lik
  samples = {k: [] for k in timers}
  for r in range(args.rounds):
    for k, run in timers.items():
      samples[k].append(run())
    vae_step._log(f"round {r + 1}/{args.rounds} done")  # pylint: disable=protected-access
  ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
  floor = ms["floor (decoder + likelihood)"]
  result = {
      "load_average_1min": os.getloadavg()[0],
      "ms_per_step": ms,
      "over_plain": {k: ms[k] / ms["plain"] for k in objectives},
      "over_floor": {k: ms[k] / floor for k in objectives},
      "identical_to_plain": {
          k: all(np.array_equal(a, b) for a, b in zip(after[k],
                                                      after["plain"]))
          for k in objectives},
      "max_abs_param_diff": {
          k: float(max(np.max(np.abs(np.asarray(a) - np.asarray(b)))
                       for a, b in zip(after[k], after["plain"])))
          for k in objectives},
  }
  if args.json:
    print(json.dumps(result, indent=1, sort_keys=True))
    return
  print(f"\n{'variant':<30}{'ms/step':>9}{'x plain':>9}{'x floor':>9}"
        f"{'identical':>11}")
  for k in timers:
    extra = (f"{result['over_plain'][k]:>9.2f}{result['over_floor'][k]:>9.2f}"
             f"{str(result['identical_to_plain'][k]):>11}"
             if k in objectives else "")
    print(f"{k:<30}{ms[k]:>9.1f}{extra}")
  print(f"(load average {result['load_average_1min']:.1f})")


if __name__ == "__main__":
  main()
