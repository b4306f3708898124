r"""Our ARSM against the authors' code, timed side by side in one run.

    python benchmarks/authors_speed.py --authors_repo=PATH --tf_python=PATH

Optional, never run by the tests or CI. ``--authors_repo`` is a checkout of
github.com/ARM-gradient/ARSM (for example from the search tool's ``fetch``);
it stays outside this repository and nothing of it is copied here.
``--tf_python`` is the Python of a separate environment with TensorFlow 2
(``python -m venv tfenv && tfenv/bin/pip install tensorflow-cpu``); the
package and CI never install TensorFlow.

Two comparisons, each timed in the same run on the same machine:

* **VAE step** (the poster's nonlinear VAE, K = 20, C = 10, batch 200): our
  jitted ARSM training step (``benchmarks/vae_step.py``'s timer, median of
  ``--iters`` steps) against the authors' ``vae/arsm_vae.py`` step, which
  evaluates the decoder in one ``Session.run`` per swap pair (55 calls at
  C = 10) and then runs the training op. Theirs runs under
  ``benchmarks/authors_tf_runner.py`` in the TensorFlow environment, median
  of ``--authors_steps`` steps after ``--authors_warmup``.
* **Toy estimate** (C = 30): microseconds per ARSM gradient-ascent
  iteration, ours inside the jitted scan (``benchmarks/toy_speed.py``)
  against the authors' NumPy pseudo-action function from
  ``toy/ARSM_Univariate.py``, loaded from their file at run time (only its
  function definitions are executed, not the script) and driven by the same
  iteration as their loop: draw pi ~ Dir(1_C), the C x C pseudo actions,
  f on them, the merged gradient, one step.

What must change in their code for today's TensorFlow, done at run time by
stand-in modules, without editing their files:

* ``import tensorflow as tf`` must give the 1.x API: ``tf.compat.v1`` with
  the v2 behaviour disabled.
* ``tf.contrib`` no longer exists: slim's ``stack`` and ``fully_connected``
  and ``contrib.distributions``' ``Categorical`` and ``Dirichlet`` samplers
  are replaced by small equivalents built on v1 variables,
  ``random.categorical`` and ``random.gamma``; likewise ``tf.layers.dense``
  and ``tf.keras.layers.Flatten`` (Keras 3 layers reject v1 graph tensors).
* ``tensorflow.examples.tutorials.mnist.input_data`` was removed: a stand-in
  serves random binary images through ``next_batch`` (the step's cost does
  not depend on pixel values), and its calls time the steps.
* Python 2 modules: ``cPickle`` becomes ``pickle`` (their results file is
  written as bytes), ``keras.utils.np_utils.to_categorical`` a NumPy one-hot.
* The VAE script reads an undefined name ``lr`` for the decoder's Adam
  (a NameError as published); it is given the ``--lr`` default, 3e-4.
* Their loop runs 1,000 epochs; it is run for one epoch of the stand-in's
  ``warmup + steps`` batches.

Machines are shared and noisy: read the ratios, which are measured in one
run, not the absolute times.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import toy_speed  # noqa: E402  (benchmarks/toy_speed.py)
import vae_step  # noqa: E402  (benchmarks/vae_step.py)


def _authors_functions(path: str, names: tuple[str, ...]) -> dict:
  """The named top-level functions of the authors' script, and nothing else."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  defs = [n for n in tree.body
          if isinstance(n, ast.FunctionDef) and n.name in names]
  missing = set(names) - {n.name for n in defs}
  if missing:
    raise SystemExit(f"{path} has no function {sorted(missing)}; is "
                     "--authors_repo a checkout of ARM-gradient/ARSM?")
  namespace = {"np": np}
  exec(compile(ast.Module(body=defs, type_ignores=[]), path, "exec"),  # noqa: S102
       namespace)
  return namespace


def time_authors_toy(repo: str, num_cats: int, num_iterations: int) -> float:
  """Microseconds per ARSM iteration of the authors' NumPy toy code."""
  fns = _authors_functions(os.path.join(repo, "toy", "ARSM_Univariate.py"),
                           ("pseudo_action_swap_matrix", "fun"))
  swap_matrix, fun = fns["pseudo_action_swap_matrix"], fns["fun"]
  rng = np.random.default_rng(0)
  phi = np.zeros(num_cats)
  start = time.perf_counter()
  for _ in range(num_iterations):
    pi = rng.dirichlet(np.ones(num_cats))
    f_matrix = fun(swap_matrix(pi, phi), num_cats, num_cats)   # R = C
    phi = phi + (f_matrix - f_matrix.mean(axis=0)) @ (1.0 / num_cats - pi)
  return 1e6 * (time.perf_counter() - start) / num_iterations


def time_authors_vae(repo: str, tf_python: str, steps: int,
                     warmup: int) -> dict:
  """The authors' VAE step, timed in the TensorFlow environment."""
  proc = subprocess.run(
      [tf_python, os.path.join(_HERE, "authors_tf_runner.py"), repo,
       f"--steps={steps}", f"--warmup={warmup}"],
      capture_output=True, text=True, check=False)
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
  if proc.returncode or not lines:
    raise SystemExit("The authors' VAE script failed under "
                     f"{tf_python}:\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1])


def time_our_vae(iters: int, rounds: int) -> float:
  batch = 200
  images = np.random.default_rng(0).integers(0, 256, (batch, 784), np.uint8)
  run, _, _ = vae_step._step_timer("arsm", {}, batch, images, iters)  # pylint: disable=protected-access
  return 1e3 * min(run() for _ in range(rounds))


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--authors_repo", required=True,
                      help="checkout of github.com/ARM-gradient/ARSM")
  parser.add_argument("--tf_python", required=True,
                      help="python of an environment with tensorflow")
  parser.add_argument("--iters", type=int, default=5,
                      help="our VAE steps per timing round (median)")
  parser.add_argument("--rounds", type=int, default=3,
                      help="our timing rounds (the best is kept)")
  parser.add_argument("--authors_steps", type=int, default=15)
  parser.add_argument("--authors_warmup", type=int, default=3)
  parser.add_argument("--toy_iterations", type=int, default=2000)
  parser.add_argument("--json", action="store_true",
                      help="print one JSON object")
  args = parser.parse_args()
  for path in (args.authors_repo, args.tf_python):
    if not os.path.exists(path):
      raise SystemExit(f"{path} does not exist.")

  num_cats = 30
  # Interleaved: theirs, ours, theirs again (best of each), so both see the
  # same load.
  theirs_toy = time_authors_toy(args.authors_repo, num_cats,
                                args.toy_iterations)
  ours_toy, _ = toy_speed.time_jax(num_cats, 5000, 3)
  theirs_toy = min(theirs_toy, time_authors_toy(
      args.authors_repo, num_cats, args.toy_iterations))
  ours_vae = time_our_vae(args.iters, args.rounds)
  theirs = time_authors_vae(args.authors_repo, args.tf_python,
                            args.authors_steps, args.authors_warmup)
  ours_vae = min(ours_vae, time_our_vae(args.iters, 1))
  result = {
      "toy_us_per_iteration": {"ours": ours_toy, "authors": theirs_toy,
                               "authors_over_ours": theirs_toy / ours_toy},
      "vae_ms_per_step": {"ours": ours_vae,
                          "authors": theirs["authors_step_ms"],
                          "authors_over_ours":
                              theirs["authors_step_ms"] / ours_vae},
      "tensorflow": theirs["tensorflow"],
      "authors_timed_steps": theirs["timed_steps"],
      "load_average": os.getloadavg(),
  }
  if args.json:
    print(json.dumps(result))
    return
  toy, vae = result["toy_us_per_iteration"], result["vae_ms_per_step"]
  print(f"toy ARSM iteration, C = {num_cats}: ours {toy['ours']:.1f} us, "
        f"authors {toy['authors']:.1f} us -> "
        f"{toy['authors_over_ours']:.1f}x")
  print(f"VAE ARSM step, batch 200: ours {vae['ours']:.1f} ms, authors "
        f"{vae['authors']:.1f} ms (TensorFlow {result['tensorflow']}) -> "
        f"{vae['authors_over_ours']:.1f}x")
  print(f"load average {result['load_average'][0]:.1f}")


if __name__ == "__main__":
  main()
