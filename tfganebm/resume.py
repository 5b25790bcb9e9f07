"""What a run's workdir allows before training touches it: a resume that keeps what the
checkpoint fixes (the architecture, the data, the step), and flags.txt with its history."""

import os

import numpy as np
import tensorflow as tf

from tfganebm import config as config_lib
from tfganebm import pretrained
from tfganebm import workdir as workdir_lib
from tfganebm.errors import RunError


def check_resume(workdir, config, step, data_record=None):
  """Refuses a resume that would change what the checkpoint fixes; returns the changes of
  the settings a resume may change, as (name, saved, requested) triples.

  `step` is the checkpoint's step (None: no checkpoint, anything goes); `data_record` the
  size and digest of the training data now (`data_record`).
  """
  if step is None:
    return []
  requested = architecture(config)
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
  _refuse_changes(workdir, architecture(saved), requested)
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
TRAINING_LABELS = 'training_labels_digest'  # a conditional run's: the labels it is trained on


def data_record(dataset, labels=False):
  """The training data's size and digest (of a folder's file list, or of the array); with
  `labels` (a conditional run), also the digest of the training labels."""
  import hashlib  # pylint: disable=g-import-not-at-top
  from tfganebm import sources  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256(str(tuple(dataset.train.shape)).encode())
  if isinstance(dataset.train, sources.ImageFiles):
    digest.update('\n'.join(dataset.train.paths).encode())
  else:
    digest.update(np.ascontiguousarray(dataset.train).tobytes())
  record = {TRAINING_EXAMPLES: len(dataset.train), TRAINING_DIGEST: digest.hexdigest()[:16]}
  if labels and dataset.train_labels is not None:
    record[TRAINING_LABELS] = hashlib.sha256(
        np.ascontiguousarray(dataset.train_labels, np.int64).tobytes()).hexdigest()[:16]
  return record


def architecture(config):
  """{flag name: value} of the settings a resume must not change: the checkpoint fixes them
  (variable shapes, the RNG stream, which data the step counter indexes)."""
  flat = config.flat()
  record = {name: flat[name] for name in config_lib.fixed_by_checkpoint()}
  return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


def flags_text(workdir, config, step, changes):
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


def check_workdir(config, dataset, chief, source):
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
  record = data_record(dataset, labels=config.networks.conditional)
  changes = check_resume(workdir, config, saved_step, record)
  if source is not None and chief:  # now that the resume is allowed
    try:
      source = pretrained.keep_copy(workdir, source)
    except pretrained.GeneratorError as e:
      raise RunError(str(e)) from None
    except OSError as e:
      raise RunError(f'cannot copy --generator into {workdir}: {e.strerror or e}') from e
  text = flags_text(workdir, config, saved_step, changes)  # refused now, if damaged
  return latest, saved_step, record, text, source
