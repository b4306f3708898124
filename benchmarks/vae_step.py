r"""Speed of the VAE training step per estimator, ARSM against its floor, and batch dedup.

    python benchmarks/vae_step.py                       # all registered
    python benchmarks/vae_step.py --estimators=reinforce,arsm --rounds=3
    python benchmarks/vae_step.py --estimators=arsm --json   # one JSON object
    python benchmarks/vae_step.py --estimators=arsm,unordered_set:num_samples=4
    python benchmarks/vae_step.py --estimators=multi_sample --iters=3 --rounds=2 \
        --dedup_scales= --no-breakdown \
        --out=docs/results/vae_step_multi_sample.json
    python benchmarks/vae_step.py --estimators=reinforce,arsm \
        --checkpoint=runs/vae_arsm_nonlinear --no-breakdown --json

For each estimator: the jitted training step (encoder, estimator, decoder,
backward pass, Adam) of the ``nonlinear`` VAE at batch 200, K = 20, C = 10 in
ms/step and as a ratio to REINFORCE's and to ARSM's step. An estimator is a
registered name, optionally with settings (``name:key=value:key=value``;
its label is ``name (k=4)`` for ``num_samples=4``, else ``name (key=value,
...)``); ``all`` is every registered one, ``multi_sample`` the estimators that
spend several evaluations on one draw (``reinforce_wor`` and
``unordered_set`` at k = 4 and 8, ``indecater``, ``gumbel_rao``) beside ARSM
(with ``--out`` the file ``scripts/make_choosing_table.py`` reads, its
``rows``), ``antithetic`` ARSM's antithetic successors of issue 29 (ARSM
with partial integration, CARMS at M = 4 and 8, DisARM at 2, 4 and 8
evaluations) beside REINFORCE-LOO at 2, 4, 8 and 46 samples, for ratios at
equal evaluations (``over_equal_evals_reinforce_loo`` in the JSON). Also the *floor*: one decoder
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
a few draws). With ``--checkpoint`` (a VAE run's workdir, e.g. a 100-epoch
ARSM run) one more row: the trained model on real MNIST training images
(``threshold`` binarisation), its plain step against the step of
``--config.dedup`` (``make_objective(..., dedup_buffer=...)``, the training
loop's own objective), the buffer sized from ``--trained_batches`` batches.
The run's directory is only read: its ``config.json`` and newest checkpoint
are copied to a temporary folder and restored from there. Reported: distinct
points per image, both steps, both against the floor, and whether the
deduplicated step produced bit-for-bit the same parameters as the plain one.

Every timed call runs the step from the same state, so the model is not
trained while it is timed (chained steps made the scale-10 encoder less
confident within a few steps, and the deduplicated step then overflowed its
buffer and timed as the plain one); ``timed_batch_distinct`` and
``timed_batch_overflows`` say whether the timed batch fits the buffer.
Timings are interleaved: each round times every candidate once (median of
``--iters`` steps), and the median over rounds is reported, so a busy machine
slows all candidates alike. Ratios are meaningful; absolute numbers depend on
the load. The authors' step is timed beside ours by
``benchmarks/authors_speed.py``.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from arsm_jax import batched
from arsm_jax import data as data_lib
from arsm_jax import estimators
from arsm_jax import runs
from arsm_jax.estimators import swap
from arsm_jax.models import vae as vae_models
from arsm_jax.objectives import vae as vae_objectives
from arsm_jax.tasks import vae
# The configs live beside the package, not in it: make the repository root
# importable when this file is run as a script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import vae as vae_config  # pylint: disable=g-import-not-at-top,wrong-import-position

# Names the nonlinear VAE cannot use at K = 20, C = 10.
_SKIP = {"exact"}
# Settings matching the presets (equal evaluations per step for RLOO).
_SETTINGS = {"reinforce_loo": {"num_samples": 46}}
# --estimators=multi_sample: the estimators that spend several evaluations on
# one draw, beside ARSM (the labels are those of arsm_jax.reporting.choosing).
_MULTI_SAMPLE = ("arsm,reinforce_wor:num_samples=4,"
                 "reinforce_wor:num_samples=8,unordered_set:num_samples=4,"
                 "unordered_set:num_samples=8,indecater,gumbel_rao")
# --estimators=antithetic: ARSM's antithetic successors (issue 29) beside
# REINFORCE-LOO at the same evaluations per image (2, 4, 8, 46) and ARSM.
_ANTITHETIC = ("arsm,arsm:partial_integration=true,"
               "reinforce_loo:num_samples=2,disarm,"
               "reinforce_loo:num_samples=4,carms:num_samples=4,"
               "disarm:num_pairs=2,"
               "reinforce_loo:num_samples=8,carms:num_samples=8,"
               "disarm:num_pairs=4,reinforce_loo:num_samples=46")
# Fields of a run's config that must match the benchmark's model.
_MODEL_FIELDS = {"model": "nonlinear", "num_latents": 20, "num_categories": 10,
                 "encoder_hidden": [512, 256], "decoder_hidden": [256, 512],
                 "weight_init": "lecun", "pin_first_logit": False}
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


def _value(text):
  """A setting's value from the command line: int, float, bool or str."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return {"true": True, "false": False}.get(text.lower(), text)


def _label(name, settings):
  if not settings:
    return name
  if set(settings) == {"num_samples"}:
    letter = {"carms": "M", "reinforce_loo": "n"}.get(name, "k")
    return f"{name} ({letter}={settings['num_samples']})"
  if set(settings) == {"num_pairs"}:
    return f"{name} ({2 * settings['num_pairs']} evals)"
  if settings == {"partial_integration": True}:
    return f"{name} (partial_integration)"
  return f"{name} ({', '.join(f'{k}={v}' for k, v in settings.items())})"


def parse_estimators(spec):
  """``[(label, name, settings)]`` from ``--estimators`` (see the module doc).

  Raises:
    SystemExit: for an unknown name or a setting without ``=``.
  """
  if spec == "all":
    names = [n for n in estimators.names() if n not in _SKIP]
    out = [(n, n, dict(_SETTINGS.get(n, {}))) for n in names]
  else:
    spec = {"multi_sample": _MULTI_SAMPLE,
            "antithetic": _ANTITHETIC}.get(spec, spec)
    out = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
      name, *pairs = item.split(":")
      if name not in estimators.names():
        raise SystemExit(f"--estimators: unknown estimator {name!r}; "
                         f"registered: {', '.join(estimators.names())}.")
      if any("=" not in p for p in pairs):
        raise SystemExit(f"--estimators: settings are key=value; got "
                         f"{item!r}.")
      if not pairs:   # the preset's settings, under the plain name
        out.append((name, name, dict(_SETTINGS.get(name, {}))))
        continue
      settings = {k: _value(v) for k, v in (p.split("=", 1) for p in pairs)}
      out.append((_label(name, settings), name, settings))
  if "arsm" not in [label for label, _, _ in out]:
    out.append(("arsm", "arsm", {}))
  return out


def _setup(name, batch, settings=None):
  config = vae_config.get_config("arsm_nonlinear")
  config.estimator = name
  settings = _SETTINGS.get(name, {}) if settings is None else settings
  for k, v in settings.items():
    config.estimator_settings[k] = v
  config.batch_size = batch
  est = vae.validate_config(config)
  model, objective, tx = vae._build(config, est)  # pylint: disable=protected-access
  state = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  return config, est, model, objective, tx, state


def _stepper(step, state, images, idx, iters):
  """A timer of ``step`` that runs it from the same ``state`` every time.

  The steps are not chained: chained steps train the model while it is
  timed, and the confident encoder of a dedup row does not stay confident
  (at logit scale 10 the batch's distinct points went from 2,988 at the
  first step to 3,435 at the seventh, past the buffer of 3,432 sized from
  the first parameters), so most timed steps took the overflow branch and
  the deduplicated step timed as the plain one.
  """
  jax.block_until_ready(step(state, images, idx))   # compile
  return _median_timer(lambda: step(state, images, idx), iters)


def _step_timer(name, settings, batch, images, iters):
  _, est, _, objective, tx, state = _setup(name, batch, settings)
  step = vae.make_train_step(objective, tx, "threshold", jax.random.PRNGKey(1))
  t = time.perf_counter()
  run = _stepper(step, state, images, jnp.arange(batch), iters)
  compile_s = time.perf_counter() - t
  return run, vae.evals_per_image(est, NUM_LATENTS, NUM_CATS), compile_s


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
  neg_elbo_at = lambda params, z, x, lq: vae_objectives.neg_elbo_one_layer(
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
    buffers = _buffers(counts, batch)
    steps = {}
    for label, buf in buffers.items():
      steps[label] = vae.make_train_step(_scaled_objective(model, factor, buf),
                                         tx, "threshold", jax.random.PRNGKey(1))
    facts[scale] = _dedup_facts(
        counts, buffers, batch, steps, state, images, idx,
        lambda p, xb, f=factor: f * model.apply(p, xb, method=model.encode))
    for label, s in steps.items():
      timers[f"arsm scale {scale:g} {label}"] = _stepper(s, state, images,
                                                         idx, iters)
  return timers, facts


def _buffers(counts, batch):
  """The buffers to time, from distinct counts ``[batches, B]``.

  ``plain``: None. ``dedup``: BufferSizer's size (what ``config.dedup``
  uses; None when it chooses the plain path, saving under 10 %). When it
  does, also ``forced``: the size with ``min_saving=0``, to show what
  deduplicating would cost there.
  """
  num_all = batch * NUM_PAIRS
  sizes = {}
  for label, saving in (("dedup", 0.1), ("forced", 0.0)):
    sizer = batched.BufferSizer(num_points=num_all, min_saving=saving)
    for row in counts:
      sizer.observe(int(row.sum()))
    sizes[label] = sizer.size if sizer.size < num_all else None
  out = {"plain": None, "dedup": sizes["dedup"]}
  if sizes["dedup"] is None and sizes["forced"] is not None:
    out["forced"] = sizes["forced"]
  return out


def _timed_total(state, images, idx, logits_fn):
  """Distinct points of the timed step's batch, drawn with the step's keys.

  The keys of ``vae.make_train_step`` (``fold_in(PRNGKey(1), step)``, then
  binarisation and loss keys) and of the ARSM losses here and in
  ``objectives.vae`` (the estimator's key first of the loss key's split).
  """
  key = jax.random.fold_in(jax.random.PRNGKey(1), state.step)
  k_bin, k_loss = jax.random.split(key)
  k_est, _ = jax.random.split(k_loss)
  x = data_lib.binarize(images[idx], "threshold", k_bin)
  return int(jnp.sum(batched.count_distinct(k_est,
                                            logits_fn(state.params, x))))


def _dedup_facts(counts, buffers, batch, steps, state, images, idx,
                 logits_fn):
  """Distinct counts, whether the timed batch overflows, and whether every
  step gives the plain parameters."""
  # A step returns (new state, the batch's summed -ELBO).
  one = {k: jax.block_until_ready(s(state, images, idx))[0]
         for k, s in steps.items()}
  plain = jax.tree_util.tree_leaves(one["plain"].params)
  identical = all(
      all(np.array_equal(a, b)
          for a, b in zip(plain, jax.tree_util.tree_leaves(one[k].params)))
      for k in steps)
  q = np.percentile(counts, [10, 50, 90])
  size = buffers["dedup"] or batch * NUM_PAIRS
  timed = _timed_total(state, images, idx, logits_fn)
  return {
      "distinct_mean": float(counts.mean()),
      "distinct_p10_p50_p90": [float(v) for v in q],
      "distinct_max": int(counts.max()),
      "points_per_image": NUM_PAIRS,
      "images_counted": int(counts.size),
      "batch_distinct_max": int(counts.sum(axis=1).max()),
      "buffer_size": size,
      # False: BufferSizer chose the plain path (too little to save), so
      # both steps are the same program and any difference is noise.
      "dedup_active": size < batch * NUM_PAIRS,
      "forced_buffer_size": buffers.get("forced"),
      "identical_after_one_step": bool(identical),
      # Every timed step is this batch at these parameters (see _stepper).
      "timed_batch_distinct": timed,
      "timed_batch_overflows": timed > size,
  }


def _restore_run(workdir, batch):
  """``(model, tx, state, config_json)`` of a run's newest checkpoint.

  ``workdir`` is only read: its ``config.json`` and newest checkpoint are
  copied into a temporary folder, and orbax restores from the copy.
  """
  workdir = os.path.expanduser(workdir)
  with open(os.path.join(workdir, "config.json")) as fh:
    saved = json.load(fh)
  wrong = {k: saved.get(k) for k, v in _MODEL_FIELDS.items()
           if saved.get(k) != v}
  if wrong:
    raise SystemExit(f"--checkpoint: {workdir} holds another model than the "
                     f"benchmark's ({_MODEL_FIELDS}): {wrong}.")
  ckpt_dir = os.path.join(workdir, runs.CHECKPOINT_DIR)
  steps = sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit())
  if not steps:
    raise SystemExit(f"--checkpoint: no checkpoint under {ckpt_dir}.")
  _, _, model, _, tx, template = _setup("arsm", batch)
  with tempfile.TemporaryDirectory() as tmp:
    shutil.copytree(os.path.join(ckpt_dir, str(steps[-1])),
                    os.path.join(tmp, runs.CHECKPOINT_DIR, str(steps[-1])))
    state, step = vae.restore_train_state(tmp, template)
  if step != steps[-1]:
    raise SystemExit(f"--checkpoint: the checkpoint at step {steps[-1]} of "
                     f"{ckpt_dir} could not be restored.")
  _log(f"trained encoder: {workdir}, step {step}")
  return model, tx, state, saved


def _trained_candidate(workdir, batch, num_batches, iters, draws=2):
  """Plain and ``config.dedup`` steps of a trained run on real MNIST."""
  model, tx, state, saved = _restore_run(workdir, batch)
  splits = data_lib.load(saved.get("dataset", "mnist"), saved.get("data_dir"),
                         "", saved.get("num_validation", 5000),
                         saved.get("validation_split", "last"))
  images = jnp.asarray(splits["train"][:num_batches * batch])  # uint8 [N, D]
  x = data_lib.binarize(images, "threshold")
  logits = model.apply(state.params, x, method=model.encode)   # [N, K, C]
  counts = np.stack([
      np.asarray(batched.count_distinct(jax.random.PRNGKey(200 + d),
                                        logits[i * batch:(i + 1) * batch]))
      for i in range(num_batches) for d in range(draws)])       # [n, B]
  buffers = _buffers(counts, batch)
  est = estimators.get("arsm")
  steps = {}
  for label, buf in buffers.items():
    objective = vae_objectives.make_objective(model, est, 0, buf)
    steps[label] = vae.make_train_step(objective, tx, "threshold",
                                       jax.random.PRNGKey(1))
  idx = jnp.arange(batch)
  facts = _dedup_facts(counts, buffers, batch, steps, state, images, idx,
                       lambda p, xb: model.apply(p, xb, method=model.encode))
  facts.update(checkpoint=os.path.expanduser(workdir),
               checkpoint_step=int(state.step),
               logit_std=float(jnp.std(logits)))
  timers = {f"arsm trained {k}": _stepper(s, state, images, idx, iters)
            for k, s in steps.items()}
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
  state, _ = jax.block_until_ready(step(state, images, idx))
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      t0 = time.perf_counter()
      for _ in range(steps):
        state, _ = jax.block_until_ready(step(state, images, idx))
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
                      help="comma-separated names, each optionally with "
                      "settings (name:key=value:...), 'all' registered or "
                      "'new' (issue 15's)")
  parser.add_argument("--batch_size", type=int, default=200)
  parser.add_argument("--iters", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--dedup_scales", default="1,3,10",
                      help="logit scales for the dedup table ('' for none)")
  parser.add_argument("--checkpoint", default="",
                      help="a VAE run's workdir (read only): adds the trained "
                      "encoder's row to the dedup table")
  parser.add_argument("--trained_batches", type=int, default=5,
                      help="batches of real images whose distinct points "
                      "size the trained row's buffer")
  parser.add_argument("--breakdown", action=argparse.BooleanOptionalAction,
                      default=True, help="profile and time the step's parts")
  parser.add_argument("--json", action="store_true",
                      help="print one JSON object with every number")
  parser.add_argument("--out", default="",
                      help="also write that JSON object to this file")
  args = parser.parse_args()
  chosen = parse_estimators(args.estimators)
  names = [label for label, _, _ in chosen]
  scales = [float(s) for s in args.dedup_scales.split(",") if s.strip()]
  batch = args.batch_size

  images = jnp.asarray(np.random.default_rng(0).integers(
      0, 256, (batch, 784)), jnp.uint8)
  _log(f"devices: {jax.devices()}; batch {batch}, nonlinear VAE, K = 20, "
       "C = 10; compiling ...")
  timers, evals, compile_s = {}, {}, {}
  for label, name, settings in chosen:
    timers[label], evals[label], compile_s[label] = _step_timer(
        name, settings, batch, images, args.iters)
    _log(f"compiled {label} in {compile_s[label]:.1f}s")
  _, _, model, objective, tx, state = _setup("arsm", batch)
  with_lik, decoder, num_latents = _decoder_timers(model, state.params, batch,
                                                   args.iters)
  timers["decoder floor"] = decoder
  timers["decoder + likelihood"] = with_lik
  facts = {}
  if scales:
    dedup_timers, facts = _dedup_candidates(scales, batch, images, args.iters)
    timers.update(dedup_timers)
  if args.checkpoint:
    trained_timers, facts["trained"] = _trained_candidate(
        args.checkpoint, batch, args.trained_batches, args.iters)
    timers.update(trained_timers)
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
      "compile_s": compile_s,
      # One row per estimator, the form scripts/make_choosing_table.py reads.
      "rows": [{"label": label, "estimator": name, "settings": settings,
                "ms_per_step": ms[label], "ratio_to_arsm": ms[label]
                / ms["arsm"], "evals_per_image": evals[label]}
               for label, name, settings in chosen],
      "floor": {"decoder_ms": floor, "decoder_plus_likelihood_ms": lik,
                "num_latents": num_latents},
      "ratios": {
          "arsm_over_decoder": ms["arsm"] / floor,
          "arsm_over_decoder_plus_likelihood": ms["arsm"] / lik,
      },
  }
  if "reinforce" in ms:
    result["ratios"]["over_reinforce"] = {n: ms[n] / ms["reinforce"]
                                          for n in names}
  # Each estimator against REINFORCE-LOO at its own evaluations per image,
  # where that RLOO was timed too.
  rloo = {evals[label]: label for label, name, _ in chosen
          if name == "reinforce_loo"}
  equal = {label: ms[label] / ms[rloo[evals[label]]] for label in names
           if evals.get(label) in rloo}
  if equal:
    result["ratios"]["over_equal_evals_reinforce_loo"] = equal
  if facts:
    table = []
    for key in list(scales) + (["trained"] if args.checkpoint else []):
      tag = "trained" if key == "trained" else f"scale {key:g}"
      plain = ms[f"arsm {tag} plain"]
      dedup = ms[f"arsm {tag} dedup"]
      row = dict(
          scale=key, plain_ms=plain, dedup_ms=dedup,
          plain_over_floor=plain / lik, dedup_over_floor=dedup / lik,
          plain_over_decoder=plain / floor, dedup_over_decoder=dedup / floor,
          dedup_over_plain=dedup / plain, **facts[key])
      forced = ms.get(f"arsm {tag} forced")
      if forced is not None:
        row.update(forced_ms=forced, forced_over_floor=forced / lik,
                   forced_over_plain=forced / plain)
      table.append(row)
    result["dedup"] = table
    rows = {r["scale"]: r for r in table}
    below = lambda k: (rows[k]["dedup_over_floor"] < 1.0 if k in rows
                       else None)
    result["aims"] = {
        # Floor = decoder forward + likelihood over the B x 46 latents.
        "scale_10_dedup_below_floor": below(10.0),
        "trained_dedup_below_floor": below("trained"),
        "scale_1_dedup_within_5_percent": (
            rows[1.0]["dedup_over_plain"] <= 1.05 if 1.0 in rows else None),
    }
  if args.breakdown:
    result["pieces_ms"] = {k[len("piece: "):]: v for k, v in ms.items()
                           if k.startswith("piece: ")}
    step = vae.make_train_step(objective, tx, "threshold",
                               jax.random.PRNGKey(1))
    result["trace"] = _trace_breakdown(step, state, images, jnp.arange(batch),
                                       batch)

  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
      json.dump(result, fh, indent=1, sort_keys=True)
      fh.write("\n")
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
  if "dedup" in result:
    print(f"\n{'scale':>8}{'distinct':>10}{'buffer':>8}{'plain ms':>10}"
          f"{'dedup ms':>10}{'plain/fl':>10}{'dedup/fl':>10}{'dedup/plain':>12}"
          f"{'forced/plain':>13}{'identical':>10}{'overflows':>10}")
    for row in result["dedup"]:
      forced = (f"{row['forced_over_plain']:.2f}" if "forced_ms" in row
                else "-")
      print(f"{row['scale']!s:>8}{row['distinct_mean']:>10.1f}"
            f"{row['buffer_size']:>8d}{row['plain_ms']:>10.1f}"
            f"{row['dedup_ms']:>10.1f}{row['plain_over_floor']:>10.2f}"
            f"{row['dedup_over_floor']:>10.2f}{row['dedup_over_plain']:>12.2f}"
            f"{forced:>13}{str(row['identical_after_one_step']):>10}"
            f"{str(row['timed_batch_overflows']):>10}")
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
