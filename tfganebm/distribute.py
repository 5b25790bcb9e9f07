"""tf.distribute strategies by name, and who writes files in a multi-worker run.

`--strategy`: default (one device, no distribution), one_device, mirrored (all
local GPUs, or `--cpu_replicas` logical CPUs), multi_worker (TF_CONFIG, see the
README), tpu (`--tpu` address). The batch-size flag is the global batch.
"""

import json
import os

STRATEGIES = ('default', 'one_device', 'mirrored', 'multi_worker', 'tpu')


def make_strategy(name, tpu='', cpu_replicas=1):
  """The tf.distribute strategy called `name`; call it before any other TensorFlow op.

  Args:
    name: one of STRATEGIES.
    tpu: TPU address or name for 'tpu' ('' lets the resolver find a local one).
    cpu_replicas: with 'mirrored' and no GPU, split the CPU into this many logical
      devices (for trying distribution on a laptop and for tests).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if name not in STRATEGIES:
    raise ValueError(f'unknown strategy {name!r}; choose one of {STRATEGIES}')
  gpus = tf.config.list_physical_devices('GPU')
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'one_device':
    return tf.distribute.OneDeviceStrategy('/gpu:0' if gpus else '/cpu:0')
  if name == 'mirrored':
    if not gpus and cpu_replicas > 1:
      cpu = tf.config.list_physical_devices('CPU')[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
      return tf.distribute.MirroredStrategy([f'/cpu:{i}' for i in range(cpu_replicas)])
    return tf.distribute.MirroredStrategy()
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


def task():
  """(task type, task index) from TF_CONFIG; (None, 0) for a single-machine run."""
  config = json.loads(os.environ.get('TF_CONFIG') or '{}')
  current = config.get('task', {})
  return current.get('type'), int(current.get('index', 0))


def is_chief():
  """Whether this process writes figures, metrics, flags.txt and the real checkpoints.

  The chief is the 'chief' task, or worker 0 when the cluster names no chief.
  """
  task_type, index = task()
  if task_type is None or task_type == 'chief':
    return True
  cluster = json.loads(os.environ.get('TF_CONFIG') or '{}').get('cluster', {})
  return task_type == 'worker' and index == 0 and 'chief' not in cluster


def checkpoint_dir(directory):
  """Where this task saves checkpoints: `directory` on the chief, a scratch folder elsewhere.

  tf.distribute needs every worker to save (the save is collective); only the
  chief's copy is kept.
  """
  if is_chief():
    return directory
  task_type, index = task()
  return os.path.join(directory, f'.{task_type}_{index}_scratch')
