"""Image datasets (MNIST, CIFAR-10) as uint8 arrays, from local files first, then TFDS.

Without network, TFDS retries a download for minutes; so the loader looks for
local copies first (MNIST IDX files, CIFAR-10's python batches, or a TFDS
dataset already prepared in `data_dir`) and only downloads when asked to. When
nothing is found it raises one `DataError` that says what it tried and how to
fix it. Nothing is written unless a download is asked for.
"""

import gzip
import os
import pickle

import numpy as np

IMAGE_DATASETS = ('mnist', 'cifar10')
_MNIST_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
                'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
_CIFAR_FILES = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}


class DataError(ValueError):
  """No usable copy of a dataset, with what was tried and the fix."""


def _open(path):
  """The IDX file at path or path.gz, opened for reading bytes; None if neither exists."""
  for candidate in (path, path + '.gz'):
    if os.path.isfile(candidate):
      return gzip.open(candidate, 'rb') if candidate.endswith('.gz') else open(candidate, 'rb')
  return None


def _read_idx(handle, path, magic, dims):
  with handle:
    content = handle.read()
  header = np.frombuffer(content[:4 * (1 + dims)], dtype='>i4')
  if len(header) != 1 + dims or header[0] != magic:
    raise DataError(f'{path}: not an IDX file of magic {magic}; replace it with the original')
  shape = tuple(int(n) for n in header[1:])
  values = np.frombuffer(content, dtype=np.uint8, offset=4 * (1 + dims))
  if values.size != int(np.prod(shape)):
    raise DataError(f'{path}: holds {values.size} values, its header says {shape}; '
                    'the file is truncated, download it again')
  return values.reshape(shape)


def _mnist_idx(data_dir, split):
  images_name, labels_name = _MNIST_FILES[split]
  images = _open(os.path.join(data_dir, images_name))
  labels = _open(os.path.join(data_dir, labels_name))
  if images is None or labels is None:
    for handle in (images, labels):
      if handle is not None:
        handle.close()
    return None
  x = _read_idx(images, os.path.join(data_dir, images_name), 2051, 3)[..., None]
  y = _read_idx(labels, os.path.join(data_dir, labels_name), 2049, 1)
  if len(x) != len(y):
    raise DataError(f'{data_dir}: {len(x)} MNIST images but {len(y)} labels; '
                    'use the image and label files of one download')
  return x, y


def _cifar_batches(data_dir, split):
  folder = next((d for d in (os.path.join(data_dir, 'cifar-10-batches-py'), data_dir)
                 if os.path.isfile(os.path.join(d, _CIFAR_FILES[split][0]))), None)
  if folder is None:
    return None
  images, labels = [], []
  for name in _CIFAR_FILES[split]:
    path = os.path.join(folder, name)
    try:
      with open(path, 'rb') as f:
        batch = pickle.load(f, encoding='bytes')
      images.append(np.asarray(batch[b'data'], np.uint8).reshape(-1, 3, 32, 32))
      labels.append(np.asarray(batch[b'labels'], np.int64))
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
      raise DataError(f'{path}: not a CIFAR-10 python batch ({e}); download it again') from e
  return np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels)


DOWNLOAD_HOST = ('storage.googleapis.com', 443)  # where TFDS downloads MNIST and CIFAR-10 from


def _online(timeout=5.0):
  """Whether the TFDS download host answers; offline, TFDS itself retries for minutes."""
  import socket  # pylint: disable=g-import-not-at-top
  try:
    with socket.create_connection(DOWNLOAD_HOST, timeout=timeout):
      return True
  except OSError:
    return False


def _tfds(name, data_dir, split, download):
  """(images, labels) from TFDS if prepared in data_dir (or if `download`), else None."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except  (an unreadable folder is "not prepared")
    prepared = False
  if not prepared and not (download and _online()):
    return None
  dataset = tfds.load(name, split=split, data_dir=data_dir, download=download,
                      as_supervised=True).batch(4096)
  images, labels = zip(*tfds.as_numpy(dataset))
  return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int64)


def load(name, data_dir=None, split='train', download=False):
  """Images and labels of an image dataset.

  Looks, in order, for: MNIST IDX files (`train-images-idx3-ubyte[.gz]` and
  friends) or CIFAR-10 python batches (`cifar-10-batches-py/data_batch_1`...)
  in `data_dir`; a TFDS dataset prepared in `data_dir`; and with `download`,
  a TFDS download.

  Returns:
    (images [N, H, W, C] uint8, labels [N] int64).

  Raises:
    DataError: nothing found, or a damaged file; the message names the fix.
  """
  if name not in IMAGE_DATASETS:
    raise DataError(f'unknown image dataset {name!r}; choose one of {IMAGE_DATASETS}')
  if split not in ('train', 'test'):
    raise DataError(f'unknown split {split!r}; use train or test')
  tried = []
  if data_dir:
    local = (_mnist_idx if name == 'mnist' else _cifar_batches)(data_dir, split)
    if local is not None:
      return local
    tried.append('MNIST IDX files' if name == 'mnist' else 'CIFAR-10 python batches')
  found = _tfds(name, data_dir, split, download)
  if found is not None:
    return found
  tried.append('a prepared TFDS dataset')
  where = f'in {data_dir}' if data_dir else 'in the default TFDS folder (no --data_dir given)'
  how = ('the TFDS download host did not answer (offline?)' if download
         else 'downloads are off (--nodownload)')
  files = ('train-images-idx3-ubyte.gz and friends' if name == 'mnist'
           else 'cifar-10-batches-py/')
  raise DataError(f'no {name} {split} data: looked for {" and ".join(tried)} {where}, and '
                  f'{how}; put {files} in a folder and pass --data_dir=FOLDER, or run '
                  f'`tfds build {name}` where there is network')


def to_model_range(images):
  """uint8 [N, H, W, C] -> float32 in [-1, 1], NHWC."""
  return (np.asarray(images, np.float32) / 127.5 - 1.0).astype(np.float32)
