r"""Toy problem of Yin, Yue and Zhou (2019), poster figure 1.

Maximise E_{z ~ Cat(softmax(phi))}[f(z)], f(z) = 0.5 + z / (C R), z in 1..C,
by gradient ascent from phi = 0, one draw per iteration, for each estimator.
The optimum is 0.5 + 1/R (0.5333 at R = 30), at softmax(phi) = (0, ..., 0, 1).

    python experiments/main.py --config=configs/toy.py --workdir=runs/toy

takes about a minute on 2 CPU cores (5 estimators x 5,000 iterations, plus
50 variance measurements of 100 draws each). Presets:
``configs/toy.py:quick`` (500 iterations, for a smoke test).
"""

import ml_collections


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "toy"
  # Number of categories C.
  config.num_categories = 30
  # R in f(z) = 0.5 + z / (C R); the optimum is 0.5 + 1 / R.
  config.reward_scale = 30.0
  # Gradient-ascent iterations, one estimator draw each.
  config.num_iterations = 5000
  # Step size of plain gradient ascent on phi.
  config.learning_rate = 1.0
  # Per-estimator step sizes overriding learning_rate (name -> value).
  config.learning_rates = ml_collections.ConfigDict()
  # Comma-separated registered estimator names, run one after the other.
  config.estimators = "exact,reinforce,ar,ars,arsm"
  # Per-estimator settings passed to estimators.get(name, **settings).
  config.estimator_settings = ml_collections.ConfigDict()
  # Measure gradient variance every this many iterations...
  config.variance_every = 100
  # ...from this many independent draws at the current phi.
  config.variance_draws = 100
  # Seed; each estimator's run uses the same one.
  config.seed = 0
  # Draw toy.png at the end.
  config.plot = True

  if preset == "quick":
    config.num_iterations = 500
  elif preset:
    raise ValueError(f"Unknown toy preset {preset!r}; known: 'quick'.")
  return config
