"""Datasets as tf.data pipelines of batches in [-1, 1].

Every dataset is looked up by name in `DATASETS`. A 2D toy is built in memory
with numpy and scikit-learn; batches are drawn by a pipeline that is a pure
function of `(seed, step)`, so a resumed run sees exactly the batches an
uninterrupted run would have seen, without checkpointing an iterator.
"""

import dataclasses
import math
from typing import Callable, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Mixture:
  """Centres and per-dimension std of an equal-weight Gaussian mixture, in data space."""
  centres: np.ndarray  # [num_modes, 2]
  std: float


@dataclasses.dataclass(frozen=True)
class Points:
  """A 2D dataset: `x` [n, 2] float32, plus what is needed to make held-out data."""
  x: np.ndarray
  scale: Optional[tuple]  # (low, high) of the min-max scaling, None for fixed divisors
  mixture: Optional[Mixture] = None


def _min_max(x, scale):
  low, high = scale if scale is not None else (x.min(0), x.max(0))
  return (2.0 * (x - low) / (high - low) - 1.0).astype(np.float32), (low, high)


def moons(n, noise, seed, scale=None):
  """`sklearn.datasets.make_moons(n, noise=noise)`, min-max scaled to [-1, 1] per dimension.

  Default noise 0.05. Held-out data pass the training `scale` so both share one map.
  """
  from sklearn import datasets
  x, _ = datasets.make_moons(n, noise=0.05 if noise is None else noise, random_state=seed)
  return Points(*_min_max(x, scale))


def swissroll(n, noise, seed, scale=None):
  """`sklearn.datasets.make_swiss_roll(n, noise=noise)`, columns 0 and 2, min-max scaled to [-1, 1].

  Default noise 0.25.
  """
  from sklearn import datasets
  x, _ = datasets.make_swiss_roll(n, noise=0.25 if noise is None else noise, random_state=seed)
  return Points(*_min_max(x[:, [0, 2]], scale))


def _mixture(n, centres, std, divisor, seed):
  rng = np.random.default_rng(seed)
  modes = rng.integers(len(centres), size=n)
  x = centres[modes] + std * rng.standard_normal((n, 2))
  return Points((x / divisor).astype(np.float32), None,
                Mixture((centres / divisor).astype(np.float32), std / divisor))


def eight_gaussians(n, noise, seed, scale=None):
  """8 equal-weight Gaussians centred at 2(cos 2πk/8, sin 2πk/8), std 0.02, all divided by 2.5.

  So: a ring of radius 0.8, std 0.008. `noise` overrides the std before division.
  """
  del scale
  angles = 2 * np.pi * np.arange(8) / 8
  centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
  return _mixture(n, centres, 0.02 if noise is None else noise, 2.5, seed)


def twentyfive_gaussians(n, noise, seed, scale=None):
  """25 equal-weight Gaussians centred on {-4,-2,0,2,4}^2, std 0.05, all divided by 5.

  So: the grid {-0.8,...,0.8}^2, std 0.01. `noise` overrides the std before division.
  """
  del scale
  grid = np.arange(-4, 5, 2, dtype=np.float64)
  centres = np.stack(np.meshgrid(grid, grid, indexing='ij'), -1).reshape(-1, 2)
  return _mixture(n, centres, 0.05 if noise is None else noise, 5.0, seed)


# name -> builder(n, noise, seed, scale) -> Points. Adding a dataset is one entry.
DATASETS: dict[str, Callable[..., Points]] = {
    'moons': moons,
    'swissroll': swissroll,
    '8gaussians': eight_gaussians,
    '25gaussians': twentyfive_gaussians,
}


def load_points(name, num_examples, noise, seed):
  """Training and held-out points of a 2D dataset.

  Returns:
    (train, held_out): `Points`; held-out data use seed + 1 and the training scaling.
  """
  if name not in DATASETS:
    raise ValueError(f'unknown dataset {name!r}; choose one of {sorted(DATASETS)}')
  train = DATASETS[name](num_examples, noise, seed)
  held_out = DATASETS[name](num_examples, noise, seed + 1, scale=train.scale)
  return train, held_out


def batches(x, batch_size, seed, start_step=0, num_steps=None):
  """A tf.data pipeline of shuffled batches, each a pure function of (seed, step).

  Epochs are reshuffled with a stateless permutation; the last partial batch of
  an epoch is dropped. Starting at `start_step` yields exactly the batches an
  uninterrupted pipeline yields from that step on.

  Args:
    x: [n, *data_shape] array in [-1, 1].
    batch_size: global batch size, <= n.
    seed: int, the run's seed.
    start_step: first step to yield.
    num_steps: number of batches, None for infinitely many.

  Returns:
    tf.data.Dataset of [batch_size, *data_shape] float32 tensors.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (flag parsing stays TF-free)
  n = len(x)
  if batch_size > n:
    raise ValueError(f'batch size {batch_size} exceeds the {n} training examples; '
                     'lower --batch_size or raise --num_examples')
  steps_per_epoch = n // batch_size
  data = tf.constant(x, tf.float32)
  stop = math.inf if num_steps is None else start_step + num_steps

  def batch_at(step):
    epoch, index = step // steps_per_epoch, step % steps_per_epoch
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return tf.gather(data, order[index * batch_size:(index + 1) * batch_size])

  steps = (tf.data.Dataset.range(start_step, stop) if num_steps is not None
           else tf.data.Dataset.counter(start_step))
  return steps.map(batch_at, num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=True).prefetch(tf.data.AUTOTUNE)
