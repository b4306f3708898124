"""Policy gradient with ARSM "try-and-see" rollouts (poster figure 3).

Ten seeds of each learner train together (vmapped over seeds), one episode
per update, and the figure shows the median and the 10th-90th percentile
band over seeds of the 100-episode moving-average reward and of the
log-variance of the policy-gradient estimate.

    python experiments/main.py --config=configs/rl.py:cartpole \\
        --workdir=runs/rl_cartpole
    python experiments/main.py --config=configs/rl.py:acrobot \\
        --workdir=runs/rl_acrobot

Each command runs ``arsm`` and ``a2c`` (``--config.learner=arsm`` for one)
for 900 episodes x 10 seeds. On a loaded 2-core machine it took about 2.5
minutes for CartPole and 6 minutes for Acrobot (compilation included; most of
it ARSM's rollouts and the variance measurements). Presets:
``cartpole`` (the default), ``cartpole_arsm``, ``cartpole_a2c``,
``cartpole_relax``, ``cartpole_authors`` (ARSM with the authors' rollout
budget rule and 3000-step cap), the same five for ``acrobot``,
``lunarlander`` (ARSM, seeds one after another, rollouts by
replay on the host: about 0.3 s per episode while the lander crashes within
~100 steps, and up to ~16,000 replayed and rolled-out steps per episode once
it survives 1,000 steps; ``--config.learner=a2c,relax`` collect one host
episode per seed over the worker processes and update all seeds at once),
``tiny`` (a few short CartPole episodes, for
tests).
"""

import ml_collections

# Presets (``configs/rl.py:<preset>``, ``arsm-jax --config=rl:<preset>``).
PRESETS = {"": "CartPole-v1, ARSM and A2C, 10 seeds x 900 episodes"}
for _env, _name in (("cartpole", "CartPole-v1"), ("acrobot", "Acrobot-v1")):
  PRESETS[_env] = f"{_name}, ARSM and A2C"
  for _learner in ("arsm", "a2c", "relax"):
    PRESETS[f"{_env}_{_learner}"] = f"{_name}, {_learner.upper()} only"
  PRESETS[f"{_env}_authors"] = (f"{_name}, ARSM with the authors' rollout "
                                "budget and 3000-step cap")
PRESETS["lunarlander"] = "LunarLander-v3 (Box2D on the host), ARSM"
PRESETS["tiny"] = "a few short CartPole episodes (tests)"


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  """Returns the RL config for ``preset`` (see the module docstring)."""
  from arsm_jax.rl import registry  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict()
  config.experiment = "rl"
  # Environment: 'CartPole-v1' or 'Acrobot-v1' (gymnax), or 'LunarLander-v3'
  # (gymnasium + Box2D on the host, variance_every = 0).
  config.env = "CartPole-v1"
  # Comma-separated learners, run one after the other: arsm, a2c,
  # reinforce_ma, relax.
  config.learner = "arsm,a2c"
  # Independent runs, vmapped together.
  config.num_seeds = 10
  # Training episodes per run (one update per episode).
  config.num_episodes = 900
  # Adam step size of the policy.
  config.learning_rate = 0.03
  # Discount.
  config.gamma = 0.99
  # Each learner's own settings, at the defaults its module declares (the
  # keyword arguments of arsm_jax.rl.<learner>.make, documented there):
  #   arsm: max_rollouts (16, the authors' cap; 0 or -1 = uncapped),
  #     rollout_budget ('unbiased' or 'authors': which steps get rollouts
  #     when the cap binds), common_random_numbers (False);
  #   a2c: critic_learning_rate (0.03), gae_lambda (0.95),
  #     bootstrap_truncated (True: bootstrap from V(s_T) at the step cap);
  #   relax: learning_rate (0.03, the control variate's Adam), temperature
  #     (0.5, initial Gumbel-Softmax temperature);
  #   reinforce_ma: baseline_decay (0.9).
  # Override as --config.learner_settings.a2c.gae_lambda=0.9.
  config.learner_settings = registry.default_settings()
  # Step cap of an episode (and of every rollout from it); 0 = the
  # environment's own limit (500 for CartPole-v1 and Acrobot-v1, 1000 for
  # LunarLander-v3). The authors capped true and pseudo episodes at 3000.
  config.max_episode_steps = 0
  # After each update, run one test episode of the updated stochastic policy
  # and log its reward (test_reward) beside the training episode's (the
  # authors plotted the test episode's). Not counted in env_steps.
  config.test_episode = True
  # Hidden layer widths of the policy (and critic) MLPs.
  config.hidden = (10, 10)
  # Measure the policy-gradient variance every this many episodes (0 = never)
  # from this many independent one-episode estimates at fixed parameters.
  config.variance_every = 25
  config.variance_draws = 10
  # Moving-average window and the "solved" rule use it (100 as in gym).
  config.moving_average_window = 100
  # Save a resumable checkpoint every this many episodes (0 = only results).
  config.checkpoint_every = 100
  # Worker processes for the host rollouts (arsm) or the seeds' episodes
  # (other learners); LunarLander only.
  config.num_workers = 1
  # Seed of seed 0; run i uses fold_in(PRNGKey(seed), i).
  config.seed = 0
  # Draw rl.png at the end.
  config.plot = True
  # True empties the workdir's run of each learner and starts it again.
  config.fresh = False

  env_presets = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1"}
  env_part, _, learner_part = preset.partition("_")
  if preset == "":
    pass
  elif env_part in env_presets and learner_part in (
      "", "arsm", "a2c", "relax", "authors"):
    config.env = env_presets[env_part]
    if learner_part == "authors":
      # ARSM with the authors' protocol: their rollout budget rule and their
      # 3000-step cap for true and pseudo episodes.
      config.learner = "arsm"
      config.learner_settings.arsm.rollout_budget = "authors"
      config.max_episode_steps = 3000
    elif learner_part:
      config.learner = learner_part
  elif preset == "lunarlander":
    config.env = "LunarLander-v3"
    config.learner = "arsm"
    config.variance_every = 0
    config.num_workers = 2
    config.checkpoint_every = 1
  elif preset == "tiny":
    config.num_seeds = 2
    config.num_episodes = 6
    config.max_episode_steps = 40
    config.variance_every = 3
    config.variance_draws = 3
    config.moving_average_window = 3
    config.checkpoint_every = 2
    config.plot = True
  else:
    raise ValueError(f"Unknown rl preset {preset!r}; known: "
                     f"{', '.join(p for p in PRESETS if p)}.")
  # Locked: a mistyped field (config.num_episode = 5) is an error naming it
  # and its close matches, as on the command line.
  return config.lock()
