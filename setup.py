"""Packages for setuptools; everything else is in setup.cfg.

The experiment configs live in ``configs/`` (the command-line face:
``--config=configs/vae.py:preset``) and are shipped inside the package as
``arsm_jax.configs``, so ``arsm_jax.experiments.get_config('vae:tiny')``
works from an installed wheel too.
"""

from setuptools import find_packages
from setuptools import setup

setup(
    packages=find_packages(include=["arsm_jax", "arsm_jax.*"]) +
    ["arsm_jax.configs"],
    package_dir={"arsm_jax.configs": "configs"},
)
