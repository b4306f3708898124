r"""Seconds per ARSM training episode on CartPole: vmapped rollouts vs a loop.

    python benchmarks/rl_rollouts.py [--max_steps=200] [--max_rollouts=16]

All variants run the same learner on the same keys in the same process (so
they do the same episodes, rollouts and updates, and end at the same
parameters, which is checked): collect the episode and choose the rollouts
(one jitted call), then the pseudo-action rollouts, then the ARSM gradient
and an Adam step (one jitted call). Only the rollouts differ:

* ``vmapped``: the whole episode update is one jitted function; the rollouts
  are one ``vmap`` over (step, pseudo action) pairs of a ``while_loop``.
* ``loop``: the rollouts run one after the other from Python, each a jitted
  call (the authors' design runs them one by one as well).
* ``step_loop``: as ``loop`` but each environment step of a rollout is its
  own jitted call from Python, closest to the authors' per-step
  ``session.run``/gym loop (run on fewer episodes: it is slow).

First a policy is trained (one seed, vmapped learner) until it balances for
most of the ``max_steps`` steps, so that the timed episodes are long, like
the authors' 200-step reference (about 2.2 s per episode with 16 rollouts
on these machines). Shared, noisy machines: read the ratios.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from arsm_jax import envs
from arsm_jax.estimators import swap
from arsm_jax.models import policy as policy_lib
from arsm_jax import rl
from arsm_jax.rl import arsm
from arsm_jax.rl import episodes

_MAX_STEPS = flags.DEFINE_integer("max_steps", 200, "Episode step cap.")
_MAX_ROLLOUTS = flags.DEFINE_integer("max_rollouts", 16,
                                     "Rollout cap per episode.")
_EPISODES = flags.DEFINE_integer("episodes", 20, "Timed episodes per variant.")
_STEP_EPISODES = flags.DEFINE_integer(
    "step_loop_episodes", 3, "Timed episodes of the per-step loop (0 = skip).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")

_GAMMA = 0.99
_LR = 0.03


def main(argv):
  del argv
  env = envs.make("CartPole-v1", _MAX_STEPS.value)
  max_rollouts = _MAX_ROLLOUTS.value
  learner = rl.make("arsm", env, learning_rate=_LR, gamma=_GAMMA,
                    settings={"max_rollouts": max_rollouts})
  apply_fn = policy_lib.policy(env.num_actions).apply
  tx = optax.adam(_LR)

  # A policy that balances for most of the episode.
  key = jax.random.PRNGKey(_SEED.value)
  state = learner.init(key)
  update = jax.jit(learner.update)
  lengths = []
  for e in range(400):
    state, info = update(state, jax.random.fold_in(key, e))
    lengths.append(int(info["length"]))
    if e >= 5 and np.mean(lengths[-5:]) >= 0.9 * env.max_steps:
      break
  print(f"pre-training: {len(lengths)} episodes, last lengths "
        f"{lengths[-5:]}")
  start = state

  plan_fn = jax.jit(lambda p, k: arsm.collect_and_plan(
      env, apply_fn, p, k, gamma=_GAMMA, max_rollouts=max_rollouts))

  def finish(ts, plan, rets, steps):
    grads, info = arsm.gradient_from_rollouts(apply_fn, ts.params, plan, rets,
                                              steps)
    updates, opt = tx.update(jax.tree_util.tree_map(jnp.negative, grads),
                             ts.opt_state, ts.params)
    return ts._replace(params=optax.apply_updates(ts.params, updates),
                       opt_state=opt), info

  finish_fn = jax.jit(finish)

  @jax.jit
  def vmapped_episode(ts, k):
    plan = arsm.collect_and_plan(env, apply_fn, ts.params, k, gamma=_GAMMA,
                                 max_rollouts=max_rollouts)
    rets, steps = arsm.vmapped_rollouts(env, apply_fn, ts.params, plan,
                                        _GAMMA)
    return finish(ts, plan, rets, steps)

  single = jax.jit(lambda p, k, s, t, b, ep: episodes.rollout(
      env, apply_fn, p, k, s, t, b, _GAMMA, reference=ep))

  def loop_rollouts(params, plan):
    active = np.asarray(plan.active)
    rets = np.zeros(active.shape, np.float32)
    steps = np.zeros(active.shape, np.int32)
    for i, j in zip(*np.nonzero(active)):
      s = jax.tree_util.tree_map(lambda x, i=i: x[i], plan.starts)
      r, n = single(params, plan.keys[i, j], s, plan.idx[i],
                    plan.actions[i, j], plan.episode)
      rets[i, j], steps[i, j] = float(r), int(n)
    return jnp.asarray(rets), jnp.asarray(steps)

  env_step = jax.jit(env.step)
  act = jax.jit(lambda p, k, obs: swap.augment(
      k, apply_fn(p, obs)[None]).z[0])

  def step_loop_rollouts(params, plan):
    """Each environment step of each rollout is a call from Python."""
    ref_rewards = np.asarray(plan.episode.rewards)
    ref_returns = np.asarray(plan.episode.returns)
    active = np.asarray(plan.active)
    rets = np.zeros(active.shape, np.float32)
    steps = np.zeros(active.shape, np.int32)
    for i, j in zip(*np.nonzero(active)):
      s = jax.tree_util.tree_map(lambda x, i=i: x[i], plan.starts)
      t, a, k = int(plan.idx[i]), plan.actions[i, j], plan.keys[i, j]
      ret, disc, n = 0.0, 1.0, 0
      while t < env.max_steps:
        _, k_env = episodes.step_keys(k, t)
        obs, s, r, term = env_step(k_env, s, a)
        ret += disc * (float(r) - float(ref_rewards[t]))
        disc *= _GAMMA
        n += 1
        t += 1
        if bool(term):
          break
        k_act, _ = episodes.step_keys(k, t)
        a = act(params, k_act, obs)
      if t < env.max_steps:
        ret -= disc * float(ref_returns[t])
      rets[i, j], steps[i, j] = ret, n
    return jnp.asarray(rets, jnp.float32), jnp.asarray(steps)

  def run(variant, num_episodes):
    ts = start
    env_steps = 0
    rollouts = 0
    # One untimed episode compiles everything.
    for e in range(num_episodes + 1):
      if e == 1:
        t0 = time.perf_counter()
      k = jax.random.fold_in(key, 10_000 + e)
      if variant == "vmapped":
        ts, info = vmapped_episode(ts, k)
      else:
        plan = plan_fn(ts.params, k)
        rolls = (loop_rollouts if variant == "loop" else step_loop_rollouts)
        rets, steps = rolls(ts.params, plan)
        ts, info = finish_fn(ts, plan, rets, steps)
      jax.block_until_ready(ts)
      if e >= 1:
        env_steps += int(info["env_steps"])
        rollouts += int(info["num_rollouts"])
    secs = (time.perf_counter() - t0) / num_episodes
    return ts, secs, env_steps / num_episodes, rollouts / num_episodes

  results = {}
  for variant, n in (("vmapped", _EPISODES.value), ("loop", _EPISODES.value),
                     ("step_loop", _STEP_EPISODES.value)):
    if n <= 0:
      continue
    ts, secs, steps, rolls = run(variant, n)
    results[variant] = (ts, secs)
    print(f"{variant:>10}: {secs * 1e3:9.2f} ms per episode "
          f"({steps:.0f} env steps incl. {rolls:.1f} rollouts; "
          f"{steps / secs:,.0f} env steps/s)")

  ref = results["vmapped"][0]
  same = jax.tree_util.tree_map(
      lambda a, b: bool(np.allclose(a, b, rtol=1e-4, atol=1e-5)),
      ref.params, results["loop"][0].params)
  print("loop and vmapped end at the same parameters:",
        all(jax.tree_util.tree_leaves(same)))
  base = results["vmapped"][1]
  for variant, (_, secs) in results.items():
    if variant != "vmapped":
      print(f"ratio {variant} / vmapped: {secs / base:.1f}x")
  print(f"authors' reference 2.2 s per 200-step episode / vmapped: "
        f"{2.2 / base:.0f}x")


if __name__ == "__main__":
  app.run(main)
