"""ProgressReporter: a smoothed rate and an ETA within a factor of two (issue 31).

A fake clock stands for the loops' real costs: a slow first step
(compilation), steady steps, and an evaluation pause every epoch.
"""

import math

import pytest

from arsm_jax import writers


class FakeClock:

  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def _run(clock, reporter, num_steps, compile_s, step_s, epoch, eval_s,
         start=0):
  """Advances the clock through a loop; yields (step, line, true seconds left)."""
  costs = []
  for step in range(start, num_steps):
    cost = step_s + (compile_s if step == start else 0.0)
    if (step + 1) % epoch == 0:
      cost += eval_s
    costs.append(cost)
  for i, step in enumerate(range(start + 1, num_steps + 1)):
    clock.now += costs[i]
    line = reporter(step)
    yield step, line, sum(costs[i + 1:])


@pytest.mark.parametrize("compile_s,step_s,epoch,eval_s", [
    (30.0, 0.1, 275, 5.0),     # the VAE: compilation 300 steps' worth
    (45.0, 0.5, 25, 2.0),      # RL: compile, variance every 25 episodes
    (0.0, 1.0, 10**9, 0.0),    # steady
    (120.0, 0.01, 100, 3.0),   # compilation dwarfs the steps; big evals
])
def test_eta_within_a_factor_of_two_after_a_tenth(compile_s, step_s, epoch,
                                                  eval_s):
  clock = FakeClock()
  num_steps = 2750
  reporter = writers.ProgressReporter(num_steps, every_secs=0.0, clock=clock)
  checked = 0
  for step, _, truth in _run(clock, reporter, num_steps, compile_s, step_s,
                             epoch, eval_s):
    # From a tenth done to 95%: in the last steps one evaluation pause can be
    # most of what is left, which no rate foresees.
    if num_steps // 10 <= step <= num_steps * 0.95:
      eta = reporter.eta(step, clock.now)
      assert truth / 2 <= eta <= 2 * truth, (step, eta, truth)
      checked += 1
  assert checked > 2000 * 0.9


def test_rate_is_smoothed_not_per_call():
  """Per-call rates would jump between 0.2 and 1,000 steps/s here."""
  clock = FakeClock()
  reporter = writers.ProgressReporter(1000, every_secs=0.0, clock=clock)
  rates = []
  for step, _, _ in _run(clock, reporter, 1000, compile_s=20.0, step_s=0.001,
                         epoch=50, eval_s=5.0):
    if step >= 100:
      rates.append(reporter.rate(step, clock.now))
  # The long-run rate is 50 steps / 5.05 s, about 9.9 steps/s.
  assert min(rates) > 9.9 / 2 and max(rates) < 9.9 * 2


def test_first_line_names_the_compilation_then_rate_elapsed_eta():
  clock = FakeClock()
  reporter = writers.ProgressReporter(100, every_secs=10.0, clock=clock,
                                      name="vae/arsm")
  lines = [line for _, line, _ in _run(clock, reporter, 100, compile_s=30.0,
                                       step_s=1.0, epoch=10**9, eval_s=0.0)
           if line]
  assert lines[0] == ("[vae/arsm] step 1/100 (0m31s for the first step "
                      "(compilation included))")
  assert lines[1] == ("[vae/arsm] step 11/100 (1 steps/s, elapsed 0m41s, "
                      "ETA 1m29s)")
  assert len(lines) == 10                 # one every 10 s after the first


def test_every_steps_and_units():
  clock = FakeClock()
  reporter = writers.ProgressReporter(
      90, every_secs=math.inf, every_steps=45, unit="episode", clock=clock,
      first_compiles=False, first_step=0, name="rl/arsm")
  lines = []
  for e in range(1, 91):
    clock.now += 0.25
    line = reporter(e, {"moving_average_median": 21.5, "rollouts": 160})
    if line:
      lines.append(line)
  assert lines == [
      "[rl/arsm] episode 1/90 (0m00s for the first episode) "
      "moving_average_median=21.5 rollouts=160",
      "[rl/arsm] episode 45/90 (4 episodes/s, elapsed 0m11s, ETA 0m11s) "
      "moving_average_median=21.5 rollouts=160",
      "[rl/arsm] episode 90/90 (4 episodes/s, elapsed 0m22s, ETA 0m00s) "
      "moving_average_median=21.5 rollouts=160"]


def test_a_resumed_run_measures_from_its_own_first_step():
  clock = FakeClock()
  reporter = writers.ProgressReporter(1000, every_secs=0.0, first_step=500,
                                      clock=clock)
  for step, _, truth in _run(clock, reporter, 1000, compile_s=60.0,
                             step_s=0.2, epoch=10**9, eval_s=0.0, start=500):
    if step > 510 and step < 1000:
      assert reporter.eta(step, clock.now) == pytest.approx(truth)


def test_forced_last_line_and_unknown_rate():
  clock = FakeClock()
  reporter = writers.ProgressReporter(5, every_secs=60.0, clock=clock)
  clock.now += 2.0
  assert reporter(5, force=True).endswith("(0m02s for the first step "
                                          "(compilation included))")
  assert reporter(5, force=True) == ("[train] step 5/5 (steps/s ?, elapsed "
                                     "0m02s, ETA 0m00s)")
  assert writers.format_seconds(float("inf")) == "?"
  assert writers.format_seconds(3723) == "1h02m03s"
