"""Tests of arsm_jax.data: binarisation, splits, TFDS loading (mocked), errors."""

import os

import jax
import numpy as np
import pytest

from arsm_jax import data

_REAL_TFDS = os.path.normpath(os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "tfds"))


def test_threshold_binarization_is_pixel_over_255_above_half():
  grey = np.array([[0, 127, 128, 255]], np.uint8)
  out = np.asarray(data.binarize(grey, "threshold"))
  np.testing.assert_array_equal(out, [[0.0, 0.0, 1.0, 1.0]])
  assert out.dtype == np.float32


def test_dynamic_binarization_draws_bernoulli_of_grey_level():
  grey = np.full((4000, 3), [0, 64, 255], np.uint8)
  key = jax.random.PRNGKey(0)
  out = np.asarray(data.binarize(grey, "dynamic", key))
  np.testing.assert_array_equal(out[:, 0], 0.0)
  np.testing.assert_array_equal(out[:, 2], 1.0)
  # p = 64/255 = 0.251; std of the mean over 4000 draws is 0.0069, so a
  # 5-sigma band fails with probability < 1e-6.
  assert abs(out[:, 1].mean() - 64 / 255) < 5 * 0.0069
  np.testing.assert_array_equal(out, data.binarize(grey, "dynamic", key))
  assert not np.array_equal(
      out, data.binarize(grey, "dynamic", jax.random.PRNGKey(1)))


def test_dynamic_binarization_without_key_and_unknown_method_fail():
  grey = np.zeros((1, 4), np.uint8)
  with pytest.raises(ValueError, match="needs a PRNG key"):
    data.binarize(grey, "dynamic")
  with pytest.raises(ValueError, match="'static'.*threshold, dynamic"):
    data.binarize(grey, "static")


def test_split_keeps_last_images_for_validation():
  images = np.arange(60)[:, None].astype(np.uint8)
  train, valid = data.split_train_validation(images, 5)
  np.testing.assert_array_equal(train[:, 0], np.arange(55))
  np.testing.assert_array_equal(valid[:, 0], np.arange(55, 60))
  with pytest.raises(ValueError, match="num_validation"):
    data.split_train_validation(images, 60)


def _tfds_stored_order(split, num):
  """Original indices in the order TFDS's own writer would store them."""
  from tensorflow_datasets.core import hashing  # pylint: disable=g-import-not-at-top
  hasher = hashing.Hasher(salt=split)
  return sorted(range(num), key=hasher.hash_key)


@pytest.mark.parametrize("split", ["train", "test"])
def test_original_order_inverts_the_tfds_key_shuffle(split):
  # Uses TFDS's own hasher, independent of arsm_jax's re-implementation.
  stored = np.array(_tfds_stored_order(split, 500))
  position = data.original_order(split, 500)
  np.testing.assert_array_equal(stored[position], np.arange(500))
  assert not np.array_equal(stored, np.arange(500))  # It is shuffled.


def test_paper_split_validates_on_the_first_file_images():
  stored = np.array(_tfds_stored_order("train", 300))
  images = stored[:, None].astype(np.int32)  # Each image holds its index.
  train, valid = data.split_train_validation(images, 30, how="paper")
  np.testing.assert_array_equal(valid[:, 0], np.arange(30))
  np.testing.assert_array_equal(train[:, 0], np.arange(30, 300))
  with pytest.raises(ValueError, match="Unknown validation_split 'first'; "
                     "allowed: last, paper"):
    data.split_train_validation(images, 30, how="first")


def test_statistics_check_flags_images_of_another_dataset():
  rng = np.random.default_rng(0)
  # Grey levels with MNIST's mean (0.1307 * 255 = 33.3).
  mnist_like = (rng.random((200, 784)) < 0.1307).astype(np.uint8) * 255
  assert data.check_statistics(mnist_like, "mnist", "train") is None
  message = data.check_statistics(mnist_like, "fashion_mnist", "train", "D")
  assert message is not None
  assert "fashion_mnist/train under D" in message and "like mnist" in message


def test_epoch_permutation_is_a_pure_function_of_key_and_epoch():
  key = jax.random.PRNGKey(3)
  p0 = data.epoch_permutation(key, 0, 50)
  np.testing.assert_array_equal(np.sort(p0), np.arange(50))
  np.testing.assert_array_equal(p0, data.epoch_permutation(key, 0, 50))
  assert not np.array_equal(p0, data.epoch_permutation(key, 1, 50))


def test_missing_dataset_names_where_it_looked_and_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    data.load_split("mnist", "train", str(tmp_path / "empty"), cache_dir=None)
  message = str(info.value)
  assert str(tmp_path / "empty" / "mnist") in message
  assert "download=True" in message and "--config.data_dir" in message


def test_unknown_dataset_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="'cifar10'.*mnist, fashion_mnist"):
    data.load_split("cifar10", "train", str(tmp_path))


def test_relative_data_dir_is_tried_against_cwd_then_repo_root(tmp_path,
                                                              monkeypatch):
  monkeypatch.chdir(tmp_path)
  dirs = data.candidate_dirs("some/rel")
  assert dirs[0] == str(tmp_path / "some" / "rel")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(data.__file__)))
  assert dirs[1] == os.path.join(repo, "some", "rel")
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
  assert data.candidate_dirs(None) == [str(tmp_path / "env")]


class _FakeSource:
  """Stands in for a TFDS ArrayRecordDataSource of 28x28x1 images."""

  def __init__(self, images):
    self.images = images
    self.calls = 0

  def __len__(self):
    return len(self.images)

  def __getitems__(self, idx):
    self.calls += 1
    return [{"image": self.images[i].reshape(28, 28, 1), "label": 0}
            for i in idx]


def test_load_split_decodes_once_then_uses_npy_cache(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  (tmp_path / "tfds" / "mnist").mkdir(parents=True)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2500, 784)).astype(np.uint8)
  source = _FakeSource(images)
  monkeypatch.setattr(tfds, "data_source",
                      lambda name, data_dir, download: {"train": source})
  monkeypatch.setattr(data, "_MEMORY_CACHE", {})
  cache = tmp_path / "cache"
  out = data.load_split("mnist", "train", str(tmp_path / "tfds"), str(cache))
  np.testing.assert_array_equal(out, images)
  assert source.calls == 2            # two decode batches of <= 2000
  assert len(list(cache.glob("mnist-train-*.npy"))) == 1
  assert data.load_split("mnist", "train", str(tmp_path / "tfds"),
                         str(cache)) is out          # in-memory cache
  monkeypatch.setattr(data, "_MEMORY_CACHE", {})
  again = data.load_split("mnist", "train", str(tmp_path / "tfds"), str(cache))
  np.testing.assert_array_equal(again, images)
  assert source.calls == 2            # the .npy, not TFDS, served it
  with pytest.raises(ValueError, match="no split 'test'"):
    monkeypatch.setattr(data, "_MEMORY_CACHE", {})
    data.load_split("mnist", "test", str(tmp_path / "tfds"), None)


def test_a_replaced_dataset_folder_is_decoded_again(tmp_path, monkeypatch):
  # The shared fashion_mnist folder once held MNIST and was then replaced by
  # the real dataset: neither cache may go on serving the old images.
  tfds = pytest.importorskip("tensorflow_datasets")
  folder = tmp_path / "tfds" / "mnist" / "3.0.1"
  folder.mkdir(parents=True)
  (folder / "mnist-train.array_record").write_bytes(b"old")
  rng = np.random.default_rng(1)
  old, new = (rng.integers(0, 256, (50, 784)).astype(np.uint8)
              for _ in range(2))
  sources = {"now": _FakeSource(old)}
  monkeypatch.setattr(tfds, "data_source",
                      lambda name, data_dir, download: {"train": sources["now"]})
  monkeypatch.setattr(data, "_MEMORY_CACHE", {})
  cache = str(tmp_path / "cache")
  root = str(tmp_path / "tfds")
  np.testing.assert_array_equal(data.load_split("mnist", "train", root, cache),
                                old)
  (folder / "mnist-train.array_record").write_bytes(b"newer")  # new size
  sources["now"] = _FakeSource(new)
  np.testing.assert_array_equal(data.load_split("mnist", "train", root, cache),
                                new)            # memory cache missed
  monkeypatch.setattr(data, "_MEMORY_CACHE", {})
  np.testing.assert_array_equal(data.load_split("mnist", "train", root, cache),
                                new)            # the file cache too
  assert sources["now"].calls == 1


def test_synthetic_data_shapes_and_values():
  splits = data.synthetic((30, 10, 12), num_pixels=16, seed=1)
  assert {k: v.shape for k, v in splits.items()} == {
      "train": (30, 16), "validation": (10, 16), "test": (12, 16)}
  assert set(np.unique(splits["train"])) <= {0, 255}


@pytest.mark.skipif(not os.path.isdir(os.path.join(_REAL_TFDS, "mnist")),
                    reason=f"no prepared TFDS mnist in {_REAL_TFDS}")
def test_real_mnist_test_split(tmp_path):
  images = data.load_split("mnist", "test", _REAL_TFDS, str(tmp_path))
  assert images.shape == (10000, 784) and images.dtype == np.uint8
  # The MNIST test-set mean grey level is 0.1325 of 255.
  assert abs(images.mean() / 255 - 0.1325) < 2e-3


@pytest.mark.skipif(not os.path.isdir(os.path.join(_REAL_TFDS, "mnist")),
                    reason=f"no prepared TFDS mnist in {_REAL_TFDS}")
def test_real_mnist_original_order_starts_with_the_known_labels():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.data_source("mnist", data_dir=_REAL_TFDS, download=False)
  position = data.original_order("train", len(source["train"]))
  labels = [int(source["train"][int(p)]["label"]) for p in position[:10]]
  assert labels == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # The IDX file's start.


@pytest.mark.skipif(
    not os.path.isdir(os.path.join(_REAL_TFDS, "fashion_mnist")),
    reason=f"no prepared TFDS fashion_mnist in {_REAL_TFDS}")
def test_real_fashion_mnist_test_split_passes_the_data_check():
  images = data.load_split("fashion_mnist", "test", _REAL_TFDS, None)
  assert images.shape == (10000, 784)
  # Fashion-MNIST's test mean is 0.2868 of 255 (MNIST's is 0.1325): the
  # folder holds the real dataset, and the check has nothing to say.
  assert abs(images.mean() / 255 - 0.2868) < 2e-3
  assert data.check_statistics(images, "fashion_mnist", "test", "D") is None
