"""`train(config)`: a whole run in its workdir, resumable from the last checkpoint."""

import contextlib
import os
import shutil

from absl import logging
import keras
import tensorflow as tf

from tfganebm import chain_energy
from tfganebm import data
from tfganebm import distribute
from tfganebm import evaluation
from tfganebm import files
from tfganebm import loop
from tfganebm import model as model_lib
from tfganebm import pretrained
from tfganebm import resume
from tfganebm import runs
from tfganebm import saving
from tfganebm import signals
from tfganebm import sizing
from tfganebm import workdir as workdir_lib
from tfganebm.errors import Diverged  # pylint: disable=unused-import  (training.Diverged)
from tfganebm.errors import Interrupted
from tfganebm.errors import RunError



def uses_xla(run):
  """Whether the train step of a run (`RunConfig`) is XLA-compiled: --jit_compile on one device
  (a step whose variables live on several devices cannot be compiled, and MirroredStrategy
  on one GPU calls a compiled step without its replica context: the buffer's writes then
  fail in merge_call), and not --deterministic (op determinism does not cover XLA)."""
  return run.jit_compile and run.strategy in ('default', 'one_device') and not run.deterministic


def train(config, stopper=None):
  """Trains (or resumes) the run of `config` in `config.run.workdir`, then evaluates it.

  `stopper` (a `signals.Stopper` the command installed, or None): a stop signal during
  training ends the current steps, saves a checkpoint of the step reached (within
  `--grace_period` seconds) and raises `Interrupted`; the same call then resumes exactly.

  Returns:
    The metrics written to `workdir/metrics.json`; {} on a worker that is not
    the chief (it writes nothing but its share of the collective checkpoint saves).

  Raises:
    RunError: the workdir holds an incompatible run or an unreadable checkpoint, is
      locked by another process, or training diverged (`Diverged`); the workdir's
      checkpoints are then as they were before the last good save.
    Interrupted: a stop signal during training (a RunError that says where it stopped).
  """
  workdir = config.run.workdir
  # Before TF runs an op: the threads that let the chains' groups run side by side.
  groups = chain_energy.resolve_groups(config, uses_xla(config.run))
  if not chain_energy.configure_threads(groups):
    if not config.run.chain_groups:
      groups = 1  # groups that share every core for each op would only be slower
    logging.warning('TensorFlow ran before train() (or TF_NUM_INTRAOP_THREADS is set): its '
                    'intra-op threads stay as they were, so the training chains run in %d '
                    'group(s) that do not run side by side', groups)
  chief = distribute.is_chief()
  with _refusals_reach_every_worker(config.run):
    try:
      workdir_lib.check_writable(workdir)
    except workdir_lib.WorkdirError as e:
      raise RunError(str(e)) from None
    config = _absolute_data_path(config)
    try:
      dataset = data.load(config.data, config.run.seed)
      # The data's shape and the widths it sets, recorded in config.json with the first save.
      config = sizing.for_data(config, dataset.shape, dataset.num_classes)
    except ValueError as e:  # images.DataError included: missing or damaged files
      raise RunError(str(e)) from e
    if len(dataset.train) < config.train.batch_size:
      raise RunError(f'--batch_size={config.train.batch_size} exceeds the {len(dataset.train)} '
                     'training examples; lower it')
    source = None
    if config.pretrained.generator:  # checked before anything is written
      config, source = _pretrained(config, dataset.shape)
    os.makedirs(workdir, exist_ok=True)
    # One writer per workdir. Other workers of a multi-worker run share the chief's workdir
    # and write only scratch saves, so only the chief takes the lock.
    try:
      lock = workdir_lib.Lock(workdir) if chief else None
    except workdir_lib.WorkdirError as e:
      raise RunError(str(e)) from None
  try:
    return _train_locked(config, dataset, chief, source, groups, stopper)
  finally:
    if lock is not None:
      lock.release()


@contextlib.contextmanager
def _refusals_reach_every_worker(run):
  """Under the multi-worker strategy, a RunError raised in the block is first told to the
  other tasks (`_strategy`), which would otherwise wait for this one for ever."""
  try:
    yield
  except RunError as e:
    if distribute.is_multi_worker(run.strategy):
      _strategy(run, str(e))  # raises
    raise


def _strategy(run, problem=None):
  """The run's strategy, once every task can start: under the multi-worker strategy the
  tasks tell each other whether they refuse (`problem`), and all stop with the line of the
  first that does.

  Raises:
    RunError: `problem`, or another task's refusal.
  """
  strategy = distribute.make_strategy(run.strategy, run.tpu, run.cpu_replicas)
  if distribute.is_multi_worker(run.strategy):
    problem = distribute.roll_call(strategy, problem)
  if problem:
    raise RunError(problem)
  return strategy


def _absolute_data_path(config):
  """`config` with a relative `folder:` or `npy:` path made absolute, so that the run's
  config.json names the data wherever a later command starts (and a resume from another
  directory that would read other data is refused as another --dataset)."""
  from tfganebm import sources  # pylint: disable=g-import-not-at-top
  prefix, path = sources.parse(config.data.dataset)
  if prefix in ('folder', 'npy'):
    return config.override(dataset=f'{prefix}:{os.path.abspath(os.path.expanduser(path))}')
  return config


def _pretrained(config, data_shape):
  """The run's config with the latent size of its pretrained generator, and the file to
  build G from: the workdir's copy when a run made one, else the user's file.

  Raises:
    RunError: a generator that is not one, or does not fit the data (one line).
  """
  settings = config.pretrained
  workdir = config.run.workdir
  source = pretrained.source_path(workdir, settings.generator)
  try:  # a run with checkpoints keeps using its copy; a new one takes the user's file
    resuming = os.path.isdir(workdir) and workdir_lib.latest_checkpoint(workdir) is not None
  except workdir_lib.WorkdirError:
    resuming = False  # the trainer repairs or refuses the index, with its own message
  if not (resuming and os.path.exists(source)):
    source = settings.generator
  try:
    generator = pretrained.load(source, data_shape, settings.generator_range,
                                num_classes=config.networks.num_classes
                                if config.networks.conditional else 0)
  except pretrained.GeneratorError as e:
    raise RunError(str(e)) from None
  return config.override(latent_dim=int(generator.inputs[0].shape[-1])), source


def _train_locked(config, dataset, chief, source=None, groups=1, stopper=None):
  with _refusals_reach_every_worker(config.run):
    checked = resume.check_workdir(config, dataset, chief, source)
  return _train_checked(config, dataset, chief, groups, stopper, *checked)


def _train_checked(config, dataset, chief, groups, stopper, latest, saved_step, data_record,
                   flags_text, source):
  workdir = config.run.workdir
  data_shape = dataset.shape
  run = config.run
  strategy = _strategy(run)
  if stopper is not None:
    # MultiWorkerMirroredStrategy's coordination service installs its own SIGTERM handler
    # (a preemption notifier that does not stop the process); the command's comes back.
    stopper.install()
  if run.deterministic:
    tf.config.experimental.enable_op_determinism()
  jit_compile = uses_xla(run)
  logging.info('training with %d replicas (--strategy=%s%s%s%s)', strategy.num_replicas_in_sync,
               run.strategy, ', mixed precision' if run.mixed_precision else '',
               ', XLA' if jit_compile else '',
               f', chains in {groups} groups' if groups > 1 else '')
  generator = None
  if source is not None:
    classes = config.networks.num_classes if config.networks.conditional else 0
    generator = lambda: pretrained.load(source, data_shape, config.pretrained.generator_range,
                                        num_classes=classes,
                                        trainable=config.pretrained.finetune_generator,
                                        check=False)
  model = model_lib.build(config.override(jit_compile=jit_compile, chain_groups=groups),
                          data_shape, strategy, generator=generator)
  checkpoint = tf.train.Checkpoint(**model.checkpoint_items())
  if latest is not None:
    try:
      runs.restore_training(checkpoint, model, latest, workdir)
    except workdir_lib.WorkdirError as e:
      raise RunError(str(e)) from None
    logging.info('resuming %s at step %d', workdir, int(model.step.numpy()))
    # The optimizers' learning rates are checkpointed; a resume that changes them applies them.
    model.reset_learning_rates()

  def record():
    """flags.txt and the architecture record, written with the first checkpoint that the
    flags made (or before the evaluation of a finished run), so they never describe
    training that was not saved."""
    if chief:
      files.write_text(os.path.join(workdir, workdir_lib.FLAGS_FILE), flags_text)
      workdir_lib.write_config(workdir, config)
      workdir_lib.write_architecture(workdir, {**resume.architecture(config), **data_record})

  # CheckpointManager writes the data files first and the `checkpoint` index last, so a
  # crash mid-save leaves the previous checkpoint the latest one.
  # An absolute directory: the manager records its checkpoints relative to it, so the index
  # holds bare names (ckpt-N) that resolve inside the workdir wherever a command starts.
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.abspath(distribute.checkpoint_dir(workdir_lib.checkpoint_dir(workdir))),
      max_to_keep=max(3, config.run.average_checkpoints))

  start = int(model.step.numpy())
  if start < config.train.train_steps:
    saves = saving.Saves(workdir, manager, checkpoint, model, latest, record)
    if stopper is None:
      loop.fit(model, strategy, jit_compile, saves, dataset, config, start, chief)
    else:
      with stopper.deferred():
        loop.fit(model, strategy, jit_compile, saves, dataset, config, start, chief, stopper)
      if stopper.requested is not None:  # after the last save: training is whole
        raise Interrupted(f'stopped by {signals.name(stopper.requested)} after the last step '
                          f'({config.train.train_steps}), which is saved; run the same command '
                          'again to evaluate the run', signals.exit_code(stopper.requested))
  else:
    record()

  if not chief:
    shutil.rmtree(manager.directory, ignore_errors=True)  # a worker's saves were only collective
    return {}
  return evaluate_run(config, dataset)


def evaluate_run(config, dataset=None):
  """The final evaluation of a trained run: G and E as sampling loads them (float32, one
  device, averaged over the last checkpoints when the run asks), metrics.json and figures
  in the workdir."""
  try:
    model, config = runs.load_run(config.run.workdir)
  except workdir_lib.LoadError as e:
    raise RunError(str(e)) from e
  if model.averaged_steps:
    logging.info('evaluating G and E averaged over the checkpoints of steps %s',
                 model.averaged_steps)
  if model.averages:
    logging.info('evaluating the moving averages of %s (decay %g)', ' and '.join(model.averages),
                 config.train.ema_decay)
  _save_keras(model, config.run.workdir)
  if model.sampler_tuning:
    from tfganebm import tuning  # pylint: disable=g-import-not-at-top
    tuning.write_summaries(model.sampler_tuning, os.path.join(config.run.workdir, 'tensorboard'))
  result, _, _ = evaluation.evaluate(model, config, config.run.workdir,
                                     config.run.eval_num_samples, config.run.seed,
                                     step=int(model.step.numpy()), dataset=dataset)
  return result


def _save_keras(model, workdir):
  """generator.keras and energy.keras in the workdir: G and E as sampling uses them
  (float32, averaged when the run averages), for `keras.models.load_model` and for
  `python -m tfganebm.refine --generator`."""
  for name, network in (('generator', model.generator), ('energy', model.energy)):
    if network is None or any(isinstance(layer, keras.layers.TFSMLayer)
                              for layer in network.layers):
      continue  # a user's SavedModel G: its copy in the workdir is the file to use
    try:
      with files.atomic_path(os.path.join(workdir, f'{name}.keras')) as path:
        network.save(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as e:  # a layer Keras cannot save
      logging.warning('%s.keras not written: %s', name, str(e).splitlines()[0] if str(e) else e)
