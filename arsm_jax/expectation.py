r"""A differentiable expectation: put any registered estimator inside ``jax.grad``.

``expectation(key, logits, f, *args, estimator='arsm')`` returns a surrogate
whose *value* is the estimator's estimate of :math:`E_z[f(z, *args)]` and whose
*gradients* are

* with respect to ``logits``: exactly the estimator's gradient estimate for
  that key (the same array ``estimators.get(estimator)(key, logits, f)``
  returns);
* with respect to anything ``f`` closes over or takes in ``args`` (decoder
  parameters, say): the pathwise gradient of f at the estimator's samples,
  ``sum_s w_s grad f(samples_s)`` (for single-draw estimators simply
  ``grad f(z)`` at the sampled z). Evaluations of f at ARSM's pseudo actions
  are treated as constants.

So one ``jax.grad`` of a loss built from it trains an encoder (through the
logits) and a decoder (through f) together. If ``f`` itself depends on the
logits (an ELBO's ``log q(z|x)`` term does), that direct dependence is
differentiated too, as the gradient of ``E_q[f_phi(z)]`` requires.

It works as: ``value = sum_s sg(w_s) f(sg(samples_s)) + score(sg(g), logits)``
where ``sg`` is ``jax.lax.stop_gradient``, ``g`` the estimate and ``score``
a term that is zero in value and whose gradient in the logits is ``g``
(``sum(g * (logits - sg(logits)))``, written as a custom JVP so that masked
``-inf`` logits give 0, not ``nan``). A pathwise estimator's samples are not
stopped: they depend on the logits only through ``sg``, but a traced
temperature setting (learned with the model) gets its gradient through them.

With batch dimensions and a stateful estimator, every item draws with the
estimator's ``item_state`` and the batch's new state is its ``batch_update``
of the items' new states (RELAX: one Adam step on the batch mean of the
items' control-variate gradients; see ``expectation``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from arsm_jax import estimators as estimators_lib
from arsm_jax.estimators import validation

Array = jax.Array
sg = jax.lax.stop_gradient


@jax.custom_jvp
def score_term(grad: Array, logits: Array) -> Array:
  r"""Zero in value; its gradient with respect to ``logits`` is ``grad``.

  The same as ``sum(grad * (logits - sg(logits)))`` for finite logits, but
  zero (not ``-inf - -inf = nan``) at masked logits.
  """
  del logits
  return jnp.zeros((), grad.dtype)


@score_term.defjvp
def _score_term_jvp(primals, tangents):
  grad, _ = primals
  _, logits_dot = tangents
  return score_term(*primals), jnp.sum(grad * logits_dot)


def _single(est: estimators_lib.Estimator, key, logits: Array,
            f: Callable[..., Array], args: tuple, state,
            pathwise_samples: int | None = None):
  f_item = lambda z: f(z, *args)
  # The estimator sees f with its output cut from the outer gradient (pseudo
  # evaluations are constants), except for pathwise estimators, which
  # differentiate f in z themselves, and stateful ones (RELAX's control
  # variate may differentiate f at relaxed samples). Everything the
  # estimator returns is cut from the outer gradient below anyway.
  f_est = (f_item if est.pathwise or est.stateful
           else (lambda z: sg(f_item(z))))
  out = est.estimate(key, sg(logits), f_est, state=state)
  # A pathwise estimator's samples keep their dependence on traced settings
  # (a learned temperature): its value is the sample's, its gradient reaches
  # the temperature. The logits reach them only through the score term.
  samples = out.samples if est.pathwise else sg(out.samples)
  weights = sg(out.weights)
  if pathwise_samples is not None and pathwise_samples < weights.shape[0]:
    # Keep the first draws, rescaled to the same total weight: for i.i.d.
    # equally weighted draws an unbiased, cheaper pathwise term.
    kept = weights[:pathwise_samples]
    weights = kept * (jnp.sum(weights) / jnp.sum(kept))
    samples = samples[:pathwise_samples]
  path = jnp.sum(weights * jax.vmap(f_item)(samples).astype(weights.dtype))
  score = score_term(sg(out.grad), logits)
  return path + score.astype(path.dtype), out.state


def expectation(key, logits, f: Callable[..., Array], *args,
                estimator: str | estimators_lib.Estimator = "arsm",
                state: Any = None, pathwise_samples: int | None = None,
                **settings):
  r"""Differentiable single-draw estimate of ``E_{z ~ Cat(softmax(logits))}[f(z, *args)]``.

  Args:
    key: one PRNG key (``jax.random.key(seed)`` or
      ``jax.random.PRNGKey(seed)``; ``None`` only for an estimator that
      ignores it, ``exact``); anything else is a ``ValueError``. With batch
      dimensions it is split into one key per item,
      ``jax.random.split(key, B)`` for ``B = prod(batch_shape)``, item ``b``
      (in row-major order) getting ``keys[b]``.
    logits: ``[..., K, C]``: optional leading batch dimensions, then K
      categorical dimensions of C categories.
    f: ``f(z, *args) -> scalar`` for one item, ``z`` one-hot ``[K, C]``.
    *args: per-item arguments of f (an image, say). Every leaf must have the
      leading batch dimensions of ``logits``; f receives one item's slice.
      Values shared by all items belong in f's closure instead.
    estimator: a registered name (``arsm_jax.estimators.names()``) or an
      ``Estimator``.
    state: the state of a stateful estimator (RELAX), from ``est.init``.
    pathwise_samples: if set, only the estimator's first ``pathwise_samples``
      samples carry the pathwise gradient (and the value), their weights
      rescaled to the full total. Meant for estimators whose samples are
      i.i.d. with equal weights (``reinforce_loo``, ``*_multi``): the
      gradient through f stays unbiased at the cost of that many
      differentiable evaluations instead of all of them. The logit gradient
      is unchanged. ``None`` uses every sample.
    **settings: estimator settings, as for ``estimators.get``.

  Returns:
    An array of shape ``logits.shape[:-2]`` (a scalar without batch
    dimensions) holding the per-item surrogates; reduce it (``.mean()``) to
    get a loss for ``jax.grad``. For a stateful estimator, a pair
    ``(values, new_state)``. With batch dimensions every item draws with
    ``est.item_state(state)`` and the new state is
    ``est.batch_update(state, item_states)``, the estimator's hooks (see
    ``arsm_jax.estimators.contract``): for RELAX one Adam step on the batch
    mean of the items' control-variate gradients, one optimiser step on the
    batch objective; by default the mean of the items' new states.
  """
  est = estimators_lib.get(estimator, **settings)
  # Checked before the key is split for a batch: an int seed, None or a
  # batch of keys is a ValueError saying what to pass.
  key = validation.check_key(key, "expectation", allow_none=not est.needs_key)
  if pathwise_samples is not None and (
      isinstance(pathwise_samples, bool) or
      not isinstance(pathwise_samples, int) or pathwise_samples < 1):
    raise ValueError(f"expectation: pathwise_samples must be None or an int "
                     f">= 1; got {pathwise_samples!r}.")
  logits = jnp.asarray(logits)
  if logits.ndim < 2:
    raise ValueError(
        f"expectation: logits must have shape [..., K, C]; got {logits.shape}.")
  batch_shape = logits.shape[:-2]
  if est.stateful and state is None:
    raise ValueError(
        f"Estimator {est.name!r} is stateful: pass state=est.init(key, logits)"
        " (one item's logits) and carry the returned state forward.")
  if not batch_shape:
    value, new_state = _single(est, key, logits, f, args, state,
                               pathwise_samples)
    return (value, new_state) if est.stateful else value

  size = math.prod(batch_shape)
  leaves = jax.tree_util.tree_leaves(args)
  for leaf in leaves:
    if jnp.shape(leaf)[:len(batch_shape)] != batch_shape:
      raise ValueError(
          f"expectation: every leaf of args must start with the batch shape "
          f"{batch_shape} of logits; got a leaf of shape {jnp.shape(leaf)}.")
  flat_logits = logits.reshape((size,) + logits.shape[-2:])
  flat_args = jax.tree_util.tree_map(
      lambda a: jnp.reshape(a, (size,) + jnp.shape(a)[len(batch_shape):]), args)
  # [B] keys; None for an estimator that ignores its key (exact).
  keys = None if key is None else jax.random.split(key, size)
  item_state = est.item_state(state)
  values, item_states = jax.vmap(
      lambda k, lg, a: _single(est, k, lg, f, a, item_state,
                               pathwise_samples))(
          keys, flat_logits, flat_args)
  values = values.reshape(batch_shape)
  if not est.stateful:
    return values
  return values, est.batch_update(state, item_states)
