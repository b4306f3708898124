r"""The score-function (REINFORCE) estimator.

:math:`g = f(z)\,\nabla_\phi \log q_\phi(z) = f(z)\,(\mathrm{onehot}(z) - \mathrm{softmax}(\phi))`,
one evaluation of f, no baseline.

References:
  Williams. Simple statistical gradient-following algorithms for
  connectionist reinforcement learning. Machine Learning, 1992.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry

Array = jax.Array


def reinforce(key, logits: Array,
              f: contract.Objective) -> contract.EstimatorOutput:
  """Plain score-function estimate from one sample."""
  dtype = logits.dtype
  num_cats = logits.shape[1]
  z = jax.random.categorical(key, logits, axis=-1)           # [K]
  onehot_z = jax.nn.one_hot(z, num_cats, dtype=dtype)        # [K, C]
  f_z = evaluation.call_objective(f, onehot_z, dtype)
  grad = f_z * (onehot_z - jax.nn.softmax(logits, axis=-1))
  return contract.EstimatorOutput(grad, onehot_z[None], jnp.ones((1,), dtype),
                                  f_z, jnp.asarray(1, jnp.int32))


registry.register(
    "reinforce", reinforce, unbiased=True, cost="1",
    reference="Williams. Simple statistical gradient-following algorithms "
    "for connectionist reinforcement learning. Machine Learning, 1992.",
    description="Score function f(z) grad log q(z), no baseline, 1 evaluation.")
