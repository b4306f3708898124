r"""IndeCateR: per-dimension Rao-Blackwellised REINFORCE (De Smet et al. 2023).

For a factorised categorical :math:`p(z) = \prod_k \pi_k(z_k)`, the exact
gradient with respect to dimension k's logits only needs the other
dimensions sampled:

.. math::

  \frac{\partial E_p[f]}{\partial \phi_{kc}}
    = E_{z_{-k}}\Big[\pi_{kc}\big(f(z_{-k}, c) - \textstyle\sum_{c'} \pi_{kc'}
      f(z_{-k}, c')\big)\Big].

One draw :math:`z \sim p` estimates every dimension's expectation with the
same :math:`z_{-k}`: :math:`F_{kc} = f(z \text{ with } z_k \leftarrow c)` and

.. math::

  g_{kc} = \pi_{kc}\Big(F_{kc} - \sum_{c'} \pi_{kc'} F_{kc'}\Big).

Unbiased; exact when K = 1. The inner sum over :math:`c'` is the built-in
baseline.

Choices: all K*C evaluations are made in one ``vmap`` (the K evaluations at
z itself are not deduplicated, keeping the evaluation batch rectangular);
a masked category c (``-inf`` logit) is not evaluated: its slot is
evaluated at z instead and gets zero weight, so f never sees a masked
category. The pathwise term (the gradient reaching parameters inside f) uses
the single draw z with weight 1, as for single-sample estimators.

Cost: K*C evaluations of f per draw.

References:
  De Smet, Sansone and Zuidberg Dos Martires. Differentiable sampling of
  categorical distributions using the CatLog-derivative trick. NeurIPS 2023.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry

Array = jax.Array


def _check_eval_batch_size(eval_batch_size, who: str) -> None:
  if eval_batch_size is not None and (
      isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int)
      or eval_batch_size < 1):
    raise ValueError(f"{who}: eval_batch_size must be a positive int or "
                     f"None; got {eval_batch_size!r}.")


def indecater(key, logits: Array, f: contract.Objective, *,
              eval_batch_size: int | None = None) -> contract.EstimatorOutput:
  r"""IndeCateR from one draw (module docstring).

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays.
    eval_batch_size: ``None`` evaluates the K*C vectors in one ``vmap``; an
      integer evaluates them in chunks of that size (bounding memory).

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput` with the draw z
    (weight 1), ``value`` :math:`f(z)` and ``num_evals = K*C``.
  """
  _check_eval_batch_size(eval_batch_size, "indecater")
  dtype = logits.dtype
  num_dims, num_cats = logits.shape
  z = jax.random.categorical(key, logits, axis=-1)             # [K]
  probs = jax.nn.softmax(logits, axis=-1)                      # [K, C]
  allowed = ~jnp.isneginf(logits)                              # [K, C]
  cats = jnp.where(allowed, jnp.arange(num_cats)[None, :], z[:, None])  # [K, C]
  # Vector (k, c): z with dimension k set to cats[k, c].
  grid = jnp.broadcast_to(z, (num_dims, num_cats, num_dims))    # [K, C, K]
  dims = jnp.arange(num_dims)
  grid = grid.at[dims, :, dims].set(cats)
  onehots = jax.nn.one_hot(grid.reshape(-1, num_dims), num_cats, dtype=dtype)
  values = evaluation.evaluate_many(f, onehots, dtype, eval_batch_size)
  values = values.reshape(num_dims, num_cats)                  # [K, C]
  values = jnp.where(allowed, values, 0.0)
  mean = jnp.sum(probs * values, axis=-1, keepdims=True)       # [K, 1]
  grad = jnp.where(allowed, probs * (values - mean), 0.0)
  onehot_z = jax.nn.one_hot(z, num_cats, dtype=dtype)
  value = values[0, z[0]]
  return contract.EstimatorOutput(grad, onehot_z[None], jnp.ones((1,), dtype),
                                  value, jnp.asarray(num_dims * num_cats,
                                                     jnp.int32))


def check_indecater_settings(name: str, settings) -> None:
  """The ``check_settings`` hook: ``eval_batch_size``, at ``get`` time."""
  _check_eval_batch_size(settings["eval_batch_size"], name)


registry.register(
    "indecater", indecater, unbiased=True,
    check_settings=check_indecater_settings, cost="K*C",
    reference="De Smet, Sansone and Zuidberg Dos Martires. Differentiable "
    "sampling of categorical distributions using the CatLog-derivative "
    "trick. NeurIPS 2023.",
    description="IndeCateR (De Smet et al. 2023): every category of each "
    "dimension with the others at the draw, K*C evaluations.")
