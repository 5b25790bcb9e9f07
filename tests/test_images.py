"""Image datasets from local files and TFDS, and the clear error when there are none."""

import gzip
import pickle

import numpy as np
import pytest

from tfganebm import images


def _write_idx(path, magic, array, compress=True):
  header = np.array([magic, *array.shape], dtype='>i4').tobytes()
  opener = gzip.open if compress else open
  with opener(str(path) + ('.gz' if compress else ''), 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize('compress', [True, False])
def test_mnist_from_idx_files(tmp_path, compress):
  pixels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
  _write_idx(tmp_path / 'train-images-idx3-ubyte', 2051, pixels, compress)
  _write_idx(tmp_path / 'train-labels-idx1-ubyte', 2049, np.array([7, 0, 3]), compress)
  x, y = images.load('mnist', str(tmp_path))
  assert x.shape == (3, 28, 28, 1) and x.dtype == np.uint8
  np.testing.assert_array_equal(x[..., 0], pixels)
  np.testing.assert_array_equal(y, [7, 0, 3])
  scaled = images.to_model_range(x)
  assert scaled.min() == -1.0 and scaled.max() == 1.0


def test_truncated_idx_file_names_the_problem(tmp_path):
  _write_idx(tmp_path / 'train-images-idx3-ubyte', 2051, np.zeros((3, 28, 28)))
  _write_idx(tmp_path / 'train-labels-idx1-ubyte', 2049, np.zeros(3))
  with gzip.open(tmp_path / 'train-images-idx3-ubyte.gz', 'rb') as f:
    content = f.read()
  with gzip.open(tmp_path / 'train-images-idx3-ubyte.gz', 'wb') as f:
    f.write(content[:-100])
  with pytest.raises(images.DataError, match='truncated'):
    images.load('mnist', str(tmp_path))


def test_cifar10_from_python_batches(tmp_path):
  folder = tmp_path / 'cifar-10-batches-py'
  folder.mkdir()
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, 256, (2, 3 * 32 * 32)) for _ in range(5)]
  for i, data in enumerate(batches, 1):
    with open(folder / f'data_batch_{i}', 'wb') as f:
      pickle.dump({b'data': data.astype(np.uint8), b'labels': [i, i]}, f)
  x, y = images.load('cifar10', str(tmp_path))
  assert x.shape == (10, 32, 32, 3)
  # CIFAR stores each image as 1024 red, then green, then blue values: NHWC puts them last.
  np.testing.assert_array_equal(x[0, :, :, 2].ravel(), batches[0][0, 2048:])
  np.testing.assert_array_equal(y, np.repeat(np.arange(1, 6), 2))


def test_missing_data_fails_fast_with_what_was_tried(tmp_path):
  with pytest.raises(images.DataError) as error:
    images.load('mnist', str(tmp_path / 'empty'))
  message = str(error.value)
  assert 'IDX files' in message and 'TFDS' in message and 'tfds build mnist' in message
  assert not (tmp_path / 'empty').exists()  # nothing written


def test_tfds_is_used_when_no_local_files(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=6):
    x, y = images.load('mnist', str(tmp_path), download=True)
  assert x.shape == (6, 28, 28, 1) and x.dtype == np.uint8 and y.shape == (6,)
