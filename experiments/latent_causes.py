r"""The data and the -ELBO shared by the Flax NNX and Equinox VAE examples.

Plain JAX (no framework), so each example needs only its own framework.
Binary vectors of D bits driven by K categorical causes of C values; a
categorical VAE with the same K and C can recover the causes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

D, K, C = 24, 4, 4


def make_data(key: jax.Array, num_points: int = 1024) -> jax.Array:
  """Binary ``float32 [num_points, D]`` data from K causes of C values.

  Each point draws K uniform categories; each (cause, value) pair owns a
  random pattern of Bernoulli logits, the drawn patterns add up, and the bits
  are drawn from the sum.
  """
  k_pattern, k_z, k_x = jax.random.split(key, 3)
  patterns = 3.0 * jax.random.normal(k_pattern, (K, C, D))
  z = jax.random.randint(k_z, (num_points, K), 0, C)          # [N, K]
  logits = patterns[jnp.arange(K), z].sum(axis=1)              # [N, D]
  return jax.random.bernoulli(k_x, jax.nn.sigmoid(logits)).astype(jnp.float32)


def neg_elbo(x_logits: jax.Array, x: jax.Array, z: jax.Array,
             logits: jax.Array) -> jax.Array:
  r"""One item's :math:`-[\log p(x|z) + \log p(z) - \log q(z|x)]`.

  Args:
    x_logits: ``[D]`` Bernoulli logits of the decoder at ``z``.
    x: ``[D]`` binary data.
    z: ``[K, C]`` one-hot latents.
    logits: ``[K, C]`` encoder logits of q(z|x); the prior is uniform.
  """
  log_lik = jnp.sum(x * jax.nn.log_sigmoid(x_logits)
                    + (1 - x) * jax.nn.log_sigmoid(-x_logits))
  log_q = jnp.sum(z * jax.nn.log_softmax(logits))
  return -(log_lik - K * jnp.log(C) - log_q)
