"""Distribution and fault tolerance: replicas, per-replica buffers, kill -9 and resume."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tfganebm import distribute
from tfganebm import training
from tfganebm import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--nojit_compile', '--num_examples=256', '--batch_size=32', '--generator_units=8,8',
        '--discriminator_units=8,8', '--energy_units=8,8', '--train_langevin_steps=3',
        '--langevin_steps=5', '--eval_num_samples=64', '--buffer_capacity=64', '--log_every=2']


def _python(code):
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                        timeout=600, check=False)


def _train(workdir, *flags):
  return subprocess.run([sys.executable, '-m', 'tfganebm.train', f'--workdir={workdir}', *TINY,
                         *flags], capture_output=True, text=True, cwd=ROOT, timeout=600,
                        check=False)


def test_loss_scaling_makes_the_replica_update_equal_the_global_batch_update():
  # Two CPU replicas each see half of a global batch; their summed gradients of the scaled
  # per-replica mean loss must move the weights as one device does with the whole batch.
  result = _python('''
import numpy as np, tensorflow as tf, keras
from tfganebm import distribute
from tfganebm.model import GanEbm
strategy = distribute.make_strategy("mirrored", cpu_replicas=2)
x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
def run(strategy, data):
  with strategy.scope():
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    opt = keras.optimizers.SGD(0.1)
    opt.build(net.trainable_variables)
  @tf.function
  def step(batch):
    def replica_step(batch):
      with tf.GradientTape() as tape:
        loss = GanEbm._per_replica(tf.reduce_mean(tf.square(net(batch) - 1.0)))
      grads = tape.gradient(loss, net.trainable_variables)
      opt.apply_gradients(zip(grads, net.trainable_variables))
    strategy.run(replica_step, args=(batch,))
  for batch in data:
    step(batch)
  return [v.numpy() for v in net.trainable_variables]
dataset = tf.data.Dataset.from_tensor_slices(x).batch(8)
mirrored = run(strategy, strategy.experimental_distribute_dataset(dataset))
single = run(tf.distribute.get_strategy(), dataset)
assert strategy.num_replicas_in_sync == 2
for a, b in zip(mirrored, single):
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
print("ok")
''')
  assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr[-2000:]


def test_mixed_precision_keeps_energy_and_chains_in_float32():
  result = _python('''
import keras, numpy as np, tensorflow as tf
from tfganebm import model as model_lib, data
from tests.conftest import tiny_config
keras.config.set_dtype_policy("mixed_bfloat16")
model = model_lib.build(tiny_config(mixed_precision=True, jit_compile=False), (2,))
assert model.generator.dtype_policy.name == "mixed_bfloat16", model.generator.dtype_policy
assert model.energy.dtype_policy.name == "float32", model.energy.dtype_policy
x = data.load_points("moons", 256, None, 0)[0].x[:32]
logs = model.train_step(tf.constant(x))
# The chains stay float32: values bfloat16 could not hold exactly (G's bf16 output alone would).
chains = model.replay_buffer.samples.numpy().reshape(-1, 2)[:32]
rounded = tf.cast(tf.cast(chains, tf.bfloat16), tf.float32).numpy()
assert np.mean(chains != rounded) > 0.5, np.mean(chains != rounded)
assert all(np.isfinite(float(v)) for v in logs.values())
print("ok")
''')
  assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr[-2000:]


def _tf_config(task_type, index, cluster):
  return json.dumps({'cluster': cluster, 'task': {'type': task_type, 'index': index}})


def test_the_chief_is_the_chief_task_else_worker_0(monkeypatch):
  """Fails if a cluster with a 'chief' task also had its worker 0 write (two writers of
  one workdir), or a cluster of workers had none."""
  monkeypatch.delenv('TF_CONFIG', raising=False)
  assert distribute.is_chief()  # no cluster: the one process
  workers = {'worker': ['a:1', 'b:2']}
  with_chief = {'chief': ['c:0'], 'worker': ['a:1']}
  for task, cluster, chief in ((('worker', 0), workers, True), (('worker', 1), workers, False),
                               (('chief', 0), with_chief, True),
                               (('worker', 0), with_chief, False)):
    monkeypatch.setenv('TF_CONFIG', _tf_config(*task, cluster))
    assert distribute.is_chief() == chief, (task, cluster)


def _files(folder):
  """{path relative to `folder`: contents} of every file and folder (None) under it."""
  found = {}
  for directory, folders, names in os.walk(folder):
    for name in folders:
      found[os.path.relpath(os.path.join(directory, name), folder)] = None
    for name in names:
      with open(os.path.join(directory, name), 'rb') as f:
        found[os.path.relpath(os.path.join(directory, name), folder)] = f.read()
  return found


def test_a_worker_that_is_not_the_chief_leaves_the_workdir_as_the_chief_wrote_it(
    tmp_path, monkeypatch):
  """Worker 1 of two (TF_CONFIG; under the default strategy, so it runs alone here: who
  writes is training's decision, taken from `distribute.is_chief`) resumes the chief's run
  in the shared workdir at step 2 and trains to step 4. It saves its share of the collective
  checkpoint into its scratch folder, removes that, and leaves every file of the workdir as
  the chief wrote it. Fails if any write of a run (flags.txt, config.json, the architecture
  record, metrics.json, figures, TensorBoard events, generator.keras, the lock, a repaired
  checkpoint index) did not ask whether this task is the chief, or if the worker saved
  where the chief's checkpoints are."""
  workdir = tmp_path / 'run'
  monkeypatch.delenv('TF_CONFIG', raising=False)
  training.train(tiny_config(workdir, train_steps=2, eval_num_samples=16))  # the chief's run
  before = _files(workdir)
  saves = []
  save = tf.train.CheckpointManager.save
  monkeypatch.setattr(tf.train.CheckpointManager, 'save',
                      lambda self, **kwargs: saves.append(self.directory) or save(self, **kwargs))
  monkeypatch.setenv('TF_CONFIG', _tf_config('worker', 1, {'worker': ['a:1', 'b:2']}))
  assert training.train(tiny_config(workdir, train_steps=4)) == {}
  assert saves == [str(workdir / workdir_lib.CHECKPOINT_DIR / '.worker_1_scratch')]  # step 4
  assert _files(workdir) == before


@pytest.mark.slow
def test_deterministic_runs_are_bit_identical(tmp_path):
  """Two --deterministic runs: every value of their checkpoints the same bit for bit: the
  weights, the optimizers' moments, the replay buffer, BatchNorm's statistics. Fails if a
  draw of training does not follow from --seed (initial weights, the batches' order, z, the
  buffer's choices, the chains' noise). (On a CPU, TF's kernels give the same result without
  op determinism too; what --deterministic adds is checked where a GPU runs.)"""
  # In subprocesses: op determinism is process-wide (and Keras turns XLA off under it).
  for name in ('a', 'b'):
    result = _train(tmp_path / name, '--deterministic', '--train_steps=4', '--checkpoint_every=2')
    assert result.returncode == 0, result.stderr[-2000:]
  a, b = (tf.train.load_checkpoint(os.path.join(tmp_path, name, workdir_lib.CHECKPOINT_DIR))
          for name in ('a', 'b'))
  names = sorted(a.get_variable_to_shape_map())
  assert names == sorted(b.get_variable_to_shape_map())
  for part in ('generator/', 'discriminator/', 'e_optimizer/', 'replay_buffer/'):
    assert any(name.startswith(part) for name in names), part
  for name in names:
    np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name), err_msg=name)


def test_mirrored_on_one_gpu_trains_through_the_host_loop():
  # MirroredStrategy calls a jit-compiled step directly when every device is a GPU, outside
  # the replica context the buffer's writes need. No GPU here: TF is told the CPU is one.
  result = _python('''
from tensorflow.python.distribute import mirrored_run, mirrored_strategy
mirrored_run._is_gpu_device = mirrored_strategy._is_gpu_device = lambda device: True
import tempfile
from tfganebm import training
from tfganebm import workdir as workdir_lib
from tests.conftest import tiny_config
workdir = tempfile.mkdtemp()
training.train(tiny_config(workdir, strategy="mirrored", train_steps=4, eval_num_samples=16))
print("ok")
''')
  assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr[-2000:]


def test_lr_decay_under_two_replicas_sets_the_rate_of_the_checkpointed_step(tmp_path):
  # The train step assigns each optimizer's rate on every replica (mnist.cfg decays its rates).
  # 4 steps, the last half decaying: the last step (t = 3) ran at 1/2 of the rate.
  result = _train(tmp_path, '--strategy=mirrored', '--cpu_replicas=2', '--train_steps=4',
                  '--checkpoint_every=4', '--lr_decay=0.5', '--gd_learning_rate=2e-3',
                  '--energy_learning_rate=1e-3')
  assert result.returncode == 0, result.stderr[-2000:]
  reader = tf.train.load_checkpoint(os.path.join(tmp_path, workdir_lib.CHECKPOINT_DIR))
  rates = {name.split('/')[0]: float(reader.get_tensor(name))
           for name in reader.get_variable_to_shape_map() if 'learning_rate' in name}
  np.testing.assert_allclose([rates['g_optimizer'], rates['d_optimizer'], rates['e_optimizer']],
                             [1e-3, 1e-3, 5e-4], rtol=1e-6)
