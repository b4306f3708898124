"""Policy-gradient learners for the RL experiment (see ``learners``)."""

from arsm_jax.rl.learners import LEARNERS
from arsm_jax.rl.learners import Learner
from arsm_jax.rl.learners import make_learner
