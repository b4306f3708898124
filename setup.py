"""Packages for setuptools; the metadata is in pyproject.toml's [project].

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
    # PEP 561: the package ships its type hints.
    package_data={"arsm_jax": ["py.typed"]},
)
