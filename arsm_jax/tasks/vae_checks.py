"""The VAE config's checks, and what identifies a VAE run.

:func:`validate_config` checks every field of a config, once, before any
data is loaded or anything compiled (the command line calls it to turn a bad
config into one line; :func:`arsm_jax.tasks.vae.train_and_evaluate` calls it
first), and returns the estimator.
"""

from __future__ import annotations

import math
from typing import Any

import jax

from arsm_jax import config_checks as checks
from arsm_jax import data as data_lib
from arsm_jax import estimators
from arsm_jax import runs
from arsm_jax.models import vae as vae_models
from arsm_jax.objectives.vae import check_estimator

DATASETS = data_lib.DATASETS + ("synthetic",)
# Fields that may differ between a run and its resumption.
RESUMABLE_FIELDS = ("num_epochs", "data_dir", "cache_dir", "cache_images",
                    "progress_every_secs", "checkpoint_every_steps",
                    "max_checkpoints", "num_devices", "dedup")
# Largest C**K the 'exact' estimator is allowed to enumerate per image.
_MAX_EXACT_STATES = 4096


def validate_config(config) -> estimators.Estimator:
  """Checks every field; returns the estimator. Raises ``ValueError``.

  Nothing is loaded or compiled, so a bad config fails in milliseconds.
  """
  checks.choice(config, "dataset", DATASETS)
  checks.choice(config, "binarization", data_lib.BINARIZATIONS)
  checks.choice(config, "validation_split", data_lib.VALIDATION_SPLITS)
  checks.choice(config, "model", vae_models.MODELS)
  for field in ("num_latents", "batch_size", "num_epochs", "eval_batch_size",
                "iwae_samples", "iwae_batch_size", "test_every_epochs",
                "variance_batch_size", "num_validation", "max_checkpoints"):
    checks.integer(config, field, low=1)
  for field in ("variance_every_steps", "checkpoint_every_steps", "seed",
                "num_devices", "decoder_samples"):
    checks.integer(config, field, low=0)
  available = jax.device_count()
  if config.num_devices > available:
    raise ValueError(
        f"config.num_devices={config.num_devices}, but JAX sees only "
        f"{available} device{'s' if available > 1 else ''} "
        f"({jax.devices()[0].platform}); use 0 (every device) or at most "
        f"{available}.")
  num_devices = config.num_devices or jax.device_count()
  if config.batch_size % num_devices:
    raise checks.fail("batch_size", config.batch_size,
                      f"divisible by the number of devices ({num_devices}; "
                      f"config.num_devices={config.num_devices})")
  checks.integer(config, "num_categories", low=2)
  if config.variance_every_steps:
    checks.integer(config, "variance_draws", low=2)
  checks.widths(config, "encoder_hidden")
  checks.widths(config, "decoder_hidden")
  checks.positive_number(config, "learning_rate")
  checks.non_negative_number(config, "progress_every_secs")
  if config.dataset == "synthetic":
    sizes = tuple(config.synthetic_sizes)
    if len(sizes) != 3 or any(not isinstance(s, int) or s < 1 for s in sizes):
      raise checks.fail("synthetic_sizes", sizes, "three positive ints "
                        "(train, validation, test)")
    checks.integer(config, "synthetic_pixels", low=1)
    if config.validation_split != "last":
      # Its validation images are drawn as such (synthetic_sizes); there is
      # no original file order to split.
      raise ValueError(
          f"config.validation_split={config.validation_split!r} applies to "
          f"the TFDS datasets ({', '.join(data_lib.DATASETS)}); "
          "dataset='synthetic' draws its own validation images "
          "(config.synthetic_sizes). Leave validation_split='last' (the "
          "default) or choose a TFDS dataset.")

  checks.choice(config, "estimator", estimators.names(), label="registered")
  try:
    est = estimators.get(config.estimator, **estimator_settings(config))
  except ValueError as e:
    raise ValueError(f"{e} (config.estimator_settings)") from None
  _check_step_memory(config, est, num_devices)
  if (config.estimator == "exact"
      and config.num_categories**config.num_latents > _MAX_EXACT_STATES):
    raise ValueError(
        f"estimator 'exact' would enumerate C**K = {config.num_categories}**"
        f"{config.num_latents} latent vectors per image; allowed up to "
        f"{_MAX_EXACT_STATES}.")
  vae_models.check_weight_init(config.weight_init)
  checks.boolean(config, "pin_first_logit")
  checks.boolean(config, "learn_temperature")
  check_estimator(config.model, est, config.learn_temperature)
  if checks.boolean(config, "dedup") and (
      config.estimator != "arsm" or config.model == "two_layer"):
    raise ValueError(
        "config.dedup=True applies to estimator 'arsm' on the one-layer "
        "models (nonlinear, linear); got estimator "
        f"{config.estimator!r}, model {config.model!r}.")
  return est


def _check_step_memory(config, est, num_devices: int) -> None:
  """Refuses a sample count whose training step cannot fit in memory.

  ``reinforce_loo`` runs the decoder on each of its ``num_samples`` samples
  of every image at once, and ``gumbel_rao`` holds ``num_samples``
  relaxations ``[K, C]`` of every image: a lower bound of a device's share
  of a step above its memory is refused before anything is loaded.
  """
  if est.name not in ("reinforce_loo", "gumbel_rao"):
    return
  num = est.kwargs.get("num_samples",
                       estimators.info()[est.name].settings["num_samples"])
  images = -(-config.batch_size // num_devices)
  latent = config.num_latents * config.num_categories
  if est.name == "reinforce_loo":
    # float32 pixel logits and hidden units of the decoder, forward and
    # backward, and the sample's one-hots and scores.
    width = num_pixels(config) + sum(checks.widths(config, "decoder_hidden"))
    each = images * 4 * (2 * width + 2 * latent)
  else:
    each = images * 4 * 4 * latent
  estimators.validation.check_memory(
      f"estimator {est.name!r}", "config.estimator_settings.num_samples", num,
      each, f"one training step ({images} images on each of {num_devices} "
      "device(s))")


def estimator_settings(config) -> dict[str, Any]:
  """The estimator settings the config sets (unset fields are left out)."""
  return checks.estimator_settings(config.estimator_settings)


def config_json(config) -> dict[str, Any]:
  """:func:`runs.config_json` with only the estimator settings that are set.

  (The unset ones are the estimator's defaults: a config.json saved before
  every setting was declared in the config stays the same run.)
  """
  out = runs.config_json(config)
  out["estimator_settings"] = runs.config_json(estimator_settings(config))
  return out


def num_pixels(config) -> int:
  if config.dataset == "synthetic":
    return int(config.synthetic_pixels)
  return data_lib.NUM_PIXELS


def restored_step_check(config, workdir: str, num_steps: int,
                        steps_per_epoch: int):
  """A check of the restored step: refuses a run that went further."""

  def check(restored_step: int) -> None:
    if restored_step <= num_steps:
      return
    epochs = restored_step / steps_per_epoch
    raise ValueError(
        f"{workdir} holds a vae run trained to step {restored_step} "
        f"({epochs:g} epochs), beyond the {num_steps} steps of "
        f"config.num_epochs={config.num_epochs}. Rerun with num_epochs >= "
        f"{math.ceil(epochs)} to report (or continue) it, use a new workdir, "
        "or set config.fresh=True to start again.")

  return check
