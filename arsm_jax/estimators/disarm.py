r"""DisARM for categorical variables through binary trees (Dong, Mnih and Tucker 2021).

A C-way categorical is written as a walk down a binary tree with C leaves:
internal node v sends the walk right with probability
:math:`\sigma(\theta_v) = P(\text{right subtree}) / P(\text{node's subtree})`,
i.e. :math:`\theta_v = \log\sum_{c \in R_v} e^{\phi_c} - \log\sum_{c \in L_v}
e^{\phi_c}`. Two binarisations:

* ``"stick_breaking"``: node i (i < C - 1) decides "category i" (right)
  against "a category after i" (left): :math:`\sigma(\theta_i) = p_i /
  \sum_{c \ge i} p_c`;
* ``"tree"``: a balanced tree; node [lo, hi) splits at (lo + hi) // 2.

Each node gets one uniform u; the pair of samples uses :math:`b = 1[u <
\sigma(\theta)]` and :math:`\tilde b = 1[1 - u < \sigma(\theta)]` (antithetic),
and :math:`z, \tilde z` are the leaves the two walks reach.

Plain DisARM (``importance_weight=False``; the paper's DisARM-SB and
DisARM-Tree) estimates the gradient in the node logits and maps it to
:math:`\phi` by the chain rule. For node v, with V and :math:`\tilde V` the
nodes the two walks visit:

* v on both walks: :math:`\tfrac12 (f(z) - f(\tilde z))\,(-1)^{\tilde b_v}\,
  1[b_v \ne \tilde b_v]\,\sigma(|\theta_v|)` (binary DisARM);
* v on one walk only (say z's): :math:`\tfrac12 (f(z) - f(\tilde z))\,
  (b_v - \sigma(\theta_v))`, REINFORCE with the other sample as baseline
  (it does not depend on :math:`u_v`).

Importance-weighted DisARM (``importance_weight=True``, DisARM-IW) is
leave-one-out REINFORCE on the coupled pair with the weight
:math:`w = p(z)p(\tilde z)/q(z, \tilde z)`:

.. math::

  g = \tfrac12\,w\,(f(z) - f(\tilde z))\,
      (\mathrm{onehot}(z) - \mathrm{onehot}(\tilde z)),

zero when :math:`z = \tilde z`. The walks share the nodes down to where they
split and are independent after, so w is a product over the shared nodes:
:math:`\sigma^2 / (2\sigma - 1)` where both went right,
:math:`(1 - \sigma)^2 / (1 - 2\sigma)` where both went left, and
:math:`\sigma(|\theta|)` at the node where they split. It is the CARMS form
with M = 2 under this coupling. Importance weighting is unbiased only if
every pair of distinct categories can be drawn together: an antithetic pair
can never both go left at a node with :math:`\sigma > 1/2`, so the
categories past such a node would never meet. Stick-breaking with the
logits in ascending order has :math:`\sigma_i = p_{(i)} / \sum_{c \ge i}
p_{(c)} \le 1/(C - i) \le 1/2` at every node, so that is the one
configuration ``importance_weight=True`` accepts (a tree, or another order,
is a ``ValueError``; measured, index order and trees are biased at K > 1).

``logits_order``: the categories are placed on the tree's leaves in index
order (``None``) or sorted by their logits (``"ascending"``,
``"descending"``, ``"abs"``: by |logit|, ascending). Any order that depends
on the logits alone keeps every variant unbiased.

Which variant. The authors' README launches stick-breaking with
``--importance_weight --logits_order=ascending``, so ``disarm``'s defaults
are DisARM-IW through stick-breaking in ascending order. (Their code drops
the order on the importance-weighted path, which is then biased whenever a
stick-breaking probability exceeds 1/2; ours keeps it.) The other variants
are settings; ``docs/diagnostics_table.md`` measures them side by side.

Multi-sample form. The paper's estimator uses one pair (2 evaluations).
``num_pairs`` averages that many independent pairs (2 * num_pairs
evaluations), for comparisons at 4 and 8 evaluations; that average is ours,
not the paper's.

References:
  Dong, Mnih and Tucker. Coupled gradient estimators for discrete latent
  variables. NeurIPS 2021.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry
from arsm_jax.estimators import validation

Array = jax.Array

BINARISATIONS = ("stick_breaking", "tree")
LOGITS_ORDERS = (None, "ascending", "descending", "abs")


@functools.lru_cache(maxsize=None)
def tree_structure(binarisation: str, num_cats: int):
  """The static description of a binarisation with C leaves.

  Returns:
    ``(right, left, path)``: ``right``/``left`` ``[N, C]`` bool, the leaves
    under each of the N = C - 1 internal nodes' right and left children;
    ``path`` ``[C, N]`` int8, +1 where leaf c's walk goes right at node v,
    -1 where it goes left, 0 where it does not visit v.
  """
  nodes = []
  if binarisation == "stick_breaking":
    for i in range(num_cats - 1):
      nodes.append((list(range(i + 1, num_cats)), [i]))
  else:
    stack = [(0, num_cats)]
    while stack:
      lo, hi = stack.pop(0)
      if hi - lo < 2:
        continue
      mid = (lo + hi) // 2
      nodes.append((list(range(lo, mid)), list(range(mid, hi))))
      stack += [(lo, mid), (mid, hi)]
  num_nodes = len(nodes)
  right = np.zeros((num_nodes, num_cats), bool)
  left = np.zeros((num_nodes, num_cats), bool)
  for v, (lset, rset) in enumerate(nodes):
    left[v, lset] = True
    right[v, rset] = True
  path = (right.T.astype(np.int8) - left.T.astype(np.int8))
  return right, left, path


def _leaf(b: Array, path: Array) -> Array:
  """``[K]`` leaf reached by the node decisions ``b`` ``[K, N]`` (bool)."""
  step = jnp.where(b, 1, -1).astype(jnp.int8)                  # [K, N]
  ok = (path[None] == 0) | (path[None] == step[:, None, :])    # [K, C, N]
  return jnp.argmax(jnp.all(ok, axis=-1), axis=-1).astype(jnp.int32)


def _sort_order(logits: Array, logits_order) -> Array:
  """``[K, C]``: the category at each leaf position."""
  if logits_order is None:
    return jnp.broadcast_to(jnp.arange(logits.shape[1], dtype=jnp.int32),
                            logits.shape)
  key = {"ascending": logits, "descending": -logits,
         "abs": jnp.abs(logits)}[logits_order]
  return jnp.argsort(key, axis=-1).astype(jnp.int32)


def _one_pair(key, logits: Array, f: contract.Objective, binarisation: str,
              importance_weight: bool, logits_order):
  """One antithetic pair: ``(grad [K, C], onehots [2, K, C], values [2])``."""
  dtype = logits.dtype
  num_dims, num_cats = logits.shape
  right, left, path = (jnp.asarray(a) for a in tree_structure(binarisation,
                                                              num_cats))
  order = _sort_order(logits, logits_order)                    # [K, C]
  probs = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), order,
                              axis=-1)                         # leaf order
  mass_r = probs @ right.T.astype(dtype)                       # [K, N]
  mass_l = probs @ left.T.astype(dtype)
  total = mass_r + mass_l
  sigma = jnp.where(total > 0, mass_r / jnp.where(total > 0, total, 1.0),
                    0.5)                                       # [K, N]
  num_nodes = right.shape[0]
  u = jax.random.uniform(key, (num_dims, num_nodes), dtype,
                         minval=jnp.finfo(dtype).tiny)
  b1 = u < sigma
  b2 = u > 1.0 - sigma                                         # 1 - u < sigma
  leaf1, leaf2 = _leaf(b1, path), _leaf(b2, path)              # [K]
  cat1 = jnp.take_along_axis(order, leaf1[:, None], axis=-1)[:, 0]
  cat2 = jnp.take_along_axis(order, leaf2[:, None], axis=-1)[:, 0]
  onehots = jax.nn.one_hot(jnp.stack([cat1, cat2]), num_cats, dtype=dtype)
  values = evaluation.evaluate_many(f, onehots, dtype)         # [2]
  diff = 0.5 * (values[0] - values[1])
  visit1 = path[leaf1] != 0                                    # [K, N]
  visit2 = path[leaf2] != 0
  both = visit1 & visit2
  split = both & (b1 != b2)
  high = jnp.maximum(sigma, 1.0 - sigma)                       # sigma(|theta|)

  if importance_weight:
    agree_right = both & b1 & b2
    agree_left = both & ~b1 & ~b2
    den_r, den_l = 2.0 * sigma - 1.0, 1.0 - 2.0 * sigma
    ratio = jnp.where(agree_right, sigma**2 / jnp.where(den_r > 0, den_r, 1.0),
                      1.0)
    ratio = jnp.where(agree_left,
                      (1.0 - sigma)**2 / jnp.where(den_l > 0, den_l, 1.0),
                      ratio)
    ratio = jnp.where(split, high, ratio)
    weight = jnp.prod(ratio, axis=-1)                          # [K]
    weight = jnp.where(leaf1 == leaf2, 0.0, weight)
    grad_leaf = (diff * weight)[:, None] * (
        jax.nn.one_hot(leaf1, num_cats, dtype=dtype)
        - jax.nn.one_hot(leaf2, num_cats, dtype=dtype))        # [K, C]
  else:
    sign = jnp.where(b2, -1.0, 1.0)
    g_theta = jnp.where(split, diff * sign * high, 0.0)
    g_theta += jnp.where(visit1 & ~visit2, diff * (b1 - sigma), 0.0)
    g_theta += jnp.where(visit2 & ~visit1, -diff * (b2 - sigma), 0.0)
    # d theta_v / d phi_c = p_c / P(R_v) on the right, -p_c / P(L_v) on the
    # left (theta is a difference of two log-sum-exps).
    inv_r = jnp.where(mass_r > 0, 1.0 / jnp.where(mass_r > 0, mass_r, 1.0), 0)
    inv_l = jnp.where(mass_l > 0, 1.0 / jnp.where(mass_l > 0, mass_l, 1.0), 0)
    grad_leaf = probs * ((g_theta * inv_r) @ right.astype(dtype)
                         - (g_theta * inv_l) @ left.astype(dtype))
  # Back from leaf positions to categories.
  grad = jnp.zeros_like(grad_leaf).at[
      jnp.arange(num_dims)[:, None], order].set(grad_leaf)
  return grad, onehots, values


def disarm(key, logits: Array, f: contract.Objective, *,
           binarisation: str = "stick_breaking",
           importance_weight: bool = True,
           logits_order="ascending",
           num_pairs: int = 1) -> contract.EstimatorOutput:
  r"""Categorical DisARM from antithetic pairs (module docstring).

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays.
    binarisation: ``"stick_breaking"`` or ``"tree"``.
    importance_weight: DisARM-IW (True) or DisARM through the node logits
      (False).
    logits_order: ``None`` (index order), ``"ascending"``, ``"descending"``
      or ``"abs"``: how categories are placed on the leaves.
    num_pairs: independent antithetic pairs averaged (2 evaluations each).

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput` with the
    ``2 * num_pairs`` samples, weights ``1 / (2 num_pairs)``, ``value`` the
    mean of their values and ``num_evals = 2 * num_pairs``.
  """
  keys = jax.random.split(key, num_pairs)
  grads, onehots, values = jax.vmap(
      lambda k: _one_pair(k, logits, f, binarisation, importance_weight,
                          logits_order))(keys)
  grad = jnp.mean(grads, axis=0)
  grad = jnp.where(jnp.isneginf(logits), 0.0, grad)
  samples = onehots.reshape((-1,) + logits.shape)              # [2P, K, C]
  n = 2 * num_pairs
  return contract.EstimatorOutput(grad, samples,
                                  jnp.full((n,), 1.0 / n, logits.dtype),
                                  jnp.mean(values), jnp.asarray(n, jnp.int32))


def check_disarm_settings(name: str, settings) -> None:
  """The ``check_settings`` hook of ``disarm``."""
  if settings["binarisation"] not in BINARISATIONS:
    raise ValueError(f"{name}: binarisation must be one of {BINARISATIONS}; "
                     f"got {settings['binarisation']!r}.")
  validation.check_bool(settings["importance_weight"], "importance_weight",
                        name)
  if settings["logits_order"] not in LOGITS_ORDERS:
    raise ValueError(f"{name}: logits_order must be one of {LOGITS_ORDERS}; "
                     f"got {settings['logits_order']!r}.")
  validation.check_int(settings["num_pairs"], "num_pairs", name, minimum=1)
  if settings["importance_weight"] and (
      settings["binarisation"] != "stick_breaking"
      or settings["logits_order"] != "ascending"):
    raise ValueError(
        f"{name}: importance_weight=True needs binarisation='stick_breaking' "
        "and logits_order='ascending' (only then is every pair of distinct "
        "categories drawn with positive probability, which the weights need "
        "to be unbiased); got binarisation="
        f"{settings['binarisation']!r}, logits_order="
        f"{settings['logits_order']!r}. Use importance_weight=False for "
        "the other variants.")


registry.register(
    "disarm", disarm, unbiased=True, check_settings=check_disarm_settings,
    cost="2 num_pairs",
    reference="Dong, Mnih and Tucker. Coupled gradient estimators for "
    "discrete latent variables. NeurIPS 2021.",
    description="Categorical DisARM (Dong et al. 2021): antithetic pairs "
    "through a stick-breaking (default) or tree binarisation, importance "
    "weighted by default; 2 evaluations per pair (num_pairs, default 1).")
