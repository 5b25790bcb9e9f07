"""Inputs and events that used to end in a traceback: each is one `error:` line with the fix,
exit status != 0, and the files on disk as they were."""

import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.conftest import one_line_error
from tests.conftest import run_module
from tests.conftest import TINY_FLAGS
from tests.conftest import tiny_config
from tfganebm import training


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny run trained 2 steps (in this process); copy it to change it."""
  workdir = tmp_path_factory.mktemp('trained') / 'run'
  training.train(tiny_config(workdir, train_steps=2))
  return workdir


def _copy(trained, tmp_path):
  shutil.copytree(trained, tmp_path / 'run')
  return tmp_path / 'run'


def test_a_binary_flagfile(tmp_path):
  flagfile = tmp_path / 'moons.cfg'
  flagfile.write_bytes(b'\x89PNG\r\n\x1a\n\x00\xff\xfe\x80')
  result = run_module('tfganebm.train', f'--flagfile={flagfile}', f'--workdir={tmp_path}/run')
  one_line_error(result, 'moons.cfg', 'not a text file')
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('name, content, says', [
    ('flags.txt', b'--dataset=moons\n\xff\xfe\x00garbage', 'flags.txt'),
    ('checkpoints/architecture.json', b'{"generator_units": [8,', 'architecture.json'),
])
def test_a_damaged_record_on_resume(trained, tmp_path, name, content, says):
  workdir = _copy(trained, tmp_path)
  (workdir / name).write_bytes(content)
  before = sorted(os.listdir(workdir / 'checkpoints'))
  result = run_module('tfganebm.train', f'--workdir={workdir}', *TINY_FLAGS, '--train_steps=4')
  one_line_error(result, says, 'restore it')
  assert (workdir / name).read_bytes() == content
  assert sorted(os.listdir(workdir / 'checkpoints')) == before


def _idx(path, array, magic):
  with open(path, 'wb') as f:
    f.write(struct.pack('>I', magic) + b''.join(struct.pack('>I', d) for d in array.shape))
    f.write(array.astype(np.uint8).tobytes())


def test_mnist_labels_out_of_range(tmp_path):
  data_dir = tmp_path / 'mnist'
  data_dir.mkdir()
  rng = np.random.default_rng(0)
  for prefix, n in (('train', 96), ('t10k', 32)):
    _idx(data_dir / f'{prefix}-images-idx3-ubyte', rng.integers(0, 256, (n, 28, 28)), 2051)
    labels = rng.integers(0, 10, n)
    labels[5] = 12
    _idx(data_dir / f'{prefix}-labels-idx1-ubyte', labels, 2049)
  result = run_module('tfganebm.train', '--dataset=mnist', f'--data_dir={data_dir}',
                f'--workdir={tmp_path}/run', '--batch_size=32', '--train_steps=2')
  one_line_error(result, 'label 12', 'labels 0-9')
  assert not (tmp_path / 'run').exists()


def _read_only_folder(path):
  """A read-only tmpfs at `path` where this process may mount one (root, Linux), else None
  (root writes through file permissions)."""
  path.mkdir()
  if not sys.platform.startswith('linux') or os.geteuid() != 0 or not shutil.which('mount'):
    return None
  result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', str(path)],
                          capture_output=True, check=False)
  return path if result.returncode == 0 else None


@pytest.mark.slow
def test_report_out_in_a_read_only_folder(trained, tmp_path):
  folder = _read_only_folder(tmp_path / 'ro')
  if folder is None:
    pytest.skip('cannot mount a read-only tmpfs here (needs root on Linux)')
  try:
    result = run_module('tfganebm.report', trained, f'--out={folder}/results.html')
    one_line_error(result, 'results.html', 'Read-only file system', 'choose another folder')
  finally:
    subprocess.run(['umount', str(folder)], check=False)


@pytest.mark.slow
def test_ctrl_c_during_sample(trained, tmp_path):
  out = tmp_path / 'samples'
  process = subprocess.Popen(
      [sys.executable, '-m', 'tfganebm.sample', f'--workdir={trained}', f'--out={out}',
       '--num_samples=64', '--langevin_steps=400000'], cwd=ROOT, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True)
  time.sleep(5)  # in TensorFlow's import or the chains: both stop in one line
  assert process.poll() is None
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=60)
  one_line_error(subprocess.CompletedProcess(process.args, process.returncode, '', stderr),
            'stopped by SIGINT', 'nothing half-written')
  assert process.returncode == 130
  assert not out.exists() or not os.listdir(out)
