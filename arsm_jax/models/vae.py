r"""Categorical variational autoencoders (Flax linen) for binarised images.

Latents are K categorical variables of C categories each, fed to decoders
as one-hot (or, for relaxed estimators, relaxed) arrays ``[..., K, C]``.
Encoders return unnormalised logits ``[..., K, C]``; decoders return the
Bernoulli logits of the pixels ``[..., D]``.

* :class:`CategoricalVAE` with ``encoder_hidden=()`` and ``decoder_hidden=()``
  is the ``linear`` model (affine encoder and decoder); with ``(512, 256)``
  and ``(256, 512)`` it is the ``nonlinear`` model of Yin, Yue and Zhou
  (2019), leaky ReLU 0.2 between layers.
* :class:`TwoLayerVAE` has two stochastic layers:
  :math:`q(z_1|x)` an MLP, :math:`q(z_2|z_1)` and :math:`p(z_1|z_2)` affine,
  :math:`p(x|z_1)` an MLP and :math:`p(z_2)` uniform.

:func:`make_model` builds either from a model name; :func:`bernoulli_log_prob`
and :func:`categorical_log_prob` are the likelihood terms of the ELBO.

Options of both models, all off by default (the defaults reproduce the
models as they were before the options existed, parameter for parameter):

* ``weight_init='glorot'``: Glorot-uniform kernels (TensorFlow's default, as
  in the authors' code) instead of Flax's LeCun-normal; biases stay zero.
* ``pin_first_logit=True``: every categorical logits map (q(z|x), and for
  two layers q(z2|z1) and p(z1|z2)) outputs C-1 free logits per variable and
  class 0's logit is fixed at 0, as in the authors' code. The same family of
  distributions, a different parametrisation.
* ``learned_temperature=tau0``: the model holds a learned relaxation
  temperature, parameter ``log_temperature`` initialised at ``log(tau0)``,
  trained with the model (see :meth:`CategoricalVAE.temperature`); the VAE
  objective gives it to relaxed estimators.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

MODELS = ("linear", "nonlinear", "two_layer")
WEIGHT_INITS = ("lecun", "glorot")


def check_weight_init(weight_init: str) -> str:
  if weight_init not in WEIGHT_INITS:
    raise ValueError(f"Unknown weight_init {weight_init!r}; allowed: "
                     f"{', '.join(WEIGHT_INITS)}.")
  return weight_init


def _dense_kwargs(weight_init: str) -> dict:
  # 'lecun' passes nothing, so Flax's own default (and its numbers) is kept.
  if check_weight_init(weight_init) == "glorot":
    return {"kernel_init": nn.initializers.glorot_uniform()}
  return {}


class MLP(nn.Module):
  """Dense layers with leaky ReLU between them, none after the last.

  Attributes:
    hidden: widths of the hidden layers (empty: one affine map).
    out: width of the output.
    negative_slope: slope of the leaky ReLU for negative inputs.
    weight_init: ``'lecun'`` (Flax's default) or ``'glorot'`` kernels.
  """

  hidden: Sequence[int]
  out: int
  negative_slope: float = 0.2
  weight_init: str = "lecun"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kwargs = _dense_kwargs(self.weight_init)
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, name=f"hidden_{i}", **kwargs)(x)
      x = nn.leaky_relu(x, self.negative_slope)
    return nn.Dense(self.out, name="out", **kwargs)(x)


def _flatten_latent(z: Array) -> Array:
  return z.reshape(z.shape[:-2] + (z.shape[-2] * z.shape[-1],))


def _unflatten_latent(out: Array, num_latents: int, num_categories: int,
                      pin_first_logit: bool = False) -> Array:
  """``[..., K * C]`` -> ``[..., K, C]``; pinned: ``[..., K * (C-1)]`` with a
  zero logit for class 0 in front."""
  if not pin_first_logit:
    return out.reshape(out.shape[:-1] + (num_latents, num_categories))
  free = out.reshape(out.shape[:-1] + (num_latents, num_categories - 1))
  zero = jnp.zeros(free.shape[:-1] + (1,), free.dtype)
  return jnp.concatenate([zero, free], axis=-1)


def _logit_width(num_latents: int, num_categories: int,
                 pin_first_logit: bool) -> int:
  return num_latents * (num_categories - int(bool(pin_first_logit)))


def _log_temperature_param(module: nn.Module, initial: float):
  if not float(initial) > 0:
    raise ValueError(f"learned_temperature must be a positive number; got "
                     f"{initial!r}.")
  return module.param("log_temperature",
                      lambda _: jnp.log(jnp.asarray(initial, jnp.float32)))


class CategoricalVAE(nn.Module):
  """One stochastic layer: ``x -> logits [K, C] -> z -> pixel logits``.

  Attributes:
    num_latents: K.
    num_categories: C.
    num_pixels: D, the number of Bernoulli pixels.
    encoder_hidden: hidden widths of the encoder MLP.
    decoder_hidden: hidden widths of the decoder MLP.
    weight_init: ``'lecun'`` or ``'glorot'`` (see the module docstring).
    pin_first_logit: class 0's logit fixed at 0 (C-1 free logits).
    learned_temperature: if set, the initial value of a learned relaxation
      temperature held by the model.
  """

  num_latents: int = 20
  num_categories: int = 10
  num_pixels: int = 784
  encoder_hidden: Sequence[int] = (512, 256)
  decoder_hidden: Sequence[int] = (256, 512)
  weight_init: str = "lecun"
  pin_first_logit: bool = False
  learned_temperature: Optional[float] = None

  def setup(self):
    self.encoder = MLP(self.encoder_hidden,
                       _logit_width(self.num_latents, self.num_categories,
                                    self.pin_first_logit),
                       weight_init=self.weight_init)
    self.decoder = MLP(self.decoder_hidden, self.num_pixels,
                       weight_init=self.weight_init)
    if self.learned_temperature is not None:
      self.log_temperature = _log_temperature_param(self,
                                                    self.learned_temperature)

  def temperature(self) -> Array:
    """The learned relaxation temperature (needs ``learned_temperature``)."""
    return jnp.exp(self.log_temperature)

  def encode(self, x: Array) -> Array:
    """Binary images ``[..., D]`` -> logits of q(z|x), ``[..., K, C]``."""
    return _unflatten_latent(self.encoder(x), self.num_latents,
                             self.num_categories, self.pin_first_logit)

  def decode(self, z: Array) -> Array:
    """Latents ``[..., K, C]`` -> Bernoulli logits of p(x|z), ``[..., D]``."""
    return self.decoder(_flatten_latent(z))

  def __call__(self, x: Array, z: Array) -> tuple[Array, Array]:
    return self.encode(x), self.decode(z)


class TwoLayerVAE(nn.Module):
  r"""Two stochastic layers, :math:`x \to z_1 \to z_2` and back.

  Attributes:
    num_latents: K of both layers.
    num_categories: C of both layers.
    num_pixels: D.
    encoder_hidden: hidden widths of the MLP of q(z1|x).
    decoder_hidden: hidden widths of the MLP of p(x|z1).
    weight_init: ``'lecun'`` or ``'glorot'`` (see the module docstring).
    pin_first_logit: class 0's logit fixed at 0 in q(z1|x), q(z2|z1) and
      p(z1|z2).
    learned_temperature: if set, the initial value of a learned relaxation
      temperature held by the model.
  """

  num_latents: int = 20
  num_categories: int = 10
  num_pixels: int = 784
  encoder_hidden: Sequence[int] = (512, 256)
  decoder_hidden: Sequence[int] = (256, 512)
  weight_init: str = "lecun"
  pin_first_logit: bool = False
  learned_temperature: Optional[float] = None

  def setup(self):
    size = _logit_width(self.num_latents, self.num_categories,
                        self.pin_first_logit)
    init = self.weight_init
    self.encoder1 = MLP(self.encoder_hidden, size, weight_init=init)
    self.encoder2 = MLP((), size, weight_init=init)
    self.decoder2 = MLP((), size, weight_init=init)
    self.decoder1 = MLP(self.decoder_hidden, self.num_pixels, weight_init=init)
    if self.learned_temperature is not None:
      self.log_temperature = _log_temperature_param(self,
                                                    self.learned_temperature)

  def temperature(self) -> Array:
    """The learned relaxation temperature (needs ``learned_temperature``)."""
    return jnp.exp(self.log_temperature)

  def _latent(self, out: Array) -> Array:
    return _unflatten_latent(out, self.num_latents, self.num_categories,
                             self.pin_first_logit)

  def encode(self, x: Array) -> Array:
    """Logits of q(z1|x), ``[..., K, C]``."""
    return self._latent(self.encoder1(x))

  def encode2(self, z1: Array) -> Array:
    """Logits of q(z2|z1), ``[..., K, C]``."""
    return self._latent(self.encoder2(_flatten_latent(z1)))

  def prior1(self, z2: Array) -> Array:
    """Logits of p(z1|z2), ``[..., K, C]``."""
    return self._latent(self.decoder2(_flatten_latent(z2)))

  def decode(self, z1: Array) -> Array:
    """Bernoulli logits of p(x|z1), ``[..., D]``."""
    return self.decoder1(_flatten_latent(z1))

  def __call__(self, x: Array, z: Array):
    return self.encode(x), self.encode2(z), self.prior1(z), self.decode(z)


def make_model(name: str, num_latents: int = 20, num_categories: int = 10,
               num_pixels: int = 784,
               encoder_hidden: Sequence[int] = (512, 256),
               decoder_hidden: Sequence[int] = (256, 512), *,
               weight_init: str = "lecun", pin_first_logit: bool = False,
               learned_temperature: Optional[float] = None) -> nn.Module:
  """The model called ``name`` (one of :data:`MODELS`).

  ``linear`` ignores the hidden widths; ``nonlinear`` and ``two_layer`` use
  them for their MLPs. The keyword options are those of the module
  docstring.
  """
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; known: {', '.join(MODELS)}.")
  check_weight_init(weight_init)
  if not isinstance(pin_first_logit, bool):
    raise ValueError(f"pin_first_logit must be True or False; got "
                     f"{pin_first_logit!r}.")
  options = dict(weight_init=weight_init, pin_first_logit=pin_first_logit,
                 learned_temperature=learned_temperature)
  if name == "linear":
    return CategoricalVAE(num_latents, num_categories, num_pixels, (), (),
                          **options)
  if name == "nonlinear":
    return CategoricalVAE(num_latents, num_categories, num_pixels,
                          tuple(encoder_hidden), tuple(decoder_hidden),
                          **options)
  return TwoLayerVAE(num_latents, num_categories, num_pixels,
                     tuple(encoder_hidden), tuple(decoder_hidden), **options)


def bernoulli_log_prob(pixel_logits: Array, x: Array) -> Array:
  r""":math:`\sum_d \log \mathrm{Bern}(x_d; \sigma(l_d))` over the last axis.

  Computed stably as :math:`\sum_d x_d l_d - \mathrm{softplus}(l_d)`, with
  :math:`\mathrm{softplus}(l) = \max(l, 0) + \log(1 + e^{-|l|})` written out
  (about 3x faster on CPU than ``jax.nn.softplus``, whose ``logaddexp``
  handles infinities this objective never produces).
  """
  softplus = (jnp.maximum(pixel_logits, 0)
              + jnp.log1p(jnp.exp(-jnp.abs(pixel_logits))))
  return jnp.sum(x * pixel_logits - softplus, axis=-1)


def categorical_log_prob(z: Array, log_probs: Array) -> Array:
  r""":math:`\sum_{k,c} z_{kc} \log q_{kc}` over the last two axes.

  For one-hot z this is the log-probability of the category vector; for a
  relaxed z it is the same linear form evaluated at the relaxed point.
  """
  return jnp.sum(z * log_probs, axis=(-2, -1))
