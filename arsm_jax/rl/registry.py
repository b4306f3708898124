"""The RL learners by name, their settings and their construction.

A learner's settings are the keyword-only arguments of its module's
``make`` (with their defaults); the RL config holds them under
``config.learner_settings.<name>`` (:func:`default_settings`), and the task
passes that node through :func:`make` without naming any of them.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

import ml_collections

from arsm_jax import envs as envs_lib
from arsm_jax.rl import a2c
from arsm_jax.rl import arsm
from arsm_jax.rl import learner as learner_lib
from arsm_jax.rl import reinforce_ma
from arsm_jax.rl import relax

# name -> the module that defines the learner (``make``, ``check_settings``).
_MODULES = {"arsm": arsm, "a2c": a2c, "reinforce_ma": reinforce_ma,
            "relax": relax}
LEARNERS = tuple(_MODULES)


def _module(name: str):
  if name not in _MODULES:
    raise ValueError(f"Unknown learner {name!r}; known: "
                     f"{', '.join(LEARNERS)}.")
  return _MODULES[name]


def settings_defaults(name: str) -> dict[str, Any]:
  """Learner ``name``'s settings and their defaults, ``{setting: default}``."""
  params = inspect.signature(_module(name).make).parameters.values()
  return {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY}


def default_settings() -> ml_collections.ConfigDict:
  """Every learner's settings at their defaults: the config's
  ``learner_settings`` node (``learner_settings.a2c.gae_lambda``, ...)."""
  return ml_collections.ConfigDict(
      {name: settings_defaults(name) for name in LEARNERS})


def check_settings(name: str, settings: Mapping[str, Any]) -> None:
  """Checks learner ``name``'s settings (all of them, as in the config).

  Raises:
    ValueError: naming ``config.learner_settings.<name>.<field>``, for a
      missing or unknown field or a bad value.
  """
  defaults = settings_defaults(name)
  where = f"learner_settings.{name}"
  given = set(settings)
  if given != set(defaults):
    odd = sorted(given ^ set(defaults))
    raise ValueError(f"config.{where} must have the fields "
                     f"{sorted(defaults)}; got {sorted(given)} (differs in "
                     f"{odd}).")
  _module(name).check_settings(settings, where)


def make(name: str, env: envs_lib.JaxEnv, *, learning_rate: float,
         gamma: float, hidden: tuple[int, ...] = (10, 10),
         settings: Optional[Mapping[str, Any]] = None,
         test_episode: bool = False) -> learner_lib.Learner:
  """Builds learner ``name`` (one of :data:`LEARNERS`) for ``env``.

  Args:
    name: the learner.
    env: the environment.
    learning_rate: Adam step size of the policy.
    gamma: discount.
    hidden: hidden widths of the policy MLP (and the learner's other
      networks).
    settings: the learner's own settings (``config.learner_settings.<name>``;
      a missing one takes its default).
    test_episode: after each update, run one episode of the updated policy
      and report its reward as ``test_reward``.

  Raises:
    ValueError: for an unknown name, an unknown setting or a bad value.
  """
  settings = {**settings_defaults(name), **(settings or {})}
  check_settings(name, settings)
  setup = learner_lib.Setup(env=env, learning_rate=learning_rate,
                            gamma=gamma, hidden=tuple(hidden))
  learner = _module(name).make(setup, **settings)
  if test_episode:
    learner = learner_lib.with_test_episode(learner, setup)
  return learner
