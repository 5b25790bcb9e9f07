"""tf.distribute strategies by name, and who writes files in a multi-worker run.

`--strategy`: default (one device, no distribution), one_device, mirrored (all
local GPUs, or `--cpu_replicas` logical CPUs), multi_worker (one process per host, each
with TF_CONFIG naming the cluster and its task), tpu (`--tpu` address). The batch-size flag
is the global batch.
"""

import json
import os

import numpy as np

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


def _cluster():
  return json.loads(os.environ.get('TF_CONFIG') or '{}').get('cluster', {})


def is_chief():
  """Whether this process writes figures, metrics, flags.txt and the real checkpoints.

  The chief is the 'chief' task, or worker 0 when the cluster names no chief.
  """
  task_type, index = task()
  if task_type is None or task_type == 'chief':
    return True
  return task_type == 'worker' and index == 0 and 'chief' not in _cluster()


def checkpoint_dir(directory):
  """Where this task saves checkpoints: `directory` on the chief, a scratch folder elsewhere.

  tf.distribute needs every worker to save (the save is collective); only the
  chief's copy is kept.
  """
  if is_chief():
    return directory
  task_type, index = task()
  return os.path.join(directory, f'.{task_type}_{index}_scratch')


def num_tasks():
  """How many processes train together (TF_CONFIG's chief and workers); 1 without a cluster."""
  cluster = _cluster()
  return max(1, len(cluster.get('chief', [])) + len(cluster.get('worker', [])))


def is_multi_worker(strategy_name):
  return strategy_name == 'multi_worker' and num_tasks() > 1


def _rank():
  """This task's place among the tasks: the chief first, then the workers."""
  task_type, index = task()
  chiefs = len(_cluster().get('chief', []))
  return index if task_type == 'chief' else chiefs + index


def _task_name(rank):
  chiefs = len(_cluster().get('chief', []))
  return 'the chief' if rank < chiefs else f'worker {rank - chiefs}'


MESSAGE_BYTES = 512


def roll_call(strategy, problem, timeout=60.0):
  """Whether every task of a multi-worker run can start: one all-reduce, before any other
  collective, of each task's refusal (`problem`: its one-line reason, or None).

  A task that refuses to start (its workdir is locked, its checkpoint does not fit ...) still
  joins this call, so that the others learn it within seconds instead of waiting in their
  first collective for ever; a task that does not answer within `timeout` seconds counts as
  a refusal.

  Returns:
    None when all can start, else the line of the first task that refused, naming it when
    it is another task.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rank = _rank()
  codes = np.zeros([num_tasks(), MESSAGE_BYTES], np.int32)
  if problem:
    encoded = problem.encode('utf-8')[:MESSAGE_BYTES]
    codes[rank, :len(encoded)] = np.frombuffer(encoded, np.uint8)
  options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
  # A sum over the replicas (each task's rows are zero but its own): every task has as many.
  local = max(1, strategy.num_replicas_in_sync // num_tasks())

  @tf.function(autograph=False)
  def gather():
    def exchange():
      return tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, tf.constant(codes, tf.float32), options=options)
    return strategy.experimental_local_results(strategy.run(exchange))[0]

  try:
    gathered = np.rint(gather().numpy() / local).astype(np.int32)
  except tf.errors.OpError as e:
    return (f'the {num_tasks()} tasks of TF_CONFIG did not all answer within {timeout:g} s '
            f'({(str(e).splitlines() or [type(e).__name__])[0][:200]}); start every task of the '
            'cluster, each with its own TF_CONFIG task')
  for other, row in enumerate(gathered):
    if row.any():
      text = bytes(row[row > 0].astype(np.uint8)).decode('utf-8', 'replace')
      return text if other == rank else f'{_task_name(other)} refused to start: {text}'
  return None
