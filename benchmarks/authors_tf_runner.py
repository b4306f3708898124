r"""Runs the authors' ARSM VAE script under today's TensorFlow and times its step.

Not part of arsm_jax: ``benchmarks/authors_speed.py`` starts this file with
the Python of a separate environment that has TensorFlow 2 installed
(``pip install tensorflow-cpu``); arsm_jax is not imported here.

    TF_PYTHON authors_tf_runner.py AUTHORS_REPO --steps=20 --warmup=3

The authors' ``vae/arsm_vae.py`` (github.com/ARM-gradient/ARSM) is run
unmodified with ``runpy``; what it needs from TensorFlow 1.x and Python 2 is
supplied by stand-in modules put into ``sys.modules`` first (see
``authors_speed.py`` for the list). Their training loop calls the training
set's ``next_batch`` once per step, so the time between consecutive calls is
one step: the median over the timed steps is printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import runpy
import statistics
import sys
import tempfile
import time
import types

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
import tensorflow.compat.v1 as tf1  # noqa: E402


_TF_VERSION = tf.__version__


def _dense(x, units, activation=None, name=None):
  """A fully connected layer from v1 variables (Glorot weights, zero bias)."""
  with tf1.variable_scope(name, default_name="dense"):
    w = tf1.get_variable("kernel", [int(x.shape[-1]), units],
                         initializer=tf1.glorot_uniform_initializer())
    b = tf1.get_variable("bias", [units], initializer=tf1.zeros_initializer())
    y = tf1.matmul(x, w) + b
  return activation(y) if activation is not None else y


def _slim():
  """slim.stack and slim.fully_connected (ReLU by default, as in slim)."""
  def fully_connected(x, units, activation_fn=tf1.nn.relu, scope=None):
    return _dense(x, units, activation_fn, scope)

  def stack(x, layer, sizes, **kwargs):
    with tf1.variable_scope(None, default_name="Stack"):
      for i, size in enumerate(sizes):
        x = layer(x, size, scope=f"{layer.__name__}_{i + 1}", **kwargs)
    return x

  return types.SimpleNamespace(stack=stack, fully_connected=fully_connected)


class _Categorical:
  """contrib.distributions.Categorical(logits) with sample() over the last axis."""

  def __init__(self, logits):
    self.logits = logits

  def sample(self):
    shape = tf1.shape(self.logits)
    flat = tf1.reshape(self.logits, [-1, shape[-1]])
    draws = tf1.random.categorical(flat, 1)[:, 0]
    return tf1.reshape(draws, shape[:-1])


class _Dirichlet:
  """contrib.distributions.Dirichlet(concentration) with sample(sample_shape)."""

  def __init__(self, concentration):
    self.concentration = tf1.constant(concentration, tf1.float32)

  def sample(self, sample_shape):
    gammas = tf1.random.gamma(tf1.stack(sample_shape), self.concentration)
    return gammas / tf1.reduce_sum(gammas, axis=-1, keepdims=True)


class _Flatten:
  def __call__(self, x):
    width = int(np.prod(x.shape.as_list()[1:]))   # static, for the next layer
    return tf1.reshape(x, [-1, width])


class _Split:
  """A split of the stand-in MNIST: random binary images, no labels used."""

  def __init__(self, num, seed, stamps=None):
    rng = np.random.default_rng(seed)
    self.images = (rng.random((num, 784)) < 0.2).astype(np.float32)
    self.labels = np.zeros((num, 10), np.float32)
    self.num_examples = num
    self._next = 0
    self._stamps = stamps

  def next_batch(self, batch_size):
    if self._stamps is not None:
      self._stamps.append(time.perf_counter())
    start = self._next % self.num_examples
    self._next += batch_size
    return (self.images[start:start + batch_size],
            self.labels[start:start + batch_size])


def _install_stand_ins(batch, steps, stamps):
  """Puts the modules the script imports into ``sys.modules``."""
  tf1.disable_v2_behavior()
  tf_module = types.ModuleType("tensorflow")
  tf_module.__dict__.update(
      {k: getattr(tf1, k) for k in dir(tf1) if not k.startswith("__")})
  tf_module.contrib = types.SimpleNamespace(
      slim=_slim(),
      distributions=types.SimpleNamespace(Categorical=_Categorical,
                                          Dirichlet=_Dirichlet))
  tf_module.layers = types.SimpleNamespace(dense=_dense)
  tf_module.keras = types.SimpleNamespace(
      layers=types.SimpleNamespace(Flatten=_Flatten))

  def read_data_sets(path, one_hot=True):
    del path, one_hot
    return types.SimpleNamespace(train=_Split(batch * steps, 0, stamps),
                                 validation=_Split(batch, 1),
                                 test=_Split(batch, 2))

  mnist = types.ModuleType("tensorflow.examples.tutorials.mnist")
  mnist.input_data = types.SimpleNamespace(read_data_sets=read_data_sets)
  sys.modules["tensorflow"] = tf_module
  sys.modules["tensorflow.examples"] = types.ModuleType("tensorflow.examples")
  sys.modules["tensorflow.examples.tutorials"] = types.ModuleType(
      "tensorflow.examples.tutorials")
  sys.modules["tensorflow.examples.tutorials.mnist"] = mnist

  def dump(obj, file):
    (file.buffer if hasattr(file, "buffer") else file).write(
        pickle.dumps(obj))

  sys.modules["cPickle"] = types.SimpleNamespace(dump=dump)

  def to_categorical(y, num_classes):
    return np.eye(num_classes, dtype=np.float32)[np.asarray(y)]

  np_utils = types.SimpleNamespace(to_categorical=to_categorical)
  sys.modules["keras"] = types.ModuleType("keras")
  sys.modules["keras.utils"] = types.SimpleNamespace(np_utils=np_utils)
  sys.modules["keras.utils.np_utils"] = np_utils


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("authors_repo")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--batch", type=int, default=200)
  args = parser.parse_args()
  script = os.path.join(args.authors_repo, "vae", "arsm_vae.py")
  if not os.path.isfile(script):
    raise SystemExit(f"{script} does not exist: --authors_repo must be a "
                     "checkout of github.com/ARM-gradient/ARSM.")
  stamps = []
  _install_stand_ins(args.batch, args.warmup + args.steps, stamps)
  with tempfile.TemporaryDirectory() as tmp:
    os.chdir(tmp)   # the script writes discrete_out/ under the working dir
    sys.argv = [script, "--epoch", "1", "--batch", str(args.batch)]
    # The published script uses `lr` without defining it (NameError): it
    # is the --lr default, 3e-4.
    runpy.run_path(script, init_globals={"lr": 3e-4}, run_name="__main__")
  gaps = np.diff(stamps)[args.warmup:]
  print(json.dumps({"authors_step_ms": 1e3 * statistics.median(gaps),
                    "timed_steps": int(gaps.size),
                    "tensorflow": _TF_VERSION,
                    "batch": args.batch}))


if __name__ == "__main__":
  main()
