"""Image files from untrusted folders: CIFAR-10 without running code, damaged files in one line."""

import gzip
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tfganebm import images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = 1 + 3 * 32 * 32  # a CIFAR-10 binary record: label byte, then 1024 red, green, blue


class _RunsShellCommand:
  """Unpickling this runs `touch marker`, as a crafted `data_batch_1` would."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def _write_crafted_batch(folder, marker):
  folder.mkdir(parents=True, exist_ok=True)
  with open(folder / 'data_batch_1', 'wb') as f:
    pickle.dump(_RunsShellCommand(marker), f)


def _write_python_batches(folder, protocol, num_per_batch=2):
  """Five train batches and a test batch in the layout of CIFAR-10's python version."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  written = {}
  for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    data = rng.integers(0, 256, (num_per_batch, 3 * 32 * 32)).astype(np.uint8)
    labels = [int(label) for label in rng.integers(0, 10, num_per_batch)]
    with open(folder / name, 'wb') as f:
      pickle.dump({b'batch_label': b'training batch', b'data': data, b'labels': labels,
                   b'filenames': [b'x.png'] * num_per_batch}, f, protocol=protocol)
    written[name] = data, labels
  return written


def _one_line_error(error, file_name):
  message = str(error.value)
  assert '\n' not in message
  assert file_name in message
  return message


def test_crafted_pickle_is_refused_without_running_it(tmp_path):
  marker = tmp_path / 'MARKER'
  _write_crafted_batch(tmp_path / 'data' / 'cifar-10-batches-py', marker)
  with pytest.raises(images.DataError) as error:
    images.load('cifar10', str(tmp_path / 'data'))
  message = _one_line_error(error, 'data_batch_1')
  assert 'cifar-10-binary.tar.gz' in message  # the fix: the format that holds no code
  assert not marker.exists()


@pytest.mark.parametrize('protocol', [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_genuine_python_batches_still_load(tmp_path, protocol):
  written = _write_python_batches(tmp_path / 'cifar-10-batches-py', protocol)
  x, y = images.load('cifar10', str(tmp_path))
  assert x.shape == (10, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
  data = np.concatenate([written[f'data_batch_{i}'][0] for i in range(1, 6)])
  np.testing.assert_array_equal(x, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  np.testing.assert_array_equal(y, sum((written[f'data_batch_{i}'][1] for i in range(1, 6)), []))
  x_test, y_test = images.load('cifar10', str(tmp_path), split='test')
  np.testing.assert_array_equal(x_test[1, 0, 0], written['test_batch'][0][1, [0, 1024, 2048]])
  np.testing.assert_array_equal(y_test, written['test_batch'][1])


@pytest.mark.parametrize('content', [
    {b'data': np.zeros((2, 3072), np.float32), b'labels': [0, 1]},  # not uint8
    {b'data': np.zeros((2, 3000), np.uint8), b'labels': [0, 1]},  # not 32x32x3 images
    {b'data': np.zeros((2, 3072), np.uint8), b'labels': [0]},  # a label missing
    {b'data': np.zeros((2, 3072), np.uint8), b'labels': ['cat', 'dog']},
    [np.zeros((2, 3072), np.uint8)],  # not a dict
])
def test_python_batch_of_the_wrong_structure_is_refused(tmp_path, content):
  folder = tmp_path / 'cifar-10-batches-py'
  folder.mkdir()
  with open(folder / 'data_batch_1', 'wb') as f:
    pickle.dump(content, f)
  with pytest.raises(images.DataError) as error:
    images.load('cifar10', str(tmp_path))
  assert 'cifar-10-binary.tar.gz' in _one_line_error(error, 'data_batch_1')


def _write_binary_batches(folder, num_per_batch=3):
  """Batches whose red, green and blue planes hold distinct values: 10+, 100+ and 200+."""
  folder.mkdir(parents=True, exist_ok=True)
  written = {}
  for index, name in enumerate([f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']):
    rgb = np.zeros((num_per_batch, 32, 32, 3), np.uint8)
    rgb[..., 0] = 10 + np.arange(32)[:, None] % 7  # red varies along rows
    rgb[..., 1] = 100 + np.arange(32)[None, :] % 5  # green varies along columns
    rgb[..., 2] = 200 + np.arange(num_per_batch)[:, None, None] + index  # blue: per image
    labels = (np.arange(num_per_batch) + index) % 10
    records = np.concatenate([labels[:, None].astype(np.uint8),
                              rgb.transpose(0, 3, 1, 2).reshape(num_per_batch, -1)], axis=1)
    (folder / f'{name}.bin').write_bytes(records.tobytes())
    written[name] = rgb, labels
  return written


def test_binary_batches_load_as_nhwc_with_the_pixels_written(tmp_path):
  written = _write_binary_batches(tmp_path / 'cifar-10-batches-bin')
  x, y = images.load('cifar10', str(tmp_path))
  assert x.shape == (15, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
  np.testing.assert_array_equal(x, np.concatenate([written[f'data_batch_{i}'][0]
                                                   for i in range(1, 6)]))
  np.testing.assert_array_equal(y, np.concatenate([written[f'data_batch_{i}'][1]
                                                   for i in range(1, 6)]))
  assert x[0, 3, 0, 0] == 13 and x[0, 0, 3, 1] == 103 and x[2, 5, 5, 2] == 202
  x_test, y_test = images.load('cifar10', str(tmp_path), split='test')
  np.testing.assert_array_equal(x_test, written['test_batch'][0])
  np.testing.assert_array_equal(y_test, written['test_batch'][1])


def test_binary_batches_are_preferred_to_python_batches(tmp_path):
  marker = tmp_path / 'MARKER'
  _write_crafted_batch(tmp_path / 'cifar-10-batches-py', marker)
  written = _write_binary_batches(tmp_path / 'cifar-10-batches-bin')
  x, _ = images.load('cifar10', str(tmp_path))
  np.testing.assert_array_equal(x[:3], written['data_batch_1'][0])
  assert not marker.exists()


@pytest.mark.parametrize('cut', [1, RECORD - 1, RECORD + 5])
def test_binary_batch_of_partial_records_is_refused(tmp_path, cut):
  folder = tmp_path / 'cifar-10-batches-bin'
  _write_binary_batches(folder)
  content = (folder / 'data_batch_3.bin').read_bytes()
  (folder / 'data_batch_3.bin').write_bytes(content[:len(content) - cut])
  with pytest.raises(images.DataError) as error:
    images.load('cifar10', str(tmp_path))
  message = _one_line_error(error, 'data_batch_3.bin')
  assert str(RECORD) in message and 'cifar-10-binary.tar.gz' in message


def _write_idx(path, magic, array):
  path.write_bytes(np.array([magic, *array.shape], dtype='>i4').tobytes() +
                   array.astype(np.uint8).tobytes())


def _truncated_gzip(path):
  compressed = gzip.compress(path.read_bytes())
  path.unlink()
  (path.parent / (path.name + '.gz')).write_bytes(compressed[:len(compressed) // 2])
  return path.name + '.gz'


def _not_gzip(path):
  content = path.read_bytes()
  path.unlink()
  (path.parent / (path.name + '.gz')).write_bytes(content)  # a plain IDX file named .gz
  return path.name + '.gz'


def _truncated_inside_header(path):
  path.write_bytes(path.read_bytes()[:6])  # inside the 8- or 16-byte header
  return path.name


def _wrong_magic(path):
  content = bytearray(path.read_bytes())
  content[3] ^= 0xff
  path.write_bytes(bytes(content))
  return path.name


@pytest.mark.parametrize('damage', [_truncated_gzip, _not_gzip, _truncated_inside_header,
                                    _wrong_magic])
@pytest.mark.parametrize('damaged', ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'])
def test_damaged_mnist_file_is_named_with_the_fix(tmp_path, damage, damaged):
  _write_idx(tmp_path / 'train-images-idx3-ubyte', 2051, np.zeros((3, 28, 28)))
  _write_idx(tmp_path / 'train-labels-idx1-ubyte', 2049, np.array([1, 2, 3]))
  file_name = damage(tmp_path / damaged)
  with pytest.raises(images.DataError) as error:
    images.load('mnist', str(tmp_path))
  message = _one_line_error(error, file_name)
  assert 'download it again' in message


def test_train_cli_refuses_crafted_cifar_batch_in_one_line(tmp_path):
  marker = tmp_path / 'MARKER'
  _write_crafted_batch(tmp_path / 'data' / 'cifar-10-batches-py', marker)
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, '-m', 'tfganebm.train', '--workdir', str(workdir), '--dataset',
       'cifar10', '--data_dir', str(tmp_path / 'data'), '--nodownload', '--train_steps', '1'],
      capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
  assert result.returncode != 0
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert lines[-1].startswith('error:') and 'data_batch_1' in lines[-1], result.stderr
  assert 'Traceback' not in result.stderr
  assert not marker.exists()
