"""arsm_jax: gradient estimators for categorical variables in JAX.

The core is :mod:`arsm_jax.estimators` (ARSM and the estimators it is compared
with, under one single-draw contract); :func:`arsm_jax.expectation` puts any
of them inside ``jax.grad``; :mod:`arsm_jax.diagnostics` measures their
variance and bias against the exact gradient. These need only jax, numpy and
optax.

The experiments of Yin, Yue and Zhou (ICML 2019) are in
:mod:`arsm_jax.experiments` (configs by name, ``train_and_evaluate``) and
:mod:`arsm_jax.tasks`; they need the ``[experiments]`` extra and are imported
only when used, so ``import arsm_jax`` stays light.
"""

import importlib as _importlib

from arsm_jax import estimators
from arsm_jax.expectation import expectation

__version__ = "0.1.0"

# Submodules imported on first attribute access (``arsm_jax.diagnostics``,
# ``arsm_jax.experiments``, ...), not by ``import arsm_jax``.
_LAZY_SUBMODULES = ("diagnostics", "experiments", "tasks")

__all__ = ["estimators", "expectation", "diagnostics", "experiments",
           "__version__"]


def __getattr__(name):
  if name in _LAZY_SUBMODULES:
    return _importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY_SUBMODULES))
