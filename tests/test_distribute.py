"""Distribution and fault tolerance: replicas, per-replica buffers, kill -9 and resume."""

import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tfganebm import distribute
from tfganebm import training
from tfganebm import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The checks that change process-wide state, in sections of one script run in two fresh
# processes (not the test's). Each section prints its marker when its checks pass.
#   two_cpu_replicas: the CPU split into two logical devices before TensorFlow initializes
#     (after that, MirroredStrategy() without a GPU takes every logical CPU: the sections
#     below, which need one device, cannot share this process).
#   one_device: the Keras dtype policy (set back after its section), a patch that makes
#     tf.distribute take the CPU for a GPU (undone after its section) and op determinism
#     (process-wide: the last section).
_SECTIONS_SCRIPT = '''
import os, sys, traceback
import keras, numpy as np, tensorflow as tf
from tfganebm import data, distribute, training
from tfganebm import model as model_lib
from tfganebm import workdir as workdir_lib
from tfganebm.model import GanEbm
from tests.conftest import tiny_config
root, group = sys.argv[1:]


def loss_scaling():
  # Two CPU replicas each see half of a global batch; their summed gradients of the scaled
  # per-replica mean loss must move the weights as one device does with the whole batch.
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


def lr_decay_two_replicas():
  # The train step assigns each optimizer's rate on every replica (mnist.cfg decays its
  # rates). 4 steps, the last half decaying: the last step (t = 3) ran at 1/2 of the rate.
  workdir = os.path.join(root, "lr_decay")
  training.train(tiny_config(workdir, strategy="mirrored", cpu_replicas=2, train_steps=4,
                             checkpoint_every=4, lr_decay=0.5, gd_learning_rate=2e-3,
                             energy_learning_rate=1e-3))
  reader = tf.train.load_checkpoint(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
  rates = {name.split("/")[0]: float(reader.get_tensor(name))
           for name in reader.get_variable_to_shape_map() if "learning_rate" in name}
  np.testing.assert_allclose([rates["g_optimizer"], rates["d_optimizer"], rates["e_optimizer"]],
                             [1e-3, 1e-3, 5e-4], rtol=1e-6)


def mixed_precision():
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    model = model_lib.build(tiny_config(mixed_precision=True, jit_compile=False), (2,))
    assert model.generator.dtype_policy.name == "mixed_bfloat16", model.generator.dtype_policy
    assert model.energy.dtype_policy.name == "float32", model.energy.dtype_policy
    x = data.load_points("moons", 256, None, 0)[0].x[:32]
    logs = model.train_step(tf.constant(x))
  finally:  # the later sections build under the default policy
    keras.config.set_dtype_policy("float32")
  # The chains stay float32: values bfloat16 could not hold exactly (G's bf16 output alone
  # would).
  chains = model.replay_buffer.samples.numpy().reshape(-1, 2)[:32]
  rounded = tf.cast(tf.cast(chains, tf.bfloat16), tf.float32).numpy()
  assert np.mean(chains != rounded) > 0.5, np.mean(chains != rounded)
  assert all(np.isfinite(float(v)) for v in logs.values())


def mirrored_on_one_gpu():
  # MirroredStrategy calls a jit-compiled step directly when every device is a GPU, outside
  # the replica context the buffer's writes need. No GPU here: TF is told the CPU is one.
  from tensorflow.python.distribute import mirrored_run, mirrored_strategy
  saved = mirrored_run._is_gpu_device, mirrored_strategy._is_gpu_device
  mirrored_run._is_gpu_device = mirrored_strategy._is_gpu_device = lambda device: True
  try:
    training.train(tiny_config(os.path.join(root, "one_gpu"), strategy="mirrored",
                               train_steps=4, eval_num_samples=16))
  finally:
    mirrored_run._is_gpu_device, mirrored_strategy._is_gpu_device = saved


def deterministic():
  # Two --deterministic runs (op determinism is process-wide, and Keras turns XLA off under
  # it: the last section): every value of their checkpoints the same bit for bit.
  readers = []
  for name in ("a", "b"):
    # Keras' name counters back to zero: the checkpoint's object graph names the layers.
    keras.backend.clear_session()
    workdir = os.path.join(root, "deterministic_" + name)
    training.train(tiny_config(workdir, deterministic=True, train_steps=4, checkpoint_every=2))
    readers.append(tf.train.load_checkpoint(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)))
  a, b = readers
  names = sorted(a.get_variable_to_shape_map())
  assert names == sorted(b.get_variable_to_shape_map())
  for part in ("generator/", "discriminator/", "e_optimizer/", "replay_buffer/"):
    assert any(name.startswith(part) for name in names), part
  for name in names:
    np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name), err_msg=name)


GROUPS = {"two_cpu_replicas": (loss_scaling, lr_decay_two_replicas),
          "one_device": (mixed_precision, mirrored_on_one_gpu, deterministic)}
from tensorflow.python.distribute import mirrored_strategy
failed = False
for section in GROUPS[group]:
  # Each section's strategies take their own collective keys, as TensorFlow's tests do for
  # several MirroredStrategy in one process (the product makes one per process).
  mirrored_strategy.MirroredStrategy._collective_key_base += 100000
  try:
    section()
  except BaseException:  # the next sections still run: one failure does not hide another
    failed = True
    print("FAILED", section.__name__, file=sys.stderr, flush=True)
    traceback.print_exc()
  else:
    print("ok", section.__name__, flush=True)
sys.exit(1 if failed else 0)
'''
_GROUPS = {'two_cpu_replicas': ('loss_scaling', 'lr_decay_two_replicas'),
           'one_device': ('mixed_precision', 'mirrored_on_one_gpu', 'deterministic')}


@pytest.mark.parametrize('group', list(_GROUPS))
def test_replica_updates_lr_decay_mixed_precision_one_gpu_and_determinism(tmp_path, group):
  """Sections of one script, each in the fresh process its process-wide settings need:
  loss_scaling: two CPU replicas' summed gradients of the scaled per-replica mean loss move
    the weights as one device does with the whole batch.
  lr_decay_two_replicas: --lr_decay under two replicas sets each optimizer's rate of the
    checkpointed step.
  mixed_precision: mixed_bfloat16 for G and D keeps E and the chains in float32.
  mirrored_on_one_gpu: MirroredStrategy on one (pretended) GPU trains through the host loop.
  deterministic: two --deterministic runs: every value of their checkpoints the same bit for
    bit: the weights, the optimizers' moments, the replay buffer, BatchNorm's statistics.
    Fails if a draw of training does not follow from --seed (initial weights, the batches'
    order, z, the buffer's choices, the chains' noise). (On a CPU, TF's kernels give the
    same result without op determinism too; what --deterministic adds is checked where a
    GPU runs.)"""
  result = subprocess.run([sys.executable, '-c', _SECTIONS_SCRIPT, str(tmp_path), group],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
  printed = result.stdout.splitlines()
  failed = [name for name in _GROUPS[group] if f'ok {name}' not in printed]
  # TensorFlow's own log lines (I0000..., W0000...) left out: the failures' tracebacks stay.
  stderr = '\n'.join(line for line in result.stderr.splitlines()
                     if not re.match(r'[IW]\d{4} ', line))
  assert result.returncode == 0 and not failed, (
      f'sections failed or did not run: {failed}\n{stderr[-6000:]}')


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
