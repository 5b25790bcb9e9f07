"""Image datasets (MNIST, CIFAR-10) as uint8 arrays, from local files first, then TFDS.

Without network, TFDS retries a download for minutes; so the loader looks for
local copies first (MNIST IDX files, CIFAR-10's binary version
`cifar-10-batches-bin/`, then its python version `cifar-10-batches-py/`, or a
TFDS dataset already prepared in `data_dir`) and only downloads when asked to.
When nothing is found, or a file is damaged, it raises one `DataError` whose
one-line message names the file, what is wrong and how to fix it. Nothing is
written unless a download is asked for.

The python version is a pickle, and unpickling runs whatever code the file
names; since `data_dir` may come from anywhere, its batches are read by an
unpickler that builds numpy arrays and plain containers only.
"""

import gzip
import os
import pickle
import zlib

import numpy as np

IMAGE_SHAPES = {'mnist': (28, 28, 1), 'cifar10': (32, 32, 3)}  # one example, HWC
_MNIST_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
                'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
_CIFAR_FILES = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}
_CIFAR_PIXELS = 3 * 32 * 32  # per image: 1024 red, then 1024 green, then 1024 blue values
_CIFAR_RECORD = 1 + _CIFAR_PIXELS  # a binary record: the label byte, then the pixels
_CIFAR_BINARY_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'


class DataError(ValueError):
  """No usable copy of a dataset, with what was tried and the fix."""


def _one_line(error):
  """An exception's message with its line breaks folded, for a one-line DataError."""
  return ' '.join(str(error).split()) or type(error).__name__


def _find(path):
  """path or path.gz, whichever is a file (path first); None if neither is."""
  return next((p for p in (path, path + '.gz') if os.path.isfile(p)), None)


def _read_idx(path, magic, dims):
  """The array in the IDX file at path (gzip-compressed if it ends in .gz).

  Args:
    path: the file.
    magic: the number its header must start with (2051 images, 2049 labels).
    dims: how many dimensions its header gives.

  Returns:
    uint8 array of the header's shape.

  Raises:
    DataError: the file is unreadable, not gzip though named .gz, truncated, or not
      an IDX file of this magic number.
  """
  try:
    with (gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')) as f:
      content = f.read()
  except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
    raise DataError(f'{path}: unreadable ({_one_line(e)}); the file is damaged or truncated, '
                    'download it again') from e
  header_size = 4 * (1 + dims)
  if len(content) < header_size:
    raise DataError(f'{path}: {len(content)} bytes, shorter than the {header_size}-byte IDX '
                    'header; the file is truncated, download it again')
  header = np.frombuffer(content[:header_size], dtype='>i4')
  if header[0] != magic:
    raise DataError(f'{path}: starts with {int(header[0])}, not the IDX magic number {magic}; '
                    'the file is damaged or not this MNIST file, download it again')
  shape = tuple(int(n) for n in header[1:])
  values = np.frombuffer(content, dtype=np.uint8, offset=header_size)
  if min(shape) < 0 or values.size != int(np.prod(shape)):
    raise DataError(f'{path}: holds {values.size} values, its header says {shape}; '
                    'the file is truncated, download it again')
  return values.reshape(shape)


def _mnist_idx(data_dir, split):
  images_path, labels_path = (_find(os.path.join(data_dir, name)) for name in _MNIST_FILES[split])
  if images_path is None or labels_path is None:
    return None
  x = _read_idx(images_path, 2051, 3)[..., None]
  y = _read_idx(labels_path, 2049, 1)
  if len(x) != len(y):
    raise DataError(f'{data_dir}: {len(x)} MNIST images but {len(y)} labels; '
                    'use the image and label files of one download')
  if len(y) and y.max() > 9:
    raise DataError(f'{labels_path}: label {int(y.max())} at index {int(np.argmax(y > 9))}, MNIST '
                    'has labels 0-9; the file is damaged: download it again')
  return x, y


def _read_cifar_binary(path):
  """(images [n, 3, 32, 32] uint8, labels [n] int64) of one batch of CIFAR-10's binary version.

  Raises:
    DataError: the file is unreadable, or not whole 3073-byte records of a label in 0..9
      and 3072 pixels.
  """
  fix = f'download {_CIFAR_BINARY_URL} again and extract it'
  try:
    with open(path, 'rb') as f:
      content = f.read()
  except OSError as e:
    raise DataError(f'{path}: unreadable ({_one_line(e)}); {fix}') from e
  if not content or len(content) % _CIFAR_RECORD:
    raise DataError(f'{path}: {len(content)} bytes, not a whole number of {_CIFAR_RECORD}-byte '
                    f'CIFAR-10 records (a label byte and {_CIFAR_PIXELS} pixels); the file is '
                    f'truncated or not CIFAR-10\'s binary version, {fix}')
  records = np.frombuffer(content, np.uint8).reshape(-1, _CIFAR_RECORD)
  if records[:, 0].max() >= 10:
    raise DataError(f'{path}: a record has label {records[:, 0].max()}, CIFAR-10 has labels '
                    f'0..9; the file is not CIFAR-10\'s binary version, {fix}')
  return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


class _CifarUnpickler(pickle.Unpickler):
  """Unpickles CIFAR-10's python batches and refuses everything else before it runs.

  A batch needs no global but numpy's array reconstruction. Pickles that python 3
  writes with protocol <= 2 add `_codecs.encode(text, 'latin1')` for bytes, and
  protocol 5 numpy's `_frombuffer`; both build arrays or bytes only, so both are
  admitted, `_codecs.encode` for latin-1 only.
  """

  # numpy's own functions, taken from how it pickles arrays (their module moved in numpy 2).
  _RECONSTRUCT = np.array(0).__reduce__()[0]
  _FROMBUFFER = np.zeros(1, np.uint8).__reduce_ex__(5)[0]
  _ARRAY_GLOBALS = {
      ('numpy.core.multiarray', '_reconstruct'): _RECONSTRUCT,
      ('numpy._core.multiarray', '_reconstruct'): _RECONSTRUCT,
      ('numpy', 'ndarray'): np.ndarray,
      ('numpy', 'dtype'): np.dtype,
      ('numpy.core.numeric', '_frombuffer'): _FROMBUFFER,
      ('numpy._core.numeric', '_frombuffer'): _FROMBUFFER,
  }

  def find_class(self, module, name):
    if (module, name) == ('_codecs', 'encode'):
      return _latin1_encode
    if (module, name) not in self._ARRAY_GLOBALS:
      raise pickle.UnpicklingError(f'it refers to {module}.{name}, which no CIFAR-10 batch does')
    return self._ARRAY_GLOBALS[module, name]


def _latin1_encode(text, encoding):
  """`_codecs.encode` as python 3 pickles bytes with protocol <= 2, and no other codec."""
  if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
    raise pickle.UnpicklingError(f'it encodes with {encoding!r}, which no CIFAR-10 batch does')
  return text.encode('latin1')


def _read_cifar_python(path):
  """(images [n, 3, 32, 32] uint8, labels [n] int64) of one batch of CIFAR-10's python version.

  Raises:
    DataError: the file is unreadable, names any global but numpy's array reconstruction
      (nothing it names is run), or is not a dict of a uint8 `data` array [n, 3072] and a
      `labels` list of n ints.
  """
  fix = f'use CIFAR-10\'s binary version instead: extract {_CIFAR_BINARY_URL} into --data_dir'
  try:
    with open(path, 'rb') as f:
      batch = _CifarUnpickler(f, encoding='bytes').load()
  except Exception as e:  # pylint: disable=broad-except  (a damaged pickle fails in many ways)
    raise DataError(f'{path}: not a CIFAR-10 python batch ({_one_line(e)}); {fix}') from e
  batch = batch if isinstance(batch, dict) else {}
  data = batch.get(b'data', batch.get('data'))
  labels = batch.get(b'labels', batch.get('labels'))
  if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
          and data.shape[1] == _CIFAR_PIXELS and isinstance(labels, list)
          and len(labels) == len(data)
          and all(isinstance(label, int) and 0 <= label < 10 for label in labels)):
    raise DataError(f'{path}: not a CIFAR-10 python batch (it should be a dict of a uint8 '
                    f'`data` array [n, {_CIFAR_PIXELS}] and a `labels` list of n ints in '
                    f'0..9); {fix}')
  return data.reshape(-1, 3, 32, 32), np.asarray(labels, np.int64)


def _cifar_batches(data_dir, split):
  """CIFAR-10's binary batches in data_dir, else its python batches; None if neither is there.

  Each version is looked for in its own folder (`cifar-10-batches-bin/`,
  `cifar-10-batches-py/`), then in data_dir itself.

  Returns:
    (images [N, 32, 32, 3] uint8, labels [N] int64), or None.

  Raises:
    DataError: a batch file is missing, unreadable or damaged.
  """
  for subfolder, suffix, read in (('cifar-10-batches-bin', '.bin', _read_cifar_binary),
                                  ('cifar-10-batches-py', '', _read_cifar_python)):
    names = [name + suffix for name in _CIFAR_FILES[split]]
    folder = next((d for d in (os.path.join(data_dir, subfolder), data_dir)
                   if os.path.isfile(os.path.join(d, names[0]))), None)
    if folder is not None:
      images, labels = zip(*(read(os.path.join(folder, name)) for name in names))
      # Channel-major [n, 3, 32, 32] -> NHWC: the 1024 red values become channel 0.
      return np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels)
  return None


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
  friends) or CIFAR-10 batches, binary (`cifar-10-batches-bin/data_batch_1.bin`...)
  then python (`cifar-10-batches-py/data_batch_1`..., read without running any
  code they name) in `data_dir`; a TFDS dataset prepared in `data_dir`; and with
  `download`, a TFDS download.

  Returns:
    (images [N, H, W, C] uint8, labels [N] int64).

  Raises:
    DataError: nothing found, or a damaged file; the message names the fix.
  """
  if name not in IMAGE_SHAPES:
    raise DataError(f'unknown image dataset {name!r}; choose one of {tuple(IMAGE_SHAPES)}')
  if split not in ('train', 'test'):
    raise DataError(f'unknown split {split!r}; use train or test')
  tried = []
  if data_dir:
    local = (_mnist_idx if name == 'mnist' else _cifar_batches)(data_dir, split)
    if local is not None:
      return local
    tried.append('MNIST IDX files' if name == 'mnist'
                 else 'CIFAR-10 binary batches (cifar-10-batches-bin/) or python batches')
  found = _tfds(name, data_dir, split, download)
  if found is not None:
    return found
  tried.append('a prepared TFDS dataset')
  where = f'in {data_dir}' if data_dir else 'in the default TFDS folder (no --data_dir given)'
  how = ('the TFDS download host did not answer (offline?)' if download
         else 'downloads are off (--nodownload)')
  files = ('train-images-idx3-ubyte.gz and friends' if name == 'mnist'
           else f'cifar-10-batches-bin/ (from {_CIFAR_BINARY_URL})')
  raise DataError(f'no {name} {split} data: looked for {" and ".join(tried)} {where}, and '
                  f'{how}; put {files} in a folder and pass --data_dir=FOLDER, or run '
                  f'`tfds build {name}` where there is network')


def to_model_range(images):
  """uint8 [N, H, W, C] -> float32 in [-1, 1], NHWC."""
  return (np.asarray(images, np.float32) / 127.5 - 1.0).astype(np.float32)
