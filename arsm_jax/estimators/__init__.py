"""Gradient estimators for categorical variables.

    >>> from arsm_jax import estimators
    >>> est = estimators.get("arsm")
    >>> grad = est(key, logits, f)        # logits [K, C] -> grad [K, C]

``names()`` lists what is registered, ``get(name, **settings)`` returns an
:class:`Estimator`, ``describe()`` and ``info()`` say what each one is and
costs, ``register`` adds one, and ``exact_value`` gives the exact expectation
by enumeration.

The package holds one estimator family a module, on top of four shared ones:
``contract`` (the single-draw contract, :class:`Estimator`, and the
behaviour on bad input: undefined distributions, keys, batch state),
``registry`` (``register``, ``get``, ``names``, ``info``), ``validation``
(the checks of settings and inputs) and ``evaluation`` (``f`` on many
one-hot arrays). The building blocks of ARSM (the Dirichlet augmentation and
pseudo actions) live in ``arsm_jax.estimators.swap``.
"""

from arsm_jax.estimators import arsm as _arsm  # noqa: F401  (registers)
from arsm_jax.estimators import carms as _carms  # noqa: F401
from arsm_jax.estimators import disarm as _disarm  # noqa: F401
from arsm_jax.estimators import exact as _exact  # noqa: F401
from arsm_jax.estimators import gumbel_rao as _gumbel_rao  # noqa: F401
from arsm_jax.estimators import indecater as _indecater  # noqa: F401
from arsm_jax.estimators import loo as _loo  # noqa: F401
from arsm_jax.estimators import multi as _multi  # noqa: F401
from arsm_jax.estimators import reinforce as _reinforce  # noqa: F401
from arsm_jax.estimators import relax as _relax  # noqa: F401
from arsm_jax.estimators import relaxed as _relaxed  # noqa: F401
from arsm_jax.estimators import unordered as _unordered  # noqa: F401
from arsm_jax.estimators import wor as _wor  # noqa: F401
from arsm_jax.estimators.contract import Estimator, EstimatorOutput
from arsm_jax.estimators.registry import (
    EstimatorInfo,
    describe,
    get,
    info,
    names,
    register,
)
from arsm_jax.estimators.exact import exact_value

__all__ = [
    "Estimator",
    "EstimatorInfo",
    "EstimatorOutput",
    "describe",
    "exact_value",
    "get",
    "info",
    "names",
    "register",
]
