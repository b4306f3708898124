r"""Binarised MNIST and Fashion-MNIST from TensorFlow Datasets, held in memory.

The images are read once through ``tfds.data_source`` (``download=False``:
nothing is ever fetched from the network), decoded in batches into one
``uint8`` array ``[N, 784]`` and kept in a process-wide cache. An optional
``.npy`` copy under ``cache_dir`` (default ``~/.cache/arsm_jax``) makes later
processes start in well under a second instead of the few seconds a decode
takes. Both caches are keyed by the dataset folder's files (names, sizes,
modification times), so replacing a prepared dataset invalidates them.

Splits: 55,000 training images train, 5,000 validate and the 10,000 test
images test, as in Yin, Yue and Zhou (2019). Which 5,000 validate is
``validation_split`` (:func:`split_train_validation`):

* ``last``: the last 5,000 in TFDS order (TFDS stores the images in a
  hash-shuffled order, so this is a fixed pseudo-random subset);
* ``paper``: the first 5,000 of the original MNIST training file, the split
  of TensorFlow's ``input_data.read_data_sets`` that the authors used.
  :func:`original_order` recovers the file order from TFDS's deterministic
  key hashing. On MNIST these images are about 1.1-1.6 nats easier than the
  ``last`` 5,000 for the same model (``experiments/vae_split_check.py``).

Binarisation (:func:`binarize`):

* ``threshold``: :math:`x = 1[\text{pixel}/255 > 0.5]`, fixed once (the
  paper's);
* ``dynamic``: :math:`x \sim \mathrm{Bernoulli}(\text{pixel}/255)`, a fresh
  draw each time an image is used.

A dataset that is not prepared under ``data_dir`` raises ``FileNotFoundError``
naming every folder that was searched and how to prepare one.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

DATASETS = ("mnist", "fashion_mnist")
BINARIZATIONS = ("threshold", "dynamic")
VALIDATION_SPLITS = ("last", "paper")
NUM_PIXELS = 28 * 28
NUM_VALIDATION = 5000
DEFAULT_DATA_DIR = "../shared/tfds"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DECODE_BATCH = 2000

# Mean grey level / 255 of the public splits, to catch a mislabelled folder.
_KNOWN_MEANS = {("mnist", "train"): 0.1307, ("mnist", "test"): 0.1325,
                ("fashion_mnist", "train"): 0.2860,
                ("fashion_mnist", "test"): 0.2868}

_MEMORY_CACHE: dict[tuple[str, str, str], np.ndarray] = {}  # name, split, tag


def default_data_dir() -> str:
  """``$TFDS_DATA_DIR`` if set, else ``../shared/tfds`` (see candidate_dirs)."""
  return os.environ.get("TFDS_DATA_DIR", DEFAULT_DATA_DIR)


def candidate_dirs(data_dir: Optional[str]) -> list[str]:
  """Absolute folders ``data_dir`` may mean, in the order they are tried.

  An absolute path is itself. A relative one is tried against the current
  directory first, then against the repository root (so the default
  ``../shared/tfds`` works from any working directory).
  """
  data_dir = os.path.expanduser(data_dir or default_data_dir())
  if os.path.isabs(data_dir):
    return [os.path.normpath(data_dir)]
  out = []
  for base in (os.getcwd(), _REPO_ROOT):
    path = os.path.normpath(os.path.join(base, data_dir))
    if path not in out:
      out.append(path)
  return out


def resolve_data_dir(name: str, data_dir: Optional[str]) -> str:
  """The first candidate folder that holds a prepared ``name``.

  Raises:
    ValueError: for an unknown dataset name.
    FileNotFoundError: when no candidate holds it; the message lists them.
  """
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
  tried = candidate_dirs(data_dir)
  for path in tried:
    if os.path.isdir(os.path.join(path, name)):
      return path
  raise FileNotFoundError(
      f"TFDS dataset {name!r} is not prepared in any of: "
      f"{', '.join(os.path.join(p, name) for p in tried)}. Point "
      "--config.data_dir (or $TFDS_DATA_DIR) at a folder holding it, e.g. "
      "../shared/tfds from the repository root. To prepare one on a machine "
      "with internet access: python -c \"import tensorflow_datasets as tfds; "
      f"tfds.data_source('{name}', data_dir='DIR', download=True)\" (this "
      "needs tensorflow installed once). Tests and training never download.")


def _default_cache_dir() -> str:
  return os.path.join(os.path.expanduser("~"), ".cache", "arsm_jax")


def _fingerprint(root: str, name: str) -> str:
  """A short hash of ``root`` and of every file of ``root/name``.

  Each file enters with its relative path, size and modification time, so a
  folder whose contents are replaced (a dataset re-prepared, or a mislabelled
  one corrected) gets a new cache entry instead of the old decoded images.
  A copy that only touches the files costs one decode, never wrong data.
  """
  h = hashlib.sha1(root.encode())
  top = os.path.join(root, name)
  for dirpath, dirnames, filenames in os.walk(top):
    dirnames.sort()
    for f in sorted(filenames):
      path = os.path.join(dirpath, f)
      st = os.stat(path)
      h.update(f"\0{os.path.relpath(path, top)}\0{st.st_size}\0"
               f"{st.st_mtime_ns}".encode())
  return h.hexdigest()[:10]


def _decode(source, num: int) -> np.ndarray:
  out = np.empty((num, NUM_PIXELS), np.uint8)
  for start in range(0, num, _DECODE_BATCH):
    idx = list(range(start, min(start + _DECODE_BATCH, num)))
    items = source.__getitems__(idx)
    out[start:start + len(idx)] = np.stack(
        [np.asarray(it["image"], np.uint8).reshape(NUM_PIXELS)
         for it in items])
  return out


def _read_cache(path: str) -> Optional[np.ndarray]:
  """The decoded images in ``path``, or ``None`` (the file then deleted).

  A cache cut short (a full disk, a killed copy) or holding anything but
  ``uint8 [N, 784]`` is reported in a warning and removed, so the images
  are decoded again and the cache rewritten instead of failing every run.
  """
  try:
    images = np.load(path)
  except (OSError, ValueError, EOFError) as e:
    problem = f"{type(e).__name__}: {' '.join(str(e).split())}"
  else:
    if (isinstance(images, np.ndarray) and images.dtype == np.uint8
        and images.ndim == 2 and images.shape[1] == NUM_PIXELS):
      return images
    problem = (f"it holds {getattr(images, 'dtype', type(images).__name__)} "
               f"{getattr(images, 'shape', '')}, not uint8 [N, {NUM_PIXELS}]")
  logging.warning("data: the decoded image cache %s is damaged (%s); "
                  "decoding the images again and rewriting it.", path, problem)
  try:
    os.remove(path)
  except OSError:
    pass
  return None


def _versions(root: str, name: str) -> list[str]:
  """The prepared versions of ``root/name`` (folders with a dataset_info.json),
  oldest first."""
  top = os.path.join(root, name)
  found = [v for v in os.listdir(top)
           if os.path.isfile(os.path.join(top, v, "dataset_info.json"))]

  def order(v):
    return [int(p) if p.isdigit() else -1 for p in v.split(".")]

  return sorted(found, key=order)


def _unprepared(root: str, name: str) -> Optional[str]:
  """Why ``root/name`` holds no prepared dataset, or ``None`` if it does."""
  top = os.path.join(root, name)
  if _versions(root, name):
    return None
  held = sorted(os.listdir(top))
  return (f"The TFDS folder {top} holds no prepared {name} (no "
          "<version>/dataset_info.json; it "
          + (f"holds only {', '.join(held[:5])}" if held else "is empty")
          + "): it was not prepared, or not completely. Delete it, or point "
          "--config.data_dir (or $TFDS_DATA_DIR) at a folder holding a "
          "prepared dataset, e.g. ../shared/tfds from the repository root; "
          "to prepare one on a machine with internet access: python -c "
          "\"import tensorflow_datasets as tfds; tfds.data_source("
          f"'{name}', data_dir='DIR', download=True)\".")


def _split_files(folder: str, split: str) -> list[tuple[str, int]]:
  """``(file, records)`` of each shard ``dataset_info.json`` lists for split."""
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(folder, "dataset_info.json")) as fh:
    info = json.load(fh)
  fmt = info.get("fileFormat", "array_record")
  for entry in info.get("splits", []):
    if entry.get("name") == split:
      lengths = [int(n) for n in entry.get("shardLengths", [])]
      template = entry.get("filepathTemplate",
                           "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}")
      return [(template.replace("{DATASET}", info.get("name", ""))
               .replace("{SPLIT}", split).replace("{FILEFORMAT}", fmt)
               .replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{len(lengths):05d}"),
               n) for i, n in enumerate(lengths)]
  return []


def _damaged(path: str, records: int) -> Optional[str]:
  """Why the array_record file ``path`` cannot be read, or ``None``."""
  try:
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
    reader = array_record_module.ArrayRecordReader(path)
    try:
      found = reader.num_records()
      if found != records:
        return f"{found} records where dataset_info.json lists {records}"
      reader.read([0, found - 1])
    finally:
      reader.close()
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
  return None


def _unreadable_split(root: str, name: str, split: str,
                      error: Exception) -> Exception:
  """The error for a split TFDS could not read, naming the file at fault."""
  why = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
  fix = (f"Restore the file, or prepare {name} again in a new folder: "
         "python -c \"import tensorflow_datasets as tfds; tfds.data_source("
         f"'{name}', data_dir='DIR', download=True)\" on a machine with "
         "internet access, then --config.data_dir=DIR.")
  try:
    folder = os.path.join(root, name, _versions(root, name)[-1])
    files = _split_files(folder, split)
  except (IndexError, OSError, ValueError):
    files, folder = [], os.path.join(root, name)
  missing = [f for f, _ in files if not os.path.exists(os.path.join(folder, f))]
  if missing:
    present = sorted(f for f in os.listdir(folder)
                     if f.startswith(f"{name}-{split}."))
    return FileNotFoundError(
        f"The {name} {split} split under {folder} needs "
        f"{', '.join(missing)}, which is missing (renamed or deleted?); the "
        f"folder has {', '.join(present) or 'no file of that split'}. {fix} "
        f"({why})")
  damaged = [(f, d) for f, n in files
             if (d := _damaged(os.path.join(folder, f), n))]
  if damaged:
    return ValueError(
        f"The {name} {split} split under {folder} cannot be read: "
        + "; ".join(f"{os.path.join(folder, f)} is truncated or damaged ({d})"
                    for f, d in damaged) + f". {fix}")
  return ValueError(
      f"The {name} {split} split under {folder} cannot be read from "
      f"{', '.join(f for f, _ in files) or 'its files'}: {why}. {fix}")


def load_split(name: str, split: str, data_dir: Optional[str] = None,
               cache_dir: Optional[str] = "") -> np.ndarray:
  """All images of one TFDS split as ``uint8 [N, 784]``.

  Args:
    name: ``'mnist'`` or ``'fashion_mnist'``.
    split: ``'train'`` or ``'test'``.
    data_dir: TFDS data folder (see :func:`candidate_dirs`).
    cache_dir: folder for a ``.npy`` copy of the decoded images; ``''``
      means ``~/.cache/arsm_jax``, ``None`` disables the file cache.

  Returns:
    The images in TFDS order. The array is shared; do not modify it.
  """
  root = resolve_data_dir(name, data_dir)
  tag = _fingerprint(root, name)
  mem_key = (name, split, tag)
  if mem_key in _MEMORY_CACHE:
    return _MEMORY_CACHE[mem_key]
  cache_path = None
  if cache_dir is not None:
    cache_dir = cache_dir or _default_cache_dir()
    cache_path = os.path.join(cache_dir, f"{name}-{split}-{tag}.npy")
  images = None
  if cache_path and os.path.exists(cache_path):
    images = _read_cache(cache_path)
    if images is not None:
      logging.info("data: %s/%s from cache %s", name, split, cache_path)
  if images is None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    try:
      sources = tfds.data_source(name, data_dir=root, download=False)
    except Exception as e:  # Re-raised with where we looked; cause chained.
      unprepared = _unprepared(root, name)
      if unprepared:
        raise FileNotFoundError(unprepared) from e
      raise FileNotFoundError(
          f"Could not open TFDS dataset {name!r} under {root}: "
          f"{type(e).__name__}: {e}") from e
    if split not in sources:
      raise ValueError(f"Dataset {name!r} has no split {split!r}; it has "
                       f"{sorted(sources)}.")
    try:
      source = sources[split]
      images = _decode(source, len(source))
    except Exception as e:  # A file missing or damaged: which one, and why.
      raise _unreadable_split(root, name, split, e) from e
    logging.info("data: decoded %d %s/%s images from %s", len(images), name,
                 split, root)
    if cache_path:
      try:
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        tmp = f"{cache_path}.{os.getpid()}.tmp.npy"
        np.save(tmp, images)
        os.replace(tmp, cache_path)
      except OSError as e:
        logging.warning("data: could not write cache %s: %s", cache_path, e)
  check_statistics(images, name, split, root)
  images.setflags(write=False)
  _MEMORY_CACHE[mem_key] = images
  return images


def original_order(split: str, num: int) -> np.ndarray:
  """TFDS position of each image of the original file, ``int64 [num]``.

  TFDS builders for ``mnist`` and ``fashion_mnist`` key the i-th image of the
  original IDX file by ``i`` and store the records sorted by the 128-bit MD5
  of ``split_name`` followed by ``str(i)``. Sorting the same hashes recovers
  the file order: ``images[original_order('train', 60000)]`` lists the
  training images as the IDX file does (the first labels are 5, 0, 4, 1, 9,
  the well-known start of MNIST).
  """
  salted = hashlib.md5(split.encode("utf-8"))
  hashes = []
  for i in range(num):
    h = salted.copy()
    h.update(str(i).encode("utf-8"))
    hashes.append(int(h.hexdigest(), 16))
  stored = sorted(range(num), key=hashes.__getitem__)  # position -> index
  return np.argsort(np.asarray(stored, np.int64))  # index -> position


def check_validation_split(how: str) -> str:
  if how not in VALIDATION_SPLITS:
    raise ValueError(f"Unknown validation_split {how!r}; allowed: "
                     f"{', '.join(VALIDATION_SPLITS)}.")
  return how


def check_statistics(images: np.ndarray, name: str, split: str,
                     where: str = "") -> Optional[str]:
  """Warns (and returns the warning) when the mean grey level is not ``name``'s.

  A folder prepared from the wrong files (for example MNIST images under
  ``fashion_mnist``) reads without error; its pixel mean gives it away.
  """
  expected = _KNOWN_MEANS.get((name, split))
  if expected is None or not len(images):
    return None
  mean = float(np.mean(images)) / 255.0
  if abs(mean - expected) < 0.01:
    return None
  alike = [n for (n, s), m in _KNOWN_MEANS.items()
           if s == split and abs(mean - m) < 0.01]
  message = (f"{name}/{split} under {where or '?'} has mean grey level "
             f"{mean:.4f}, but {name}'s is {expected:.4f}"
             + (f"; it looks like {alike[0]}" if alike else "")
             + ". Check how the folder was prepared.")
  logging.warning("data: %s", message)
  return message


def split_train_validation(train_images: np.ndarray,
                           num_validation: int = NUM_VALIDATION,
                           how: str = "last",
                           ) -> tuple[np.ndarray, np.ndarray]:
  """Splits TFDS-ordered training images into (train, validation).

  Args:
    train_images: ``[N, ...]`` in TFDS order.
    num_validation: images held out.
    how: ``'last'``, the last ``num_validation`` in TFDS order validate; or
      ``'paper'``, the first ``num_validation`` of the original file validate
      (see :func:`original_order`) and the rest train, in file order.
  """
  check_validation_split(how)
  if not 0 < num_validation < len(train_images):
    raise ValueError(f"num_validation must be in (0, {len(train_images)}); "
                     f"got {num_validation}.")
  if how == "last":
    return train_images[:-num_validation], train_images[-num_validation:]
  position = original_order("train", len(train_images))
  return (train_images[position[num_validation:]],
          train_images[position[:num_validation]])


def load(name: str = "mnist", data_dir: Optional[str] = None,
         cache_dir: Optional[str] = "",
         num_validation: int = NUM_VALIDATION,
         validation_split: str = "last") -> dict[str, np.ndarray]:
  """``{'train', 'validation', 'test'}`` ``uint8 [N, 784]`` (55k/5k/10k).

  ``validation_split`` picks the validation images (``'last'`` or
  ``'paper'``, see :func:`split_train_validation`).
  """
  train, valid = split_train_validation(
      load_split(name, "train", data_dir, cache_dir), num_validation,
      validation_split)
  test = load_split(name, "test", data_dir, cache_dir)
  return {"train": train, "validation": valid, "test": test}


def check_binarization(method: str) -> str:
  if method not in BINARIZATIONS:
    raise ValueError(f"Unknown binarization {method!r}; allowed: "
                     f"{', '.join(BINARIZATIONS)}.")
  return method


def binarize(images, method: str, key: Optional[Array] = None,
             dtype=jnp.float32) -> Array:
  """Binary pixels from ``uint8`` grey levels (works under ``jit``).

  Args:
    images: ``uint8 [..., 784]`` grey levels 0..255.
    method: ``'threshold'`` (``pixel / 255 > 0.5``) or ``'dynamic'``
      (``Bernoulli(pixel / 255)``, needs ``key``).
    key: PRNG key for ``'dynamic'``.
    dtype: output dtype.

  Returns:
    ``[..., 784]`` array of zeros and ones.
  """
  check_binarization(method)
  grey = jnp.asarray(images).astype(jnp.float32) / 255.0
  if method == "threshold":
    return (grey > 0.5).astype(dtype)
  if key is None:
    raise ValueError("binarize(method='dynamic') needs a PRNG key.")
  return jax.random.bernoulli(key, grey).astype(dtype)


def epoch_permutation(key: Array, epoch: int, num: int) -> np.ndarray:
  """The order of the training images in ``epoch`` (a pure function of both)."""
  return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), num))


def batches(num: int, batch_size: int) -> Iterable[slice]:
  """Consecutive slices of at most ``batch_size`` covering ``range(num)``."""
  for start in range(0, num, batch_size):
    yield slice(start, min(start + batch_size, num))


def synthetic(sizes: tuple[int, int, int] = (1000, 200, 200),
              num_pixels: int = NUM_PIXELS, num_prototypes: int = 4,
              flip_prob: float = 0.05, seed: int = 0) -> dict[str, np.ndarray]:
  """Tiny ``uint8`` images for tests: noisy copies of a few random prototypes.

  Each image is one of ``num_prototypes`` random binary patterns (pixel 0 or
  255) with each pixel flipped with probability ``flip_prob``, so a VAE with
  a handful of latent categories can learn them in a few steps.

  Returns:
    ``{'train', 'validation', 'test'}`` ``uint8 [n, num_pixels]`` arrays with
    ``n`` from ``sizes``.
  """
  rng = np.random.default_rng(seed)
  protos = rng.random((num_prototypes, num_pixels)) < 0.5
  out = {}
  for name, n in zip(("train", "validation", "test"), sizes):
    which = rng.integers(0, num_prototypes, n)
    flips = rng.random((n, num_pixels)) < flip_prob
    out[name] = ((protos[which] ^ flips) * 255).astype(np.uint8)
  return out
