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
  # One of three solves: a resample's median is finite with probability
  # 7/27 (two or three draws of the solved seed).
  assert "| not reached | [3, not reached] | 1/3 |" in body[1]
  # Two of three seeds solve: the interval's upper end is not reached.
  assert "| 5 – 3 | 5 | [3, not reached] | 2/3 |" in body[0]
  assert (first["median_interval_low"], first["median_interval_high"]) == (
      "3", "")
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


def test_rl_figure_rows_by_step_cap_and_largest_runs(rl_results, tmp_path):
  results, _ = rl_results
  make_results = _load("make_results")
  runs = make_results.rl_runs(str(results))
  pairs = make_results.rl_figure_learners(runs, "Acrobot-v1")
  groups = make_results.rl_figure_groups(pairs, "Acrobot-v1")
  # 500-step and 3,000-step runs never share an axis.
  assert [g["cap"] for g in groups] == [500, 3000]
  assert [len(g["series"]) for g in groups] == [2, 1]
  assert all("max_episode_steps=3000" in s["label"]
             for s in groups[1]["series"])
  assert groups[0]["title"].startswith("episodes of at most 500 steps")
  # A larger run of the same learner and options replaces the smaller one.
  big = dict(runs[1], name="acro_big")
  learner = dict(big["learners"][0])
  learner["result"] = dict(learner["result"], num_seeds=50)
  big["learners"] = [learner]
  pairs = make_results.rl_figure_learners(runs + [big], "Acrobot-v1")
  assert [(r["name"], l["name"]) for r, l in pairs] == [
      ("acro_big", "arsm"), ("acro_authors", "arsm"), ("acro_default", "a2c")]
  # The per-seed table and the collapse figure keep to the small runs.
  assert all(row["run"] != "acro_big"
             for row in make_results.rl_seed_rows(runs + [big]))
  rows = make_results.rl_rows(runs + [big])
  assert "| in rl.csv |" in make_results.rl_table(rows)
  path = tmp_path / "x.png"
  assert make_results.rl_figure(runs, "Acrobot-v1", str(path))
  width, height = _png_size(path)
  assert width == 3 * 570 and height > 900     # two rows of three panels


def test_rl_summary_and_curves_must_agree(rl_results):
  results, _ = rl_results
  make_results = _load("make_results")
  summary_path = results / "rl" / "acro_authors" / "summary.json"
  summary = json.loads(summary_path.read_text())
  summary["learners"]["arsm"]["final_moving_average_median"] = 0.0
  summary_path.write_text(json.dumps(summary))
  with pytest.raises(ValueError, match="final moving average"):
    make_results.rl_runs(str(results))


def _png_size(path):
  with open(path, "rb") as fh:
    header = fh.read(24)
  return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24],
                                                              "big")


def test_rl_panels_without_variance_measurements(tmp_path):
  """LunarLander runs measure no gradient variance ([0, S] arrays): that
  panel is left out, not drawn empty."""
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
  width, _ = _png_size(path)
  assert width == 570            # no test episodes, no variance: one panel
  three = tmp_path / "three.png"
  plotting.plot_rl_panels(
      [{"label": "arsm", "learner": "arsm", "variant": 0,
        "moving_average": ma, "test_moving_average": ma,
        "log_grad_variance": np.zeros((3, _S), np.float32),
        "variance_episode": np.arange(3)}],
      str(three), "Acrobot-v1", -100.0)
  assert _png_size(three)[0] == 3 * 570


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


def test_rl_headline_uses_the_largest_default_options_run():
  make_results = _load("make_results")
  def row(learner, solved, median, options="", seeds=10, run="ten",
          interval=(None, None)):
    return {"env": "CartPole-v1", "learner": learner, "options": options,
            "seeds": seeds, "episodes": 900, "seeds_solved": solved,
            "median_episodes_to_solve": median, "run": run,
            "median_interval_low": interval[0],
            "median_interval_high": interval[1]}
  rows = [row("arsm", 9, 204.5, interval=(169, 222)),
          row("arsm", 10, 100, "rollout_budget=x", seeds=50, run="authors"),
          row("a2c", 3, None)]
  assert make_results.rl_headline(rows) == (
      "CartPole, 900 episodes: ARSM 9/10 (204.5; 169–222), A2C 3/10.")
  fifty = [row("arsm", 45, 190.0, seeds=50, run="fifty",
               interval=(180, 201)),
           row("a2c", 30, 650.5, seeds=50, run="fifty", interval=(500, None))]
  assert make_results.rl_headline(rows + fifty) == (
      "CartPole, 900 episodes: ARSM 45/50 (190; 180–201), "
      "A2C 30/50 (650.5; 500–∞).")
  assert make_results.rl_headline(rows[1:2]).startswith("no RL run")


# ----------------------------------------------------------------------------
# The bootstrap interval of the median episodes to solve.


def _covers(interval, value):
  low, high = (np.inf if v is None else v for v in interval)
  value = np.inf if value is None else value
  return low <= value <= high


def test_median_interval_known_cases():
  make_results = _load("make_results")
  interval = make_results.median_interval
  assert interval([100] * 10) == (100, 100)
  assert interval([None] * 10) == (None, None)
  assert interval([150]) == (150, 150)
  # Of three seeds the resampled median is the smallest with probability
  # 7/27 (two or three draws of it) > 5 %, and so the largest.
  assert interval([1, 2, 3]) == (1, 3)
  # One seed of ten unsolved: a resample's median is infinite only with
  # five or more draws of it (probability 0.16 %), so the interval ends.
  low, high = interval([100, 110, 120, 130, 140, 150, 160, 170, 180, None])
  assert 100 <= low <= high <= 180
  # Four of ten unsolved: five or more draws of them have probability 37 %.
  low, high = interval([100, 110, 120, 130, 140, 150, None, None, None, None])
  assert low is not None and high is None
  # Five of ten unsolved: the sample median is not reached.
  assert interval([100] * 5 + [None] * 5)[1] is None
  # A fixed seed: the same interval every time; another seed may differ.
  solve = [None, 300, 120, 480, 610, 95, None, 250, 333, 401]
  assert interval(solve) == interval(solve)
  assert make_results.bootstrap_medians(solve).shape == (
      make_results.BOOTSTRAP_RESAMPLES,)


def test_median_interval_contains_the_sample_median_and_narrows():
  make_results = _load("make_results")
  rng = np.random.default_rng(7)
  for n in (3, 10, 11, 50):
    for _ in range(10):
      times = rng.exponential(200.0, n).round() + 100
      solve = [None if rng.uniform() < 0.3 else float(t) for t in times]
      interval = make_results.median_interval(solve)
      assert _covers(interval, make_results.rl_median(solve)), (solve,
                                                                interval)
  widths = {}
  for n in (10, 50, 400):
    for _ in range(10):
      solve = list(rng.uniform(100.0, 900.0, n).round())
      low, high = make_results.median_interval(solve)
      widths.setdefault(n, []).append(high - low)
  # More seeds, a narrower interval (in the median over trials).
  assert np.median(widths[400]) < np.median(widths[50]) < np.median(
      widths[10])


def test_median_interval_matches_the_exact_bootstrap_distribution():
  """For three seeds the resampled median's distribution is known: the
  median of a resample of (1, 2, 3) is 1 with probability 7/27."""
  make_results = _load("make_results")
  medians = make_results.bootstrap_medians([1, 2, 3])
  assert np.mean(medians == 1) == pytest.approx(7 / 27, abs=0.015)
  assert np.mean(medians == 3) == pytest.approx(7 / 27, abs=0.015)
  assert set(np.unique(medians)) == {1.0, 2.0, 3.0}


def test_median_difference_interval():
  make_results = _load("make_results")
  fast = [100 + i for i in range(20)]
  slow = [500 + i for i in range(20)]
  low, high, defined = make_results.median_difference_interval(slow, fast)
  assert 380 <= low <= 400 <= high <= 420
  assert defined == make_results.BOOTSTRAP_RESAMPLES
  low, high, _ = make_results.median_difference_interval(
      [None] * 20, fast)
  assert low == high == np.inf
  assert make_results.median_difference_interval([None] * 5, [None] * 5) \
      is None


def test_solved_difference_interval():
  make_results = _load("make_results")
  all_solved, none_solved = [100] * 50, [None] * 50
  assert make_results.solved_difference_interval(all_solved, none_solved) \
      == (1.0, 1.0)
  half = [100] * 25 + [None] * 25
  low, high = make_results.solved_difference_interval(half, half)
  assert -0.3 < low < 0 < high < 0.3              # no difference
  low, high = make_results.solved_difference_interval(
      [100] * 40 + [None] * 10, [100] * 10 + [None] * 40)
  assert 0.45 < low < 0.6 < high < 0.75            # 60 points more


def _solve_row(learner, solve, run="r", options="", env="CartPole-v1"):
  make_results = _load("make_results")
  low, high = make_results.median_interval(solve)
  return {"env": env, "learner": learner, "options": options,
          "seeds": len(solve), "episodes": 900, "run": run, "solve": solve,
          "seeds_solved": sum(v is not None for v in solve),
          "median_episodes_to_solve": make_results.rl_median(solve),
          "median_interval_low": low, "median_interval_high": high}


def test_rl_comparison_says_what_survives_the_intervals():
  make_results = _load("make_results")
  arsm = _solve_row("arsm", [150 + i for i in range(50)])
  a2c = _solve_row("a2c", [500 + i for i in range(45)] + [None] * 5)
  text = make_results.rl_comparison(arsm, a2c)
  assert text.startswith("ARSM 50/50 solved, median 174.5 [")
  assert "the intervals are disjoint, ARSM is faster" in text
  assert "(A2C's median minus ARSM's: 350 episodes, 90% interval [" in text
  assert "Seeds solved, A2C's share minus ARSM's: −10 percentage points " \
      "(90% interval [" in text
  close = _solve_row("a2c", [151 + i for i in range(50)])
  assert "the intervals overlap" in make_results.rl_comparison(arsm, close)
  never = _solve_row("relax", [None] * 10)
  text = make_results.rl_comparison(arsm, never)
  assert "disjoint, ARSM is faster." in text         # no [∞, ∞] difference
  assert "neither median" in make_results.rl_comparison(
      _solve_row("arsm", [None] * 10), never)


def _seed_run(name, rewards, solve, seeds):
  return {"name": name, "env": "CartPole-v1", "learners": [
      {"name": "arsm", "options": "", "curves": {"reward": rewards},
       "result": {"num_seeds": seeds, "num_episodes": 900,
                  "episodes_to_solve": solve,
                  "num_solved": sum(v is not None for v in solve),
                  "median_episodes_to_solve": None}}]}


def test_rl_first_seeds_compares_with_the_ten_seed_run():
  make_results = _load("make_results")
  rng = np.random.default_rng(3)
  rewards = rng.integers(8, 500, (900, 50)).astype(np.float32)
  solve = [200 + i for i in range(50)]
  ten = _seed_run("ten", rewards[:, :10].copy(), solve[:10], 10)
  fifty = _seed_run("fifty", rewards, solve, 50)
  (line,) = make_results.rl_first_seeds([ten, fifty])
  assert line == ("The first 10 of the 50 seeds of `fifty` against `ten`, "
                  "seeds with identical training rewards in every episode: "
                  "ARSM 10/10.")
  other = rewards[:, :10].copy()
  other[-1, 3] += 1.0                   # seed 3 differs in its last episode
  ten = _seed_run("ten", other, solve[:2] + [None] * 8, 10)
  (line,) = make_results.rl_first_seeds([ten, fifty])
  assert ("ARSM 9/10 (episodes to solve, or never, equal on 2/10; its first "
          "10 seeds: 10/10 solved, median 204.5, against 2/10 and not "
          "reached)") in line
  assert make_results.rl_first_seeds([fifty]) == []


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
  rl_page = os.path.join(REPO, "docs", "experiments", "rl.md")
  for path, text in make_results.outputs(make_results.RESULTS, readme,
                                         rl_page).items():
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
