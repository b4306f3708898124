"""Flax models: the categorical VAEs (``vae``) and the RL policy (``policy``)."""
