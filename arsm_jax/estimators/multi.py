r"""Multi-draw estimators: the average of n independent draws of a single-draw one.

``arsm_multi``, ``ars_multi`` and ``ar_multi`` average ``num_draws``
independent draws (independent Dirichlet draws) of ``arsm``, ``ars`` and
``ar``, so estimators can be compared at equal numbers of f evaluations::

    est = estimators.get("arsm_multi", num_draws=4)

The average of n unbiased draws is unbiased with 1/n of the variance. Every
setting of the underlying estimator is accepted as well (``eval_batch_size``
for ``arsm``). The output reflects all draws: ``samples`` stacks the n draws'
samples ``[n * S, K, C]``, ``weights`` are theirs divided by n, ``value`` is
the mean value and ``num_evals`` the total number of f evaluations.

Draws run one after the other (``lax.map``), so an estimator that skips
evaluations with ``lax.cond`` (ARSM when every pseudo action equals z) keeps
skipping them. :func:`average_draws` does the same for any stateless
estimate function.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp

from arsm_jax.estimators import arsm as arsm_lib
from arsm_jax.estimators import contract
from arsm_jax.estimators import loo
from arsm_jax.estimators import registry
from arsm_jax.estimators import validation

Array = jax.Array


def average_draws(estimate_fn: contract.EstimateFn, key, logits: Array,
                  f: contract.Objective, num_draws: int,
                  **settings) -> contract.EstimatorOutput:
  """Averages ``num_draws`` independent draws of a stateless estimate function.

  Args:
    estimate_fn: ``(key, logits, f, **settings) -> EstimatorOutput``.
    key: PRNG key; draw i uses ``jax.random.split(key, num_draws)[i]``.
    logits: ``[K, C]``.
    f: objective on one-hot ``[K, C]`` arrays.
    num_draws: n >= 1.
    **settings: passed to ``estimate_fn``.

  Returns:
    The combined :class:`~arsm_jax.estimators.contract.EstimatorOutput` (see the
    module docstring).
  """
  n = loo.check_count(num_draws, "num_draws", "average_draws", 1)
  keys = jax.random.split(key, n)
  outs = jax.lax.map(lambda k: estimate_fn(k, logits, f, **settings), keys)
  samples = outs.samples.reshape((-1,) + outs.samples.shape[2:])  # [n*S, K, C]
  weights = outs.weights.reshape(-1) / n                          # [n*S]
  return contract.EstimatorOutput(
      jnp.mean(outs.grad, axis=0), samples, weights, jnp.mean(outs.value),
      jnp.sum(outs.num_evals).astype(jnp.int32))


def make_multi_draw(estimate_fn: contract.EstimateFn) -> contract.EstimateFn:
  """A ``num_draws`` version of a stateless estimate function.

  The returned function takes ``num_draws`` (default 2) plus every keyword
  setting of ``estimate_fn``, and its signature says so, so the registry
  accepts and checks those settings.
  """

  def multi(key, logits, f, *, num_draws: int = 2, **settings):
    return average_draws(estimate_fn, key, logits, f, num_draws, **settings)

  params = [p for p in inspect.signature(estimate_fn).parameters.values()
            if p.kind is not p.VAR_KEYWORD]
  params.append(inspect.Parameter("num_draws", inspect.Parameter.KEYWORD_ONLY,
                                  default=2, annotation=int))
  multi.__signature__ = inspect.Signature(params)
  multi.__name__ = f"{estimate_fn.__name__}_multi"
  multi.__doc__ = (f"Average of num_draws independent draws of "
                   f"{estimate_fn.__name__}.")
  return multi


def make_settings_check(check_single=None) -> registry.SettingsCheck:
  """``check_settings`` hook of a multi-draw estimator: ``num_draws`` (an int
  >= 1) and, through ``check_single``, the underlying estimator's settings."""

  def check(name, settings):
    settings = dict(settings)
    validation.check_int(settings.pop("num_draws"), "num_draws", name)
    if check_single is not None:
      check_single(name, settings)

  return check


arsm_multi = make_multi_draw(arsm_lib.arsm)
ars_multi = make_multi_draw(arsm_lib.ars)
ar_multi = make_multi_draw(arsm_lib.ar)

registry.register(
    "arsm_multi", arsm_multi, unbiased=True,
    check_settings=make_settings_check(arsm_lib.check_arsm_settings),
    cost="num_draws x arsm's", reference=arsm_lib.REFERENCE,
    description="ARSM averaged over num_draws independent Dirichlet draws "
    "(default 2).")
registry.register(
    "ars_multi", ars_multi, unbiased=True,
    check_settings=make_settings_check(arsm_lib.check_ars_settings),
    cost="num_draws C", reference=arsm_lib.REFERENCE,
    description="ARS averaged over num_draws independent draws (default 2).")
registry.register(
    "ar_multi", ar_multi, unbiased=True,
    check_settings=make_settings_check(), cost="num_draws",
    reference=arsm_lib.REFERENCE,
    description="AR averaged over num_draws independent draws (default 2).")
