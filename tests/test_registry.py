"""The estimator registry: names, settings checked at ``get``, ``info``.

Also the public surface of ``arsm_jax.estimators`` and the hooks
``register`` accepts.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arsm_jax import estimators
from arsm_jax.estimators import registry
from arsm_jax.estimators import swap

UNBIASED = ("arsm", "ars", "ar", "reinforce")
W1 = jnp.array([[0.3, -1.0, 2.0, 0.5], [1.0, 0.2, -0.4, 0.7],
                [-0.6, 0.9, 0.1, -0.2]])
GOOD = jnp.array([[0.1, -0.3, 0.5, 0.0], [0.2, 0.1, -0.2, 0.4],
                  [-0.5, 0.3, 0.0, 0.2]])


# ---------------------------------------------------------------------------
# Registry.


def test_registry_lists_the_foundation_estimators():
  assert set(UNBIASED + ("exact",)) <= set(estimators.names())
  assert estimators.names() == sorted(estimators.names())


def test_unknown_name_lists_known_ones():
  with pytest.raises(ValueError, match="Unknown estimator 'armsm'.*arsm"):
    estimators.get("armsm")


def test_unknown_setting_is_rejected():
  with pytest.raises(ValueError, match="Unknown setting.*'tau'.*arsm"):
    estimators.get("arsm", tau=0.5)


def test_estimators_are_hashable_and_compare_by_settings():
  a = estimators.get("exact", max_outcomes=10)
  b = estimators.get("exact", max_outcomes=10)
  assert a == b and hash(a) == hash(b)
  assert a != estimators.get("exact", max_outcomes=11)


def test_public_surface_is_the_contract():
  contract = {"Estimator", "EstimatorInfo", "EstimatorOutput", "describe",
              "exact_value", "get", "info", "names", "register"}
  assert set(estimators.__all__) == contract
  public = {n for n, v in vars(estimators).items()
            if not n.startswith("_") and not isinstance(v, types.ModuleType)}
  assert public == contract, public ^ contract
  assert not hasattr(swap, "pseudo_actions_naive")


def test_info_reports_properties_cost_reference_and_settings():
  info = estimators.info()
  assert list(info) == estimators.names()
  for name, entry in info.items():
    est = estimators.get(name)
    assert entry.description == estimators.describe()[name]
    assert (entry.unbiased, entry.pathwise, entry.stateful) == (
        est.unbiased, est.pathwise, est.stateful)
  for name in UNBIASED + ("exact", "reinforce_loo", "arsm_multi", "ars_multi",
                          "ar_multi"):
    assert info[name].cost and info[name].reference, name
  assert info["arsm"].settings == {"eval_batch_size": None,
                                   "max_distinct": None,
                                   "skip_if_all_equal": False,
                                   "partial_integration": False}
  assert info["arsm_multi"].settings["num_draws"] == 2
  assert info["reinforce_loo"].settings == {"num_samples": 2}
  assert "C(C-1)/2+1" in info["arsm"].cost and "Yin" in info["arsm"].reference


# ---------------------------------------------------------------------------
# Settings, checked at get(...) time.

BAD_SETTINGS = [
    ("arsm", {"eval_batch_size": "abc"}, "eval_batch_size must be an integer "
     ">= 1 or None; got 'abc'"),
    ("arsm", {"eval_batch_size": -1}, "eval_batch_size.*got -1"),
    ("arsm", {"eval_batch_size": 0}, "eval_batch_size.*got 0"),
    ("arsm", {"eval_batch_size": 2.5}, "eval_batch_size.*got 2.5"),
    ("arsm", {"eval_batch_size": True}, "eval_batch_size.*got True"),
    ("arsm", {"max_distinct": 0}, "max_distinct must be >= 1.*got 0"),
    ("arsm", {"max_distinct": "8"}, "max_distinct.*got '8'"),
    ("arsm", {"skip_if_all_equal": "yes"},
     "skip_if_all_equal must be True or False; got 'yes'"),
    ("arsm", {"skip_if_all_equal": 1}, "skip_if_all_equal.*got 1"),
    ("ars", {"eval_batch_size": 0}, "ars: eval_batch_size.*got 0"),
    ("arsm_multi", {"num_draws": 0}, "arsm_multi: num_draws must be an "
     "integer >= 1; got 0"),
    ("arsm_multi", {"num_draws": "abc"}, "num_draws.*got 'abc'"),
    ("arsm_multi", {"eval_batch_size": -1}, "arsm_multi: eval_batch_size"),
    ("arsm_multi", {"skip_if_all_equal": None}, "skip_if_all_equal.*None"),
    ("ars_multi", {"eval_batch_size": "x"}, "ars_multi: eval_batch_size"),
    ("ar_multi", {"num_draws": 2.5}, "ar_multi: num_draws.*2.5"),
    ("reinforce_loo", {"num_samples": 1}, "num_samples must be an integer "
     ">= 2; got 1"),
    ("reinforce_loo", {"num_samples": "2"}, "num_samples.*got '2'"),
    ("exact", {"max_outcomes": 0}, "max_outcomes must be an integer >= 1"),
    ("exact", {"max_outcomes": "abc"}, "max_outcomes.*'abc'"),
    ("exact", {"eval_batch_size": 0}, "exact: eval_batch_size"),
    ("relax", {"hidden_sizes": (4, 0)}, "relax: hidden_sizes.*got \\(4, 0\\)"),
    ("relax", {"cv_learning_rate": -1.0}, "relax: cv_learning_rate.*-1.0"),
    ("relax", {"temperature": 0.0}, "relax: temperature.*got 0.0"),
    ("relax", {"include_f": 1}, "relax: include_f must be True or False"),
    ("relax", {"learn_temperature": "no"}, "relax: learn_temperature.*'no'"),
    ("gumbel_softmax", {"temperature": -1.0},
     "gumbel_softmax: temperature.*-1.0"),
    ("st_gumbel_softmax", {"temperature": "x"},
     "st_gumbel_softmax: temperature.*'x'"),
    ("reinmax", {"temperature": float("inf")}, "reinmax: temperature.*inf"),
    ("reinforce_wor", {"num_samples": 1}, "reinforce_wor: num_samples.*>= 2"),
    ("unordered_set", {"num_samples": 2.5}, "unordered_set: num_samples.*2.5"),
    ("indecater", {"eval_batch_size": 0}, "indecater: eval_batch_size.*got 0"),
    ("gumbel_rao", {"num_samples": 0}, "gumbel_rao: num_samples.*got 0"),
    ("gumbel_rao", {"temperature": -1.0}, "gumbel_rao: temperature.*-1.0"),
]


@pytest.mark.parametrize("name,settings,match", BAD_SETTINGS)
def test_bad_settings_raise_at_get(name, settings, match):
  with pytest.raises(ValueError, match=match):
    estimators.get(name, **settings)


@pytest.mark.parametrize("name,settings", [
    ("arsm", {"eval_batch_size": np.int64(8), "max_distinct": 4,
              "skip_if_all_equal": np.bool_(True)}),
    ("arsm", {"eval_batch_size": None, "max_distinct": None}),
    ("arsm_multi", {"num_draws": 3, "eval_batch_size": 4}),
    ("reinforce_loo", {"num_samples": 2}),
    ("exact", {"max_outcomes": 10, "eval_batch_size": 3}),
])
def test_good_settings_are_accepted(name, settings):
  est = estimators.get(name, **settings)
  assert est(jax.random.PRNGKey(0), GOOD[:2, :3],
             lambda z: jnp.sum(z * W1[:2, :3])).shape == (2, 3)


@pytest.fixture
def scratch_registry():
  """Registers test estimators and removes them afterwards."""
  added = []
  yield added
  for name in added:
    del registry._REGISTRY[name]  # pylint: disable=protected-access


def test_register_calls_the_settings_hook_with_defaults(scratch_registry):
  seen = []

  def check(name, settings):
    seen.append((name, dict(settings)))
    if settings["scale"] <= 0:
      raise ValueError(f"{name}: scale must be > 0; got {settings['scale']}.")

  def scaled(key, logits, f, *, scale=1.0, shift=0):
    out = estimators.get("reinforce").estimate(key, logits, f)
    return out._replace(grad=scale * out.grad + shift)

  estimators.register("_scaled_test", scaled, description="test",
                      check_settings=check, cost="1", reference="none")
  scratch_registry.append("_scaled_test")
  estimators.get("_scaled_test", shift=2)
  assert seen == [("_scaled_test", {"scale": 1.0, "shift": 2})]
  with pytest.raises(ValueError, match="_scaled_test: scale must be > 0"):
    estimators.get("_scaled_test", scale=-1.0)
  entry = estimators.info()["_scaled_test"]
  assert entry.settings == {"scale": 1.0, "shift": 0}
  assert (entry.cost, entry.reference) == ("1", "none")


def test_register_refuses_batch_hooks_without_init(scratch_registry):
  del scratch_registry  # Nothing is registered.
  with pytest.raises(ValueError, match="'_hooked_test': item_state_fn and "
                     "batch_update_fn are hooks of a stateful estimator"):
    estimators.register("_hooked_test", lambda key, logits, f: None,
                        description="test", item_state_fn=lambda s: s)
  assert "_hooked_test" not in estimators.names()


def test_relax_registers_its_batch_hooks():
  est = estimators.get("relax", cv_learning_rate=0.5)
  assert est.item_state_fn is not None and est.batch_update_fn is not None
  assert estimators.get("arsm").item_state_fn is None
