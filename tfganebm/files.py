"""Writing files so that a crash never leaves a half-written one behind."""

import contextlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds."""
  directory, name = os.path.split(os.path.abspath(path))
  handle, temporary = tempfile.mkstemp(prefix=f'.{name}.', suffix=os.path.splitext(name)[1],
                                       dir=directory)
  os.close(handle)
  try:
    yield temporary
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def write_text(path, text):
  with atomic_path(path) as temporary, open(temporary, 'w') as f:
    f.write(text)


def write_json(path, value):
  write_text(path, json.dumps(value, indent=2, sort_keys=True) + '\n')


def write_npy(path, array):
  with atomic_path(path) as temporary:
    np.save(temporary, np.asarray(array, np.float32))
