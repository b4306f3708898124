"""``config.dedup`` does less work than the plain step: a structural check.

Speed is measured by ``benchmarks/vae_step.py``, not by timed tests, but the
amount of work the compiled training step does does not depend on the
machine. Here the plain ARSM step of a small VAE and its deduplicated step
(built as ``config.dedup`` builds it: ``make_objective(...,
dedup_buffer=...)``, the buffer chosen by ``BufferSizer`` from the distinct
points of a confident encoder) are compiled, and the floating-point work of
their matrix products is read from the compiled HLO.

Why not ``cost_analysis()['flops']``: the deduplicated step keeps the plain
evaluation as the batch-level overflow branch of a ``lax.cond``, and XLA's
cost analysis charges a conditional as its most expensive branch, so the
deduplicated step reports about the plain step's flops (1.005x at batch 200)
whether or not the buffer branch is cheaper. The HLO is read instead: each
conditional counts its cheapest branch (the step a batch that fits the
buffer runs), everything else counts in full. A change that evaluates the
decoder on every pseudo latent outside the overflow branch (calling f in the
estimator instead of the lookup, a ``cond`` turned into a ``select`` by a
``vmap``, both branches computed and one selected with ``where``) makes the
deduplicated step do the plain step's work and fails here.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax import batched
from arsm_jax.objectives import vae as vae_objectives
from arsm_jax.tasks import vae
from configs import vae as vae_config

BATCH, NUM_LATENTS, NUM_CATS, PIXELS = 40, 10, 6, 64
NUM_POINTS = BATCH * batched.num_points(NUM_LATENTS, NUM_CATS)   # 40 x 16


def _dims(shape):
  return [int(d) for d in shape.split(",") if d]


def dot_flops(hlo_text, branch=min):
  """Flops of the matrix products of a compiled module (``as_text()``).

  A computation's work is that of its own ``dot`` instructions (2 x output
  elements x contracted size) plus that of every computation it calls
  (fusions, reductions, loop bodies once); a ``conditional`` adds
  ``branch`` (``min`` or ``max``) over its branches' work.
  """
  comps, entry, cur = {}, None, None
  for line in hlo_text.splitlines():
    head = re.match(r"^(ENTRY )?%(\S+) \((.*)\) -> .*\{\s*$", line)
    if head:
      cur = head.group(2)
      shapes = {n: _dims(s) for n, s in re.findall(
          r"([\w.\-]+): \w+\[([\d,]*)\]", head.group(3))}
      comps[cur] = {"shapes": shapes, "insts": []}
      if head.group(1):
        entry = cur
      continue
    if line.startswith("}"):
      cur = None
      continue
    inst = re.match(r"\s*(?:ROOT )?%(\S+) = \w+\[([\d,]*)\]", line)
    if cur is not None and inst:
      comps[cur]["shapes"][inst.group(1)] = _dims(inst.group(2))
    if cur is not None:
      comps[cur]["insts"].append(line)
  assert entry is not None, "no ENTRY computation in the HLO text"
  memo = {}

  def work(name):
    if name in memo:
      return memo[name]
    comp, total = comps[name], 0.0
    for line in comp["insts"]:
      dot = re.search(r"= \w+\[([\d,]*)\]\S* dot\(%([^,\s]+), %([^,\s)]+)\)"
                      r".*lhs_contracting_dims=\{([\d,]*)\}", line)
      if dot:
        lhs = comp["shapes"][dot.group(2)]
        contracted = math.prod(lhs[int(d)] for d in _dims(dot.group(4)))
        total += 2.0 * math.prod(_dims(dot.group(1))) * contracted
      branches = re.search(r"branch_computations=\{([^}]*)\}", line)
      if branches:
        total += branch(work(b) for b in re.findall(r"%([\w.\-]+)",
                                                     branches.group(1)))
      for called in re.findall(
          r"(?:calls|to_apply|body|condition)=%([\w.\-]+)", line):
        total += work(called)
    memo[name] = total
    return total

  return work(entry)


def _setup():
  config = vae_config.get_config("tiny")
  config.num_latents, config.num_categories = NUM_LATENTS, NUM_CATS
  config.batch_size, config.synthetic_pixels = BATCH, PIXELS
  config.encoder_hidden, config.decoder_hidden = (32,), (64,)
  est = vae.validate_config(config)
  model, _, tx = vae._build(config, est)  # pylint: disable=protected-access
  state = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  # A confident encoder: its output layer scaled until the logits' standard
  # deviation is 10 (the benchmark's "logits scale 10").
  images = jnp.asarray(np.random.default_rng(0).integers(
      0, 256, (BATCH, PIXELS)), jnp.uint8)
  x = (images > 127).astype(jnp.float32)
  factor = 10.0 / float(jnp.std(model.apply(state.params, x,
                                            method=model.encode)))
  params = jax.tree_util.tree_map(lambda a: a, state.params)
  out = params["params"]["encoder"]["out"]
  out["kernel"], out["bias"] = factor * out["kernel"], factor * out["bias"]
  state = state.replace(params=params)
  logits = model.apply(state.params, x, method=model.encode)
  sizer = batched.BufferSizer(NUM_POINTS)
  for d in range(4):
    sizer.observe(jnp.sum(batched.count_distinct(jax.random.PRNGKey(d),
                                                 logits)))
  return model, est, tx, state, images, sizer.size


def _compiled_step(model, est, tx, state, images, buffer):
  objective = vae_objectives.make_objective(model, est, 0, buffer)
  step = vae.make_train_step(objective, tx, "threshold",
                             jax.random.PRNGKey(1))
  return step.lower(state, images, jnp.arange(BATCH)).compile().as_text()


def test_dedup_step_does_a_fraction_of_the_plain_work():
  model, est, tx, state, images, buffer = _setup()
  plain = _compiled_step(model, est, tx, state, images, None)
  dedup = _compiled_step(model, est, tx, state, images, buffer)
  plain_work = dot_flops(plain)
  # The parse sees the decoder on the pseudo latents in the plain step, and
  # the plain evaluation in the deduplicated step's overflow branch.
  assert re.search(rf"\[{NUM_POINTS},\d+\]\S* dot\(", plain)
  assert dot_flops(dedup, branch=max) >= 0.95 * plain_work
  # A batch that fits the buffer: the decoder on `buffer` latents instead of
  # all of them (0.48 of the plain work here, buffer 0.36 of the latents);
  # the aim for the step's time at logit scale 10 is 0.6 of plain.
  assert buffer <= 0.4 * NUM_POINTS, buffer
  ratio = dot_flops(dedup) / plain_work
  assert ratio <= 0.6, (ratio, buffer / NUM_POINTS)
