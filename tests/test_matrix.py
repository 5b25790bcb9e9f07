"""Every strategy and precision end to end, with a shipped config's own flags and periods:
train -> SIGKILL after a checkpoint -> resume -> sample -> export -> the device runner."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/moons.cfg as shipped (--log_every=100, --checkpoint_every=1000, its networks and
# chains); only the final evaluation is smaller.
MOONS = ['--flagfile=configs/moons.cfg', '--eval_num_samples=200', '--langevin_steps=50']
STRATEGIES = {
    'default': [],
    'mirrored_one_device': ['--strategy=mirrored'],
    'mirrored_two_replicas': ['--strategy=mirrored', '--cpu_replicas=2'],
    'multi_worker_two_workers': ['--strategy=multi_worker'],
}
PRECISIONS = {'float32': [], 'mixed': ['--mixed_precision']}


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _environments(strategy):
  """One environment per process of the run: two TF_CONFIG workers for multi-worker."""
  base = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
  if not strategy.startswith('multi_worker'):
    return [base]
  cluster = [f'localhost:{port}' for port in _free_ports(2)]
  return [dict(base, TF_CONFIG=json.dumps({'cluster': {'worker': cluster},
                                           'task': {'type': 'worker', 'index': index}}))
          for index in (0, 1)]


def _start(flags, environments, log_dir, name):
  processes = []
  for index, env in enumerate(environments):
    log = open(log_dir / f'{name}_{index}.log', 'w')  # pylint: disable=consider-using-with
    processes.append(subprocess.Popen([sys.executable, '-m', 'tfganebm.train', *flags], cwd=ROOT,
                                      env=env, stdout=log, stderr=subprocess.STDOUT))
  return processes


def _log(log_dir, name):
  return (log_dir / f'{name}_0.log').read_text()


def _run(*args):
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                        timeout=600, check=False)


def _bfloat16_nodes(path):
  """Names of the nodes of a SavedModel (its functions included) that carry a bfloat16 type."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  saved_model = saved_model_pb2.SavedModel()
  saved_model.ParseFromString(path.read_bytes())
  graph = saved_model.meta_graphs[0].graph_def
  bfloat16 = tf.bfloat16.as_datatype_enum
  nodes = [*graph.node, *(node for function in graph.library.function
                          for node in function.node_def)]
  return [node.name for node in nodes
          if any(a.type == bfloat16 or bfloat16 in a.list.type for a in node.attr.values())]


@pytest.mark.slow
@pytest.mark.parametrize('precision', PRECISIONS)
@pytest.mark.parametrize('strategy', STRATEGIES)
def test_train_kill_resume_sample_export_device(tmp_path, strategy, precision):
  workdir = tmp_path / 'run'
  flags = [*MOONS, f'--workdir={workdir}', '--train_steps=1200', *STRATEGIES[strategy],
           *PRECISIONS[precision]]
  environments = _environments(strategy)

  # Killed (as by a preemption) once the step-1000 checkpoint is the latest.
  processes = _start(flags, environments, tmp_path, 'first')
  index = workdir / 'checkpoints' / 'checkpoint'
  deadline = time.time() + 400
  while (time.time() < deadline and all(p.poll() is None for p in processes)
         and not (index.exists() and 'ckpt-1000' in index.read_text())):
    time.sleep(0.2)
  for process in processes:
    if process.poll() is None:
      process.send_signal(signal.SIGKILL)
    process.wait()
  assert 'ckpt-1000' in index.read_text(), _log(tmp_path, 'first')[-3000:]
  assert not (workdir / 'metrics.json').exists()  # it was killed before the end

  processes = _start(flags, _environments(strategy), tmp_path, 'resume')
  for process in processes:
    assert process.wait(timeout=600) == 0, _log(tmp_path, 'resume')[-3000:]
  log = _log(tmp_path, 'resume')
  assert f'resuming {workdir} at step 1000' in log
  assert 'step 1200/1200' in log
  with open(workdir / 'metrics.json') as f:
    metrics = json.load(f)
  assert metrics['step'] == 1200 and 'non_finite_samples' not in metrics

  result = _run('-m', 'tfganebm.sample', f'--workdir={workdir}', f'--out={tmp_path}/samples',
                '--num_samples=128', '--langevin_steps=20')
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ('samples_generator.npy', 'samples_langevin.npy'):
    x = np.load(tmp_path / 'samples' / name)
    assert x.shape == (128, 2) and np.all(np.isfinite(x))

  result = _run('-m', 'tfganebm.export', f'--workdir={workdir}', f'--out={tmp_path}/export')
  assert result.returncode == 0, result.stderr[-3000:]
  assert not _bfloat16_nodes(tmp_path / 'export' / 'saved_model' / 'saved_model.pb')

  result = _run('export/sample_litert.py', str(tmp_path / 'export' / 'model.tflite'),
                '--num_samples=64', '--langevin_steps=10', f'--out={tmp_path}/device')
  assert result.returncode == 0, result.stderr[-3000:]
  x = np.load(tmp_path / 'device' / 'samples.npy')
  assert x.shape == (64, 2) and np.all(np.isfinite(x))
