r"""The categorical VAE's objectives: single-sample ELBO surrogates for any estimator.

The objective per image is the single-sample negative ELBO

.. math::

  f(z, x) = -\log p(x|z) - \log p(z) + \log q(z|x),

minimised in expectation over :math:`z \sim q(z|x)`. One call of
:func:`arsm_jax.expectation` per batch gives a surrogate whose gradient is the
estimator's estimate for the encoder logits and the pathwise gradient for the
decoder (and for the direct dependence of :math:`\log q` on the encoder), so
``jax.grad`` of its mean trains both. Under ``vmap`` over the batch all of
ARSM's pseudo-action evaluations of a step form one decoder call over
``batch x (C(C-1)/2 + 1)`` latents.

Two stochastic layers (:class:`~arsm_jax.models.vae.TwoLayerVAE`), with
score-function estimators (``arsm``, ``reinforce_loo``, ``relax``, ...).
Layer 1 is estimated with :math:`f_1(z_1) = f(z_1, z_2(z_1))`, where
:math:`z_2(z_1) = \arg\min_i(\log\varpi_i - \mathrm{logits}_2(z_1)_i)` uses
one Dirichlet draw :math:`\varpi` per image shared by every pseudo action of
layer 1, so those pseudo actions propagate through layer 2 with common noise.
Layer 2 gets its own estimate at a sample :math:`z_1 \sim q(z_1|x)` (for
``arsm``/``ar`` exactly the :math:`z_1` and :math:`z_2` of layer 1's draw,
since they share its keys; for the others an independent draw, which keeps
each layer's estimate unbiased), contributing only its score term. A
stateful estimator (RELAX) has one state per layer, ``(state_1, state_2)``.

Two stochastic layers with relaxed estimators (``gumbel_softmax``,
``st_gumbel_softmax``, ``reinmax``): the usual multi-layer construction. The
relaxed (or straight-through) :math:`z_1` goes into layer 2, whose logits
:math:`\mathrm{logits}_2(z_1)` are relaxed in turn by the same estimator:
:math:`f_1(z_1) = E_{z_2}[f(z_1, z_2)]` by a nested ``expectation``, so the
gradient reaches :math:`z_1` both directly and through layer 2's logits.

A model built with ``learned_temperature`` holds a learned temperature
(parameter ``log_temperature``); the objective gives
:math:`\tau = \exp(\log\tau)` to the estimator as its ``temperature``, and
the pathwise term of the surrogate carries the gradient to it (for
``gumbel_softmax`` and ``st_gumbel_softmax``).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from arsm_jax import batched
from arsm_jax import estimators
from arsm_jax.estimators import swap
from arsm_jax.expectation import expectation
from arsm_jax.models import vae as vae_models

Array = jax.Array
sg = jax.lax.stop_gradient

# Relaxed estimators whose temperature can be learned with the model (the
# gradient reaches it through their relaxed sample).
LEARNABLE_TEMPERATURE = ("gumbel_softmax", "st_gumbel_softmax")


class Objective(NamedTuple):
  """The functions a model contributes to training and evaluation.

  Attributes:
    loss: ``(params, key, x, est_state) -> (loss, (train_neg_elbo [B],
      new_est_state))``; ``jax.grad`` of ``loss`` is the training gradient.
    logit_grads: ``(params, key, x, est_state) -> [B, K, C]`` gradient of the
      summed surrogate w.r.t. the (first-layer) encoder logits.
    neg_elbo: ``(params, key, x) -> [B]`` single-sample -ELBO at z ~ q.
    log_weights: ``(params, key, x, num_samples) -> [S, B]`` importance
      log-weights ``log p(x, z_s) - log q(z_s|x)``.
  """

  loss: Callable[..., Any]
  logit_grads: Callable[..., Array]
  neg_elbo: Callable[..., Array]
  log_weights: Callable[..., Array]


def check_estimator(model_name: str, est: estimators.Estimator,
                    learn_temperature: bool = False) -> None:
  """Raises ``ValueError`` for an estimator the model cannot train with.

  Args:
    model_name: one of :data:`arsm_jax.models.vae.MODELS`.
    est: the estimator.
    learn_temperature: whether the model learns the estimator's temperature.
  """
  if (model_name == "two_layer" and est.name == "relax"
      and est.kwargs.get("include_f", False)):
    raise ValueError(
        "model 'two_layer' with relax needs include_f=False: layer 1's f "
        "goes through a hard z2 drawn from q(z2|z1), so it is not continuous "
        "in z1 and the control variate's eta*f term would bias the estimate "
        "(the vae 'relax' preset sets include_f=True; override it with "
        "--config.estimator_settings.include_f=False).")
  if not isinstance(learn_temperature, bool):
    raise ValueError(f"learn_temperature must be True or False; got "
                     f"{learn_temperature!r}.")
  if learn_temperature and est.name not in LEARNABLE_TEMPERATURE:
    raise ValueError(
        f"learn_temperature=True needs an estimator whose temperature gets a "
        f"gradient ({', '.join(LEARNABLE_TEMPERATURE)}); got {est.name!r}.")


def init_estimator_state(model, est: estimators.Estimator, key) -> Any:
  """The estimator state the objective's ``loss`` takes (``None`` if stateless).

  One state for one stochastic layer, ``(state_1, state_2)`` for two.
  """
  if not est.stateful:
    return None
  logits = jnp.zeros((model.num_latents, model.num_categories), jnp.float32)
  if isinstance(model, vae_models.TwoLayerVAE):
    k1, k2 = jax.random.split(key)
    return (est.init(k1, logits), est.init(k2, logits))
  return est.init(key, logits)


def has_learned_temperature(model) -> bool:
  return getattr(model, "learned_temperature", None) is not None


def learned_temperature(model, params) -> Array:
  """The temperature exp(log_temperature) that ``model`` learns, at ``params``.

  Raises a ValueError for a model built without ``learned_temperature``.
  """
  if not has_learned_temperature(model):
    raise ValueError(f"{type(model).__name__} was built without "
                     "learned_temperature: it has no temperature to read.")
  return model.apply(params, method=model.temperature)


def _with_temperature(model, est: estimators.Estimator, params):
  """``est`` with the model's learned temperature, if it has one."""
  if not has_learned_temperature(model):
    return est
  return estimators.get(est.name, **{**est.kwargs,
                                     "temperature": learned_temperature(
                                         model, params)})


def _onehot_sample(key, logits: Array) -> Array:
  z = jax.random.categorical(key, logits, axis=-1)
  return jax.nn.one_hot(z, logits.shape[-1], dtype=logits.dtype)


def neg_elbo_one_layer(model, params, z: Array, x: Array,
                       log_q: Array) -> Array:
  r"""One image's :math:`-\log p(x|z) - \log p(z) + \log q(z|x)`.

  Args:
    model: a :class:`~arsm_jax.models.vae.CategoricalVAE`.
    params: its parameters.
    z: ``[..., K, C]`` one-hot (or relaxed) latents.
    x: ``[..., D]`` binary pixels.
    log_q: ``[..., K, C]`` ``log_softmax`` of the encoder logits.

  Returns:
    ``[...]``; the prior is uniform, :math:`\log p(z) = -K \log C`.
  """
  log_prior = -model.num_latents * math.log(model.num_categories)
  pix = model.apply(params, z, method=model.decode)
  return (-vae_models.bernoulli_log_prob(pix, x) - log_prior
          + vae_models.categorical_log_prob(z, log_q))


def one_layer_objective(model, est: estimators.Estimator,
                        decoder_samples: int = 0,
                        dedup_buffer: int | None = None) -> Objective:
  """Objective of :class:`~arsm_jax.models.vae.CategoricalVAE`.

  ``decoder_samples`` > 0 keeps the decoder gradient to that many of a
  multi-sample estimator's draws (see ``expectation``'s
  ``pathwise_samples``); 0 uses them all. ``dedup_buffer`` (ARSM only) makes
  the training loss evaluate the decoder once per distinct (image, pseudo
  latent) of the batch, in one buffer of that many latents
  (:func:`arsm_jax.batched.expectation`; a batch with more distinct latents
  takes the plain evaluation). The loss and its gradient are those of the
  plain path; ``logit_grads``, ``neg_elbo`` and ``log_weights`` are
  unchanged.
  """
  pathwise = decoder_samples or None
  neg_elbo_at = functools.partial(neg_elbo_one_layer, model)
  if dedup_buffer is not None and est.name != "arsm":
    raise ValueError(f"dedup_buffer needs estimator 'arsm'; got "
                     f"{est.name!r}.")

  def surrogate(params, logits, key, x, est_state):
    f = lambda z, xi, lq: neg_elbo_at(params, z, xi, lq)
    log_q = jax.nn.log_softmax(logits)
    out = expectation(key, logits, f, x, log_q,
                      estimator=_with_temperature(model, est, params),
                      state=est_state, pathwise_samples=pathwise)
    return out if est.stateful else (out, None)

  def neg_elbo(params, key, x):
    logits = model.apply(params, x, method=model.encode)
    z = _onehot_sample(key, logits)
    return neg_elbo_at(params, z, x, jax.nn.log_softmax(logits))

  def dedup_surrogate(params, logits, key, x, est_state):
    # ARSM is stateless and single-sample (pathwise_samples changes nothing).
    del est_state
    f = lambda z, xi, lq: neg_elbo_at(params, z, xi, lq)
    log_q = jax.nn.log_softmax(logits)
    return batched.expectation(key, logits, f, x, log_q, estimator=est,
                               buffer_size=dedup_buffer), None

  train_surrogate = surrogate if dedup_buffer is None else dedup_surrogate

  def loss(params, key, x, est_state):
    logits = model.apply(params, x, method=model.encode)     # [B, K, C]
    k_est, k_hard = jax.random.split(key)
    values, new_state = train_surrogate(params, logits, k_est, x, est_state)
    if est.pathwise:
      # The surrogate's value is f at a relaxed sample; report a hard one.
      train = sg(neg_elbo(params, k_hard, x))
    else:
      train = sg(values)
    return jnp.mean(values), (train, new_state)

  def logit_grads(params, key, x, est_state):
    logits = sg(model.apply(params, x, method=model.encode))
    return jax.grad(
        lambda lg: jnp.sum(surrogate(params, lg, key, x, est_state)[0]))(logits)

  def log_weights(params, key, x, num_samples):
    logits = model.apply(params, x, method=model.encode)     # [B, K, C]
    log_q = jax.nn.log_softmax(logits)
    z = _onehot_sample(key, jnp.broadcast_to(logits,
                                             (num_samples,) + logits.shape))
    return -jax.vmap(lambda zs: neg_elbo_at(params, zs, x, log_q))(z)

  return Objective(loss, logit_grads, neg_elbo, log_weights)


def two_layer_objective(model, est: estimators.Estimator,
                        decoder_samples: int = 0) -> Objective:
  """Objective of :class:`~arsm_jax.models.vae.TwoLayerVAE` (see module doc)."""
  check_estimator("two_layer", est)
  pathwise = decoder_samples or None
  num_cats = model.num_categories
  log_prior2 = -model.num_latents * math.log(num_cats)

  def neg_elbo_at(params, z1, z2, x, log_q1, log_q2):
    pix = model.apply(params, z1, method=model.decode)
    log_p1 = jax.nn.log_softmax(model.apply(params, z2, method=model.prior1))
    return (-vae_models.bernoulli_log_prob(pix, x)
            - vae_models.categorical_log_prob(z1, log_p1) - log_prior2
            + vae_models.categorical_log_prob(z1, log_q1)
            + vae_models.categorical_log_prob(z2, log_q2))

  def layer2(params, z1):
    logits2 = model.apply(params, z1, method=model.encode2)
    return logits2, jax.nn.log_softmax(logits2)

  def relaxed_surrogate(params, logits1, key, x):
    # The multi-layer relaxed construction: layer 2 is relaxed at the relaxed
    # (or straight-through) z1 by a nested expectation, per image.
    est_t = _with_temperature(model, est, params)
    k1, k2 = jax.random.split(key)
    keys2 = jax.random.split(k2, x.shape[0])     # layer-2 noise, per image
    log_q1 = jax.nn.log_softmax(logits1)

    def f1(z1, xi, lq1, key2):
      logits2, lq2 = layer2(params, z1)
      f2 = lambda z2: neg_elbo_at(params, z1, z2, xi, lq1, lq2)
      return expectation(key2, logits2, f2, estimator=est_t)

    return expectation(k1, logits1, f1, x, log_q1, keys2, estimator=est_t)

  def surrogate(params, logits1, key, x, est_state):
    if est.pathwise:
      return relaxed_surrogate(params, logits1, key, x), None
    state1, state2 = est_state if est.stateful else (None, None)
    batch = x.shape[0]
    k1, k2 = jax.random.split(key)
    keys2 = jax.random.split(k2, batch)          # layer-2 noise, per image
    log_q1 = jax.nn.log_softmax(logits1)

    def f1(z1, xi, lq1, key2):
      logits2, lq2 = layer2(params, z1)
      z2 = jax.nn.one_hot(swap.augment(key2, sg(logits2)).z, num_cats,
                          dtype=z1.dtype)
      return neg_elbo_at(params, z1, z2, xi, lq1, lq2)

    values = expectation(k1, logits1, f1, x, log_q1, keys2, estimator=est,
                         state=state1, pathwise_samples=pathwise)
    if est.stateful:
      values, state1 = values
    # Layer 2 at layer 1's sample: the expectation layer gives image b the
    # key split(k1, B)[b], from which arsm/ar draw z1 by the augmentation.
    keys1 = jax.random.split(k1, batch)
    z1 = jax.vmap(lambda k, lg: jax.nn.one_hot(
        swap.augment(k, lg).z, num_cats, dtype=lg.dtype))(keys1, sg(logits1))
    logits2, _ = layer2(params, z1)

    def f2(z2, z1i, xi, lq1):
      # Only the score term of layer 2 is wanted here; the pathwise gradients
      # all come from layer 1's surrogate above.
      return sg(neg_elbo_at(params, z1i, z2, xi, lq1, layer2(params, z1i)[1]))

    inner = expectation(k2, logits2, f2, z1, x, log_q1, estimator=est,
                        state=state2, pathwise_samples=pathwise)
    new_state = None
    if est.stateful:
      inner, state2 = inner
      new_state = (state1, state2)
    return values + inner - sg(inner), new_state

  def neg_elbo(params, key, x):
    k1, k2 = jax.random.split(key)
    logits1 = model.apply(params, x, method=model.encode)
    z1 = _onehot_sample(k1, logits1)
    logits2, lq2 = layer2(params, z1)
    z2 = _onehot_sample(k2, logits2)
    return neg_elbo_at(params, z1, z2, x, jax.nn.log_softmax(logits1), lq2)

  def loss(params, key, x, est_state):
    logits1 = model.apply(params, x, method=model.encode)
    if est.pathwise:
      k_est, k_hard = jax.random.split(key)
      values, new_state = surrogate(params, logits1, k_est, x, est_state)
      # The surrogate's value is f at relaxed samples; report hard ones.
      return jnp.mean(values), (sg(neg_elbo(params, k_hard, x)), new_state)
    values, new_state = surrogate(params, logits1, key, x, est_state)
    return jnp.mean(values), (sg(values), new_state)

  def logit_grads(params, key, x, est_state):
    logits1 = sg(model.apply(params, x, method=model.encode))
    return jax.grad(lambda lg: jnp.sum(
        surrogate(params, lg, key, x, est_state)[0]))(logits1)

  def log_weights(params, key, x, num_samples):
    return -jax.vmap(lambda k: neg_elbo(params, k, x))(
        jax.random.split(key, num_samples))

  return Objective(loss, logit_grads, neg_elbo, log_weights)


def make_objective(model, est: estimators.Estimator,
                   decoder_samples: int = 0,
                   dedup_buffer: int | None = None) -> Objective:
  """The objective of ``model`` (one or two stochastic layers) under ``est``.

  ``dedup_buffer``: see :func:`one_layer_objective` (one layer, ARSM only).
  """
  if isinstance(model, vae_models.TwoLayerVAE):
    if dedup_buffer is not None:
      raise ValueError("dedup_buffer applies to the one-layer models only; "
                       "got a TwoLayerVAE.")
    return two_layer_objective(model, est, decoder_samples)
  return one_layer_objective(model, est, decoder_samples, dedup_buffer)


def evals_per_image(est: estimators.Estimator, num_latents: int,
                    num_categories: int, model: str = "nonlinear") -> int:
  """Objective evaluations per image and training step (probe at logits 0).

  On the one-layer models (``linear``, ``nonlinear``) these are one estimator
  draw's. ARSM evaluates ``C(C-1)/2 + 1`` latent vectors unless every pseudo
  action equals the sample (then 1); at zero logits that practically never
  happens. On ``two_layer`` a score-function estimator draws once per layer
  (layer 2 at layer 1's sample), twice one draw's evaluations, while a
  relaxed one nests layer 2's draw inside each of layer 1's evaluations,
  one draw's squared (see :func:`two_layer_objective`).
  """
  if model not in vae_models.MODELS:
    raise ValueError(f"Unknown VAE model {model!r}; known: "
                     f"{', '.join(vae_models.MODELS)}.")
  logits = jnp.zeros((num_latents, num_categories), jnp.float32)
  state = est.init(jax.random.PRNGKey(0), logits) if est.stateful else None
  out = est.estimate(jax.random.PRNGKey(1), logits, jnp.sum, state=state)
  per_draw = int(out.num_evals)
  if model != "two_layer":
    return per_draw
  return per_draw * per_draw if est.pathwise else 2 * per_draw
