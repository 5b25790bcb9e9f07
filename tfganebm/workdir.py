"""A run's workdir: its layout, its lock, its config and checkpoint index; opening it for
inference or a resume is runs.py's (`load_run`, `restore_training`).

  WORKDIR/config.json            the run's `Config`, read back exactly
  WORKDIR/flags.txt              the same as flags (a flagfile), with its resume history
  WORKDIR/checkpoints/           ckpt-N.* (tf.train.Checkpoint), the `checkpoint` index,
                                 architecture.json (what the checkpoints hold), and
                                 stopped-N.* when a stop signal ended training between
                                 periodic checkpoints (newer than them; the next one removes it)
  WORKDIR/metrics.json, *.png    the final evaluation
  WORKDIR/generator.keras, energy.keras   G and E as sampling uses them (keras.models.load_model)
  WORKDIR/source_generator*      a refined run's copy of the user's generator (its G's file)
  WORKDIR/.lock                  held (flock) by the one trainer of this workdir; holds its PID

Training (`training.py`) writes it and resumes with `runs.restore_training` (everything);
sampling, evaluation and export open it with `runs.load_run` (G and E only).
"""

import errno
import fcntl
import json
import os
import re
import shutil
import time


from tfganebm import files

FLAGS_FILE = 'flags.txt'
CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.json'
CHECKPOINT_DIR = 'checkpoints'
ARCHITECTURE_FILE = 'architecture.json'
LOCK_FILE = '.lock'
STOPPED_PREFIX = 'stopped-'  # the checkpoint written at a stop signal (training.py)
_CHECKPOINT = re.compile(r'^ckpt-(\d+)\.index$')
_STOPPED = re.compile(r'^stopped-(\d+)\.index$')
# Any file of a checkpoint TensorFlow's saver writes: (kind, step).
_CHECKPOINT_FILE = re.compile(r'^(ckpt|stopped)-(\d+)\.(index|data-\d+-of-\d+)$')


class WorkdirError(ValueError):
  """A workdir that cannot be used as asked, with the reason and the fix."""


class LoadError(WorkdirError):
  """A workdir that cannot be loaded for inference, with the reason and the fix."""


def checkpoint_dir(workdir):
  return os.path.join(workdir, CHECKPOINT_DIR)


class Lock:
  """An exclusive OS lock (flock) on WORKDIR/.lock for the life of one writer.

  The kernel drops it when the process ends, however it ends, so a killed run leaves no
  stale lock. Use as a context manager or call `release`.
  """

  def __init__(self, workdir, patience=1.0):
    """Takes the lock, retrying for `patience` seconds (a `holder` probe holds it briefly).

    Raises:
      WorkdirError: another process holds it, or the lock file cannot be opened.
    """
    self.path = os.path.join(workdir, LOCK_FILE)
    try:
      self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(f'cannot open {self.path}: {e.strerror}; fix its permissions or use '
                         'another --workdir') from None
    deadline = time.monotonic() + patience
    while True:
      try:
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
          os.close(self._fd)
          raise
        if time.monotonic() > deadline:
          os.close(self._fd)
          raise WorkdirError(_in_use(workdir, _read_pid(self.path))) from None
        time.sleep(0.05)
    os.ftruncate(self._fd, 0)
    os.write(self._fd, f'{os.getpid()}\n'.encode())

  def release(self):
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.release()


def _in_use(workdir, pid):
  return (f'{workdir} is in use by another tfganebm process (PID {pid}); wait for it to '
          'finish or use another --workdir')


def check_free(workdir):
  """Raises WorkdirError when another process holds `workdir`'s lock (a probe: `Lock`
  takes it for real)."""
  pid = holder(workdir)
  if pid is not None:
    raise WorkdirError(_in_use(workdir, pid))


def _read_pid(path):
  try:
    with open(path) as f:
      return f.read().strip() or '?'
  except OSError:
    return '?'


def holder(workdir):
  """The PID (a string) of the process holding `workdir`'s lock, or None when it is free."""
  path = os.path.join(workdir, LOCK_FILE)
  if not os.path.exists(path):
    return None
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except OSError:
    return _read_pid(path)
  finally:
    os.close(fd)  # also drops the probe's shared lock at once
  return None


def check_writable(workdir):
  """Raises WorkdirError unless `workdir` is a writable directory or can be created as one;
  creates nothing."""
  if not workdir:
    raise WorkdirError('--workdir is empty; name the run directory, e.g. --workdir=runs/moons')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'--workdir={workdir} is a file, not a directory; choose another '
                       '--workdir')
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f'cannot create --workdir={workdir}: {existing} is a file; choose '
                       'another --workdir')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise WorkdirError(f'--workdir={workdir} is not writable ({existing} is read-only); fix '
                       'its permissions or choose another --workdir')


def checkpoint_steps(workdir):
  """Steps of the `ckpt-N.index` files in the checkpoint folder, newest first."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return []
  steps = [int(m.group(1)) for m in map(_CHECKPOINT.match, os.listdir(directory)) if m]
  return sorted(steps, reverse=True)


def _readable(prefix):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    return True
  except Exception:  # pylint: disable=broad-except  (damaged files fail in many ways)
    return False


def inside(directory, recorded):
  """`directory`/NAME for a path the `checkpoint` index records, NAME its last component:
  whatever the index says (a path relative to where an earlier command ran, an absolute
  one from a copied run), a run's checkpoints are read from its own folder."""
  return os.path.join(directory, os.path.basename(recorded.rstrip('/')))


def _stopped_steps(directory):
  if not os.path.isdir(directory):
    return []
  return sorted((int(m.group(1)) for m in map(_STOPPED.match, os.listdir(directory)) if m),
                reverse=True)


def _step_of(prefix):
  match = re.search(r'-(\d+)$', prefix)
  return int(match.group(1)) if match else -1


def latest_checkpoint(workdir, repair=False):
  """The path prefix of the newest checkpoint of `workdir`, or None when it has none.

  The `checkpoint` index names it, read as a name inside the checkpoint folder. When the
  index is missing, unreadable or names a missing file but ckpt-N files are there, the
  newest readable ckpt-N is returned instead and, with `repair`, the index is rewritten to
  list the readable ones, so the run resumes instead of starting over. A readable
  `stopped-N` newer than that (written at a stop signal) is the latest.

  Raises:
    WorkdirError: ckpt-N files exist but none can be read.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  directory = checkpoint_dir(workdir)
  found = None
  try:
    state = tf.train.get_checkpoint_state(directory)
  except Exception:  # pylint: disable=broad-except  (a garbled text proto)
    state = None
  if state is not None and state.model_checkpoint_path:
    path = inside(directory, state.model_checkpoint_path)
    if os.path.exists(path + '.index'):
      found = path
  steps, stopped = checkpoint_steps(workdir), _stopped_steps(directory)
  if found is None:
    readable = [os.path.join(directory, f'ckpt-{s}') for s in steps
                if _readable(os.path.join(directory, f'ckpt-{s}'))]
    if readable:
      found = readable[0]
      if repair:
        names = [os.path.basename(path) for path in readable]  # relative, as the manager's
        tf.compat.v1.train.update_checkpoint_state(
            directory, names[0], all_model_checkpoint_paths=list(reversed(names)))
  for step in stopped:
    path = os.path.join(directory, f'{STOPPED_PREFIX}{step}')
    if step > (_step_of(found) if found else -1) and _readable(path):
      return path
  if found is None and (steps or stopped):
    raise WorkdirError(f'{directory} holds checkpoint files but none is readable; move them '
                       'away to start over, or use another --workdir')
  return found


def remove_stopped(directory, keep=None):
  """Removes the `stopped-N` checkpoints of a checkpoint folder, but step `keep`'s."""
  for name in os.listdir(directory):
    match = _CHECKPOINT_FILE.match(name)
    if match and match.group(1) == 'stopped' and int(match.group(2)) != keep:
      try:
        os.remove(os.path.join(directory, name))
      except FileNotFoundError:
        pass


def remove_leftovers(workdir):
  """Removes what a save killed midway leaves in the checkpoint folder: `ckpt-N_temp/`
  staging folders and empty ckpt-N files. Only names TensorFlow's saver writes are touched."""
  remove_leftovers_in(checkpoint_dir(workdir))


def remove_leftovers_in(directory):
  """`remove_leftovers` of one checkpoint folder (a worker's scratch folder, say)."""
  if not os.path.isdir(directory):
    return
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    if re.match(r'^(ckpt|stopped)-\d+_temp', name) and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif (_CHECKPOINT_FILE.match(name) and os.path.isfile(path)
          and os.path.getsize(path) == 0):
      os.remove(path)


def read_architecture(workdir):
  """The architecture record of `workdir`'s checkpoints ({} when there is none)."""
  path = os.path.join(checkpoint_dir(workdir), ARCHITECTURE_FILE)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(f'{path} is damaged ({e}); restore it or use another --workdir') from None


def write_architecture(workdir, record):
  os.makedirs(checkpoint_dir(workdir), exist_ok=True)
  files.write_json(os.path.join(checkpoint_dir(workdir), ARCHITECTURE_FILE), record)


def write_config(workdir, config):
  files.write_json(os.path.join(workdir, CONFIG_FILE), config.to_dict())


def read_config(workdir):
  """The `Config` of a run: its config.json, or (a run written before config.json) its
  flags.txt read through the flags; None when it has neither.

  Raises:
    WorkdirError: a file that is not a config of tfganebm.
  """
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    if os.path.exists(path):
      with open(path) as f:
        return config_lib.Config.from_dict(json.load(f))
    path = os.path.join(workdir, FLAGS_FILE)
    if os.path.exists(path):
      from tfganebm import cli  # pylint: disable=g-import-not-at-top
      return cli.read_flagfile(path)
  except (OSError, ValueError) as e:  # ConfigError and JSON errors included
    reason = str(e).removeprefix(f'cannot read {path}: ')
    raise WorkdirError(f'cannot read {path}: {reason}; was it written by tfganebm.train? '
                       'restore it or use another --workdir') from None
  return None


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
    pid = holder(workdir)
    if pid is not None:
      raise LoadError(f'{workdir} is being written by a trainer (PID {pid}); wait for it or '
                      'choose an --out outside the workdir')


def no_checkpoint(workdir):
  return f'no checkpoint in {checkpoint_dir(workdir)}; train first (python -m tfganebm.train ...)'


def preflight(workdir, overrides=None, out=None):
  """The checks of `load_run` that need no TensorFlow: its config, the overrides, and
  checkpoint files at all; with `out`, `check_output` first. The commands run them before
  importing TensorFlow, so a bad --workdir or --out is refused in a fraction of a second
  rather than after its import.

  Returns:
    The run's config with `overrides`.

  Raises:
    LoadError: `out` refused, no config, an unreadable one, a bad override, or no
      checkpoint files.
  """
  if out is not None:
    check_output(workdir, out)
  try:
    config = read_config(workdir)
    if config is None:
      raise LoadError(f'no {CONFIG_FILE} or {FLAGS_FILE} in {workdir}; --workdir must be a '
                      'directory written by tfganebm.train')
    config = config.override(**(overrides or {}))
  except ValueError as e:  # WorkdirError, ConfigError
    raise LoadError(str(e)) from e
  directory = checkpoint_dir(workdir)
  if not checkpoint_steps(workdir) and not os.path.exists(os.path.join(directory, 'checkpoint')):
    raise LoadError(no_checkpoint(workdir))  # nothing that `latest_checkpoint` could find
  return config
