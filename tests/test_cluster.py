"""What a shared cluster does to a run: a scheduler's SIGTERM, a relative --workdir, one
refusing worker, a full disk."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT
from tests.conftest import free_ports
from tests.conftest import one_line_error
from tests.conftest import run_module
from tests.conftest import tiny_config
from tests.conftest import TINY_FLAGS
from tfganebm import sample
from tfganebm import exporting
from tfganebm import training
from tfganebm import workdir as workdir_lib

# tiny_config's run as flags, without its periods (each test sets its own): the runs this
# file trains in this process (tiny_config) and by the command line (TINY) are the same.
TINY = [f for f in TINY_FLAGS if not f.startswith(('--checkpoint_every', '--log_every'))]


def _one_line(returncode, stderr, *words):
  return one_line_error(subprocess.CompletedProcess((), returncode, '', stderr), *words)


def _train(*args, cwd=ROOT):
  return run_module('tfganebm.train', *args, cwd=cwd)


def _weights(prefix, network='generator'):
  reader = tf.train.load_checkpoint(str(prefix))
  return {name: reader.get_tensor(name) for name in sorted(reader.get_variable_to_shape_map())
          if name.startswith(f'{network}/') and 'OPTIMIZER' not in name}


def _wait_for(path, process, timeout=180):
  deadline = time.time() + timeout
  while time.time() < deadline and not os.path.exists(path):
    assert process.poll() is None, process.communicate()[1][-2000:]
    time.sleep(0.02)
  assert os.path.exists(path), f'{path} did not appear within {timeout} s'


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_and_the_same_command_resumes_exactly(tmp_path):
  flags = [*TINY, '--train_steps=2000', '--checkpoint_every=1000', '--log_every=10']
  workdir = tmp_path / 'run'
  # Started as a scheduler starts it: SIGINT ignored, as a background job of a script.
  process = subprocess.Popen(
      [sys.executable, '-m', 'tfganebm.train', f'--workdir={workdir}', *flags], cwd=ROOT,
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
  index = workdir / 'checkpoints' / 'checkpoint'
  _wait_for(index, process)
  while '"ckpt-1000"' not in index.read_text() and process.poll() is None:
    time.sleep(0.02)
  time.sleep(0.5)  # training goes on past step 1000 (about 300 steps here, of 1000)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=60)
  line = _one_line(process.returncode, stderr, 'stopped by SIGTERM at step',
                   'saved its checkpoint', 'run the same command again')
  assert process.returncode == 128 + signal.SIGTERM
  stopped = workdir_lib.latest_checkpoint(str(workdir))
  step = int(stopped.rsplit('-', 1)[1])
  assert os.path.basename(stopped).startswith('stopped-') and 1000 < step < 2000, line
  assert f'at step {step}' in line
  # The periodic checkpoints are as an uninterrupted run keeps them; the stop's is newer.
  assert workdir_lib.checkpoint_steps(str(workdir)) == [1000]

  result = _train(f'--workdir={workdir}', *flags)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f'resuming {workdir} at step {step}' in result.stderr
  assert not list((workdir / 'checkpoints').glob('stopped-*'))  # the next save removed it
  assert workdir_lib.checkpoint_steps(str(workdir)) == [2000, 1000]

  reference = tmp_path / 'reference'  # the same run uninterrupted, in this process
  training.train(tiny_config(reference, train_steps=2000, checkpoint_every=1000, log_every=10))
  resumed = _weights(workdir / 'checkpoints' / 'ckpt-2000')
  uninterrupted = _weights(reference / 'checkpoints' / 'ckpt-2000')
  assert resumed.keys() == uninterrupted.keys() and resumed
  for name, value in resumed.items():
    np.testing.assert_array_equal(value, uninterrupted[name], err_msg=name)  # bit for bit


def _sample(workdir, out):
  sample.sample_run(str(workdir), str(out), 16, overrides={'langevin_steps': 3})
  return np.load(out / 'samples_langevin.npy')


@pytest.mark.slow
def test_a_relative_workdir_keeps_its_own_weights_wherever_a_command_starts(tmp_path,
                                                                             monkeypatch):
  home, elsewhere = tmp_path / 'home', tmp_path / 'elsewhere'
  home.mkdir()
  elsewhere.mkdir()
  args = [*TINY, '--checkpoint_every=2', '--log_every=2']
  # Steps 1-4 in this process (by the absolute path), then a resume by the relative one
  # from `home`, which writes the index of the latest checkpoints.
  training.train(tiny_config(home / 'run', train_steps=4, checkpoint_every=2, log_every=2))
  result = _train('--workdir=run', *args, '--train_steps=8', cwd=home)  # a resume
  assert result.returncode == 0, result.stderr[-2000:]
  workdir = home / 'run'
  checkpoints = workdir / 'checkpoints'
  assert workdir_lib.checkpoint_steps(str(workdir)) == [8, 6, 4]  # max_to_keep = 3
  state = tf.train.get_checkpoint_state(str(checkpoints))
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
      'ckpt-4', 'ckpt-6', 'ckpt-8']
  with open(checkpoints / 'checkpoint') as f:
    index = f.read()
  assert '/' not in index, index  # bare names, inside the folder
  monkeypatch.chdir(home)
  inside = _sample('run', home / 'inside')

  # An index that names a path out of the workdir (as a relative --workdir used to write it)
  # where a decoy lies (the weights of step 4): the run's own weights are still loaded, by
  # its absolute path from another directory (sample and export run in this process).
  for name in os.listdir(checkpoints):
    if name.startswith('ckpt-4.'):
      shutil.copy(checkpoints / name, tmp_path / name.replace('ckpt-4', 'ckpt-8'))
  decoy = _weights(tmp_path / 'ckpt-8')
  assert any(not np.allclose(v, _weights(checkpoints / 'ckpt-8')[k]) for k, v in decoy.items())
  with open(checkpoints / 'checkpoint', 'w') as f:
    f.write(index.replace('"ckpt-8"', json.dumps(os.path.relpath(tmp_path / 'ckpt-8',
                                                                 checkpoints))))
  monkeypatch.chdir(elsewhere)
  np.testing.assert_array_equal(_sample(workdir, elsewhere / 'samples'), inside)
  exported = elsewhere / 'export'
  exporting.export_run(str(workdir), str(exported))
  import keras  # pylint: disable=g-import-not-at-top
  generator = keras.models.load_model(workdir / 'generator.keras')  # G of step 8, as trained
  z = np.random.default_rng(0).standard_normal((16, generator.input_shape[-1]))
  z = z.astype(np.float32)
  generate = tf.saved_model.load(str(exported / 'saved_model')).signatures['generate']
  np.testing.assert_allclose(generate(z=tf.constant(z))['x'].numpy(), generator(z).numpy(),
                             atol=1e-5)


@pytest.mark.slow
def test_a_refusing_chief_stops_every_worker_within_seconds(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  cluster = [f'localhost:{port}' for port in free_ports(2)]
  with workdir_lib.Lock(str(workdir)):  # another trainer holds the chief's workdir
    started = time.time()
    processes = [subprocess.Popen(
        [sys.executable, '-m', 'tfganebm.train', '--strategy=multi_worker',
         f'--workdir={workdir}', *TINY, '--train_steps=4'], cwd=ROOT,
        env=dict(os.environ, TF_CONFIG=json.dumps({
            'cluster': {'worker': cluster}, 'task': {'type': 'worker', 'index': index}})),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    outputs = []
    for process in processes:
      try:
        outputs.append(process.communicate(timeout=90)[1])
      except subprocess.TimeoutExpired:
        for p in processes:
          p.kill()
        pytest.fail('a worker waited for the refusing chief')
    assert time.time() - started < 60
  chief = _one_line(processes[0].returncode, outputs[0], 'is in use by another')
  worker = _one_line(processes[1].returncode, outputs[1], 'worker 0 refused to start',
                     'is in use by another')
  assert worker.endswith(chief.removeprefix('error: '))
  assert not (workdir / 'checkpoints').exists()


def _small_filesystem(path, size):
  """Mounts a tmpfs of `size` at `path` where this process may (root, Linux); else None."""
  path.mkdir()
  if not sys.platform.startswith('linux') or os.geteuid() != 0 or not shutil.which('mount'):
    return None
  result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                          capture_output=True, check=False)
  return path if result.returncode == 0 else None


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path):
  disk = _small_filesystem(tmp_path / 'disk', '3m')
  if disk is None:
    pytest.skip('cannot mount a small tmpfs here (needs root on Linux); '
                'test_a_failed_save_keeps_the_previous_checkpoint covers it by injection')
  try:
    workdir = disk / 'run'
    args = [*TINY, '--checkpoint_every=2', '--log_every=2', '--image_every=0']
    training.train(tiny_config(workdir, train_steps=2, checkpoint_every=2, log_every=2,
                               image_every=0))  # in this process
    filler = disk / 'filler'
    free = shutil.disk_usage(disk).free
    with open(filler, 'wb') as f:  # leave less room than a checkpoint needs
      f.write(b'\0' * max(free - 4096, 0))
    result = _train(f'--workdir={workdir}', *args, '--train_steps=4')
    line = _one_line(result.returncode, result.stderr, 'cannot save the checkpoint of step 4')
    assert 'No space left on device' in line and 'latest checkpoint (step 2)' in line, line
    latest = workdir_lib.latest_checkpoint(str(workdir))
    assert latest.endswith('ckpt-2') and workdir_lib.checkpoint_steps(str(workdir)) == [2]
    assert _weights(latest)  # readable
    assert not [n for n in os.listdir(workdir / 'checkpoints') if '_temp' in n]
  finally:
    subprocess.run(['umount', str(disk)], check=False)
