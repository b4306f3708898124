r"""Any estimator inside an Equinox model, its state in ``eqx.nn.State``.

Equinox modules are immutable pytrees; layers with state (``eqx.nn.BatchNorm``)
keep it in an ``eqx.nn.State`` threaded through the call, found by an
``eqx.nn.StateIndex``. :class:`Expectation` does the same for a stateful
estimator (RELAX's control variate and its Adam state)::

    class VAE(eqx.Module):
      encoder: eqx.nn.Linear
      decoder: eqx.nn.Linear
      expectation: arsm_jax.equinox.Expectation

      def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.encoder = eqx.nn.Linear(D, K * C, key=k1)
        self.decoder = eqx.nn.Linear(K * C, D, key=k2)
        self.expectation = arsm_jax.equinox.Expectation(
            "relax", logits_shape=(K, C), key=k3)

      def __call__(self, key, x, state):              # -> ([B], state)
        logits = jax.vmap(self.encoder)(x).reshape(-1, K, C)
        return self.expectation(key, logits, self.neg_elbo, x, state=state)

    model, state = eqx.nn.make_with_state(VAE)(jax.random.PRNGKey(0))

    @eqx.filter_jit
    def train_step(model, state, opt_state, key, x):
      def loss(model):
        values, new_state = model(key, x, state)
        return values.mean(), new_state
      (loss, state), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
      ...

The state is an argument, not a leaf of the model, so gradients and the
optimiser never see it. A stateless estimator returns the state unchanged,
so the same code runs every estimator.

This module needs equinox (the ``[equinox]`` extra); ``import arsm_jax``
never imports it.
"""

from __future__ import annotations

from typing import Callable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp

from arsm_jax import estimators as estimators_lib
from arsm_jax.expectation import expectation


class Expectation(eqx.Module):
  """:func:`arsm_jax.expectation` as an Equinox layer with ``eqx.nn.State``.

  Args:
    estimator: a registered name or an ``Estimator``.
    logits_shape: one item's ``(K, C)``; needed for a stateful estimator.
    key: PRNG key for a stateful estimator's initial state (a fixed key
      when ``None``).
    pathwise_samples: as for :func:`arsm_jax.expectation`.
    **settings: the estimator's settings, checked now.

  Build the model with ``eqx.nn.make_with_state`` (as for BatchNorm) so the
  initial state is collected into an ``eqx.nn.State``.
  """

  estimator: estimators_lib.Estimator = eqx.field(static=True)
  pathwise_samples: Optional[int] = eqx.field(static=True)
  index: Optional[eqx.nn.StateIndex]

  def __init__(self, estimator="arsm", *, logits_shape=None, key=None,
               pathwise_samples: Optional[int] = None, **settings):
    self.estimator = estimators_lib.get(estimator, **settings)
    self.pathwise_samples = pathwise_samples
    self.index = None
    if self.estimator.stateful:
      if logits_shape is None or len(logits_shape) != 2:
        raise ValueError(
            f"Expectation: estimator {self.estimator.name!r} is stateful: "
            "pass logits_shape=(K, C), one item's logits shape.")
      key = jax.random.PRNGKey(0) if key is None else key
      self.index = eqx.nn.StateIndex(self.estimator.init(
          key, jnp.zeros(tuple(logits_shape), jnp.float32)))

  def __call__(self, key, logits, f: Callable[..., jax.Array], *args,
               state: eqx.nn.State):
    """``(per-item surrogates, state)``; see :func:`arsm_jax.expectation`."""
    if self.index is None:
      return expectation(key, logits, f, *args, estimator=self.estimator,
                         pathwise_samples=self.pathwise_samples), state
    values, new = expectation(
        key, logits, f, *args, estimator=self.estimator,
        state=jax.lax.stop_gradient(state.get(self.index)),
        pathwise_samples=self.pathwise_samples)
    return values, state.set(self.index, new)
