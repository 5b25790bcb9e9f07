"""`train(config)`: a whole run in its workdir, resumable from the last checkpoint."""

import dataclasses
import math
import os
import shutil
import sys
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import distribute
from tfganebm import evaluation
from tfganebm import files
from tfganebm import model as model_lib

FLAGS_FILE = 'flags.txt'
CHECKPOINT_DIR = 'checkpoints'


class RunError(ValueError):
  """A problem with the user's input that ends the run with a one-line message."""


class _Periodic(keras.callbacks.Callback):
  """Every `log_every` steps: TensorBoard scalars (window means); every `checkpoint_every`: save."""

  def __init__(self, manager, writer, log_every, checkpoint_every, train_steps):
    super().__init__()
    self.manager, self.writer = manager, writer
    self.log_every, self.checkpoint_every, self.train_steps = log_every, checkpoint_every, train_steps
    self._clock = None

  def on_train_begin(self, logs=None):
    self._clock = (time.perf_counter(), int(self.model.step.numpy()))

  def on_train_batch_end(self, batch, logs=None):
    # Called once per execution of `steps_per_execution` steps, which divides both periods.
    step = int(self.model.step.numpy())
    if step % self.log_every == 0:
      now, before = time.perf_counter(), self._clock
      rate = (step - before[1]) / max(now - before[0], 1e-9)
      self._clock = (now, step)
      with self.writer.as_default(step=step):
        for name, value in logs.items():
          tf.summary.scalar(name, value)
        tf.summary.scalar('steps_per_second', rate)
      if not sys.stdout.isatty():
        logging.info('step %d/%d (%.1f steps/s) %s', step, self.train_steps, rate,
                     ' '.join(f'{k}={float(v):.4g}' for k, v in logs.items()))
      self.model.reset_metrics()  # the next window's means start afresh
    if step % self.checkpoint_every == 0:
      self.manager.save(checkpoint_number=step)


def _check_resume(workdir, config):
  """Refuses a workdir whose saved flags would not fit the requested networks."""
  path = os.path.join(workdir, FLAGS_FILE)
  if not os.path.exists(path):
    return
  try:
    saved = config_lib.Config.from_flagfile(path)
  except (ValueError, TypeError) as e:
    raise RunError(f'cannot resume from {workdir}: {e}') from e
  changed = config_lib.incompatible_fields(saved, config)
  if changed:
    details = ', '.join(f'--{n}: {getattr(saved, n)} -> {getattr(config, n)}' for n in changed)
    raise RunError(f'{workdir} holds a run with other networks ({details}); '
                   'use a new --workdir or the saved values')


def restore(model, workdir, expect_partial=False, checkpoint=None):
  """Restores the latest checkpoint of `workdir` into `model`; returns its path or None.

  Raises:
    An exception of whatever kind reading an unreadable or mismatched checkpoint raises.
  """
  checkpoint = checkpoint or tf.train.Checkpoint(**model.checkpoint_items())
  latest = tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))
  if latest is not None:
    status = checkpoint.restore(latest)
    if expect_partial:
      status.expect_partial()
    else:
      status.assert_existing_objects_matched()
  return latest


def average_weights(model, workdir, count):
  """Gives G and E the mean of their weights over the last `count` checkpoints of `workdir`
  (Polyak averaging, for sampling and export) and sets `model.averaged_steps` to their steps
  (None when fewer than two are kept). Only G and E are read; the rest is left as it is.

  Raises:
    An exception of whatever kind reading an unreadable checkpoint raises.
  """
  networks = dict(generator=model.generator)
  if model.energy is not None:
    networks['energy'] = model.energy
  partial = tf.train.Checkpoint(**networks)
  state = tf.train.get_checkpoint_state(os.path.join(workdir, CHECKPOINT_DIR))
  paths = list(state.all_model_checkpoint_paths)[-count:] if state else []
  snapshots = []
  for path in paths:
    partial.restore(path).expect_partial()
    snapshots.append([network.get_weights() for network in networks.values()])
  if snapshots:
    for i, network in enumerate(networks.values()):
      network.set_weights([np.mean(w, axis=0) for w in zip(*(s[i] for s in snapshots))])
  model.averaged_steps = ([int(path.rsplit('-', 1)[1]) for path in paths]
                          if len(paths) > 1 else None)


def train(config):
  """Trains (or resumes) the run of `config` in `config.workdir`, then evaluates it.

  Returns:
    The metrics written to `workdir/metrics.json`; {} on a worker that is not
    the chief (it writes nothing but its share of the collective checkpoint saves).

  Raises:
    RunError: the workdir holds an incompatible run or an unreadable checkpoint; nothing in it
      has been changed then.
  """
  workdir = config.workdir
  _check_resume(workdir, config)
  try:
    dataset = data.load(config.dataset, config.num_examples, config.data_noise, config.seed,
                        config.data_dir, config.download)
  except ValueError as e:  # images.DataError included: missing or damaged files
    raise RunError(str(e)) from e
  if len(dataset.train) < config.batch_size:
    raise RunError(f'--batch_size={config.batch_size} exceeds the {len(dataset.train)} '
                   'training examples; lower it')
  data_shape = dataset.shape

  strategy = distribute.make_strategy(config.strategy, config.tpu, config.cpu_replicas)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  if config.mixed_precision:
    keras.config.set_dtype_policy('mixed_bfloat16')
  # XLA cannot compile a step whose variables live on several devices.
  jit_compile = config.jit_compile and strategy.num_replicas_in_sync == 1
  model = model_lib.build(dataclasses.replace(config, jit_compile=jit_compile), data_shape,
                          strategy)
  checkpoint = tf.train.Checkpoint(**model.checkpoint_items())
  try:
    if restore(model, workdir, checkpoint=checkpoint):
      logging.info('resuming %s at step %d', workdir, int(model.step.numpy()))
  except Exception as e:  # pylint: disable=broad-except  (damaged files fail in many ways)
    raise RunError(f'cannot resume from the checkpoint in {workdir}: {str(e).splitlines()[0]}; '
                   'it is damaged or was written by another replica count: move it away or '
                   'use a new --workdir') from e
  chief = distribute.is_chief()
  os.makedirs(workdir, exist_ok=True)
  if chief:
    files.write_text(os.path.join(workdir, FLAGS_FILE), config.to_flagfile())
  # CheckpointManager writes the data files first and the `checkpoint` index last, so a
  # crash mid-save leaves the previous checkpoint the latest one.
  manager = tf.train.CheckpointManager(
      checkpoint, distribute.checkpoint_dir(os.path.join(workdir, CHECKPOINT_DIR)),
      max_to_keep=max(3, config.average_checkpoints))

  start = int(model.step.numpy())
  if start < config.train_steps:
    batches = data.batches(dataset.train, config.batch_size, config.seed, start,
                           config.train_steps - start)
    writer = (tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard')) if chief
              else tf.summary.create_noop_writer())
    periodic = _Periodic(manager, writer, config.log_every, config.checkpoint_every,
                         config.train_steps)
    model.steps_per_execution = math.gcd(config.log_every, config.checkpoint_every, 25)
    model.fit(batches, epochs=1, callbacks=[periodic], shuffle=False,
              verbose=1 if sys.stdout.isatty() else 0)
    writer.flush()
    if int(model.step.numpy()) % config.checkpoint_every:
      manager.save(checkpoint_number=int(model.step.numpy()))

  if not chief:
    shutil.rmtree(manager.directory, ignore_errors=True)  # a worker's saves were only collective
    return {}
  if config.average_checkpoints > 1:
    average_weights(model, workdir, config.average_checkpoints)
    logging.info('evaluating G and E averaged over the checkpoints of steps %s',
                 model.averaged_steps)
  result, _, _ = evaluation.evaluate(model, config, workdir, config.eval_num_samples,
                                     config.seed, evaluation.LangevinSettings.inference(config),
                                     step=int(model.step.numpy()), dataset=dataset)
  return result
