"""Run records are copied small and read back whole; tables come from them."""

import csv
import json
import os

import numpy as np
import pytest

from configs import rl as rl_config
from configs import vae as vae_config
from arsm_jax.reporting import records
from arsm_jax.reporting import results
from arsm_jax.reporting import vae as vae_report
from arsm_jax.tasks import rl as rl_task
from arsm_jax.tasks import vae
from tests import reporting_runs as synthetic


@pytest.fixture(scope="module")
def two_seed_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  workdirs = []
  for seed in (0, 1):
    config = vae_config.get_config("tiny")
    config.seed = seed
    config.num_epochs = 1
    config.variance_every_steps = 0
    workdir = str(root / f"s{seed}")
    vae.train_and_evaluate(config, workdir)
    workdirs.append(workdir)
  return workdirs


def test_collect_then_table_matches_summaries(two_seed_runs, tmp_path):
  results_dir = tmp_path / "results"
  for seed, workdir in enumerate(two_seed_runs):
    out = records.collect("vae", f"tiny_s{seed}", workdir,
                          f"python experiments/main.py --seed={seed}",
                          results=str(results_dir))
    assert os.path.exists(os.path.join(out, "metrics.jsonl"))

  texts = results.outputs(str(results_dir))
  rows = list(csv.DictReader(texts[str(results_dir / "vae.csv")].splitlines()))
  assert [r["run"] for r in rows] == ["tiny_s0", "tiny_s1"]
  for row, workdir in zip(rows, two_seed_runs):
    with open(os.path.join(workdir, "summary.json")) as fh:
      summary = json.load(fh)
    assert float(row["train_neg_elbo"]) == pytest.approx(
        summary["final_train_neg_elbo"], rel=1e-5)
    assert float(row["test_neg_iwae"]) == pytest.approx(
        summary["final_test_neg_iwae"], rel=1e-5)
    assert row["command"].endswith(f"--seed={row['seed']}")
  table = texts[str(results_dir / "vae_table.md")]
  body = [line for line in table.splitlines()[2:] if line]
  assert len(body) == 1 and "| 0,1 |" in body[0], table
  expected = sorted(float(r["valid_neg_elbo"]) for r in rows)
  assert f"{sum(expected) / 2:.2f} ({expected[0]:.2f}-{expected[1]:.2f})" \
      in body[0]

  figure = tmp_path / "fig.png"
  assert vae_report.figure(records.vae_runs(str(results_dir)), "nonlinear",
                           str(figure), authors=True)
  assert figure.stat().st_size > 1000
  assert not vae_report.figure(records.vae_runs(str(results_dir)),
                               "two_layer", str(tmp_path / "no.png"),
                               authors=False)


def test_collect_refuses_unfinished_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="not finished"):
    records.collect("vae", "x", str(tmp_path), "cmd",
                    results=str(tmp_path / "results"))


def test_rl_collect_keeps_small_curves(tmp_path):
  results_dir, _ = synthetic.collected_acrobot_runs(tmp_path)
  path = results_dir / "rl" / "acro_default" / "arsm" / "curves.npz"
  with np.load(path) as c:
    assert "moving_average" not in c.files      # recomputed from the rewards
    np.testing.assert_array_equal(c["reward"], synthetic.REWARD)
    assert c["entropy"].dtype == np.float16
    assert c["log_grad_variance"].shape == (3, synthetic.S)
  (run,) = [r for r in records.rl_runs(str(results_dir))
            if r["name"] == "acro_default"]
  arsm = run["learners"][0]
  np.testing.assert_array_equal(
      arsm["curves"]["moving_average"],
      rl_task.moving_average(synthetic.REWARD, synthetic.W))


def test_rl_curves_of_real_size_are_small(tmp_path):
  rng = np.random.default_rng(1)
  shape = (900, 10)
  reward = -rng.integers(60, 501, shape).astype(np.float32)
  np.savez(tmp_path / "full.npz", reward=reward, test_reward=reward,
           moving_average=rl_task.moving_average(reward, 100),
           entropy=rng.uniform(0, 1.1, shape).astype(np.float32),
           eligible_fraction=rng.uniform(0, 1, shape).astype(np.float32),
           num_rollouts=rng.integers(0, 17, shape),
           length=(-reward).astype(np.int32),
           log_grad_variance=rng.normal(size=(36, 10)).astype(np.float32),
           variance_episode=np.arange(36) * 25)
  records.reduce_rl_curves(str(tmp_path / "full.npz"),
                           str(tmp_path / "small.npz"))
  assert (tmp_path / "small.npz").stat().st_size < 110_000


def test_rl_options_are_against_the_env_defaults():
  config = rl_task.run_identity(synthetic.acrobot_config(), "arsm")
  assert records.rl_options("Acrobot-v1", config) == (
      "moving_average_window=3;variance_every=2")
  lunar = rl_task.run_identity(rl_config.get_config("lunarlander"), "relax")
  assert records.rl_options("LunarLander-v3", lunar) == ""
  cartpole = rl_task.run_identity(rl_config.get_config("cartpole_authors"),
                                  "arsm")
  assert records.rl_options("CartPole-v1", cartpole) == (
      "rollout_budget=authors;max_episode_steps=3000")


def test_rl_options_read_nested_learner_settings():
  """A config that nests each learner's settings under
  ``learner_settings.<learner>`` is compared with a learner's flat
  config.json field by field."""
  defaults = {"env": "Acrobot-v1", "learning_rate": 0.01,
              "learner_settings": {"a2c": {"critic_learning_rate": 0.1},
                                   "arsm": {"max_rollouts": 8}}}
  a2c = {"learner": "a2c", "env": "Acrobot-v1", "learning_rate": 0.01,
         "critic_learning_rate": 0.1}
  assert records.rl_options("Acrobot-v1", a2c, defaults) == ""
  assert records.rl_options("Acrobot-v1", {**a2c, "critic_learning_rate": 1},
                            defaults) == "critic_learning_rate=1"
  arsm = {"learner": "arsm", "env": "Acrobot-v1", "learning_rate": 0.01,
          "critic_learning_rate": 0.1}
  assert records.rl_options("Acrobot-v1", arsm, defaults) == (
      "critic_learning_rate=0.1")


def test_rl_summary_and_curves_must_agree(tmp_path):
  results_dir, _ = synthetic.collected_acrobot_runs(tmp_path)
  summary_path = results_dir / "rl" / "acro_authors" / "summary.json"
  summary = json.loads(summary_path.read_text())
  summary["learners"]["arsm"]["final_moving_average_median"] = 0.0
  summary_path.write_text(json.dumps(summary))
  with pytest.raises(ValueError, match="final moving average"):
    records.rl_runs(str(results_dir))


def test_rl_options_name_learner_settings_alike_in_old_and_new_runs():
  """A learner setting reads the same whether the run saved it flat under
  its old name (``relax_learning_rate``, ``a2c_bootstrap_truncated``,
  ``rollout_budget``) or as ``learner_settings.<learner>.<field>``; a
  setting at its default is no option, and one that shares a name with a
  shared field is shown with its learner (``relax.learning_rate``)."""
  defaults = rl_config.get_config("").to_dict()
  old_a2c = {"learner": "a2c", "a2c_bootstrap_truncated": True,
             "gae_lambda": 0.95, "critic_learning_rate": 0.03}
  assert records.rl_options("CartPole-v1", old_a2c, defaults) == ""
  old_relax = {"learner": "relax", "relax_learning_rate": 0.01,
               "relax_temperature": 0.5}
  assert records.rl_options("CartPole-v1", old_relax, defaults) == (
      "relax.learning_rate=0.01")
  new_relax = rl_task.run_identity(rl_config.get_config(""), "relax")
  new_relax["learner_settings.relax.learning_rate"] = 0.01
  assert records.rl_options("CartPole-v1", new_relax) == (
      "relax.learning_rate=0.01")
  new_arsm = rl_task.run_identity(rl_config.get_config("cartpole_authors"),
                                  "arsm")
  assert "learner_settings.arsm.rollout_budget" in new_arsm
  old_arsm = {k.rsplit(".", 1)[-1]: v for k, v in new_arsm.items()}
  assert records.rl_options("CartPole-v1", old_arsm) == records.rl_options(
      "CartPole-v1", new_arsm) == "rollout_budget=authors;max_episode_steps=3000"
