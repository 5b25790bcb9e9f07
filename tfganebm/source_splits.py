"""What a reader of a user's data returns, and the held-out part it sets aside.

Every reader (folders.py, arrays.py, tfds_source.py) answers `sources.read` with a
`Source` of two `Split`s. Data without its own held-out split gives a fraction of its
examples, drawn with one fixed seed for every run seed, so that runs of different seeds
are measured on the same examples.
"""

import dataclasses
from typing import Optional

import numpy as np

from tfganebm.images import DataError

MAX_HELD_OUT = 20000  # held-out images read into memory for the metrics (a seeded subset)
HELD_OUT_SEED = 0  # the held-out fraction's draw: one for every run seed, so seeds compare
MIN_HELD_OUT = 4  # held-out examples: halved into a reference and a floor of at least 2


@dataclasses.dataclass(frozen=True)
class Split:
  """Images or points of one split: `x` (uint8 / float32 array, or `ImageFiles`), labels."""
  x: object
  labels: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class Source:
  """What a reader found: the splits, the class names and a line for metrics.json."""
  train: Split
  held_out: Split
  description: dict
  class_names: Optional[tuple] = None
  scale: Optional[tuple] = None  # points: (low, high) of the min-max map to [-1, 1]


def hold_out(x, labels, fraction):
  """(x, labels, x_held, labels_held): a fixed-seed `fraction` (at least MIN_HELD_OUT) of
  the examples held out, both parts in their order; labels may be None."""
  n = len(x)
  count = max(MIN_HELD_OUT, round(fraction * n))
  held = np.sort(np.random.default_rng(HELD_OUT_SEED).permutation(n)[:count])
  keep = np.setdiff1d(np.arange(n), held)
  if labels is None:
    return x[keep], None, x[held], None
  return x[keep], labels[keep], x[held], labels[held]


def subset(n, limit):
  """Indices of at most `limit` of n items: all, or a seeded subset in order."""
  if n <= limit:
    return np.arange(n)
  return np.sort(np.random.default_rng(HELD_OUT_SEED).permutation(n)[:limit])


def check_split_sizes(where, num_train, num_held_out, train_fix):
  """DataError unless the metrics get MIN_HELD_OUT held-out and training 2 examples.

  Args:
    where: the source as the user wrote it, e.g. 'npy:PATH', to begin the message.
    num_train: training examples left after the held-out split.
    num_held_out: held-out examples.
    train_fix: the setting to lower for more training examples, e.g. '--held_out_fraction'.
  """
  if num_held_out < MIN_HELD_OUT:
    raise DataError(f'{where}: {num_held_out} held-out example(s); the metrics need at least '
                    f'{MIN_HELD_OUT}')
  if num_train < 2:
    raise DataError(f'{where}: {num_train} training example(s) left; give more, or lower '
                    f'{train_fix}')
