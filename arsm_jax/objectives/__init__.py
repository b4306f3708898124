"""Objectives of the experiments: what is estimated, apart from the training loop.

``arsm_jax.objectives.vae`` holds the categorical VAE's one- and two-layer
ELBO surrogates (the science of the VAE experiment); ``arsm_jax.tasks.vae``
holds its train state, step, loop and evaluation.
"""
