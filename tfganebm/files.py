"""Writing files and directories so that a crash never leaves a half-written one behind."""

import contextlib
import dataclasses
import errno
import json
import math
import os
import secrets
import shutil
from typing import Callable

from absl import logging
import numpy as np


def _create_new(directory, prefix, suffix, create):
  """create(path) for an unused path `directory/prefix<8 random characters>suffix`; returns it.

  `create` makes the file or directory with the mode it asks for less the umask, as the
  OS applies it: reading the umask would mean setting it, which every thread would see.
  """
  for _ in range(100):
    path = os.path.join(directory, f'{prefix}{secrets.token_hex(4)}{suffix}')
    try:
      create(path)
    except FileExistsError:
      continue
    return path
  raise FileExistsError(errno.EEXIST, 'no unused temporary name', os.path.join(directory, prefix))


def _new_file(path):
  os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # a normal file's mode


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

  An OSError of the temporary file (a full disk, a read-only folder) is raised as one of
  `path`, the file the user asked for; the temporary file is removed.
  """
  directory, name = os.path.split(os.path.abspath(path))
  try:
    temporary = _create_new(directory, f'.{name}.', os.path.splitext(name)[1], _new_file)
  except OSError as e:
    raise OSError(e.errno, e.strerror, path) from None
  try:
    yield temporary
    os.replace(temporary, path)
  except OSError as e:
    if e.filename in (temporary, None) and e.errno is not None:
      raise OSError(e.errno, e.strerror, path) from None
    raise
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def write_text(path, text):
  with atomic_path(path) as temporary, open(temporary, 'w') as f:
    f.write(text)


def _strict_json(value):
  """`value` with numpy scalars and arrays made Python ones, and NaN and +-inf made None."""
  if isinstance(value, (np.ndarray, np.generic)):
    value = value.tolist()  # nested lists of Python scalars, or one scalar
  if isinstance(value, dict):
    return {key: _strict_json(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_strict_json(item) for item in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_json(path, value):
  """Writes `value` as strict JSON, atomically: what any JSON parser reads.

  A non-finite float (Python or numpy, at any depth of dicts, lists and tuples)
  is written as `null`, where `json.dumps` would write the bare `NaN` or
  `Infinity` that strict parsers refuse; numpy scalars and arrays become plain
  numbers and lists.

  Args:
    path: the file to write.
    value: dicts, lists, tuples, numpy arrays, and str, bool, int, float, None or
      numpy scalars.

  Raises:
    TypeError: for any other type in `value`.
  """
  text = json.dumps(_strict_json(value), indent=2, sort_keys=True, allow_nan=False)
  write_text(path, text + '\n')


def write_npy(path, array):
  with atomic_path(path) as temporary:
    np.save(temporary, np.asarray(array, np.float32))


def contains(directory, path):
  """Whether `path` is `directory` or lies inside it, links resolved."""
  directory, path = os.path.realpath(directory), os.path.realpath(path)
  return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except (ProcessLookupError, OverflowError):
    return False
  except PermissionError:  # another user's live process
    return True
  return True


def _temp_dir(kind, out, mode=0o700):
  """A new directory `.<kind>-<name of out>-<pid>-<random>` beside `out` (`mode` less the
  umask; the random part has no '-')."""
  parent, name = os.path.split(os.path.abspath(out))
  return _create_new(parent, f'.{kind}-{name}-{os.getpid()}-', '', lambda p: os.mkdir(p, mode))


@dataclasses.dataclass(frozen=True)
class Refusal:
  """Why a directory may not be replaced: `reason` one of StagedReplace.refusal's."""
  reason: str
  detail: object = None


class LeftoverError(Exception):
  """What an interrupted replace left at `path` could not be removed or put back."""

  def __init__(self, path, error):
    super().__init__(f'cannot clean up {path}: {error.strerror or error}')
    self.path, self.error = path, error


# A replaced directory waits in `.replaced-<name>-<pid>-<random>/old` until the new one is in.
_REPLACED = 'replaced'


@dataclasses.dataclass(frozen=True)
class StagedReplace:
  """A directory `out` written whole in a staging directory beside it, then renamed into
  place, replacing only an earlier one of its own kind; what a killed writer left beside
  `out` is recognised by name, process id and contents, and cleaned by the next.

  Attributes:
    kind: names the staging directories, `.<kind>-<name of out>-<pid>-<random>`.
    is_earlier: whether a non-empty directory is an earlier `out` (e.g. by its record file).
    owns: owns(directory, entry): whether `directory/entry` is a name the writer writes,
      as the kind of file it writes there; anything else is never replaced or deleted.
  """
  kind: str
  is_earlier: Callable[[str], bool]
  owns: Callable[[str, str], bool]

  def refusal(self, out, overwrite, protected=()):
    """Why writing `out` could replace more than an earlier one (a Refusal), or None.

    Without `overwrite`, any existing `out` is refused; with it, only an earlier `out`
    (or an empty directory) that holds neither a `protected` path, the current directory
    nor the home directory. Reasons, in the order checked (detail): link (the path it
    points to), file, root_or_home, current_directory, protected (the protected path),
    unreadable (the OSError), not_earlier, foreign (the sorted names not ours), exists.
    """
    if not os.path.lexists(out):
      return None
    if os.path.islink(out):
      return Refusal('link', os.path.realpath(out))
    if not os.path.isdir(out):
      return Refusal('file')
    real = os.path.realpath(out)
    if os.path.dirname(real) == real or contains(out, os.path.expanduser('~')):
      return Refusal('root_or_home')
    if contains(out, os.getcwd()):
      return Refusal('current_directory')
    for path in protected:
      if path is not None and contains(out, path):
        return Refusal('protected', path)
    try:
      entries = os.listdir(out)
    except OSError as e:
      return Refusal('unreadable', e)
    if entries and not self.is_earlier(out):
      return Refusal('not_earlier')
    foreign = sorted(entry for entry in entries if not self.owns(out, entry))
    if foreign:
      return Refusal('foreign', foreign)
    return None if overwrite else Refusal('exists')

  def _holds_only_own(self, path, kind):
    """Whether a leftover of `kind` holds only what the writer writes: a staging folder its
    files, a `.replaced-*` folder one `old` directory; anything else is not ours to delete."""
    try:
      entries = os.listdir(path)
      if kind == _REPLACED:
        if not set(entries) <= {'old'}:
          return False
        if not entries:
          return True
        path, entries = os.path.join(path, 'old'), os.listdir(os.path.join(path, 'old'))
    except OSError:
      return False
    return all(self.owns(path, entry) for entry in entries)

  def _leftovers(self, out, kind):
    """Directories of `kind` (self.kind or 'replaced') that a dead writer of `out` left."""
    parent, name = os.path.split(os.path.abspath(out))
    prefix = f'.{kind}-{name}-'
    try:
      entries = os.listdir(parent)
    except OSError:
      return []
    found = []
    for entry in entries:
      if not entry.startswith(prefix):
        continue
      # <pid>-<random>; the random part has no '-', so the out `a` never claims those of `a-1`.
      pid, dash, rest = entry[len(prefix):].partition('-')
      path = os.path.join(parent, entry)
      if (dash and rest and '-' not in rest and pid.isascii() and pid.isdigit()
          and os.path.isdir(path) and not os.path.islink(path) and not _pid_alive(int(pid))
          and self._holds_only_own(path, kind)):
        found.append(path)
    return found

  def clean_leftovers(self, out):
    """Removes what a killed writer of `out` left beside it, putting back an `out` it moved away.

    A kill between moving the old `out` aside and moving the new one in leaves `out`
    missing and the old one in `.replaced-*/old`: that one is restored.

    Raises:
      LeftoverError: a leftover could not be removed or restored.
    """
    path = None
    try:
      replaced = sorted(self._leftovers(out, _REPLACED), key=os.path.getmtime, reverse=True)
      for path in replaced:
        old = os.path.join(path, 'old')
        if not os.path.lexists(out) and os.path.isdir(old):
          os.rename(old, out)
          logging.warning('restored %s, which an interrupted %s had moved to %s', out, self.kind,
                          old)
        shutil.rmtree(path)
      for path in self._leftovers(out, self.kind):
        shutil.rmtree(path)
    except OSError as e:
      raise LeftoverError(path, e) from e

  def make_staging(self, out):
    """A new, empty staging directory beside `out` (its parents made), with the mode a
    directory made by hand would have. Raises OSError."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return _temp_dir(self.kind, out, mode=0o777)

  @staticmethod
  def move_into_place(staging, out):
    """Renames `staging` to `out`, replacing an existing `out` (checked by `refusal`)."""
    if not os.path.lexists(out):
      os.rename(staging, out)
      return
    trash = _temp_dir(_REPLACED, out)
    old = os.path.join(trash, 'old')
    os.rename(out, old)
    try:
      os.rename(staging, out)
    except BaseException:
      os.rename(old, out)
      raise
    shutil.rmtree(trash, ignore_errors=True)  # what stays is cleaned by the next writer
