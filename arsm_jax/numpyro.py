r"""A numpyro ELBO whose discrete guide sites get any arsm_jax estimator's gradient.

numpyro's only gradient for a discrete guide site is plain REINFORCE
(``TraceGraph_ELBO``). :class:`ELBO` gives it any registered estimator::

    svi = numpyro.infer.SVI(model, guide, numpyro.optim.Adam(1e-3),
                            loss=arsm_jax.numpyro.ELBO("unordered_set",
                                                       num_samples=4))

How one particle is computed. The guide is run once (seeded) to read the
logits of its discrete sites. Every ``Categorical`` site (and every
:class:`OneHotCategorical` site), in plates or with any batch shape, is
flattened to ``[K_site, C]``; the sites are stacked into one K-dimensional
categorical variable ``z`` of logits ``[K, C]``. The objective the estimator
sees is the rest of the ELBO,

.. math::

  f(z) = \log p(x, z, w) - \log q(z) - \log q(w \mid z),

evaluated by replaying the guide with ``z`` substituted (the same guide and
model seeds for every evaluation, so the continuous, reparameterised sites
``w`` use the same noise across one draw's evaluations) and the model against
that guide trace. :func:`arsm_jax.expectation` then turns f and the logits
into a surrogate: its gradient with respect to the logits (and so to
whatever computes them) is the estimator's, and its gradient with respect to
the parameters f uses (the model's, the continuous sites' reparameterised
path) is pathwise at the estimator's samples, as in ``Trace_ELBO``. The
discrete sites' own ``log q(z)`` in f is evaluated at stopped logits: its
direct gradient has mean zero and only adds noise (``TraceGraph_ELBO`` drops
it too). ``elbo.loss(rng_key, params, model, guide, *args)`` is the negative
ELBO estimate (the estimator's value of ``E_z[f(z)]``) and its ``jax.grad``
is the estimator's gradient.

Plate mode. With ``ELBO(..., plate="data")`` the elements of that plate are
independent items, as ``TraceGraph_ELBO`` treats them: each element's
discrete values (``[K_item, C]``: the sites' entries at that element) get
their own estimator draw, whose f is only that element's terms of the ELBO
(the sites inside the plate, summed to the element), and the terms outside
the plate are added once. So one element's gradient no longer carries the
noise of every other element's terms. All elements are drawn under one
``jax.vmap`` and every evaluation of f gathers their values
(``lax.all_gather``) and runs the model once for all of them, so a draw
costs what it costs without the plate. Every discrete site must be inside
the plate, and no site outside it may depend on a discrete value (a
``ValueError`` naming the site otherwise; numpyro's provenance tracking
finds such dependencies). A stateful estimator's state is then sized for
one element and takes one step per draw on the elements' mean
control-variate gradient.

What is refused, with a ``ValueError`` naming the site:

* discrete guide sites of another family (``Bernoulli``, ``Poisson``, ...),
  or with a mask (``handlers.mask``, ``.mask()``);
* continuous guide sites without a reparameterised sampler;
* discrete sites with different numbers of categories C;
* a discrete site whose logits depend on another discrete site's value
  (then the sites are not one K-dimensional variable with fixed logits);
* an estimator that differentiates f in ``z`` (``gumbel_softmax``,
  ``reinmax``, ``relax`` with ``include_f=True``, ...) with a ``Categorical``
  site, whose values are integer indices the model cannot take relaxed;
  :class:`OneHotCategorical` sites take relaxed values.

State. A stateful estimator (``relax``) keeps its state where numpyro keeps
mutable state: a ``numpyro.mutable`` site named :data:`STATE_SITE`, which
``SVI.init`` finds in the guide and ``SVI.update`` carries in
``SVIState.mutable_state``. Wrap the guide with :meth:`ELBO.guide` to add
that site::

    elbo = arsm_jax.numpyro.ELBO("relax")
    svi = numpyro.infer.SVI(model, elbo.guide(guide), optim, loss=elbo)

Each step uses the incoming state for the gradient and returns the state
after one Adam step of the control variate (``num_particles > 1``: one step
on the particles' mean control-variate gradient, as
:func:`arsm_jax.expectation` does for a batch).

This module needs numpyro (``pip install '.[numpyro]'``); ``import arsm_jax``
never imports it.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from numpyro import primitives
from numpyro import distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.util import scale_and_mask
from numpyro.infer import elbo as elbo_lib
from numpyro.ops.provenance import eval_provenance

from arsm_jax import estimators as estimators_lib
from arsm_jax.expectation import expectation

Array = jax.Array
sg = jax.lax.stop_gradient

#: Name of the ``numpyro.mutable`` site that holds a stateful estimator's state.
STATE_SITE = "arsm_jax$estimator_state"


class _OneHotConstraint(constraints.Constraint):
  """One-hot vectors along the last axis."""

  is_discrete = True
  event_dim = 1

  def __call__(self, x):
    return jnp.all((x == 0) | (x == 1), axis=-1) & (jnp.sum(x, axis=-1) == 1)

  def feasible_like(self, prototype):
    return jax.nn.one_hot(jnp.zeros(jnp.shape(prototype)[:-1], jnp.int32),
                          jnp.shape(prototype)[-1], dtype=prototype.dtype)


one_hot = _OneHotConstraint()


class OneHotCategorical(dist.Distribution):
  r"""A categorical distribution over one-hot vectors (numpyro has none).

  ``log_prob(value) = sum(value * log_softmax(logits))`` is defined for
  relaxed (non-one-hot) values too, so a model written with it accepts the
  relaxed samples of ``gumbel_softmax``-type estimators.

  Args:
    logits: ``[..., C]`` unnormalised log-probabilities; the batch shape is
      ``logits.shape[:-1]`` and the event shape ``(C,)``.
  """

  arg_constraints = {"logits": constraints.real_vector}
  support = one_hot
  has_enumerate_support = True
  pytree_data_fields = ("logits",)

  def __init__(self, logits, *, validate_args=None):
    if jnp.ndim(logits) < 1:
      raise ValueError("OneHotCategorical: logits must be at least 1-D.")
    self.logits = logits
    super().__init__(batch_shape=jnp.shape(logits)[:-1],
                     event_shape=jnp.shape(logits)[-1:],
                     validate_args=validate_args)

  def sample(self, key, sample_shape=()):
    index = jax.random.categorical(key, self.logits,
                                   shape=sample_shape + self.batch_shape)
    return jax.nn.one_hot(index, self.event_shape[0],
                          dtype=jnp.result_type(self.logits, jnp.float32))

  def log_prob(self, value):
    log_p = jax.nn.log_softmax(self.logits, axis=-1)
    # 0 * -inf (a masked category not taken) counts as 0, not nan.
    return jnp.sum(jnp.where(value != 0, value * log_p, 0.0), axis=-1)

  @property
  def mean(self):
    return jax.nn.softmax(self.logits, axis=-1)

  def enumerate_support(self, expand=True):
    num_cats = self.event_shape[0]
    values = jnp.eye(num_cats, dtype=jnp.result_type(self.logits, jnp.float32))
    values = values.reshape((num_cats,) + (1,) * len(self.batch_shape)
                            + (num_cats,))
    if expand:
      values = jnp.broadcast_to(values, (num_cats,) + self.batch_shape
                                + (num_cats,))
    return values


def _categorical_logits(fn) -> tuple[Array, bool] | None:
  """``(logits [*value_batch, C], is_one_hot)`` of a categorical site's
  distribution (through ``expand`` and ``to_event``), else ``None``."""
  if isinstance(fn, dist.CategoricalLogits):
    return jnp.asarray(fn.logits), False
  if isinstance(fn, dist.CategoricalProbs):
    return jnp.log(fn.probs), False
  if isinstance(fn, OneHotCategorical):
    return jnp.asarray(fn.logits), True
  if isinstance(fn, dist.ExpandedDistribution):
    inner = _categorical_logits(fn.base_dist)
    if inner is None:
      return None
    logits, is_one_hot = inner
    return jnp.broadcast_to(logits, fn.batch_shape + logits.shape[-1:]), \
        is_one_hot
  if isinstance(fn, dist.Independent):
    return _categorical_logits(fn.base_dist)
  return None


class _Site:
  """One discrete guide site as rows of the K-dimensional variable."""

  def __init__(self, name: str, logits: Array, is_one_hot: bool,
               batch_ndim: int):
    self.name = name
    self.shape = logits.shape[:-1]                  # the site's index shape
    self.num_cats = logits.shape[-1]
    self.size = math.prod(self.shape)               # K_site
    self.is_one_hot = is_one_hot
    self.event_ndim = len(self.shape) - batch_ndim  # to_event dims (indices)
    self.plate_axis = None                          # set in plate mode

  def item_rows(self, logits: Array) -> Array:
    """Plate mode: ``[*shape, C]`` to ``[N, K_site_item, C]``."""
    moved = jnp.moveaxis(logits, self.plate_axis, 0)
    return moved.reshape(moved.shape[0], -1, self.num_cats)

  def value_from_items(self, rows: Array) -> Array:
    """Plate mode: the site's value from ``[N, K_site_item, C]`` rows."""
    rest = tuple(d for i, d in enumerate(self.shape) if i != self.plate_axis)
    full = jnp.moveaxis(rows.reshape((rows.shape[0],) + rest
                                     + (self.num_cats,)), 0, self.plate_axis)
    return self.value(full.reshape(-1, self.num_cats))

  def value(self, rows: Array) -> Array:
    """The site's value from its one-hot (or relaxed) rows ``[K_site, C]``."""
    if self.is_one_hot:
      return rows.reshape(self.shape + (self.num_cats,))
    return jnp.argmax(rows, axis=-1).reshape(self.shape).astype(jnp.int32)

  def log_prob(self, logits: Array, value: Array) -> Array:
    """Elementwise ``log q(value)`` at ``logits [*shape, C]``."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    if self.is_one_hot:
      return jnp.sum(jnp.where(value != 0, value * log_p, 0.0), axis=-1)
    return jnp.take_along_axis(log_p, value[..., None], axis=-1)[..., 0]

  def batch_log_prob(self, logits: Array, value: Array, scale) -> Array:
    """``log q(value)`` over the site's batch shape, scaled."""
    log_q = self.log_prob(logits, value)
    if self.event_ndim:
      log_q = jnp.sum(log_q, axis=tuple(range(-self.event_ndim, 0)))
    return scale_and_mask(log_q, scale)


def _discrete_sites(guide_trace) -> tuple[list[_Site], Array]:
  """The discrete sites of a guide trace and their stacked logits ``[K, C]``.

  Raises:
    ValueError: naming the site, for a discrete site that is not categorical
      or is masked, a continuous site without a reparameterised sampler, or
      sites with different C.
  """
  sites, rows = [], []
  for name, site in guide_trace.items():
    if site["type"] != "sample" or site["is_observed"]:
      continue
    fn = site["fn"]
    if isinstance(fn, dist.MaskedDistribution) or site.get("mask") is not None:
      if _categorical_logits(getattr(fn, "base_dist", fn)) is not None:
        raise ValueError(
            f"arsm_jax.numpyro.ELBO: guide site {name!r} is a masked "
            "categorical; masks on discrete guide sites are not supported.")
    found = _categorical_logits(fn)
    if found is None:
      if fn.support.is_discrete:
        raise ValueError(
            f"arsm_jax.numpyro.ELBO: guide site {name!r} is a discrete "
            f"{type(fn).__name__}; only Categorical and OneHotCategorical "
            "discrete sites are supported.")
      if not fn.has_rsample:
        raise ValueError(
            f"arsm_jax.numpyro.ELBO: guide site {name!r} "
            f"({type(fn).__name__}) is continuous but has no reparameterised "
            "sampler.")
      continue
    logits, is_one_hot = found
    info = _Site(name, logits, is_one_hot, len(fn.batch_shape))
    if sites and info.num_cats != sites[0].num_cats:
      raise ValueError(
          f"arsm_jax.numpyro.ELBO: guide site {name!r} has C = "
          f"{info.num_cats} categories but site {sites[0].name!r} has C = "
          f"{sites[0].num_cats}; discrete sites form one K-dimensional "
          "variable only when they share C.")
    sites.append(info)
    rows.append(logits.reshape(info.size, info.num_cats))
  if not sites:
    return [], jnp.zeros((0, 0))
  return sites, jnp.concatenate(rows, axis=0)


def _log_prob(site) -> Array:
  """A sample site's scaled log-density over its batch shape."""
  if site["intermediates"]:
    log_prob = site["fn"].log_prob(site["value"], site["intermediates"])
  else:
    log_prob = site["fn"].log_prob(site["value"])
  return scale_and_mask(log_prob, site["scale"])


def _log_prob_sum(site) -> Array:
  return jnp.sum(_log_prob(site))


def _plate_frame(site, plate: str):
  """The frame of ``plate`` in the site's plates, or ``None``."""
  return next((frame for frame in site["cond_indep_stack"]
               if frame.name == plate), None)


def _item_terms(log_prob: Array, frame) -> Array:
  """A batch-shaped log-density summed to the plate's elements, ``[N]``."""
  log_prob = jnp.asarray(log_prob)
  if log_prob.ndim < -frame.dim:
    log_prob = log_prob.reshape((1,) * (-frame.dim - log_prob.ndim)
                                + log_prob.shape)
  moved = jnp.moveaxis(log_prob, log_prob.ndim + frame.dim, 0)
  moved = jnp.broadcast_to(moved, (frame.size,) + moved.shape[1:])
  return moved.reshape(frame.size, -1).sum(axis=1)


# The vmap axis of plate mode's items (f gathers all items' values on it).
_ITEMS = "arsm_jax_plate_items"


class ELBO(elbo_lib.ELBO):
  r"""The ELBO with the gradient of its discrete guide sites from an arsm_jax estimator.

  Args:
    estimator: a registered name (``arsm_jax.estimators.names()``) or an
      ``Estimator``.
    num_particles: independent draws averaged per step (each draw is one
      estimator draw over all discrete sites).
    plate: the name of a plate whose elements are independent items, each
      with its own estimator draw (see "Plate mode" in the module
      docstring); ``None`` makes all discrete sites one K-dimensional
      variable.
    vectorize_particles: as for numpyro's ``ELBO``: ``True`` vmaps the
      particles, ``False`` uses ``lax.map``, or a callable.
    **settings: the estimator's settings (``num_samples=4``, ...), checked
      now.

  See the module docstring for what the gradient is, what is refused and
  where a stateful estimator's state lives.
  """

  can_infer_discrete = True

  def __init__(self, estimator: str | estimators_lib.Estimator = "arsm",
               num_particles: int = 1, *, plate: str | None = None,
               vectorize_particles: bool | Callable = True, **settings):
    self.estimator = estimators_lib.get(estimator, **settings)
    if plate is not None and not isinstance(plate, str):
      raise ValueError(f"arsm_jax.numpyro.ELBO: plate must be a plate's name "
                       f"or None; got {plate!r}.")
    self.plate = plate
    super().__init__(num_particles=num_particles,
                     vectorize_particles=vectorize_particles)
    est = self.estimator
    # Estimators that differentiate f in z need relaxed values at the sites.
    self.needs_relaxed = est.pathwise or (
        est.stateful and bool(est.kwargs.get("include_f", False)))

  def __repr__(self):
    return (f"arsm_jax.numpyro.ELBO({self.estimator!r}, "
            f"num_particles={self.num_particles}, plate={self.plate!r})")

  # --------------------------------------------------------------------------
  # State.

  def init_state(self, rng_key, guide, *args, params=None, **kwargs):
    """The initial state of a stateful estimator for ``guide``'s discrete sites.

    Args:
      rng_key: PRNG key for the guide run and the state's initialisation.
      guide: the guide.
      *args: its arguments.
      params: optional ``{name: value}`` substituted into the guide.
      **kwargs: its keyword arguments.

    Returns:
      ``estimator.init(key, logits)`` for the guide's stacked ``[K, C]``
      logits; ``None`` for a stateless estimator.
    """
    if not self.estimator.stateful:
      return None
    guide_key, init_key = jax.random.split(rng_key)
    fn = handlers.seed(guide, guide_key)
    if params:
      fn = handlers.substitute(fn, data=params)
    guide_trace = handlers.trace(fn).get_trace(*args, **kwargs)
    return self._init_from_trace(init_key, guide_trace)

  def _init_from_trace(self, key, guide_trace):
    sites, logits = _discrete_sites(guide_trace)
    if not sites:
      raise ValueError("arsm_jax.numpyro.ELBO: the guide has no Categorical "
                       "or OneHotCategorical site.")
    if self.plate is not None:                    # one item's [K_item, C]
      logits = self._item_logits(sites, guide_trace)[0]
    return self.estimator.init(key, jnp.zeros(logits.shape, jnp.float32))

  def _item_logits(self, sites, guide_trace) -> Array:
    """Plate mode: sets each site's plate axis; the items' ``[N, K_item, C]``."""
    rows = []
    for info in sites:
      site = guide_trace[info.name]
      frame = _plate_frame(site, self.plate)
      if frame is None:
        raise ValueError(
            f"arsm_jax.numpyro.ELBO: guide site {info.name!r} is not inside "
            f"plate {self.plate!r}; with plate={self.plate!r} every discrete "
            "site must be.")
      info.plate_axis = len(info.shape) - info.event_ndim + frame.dim
      if info.plate_axis < 0 or info.shape[info.plate_axis] != frame.size:
        raise ValueError(
            f"arsm_jax.numpyro.ELBO: guide site {info.name!r} (shape "
            f"{info.shape}) has no axis of plate {self.plate!r}'s size "
            f"{frame.size}.")
      rows.append(info.item_rows(_categorical_logits(site["fn"])[0]))
    return jnp.concatenate(rows, axis=1)

  def guide(self, guide_fn: Callable, seed: int = 0) -> Callable:
    """``guide_fn`` with a ``numpyro.mutable`` site holding the estimator state.

    For a stateful estimator (``relax``) pass the wrapped guide to ``SVI``:
    ``SVI.init`` then finds the state (initialised with
    ``jax.random.PRNGKey(seed)`` for this guide's discrete sites) and
    ``SVI.update`` carries it in ``SVIState.mutable_state`` under
    :data:`STATE_SITE`. For a stateless estimator the guide is returned
    unchanged.
    """
    if not self.estimator.stateful:
      return guide_fn

    @functools.wraps(guide_fn)
    def wrapped(*args, **kwargs):
      with handlers.trace() as guide_trace:
        out = guide_fn(*args, **kwargs)
      # Under the ELBO and SVI.update the site is substituted with the
      # carried state; the initial value is only used by SVI.init (under jit
      # its computation is dead code otherwise).
      primitives.mutable(STATE_SITE, self._init_from_trace(
          jax.random.PRNGKey(seed), guide_trace))
      return out

    return wrapped

  # --------------------------------------------------------------------------
  # The loss.

  def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args,
                              **kwargs):
    """The negative ELBO estimate and the mutable state (see the class)."""
    state = param_map.get(STATE_SITE)
    if self.estimator.stateful and state is None:
      raise ValueError(
          f"arsm_jax.numpyro.ELBO: estimator {self.estimator.name!r} is "
          "stateful: wrap the guide, SVI(model, elbo.guide(guide), ...), or "
          f"pass params[{STATE_SITE!r}] = elbo.init_state(key, guide, ...) "
          "to elbo.loss.")
    if state is not None:
      state = sg(state)

    def particle(key):
      return self._particle(key, param_map, state, model, guide, args, kwargs)

    if self.num_particles == 1:
      value, new_state, mutable = particle(rng_key)
    else:
      keys = jax.random.split(rng_key, self.num_particles)
      values, new_states, mutables = self.vectorize_particles_fn(particle, keys)
      value = jnp.mean(values)
      mutable = jax.tree_util.tree_map(lambda x: x[0], mutables)
      new_state = None
      if state is not None:
        new_state = self.estimator.batch_update(state, new_states)
    if state is not None:
      mutable[STATE_SITE] = new_state
    return {"loss": -value, "mutable_state": mutable or None}

  def _particle(self, rng_key, param_map, state, model, guide, args, kwargs):
    """One particle: ``(elbo surrogate, new estimator state, mutable sites)``."""
    model_key, guide_key, est_key = jax.random.split(rng_key, 3)
    guide_trace = handlers.trace(handlers.substitute(
        handlers.seed(guide, guide_key), data=param_map)).get_trace(
            *args, **kwargs)
    sites, logits = _discrete_sites(guide_trace)                  # [K, C]
    if not sites:
      raise ValueError(
          "arsm_jax.numpyro.ELBO: the guide has no Categorical or "
          "OneHotCategorical site; use numpyro.infer.Trace_ELBO.")
    if self.needs_relaxed:
      for site in sites:
        if not site.is_one_hot:
          raise ValueError(
              f"arsm_jax.numpyro.ELBO: estimator {self.estimator.name!r} "
              f"differentiates f in z, but guide site {site.name!r} is a "
              "Categorical whose values are integer indices, so the model "
              "cannot take relaxed values there. Use "
              "arsm_jax.numpyro.OneHotCategorical in the model and guide, or "
              "an estimator that only evaluates f (arsm, reinforce_loo, "
              "unordered_set, relax with include_f=False, ...).")
    # Other mutable sites (batch statistics, say) as Trace_ELBO updates them:
    # from one guide run and one model run against it (under jit the model
    # run is dead code when the model has none).
    model_trace = handlers.trace(handlers.substitute(handlers.replay(
        handlers.seed(model, model_key), guide_trace), data=param_map)).get_trace(
            *args, **kwargs)
    mutable = {name: site["value"]
               for name, site in [*guide_trace.items(), *model_trace.items()]
               if site["type"] == "mutable" and name != STATE_SITE}
    names = {site.name for site in sites}

    def guide_with(values):
      """The guide seeded as above with the discrete ``values`` substituted.

      The substitution is outside the seed handler, so every sample site
      still takes its key: continuous sites see the same noise as in the
      first run and in every evaluation of f.
      """
      return handlers.substitute(handlers.seed(handlers.substitute(
          guide, data=param_map), guide_key), data=values)

    if len(sites) > 1:
      self._check_independent(sites, guide_with, guide_trace, args, kwargs)

    def traces(values):
      g_trace = handlers.trace(guide_with(values)).get_trace(*args, **kwargs)
      m_trace = handlers.trace(handlers.substitute(handlers.replay(
          handlers.seed(model, model_key), g_trace), data=param_map)).get_trace(
              *args, **kwargs)
      return g_trace, m_trace

    if self.plate is not None:
      value, new_state = self._plate_estimate(
          est_key, state, sites, guide_trace, model_trace, traces)
      return value, new_state, mutable

    def f(z):                                                      # z: [K, C]
      values, start = {}, 0
      for site in sites:
        values[site.name] = site.value(z[start:start + site.size])
        start += site.size
      g_trace = handlers.trace(guide_with(values)).get_trace(*args, **kwargs)
      m_trace = handlers.trace(handlers.substitute(handlers.replay(
          handlers.seed(model, model_key), g_trace), data=param_map)).get_trace(
              *args, **kwargs)
      elbo = jnp.zeros((), jnp.float32)
      for site in m_trace.values():
        if site["type"] == "sample":
          elbo = elbo + _log_prob_sum(site)
      for name, site in g_trace.items():
        if site["type"] != "sample" or site["is_observed"]:
          continue
        if name in names:
          # log q(z) at stopped logits: its direct gradient has mean zero.
          info = next(s for s in sites if s.name == name)
          site_logits, _ = _categorical_logits(site["fn"])
          elbo = elbo - jnp.sum(info.batch_log_prob(
              sg(site_logits), site["value"], site["scale"]))
        else:
          elbo = elbo - _log_prob_sum(site)
      return elbo

    if self.estimator.stateful:
      value, new_state = expectation(est_key, logits, f,
                                     estimator=self.estimator, state=state)
    else:
      value, new_state = expectation(est_key, logits, f,
                                     estimator=self.estimator), None
    return value, new_state, mutable

  def _plate_estimate(self, key, state, sites, guide_trace, model_trace,
                      traces):
    """Plate mode: one estimator draw per plate element, f its own terms.

    Returns ``(sum of the items' surrogates + the terms outside the plate,
    new state)``.
    """
    plate, est = self.plate, self.estimator
    item_logits = self._item_logits(sites, guide_trace)          # [N, k, C]
    num_items = item_logits.shape[0]
    names = {info.name for info in sites}
    by_name = {info.name: info for info in sites}

    def sample_sites(g_trace, m_trace):
      for name, site in m_trace.items():
        if site["type"] == "sample":
          yield "model", name, site
      for name, site in g_trace.items():
        if site["type"] == "sample" and not site["is_observed"]:
          yield "guide", name, site

    def log_density(side, name, site):
      """Scaled, batch-shaped; the sign of its ELBO term applied."""
      if side == "guide" and name in names:
        # log q(z) at stopped logits: its direct gradient has mean zero.
        site_logits, _ = _categorical_logits(site["fn"])
        return -by_name[name].batch_log_prob(sg(site_logits), site["value"],
                                             site["scale"])
      return _log_prob(site) if side == "model" else -_log_prob(site)

    # Terms outside the plate must not depend on z: they are evaluated once.
    def outside(**values):
      return {f"{side}:{name}": log_density(side, name, site)
              for side, name, site in sample_sites(*traces(values))
              if _plate_frame(site, plate) is None}

    deps = eval_provenance(outside, **{name: guide_trace[name]["value"]
                                       for name in names})
    for term, found in deps.items():
      if set(found) & names:
        raise ValueError(
            f"arsm_jax.numpyro.ELBO: {term.split(':')[0]} site "
            f"{term.split(':', 1)[1]!r} is outside plate {plate!r} but "
            f"depends on discrete site(s) {sorted(set(found) & names)}; with "
            f"plate={plate!r} only sites inside the plate may.")
    outside_value = jnp.zeros((), jnp.float32)
    for side, name, site in sample_sites(guide_trace, model_trace):
      if _plate_frame(site, plate) is None:
        outside_value = outside_value + jnp.sum(log_density(side, name, site))

    def f_item(z):                            # this item's one-hot [k, C]
      # Under the vmap over items every item evaluates f at once: gather
      # their values, run the model once, and keep this item's terms.
      zs = jax.lax.all_gather(z, _ITEMS)                          # [N, k, C]
      values, start = {}, 0
      for info in sites:
        width = info.size // num_items
        values[info.name] = info.value_from_items(zs[:, start:start + width])
        start += width
      terms = jnp.zeros((num_items,), jnp.float32)
      for side, name, site in sample_sites(*traces(values)):
        frame = _plate_frame(site, plate)
        if frame is not None:
          terms = terms + _item_terms(log_density(side, name, site), frame)
      return terms[jax.lax.axis_index(_ITEMS)]

    item_state = est.item_state(state)

    def one(item_key, logits):
      if est.stateful:
        return expectation(item_key, logits, f_item, estimator=est,
                           state=item_state)
      return expectation(item_key, logits, f_item, estimator=est), None

    values, states = jax.vmap(one, axis_name=_ITEMS)(
        jax.random.split(key, num_items), item_logits)
    new_state = None
    if state is not None:
      new_state = est.batch_update(state, states)
    return jnp.sum(values) + outside_value, new_state

  @staticmethod
  def _check_independent(sites, guide_with, guide_trace, args, kwargs):
    """Raises if a discrete site's logits depend on another one's value."""
    names = [site.name for site in sites]

    def logits_of(**values):
      tr = handlers.trace(guide_with(values)).get_trace(*args, **kwargs)
      return {name: _categorical_logits(tr[name]["fn"])[0] for name in names}

    deps = eval_provenance(
        logits_of, **{name: guide_trace[name]["value"] for name in names})
    for name in names:
      others = sorted(set(deps[name]) & (set(names) - {name}))
      if others:
        raise ValueError(
            f"arsm_jax.numpyro.ELBO: the logits of guide site {name!r} depend "
            f"on the value of discrete site(s) {others}; the discrete sites "
            "must form one K-dimensional variable with fixed logits.")


__all__ = ["ELBO", "OneHotCategorical", "STATE_SITE", "one_hot"]
