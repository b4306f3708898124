r"""A categorical VAE as a Flax NNX module, trained with any estimator.

    python experiments/nnx_vae.py --estimator=relax --num_steps=300

The data and the -ELBO are those of ``latent_causes.py`` beside this file:
D = 24 bits driven by K = 4 categorical causes of C = 4 values. The encoder and decoder are single
``nnx.Linear`` layers; the estimator is an :class:`arsm_jax.nnx.Expectation`
submodule, so a stateful estimator's state (RELAX's control variate) is an
``EstimatorState`` variable of the model, updated by the forward pass like
``nnx.BatchNorm``'s statistics, while ``nnx.Optimizer(..., wrt=nnx.Param)``
trains the parameters. ``docs/nnx.md`` shows this file; the tests run it.
"""

from __future__ import annotations

import argparse

from flax import nnx
import jax
import optax

import arsm_jax.nnx

# The data and the -ELBO, shared with the other framework's example.
import latent_causes  # experiments/latent_causes.py
from latent_causes import C, D, K


class VAE(nnx.Module):
  """q(z|x) = Cat(softmax(encoder(x))), p(x|z) = Bernoulli(decoder(z))."""

  def __init__(self, estimator: str = "arsm", *, rngs: nnx.Rngs, **settings):
    self.encoder = nnx.Linear(D, K * C, rngs=rngs)
    self.decoder = nnx.Linear(K * C, D, rngs=rngs)
    # The estimator, and its state if it has one, next to the layers.
    self.expectation = arsm_jax.nnx.Expectation(
        estimator, logits_shape=(K, C), rngs=rngs, **settings)

  def logits(self, x):                                         # [B, K, C]
    return self.encoder(x).reshape(-1, K, C)

  def neg_elbo(self, z, x, logits):
    """-[log p(x|z) + log p(z) - log q(z|x)] for one item, z one-hot [K, C]."""
    return latent_causes.neg_elbo(self.decoder(z.reshape(-1)), x, z, logits)

  def __call__(self, key, x):
    """The per-item surrogates of -ELBO, ``[B]``."""
    logits = self.logits(x)
    return self.expectation(key, logits, self.neg_elbo, x, logits)


@nnx.jit
def train_step(model: VAE, optimizer: nnx.Optimizer, key, x):
  loss, grads = nnx.value_and_grad(lambda m: m(key, x).mean())(model)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def exact_neg_elbo(model: VAE, x):
  """The exact mean -ELBO over ``x`` (all C**K values of z)."""
  logits = model.logits(x)
  return arsm_jax.expectation(None, logits, model.neg_elbo, x, logits,
                              estimator="exact").mean()


def train(estimator: str = "arsm", num_steps: int = 300, seed: int = 0,
          batch_size: int = 64, learning_rate: float = 1e-2, **settings):
  """Trains a VAE; returns ``(model, exact -ELBO before, after)``."""
  data = latent_causes.make_data(jax.random.PRNGKey(1234))
  model = VAE(estimator, rngs=nnx.Rngs(seed), **settings)
  optimizer = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)
  before = float(exact_neg_elbo(model, data))
  key = jax.random.PRNGKey(seed + 1)
  for step in range(num_steps):
    step_key = jax.random.fold_in(key, step)
    index = jax.random.randint(step_key, (batch_size,), 0, data.shape[0])
    train_step(model, optimizer, step_key, data[index])
  return model, before, float(exact_neg_elbo(model, data))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--estimator", default="arsm")
  parser.add_argument("--num_steps", type=int, default=300)
  args = parser.parse_args()
  _, before, after = train(args.estimator, args.num_steps)
  print(f"{args.estimator}: exact -ELBO {before:.2f} -> {after:.2f}")


if __name__ == "__main__":
  main()
