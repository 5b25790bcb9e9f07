"""Writing files so that a crash never leaves a half-written one behind."""

import contextlib
import json
import math
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

  An OSError of the temporary file (a full disk, a read-only folder) is raised as one of
  `path`, the file the user asked for; the temporary file is removed.
  """
  directory, name = os.path.split(os.path.abspath(path))
  try:
    handle, temporary = tempfile.mkstemp(prefix=f'.{name}.', suffix=os.path.splitext(name)[1],
                                         dir=directory)
  except OSError as e:
    raise OSError(e.errno, e.strerror, path) from None
  os.close(handle)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
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
