r"""A categorical VAE as an Equinox module, trained with any estimator.

    python experiments/equinox_vae.py --estimator=relax --num_steps=300

The data and the -ELBO are those of ``latent_causes.py`` beside this file:
D = 24 bits driven by K = 4 categorical causes of C = 4 values. The encoder and decoder are single
``eqx.nn.Linear`` layers; the estimator is an
:class:`arsm_jax.equinox.Expectation` layer. A stateful estimator's state
(RELAX's control variate) is kept, like ``eqx.nn.BatchNorm``'s, in the
``eqx.nn.State`` that ``eqx.nn.make_with_state`` returns beside the model and
that each step threads through; optax trains the model's arrays.
``docs/equinox.md`` shows this file; the tests run it.
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import optax

import arsm_jax
import arsm_jax.equinox

# The data and the -ELBO, shared with the other framework's example.
import latent_causes  # experiments/latent_causes.py
from latent_causes import C, D, K


class VAE(eqx.Module):
  """q(z|x) = Cat(softmax(encoder(x))), p(x|z) = Bernoulli(decoder(z))."""

  encoder: eqx.nn.Linear
  decoder: eqx.nn.Linear
  expectation: arsm_jax.equinox.Expectation

  def __init__(self, key, estimator: str = "arsm", **settings):
    k_enc, k_dec, k_est = jax.random.split(key, 3)
    self.encoder = eqx.nn.Linear(D, K * C, key=k_enc)
    self.decoder = eqx.nn.Linear(K * C, D, key=k_dec)
    # The estimator; its state (if any) goes into the eqx.nn.State.
    self.expectation = arsm_jax.equinox.Expectation(
        estimator, logits_shape=(K, C), key=k_est, **settings)

  def logits(self, x):                                         # [B, K, C]
    return jax.vmap(self.encoder)(x).reshape(-1, K, C)

  def neg_elbo(self, z, x, logits):
    """-[log p(x|z) + log p(z) - log q(z|x)] for one item, z one-hot [K, C]."""
    return latent_causes.neg_elbo(self.decoder(z.reshape(-1)), x, z, logits)

  def __call__(self, key, x, state):
    """``(per-item surrogates of -ELBO [B], new state)``."""
    logits = self.logits(x)
    return self.expectation(key, logits, self.neg_elbo, x, logits,
                            state=state)


def loss_fn(model: VAE, state, key, x):
  values, state = model(key, x, state)
  return values.mean(), state


@eqx.filter_jit
def train_step(model: VAE, state, opt_state, key, x, optimizer):
  (loss, state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(
      model, state, key, x)
  updates, opt_state = optimizer.update(grads, opt_state,
                                        eqx.filter(model, eqx.is_array))
  return eqx.apply_updates(model, updates), state, opt_state, loss


@eqx.filter_jit
def exact_neg_elbo(model: VAE, x):
  """The exact mean -ELBO over ``x`` (all C**K values of z)."""
  logits = model.logits(x)
  return arsm_jax.expectation(None, logits, model.neg_elbo, x, logits,
                              estimator="exact").mean()


def train(estimator: str = "arsm", num_steps: int = 300, seed: int = 0,
          batch_size: int = 64, learning_rate: float = 1e-2, **settings):
  """Trains a VAE; returns ``(model, state, exact -ELBO before, after)``."""
  data = latent_causes.make_data(jax.random.PRNGKey(1234))
  model, state = eqx.nn.make_with_state(VAE)(jax.random.PRNGKey(seed),
                                             estimator, **settings)
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
  before = float(exact_neg_elbo(model, data))
  key = jax.random.PRNGKey(seed + 1)
  for step in range(num_steps):
    step_key = jax.random.fold_in(key, step)
    index = jax.random.randint(step_key, (batch_size,), 0, data.shape[0])
    model, state, opt_state, _ = train_step(model, state, opt_state, step_key,
                                            data[index], optimizer)
  return model, state, before, float(exact_neg_elbo(model, data))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--estimator", default="arsm")
  parser.add_argument("--num_steps", type=int, default=300)
  args = parser.parse_args()
  *_, before, after = train(args.estimator, args.num_steps)
  print(f"{args.estimator}: exact -ELBO {before:.2f} -> {after:.2f}")


if __name__ == "__main__":
  main()
