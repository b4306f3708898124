r"""CARMS: categorical antithetic REINFORCE from M coupled samples.

Dimitriev and Zhou (2021). Per dimension, M samples are drawn jointly
antithetic through the Dirichlet copula

.. math::

  d \sim \mathrm{Dir}(1_M), \qquad u_m = (1 - d_m)^{M-1},

each :math:`u_m` uniform on (0, 1) (:math:`1 - d_m \sim \mathrm{Beta}(M-1, 1)`)
and the M negatively dependent; :math:`z_m` is the category whose interval
:math:`[L_c, R_c)` of the cumulative probabilities (under a category order)
holds :math:`u_m`. Each :math:`z_m` has the law :math:`\mathrm{Cat}(p)`, and the
estimate is leave-one-out REINFORCE with pairwise importance weights

.. math::

  g_k = \frac{1}{M(M-1)} \sum_i \sum_{j \ne i} w^k_{ij}\,(f_i - f_j)\,
        (\mathrm{onehot}(z_{ik}) - p_k), \qquad
  w^k_{ij} = \frac{p_k(z_{ik})\,p_k(z_{jk})}{q_2(z_{ik}, z_{jk})},

:math:`q_2` the exact pairwise pmf of the coupling. With the weights the pair
term has the expectation it would have for independent samples, so the
estimate is unbiased (for K > 1 too: the copulas of different dimensions are
independent, and :math:`w^k` corrects the one dimension whose score it
multiplies). :math:`w = 1` would be REINFORCE-LOO on coupled samples, which
is biased.

The pairwise pmf. For :math:`u_i, u_j` the copula's joint CDF is

.. math::

  P(u_i \le a, u_j \le b) = P(d_i \ge 1 - a^{1/n},\ d_j \ge 1 - b^{1/n})
    = \big(a^{1/n} + b^{1/n} - 1\big)_+^{\,n}, \qquad n = M - 1,

because the uniform distribution on the simplex gives
:math:`P(d_i \ge \alpha, d_j \ge \beta) = (1 - \alpha - \beta)_+^{M-1}`. So
:math:`q_2(a, b)` is the rectangle mass
:math:`h(x_{11}) - h(x_{10}) - h(x_{01}) + h(x_{00})`, :math:`h(x) = x_+^n`, at
:math:`x_{00} = L_a^{1/n} + L_b^{1/n} - 1`, :math:`x_{10} = x_{00} + A`,
:math:`x_{01} = x_{00} + B`, :math:`A = R_a^{1/n} - L_a^{1/n}`,
:math:`B = R_b^{1/n} - L_b^{1/n}`. Taken literally that difference cancels
catastrophically in float32 for small probabilities (and can come out zero
or negative for a pair that was drawn). :func:`pair_pmf` instead expands it
into a trinomial sum of non-negative terms in each of the five sign cases
of the corners, and computes A and B from the widths
:math:`R - L = p` without subtraction.

Category order and support. Importance weighting is unbiased only where
:math:`q_2(a, b) > 0` for every pair of distinct categories with
:math:`p_a p_b > 0` (pairs in the same category need no weight: the two
samples are exchangeable, so their term has mean zero under either law). A
single order leaves holes: with M = 2 two small categories at the start of
the order are never drawn together, and for any M both u's are never small
together (:math:`u_i^{1/n} + u_j^{1/n} > 1`). So, as in the authors' code, an
order is drawn per dimension and draw from a family, and :math:`q_2` is the
pmf averaged over the family, which covers every pair:

* ``"first_last"`` (any M; the authors' family): the C(C-1)/2 orders with a
  chosen pair of categories first and last and the rest in index order (the
  pair (a, b) is possible whenever a is last and b first);
* ``"rotations"`` (M >= 3): the C cyclic shifts (a pair is possible
  whenever one of them is last), C instead of C(C-1)/2 orders of work;
* ``"auto"`` (default): rotations for M >= 3, first_last for M = 2. On the
  test problems rotations had the same or lower variance.

Conditioning on the drawn order instead (its own :math:`q_2`) would be biased
through those holes; the authors' code also clips the weights to
[0.01, 10] with +1e-3 smoothing, which is biased too. Ours are exact and
unclipped.

With C = 2 this is ARMS (Dimitriev and Zhou 2021, the binary case), and with
M = 2 as well it is DisARM for one binary variable, draw by draw.

Cost: M evaluations of f per draw.

References:
  Dimitriev and Zhou. CARMS: Categorical-Antithetic-REINFORCE Multi-Sample
  Gradient Estimator. NeurIPS 2021.
  Dimitriev and Zhou. ARMS: Antithetic-REINFORCE-Multi-Sample Gradient for
  Binary Variables. ICML 2021.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from arsm_jax.estimators import contract
from arsm_jax.estimators import evaluation
from arsm_jax.estimators import registry
from arsm_jax.estimators import validation

Array = jax.Array

ORDERS = ("auto", "first_last", "rotations")
MAX_SAMPLES = 64   # keeps the trinomial coefficients (< 3^63) finite in float32


def dirichlet_copula(key, num_samples: int, shape, dtype=jnp.float32) -> Array:
  """``[M, *shape]`` uniforms, jointly antithetic over the first axis.

  ``u_m = (1 - d_m)^(M-1)`` with ``d ~ Dir(1_M)`` drawn independently for
  every index of ``shape``.
  """
  e = jax.random.exponential(key, (num_samples,) + tuple(shape), dtype)
  e = jnp.maximum(e, jnp.finfo(dtype).tiny)
  d = e / jnp.sum(e, axis=0, keepdims=True)
  return jnp.exp((num_samples - 1) * jnp.log1p(-d))


@functools.lru_cache(maxsize=None)
def _trinomial(n: int):
  """Exponents ``[T, 3]`` and coefficients ``[T]`` of (x + y + w)^n."""
  exps = np.array([(i, j, n - i - j) for i in range(n + 1)
                   for j in range(n + 1 - i)], np.int32)
  coef = np.array([math.factorial(n) / (math.factorial(i) * math.factorial(j)
                                        * math.factorial(l))
                   for i, j, l in exps], np.float64)
  return exps, coef


def _powers(v: Array, n: int) -> Array:
  """``[..., n + 1]``: v^0 .. v^n by repeated products (no ``pow``)."""
  return jnp.cumprod(jnp.concatenate(
      [jnp.ones_like(v)[..., None],
       jnp.broadcast_to(v[..., None], v.shape + (n,))], axis=-1), axis=-1)


def _roots(left: Array, width: Array, n: int) -> tuple[Array, Array]:
  """``(L^(1/n), R^(1/n) - L^(1/n))`` for ``R = L + width``, the second
  without cancellation: ``width / sum_k R^(k/n) L^((n-1-k)/n)``."""
  left = jnp.clip(left, 0.0, 1.0)   # cumulative sums can land just outside
  right = jnp.minimum(left + width, 1.0)
  if n == 1:
    return left, width
  r_lo, r_hi = jnp.power(left, 1.0 / n), jnp.power(right, 1.0 / n)
  denom = jnp.sum(_powers(r_hi, n - 1) * _powers(r_lo, n - 1)[..., ::-1],
                  axis=-1)
  return r_lo, jnp.where(width > 0, width / jnp.where(width > 0, denom, 1.0),
                         0.0)


def _pair_from_roots(root_a: Array, a: Array, root_b: Array, b: Array,
                     n: int) -> Array:
  """The rectangle mass from the two intervals' roots (see :func:`pair_pmf`)."""
  dtype = root_a.dtype
  x00 = root_a + root_b - 1.0
  x10, x01, x11 = x00 + a, x00 + b, x00 + a + b
  exps, coef = _trinomial(n)
  i, j = exps[:, 0], exps[:, 1]
  masks = jnp.asarray(np.stack([
      (i >= 1) & (j >= 1),                     # every corner >= 0
      (i != n) & (j != n),                     # only x00 < 0
      j >= 1,                                  # x01 <= 0 < x10
      i >= 1,                                  # x10 <= 0 < x01
      np.ones_like(i, bool),                   # only x11 > 0
  ]), dtype)                                   # [5, T]
  zero = jnp.zeros_like(x00)
  case = jnp.where(x00 >= 0, 0, jnp.where(
      (x10 > 0) & (x01 > 0), 1, jnp.where(
          x10 > 0, 2, jnp.where(x01 > 0, 3, 4))))
  pick = lambda *options: jnp.select([case == c for c in range(5)],
                                     list(options))
  x = pick(a, x10, x10, a, jnp.maximum(x11, 0.0))
  y = pick(b, x01, b, x01, zero)
  w = pick(x00, -x00, zero, zero, zero)
  terms = (_powers(x, n)[..., exps[:, 0]] * _powers(y, n)[..., exps[:, 1]]
           * _powers(w, n)[..., exps[:, 2]])                      # [..., T]
  total = jnp.sum(masks[case] * jnp.asarray(coef, dtype) * terms, axis=-1)
  return jnp.where(x11 > 0, total, 0.0)


def pair_pmf(left_a: Array, width_a: Array, left_b: Array, width_b: Array,
             num_samples: int) -> Array:
  r"""Exact :math:`P(u_i \in [L_a, L_a + p_a),\ u_j \in [L_b, L_b + p_b))`.

  For two of the ``num_samples`` uniforms of :func:`dirichlet_copula`; all
  arguments broadcast together. The rectangle mass of the module docstring,
  written in each case as a sum of non-negative trinomial terms.
  """
  n = num_samples - 1
  root_a, a = _roots(left_a, width_a, n)
  root_b, b = _roots(left_b, width_b, n)
  return _pair_from_roots(root_a, a, root_b, b, n)


@functools.lru_cache(maxsize=None)
def _first_last_orders(num_cats: int) -> np.ndarray:
  """``[G, 2]`` (first, last) of the C(C-1)/2 orders of ``"first_last"``."""
  a, b = np.triu_indices(num_cats, k=1)
  return np.stack([a, b], axis=1).astype(np.int32)


def _orders(kind: str, index: Array, num_cats: int) -> Array:
  """``[K, C]`` category at each position, for order ``index[k]`` of ``kind``.

  ``"first_last"`` order g puts category a_g first, b_g last and the rest in
  index order; ``"rotations"`` order r is r + 1, ..., C - 1, 0, ..., r.
  """
  positions = jnp.arange(num_cats, dtype=jnp.int32)
  if kind == "rotations":
    return (index[:, None] + 1 + positions[None, :]) % num_cats
  ends = jnp.asarray(_first_last_orders(num_cats))[index]     # [K, 2]
  first, last = ends[:, :1], ends[:, 1:]
  # The middle: categories other than first and last, in index order.
  rest = jnp.where(positions[None, :] >= first, positions[None, :] + 1,
                   positions[None, :])                        # skip first
  rest = jnp.where(rest >= last, rest + 1, rest)              # skip last
  order = jnp.concatenate([first, rest[:, :num_cats - 2], last], axis=1)
  return order.astype(jnp.int32)


def _left_edges(kind: str, z: Array, probs: Array) -> Array:
  """``[G, M, K]`` cumulative probability before category ``z[m, k]`` in
  every order g of ``kind`` (G = C(C-1)/2 or C)."""
  num_cats = probs.shape[-1]
  cum = jnp.cumsum(probs, axis=-1)                            # [K, C]
  below = cum - probs                                         # P(< c)
  take = lambda x: jnp.take_along_axis(x[None], z[..., None],
                                       axis=-1)[..., 0]       # [M, K]
  below_z, p_z = take(below), take(probs)
  if kind == "rotations":
    r = jnp.arange(num_cats)[:, None, None]                   # [G, 1, 1]
    upto_r = cum.T[:, None, :]                                # [G, 1, K] P(<= r)
    zz = z[None]
    return jnp.where(zz > r, below_z - upto_r,
                     jnp.where(zz < r, below_z + 1.0 - upto_r, 1.0 - p_z))
  ends = _first_last_orders(num_cats)
  a = jnp.asarray(ends[:, 0])[:, None, None]                  # [G, 1, 1]
  b = jnp.asarray(ends[:, 1])[:, None, None]
  p_a = probs.T[ends[:, 0]][:, None, :]                       # [G, 1, K]
  p_b = probs.T[ends[:, 1]][:, None, :]
  zz = z[None]
  middle = (p_a + below_z - jnp.where(a < zz, p_a, 0.0)
            - jnp.where(b < zz, p_b, 0.0))
  return jnp.where(zz == a, 0.0, jnp.where(zz == b, 1.0 - p_z, middle))


def carms_from_uniforms(u: Array, order_index: Array, logits: Array,
                        f: contract.Objective,
                        category_order: str = "first_last"
                        ) -> contract.EstimatorOutput:
  """CARMS given the copula's uniforms and each dimension's drawn order.

  Args:
    u: ``[M, K]`` uniforms from :func:`dirichlet_copula`.
    order_index: ``[K]`` int, which order of ``category_order`` each
      dimension uses.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays.
    category_order: ``"first_last"`` or ``"rotations"``.
  """
  dtype = logits.dtype
  num_samples = u.shape[0]
  num_dims, num_cats = logits.shape
  probs = jax.nn.softmax(logits, axis=-1)                      # [K, C]
  order = _orders(category_order, order_index, num_cats)       # [K, C]
  p_ord = jnp.take_along_axis(probs, order, axis=-1)           # [K, C]
  right = jnp.concatenate([jnp.cumsum(p_ord, axis=-1)[:, :-1],
                           jnp.ones((num_dims, 1), dtype)], axis=-1)
  # Position: the interval [left, right) holding u; empty intervals are passed.
  pos = jnp.sum(right[None, :, :-1] <= u[:, :, None], axis=-1)  # [M, K]
  z = jnp.take_along_axis(order[None], pos[..., None], axis=-1)[..., 0]
  onehots = jax.nn.one_hot(z, num_cats, dtype=dtype)            # [M, K, C]
  values = evaluation.evaluate_many(f, onehots, dtype)          # [M]

  # q2 averaged over the orders (the order is drawn uniformly among them),
  # for the M(M-1)/2 pairs i < j (it is symmetric; the diagonal is unused).
  left = _left_edges(category_order, z, probs)                  # [G, M, K]
  p_z = jnp.take_along_axis(probs[None], z[..., None], axis=-1)[..., 0]
  rows, cols = np.triu_indices(num_samples, k=1)
  # The roots depend on one sample's interval: once per (order, sample).
  root, width_root = _roots(left, p_z[None], num_samples - 1)  # [G, M, K]
  q2_pairs = jnp.mean(_pair_from_roots(
      root[:, rows], width_root[:, rows], root[:, cols], width_root[:, cols],
      num_samples - 1), axis=0)                                 # [P, K]
  w_pairs = jnp.where(q2_pairs > 0, p_z[rows] * p_z[cols]
                      / jnp.where(q2_pairs > 0, q2_pairs, 1.0), 0.0)
  weights = jnp.zeros((num_samples, num_samples, num_dims), dtype)
  weights = weights.at[rows, cols].set(w_pairs).at[cols, rows].set(w_pairs)
  off_diag = 1.0 - jnp.eye(num_samples, dtype=dtype)
  diffs = values[:, None] - values[None, :]                     # [M, M]
  coeff = jnp.einsum("ijk,ij->ik", weights, diffs * off_diag) / (
      num_samples * (num_samples - 1))                          # [M, K]
  grad = jnp.einsum("mk,mkc->kc", coeff, onehots - probs[None])
  grad = jnp.where(jnp.isneginf(logits), 0.0, grad)
  sample_weights = jnp.full((num_samples,), 1.0 / num_samples, dtype)
  return contract.EstimatorOutput(grad, onehots, sample_weights,
                                  jnp.mean(values),
                                  jnp.asarray(num_samples, jnp.int32))


def carms(key, logits: Array, f: contract.Objective, *, num_samples: int = 4,
          category_order: str = "auto") -> contract.EstimatorOutput:
  r"""CARMS from ``num_samples`` jointly antithetic draws (module docstring).

  Args:
    key: PRNG key.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays.
    num_samples: M, 2 <= M <= 64: the coupled draws (and evaluations of f).
    category_order: the family of category orders one is drawn from per
      dimension and draw: ``"first_last"`` (the authors' C(C-1)/2 orders, one
      per pair of end categories; any M), ``"rotations"`` (the C cyclic
      shifts; M >= 3 only, C instead of C(C-1)/2 orders of work) or
      ``"auto"`` (the default: rotations for M >= 3, first_last for M = 2).

  Returns:
    An :class:`~arsm_jax.estimators.contract.EstimatorOutput` with the M samples
    ``[M, K, C]``, weights ``1/M`` each, ``value`` the mean of the M values
    and ``num_evals = M``.
  """
  num_dims, num_cats = logits.shape
  if category_order == "auto":
    category_order = "rotations" if num_samples >= 3 else "first_last"
  key_u, key_order = jax.random.split(key)
  u = dirichlet_copula(key_u, num_samples, (num_dims,), logits.dtype)
  num_orders = (num_cats if category_order == "rotations"
                else num_cats * (num_cats - 1) // 2)
  order_index = jax.random.randint(key_order, (num_dims,), 0, num_orders)
  return carms_from_uniforms(u, order_index, logits, f, category_order)


def check_carms_settings(name: str, settings) -> None:
  """The ``check_settings`` hook: ``num_samples`` and ``category_order``."""
  m = validation.check_int(settings["num_samples"], "num_samples", name,
                           minimum=2)
  if m > MAX_SAMPLES:
    raise ValueError(f"{name}: num_samples must be <= {MAX_SAMPLES}; got {m}.")
  if settings["category_order"] not in ORDERS:
    raise ValueError(f"{name}: category_order must be one of {ORDERS}; got "
                     f"{settings['category_order']!r}.")
  if settings["category_order"] == "rotations" and m < 3:
    raise ValueError(f"{name}: category_order='rotations' needs num_samples "
                     f">= 3 (with 2 antithetic samples some pairs of "
                     f"categories are never drawn together); got {m}.")


registry.register(
    "carms", carms, unbiased=True, check_settings=check_carms_settings,
    cost="num_samples",
    reference="Dimitriev and Zhou. CARMS: Categorical-Antithetic-REINFORCE "
    "Multi-Sample Gradient Estimator. NeurIPS 2021.",
    description="CARMS (Dimitriev and Zhou 2021): num_samples (default 4) "
    "antithetic draws from a Dirichlet copula, leave-one-out with exact "
    "pairwise importance weights; num_samples evaluations.")
