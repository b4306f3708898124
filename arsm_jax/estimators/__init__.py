"""Gradient estimators for categorical variables.

    >>> from arsm_jax import estimators
    >>> est = estimators.get("arsm")
    >>> grad = est(key, logits, f)        # logits [K, C] -> grad [K, C]

``names()`` lists what is registered, ``get(name, **settings)`` returns an
:class:`Estimator`, and ``exact_value`` gives the exact expectation by
enumeration.
"""

from arsm_jax.estimators import arsm as _arsm  # noqa: F401  (registers)
from arsm_jax.estimators import exact as _exact  # noqa: F401
from arsm_jax.estimators import loo as _loo  # noqa: F401
from arsm_jax.estimators import multi as _multi  # noqa: F401
from arsm_jax.estimators import reinforce as _reinforce  # noqa: F401
from arsm_jax.estimators import relax as _relax  # noqa: F401
from arsm_jax.estimators import relaxed as _relaxed  # noqa: F401
from arsm_jax.estimators.base import (  # noqa: F401
    Estimator,
    EstimatorOutput,
    check_logits,
    check_objective,
    describe,
    get,
    names,
    register,
)
from arsm_jax.estimators.exact import exact_value  # noqa: F401

# The public surface: the contract, the registry and its checks. The
# building blocks of ARSM (augment, pseudo actions, and the naive O(K C^3)
# reference kept for tests and benchmarks) are in arsm_jax.estimators.swap.
__all__ = [
    "Estimator",
    "EstimatorOutput",
    "check_logits",
    "check_objective",
    "describe",
    "exact_value",
    "get",
    "names",
    "register",
]
