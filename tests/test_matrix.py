"""Every strategy and precision end to end, with a shipped config's own flags and periods:
train -> stop after a checkpoint (SIGKILL, or a scheduler's SIGTERM) -> resume -> sample ->
export -> the device runner.

Training runs the command-line tool as a user does, with configs/moons.cfg's networks; the
default strategy's float32 cell with its periods (--log_every=100, --checkpoint_every=1000:
the host loop runs 100 steps per call), the others with a checkpoint every 100 steps (the
same loop, fewer calls). Only the length of the training chains (60 -> 5 steps), the run
length (the default float32 cell ends one call of 100 steps after its checkpoint, the others
100 steps after theirs, when every replica's buffer is full) and the final evaluation are cut,
to keep the 4 cells within CI's time: they set the cost of a run, not the graph's structure.
Sampling, export and the device runner load a workdir the same way whatever trained it
(G and E only, float32, one device), in this process: sampling for every cell, export (no
bfloat16 node in the SavedModel) and the device runner once per precision, for the default
float32 cell and the multi-worker mixed-precision one. Their command-line tools are
tests/test_cli.py's and tests/test_sweep.py's (sample, export) and
tests/test_own_data_runs.py's (the device runner).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import free_ports
from tfganebm import evaluation
from tfganebm import exporting
from tfganebm import runs
from tfganebm import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/moons.cfg as shipped (--log_every=100, --checkpoint_every=1000, its networks and
# chains' step sizes); only the training chains and the final evaluation are shorter.
MOONS = ['--flagfile=configs/moons.cfg', '--train_langevin_steps=5', '--eval_num_samples=200',
         '--langevin_steps=20']
STRATEGIES = {
    'default': [],
    'mirrored_two_replicas': ['--strategy=mirrored', '--cpu_replicas=2'],
    'multi_worker_two_workers': ['--strategy=multi_worker'],
}
PRECISIONS = {'float32': [], 'mixed': ['--mixed_precision']}
# Each strategy but multi-worker in float32, and mixed precision under the default strategy
# and across processes. MirroredStrategy on one device runs the step of two replicas with one
# (test_distribute.py trains it through the host loop); mixed precision on two in-process
# replicas runs the casts of the multi-worker cell on the replica machinery of the float32
# one: their cells added 2 minutes to CI and no code path. Float32 on two replicas is the
# mirrored cell's, so the multi-worker cell runs in mixed precision only: it checks the stop by
# a scheduler's SIGTERM, mixed precision across processes and inference from what it trained
# (a float32 multi-worker cell cost another minute of CI for paths the others run).
CELLS = [('default', 'float32'), ('default', 'mixed'), ('mirrored_two_replicas', 'float32'),
         ('multi_worker_two_workers', 'mixed')]
# (first checkpoint, last step): the shipped period for the default strategy in float32,
# shorter elsewhere. Every replica's buffer (10000 slots) is full at the end: each step writes
# a replica's share of the batch of 128 into its partition, 64 with two replicas, and
# 200 * 64 >= 10000.
PERIODS = {('default', 'float32'): (1000, 1100)}
OTHER_PERIODS = (100, 200)


def _environments(strategy):
  """One environment per process of the run: two TF_CONFIG workers for multi-worker."""
  base = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
  if not strategy.startswith('multi_worker'):
    return [base]
  cluster = [f'localhost:{port}' for port in free_ports(2)]
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


def _read_checkpoint(workdir):
  reader = tf.train.load_checkpoint(str(workdir / 'checkpoints'))
  return lambda name: reader.get_tensor(f'{name}/.ATTRIBUTES/VARIABLE_VALUE')


def _device_samples(model_path, num_samples, steps):
  """G + `steps` Langevin steps drawn by export/sample_litert.py's own sampler."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      'sample_litert', os.path.join(ROOT, 'export', 'sample_litert.py'))
  runner = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(runner)
  with open(os.path.join(os.path.dirname(model_path), 'export.json')) as f:
    info = json.load(f)
  langevin = info['langevin']
  return runner.sample(Interpreter(model_path=model_path), info, num_samples, steps,
                       langevin['step_size'], langevin['noise'], seed=0)


def _kill_after_first_checkpoint(flags, strategy, tmp_path, workdir, first=1000,
                                 how=signal.SIGKILL):
  """Starts training and, once ckpt-`first` is the latest checkpoint, SIGKILLs every process
  (or sends them `how`, a scheduler's SIGTERM); returns the step a resume starts from."""
  processes = _start(flags, _environments(strategy), tmp_path, 'first')
  index = workdir / 'checkpoints' / 'checkpoint'
  # The other workers' own (scratch) saves of the step: a signal that reaches the workers
  # before the slowest has saved stops them all at that step, already saved (the chief's
  # index can be a second ahead of a worker's on a loaded machine).
  indexes = [index, *(workdir / 'checkpoints' / f'.worker_{i}_scratch' / 'checkpoint'
                      for i in range(1, len(processes)))]
  deadline = time.time() + 400
  while (time.time() < deadline and all(p.poll() is None for p in processes)
         and not all(i.exists() and f'ckpt-{first}' in i.read_text() for i in indexes)):
    time.sleep(0.1)
  if how != signal.SIGKILL:
    time.sleep(0.5)  # past the periodic save and the workers' agreement to go on
  for process in processes:
    if process.poll() is None:
      process.send_signal(how)
  codes = [process.wait(timeout=120) for process in processes]
  assert index.exists() and f'ckpt-{first}' in index.read_text(), _log(tmp_path, 'first')[-3000:]
  assert not (workdir / 'metrics.json').exists()  # stopped before the end
  if how == signal.SIGKILL:
    return first
  # Every worker stops at one step, which the chief saved; each says so in one line.
  assert codes == [128 + how] * len(processes), _log(tmp_path, 'first')[-3000:]
  stopped = workdir_lib.latest_checkpoint(str(workdir))
  step = int(stopped.rsplit('-', 1)[1])
  assert os.path.basename(stopped).startswith('stopped-') and step > first, stopped
  for index_ in range(len(processes)):
    log = (tmp_path / f'first_{index_}.log').read_text()
    assert f'error: stopped by SIGTERM at step {step}: saved its checkpoint' in log
  return step


@pytest.mark.slow
@pytest.mark.parametrize('strategy, precision', CELLS, ids=['-'.join(cell) for cell in CELLS])
def test_train_kill_resume_sample_export_device(tmp_path, strategy, precision):
  workdir = tmp_path / 'run'
  first, end = PERIODS.get((strategy, precision), OTHER_PERIODS)
  periods = [] if (strategy, precision) in PERIODS else [f'--checkpoint_every={first}']
  flags = [*MOONS, f'--workdir={workdir}', f'--train_steps={end}', *periods,
           *STRATEGIES[strategy], *PRECISIONS[precision]]
  # The multi-worker cell is stopped as a scheduler stops a job (SIGTERM to every task), the
  # others killed outright.
  how = signal.SIGKILL
  if strategy.startswith('multi_worker'):
    how = signal.SIGTERM  # the workers agree to stop at a period's end: 50 steps apart here
    flags.append('--log_every=50')
  resumed = _kill_after_first_checkpoint(flags, strategy, tmp_path, workdir, first, how)

  processes = _start(flags, _environments(strategy), tmp_path, 'resume')
  for process in processes:
    assert process.wait(timeout=600) == 0, _log(tmp_path, 'resume')[-3000:]
  log = _log(tmp_path, 'resume')
  assert f'resuming {workdir} at step {resumed}' in log and f'step {end}/{end}' in log
  with open(workdir / 'metrics.json') as f:
    metrics = json.load(f)
  assert metrics['step'] == end and 'non_finite_samples' not in metrics
  read = _read_checkpoint(workdir)
  assert int(read('step')) == end
  replicas = 2 if strategy.endswith('two_replicas') or strategy.startswith('multi') else 1
  buffer = read('replay_buffer/samples')
  assert buffer.shape == (replicas, 10000, 2)  # one partition per replica
  np.testing.assert_array_equal(read('replay_buffer/size'), [10000] * replicas)  # all filled
  if replicas == 2:
    assert not np.allclose(buffer[0], buffer[1])  # each replica refills its own chains
  assert [p.name for p in (workdir / 'checkpoints').iterdir()
          if p.name.startswith('.')] == []  # a worker's scratch saves are gone

  if strategy.startswith('mirrored_two') and precision == 'float32':  # one replica, two partitions
    result = _run('-m', 'tfganebm.train', *MOONS, f'--workdir={workdir}',
                  f'--train_steps={end + 100}')
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert result.returncode != 0 and len(errors) == 1 and 'replica count' in errors[0]
  # The export reads what sampling reads: checked once per precision, float32 under the
  # default strategy and mixed precision (no bfloat16 node exported) across workers.
  _inference_in_process(workdir, tmp_path, export=(strategy, precision) in (
      ('default', 'float32'), ('multi_worker_two_workers', 'mixed')))


def _inference_in_process(workdir, tmp_path, export=True):
  """G and E only, float32, one device, whatever trained them."""
  model, config = runs.load_run(str(workdir), {'langevin_steps': 20})
  data_shape = model.data_shape
  _, x_gen, x_langevin = evaluation.evaluate(model, config, str(tmp_path / 'samples'), 128, 0,
                                             refuse_non_finite=True)
  assert x_langevin.shape == (128, 2) and not np.allclose(x_gen, x_langevin)
  if not export:
    return
  exporting.export(model, config, data_shape, str(tmp_path / 'export'), workdir=str(workdir))
  assert not _bfloat16_nodes(tmp_path / 'export' / 'saved_model' / 'saved_model.pb')
  x_device_gen, x_device = _device_samples(str(tmp_path / 'export' / 'model.tflite'), 64, 10)
  assert x_device.shape == (64, 2) and np.all(np.isfinite(x_device))
  assert not np.allclose(x_device_gen, x_device)
