"""`train(config)`: a whole run in its workdir, resumable from the last checkpoint."""

import contextlib
import os
import shutil
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tfganebm import chain_energy
from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import distribute
from tfganebm import evaluation
from tfganebm import files
from tfganebm import model as model_lib
from tfganebm import pretrained
from tfganebm import saving
from tfganebm import signals
from tfganebm import workdir as workdir_lib
from tfganebm.errors import Diverged  # pylint: disable=unused-import  (training.Diverged)
from tfganebm.errors import Interrupted
from tfganebm.errors import RunError



def _check_resume(workdir, config, step, data_record=None):
  """Refuses a resume that would change what the checkpoint fixes; returns the changes of
  the settings a resume may change, as (name, saved, requested) triples.

  `step` is the checkpoint's step (None: no checkpoint, anything goes); `data_record` the
  size and digest of the training data now (`_data_record`).
  """
  if step is None:
    return []
  requested = _architecture(config)
  try:
    saved_record = workdir_lib.read_architecture(workdir)
  except workdir_lib.WorkdirError as e:
    raise RunError(f'cannot resume: {e}') from None
  _refuse_changes(workdir, saved_record, requested)
  saved_data = {k: saved_record[k] for k in (data_record or {}) if k in saved_record}
  if saved_data and any(saved_data[k] != data_record[k] for k in saved_data):
    raise RunError(f'{workdir} was trained on other data than {config.data.dataset} holds now '
                   f'({saved_data.get(TRAINING_EXAMPLES)} training examples then, '
                   f'{data_record[TRAINING_EXAMPLES]} now, or other contents): the batches would '
                   "not continue the run's; restore the data or use a new --workdir")
  if config.train.train_steps < step:
    raise RunError(f'{workdir} holds a run at step {step}, beyond --train_steps='
                   f'{config.train.train_steps}; pass --train_steps={step} or more, or use a new '
                   '--workdir')
  try:
    saved = workdir_lib.read_config(workdir)
  except workdir_lib.WorkdirError as e:
    raise RunError(f'cannot resume: {e}') from e
  if saved is None:
    return []
  if not saved.data.example_shape:  # a run from before the shape was recorded
    saved = saved.override(example_shape=config.data.example_shape)
  _refuse_changes(workdir, _architecture(saved), requested)
  before, after = saved.flat(), config.flat()
  return [(name, before[name], after[name]) for name in after
          if before[name] != after[name] and name != 'workdir']


def _refuse_changes(workdir, saved, requested):
  """Raises RunError naming the settings the checkpoint fixes that `requested` changes;
  `saved` may lack some (an older record)."""
  changed = [n for n in requested if n in saved and saved[n] != requested[n]]
  if changed:
    details = ', '.join(f'--{n}: {saved[n]} -> {requested[n]}' for n in changed)
    raise RunError(f'{workdir} holds a run with other settings ({details}); use a new '
                   '--workdir or the saved values')


# In the architecture record: what the step counter indexes, so a resume reads the same data.
TRAINING_EXAMPLES, TRAINING_DIGEST = 'training_examples', 'training_data_digest'


def _data_record(dataset):
  """The training data's size and digest (of a folder's file list, or of the array)."""
  import hashlib  # pylint: disable=g-import-not-at-top
  from tfganebm import sources  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256(str(tuple(dataset.train.shape)).encode())
  if isinstance(dataset.train, sources.ImageFiles):
    digest.update('\n'.join(dataset.train.paths).encode())
  else:
    digest.update(np.ascontiguousarray(dataset.train).tobytes())
  return {TRAINING_EXAMPLES: len(dataset.train), TRAINING_DIGEST: digest.hexdigest()[:16]}


def _architecture(config):
  """{flag name: value} of the settings a resume must not change: the checkpoint fixes them
  (variable shapes, the RNG stream, which data the step counter indexes)."""
  flat = config.flat()
  record = {name: flat[name] for name in config_lib.fixed_by_checkpoint()}
  return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


def _flags_text(workdir, config, step, changes):
  """flags.txt: the flags of the run, after the history of what each resume changed."""
  path = os.path.join(workdir, workdir_lib.FLAGS_FILE)
  history = []
  if os.path.exists(path) and step is not None:
    try:
      with open(path, encoding='utf-8') as f:
        history = [line.rstrip('\n') for line in f if line.startswith('# resumed')]
    except (OSError, ValueError) as e:  # UnicodeDecodeError: a damaged file
      raise RunError(f'cannot read {path} ({e.__class__.__name__}: it is damaged); restore it, '
                     'or delete it: the run rewrites it from config.json, without the history '
                     'of its resumes') from None
  if changes:
    history.append(f'# resumed at step {step} with ' + ', '.join(
        f'--{n}={new} (was {old})' for n, old, new in changes))
  return '\n'.join(history + [config.to_flagfile()]).lstrip('\n')


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
      config = model_lib.for_data(config, dataset.shape)
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
    generator = pretrained.load(source, data_shape, settings.generator_range)
  except pretrained.GeneratorError as e:
    raise RunError(str(e)) from None
  return config.override(latent_dim=generator.input_shape[-1]), source


def _train_locked(config, dataset, chief, source=None, groups=1, stopper=None):
  with _refusals_reach_every_worker(config.run):
    checked = _check_workdir(config, dataset, chief, source)
  return _train_checked(config, dataset, chief, groups, stopper, *checked)


def _check_workdir(config, dataset, chief, source):
  """What a run's workdir allows: (latest checkpoint, its step, the data record, the settings
  a resume changes, the text of flags.txt, G's source file).

  Raises:
    RunError: a damaged or incompatible checkpoint, a changed dataset or setting.
  """
  workdir = config.run.workdir
  try:
    if chief:
      workdir_lib.remove_leftovers(workdir)
    latest = workdir_lib.latest_checkpoint(workdir, repair=chief)
  except workdir_lib.WorkdirError as e:
    raise RunError(str(e)) from None
  saved_step = None
  if latest is not None:
    try:
      saved_step = int(tf.train.load_checkpoint(latest).get_tensor(
          'step/.ATTRIBUTES/VARIABLE_VALUE'))
    except Exception as e:  # pylint: disable=broad-except  (damaged files fail in many ways)
      raise RunError(f'cannot resume from the checkpoint in {workdir}: '
                     f'{str(e).splitlines()[0]}; it is damaged: move it away or use a new '
                     '--workdir') from e
  data_record = _data_record(dataset)
  changes = _check_resume(workdir, config, saved_step, data_record)
  if source is not None and chief:  # now that the resume is allowed
    try:
      source = pretrained.keep_copy(workdir, source)
    except pretrained.GeneratorError as e:
      raise RunError(str(e)) from None
    except OSError as e:
      raise RunError(f'cannot copy --generator into {workdir}: {e.strerror or e}') from e
  flags_text = _flags_text(workdir, config, saved_step, changes)  # refused now, if damaged
  return latest, saved_step, data_record, flags_text, source


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
    generator = lambda: pretrained.load(source, data_shape, config.pretrained.generator_range,
                                        trainable=config.pretrained.finetune_generator,
                                        check=False)
  model = model_lib.build(config.override(jit_compile=jit_compile, chain_groups=groups),
                          data_shape, strategy, generator=generator)
  checkpoint = tf.train.Checkpoint(**model.checkpoint_items())
  if latest is not None:
    try:
      workdir_lib.restore_training(checkpoint, model, latest, workdir)
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
      workdir_lib.write_architecture(workdir, {**_architecture(config), **data_record})

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
      _fit(model, strategy, jit_compile, saves, dataset, config, start, chief)
    else:
      with stopper.deferred():
        _fit(model, strategy, jit_compile, saves, dataset, config, start, chief, stopper)
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


def _fit(model, strategy, jit_compile, saves, dataset, config, start, chief, stopper=None):
  """Steps start..train_steps, logging every `log_every` and saving every `checkpoint_every`
  steps; a non-finite quantity stops it before the next save. With a `stopper`, a stop signal
  ends it at the end of the steps in flight, which are then saved (`saves.at_stop`): while one
  can come, a call of the host loop runs at most about a sixth of the grace period."""
  batches = data.batches(dataset.train, config.train.batch_size, config.run.seed, start,
                         config.train.train_steps - start)
  iterator = iter(strategy.experimental_distribute_dataset(batches))
  run = make_multi_step(model, strategy, jit_compile)
  writer = (tf.summary.create_file_writer(os.path.join(config.run.workdir, 'tensorboard'))
            if chief else tf.summary.create_noop_writer())
  pictures = None
  if chief and config.run.image_every:
    try:
      pictures = evaluation.ImageSummaries(model, config, jit_compile)
    except (tf.errors.OpError, ValueError, RuntimeError, OSError) as e:
      logging.warning('TensorBoard pictures are off for this run: %s', e)
  agree = saving.stop_agreement(strategy) if stopper is not None else None
  # Calls cut short by time only where every replica's loop is in this process.
  cut = stopper is not None and not isinstance(strategy,
                                               tf.distribute.MultiWorkerMirroredStrategy)
  seconds_per_step, traced = None, False
  clock, window_start = time.perf_counter(), start
  step = start
  try:
    for stop in _boundaries(start, config.train.train_steps, config.run.log_every,
                            config.run.checkpoint_every, config.run.image_every):
      first = step
      while step < stop:
        end = stop
        if cut and seconds_per_step:
          end = min(stop, step + max(1, int(stopper.grace / 6 / seconds_per_step)))
        called = time.perf_counter()
        logs, finite = run(iterator, tf.constant(end - step, tf.int64))
        previous, step = step, int(model.step.numpy())
        if traced:  # the first call also traces (and compiles) the loop
          seconds_per_step = (time.perf_counter() - called) / max(step - previous, 1)
        traced = True
        bad = [name for name, ok in finite.items() if not bool(ok)]
        if bad:
          raise Diverged(
              f'training diverged between steps {first} and {step}: non-finite '
              f'{", ".join(bad)}; {saves.kept()}. Try a lower --gd_learning_rate or '
              '--energy_learning_rate, a smaller --train_langevin_step_size, or '
              '--energy_spectral_norm')
        if cut and stopper.requested is not None:
          break
      if step % config.run.log_every == 0 or step == config.train.train_steps:
        now = time.perf_counter()
        rate = (step - window_start) / max(now - clock, 1e-9)
        clock, window_start = now, step
        try:
          with writer.as_default(step=step):
            for name, value in logs.items():
              tf.summary.scalar(name, value)
            tf.summary.scalar('steps_per_second', rate)
        except tf.errors.OpError as e:  # a full disk: TensorBoard stops, training goes on
          logging.warning('TensorBoard scalars are off for this run: %s', saving.op_reason(e))
          writer = tf.summary.create_noop_writer()
        logging.info('step %d/%d (%.1f steps/s) %s', step, config.train.train_steps, rate,
                     ' '.join(f'{k}={float(v):.4g}' for k, v in logs.items()))
        model.reset_metrics()  # the next window's means start afresh
      if pictures is not None and (step % config.run.image_every == 0
                                   or step == config.train.train_steps):
        try:
          with writer.as_default(step=step):
            pictures.write(step)
        except (tf.errors.OpError, ValueError, RuntimeError, OSError) as e:  # never stop a run
          logging.warning('TensorBoard pictures are off for this run: %s',
                          str(e).splitlines()[0] if str(e) else type(e).__name__)
          pictures = None
      if step % config.run.checkpoint_every == 0 or step == config.train.train_steps:
        saves.periodic(step)
      if agree is not None and agree(stopper.requested is not None):
        saving.stop(saves, stopper, step)
  except signals.Stopped as e:  # a second signal, or one outside the deferred steps
    raise Interrupted(f'stopped by {signals.name(e.signum)} at step {int(model.step.numpy())}; '
                      f'{saving.where(saves.last_saved)}', signals.exit_code(e.signum)) from None
  finally:
    try:
      writer.flush()
    except (tf.errors.OpError, OSError):
      pass
  for device in tf.config.list_logical_devices('GPU'):
    peak = tf.config.experimental.get_memory_info(device.name)['peak']
    logging.info('peak memory of %s: %.0f MiB', device.name, peak / 2**20)


def evaluate_run(config, dataset=None):
  """The final evaluation of a trained run: G and E as sampling loads them (float32, one
  device, averaged over the last checkpoints when the run asks), metrics.json and figures
  in the workdir."""
  try:
    model, config = workdir_lib.load_run(config.run.workdir)
  except workdir_lib.LoadError as e:
    raise RunError(str(e)) from e
  if model.averaged_steps:
    logging.info('evaluating G and E averaged over the checkpoints of steps %s',
                 model.averaged_steps)
  if model.averages:
    logging.info('evaluating the moving averages of %s (decay %g)', ' and '.join(model.averages),
                 config.train.ema_decay)
  _save_keras(model, config.run.workdir)
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
