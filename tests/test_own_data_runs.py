"""A user's data through every command: train (killed and resumed), sample, export, device."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, config_from_flags, run_module
from tfganebm import exporting
from tfganebm import sample as sample_lib
from tfganebm import training
from tfganebm import workdir as workdir_lib

# A small run of configs/images.cfg's shape: DCGAN G and D and the conv E, widths scaled to
# the data (the empty --*_units), without XLA.
IMAGE_FLAGS = [f'--flagfile={ROOT}/configs/images.cfg', '--generator_units=',
               '--discriminator_units=', '--energy_units=', '--batch_size=16',
               '--train_langevin_steps=2', '--langevin_steps=3', '--eval_num_samples=64',
               '--buffer_capacity=64', '--checkpoint_every=20', '--log_every=10',
               '--image_every=0', '--average_checkpoints=1', '--latent_dim=8']


def _png(path, image):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(image[..., 0]).save(path)


def _blobs_folder(root, count=96, size=16):
  """Grey images of one bright square each, in no class folders: unlabelled data."""
  rng = np.random.default_rng(0)
  for i in range(count):
    image = np.zeros((size, size, 1), np.uint8)
    row, col = rng.integers(0, size - 6, 2)
    image[row:row + 6, col:col + 6] = 255
    _png(os.path.join(root, f'{i:03d}.png'), image)
  return root


def _generator_weights(workdir):
  reader = tf.train.load_checkpoint(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if n.startswith('generator/')}


def _train_command(dataset, workdir, *extra):
  return [sys.executable, '-m', 'tfganebm.train', *IMAGE_FLAGS, f'--dataset={dataset}',
          f'--workdir={workdir}', *extra]


@pytest.mark.slow
def test_folder_run_killed_after_a_checkpoint_resumes_to_the_same_generator(tmp_path):
  folder = _blobs_folder(str(tmp_path / 'blobs'))
  # Checkpoints at 20 and 40: the kill below comes after the first, mid-run.
  steps = '--train_steps=40'
  # The reference, trained straight through in this process from the same flags.
  straight = tmp_path / 'straight'
  training.train(config_from_flags(tmp_path, *_train_command(f'folder:{folder}', straight, steps)[3:]))
  # The command, SIGKILLed once a checkpoint is saved, then run again.
  killed = tmp_path / 'killed'
  process = subprocess.Popen(_train_command(f'folder:{folder}', killed, steps), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  index = killed / 'checkpoints' / 'checkpoint'
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None and not index.exists():
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert index.exists() and not (killed / 'metrics.json').exists(), 'not killed mid-run'
  result = subprocess.run(_train_command(f'folder:{folder}', killed, steps), cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'resuming' in result.stderr
  a, b = _generator_weights(straight), _generator_weights(killed)
  assert a.keys() == b.keys() and a
  for name in a:
    np.testing.assert_allclose(a[name], b[name], atol=1e-4, err_msg=name)

  # What the run recorded, and the metric of unlabelled images.
  config = json.loads((straight / 'config.json').read_text())
  assert config['data']['example_shape'] == [16, 16, 1]
  assert config['networks']['generator_units'] == [64, 32]
  metrics = json.loads((straight / 'metrics.json').read_text())
  assert metrics['feature_space'] == 'laplacian_pyramid_swd'
  assert metrics['held_out']['source'] == 'folder'
  for part in ('real_data', 'generator', 'generator_langevin'):
    assert metrics[part]['swd'] > 0 and metrics[part]['swd_level_sizes'] == [16]

  # Sample with a quality curve, export (in this process: `python -m tfganebm.sample
  # --workdir=W --num_samples=32 --out=O --langevin_steps=0,2,3`, `tfganebm.export`), and run
  # the export on the device runner.
  out = tmp_path / 'samples'
  sample_lib.sample_run(str(straight), str(out), 32, overrides={'langevin_steps': 3},
                        steps_list=[0, 2, 3])
  assert np.load(out / 'samples_langevin.npy').shape == (32, 16, 16, 1)
  curve = json.loads((out / 'quality_vs_steps.json').read_text())
  assert [row['steps'] for row in curve['rows']] == [0, 2, 3] and 'swd' in curve['rows'][0]
  exported = tmp_path / 'export'
  exporting.export_run(str(straight), str(exported))
  device = tmp_path / 'device'
  result = subprocess.run([sys.executable, os.path.join('export', 'sample_litert.py'),
                           str(exported / 'model.tflite'), '--num_samples=8',
                           f'--out={device}'], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  samples = np.load(device / 'samples.npy')
  assert samples.shape == (8, 16, 16, 1) and np.all(np.abs(samples) <= 1)

  # The run's own G, refined as a user's generator on the same folder (`python -m
  # tfganebm.refine` with these flags: train's main, in this process); both on one page.
  refined = tmp_path / 'refined'
  training.train(config_from_flags(tmp_path, *IMAGE_FLAGS, f'--dataset=folder:{folder}',
                         f'--generator={straight / "generator.keras"}', f'--workdir={refined}',
                         '--train_steps=20'))
  assert json.loads((refined / 'metrics.json').read_text())['generator']['swd'] > 0
  page = tmp_path / 'page.html'
  result = run_module('tfganebm.report', str(straight), str(refined), f'--out={page}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'pyramid SWD' in page.read_text()


@pytest.mark.slow
def test_points_in_five_dimensions_train_sample_and_export(tmp_path):
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(4, 5)) * 3
  draw = lambda n: centres[rng.integers(4, size=n)] + rng.normal(size=(n, 5))
  np.savez(tmp_path / 'points.npz', x=draw(512), x_test=draw(256))
  workdir = tmp_path / 'run'
  # `python -m tfganebm.train` with these flags, in this process (tests/test_cli.py parses
  # every configs/*.cfg, points.cfg included, with the command's flags).
  training.train(config_from_flags(tmp_path, f'--flagfile={ROOT}/configs/points.cfg',
                         f'--dataset=npy:{tmp_path / "points.npz"}', f'--workdir={workdir}',
                         '--train_steps=40', '--batch_size=32', '--generator_units=16,16',
                         '--discriminator_units=16,16', '--energy_units=16,16',
                         '--train_langevin_steps=3', '--langevin_steps=5',
                         '--eval_num_samples=64', '--buffer_capacity=64',
                         '--checkpoint_every=20', '--nojit_compile'))
  metrics = json.loads((workdir / 'metrics.json').read_text())
  assert metrics['feature_space'] == 'points (5-D)'
  assert metrics['generator']['sliced_wasserstein'] > metrics['real_data']['sliced_wasserstein']
  assert 'energy' not in metrics  # no 2D grid for the density
  assert (workdir / 'samples.png').exists()
  exported = tmp_path / 'export'
  exporting.export_run(str(workdir), str(exported))
  assert json.loads((exported / 'export.json').read_text())['data_shape'] == [5]
