"""The results tables are built from collected summaries, never typed."""

import csv
import importlib.util
import json
import os

import numpy as np
import pytest

from configs import rl as rl_config
from configs import vae as vae_config
from arsm_jax import runs
from arsm_jax.tasks import rl
from arsm_jax.tasks import vae

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(REPO, "scripts", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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


def test_collect_then_table_matches_summaries(two_seed_runs, tmp_path,
                                              monkeypatch):
  collect_run = _load("collect_run")
  make_results = _load("make_results")
  results = tmp_path / "results"
  monkeypatch.setattr(collect_run, "REPO", str(tmp_path))
  for seed, workdir in enumerate(two_seed_runs):
    out = collect_run.collect("vae", f"tiny_s{seed}", workdir,
                              f"python experiments/main.py --seed={seed}")
    assert os.path.exists(os.path.join(out, "metrics.jsonl"))
  os.rename(tmp_path / "docs" / "results", results)

  texts = make_results.outputs(str(results))
  rows = list(csv.DictReader(texts[str(results / "vae.csv")].splitlines()))
  assert [r["run"] for r in rows] == ["tiny_s0", "tiny_s1"]
  for row, workdir in zip(rows, two_seed_runs):
    with open(os.path.join(workdir, "summary.json")) as fh:
      summary = json.load(fh)
    assert float(row["train_neg_elbo"]) == pytest.approx(
        summary["final_train_neg_elbo"], rel=1e-5)
    assert float(row["test_neg_iwae"]) == pytest.approx(
        summary["final_test_neg_iwae"], rel=1e-5)
    assert row["command"].endswith(f"--seed={row['seed']}")
  table = texts[str(results / "vae_table.md")]
  body = [line for line in table.splitlines()[2:] if line]
  assert len(body) == 1 and "| 0,1 |" in body[0], table
  expected = sorted(float(r["valid_neg_elbo"]) for r in rows)
  assert f"{sum(expected) / 2:.2f} ({expected[0]:.2f}-{expected[1]:.2f})" \
      in body[0]

  figure = tmp_path / "fig.png"
  assert make_results.vae_figure(make_results.vae_runs(str(results)),
                                 "nonlinear", str(figure), authors=True)
  assert figure.stat().st_size > 1000
  assert not make_results.vae_figure(make_results.vae_runs(str(results)),
                                     "two_layer", str(tmp_path / "no.png"),
                                     authors=False)


def test_old_two_layer_summaries_get_both_layers_evaluations():
  make_results = _load("make_results")
  from arsm_jax import estimators  # pylint: disable=g-import-not-at-top
  assert set(make_results.PATHWISE) == {
      n for n in estimators.names() if estimators.get(n).pathwise}
  old = {"model": "two_layer", "estimator": "arsm",
         "evals_per_image_per_step": 46}
  assert make_results.f_evals_per_image(old) == 92
  assert make_results.f_evals_per_image({**old, "model": "nonlinear"}) == 46
  assert make_results.f_evals_per_image(
      {**old, "evals_counted_over_layers": True}) == 46
  relaxed = {**old, "estimator": "gumbel_rao", "evals_per_image_per_step": 1}
  assert make_results.f_evals_per_image(relaxed) == 1


def test_collect_refuses_unfinished_run(tmp_path):
  collect_run = _load("collect_run")
  with pytest.raises(SystemExit, match="not finished"):
    collect_run.collect("vae", "x", str(tmp_path), "cmd")


# ----------------------------------------------------------------------------
# RL: synthetic run folders in the layout arsm_jax.tasks.rl writes.

_E, _S, _W = 6, 3, 3        # episodes, seeds, moving-average window
_FLOOR = float(np.log(1e-30))
# Acrobot-v1 rewards [E, S]: seed 0 solves at episode 5 (window mean -80),
# seed 1 never reaches the goal, seed 2 solves at episode 3.
_REWARD = np.array([[-500, -500, -90], [-500, -500, -90], [-80, -500, -90],
                    [-90, -500, -90], [-70, -500, -90], [-60, -500, -90]],
                   np.float32)


def _rl_config(**overrides):
  config = rl_config.get_config("acrobot")
  config.num_seeds = _S
  config.num_episodes = _E
  config.moving_average_window = _W
  config.variance_every = 2
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _rl_curves(reward):
  """The arrays of a learner's curves.npz [E, S] (log variance [M, S])."""
  rng = np.random.default_rng(0)
  eligible = np.full((_E, _S), 0.5, np.float32)
  eligible[2:, 1] = 0.0                      # seed 1: 0 from episode 3 on
  log_var = np.array([[3.0, 2.0, 1.0], [1.0, _FLOOR, 1.0],
                      [1.0, _FLOOR, 1.0]], np.float32)   # seed 1: 0 from 2
  length = np.minimum(-reward, 500).astype(np.int32)
  return {
      "reward": reward, "test_reward": reward + 1.0,
      "moving_average": rl.moving_average(reward, _W),
      "test_moving_average": rl.moving_average(reward + 1.0, _W),
      "entropy": rng.uniform(0.0, 1.1, (_E, _S)).astype(np.float32),
      "eligible_fraction": eligible,
      "num_rollouts": np.where(eligible > 0, 8, 0).astype(np.int32),
      "length": length, "env_steps": 3 * length,
      "log_grad_variance": log_var,
      "variance_episode": np.array([0, 2, 4]),
  }


def _write_rl_run(workdir, learners):
  """learners: name -> (config, reward [E, S]); returns the summary."""
  os.makedirs(workdir)
  summary = {"env": "Acrobot-v1", "learners": {}}
  for name, (config, reward) in learners.items():
    folder = os.path.join(workdir, name)
    os.makedirs(folder)
    curves = _rl_curves(reward)
    np.savez(os.path.join(folder, "curves.npz"), **curves)
    with open(os.path.join(folder, "config.json"), "w") as fh:
      json.dump(rl.run_identity(config, name), fh)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as fh:
      fh.write('{"step": 1}\n')
    solve = rl.episodes_to_solve(reward, _W, -100.0)
    test_solve = rl.episodes_to_solve(reward + 1.0, _W, -100.0)
    summary["config"] = runs.config_json(config)
    summary["learners"][name] = {
        "learner": name, "env": "Acrobot-v1", "solved_threshold": -100.0,
        "episodes_to_solve": solve,
        "median_episodes_to_solve": rl.median_episodes(solve),
        "num_solved": sum(v is not None for v in solve),
        "test_episodes_to_solve": test_solve,
        "median_test_episodes_to_solve": rl.median_episodes(test_solve),
        "num_test_solved": sum(v is not None for v in test_solve),
        "final_moving_average_median": float(
            np.median(curves["moving_average"][-1])),
        "final_test_moving_average_median": float(
            np.median(curves["test_moving_average"][-1])),
        "final_entropy_median": 0.5, "final_eligible_fraction_median": 0.25,
        "mean_rollouts_per_episode": 4.0, "env_steps_per_second": 1234.5,
        "num_seeds": _S, "num_episodes": _E}
  with open(os.path.join(workdir, "summary.json"), "w") as fh:
    json.dump(summary, fh)
  return summary


@pytest.fixture()
def rl_results(tmp_path, monkeypatch):
  """Two collected synthetic Acrobot runs; returns (results, docs) folders."""
  collect_run = _load("collect_run")
  monkeypatch.setattr(collect_run, "REPO", str(tmp_path))
  default = _write_rl_run(str(tmp_path / "w_default"), {
      "arsm": (_rl_config(), _REWARD),
      "a2c": (_rl_config(critic_learning_rate=0.01), _REWARD[:, ::-1])})
  _write_rl_run(str(tmp_path / "w_authors"), {
      "arsm": (_rl_config(rollout_budget="authors", max_episode_steps=3000),
               _REWARD[:, [1, 1, 2]])})
  assert default["learners"]["arsm"]["episodes_to_solve"] == [5, None, 3]
  for name in ("default", "authors"):
    out = collect_run.collect("rl", f"acro_{name}", str(tmp_path / f"w_{name}"),
                              f"python experiments/main.py --x={name}")
    assert sorted(os.listdir(out)) == sorted(
        ["summary.json", "command.txt", "arsm"]
        + (["a2c"] if name == "default" else []))
    assert sorted(os.listdir(os.path.join(out, "arsm"))) == [
        "config.json", "curves.npz"]
  return tmp_path / "docs" / "results", tmp_path / "docs"


def test_rl_collect_keeps_small_curves(rl_results):
  results, _ = rl_results
  with np.load(results / "rl" / "acro_default" / "arsm" / "curves.npz") as c:
    assert "moving_average" not in c.files      # recomputed from the rewards
    np.testing.assert_array_equal(c["reward"], _REWARD)
    assert c["entropy"].dtype == np.float16
    assert c["log_grad_variance"].shape == (3, _S)
  make_results = _load("make_results")
  (run,) = [r for r in make_results.rl_runs(str(results))
            if r["name"] == "acro_default"]
  arsm = run["learners"][0]
  np.testing.assert_array_equal(arsm["curves"]["moving_average"],
                                rl.moving_average(_REWARD, _W))


def test_rl_curves_of_real_size_are_small(tmp_path):
  collect_run = _load("collect_run")
  rng = np.random.default_rng(1)
  shape = (900, 10)
  reward = -rng.integers(60, 501, shape).astype(np.float32)
  np.savez(tmp_path / "full.npz", reward=reward, test_reward=reward,
           moving_average=rl.moving_average(reward, 100),
           entropy=rng.uniform(0, 1.1, shape).astype(np.float32),
           eligible_fraction=rng.uniform(0, 1, shape).astype(np.float32),
           num_rollouts=rng.integers(0, 17, shape),
           length=(-reward).astype(np.int32),
           log_grad_variance=rng.normal(size=(36, 10)).astype(np.float32),
           variance_episode=np.arange(36) * 25)
  collect_run.reduce_rl_curves(str(tmp_path / "full.npz"),
                               str(tmp_path / "small.npz"))
  assert (tmp_path / "small.npz").stat().st_size < 110_000


def test_rl_csv_table_and_options(rl_results):
  results, _ = rl_results
  make_results = _load("make_results")
  texts = make_results.outputs(str(results))
  rows = list(csv.DictReader(texts[str(results / "rl.csv")].splitlines()))
  assert set(make_results.RL_COLUMNS) <= set(rows[0])
  # The synthetic runs' window and variance_every differ from the defaults.
  common = "moving_average_window=3;variance_every=2"
  assert [(r["learner"], r["options"], r["run"]) for r in rows] == [
      ("arsm", common, "acro_default"),
      ("arsm", "rollout_budget=authors;max_episode_steps=3000;" + common,
       "acro_authors"),
      ("a2c", "critic_learning_rate=0.01;" + common, "acro_default")]
  first = rows[0]
  assert first["env"] == "Acrobot-v1"
  assert (first["seeds"], first["episodes"]) == (str(_S), str(_E))
  assert first["episodes_to_solve"] == "5 - 3"
  assert float(first["median_episodes_to_solve"]) == 5
  assert first["seeds_solved"] == "2"
  assert float(first["final_moving_average_median"]) == pytest.approx(
      np.median(rl.moving_average(_REWARD, _W)[-1]))
  assert first["command"] == "python experiments/main.py --x=default"
  assert rows[1]["median_episodes_to_solve"] == ""    # 1 of 3 solved
  table = texts[str(results / "rl_table.md")]
  body = [line for line in table.splitlines()[2:] if line]
  assert len(body) == 3
  assert "rollout_budget=authors; max_episode_steps=3000" in body[1]
  assert "| not reached | 1/3 |" in body[1]
  assert "| 5 – 3 | 5 | 2/3 |" in body[0]
  seeds = texts[str(results / "rl_arsm_seeds.md")].splitlines()[2:]
  assert len(seeds) == 2 * _S                        # the two ARSM runs
  # Seed 1 of the default run: never solved, no goal, eligible fraction 0
  # from episode 3, gradient exactly 0 from the measurement at episode 2.
  cells = [c.strip() for c in seeds[1].strip("|").split("|")]
  assert cells[:4] == ["Acrobot-v1", common.replace(";", "; "), "1", "-"]
  assert cells[5:7] == [f"0/{_E}, 0/{_W}", "-"]
  assert cells[-3:] == [f"{_W}/{_W}", "2", "3"]
  cells = [c.strip() for c in seeds[0].strip("|").split("|")]
  assert cells[5:7] == [f"4/{_E}, 3/{_W}", str(_E)]
  assert cells[-2:] == ["-", "-"]


def test_rl_options_are_against_the_env_defaults():
  make_results = _load("make_results")
  config = rl.run_identity(_rl_config(), "arsm")
  assert make_results.rl_options("Acrobot-v1", config) == (
      "moving_average_window=3;variance_every=2")
  lunar = rl.run_identity(rl_config.get_config("lunarlander"), "relax")
  assert make_results.rl_options("LunarLander-v3", lunar) == ""
  cartpole = rl.run_identity(rl_config.get_config("cartpole_authors"), "arsm")
  assert make_results.rl_options("CartPole-v1", cartpole) == (
      "rollout_budget=authors;max_episode_steps=3000")
  assert make_results.LOG_VARIANCE_FLOOR == rl.LOG_VARIANCE_FLOOR


def test_rl_figures_and_check(rl_results):
  results, docs = rl_results
  make_results = _load("make_results")
  argv = dict(results=str(results), docs=str(docs))
  assert make_results.main(["--check"], **argv) == 1     # nothing written
  assert make_results.main([], **argv) == 0
  figures = [docs / "rl_acrobot.png", docs / "rl_acrobot_collapse.png"]
  for figure in figures:
    assert figure.stat().st_size > 1000
  assert not (docs / "rl_cartpole.png").exists()
  first = figures[0].read_bytes()
  assert make_results.main(["--check"], **argv) == 0

  summary_path = results / "rl" / "acro_default" / "summary.json"
  summary = json.loads(summary_path.read_text())
  summary["learners"]["a2c"]["env_steps_per_second"] = 99.0
  summary_path.write_text(json.dumps(summary))
  assert make_results.main(["--check"], **argv) == 1
  assert make_results.main([], **argv) == 0
  assert ",99," in (results / "rl.csv").read_text()
  assert figures[0].read_bytes() == first     # same curves, same bytes
  assert make_results.main(["--check"], **argv) == 0
  figures[1].unlink()
  assert make_results.main(["--check"], **argv) == 1


def test_rl_summary_and_curves_must_agree(rl_results):
  results, _ = rl_results
  make_results = _load("make_results")
  summary_path = results / "rl" / "acro_authors" / "summary.json"
  summary = json.loads(summary_path.read_text())
  summary["learners"]["arsm"]["final_moving_average_median"] = 0.0
  summary_path.write_text(json.dumps(summary))
  with pytest.raises(ValueError, match="final moving average"):
    make_results.rl_runs(str(results))


def test_rl_panels_without_variance_measurements(tmp_path):
  """LunarLander runs measure no gradient variance ([0, S] arrays)."""
  from arsm_jax import plotting  # pylint: disable=g-import-not-at-top
  make_results = _load("make_results")
  assert make_results._zero_from(np.zeros((0,), np.float32),
                                 np.zeros((0,), np.int32)) is None
  ma = rl.moving_average(_REWARD, _W)
  path = tmp_path / "lunar.png"
  plotting.plot_rl_panels(
      [{"label": "arsm", "learner": "arsm", "variant": 0,
        "moving_average": ma, "test_moving_average": None,
        "log_grad_variance": np.zeros((0, _S), np.float32),
        "variance_episode": np.zeros((0,), np.int32)}],
      str(path), "LunarLander-v3", 200.0)
  assert path.stat().st_size > 1000


def _vae_headline_row(estimator, valid, evals, settings="", lr=3e-4,
                      model="nonlinear", epochs=100, decoder_samples=0):
  return {"model": model, "estimator": estimator, "settings": settings,
          "learning_rate": lr, "decoder_samples": decoder_samples,
          "epochs": epochs, "f_evals_per_image": evals,
          "valid_neg_elbo": valid}


def test_vae_headline_picks_the_best_at_equal_and_fewer_evaluations():
  make_results = _load("make_results")
  rows = [
      _vae_headline_row("arsm", 101.0, 46),
      _vae_headline_row("arsm", 99.0, 46),
      _vae_headline_row("arsm", 100.0, 46),
      # Another option of ARSM's, and runs off the headline's protocol: none
      # may be chosen or pooled.
      _vae_headline_row("arsm", 80.0, 46, settings="weight_init=glorot"),
      _vae_headline_row("reinforce_loo", 70.0, 46, lr=1e-4),
      _vae_headline_row("reinforce_loo", 71.0, 46, model="two_layer"),
      _vae_headline_row("reinforce_loo", 72.0, 46, epochs=50),
      _vae_headline_row("reinforce_loo", 93.0, 46, "num_samples=46", 3e-4,
                        decoder_samples=1),
      _vae_headline_row("ars", 95.0, 10),
      _vae_headline_row("unordered_set", 96.0, 8, "num_samples=8"),
      _vae_headline_row("indecater", 90.0, 200),
  ]
  text = make_results.vae_headline(rows)
  assert "ARSM's validation −ELBO is 100.00 (median of 3 seeds;" in text
  assert "the best is `reinforce_loo` (num_samples=46) at 93.00 (one seed)" \
      in text
  assert "with fewer, the best is `ars` at 95.00 (one seed) with 10" in text
  assert "indecater" not in text and "80.00" not in text
  assert make_results.vae_headline(rows[3:]).startswith("no 100-epoch ARSM")


def test_rl_headline_uses_the_default_options_rows():
  make_results = _load("make_results")
  def row(learner, solved, median, options=""):
    return {"env": "CartPole-v1", "learner": learner, "options": options,
            "seeds": 10, "episodes": 900, "seeds_solved": solved,
            "median_episodes_to_solve": median}
  rows = [row("arsm", 9, 204.5), row("arsm", 10, 100, "rollout_budget=x"),
          row("a2c", 3, None)]
  assert make_results.rl_headline(rows) == (
      "CartPole-v1, 900 episodes: ARSM 9/10 (204.5), A2C 3/10.")
  assert make_results.rl_headline(rows[1:2]).startswith("no RL run")


def test_splice_needs_both_markers():
  make_results = _load("make_results")
  start, end = make_results.HEADLINES_START, make_results.HEADLINES_END
  text = f"a\n{start}\nold\n{end}\nb\n"
  assert make_results.splice(text, "new\n", start, end, "R.md") == (
      f"a\n{start}\nnew\n{end}\nb\n")
  with pytest.raises(ValueError, match="R.md lacks the markers"):
    make_results.splice("a\nb\n", "new\n", start, end, "R.md")


def test_the_committed_results_and_readme_are_up_to_date():
  """What ``make_results.py --check`` compares, on the committed files."""
  make_results = _load("make_results")
  readme = os.path.join(REPO, "README.md")
  for path, text in make_results.outputs(make_results.RESULTS,
                                         readme).items():
    with open(path, encoding="utf-8") as fh:
      assert fh.read() == text, (
          f"{os.path.relpath(path, REPO)} is stale: run PYTHONPATH=$PWD "
          "python scripts/make_results.py")


def test_an_unlisted_estimator_gets_the_same_colour_in_every_process():
  """Colours of estimators outside ``plotting.COLORS`` come from the name, not
  from ``hash()``, which Python salts per process."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ("from arsm_jax import plotting; "
          "print(plotting.color('not_a_listed_estimator'))")
  colours = {
      subprocess.run([sys.executable, "-c", code], check=True,
                     capture_output=True, text=True,
                     env={**os.environ, "PYTHONHASHSEED": str(seed),
                          "PYTHONPATH": REPO}).stdout
      for seed in (1, 2, 3)}
  assert len(colours) == 1, colours
