"""Policy-gradient learners for the RL experiment, one module per learner.

:mod:`~arsm_jax.rl.episodes` collects episodes and rollouts;
:mod:`~arsm_jax.rl.learner` is what a learner is; :mod:`~arsm_jax.rl.arsm`,
:mod:`~arsm_jax.rl.a2c`, :mod:`~arsm_jax.rl.relax` and
:mod:`~arsm_jax.rl.reinforce_ma` are the learners, each an ``init``/``update``
pair over its own train state; :mod:`~arsm_jax.rl.registry` builds them by
name; :mod:`~arsm_jax.rl.host` runs them on a simulator outside JAX.
"""

from arsm_jax.rl.learner import Learner
from arsm_jax.rl.registry import LEARNERS
from arsm_jax.rl.registry import default_settings
from arsm_jax.rl.registry import make
