"""Opening a training run's workdir for sampling, evaluation or export."""

import dataclasses
import os

from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import workdir as workdir_lib


class LoadError(ValueError):
  """A workdir that cannot be loaded, with the reason and the fix."""


def relocated(config, data_dir=None, classifier_dir=None):
  """`config` with its image-data and metrics-classifier folders replaced where given."""
  changes = {name: value for name, value in (('data_dir', data_dir),
                                             ('classifier_dir', classifier_dir))
             if value is not None}
  return dataclasses.replace(config, **changes)


def check_output(workdir, out):
  """Refuses an output folder for samples or an export that would overwrite the run itself,
  or write into a workdir that a trainer is writing.

  Raises:
    LoadError: `out` is an existing file, is `workdir` or a folder above it, or lies
      inside `workdir` while a trainer holds its lock.
  """
  if os.path.exists(out) and not os.path.isdir(out):
    raise LoadError(f'--out={out} is an existing file; choose a folder')
  run, target = os.path.realpath(workdir), os.path.realpath(out)
  if run == target or run.startswith(target.rstrip(os.sep) + os.sep):
    raise LoadError(f'--out={out} would write over the run in {workdir}; choose a folder '
                    f'of its own, e.g. --out={os.path.join(workdir, "samples")}')
  if target.startswith(run + os.sep) and os.path.isdir(workdir):
    pid = workdir_lib.holder(workdir)
    if pid is not None:
      raise LoadError(f'{workdir} is being written by a trainer (PID {pid}); wait for it or '
                      'choose an --out outside the workdir')


def load(workdir, average_checkpoints=None, data_dir=None, classifier_dir=None):
  """The model of `workdir` for inference: G and E (and the step) restored from its latest
  checkpoint, averaged over the last `average_checkpoints` checkpoints; the other
  arguments override the run's flags where given (None: the run's value; the folders as
  in `relocated`).

  The model is built in float32 on one device, whatever strategy, replica count and
  precision the run trained with; the replay buffer, D and the optimizers are not read.

  Returns:
    (model, config, data_shape).

  Raises:
    LoadError: no flags.txt, an unreadable one, no checkpoint, or a checkpoint
      that does not fit the networks of flags.txt.
  """
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)
  flags_path = os.path.join(workdir, workdir_lib.FLAGS_FILE)
  if not os.path.isfile(flags_path):
    raise LoadError(f'{flags_path} not found; --workdir must be a directory written by '
                    'tfganebm.train')
  try:
    config = config_lib.Config.from_flagfile(flags_path)
  except (ValueError, TypeError, OSError) as e:
    raise LoadError(str(e)) from e
  try:
    latest = workdir_lib.latest_checkpoint(workdir)
  except workdir_lib.WorkdirError as e:
    raise LoadError(str(e)) from e
  if latest is None:
    raise LoadError(f'no checkpoint in {workdir_lib.checkpoint_dir(workdir)}; '
                    'train first (python -m tfganebm.train ...)')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  data_shape = data.shape_of(config.dataset)
  model = model_lib.build(config, data_shape, tf.distribute.get_strategy(), inference=True)
  try:
    workdir_lib.restore_networks(model, latest)
  except Exception as e:  # pylint: disable=broad-except  (damaged files fail in many ways)
    raise LoadError(f'cannot restore the checkpoint in {workdir}: '
                    f'{str(e).splitlines()[0]}; is it damaged or from other flags?') from e
  config = relocated(config, data_dir, classifier_dir)
  if average_checkpoints is not None:
    config = dataclasses.replace(config, average_checkpoints=average_checkpoints)
  if config.average_checkpoints > 1:
    try:
      workdir_lib.average_weights(model, workdir, config.average_checkpoints)
    except Exception as e:  # pylint: disable=broad-except
      raise LoadError(f'cannot average the last {config.average_checkpoints} checkpoints in '
                      f'{workdir}: {str(e).splitlines()[0]}; restore the missing files or '
                      'pass --average_checkpoints=1') from e
  return model, config, data_shape
