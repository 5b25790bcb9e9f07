"""Opening a trained run: its G and E restored (and averaged) for inference, or its whole
training state for a resume. The workdir's layout and files are `workdir.py`'s."""

import os

import numpy as np

from tfganebm import workdir as workdir_lib
from tfganebm.workdir import LoadError
from tfganebm.workdir import WorkdirError


def restore_networks(model, path):
  """Restores only G, E (when the model has one) and the step from checkpoint `path`; G and
  E take their moving averages where the run keeps them (`--ema_decay`).

  What inference needs: it works whatever replica count, strategy and precision the
  run trained with (the replay buffer, D and the optimizers are not read).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  checkpoint = tf.train.Checkpoint(**model.inference_items())
  checkpoint.restore(path).expect_partial().assert_existing_objects_matched()
  model.use_averages()


def average_weights(model, workdir, count):
  """Gives G and E the mean of their weights over the last `count` checkpoints of `workdir`
  (Polyak averaging, for sampling and export) and sets `model.averaged_steps` to their steps
  (None when fewer than two are kept). Only G and E are read; the rest is left as it is.

  Raises:
    An exception of whatever kind reading an unreadable checkpoint raises.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  networks = dict(generator=model.generator)
  if model.energy is not None:
    networks['energy'] = model.energy
  partial = tf.train.Checkpoint(**model.inference_items())
  try:
    state = tf.train.get_checkpoint_state(workdir_lib.checkpoint_dir(workdir))
  except Exception:  # pylint: disable=broad-except  (a garbled index: the files decide)
    state = None
  if state is not None and state.all_model_checkpoint_paths:
    paths = [workdir_lib.inside(workdir_lib.checkpoint_dir(workdir), path)
             for path in state.all_model_checkpoint_paths][-count:]
  else:  # a deleted or garbled index: the newest ckpt-N files
    paths = [os.path.join(workdir_lib.checkpoint_dir(workdir), f'ckpt-{s}')
             for s in reversed(workdir_lib.checkpoint_steps(workdir)[:count])]
  snapshots = []
  for path in paths:
    partial.restore(path).expect_partial()
    model.use_averages()
    snapshots.append([network.get_weights() for network in networks.values()])
  if snapshots:
    for i, network in enumerate(networks.values()):
      network.set_weights([np.mean(w, axis=0) for w in zip(*(s[i] for s in snapshots))])
  model.averaged_steps = ([int(path.rsplit('-', 1)[1]) for path in paths]
                          if len(paths) > 1 else None)


def load_run(workdir, overrides=None):
  """The model of `workdir` for inference, and its config.

  G and E (and the step) are restored from the latest checkpoint, averaged over the
  last `average_checkpoints`. The model is built in float32 on one device, whatever
  strategy, replica count and precision the run trained with; the replay buffer, D
  and the optimizers are not read. A sampler that asks for tuning
  (`--langevin_target_accept`) comes back with its tuned step size and noise
  (`tuning.tuned_config`: tuned once, then read from the workdir).

  Args:
    workdir: a directory written by tfganebm.train.
    overrides: {flag name: value} of settings to change for this use: the sampler
      (`langevin_steps`, ...), `average_checkpoints`, `data_dir`, `classifier_dir`.

  Returns:
    (model, config).

  Raises:
    LoadError: no config, an unreadable one, a bad override, no checkpoint, or a
      checkpoint that does not fit the networks of the config.
  """
  config = workdir_lib.preflight(workdir, overrides)
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)
  try:
    latest = workdir_lib.latest_checkpoint(workdir)
  except WorkdirError as e:
    raise LoadError(str(e)) from e
  if latest is None:
    raise LoadError(workdir_lib.no_checkpoint(workdir))
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  generator = None
  if config.pretrained.generator:  # G from the copy the run keeps of the user's file
    from tfganebm import data  # pylint: disable=g-import-not-at-top
    from tfganebm import pretrained  # pylint: disable=g-import-not-at-top
    source = pretrained.source_path(workdir, config.pretrained.generator)
    if not os.path.exists(source):
      raise LoadError(f'{source} is missing: the run\'s copy of its --generator; put it back '
                      f'(a copy of {config.pretrained.generator})')
    shape = data.shape_of(config.data)
    classes = config.networks.num_classes if config.networks.conditional else 0
    generator = lambda: pretrained.load(source, shape, config.pretrained.generator_range,
                                        check=False, num_classes=classes)
  model = model_lib.build(config, strategy=tf.distribute.get_strategy(), inference=True,
                          generator=generator)
  try:
    restore_networks(model, latest)
  except Exception as e:  # pylint: disable=broad-except  (damaged files fail in many ways)
    raise LoadError(f'cannot restore the checkpoint in {workdir}: '
                    f'{str(e).splitlines()[0]}; is it damaged or from other flags?') from e
  count = config.run.average_checkpoints
  if count > 1:
    try:
      average_weights(model, workdir, count)
    except Exception as e:  # pylint: disable=broad-except
      raise LoadError(f'cannot average the last {count} checkpoints in {workdir}: '
                      f'{str(e).splitlines()[0]}; restore the missing files or pass '
                      '--average_checkpoints=1') from e
  from tfganebm import tuning  # pylint: disable=g-import-not-at-top
  try:
    config = tuning.tuned_config(config, model, workdir)
  except ValueError as e:  # the warm-up diverged
    raise LoadError(str(e)) from e
  return model, config


def non_finite_state(model):
  """Names of the checkpointed floating-point state (weights, optimizer slots, buffer) that
  holds a NaN or infinity."""
  bad = []
  for name, item in model.checkpoint_items().items():
    variables = getattr(item, 'variables', None)
    if variables is None:
      continue
    values = (np.asarray(v.numpy()) for v in variables)
    if any(a.dtype.kind == 'f' and not np.all(np.isfinite(a)) for a in values):
      bad.append(name)
  return bad


def restore_training(checkpoint, model, path, workdir):
  """Restores the whole training state (every item of `checkpoint`, a tf.train.Checkpoint
  of `model.checkpoint_items()`) from `path`, for a resume.

  Raises:
    WorkdirError: a damaged checkpoint, one of another model or replica count, or one
      holding non-finite state.
  """
  try:
    checkpoint.restore(path).assert_consumed()
  except Exception as e:  # pylint: disable=broad-except  (damaged files fail in many ways)
    raise WorkdirError(f'cannot resume from the checkpoint in {workdir}: '
                       f'{str(e).splitlines()[0]}; it is damaged or was written by another '
                       'model or replica count: move it away or use a new --workdir') from e
  bad = non_finite_state(model)
  if bad:
    raise WorkdirError(f'the latest checkpoint of {workdir} ({path}) holds non-finite '
                       f'{", ".join(bad)}: it diverged before it was saved; move its ckpt-N '
                       'files away to resume from an earlier one, or use a new --workdir')
