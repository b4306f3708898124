r"""Speed of the VAE training step per estimator, ARSM against its floor, and batch dedup.

    python benchmarks/vae_step.py                       # all registered
    python benchmarks/vae_step.py --estimators=reinforce,arsm --rounds=3
    python benchmarks/vae_step.py --estimators=arsm --json   # one JSON object

For each estimator: the jitted training step (encoder, estimator, decoder,
backward pass, Adam) of the ``nonlinear`` VAE at batch 200, K = 20, C = 10 in
ms/step and as a ratio to REINFORCE's step. Also the *floor*: one decoder
forward pass over the ``batch x (C(C-1)/2 + 1)`` pseudo latents, alone and
with the Bernoulli log-likelihood: every plain ARSM step evaluates the
decoder on that many vectors, so ``ARSM step / floor`` says how close the
step is to it.

Breakdown (``--breakdown``, on by default): the ARSM step's compiled
operations are profiled (``jax.profiler`` trace of a few steps) and each
operation's time is charged to a part of the step by the HLO metadata of
what it computes: encoder forward, encoder backward, pseudo actions (the
Dirichlet draw, top-3, pairs), one-hot and gathers, decoder forward on the
pseudo latents (its last layer is fused with the likelihood by XLA),
likelihood terms outside the decoder (log q, prior), the pathwise decoder
forward and backward at z, and the optimiser. The same parts are also timed
as separately jitted functions (``pieces``), which shows what each costs
alone.

Deduplication (``--dedup_scales``): the ARSM step with the encoder's logits
rescaled to a standard deviation of 1, 3 and 10 (the notes' N(0, sigma^2)
logits), with and without :mod:`arsm_jax.batched` (f once per distinct
point of the batch, buffer from :class:`~arsm_jax.batched.BufferSizer` over
a few draws). Reported: distinct points per image, both steps, both against
the floor, and whether the deduplicated step produced bit-for-bit the same
parameters as the plain one.

Timings are interleaved: each round times every candidate once (median of
``--iters`` steps), and the median over rounds is reported, so a busy machine
slows all candidates alike. Ratios are meaningful; absolute numbers depend on
the load. For reference, the authors' TensorFlow code takes 0.32-0.34 s per
step of this setting on these machines.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from arsm_jax import batched
from arsm_jax import estimators
from arsm_jax.estimators import swap
from arsm_jax.models import vae as vae_models
from arsm_jax.tasks import vae
# The configs live beside the package, not in it: make the repository root
# importable when this file is run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import vae as vae_config  # pylint: disable=g-import-not-at-top,wrong-import-position

# Names the nonlinear VAE cannot use at K = 20, C = 10.
_SKIP = {"exact"}
# Settings matching the presets (equal evaluations per step for RLOO).
_SETTINGS = {"reinforce_loo": {"num_samples": 46}}
NUM_LATENTS, NUM_CATS = 20, 10
NUM_PAIRS = NUM_CATS * (NUM_CATS - 1) // 2 + 1
sg = jax.lax.stop_gradient


def _log(msg):
  print(msg, file=sys.stderr, flush=True)


def _median_timer(fn, iters):
  """A run() that returns the median seconds of ``iters`` calls of fn()."""
  def run():
    times = []
    for _ in range(iters):
      t = time.perf_counter()
      jax.block_until_ready(fn())
      times.append(time.perf_counter() - t)
    return statistics.median(times)
  return run


def _setup(name, batch):
  config = vae_config.get_config("arsm_nonlinear")
  config.estimator = name
  for k, v in _SETTINGS.get(name, {}).items():
    config.estimator_settings[k] = v
  config.batch_size = batch
  est = vae.validate_config(config)
  model, objective, tx = vae._build(config, est)  # pylint: disable=protected-access
  state = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  return config, est, model, objective, tx, state


def _stepper(step, state, images, idx, iters):
  state = jax.block_until_ready(step(state, images, idx))   # compile
  holder = [state]

  def one():
    holder[0] = step(holder[0], images, idx)
    return holder[0]
  return _median_timer(one, iters)


def _step_timer(name, batch, images, iters):
  _, est, _, objective, tx, state = _setup(name, batch)
  step = vae.make_train_step(objective, tx, "threshold", jax.random.PRNGKey(1))
  run = _stepper(step, state, images, jnp.arange(batch), iters)
  return run, vae.evals_per_image(est, NUM_LATENTS, NUM_CATS)


def _decoder_timers(model, params, batch, iters):
  num = batch * NUM_PAIRS
  z = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(1),
                                        (num, NUM_LATENTS), 0, NUM_CATS),
                     NUM_CATS)
  x = (jax.random.uniform(jax.random.PRNGKey(2), (num, 784)) < 0.2).astype(
      jnp.float32)

  @jax.jit
  def with_lik(params, z, x):
    pix = model.apply(params, z, method=model.decode)
    return jnp.sum(vae_models.bernoulli_log_prob(pix, x))

  @jax.jit
  def forward_only(params, z):
    return jnp.sum(model.apply(params, z, method=model.decode))

  jax.block_until_ready(with_lik(params, z, x))
  jax.block_until_ready(forward_only(params, z))
  return (_median_timer(lambda: with_lik(params, z, x), iters),
          _median_timer(lambda: forward_only(params, z), iters), num)


# ----------------------------------------------------------------------------
# Deduplication: ARSM steps at a given logit scale, plain and deduplicated.


def _scaled_objective(model, factor, buffer_size):
  """The one-layer ARSM loss with logits ``factor * encoder(x)``."""
  neg_elbo_at = lambda params, z, x, lq: vae.neg_elbo_one_layer(
      model, params, z, x, lq)

  def loss(params, key, x, est_state):
    del est_state
    logits = factor * model.apply(params, x, method=model.encode)  # [B, K, C]
    k_est, _ = jax.random.split(key)
    f = lambda z, xi, lq: neg_elbo_at(params, z, xi, lq)
    log_q = jax.nn.log_softmax(logits)
    values = batched.expectation(k_est, logits, f, x, log_q,
                                 buffer_size=buffer_size)
    return jnp.mean(values), (sg(values), None)

  return vae.Objective(loss, None, None, None)


def _dedup_candidates(scales, batch, images, iters, draws=5):
  """Timers and facts for the plain and deduplicated steps at each scale."""
  _, _, model, _, tx, state = _setup("arsm", batch)
  x = (images > 127).astype(jnp.float32)        # the "threshold" binarisation
  raw = model.apply(state.params, x, method=model.encode)
  base_std = float(jnp.std(raw))
  idx = jnp.arange(batch)
  timers, facts = {}, {}
  for scale in scales:
    factor = scale / base_std
    logits = factor * raw
    counts = np.stack([np.asarray(batched.count_distinct(
        jax.random.PRNGKey(100 + d), logits)) for d in range(draws)])
    sizer = batched.BufferSizer(num_points=batch * NUM_PAIRS)
    for row in counts:
      sizer.observe(int(row.sum()))
    size = sizer.size
    steps = {}
    for label, buf in (("plain", None), ("dedup", size)):
      steps[label] = vae.make_train_step(_scaled_objective(model, factor, buf),
                                         tx, "threshold", jax.random.PRNGKey(1))
    one = {k: jax.block_until_ready(s(state, images, idx))
           for k, s in steps.items()}
    leaves = [jax.tree_util.tree_leaves(one[k].params) for k in steps]
    identical = all(np.array_equal(a, b) for a, b in zip(*leaves))
    q = np.percentile(counts, [10, 50, 90])
    facts[scale] = {
        "distinct_mean": float(counts.mean()),
        "distinct_p10_p50_p90": [float(v) for v in q],
        "distinct_max": int(counts.max()),
        "points_per_image": NUM_PAIRS,
        "batch_distinct_max": int(counts.sum(axis=1).max()),
        "buffer_size": size,
        # False: BufferSizer chose the plain path (too little to save), so
        # both steps are the same program and any difference is noise.
        "dedup_active": size < batch * NUM_PAIRS,
        "identical_after_one_step": bool(identical),
    }
    for label, s in steps.items():
      timers[f"arsm scale {scale:g} {label}"] = _stepper(s, state, images,
                                                         idx, iters)
  return timers, facts


# ----------------------------------------------------------------------------
# Breakdown of the ARSM step.

_PARTS = (
    "encoder forward", "encoder backward", "pseudo actions",
    "one-hot and gathers", "decoder forward on pseudo latents (+ fused "
    "likelihood)", "likelihood terms outside the decoder",
    "pathwise decoder forward at z", "pathwise decoder backward",
    "optimiser", "other")


def _hlo_index(text):
  """Per instruction of the compiled module: (output shape, op_names inside)."""
  bodies, current, name = {}, None, None
  entries = {}
  for line in text.splitlines():
    head = re.match(r"^(ENTRY )?%(\S+) .*\{\s*$", line)
    if head:
      name, current = head.group(2), []
      bodies[name] = current
      continue
    if line.startswith("}"):
      name = None
      continue
    m = re.match(r"\s*(?:ROOT )?%(\S+) = (\S+) ", line)
    if m and name is not None:
      ops = re.findall(r'op_name="([^"]*)"', line)
      calls = re.findall(r"calls=%([\w.\-]+)", line)
      current.append((m.group(1), m.group(2), ops, calls))
  for body in bodies.values():
    for inst, shape, ops, calls in body:
      names = list(ops)
      for c in calls:
        for _, _, inner, _ in bodies.get(c, ()):
          names.extend(inner)
      entries[inst] = (shape, names)
  return entries


def _classify(shape, names, batch):
  text = " ".join(names)
  pseudo_rows = bool(re.search(
      rf"\[({batch * NUM_PAIRS}|{batch},{NUM_PAIRS})[,\]]", shape))
  own = names[0] if names else ""
  if "CategoricalVAE.decode" in text:
    if "transpose(" in text:
      return "pathwise decoder backward"
    if pseudo_rows:
      return "decoder forward on pseudo latents (+ fused likelihood)"
    return "pathwise decoder forward at z"
  if pseudo_rows and "jvp(vmap(vmap()))/" in own:
    return "likelihood terms outside the decoder"
  if any(k in own for k in ("threefry", "_uniform", "_exponential", "top_k",
                            "concatenate", "reduce_and", "argmin")):
    return "pseudo actions"
  if "_one_hot" in text or "gather" in own:
    return "one-hot and gathers"
  if "CategoricalVAE.encode" in text:
    return "encoder backward" if "transpose(" in text else "encoder forward"
  if any(k in text for k in ("threefry", "_uniform", "_exponential", "top_k",
                             "reduce_and", "argmin")):
    return "pseudo actions"
  if "jvp(" not in text and "transpose(" not in text:
    return "optimiser"
  return "other"


def _trace_breakdown(step, state, images, idx, batch, steps=3):
  """Operation time of the compiled step, summed over threads, per part."""
  try:
    from jax.profiler import ProfileData  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {"error": "jax.profiler.ProfileData is not available"}
  index = _hlo_index(step.lower(state, images, idx).compile().as_text())
  state = jax.block_until_ready(step(state, images, idx))
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      t0 = time.perf_counter()
      for _ in range(steps):
        state = jax.block_until_ready(step(state, images, idx))
      wall = (time.perf_counter() - t0) / steps
    files = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)
    if not files:
      return {"error": "the profiler wrote no trace"}
    data = ProfileData.from_file(files[0])
  per_op = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      for ev in line.events:
        if ev.name in index:
          per_op[ev.name] += ev.duration_ns
  parts = collections.Counter()
  top = []
  for op, ns in per_op.most_common():
    shape, names = index[op]
    part = _classify(shape, names, batch)
    parts[part] += ns
    if len(top) < 12:
      top.append({"op": op, "shape": shape, "part": part,
                  "ms": ns / steps / 1e6,
                  "what": (names[0] if names else "")[-90:]})
  total = sum(parts.values())
  return {
      "wall_ms_per_step": 1e3 * wall,
      "op_ms_per_step": total / steps / 1e6,
      "parts_ms": {p: parts[p] / steps / 1e6 for p in _PARTS if parts[p]},
      "parts_share": {p: parts[p] / total for p in _PARTS if parts[p]},
      "top_ops": top,
  }


def _piece_timers(model, objective, tx, state, images, batch, iters):
  """Each part of the ARSM step as its own jitted function."""
  params = state.params
  x = (images > 127).astype(jnp.float32)
  logits = model.apply(params, x, method=model.encode)
  keys = jax.random.split(jax.random.PRNGKey(3), batch)
  rows, cols, pair_index = swap.upper_pairs(NUM_CATS)

  @jax.jit
  def encoder(params, x):
    fwd = lambda p: jnp.sum(model.apply(p, x, method=model.encode) ** 2)
    return jax.grad(fwd)(params)

  @jax.jit
  def pseudo(keys, lg):
    return jax.vmap(batched.points)(keys, lg)               # [B, P, K]

  pairs = pseudo(keys, logits)

  @jax.jit
  def onehot_gather(pairs, vals):
    # The one-hot latents, and F[c, j] gathered from the pair values.
    return jax.nn.one_hot(pairs, NUM_CATS), vals[:, pair_index]

  vals = jnp.zeros((batch, NUM_PAIRS))
  oh = jax.nn.one_hot(pairs, NUM_CATS)

  @jax.jit
  def decoder(params, oh):
    return model.apply(params, oh, method=model.decode)    # [B, P, D]

  pix = decoder(params, oh)

  @jax.jit
  def likelihood(pix, x, oh, lq):
    return (vae_models.bernoulli_log_prob(pix, x[:, None, :])
            + vae_models.categorical_log_prob(oh, lq[:, None]))

  lq = jax.nn.log_softmax(logits)

  @jax.jit
  def pathwise(params, oh, x):
    fwd = lambda p: jnp.sum(vae_models.bernoulli_log_prob(
        model.apply(p, oh[:, -1], method=model.decode), x))
    return jax.grad(fwd)(params)

  grads = pathwise(params, oh, x)

  @jax.jit
  def combine(keys, lg, vals):
    def one(k, l, v):
      aug = swap.augment(k, l)
      f_matrix = v[pair_index]
      centred = f_matrix - jnp.mean(f_matrix, axis=0, keepdims=True)
      return (1.0 / NUM_CATS - aug.pi) @ centred.T
    return jax.vmap(one)(keys, lg, vals)

  opt_state = tx.init(params)

  @jax.jit
  def adam(grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  calls = {
      "encoder forward+backward": lambda: encoder(params, x),
      "pseudo actions": lambda: pseudo(keys, logits),
      "one-hot and gathers": lambda: onehot_gather(pairs, vals),
      "decoder forward on pseudo latents": lambda: decoder(params, oh),
      "likelihood (Bernoulli + log q)": lambda: likelihood(pix, x, oh, lq),
      "pathwise decoder forward+backward": lambda: pathwise(params, oh, x),
      "ARSM combine": lambda: combine(keys, logits, vals),
      "optimiser (Adam)": lambda: adam(grads, opt_state, params),
  }
  del objective
  out = {}
  for k, fn in calls.items():
    jax.block_until_ready(fn())
    out[f"piece: {k}"] = _median_timer(fn, iters)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--estimators", default="all",
                      help="comma-separated names, or 'all' registered")
  parser.add_argument("--batch_size", type=int, default=200)
  parser.add_argument("--iters", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--dedup_scales", default="1,3,10",
                      help="logit scales for the dedup table ('' for none)")
  parser.add_argument("--breakdown", action=argparse.BooleanOptionalAction,
                      default=True, help="profile and time the step's parts")
  parser.add_argument("--json", action="store_true",
                      help="print one JSON object with every number")
  args = parser.parse_args()
  names = (estimators.names() if args.estimators == "all"
           else [n.strip() for n in args.estimators.split(",") if n.strip()])
  names = [n for n in names if n not in _SKIP]
  if "arsm" not in names:
    names.append("arsm")
  scales = [float(s) for s in args.dedup_scales.split(",") if s.strip()]
  batch = args.batch_size

  images = jnp.asarray(np.random.default_rng(0).integers(
      0, 256, (batch, 784)), jnp.uint8)
  _log(f"devices: {jax.devices()}; batch {batch}, nonlinear VAE, K = 20, "
       "C = 10; compiling ...")
  timers, evals = {}, {}
  for name in names:
    timers[name], evals[name] = _step_timer(name, batch, images, args.iters)
  _, _, model, objective, tx, state = _setup("arsm", batch)
  with_lik, decoder, num_latents = _decoder_timers(model, state.params, batch,
                                                   args.iters)
  timers["decoder floor"] = decoder
  timers["decoder + likelihood"] = with_lik
  facts = {}
  if scales:
    dedup_timers, facts = _dedup_candidates(scales, batch, images, args.iters)
    timers.update(dedup_timers)
  if args.breakdown:
    timers.update(_piece_timers(model, objective, tx, state, images, batch,
                                args.iters))

  samples = {k: [] for k in timers}
  for r in range(args.rounds):
    for k, run in timers.items():
      samples[k].append(run())
    _log(f"round {r + 1}/{args.rounds} done")
  ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}

  floor, lik = ms["decoder floor"], ms["decoder + likelihood"]
  result = {
      "device": str(jax.devices()[0].platform),
      "devices": len(jax.devices()),
      "batch_size": batch,
      "rounds": args.rounds,
      "iters": args.iters,
      "load_average_1min": os.getloadavg()[0],
      "ms_per_step": {n: ms[n] for n in names},
      "evals_per_image": evals,
      "floor": {"decoder_ms": floor, "decoder_plus_likelihood_ms": lik,
                "num_latents": num_latents},
      "ratios": {
          "arsm_over_decoder": ms["arsm"] / floor,
          "arsm_over_decoder_plus_likelihood": ms["arsm"] / lik,
          "authors_speedup": 330.0 / ms["arsm"],
      },
  }
  if "reinforce" in ms:
    result["ratios"]["over_reinforce"] = {n: ms[n] / ms["reinforce"]
                                          for n in names}
  if scales:
    table = []
    for scale in scales:
      plain = ms[f"arsm scale {scale:g} plain"]
      dedup = ms[f"arsm scale {scale:g} dedup"]
      table.append(dict(
          scale=scale, plain_ms=plain, dedup_ms=dedup,
          plain_over_floor=plain / lik, dedup_over_floor=dedup / lik,
          dedup_over_plain=dedup / plain, **facts[scale]))
    result["dedup"] = table
    result["aims"] = {
        "scale_10_dedup_below_floor": next(
            (r["dedup_over_floor"] < 1.0 for r in table if r["scale"] == 10),
            None),
        "scale_1_dedup_within_5_percent": next(
            (r["dedup_over_plain"] <= 1.05 for r in table if r["scale"] == 1),
            None),
    }
  if args.breakdown:
    result["pieces_ms"] = {k[len("piece: "):]: v for k, v in ms.items()
                           if k.startswith("piece: ")}
    step = vae.make_train_step(objective, tx, "threshold",
                               jax.random.PRNGKey(1))
    result["trace"] = _trace_breakdown(step, state, images, jnp.arange(batch),
                                       batch)

  if args.json:
    print(json.dumps(result, indent=1, sort_keys=True))
    return
  _print(result, names)


def _print(result, names):
  """The human-readable report of ``result``."""
  ms, ev = result["ms_per_step"], result["evals_per_image"]
  base = ms.get("reinforce", ms["arsm"])
  print(f"\n{'estimator':<20}{'ms/step':>10}{'x REINFORCE':>13}"
        f"{'evals/image':>13}")
  for name in names:
    print(f"{name:<20}{ms[name]:>10.1f}{ms[name] / base:>13.2f}"
          f"{ev[name]:>13d}")
  fl = result["floor"]
  print(f"\ndecoder forward over {fl['num_latents']} latents (batch x 46): "
        f"{fl['decoder_ms']:.1f} ms; with the Bernoulli log-likelihood: "
        f"{fl['decoder_plus_likelihood_ms']:.1f} ms")
  r = result["ratios"]
  print(f"ARSM step / decoder forward: {r['arsm_over_decoder']:.2f}")
  print(f"ARSM step / (decoder forward + likelihood): "
        f"{r['arsm_over_decoder_plus_likelihood']:.2f} (aim <= 1.25)")
  print(f"ARSM step vs the authors' 0.32-0.34 s: {r['authors_speedup']:.1f}x "
        "faster")
  if "dedup" in result:
    print(f"\n{'scale':>6}{'distinct':>10}{'buffer':>8}{'plain ms':>10}"
          f"{'dedup ms':>10}{'plain/fl':>10}{'dedup/fl':>10}{'dedup/plain':>12}"
          f"{'identical':>10}")
    for row in result["dedup"]:
      print(f"{row['scale']:>6g}{row['distinct_mean']:>10.1f}"
            f"{row['buffer_size']:>8d}{row['plain_ms']:>10.1f}"
            f"{row['dedup_ms']:>10.1f}{row['plain_over_floor']:>10.2f}"
            f"{row['dedup_over_floor']:>10.2f}{row['dedup_over_plain']:>12.2f}"
            f"{str(row['identical_after_one_step']):>10}")
    print("(floor = decoder forward + likelihood over batch x 46 latents; "
          f"aims: {result['aims']})")
  if "pieces_ms" in result:
    print("\nARSM step, parts timed as separate jitted functions (ms):")
    for k, v in result["pieces_ms"].items():
      print(f"  {k:<40}{v:>8.2f}")
    tr = result["trace"]
    if "error" in tr:
      print(f"profile: {tr['error']}")
    else:
      print(f"\nARSM step, profiled ({tr['wall_ms_per_step']:.1f} ms wall; "
            f"{tr['op_ms_per_step']:.1f} ms of operations over all threads):")
      for k, v in tr["parts_ms"].items():
        print(f"  {k:<58}{v:>8.2f} ms {100 * tr['parts_share'][k]:>5.1f} %")
      print("  largest operations:")
      for op in tr["top_ops"]:
        print(f"    {op['ms']:>7.2f} ms  {op['op']:<28} {op['shape']:<24} "
              f"{op['part']}")


if __name__ == "__main__":
  main()
