r"""Distinct ARSM pseudo vectors per image for a trained VAE encoder.

    python benchmarks/vae_distinct.py --workdir=runs/vae_arsm_nonlinear \
        [--config=configs/vae.py:arsm_nonlinear] [--num_images=2000]

Restores the latest checkpoint of a VAE run (read-only), encodes training
images, draws one Dirichlet augmentation per image and counts how many of the
``C(C-1)/2 + 1`` pseudo vectors (K = 20 dimensions swapped together) are
distinct: the evaluations of the decoder that ``get('arsm',
max_distinct=...)`` needs. Prints the mean, quantiles, and the same count for
the untrained encoder, then times the jitted ARSM training step with and
without ``max_distinct`` on one batch (same process, so the ratio is fair).
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax import data as data_lib
from arsm_jax import estimators
from arsm_jax.estimators import swap
from arsm_jax.tasks import vae
from arsm_jax.tasks import vae_data
from ml_collections import config_flags

_WORKDIR = flags.DEFINE_string("workdir", "runs/vae_arsm_nonlinear",
                               "Workdir of a VAE run with checkpoints.")
_NUM = flags.DEFINE_integer("num_images", 2000, "Images to encode.")
config_flags.DEFINE_config_file("config", "configs/vae.py:arsm_nonlinear",
                                "The run's config.")


def count_distinct(logits, key):
  """Distinct pseudo vectors per item of logits ``[B, K, C]`` -> ``[B]``."""
  num_cats = logits.shape[-1]
  rows, cols, _ = swap.upper_pairs(num_cats)

  def one(k, lg):
    aug = swap.augment(k, lg)
    pv = swap.pseudo_actions(aug.log_pi, lg)                  # [K, C, C]
    pairs = jnp.concatenate([pv[:, rows, cols], aug.z[:, None]], axis=1).T
    order = jnp.lexsort(pairs.T[::-1])
    ordered = pairs[order]
    return 1 + jnp.sum(jnp.any(ordered[1:] != ordered[:-1], axis=1))

  keys = jax.random.split(key, logits.shape[0])
  return jax.jit(jax.vmap(one))(keys, logits)


def main(argv):
  del argv
  config = flags.FLAGS.config
  est = vae.validate_config(config)
  model, objective, tx = vae._build(config, est)  # pylint: disable=protected-access
  fresh = vae.init_state(config, model, tx, est, jax.random.PRNGKey(0))
  trained, step = vae.restore_train_state(_WORKDIR.value, fresh)
  if not step:
    raise ValueError(f"No readable checkpoint in {_WORKDIR.value}/checkpoints.")
  images = vae_data.load_data(config)["train"][:_NUM.value]
  x = data_lib.binarize(jnp.asarray(images), config.binarization, None)
  max_pairs = config.num_categories * (config.num_categories - 1) // 2 + 1
  print(f"K = {config.num_latents}, C = {config.num_categories}: at most "
        f"{max_pairs} pseudo vectors per image; {len(images)} images")
  for name, state in (("untrained", fresh), (f"step {step}", trained)):
    logits = model.apply(state.params, x, method=model.encode)  # [B, K, C]
    counts = np.asarray(count_distinct(logits, jax.random.PRNGKey(1)))
    q = np.percentile(counts, [10, 50, 90])
    print(f"  encoder {name:>12}: mean {counts.mean():.1f} distinct "
          f"(10/50/90%: {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}), "
          f"max {counts.max()}")

  # Step time with and without max_distinct, on the trained parameters.
  idx = jnp.arange(config.batch_size)
  train_images = jnp.asarray(vae_data.load_data(config)["train"])
  cap = int(np.percentile(counts, 90))
  for label, settings in (("all pairs", {}),
                          (f"max_distinct={cap}", {"max_distinct": cap})):
    est_i = estimators.get(config.estimator, **settings)
    _, objective_i, _ = vae._build(config, est_i)  # pylint: disable=protected-access
    step_fn = vae.make_train_step(objective_i, tx, config.binarization,
                                  jax.random.PRNGKey(2))
    state, _ = jax.block_until_ready(step_fn(trained, train_images, idx))
    t0 = time.perf_counter()
    for _ in range(5):
      state, _ = step_fn(state, train_images, idx)
    jax.block_until_ready(state)
    print(f"  train step, {label:>16}: "
          f"{1e3 * (time.perf_counter() - t0) / 5:.0f} ms")


if __name__ == "__main__":
  app.run(main)
