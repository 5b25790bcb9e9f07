"""The host loop of training: a compiled multi-step call of the train step under any
strategy, logging, TensorBoard, the periodic checkpoints and the stop signals between
calls."""

import os
import time

from absl import logging
import keras
import tensorflow as tf

from tfganebm import data
from tfganebm import saving
from tfganebm import signals
from tfganebm.errors import Diverged
from tfganebm.errors import Interrupted


def make_multi_step(model, strategy, jit_compile):
  """A compiled `run(iterator, num_steps) -> (logs, finite)` that runs `num_steps` train
  steps in one call (the multi-step host loop), under any strategy.

  Keras' own multi-step loop (`fit` with `steps_per_execution` > 1) puts each step
  in a `tf.cond`, to stop when the data runs out mid-execution. Under
  MirroredStrategy and MultiWorkerMirroredStrategy, the replica threads then reach
  the optimizers' cross-replica `merge_call` (and the buffer's `all_gather`) inside
  a cond branch, which the traced graph cannot express ("You must feed a value for
  placeholder tensor ... while/cond/Placeholder", keras-team/keras#19246). A run knows
  how many batches each call takes, so this loop needs no cond: TF's documented
  custom-loop pattern, `for _ in tf.range(n): strategy.run(step, (next(iterator),))`,
  written as the while loop it becomes.

  Returns, for logging: the trackers' means since their last reset (reduced over
  replicas), and {quantity: bool} telling which of the losses and of G's, D's and E's
  weights are all finite.
  """
  # The step's Python control flow is static (loops over constants, branches on settings);
  # without AutoGraph's source transformation it traces in half the time.
  step = tf.function(model.train_step, jit_compile=jit_compile, autograph=False)
  networks = dict(generator=model.generator, discriminator=model.discriminator)
  if model.energy is not None:
    networks['energy'] = model.energy

  @tf.function(autograph=False)
  def run(iterator, num_steps):
    def body(i):
      strategy.run(step, args=(next(iterator),))
      return (i + 1,)
    tf.while_loop(lambda i: i < num_steps, body, (tf.constant(0, num_steps.dtype),))
    logs = {name: tracker.result() for name, tracker in model.trackers.items()}
    finite = {name: tf.reduce_all(tf.math.is_finite(value)) for name, value in logs.items()}
    for name, network in networks.items():
      finite[f'{name} weights'] = tf.reduce_all(
          [tf.reduce_all(tf.math.is_finite(v)) for v in network.trainable_variables])
    return logs, finite

  return run


def _boundaries(start, end, *periods):
  """The steps in (start, end] where a call of the host loop ends: the multiples of each
  period, and `end`."""
  stops = {end}
  for period in filter(None, periods):  # 0: never
    stops.update(range((start // period + 1) * period, end, period))
  return sorted(s for s in stops if start < s <= end)


class TensorBoardPictures(keras.callbacks.Callback):
  """TensorBoard pictures of G and G + the run's sampler (`summaries.ImageSummaries`) every
  `every` steps and at `last_step`, as a Keras callback: `GanEbm.fit` calls it after each
  batch, the host loop after each of its calls. A picture that cannot be made or written
  turns the pictures off with a warning; it never stops a run."""

  def __init__(self, model, config, jit_compile, writer, last_step):
    super().__init__()
    from tfganebm import summaries  # pylint: disable=g-import-not-at-top
    self.writer, self.every, self.last_step = writer, config.run.image_every, last_step
    self.step = model.step
    try:
      self.pictures = summaries.ImageSummaries(model, config, jit_compile)
    except (tf.errors.OpError, ValueError, RuntimeError, OSError) as e:
      logging.warning('TensorBoard pictures are off for this run: %s', e)
      self.pictures = None

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.step.numpy())
    if self.pictures is None or (step % self.every and step != self.last_step):
      return
    try:
      with self.writer.as_default(step=step):
        self.pictures.write(step)
    except (tf.errors.OpError, ValueError, RuntimeError, OSError) as e:  # never stop a run
      logging.warning('TensorBoard pictures are off for this run: %s',
                      str(e).splitlines()[0] if str(e) else type(e).__name__)
      self.pictures = None


class _Scalars:
  """The log line and TensorBoard scalars of each `log_every` window."""

  def __init__(self, writer, start, total):
    self.writer, self.total = writer, total
    self.clock, self.window_start = time.perf_counter(), start

  def write(self, step, logs):
    now = time.perf_counter()
    rate = (step - self.window_start) / max(now - self.clock, 1e-9)
    self.clock, self.window_start = now, step
    try:
      with self.writer.as_default(step=step):
        for name, value in logs.items():
          tf.summary.scalar(name, value)
        tf.summary.scalar('steps_per_second', rate)
    except tf.errors.OpError as e:  # a full disk: TensorBoard stops, training goes on
      logging.warning('TensorBoard scalars are off for this run: %s', saving.op_reason(e))
      self.writer = tf.summary.create_noop_writer()
    logging.info('step %d/%d (%.1f steps/s) %s', step, self.total, rate,
                 ' '.join(f'{k}={float(v):.4g}' for k, v in logs.items()))


def _check_finite(finite, first, step, saves):
  bad = [name for name, ok in finite.items() if not bool(ok)]
  if bad:
    raise Diverged(
        f'training diverged between steps {first} and {step}: non-finite '
        f'{", ".join(bad)}; {saves.kept()}. Try a lower --gd_learning_rate or '
        '--energy_learning_rate, a smaller --train_langevin_step_size, or '
        '--energy_spectral_norm')


class _Calls:
  """The host loop's calls up to a boundary. With a stopper (and every replica's loop in this
  process), a call runs at most about a sixth of the grace period of steps, measured from
  the previous call (the first call also traces and compiles the loop), and a stop request
  ends the calls."""

  def __init__(self, run, iterator, model, stopper, cut):
    self.run, self.iterator, self.model = run, iterator, model
    self.stopper, self.cut = stopper, cut
    self.seconds_per_step, self.traced = None, False

  def up_to(self, step, stop, saves):
    """Runs steps step..stop; returns (the step reached, the logs of the last call)."""
    first, logs = step, None
    while step < stop:
      end = stop
      if self.cut and self.seconds_per_step:
        end = min(stop, step + max(1, int(self.stopper.grace / 6 / self.seconds_per_step)))
      called = time.perf_counter()
      logs, finite = self.run(self.iterator, tf.constant(end - step, tf.int64))
      previous, step = step, int(self.model.step.numpy())
      if self.traced:
        self.seconds_per_step = (time.perf_counter() - called) / max(step - previous, 1)
      self.traced = True
      _check_finite(finite, first, step, saves)
      if self.cut and self.stopper.requested is not None:
        break
    return step, logs


def fit(model, strategy, jit_compile, saves, dataset, config, start, chief, stopper=None):
  """Steps start..train_steps, logging every `log_every` and saving every `checkpoint_every`
  steps; a non-finite quantity stops it before the next save. With a `stopper`, a stop signal
  ends it at the end of the steps in flight, which are then saved (`saves.at_stop`)."""
  total, run_config = config.train.train_steps, config.run
  batches = data.batches(dataset.train, config.train.batch_size, run_config.seed, start,
                         total - start,
                         labels=dataset.train_labels if config.networks.conditional else None)
  iterator = iter(strategy.experimental_distribute_dataset(batches))
  writer = (tf.summary.create_file_writer(os.path.join(run_config.workdir, 'tensorboard'))
            if chief else tf.summary.create_noop_writer())
  pictures = (TensorBoardPictures(model, config, jit_compile, writer, total)
              if chief and run_config.image_every else None)
  scalars = _Scalars(writer, start, total)
  agree = saving.stop_agreement(strategy) if stopper is not None else None
  # Calls cut short by time only where every replica's loop is in this process.
  cut = stopper is not None and not isinstance(strategy,
                                               tf.distribute.MultiWorkerMirroredStrategy)
  calls = _Calls(make_multi_step(model, strategy, jit_compile), iterator, model, stopper, cut)
  step = start
  try:
    for stop in _boundaries(start, total, run_config.log_every, run_config.checkpoint_every,
                            run_config.image_every):
      step, logs = calls.up_to(step, stop, saves)
      if step % run_config.log_every == 0 or step == total:
        scalars.write(step, logs)
        model.reset_metrics()  # the next window's means start afresh
      if pictures is not None:
        pictures.writer = scalars.writer  # a failed writer stops the pictures too
        pictures.on_train_batch_end(step)
      if step % run_config.checkpoint_every == 0 or step == total:
        saves.periodic(step)
      if agree is not None and agree(stopper.requested is not None):
        saving.stop(saves, stopper, step)
  except signals.Stopped as e:  # a second signal, or one outside the deferred steps
    raise Interrupted(f'stopped by {signals.name(e.signum)} at step {int(model.step.numpy())}; '
                      f'{saving.where(saves.last_saved)}', signals.exit_code(e.signum)) from None
  finally:
    try:
      scalars.writer.flush()
    except (tf.errors.OpError, OSError):
      pass
  for device in tf.config.list_logical_devices('GPU'):
    peak = tf.config.experimental.get_memory_info(device.name)['peak']
    logging.info('peak memory of %s: %.0f MiB', device.name, peak / 2**20)
