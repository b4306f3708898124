"""arsm_jax: gradient estimators for categorical variables in JAX.

The core is :mod:`arsm_jax.estimators` (ARSM and the estimators it is compared
with, under one single-draw contract); :func:`arsm_jax.expectation` puts any
of them inside ``jax.grad``; :mod:`arsm_jax.tasks` holds the experiments of
Yin, Yue and Zhou (ICML 2019), each a ``train_and_evaluate(config, workdir)``.
"""

from arsm_jax import estimators
from arsm_jax.expectation import expectation

__version__ = "0.1.0"

__all__ = ["estimators", "expectation", "__version__"]
