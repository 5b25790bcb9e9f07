"""Seeding Keras for one build without changing the caller's random state."""

import contextlib
import random

import numpy as np


@contextlib.contextmanager
def seeded(seed):
  """Inside: Keras, TensorFlow, NumPy and Python seeded with `seed` (initial weights and
  `fit`'s shuffling are a function of it). Afterwards, NumPy's and Python's global random
  states are what they were before, so a library call (`load_run`, the metrics' classifier)
  leaves a user's own random streams where it found them. TensorFlow's global seed stays
  `seed`: TF has no public way to read the previous one back."""
  import keras  # pylint: disable=g-import-not-at-top
  python_state, numpy_state = random.getstate(), np.random.get_state()
  try:
    keras.utils.set_random_seed(seed)
    yield
  finally:
    random.setstate(python_state)
    np.random.set_state(numpy_state)
