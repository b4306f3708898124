r"""Any estimator inside a Flax NNX model, its state beside the model's.

:class:`Expectation` is an ``nnx.Module`` wrapping
:func:`arsm_jax.expectation`. A stateful estimator's state (RELAX's control
variate and its Adam state) is an :class:`EstimatorState` variable of the
module, updated in place on every call, the way ``nnx.BatchNorm`` updates
its ``BatchStat``: it lives in the model, is split, merged, jitted and
checkpointed with it, and an optimiser built with ``wrt=nnx.Param`` leaves
it alone::

    class VAE(nnx.Module):
      def __init__(self, rngs):
        self.encoder = nnx.Linear(D, K * C, rngs=rngs)
        self.decoder = nnx.Linear(K * C, D, rngs=rngs)
        self.expectation = arsm_jax.nnx.Expectation(
            "relax", logits_shape=(K, C), rngs=rngs)

      def __call__(self, key, x):                     # -> [B] surrogates
        logits = self.encoder(x).reshape(-1, K, C)
        return self.expectation(key, logits, self.neg_elbo, x)

    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, key, x):
      loss, grads = nnx.value_and_grad(lambda m: m(key, x).mean())(model)
      optimizer.update(model, grads)      # the estimator state was updated
      return loss                         # by the call itself

This module needs flax (the ``[experiments]`` extra); ``import arsm_jax``
never imports it.
"""

from __future__ import annotations

from typing import Callable

from flax import nnx
import jax
import jax.numpy as jnp

from arsm_jax import estimators as estimators_lib
from arsm_jax.expectation import expectation


class EstimatorState(nnx.Variable):
  """A stateful estimator's state (a pytree, e.g. ``RelaxState``).

  Not an ``nnx.Param``: gradients and ``nnx.Optimizer(..., wrt=nnx.Param)``
  skip it; :class:`Expectation` updates it on every call.
  """


class Expectation(nnx.Module):
  """:func:`arsm_jax.expectation` as an NNX module that keeps the estimator state.

  Args:
    estimator: a registered name or an ``Estimator``.
    logits_shape: one item's ``(K, C)``; needed for a stateful estimator
      (its state is sized by it).
    rngs: ``nnx.Rngs`` for a stateful estimator's initial state (its
      ``params`` stream; a fixed key when ``None``).
    pathwise_samples: as for :func:`arsm_jax.expectation`.
    **settings: the estimator's settings, checked now.
  """

  def __init__(self, estimator="arsm", *, logits_shape=None,
               rngs: nnx.Rngs | None = None,
               pathwise_samples: int | None = None, **settings):
    self.estimator = estimators_lib.get(estimator, **settings)
    self.pathwise_samples = pathwise_samples
    state = None
    if self.estimator.stateful:
      if logits_shape is None or len(logits_shape) != 2:
        raise ValueError(
            f"Expectation: estimator {self.estimator.name!r} is stateful: "
            "pass logits_shape=(K, C), one item's logits shape.")
      key = rngs.params() if rngs is not None else jax.random.PRNGKey(0)
      state = EstimatorState(self.estimator.init(
          key, jnp.zeros(tuple(logits_shape), jnp.float32)))
    # Assigned once: None is static, an EstimatorState is the module's data.
    self.state = state

  def __call__(self, key, logits, f: Callable[..., jax.Array], *args):
    """The per-item surrogates ``[...]`` (see :func:`arsm_jax.expectation`);
    a stateful estimator's state is updated in place."""
    if self.state is None:
      return expectation(key, logits, f, *args, estimator=self.estimator,
                         pathwise_samples=self.pathwise_samples)
    values, new_state = expectation(
        key, logits, f, *args, estimator=self.estimator,
        state=jax.lax.stop_gradient(self.state.get_value()),
        pathwise_samples=self.pathwise_samples)
    self.state.set_value(new_state)
    return values
