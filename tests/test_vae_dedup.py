"""``config.dedup``: the VAE trained with batch deduplication gives the same rows.

Every metrics row (training, validation, test, IWAE and gradient-variance
rows, every field) of a run with ``dedup=True`` must equal bit for bit that
of the plain run, with a buffer that holds every batch's distinct points
(the deduplicated branch at every step) and with one too small for any batch
(the overflow branch at every step). The buffer size is forced by replacing
``BufferSizer.size``; which branch each step took is recorded from
``batched.expectation``'s statistics.
"""

import json
import os

import jax
import pytest

from arsm_jax import batched
from arsm_jax import writers
from arsm_jax.tasks import vae
from configs import vae as vae_config

# The tiny preset at C = 6: P = 16 points per image, 20 x 16 = 320 per batch.
NUM_CATEGORIES = 6
NUM_POINTS = 20 * batched.num_points(3, NUM_CATEGORIES)


def _config(**overrides):
  config = vae_config.get_config("tiny")
  config.num_categories = NUM_CATEGORIES
  config.num_epochs = 2
  for k, v in overrides.items():
    config[k] = v
  return config


def _rows(workdir):
  with open(os.path.join(workdir, writers.METRICS_FILE)) as fh:
    return [json.loads(ln) for ln in fh]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("vae_dedup") / "plain")
  vae.train_and_evaluate(_config(), workdir)
  return workdir


def _train_recording(monkeypatch, workdir, size, **overrides):
  """Trains with the buffer forced to ``size``; returns each step's overflow."""
  monkeypatch.setattr(batched.BufferSizer, "size", property(lambda _: size))
  original = batched.expectation
  overflows, totals = [], []

  def recording(*args, **kwargs):
    values, stats = original(*args, return_stats=True, **kwargs)
    jax.debug.callback(lambda o, t: (overflows.append(bool(o)),
                                     totals.append(int(t))),
                       stats.overflow, stats.total)
    return values

  monkeypatch.setattr(batched, "expectation", recording)
  vae.train_and_evaluate(_config(dedup=True, **overrides), workdir)
  return overflows, totals


@pytest.mark.slow
@pytest.mark.parametrize("size,branch", [(NUM_POINTS - 40, "dedup"),
                                         (10, "overflow")])
def test_dedup_gives_every_metrics_row_of_the_plain_run(
    plain, tmp_path, monkeypatch, size, branch):
  workdir = str(tmp_path / branch)
  overflows, totals = _train_recording(monkeypatch, workdir, size)
  steps = 2 * (120 // 20)
  assert len(overflows) == steps          # only the training loss dedups
  if branch == "dedup":
    assert not any(overflows), totals
    assert max(totals) <= size < NUM_POINTS
  else:
    assert all(overflows), totals
  assert _rows(workdir) == _rows(plain)


@pytest.mark.slow
def test_dedup_may_change_on_resumption(plain, tmp_path, monkeypatch):
  # One epoch deduplicated, resumed for the second without: the rows of the
  # plain two-epoch run.
  workdir = str(tmp_path / "switched")
  _train_recording(monkeypatch, workdir, NUM_POINTS - 40, num_epochs=1)
  monkeypatch.undo()
  summary = vae.train_and_evaluate(_config(), workdir)
  assert summary["dedup"] is False
  assert _rows(workdir) == _rows(plain)


@pytest.mark.slow
def test_default_sizer_trains_and_is_off_by_default(plain, tmp_path):
  assert vae_config.get_config().dedup is False
  workdir = str(tmp_path / "sized")
  summary = vae.train_and_evaluate(_config(dedup=True, num_epochs=1,
                                           variance_every_steps=0), workdir)
  assert summary["dedup"] is True
  rows = [r for r in _rows(plain) if "valid_neg_elbo" in r]
  assert summary["final_valid_neg_elbo"] == rows[0]["valid_neg_elbo"]


@pytest.mark.parametrize("overrides,match", [
    ({"estimator": "reinforce"}, "config.dedup=True applies to estimator "
     "'arsm' on the one-layer models .*got estimator 'reinforce', model "
     "'nonlinear'"),
    ({"model": "two_layer"}, "got estimator 'arsm', model 'two_layer'"),
])
def test_dedup_with_another_estimator_or_two_layers_is_refused(
    overrides, match, tmp_path):
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=match):
    vae.train_and_evaluate(_config(dedup=True, **overrides), str(workdir))
  assert not workdir.exists()
  for model in ("nonlinear", "linear"):
    vae.validate_config(_config(dedup=True, model=model))

