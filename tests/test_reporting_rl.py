"""Figure 3's tables, panels and the text of its intervals."""

import csv

import numpy as np
import pytest

from arsm_jax import plotting
from arsm_jax.reporting import bootstrap
from arsm_jax.reporting import records
from arsm_jax.reporting import results
from arsm_jax.reporting import rl
from arsm_jax.reporting import rl_figures
from arsm_jax.reporting import rl_summary
from arsm_jax.tasks import rl as rl_task
from tests import reporting_runs as synthetic

_E, _S, _W = synthetic.E, synthetic.S, synthetic.W


@pytest.fixture()
def rl_results(tmp_path):
  return synthetic.collected_acrobot_runs(tmp_path)


def png_size(path):
  with open(path, "rb") as fh:
    header = fh.read(24)
  return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24],
                                                              "big")


def test_rl_csv_table_and_options(rl_results):
  results_dir, _ = rl_results
  texts = results.outputs(str(results_dir))
  rows = list(csv.DictReader(texts[str(results_dir / "rl.csv")].splitlines()))
  assert set(rl.COLUMNS) <= set(rows[0])
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
      np.median(rl_task.moving_average(synthetic.REWARD, _W)[-1]))
  assert first["command"] == "python experiments/main.py --x=default"
  assert rows[1]["median_episodes_to_solve"] == ""    # 1 of 3 solved
  table = texts[str(results_dir / "rl_table.md")]
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
  seeds = texts[str(results_dir / "rl_arsm_seeds.md")].splitlines()[2:]
  assert len(seeds) == 2 * _S                        # the two ARSM runs
  # Seed 1 of the default run: never solved, no goal, eligible fraction 0
  # from episode 3, gradient exactly 0 from the measurement at episode 2
  # (at the RL task's floor).
  cells = [c.strip() for c in seeds[1].strip("|").split("|")]
  assert cells[:4] == ["Acrobot-v1", common.replace(";", "; "), "1", "-"]
  assert cells[5:7] == [f"0/{_E}, 0/{_W}", "-"]
  assert cells[-3:] == [f"{_W}/{_W}", "2", "3"]
  cells = [c.strip() for c in seeds[0].strip("|").split("|")]
  assert cells[5:7] == [f"4/{_E}, 3/{_W}", str(_E)]
  assert cells[-2:] == ["-", "-"]


def test_step_caps_are_the_environments_own():
  assert rl.env_step_limit("CartPole-v1") == 500
  assert rl.env_step_limit("Acrobot-v1") == 500
  assert rl.env_step_limit("LunarLander-v3") == 1000
  assert rl.env_step_limit("Pong-v0") is None
  learner = {"config": {"max_episode_steps": 0}}
  assert rl.step_cap("Acrobot-v1", learner) == 500
  assert rl.step_cap("Acrobot-v1", {"config": {"max_episode_steps": 3000}}) \
      == 3000


def test_rl_figure_rows_by_step_cap_and_largest_runs(rl_results, tmp_path):
  results_dir, _ = rl_results
  runs = records.rl_runs(str(results_dir))
  pairs = rl_figures.figure_learners(runs, "Acrobot-v1")
  groups = rl_figures.figure_groups(pairs, "Acrobot-v1")
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
  pairs = rl_figures.figure_learners(runs + [big], "Acrobot-v1")
  assert [(r["name"], l["name"]) for r, l in pairs] == [
      ("acro_big", "arsm"), ("acro_authors", "arsm"), ("acro_default", "a2c")]
  # The per-seed table and the collapse figure keep to the small runs.
  assert all(row["run"] != "acro_big" for row in rl.seed_rows(runs + [big]))
  rows = rl.rows(runs + [big])
  assert "| in rl.csv |" in rl.table(rows)
  path = tmp_path / "x.png"
  assert rl_figures.figure(runs, "Acrobot-v1", str(path))
  width, height = png_size(path)
  assert width == 3 * 570 and height > 900     # two rows of three panels


def test_rl_panels_without_variance_measurements(tmp_path):
  """LunarLander runs measure no gradient variance ([0, S] arrays): that
  panel is left out, not drawn empty."""
  assert rl.zero_from(np.zeros((0,), np.float32),
                      np.zeros((0,), np.int32)) is None
  ma = rl_task.moving_average(synthetic.REWARD, _W)
  path = tmp_path / "lunar.png"
  plotting.plot_rl_panels(
      [{"label": "arsm", "learner": "arsm", "variant": 0,
        "moving_average": ma, "test_moving_average": None,
        "log_grad_variance": np.zeros((0, _S), np.float32),
        "variance_episode": np.zeros((0,), np.int32)}],
      str(path), "LunarLander-v3", 200.0)
  assert path.stat().st_size > 1000
  width, _ = png_size(path)
  assert width == 570            # no test episodes, no variance: one panel
  three = tmp_path / "three.png"
  plotting.plot_rl_panels(
      [{"label": "arsm", "learner": "arsm", "variant": 0,
        "moving_average": ma, "test_moving_average": ma,
        "log_grad_variance": np.zeros((3, _S), np.float32),
        "variance_episode": np.arange(3)}],
      str(three), "Acrobot-v1", -100.0)
  assert png_size(three)[0] == 3 * 570


def test_rl_headline_uses_the_largest_default_options_run():
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
  assert rl_summary.headline(rows) == (
      "CartPole, 900 episodes: ARSM 9/10 (204.5; 169–222), A2C 3/10.")
  fifty = [row("arsm", 45, 190.0, seeds=50, run="fifty",
               interval=(180, 201)),
           row("a2c", 30, 650.5, seeds=50, run="fifty", interval=(500, None))]
  assert rl_summary.headline(rows + fifty) == (
      "CartPole, 900 episodes: ARSM 45/50 (190; 180–201), "
      "A2C 30/50 (650.5; 500–∞).")
  assert rl_summary.headline(rows[1:2]).startswith("no RL run")


def _solve_row(learner, solve, run="r", options="", env="CartPole-v1"):
  low, high = bootstrap.median_interval(solve)
  return {"env": env, "learner": learner, "options": options,
          "seeds": len(solve), "episodes": 900, "run": run, "solve": solve,
          "seeds_solved": sum(v is not None for v in solve),
          "median_episodes_to_solve": rl_task.median_episodes(solve),
          "median_interval_low": low, "median_interval_high": high}


def test_rl_comparison_says_what_survives_the_intervals():
  arsm = _solve_row("arsm", [150 + i for i in range(50)])
  a2c = _solve_row("a2c", [500 + i for i in range(45)] + [None] * 5)
  text = rl_summary.comparison(arsm, a2c)
  assert text.startswith("ARSM 50/50 solved, median 174.5 [")
  assert "the intervals are disjoint, ARSM is faster" in text
  assert "(A2C's median minus ARSM's: 350 episodes, 90% interval [" in text
  assert "Seeds solved, A2C's share minus ARSM's: −10 percentage points " \
      "(90% interval [" in text
  close = _solve_row("a2c", [151 + i for i in range(50)])
  assert "the intervals overlap" in rl_summary.comparison(arsm, close)
  never = _solve_row("relax", [None] * 10)
  text = rl_summary.comparison(arsm, never)
  assert "disjoint, ARSM is faster." in text         # no [∞, ∞] difference
  assert "neither median" in rl_summary.comparison(
      _solve_row("arsm", [None] * 10), never)


def _seed_run(name, rewards, solve, seeds):
  return {"name": name, "env": "CartPole-v1", "learners": [
      {"name": "arsm", "options": "", "curves": {"reward": rewards},
       "result": {"num_seeds": seeds, "num_episodes": 900,
                  "episodes_to_solve": solve,
                  "num_solved": sum(v is not None for v in solve),
                  "median_episodes_to_solve": None}}]}


def test_rl_first_seeds_compares_with_the_ten_seed_run():
  rng = np.random.default_rng(3)
  rewards = rng.integers(8, 500, (900, 50)).astype(np.float32)
  solve = [200 + i for i in range(50)]
  ten = _seed_run("ten", rewards[:, :10].copy(), solve[:10], 10)
  fifty = _seed_run("fifty", rewards, solve, 50)
  (line,) = rl_summary.first_seeds([ten, fifty])
  assert line == ("The first 10 of the 50 seeds of `fifty` against `ten`, "
                  "seeds with identical training rewards in every episode: "
                  "ARSM 10/10.")
  other = rewards[:, :10].copy()
  other[-1, 3] += 1.0                   # seed 3 differs in its last episode
  ten = _seed_run("ten", other, solve[:2] + [None] * 8, 10)
  (line,) = rl_summary.first_seeds([ten, fifty])
  assert ("ARSM 9/10 (episodes to solve, or never, equal on 2/10; its first "
          "10 seeds: 10/10 solved, median 204.5, against 2/10 and not "
          "reached)") in line
  assert rl_summary.first_seeds([fifty]) == []
