"""The checkpoints training writes, and how a stop signal ends it.

Periodic checkpoints go through the run's `tf.train.CheckpointManager`; a stop signal's
(`stopped-N`) is written beside them, outside the manager, so the kept and averaged
checkpoints stay the periodic ones. A failed write (a full disk) ends the run in one line
with the previous checkpoint still the latest.
"""

import os
import re

import tensorflow as tf

from tfganebm import runs
from tfganebm import signals
from tfganebm import workdir as workdir_lib
from tfganebm.errors import Diverged
from tfganebm.errors import Interrupted
from tfganebm.errors import RunError


class Saves:
  """The checkpoints training writes: the periodic ones, through the CheckpointManager, and
  one at a stop signal (`stopped-N`, beside them but outside the manager, so that the kept and
  averaged checkpoints stay the periodic ones; the next periodic save removes it). A failed
  write (a full disk) ends the run in one line, the previous checkpoint still the latest."""

  def __init__(self, workdir, manager, checkpoint, model, latest, record):
    self.workdir, self.manager, self.checkpoint, self.model = workdir, manager, checkpoint, model
    self.record = record
    self.last_saved = None if latest is None else int(model.step.numpy())
    self._recorded = False

  def kept(self):
    return (f'the latest checkpoint (step {self.last_saved}) is finite and a rerun resumes from '
            'it' if self.last_saved is not None else 'no checkpoint was saved')

  def periodic(self, step):
    bad = runs.non_finite_state(self.model)
    if bad:
      raise Diverged(f'non-finite {", ".join(bad)} at step {step}, not saved; the latest '
                     f'checkpoint is step {self.last_saved}. Try a lower --gd_learning_rate or '
                     '--energy_learning_rate, or a smaller --train_langevin_step_size')
    self._write(step, lambda: self.manager.save(checkpoint_number=step))
    workdir_lib.remove_stopped(self.manager.directory)

  def at_stop(self, step):
    """Saves step `step` unless it is saved or not finite; returns the latest saved step."""
    if step == self.last_saved or runs.non_finite_state(self.model):
      return self.last_saved
    prefix = os.path.join(self.manager.directory, f'{workdir_lib.STOPPED_PREFIX}{step}')
    self._write(step, lambda: self.checkpoint.write(prefix))
    workdir_lib.remove_stopped(self.manager.directory, keep=step)
    return step

  def _write(self, step, save):
    try:
      save()
    except (tf.errors.OpError, OSError) as e:
      workdir_lib.remove_leftovers_in(self.manager.directory)  # this task's folder only
      reason = e.strerror if isinstance(e, OSError) and e.strerror else op_reason(e)
      raise RunError(f'cannot save the checkpoint of step {step} in {self.manager.directory} '
                     f'({reason}); {self.kept()}. Free space on that disk (or fix the folder), '
                     'then run the same command again') from None
    self.last_saved = step
    if not self._recorded:
      try:
        self.record()
      except OSError as e:
        raise RunError(f'cannot write the run\'s records in {self.workdir} '
                       f'({e.strerror or e}); the checkpoint of step {step} is saved. Free '
                       'space on that disk, then run the same command again') from None
      self._recorded = True


def op_reason(error):
  """The reason of a TensorFlow error, without its op and device names ("No space left on
  device" out of a SaveV2 error)."""
  text = (str(error).splitlines() or [type(error).__name__])[0]
  text = re.sub(r'\s*\[Op:\w+\]', '', re.sub(r'\{\{.*?\}\}\s*', '', text))
  return text.rsplit('; ', 1)[-1].strip() or type(error).__name__


def stop_agreement(strategy):
  """`agree(requested) -> bool`: whether any worker was asked to stop. Under the multi-worker
  strategy the workers agree by a collective at each period's end, so all stop at one step;
  elsewhere it is the flag itself."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return bool

  @tf.function(autograph=False)
  def any_worker(flag):
    per_replica = strategy.run(lambda: tf.identity(flag))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  return lambda requested: bool(any_worker(tf.constant(1.0 if requested else 0.0)) > 0)


def where(last_saved):
  return (f'the latest checkpoint is step {last_saved}; run the same command again to resume '
          'from it' if last_saved is not None else
          'no checkpoint was saved yet; run the same command again to start over')


def stop(saves, stopper, step):
  """Saves the step a stop signal let training reach, then raises `Interrupted`."""
  signum = stopper.requested or signals.signal.SIGTERM  # another worker's signal
  try:
    saved = saves.at_stop(step)
  except RunError as e:  # a full disk: the line says which checkpoint is the latest
    raise Interrupted(f'stopped by {signals.name(signum)} at step {step}, but {e}',
                      signals.exit_code(signum)) from None
  what = ('saved its checkpoint; run the same command again to resume from it'
          if saved == step else where(saved))
  raise Interrupted(f'stopped by {signals.name(signum)} at step {step}: {what}',
                    signals.exit_code(signum))
