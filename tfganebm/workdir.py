"""A run's workdir: its layout, its lock, and reading its checkpoints.

  WORKDIR/flags.txt              the flags of the run (a flagfile), with its resume history
  WORKDIR/checkpoints/           ckpt-N.* (tf.train.Checkpoint), the `checkpoint` index and
                                 architecture.json (what the checkpoints hold)
  WORKDIR/.lock                  held (flock) by the one trainer of this workdir; holds its PID

Training (`training.py`) writes it; sampling and export (`runs.py`) read G and E only.
"""

import errno
import fcntl
import json
import os
import re
import shutil
import time

import numpy as np

from tfganebm import files

FLAGS_FILE = 'flags.txt'
CHECKPOINT_DIR = 'checkpoints'
ARCHITECTURE_FILE = 'architecture.json'
LOCK_FILE = '.lock'
_CHECKPOINT = re.compile(r'^ckpt-(\d+)\.index$')


class WorkdirError(ValueError):
  """A workdir that cannot be used as asked, with the reason and the fix."""


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
          raise WorkdirError(f'{workdir} is in use by another tfganebm process (PID '
                             f'{_read_pid(self.path)}); wait for it to finish or use another '
                             '--workdir') from None
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


def latest_checkpoint(workdir, repair=False):
  """The path prefix of the newest checkpoint of `workdir`, or None when it has none.

  The `checkpoint` index names it. When the index is missing or unreadable but
  ckpt-N files are there (a deleted or damaged index), the newest readable ckpt-N
  is returned instead and, with `repair`, the index is rewritten to list the
  readable ones, so the run resumes instead of starting over.

  Raises:
    WorkdirError: ckpt-N files exist but none can be read.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  directory = checkpoint_dir(workdir)
  try:
    state = tf.train.get_checkpoint_state(directory)
  except Exception:  # pylint: disable=broad-except  (a garbled text proto)
    state = None
  if state is not None and state.model_checkpoint_path:
    path = state.model_checkpoint_path
    if not os.path.isabs(path):
      path = os.path.join(directory, path)
    if os.path.exists(path + '.index'):
      return path
  steps = checkpoint_steps(workdir)
  readable = [os.path.join(directory, f'ckpt-{s}') for s in steps
              if _readable(os.path.join(directory, f'ckpt-{s}'))]
  if not readable:
    if steps:
      raise WorkdirError(f'{directory} holds ckpt-* files but none is readable; move them '
                         'away to start over, or use another --workdir')
    return None
  if repair:
    names = [os.path.basename(path) for path in readable]  # relative, as CheckpointManager's
    tf.compat.v1.train.update_checkpoint_state(
        directory, names[0], all_model_checkpoint_paths=list(reversed(names)))
  return readable[0]


def remove_leftovers(workdir):
  """Removes what a save killed midway leaves in the checkpoint folder: `ckpt-N_temp/`
  staging folders and empty ckpt-N files. Only names TensorFlow's saver writes are touched."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    if re.match(r'^ckpt-\d+_temp', name) and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif (re.match(r'^ckpt-\d+\.(index|data-\d+-of-\d+)$', name) and os.path.isfile(path)
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


def restore_networks(model, path):
  """Restores only G, E (when the model has one) and the step from checkpoint `path`.

  What inference needs: it works whatever replica count, strategy and precision the
  run trained with (the replay buffer, D and the optimizers are not read).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  items = dict(generator=model.generator, step=model.step)
  if model.energy is not None:
    items['energy'] = model.energy
  tf.train.Checkpoint(**items).restore(path).expect_partial().assert_existing_objects_matched()


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
  partial = tf.train.Checkpoint(**networks)
  try:
    state = tf.train.get_checkpoint_state(checkpoint_dir(workdir))
  except Exception:  # pylint: disable=broad-except  (a garbled index: the files decide)
    state = None
  if state is not None and state.all_model_checkpoint_paths:
    paths = list(state.all_model_checkpoint_paths)[-count:]
  else:  # a deleted or garbled index: the newest ckpt-N files
    paths = [os.path.join(checkpoint_dir(workdir), f'ckpt-{s}')
             for s in reversed(checkpoint_steps(workdir)[:count])]
  snapshots = []
  for path in paths:
    partial.restore(path).expect_partial()
    snapshots.append([network.get_weights() for network in networks.values()])
  if snapshots:
    for i, network in enumerate(networks.values()):
      network.set_weights([np.mean(w, axis=0) for w in zip(*(s[i] for s in snapshots))])
  model.averaged_steps = ([int(path.rsplit('-', 1)[1]) for path in paths]
                          if len(paths) > 1 else None)
