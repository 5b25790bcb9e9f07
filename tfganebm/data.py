"""Datasets as tf.data pipelines of batches in [-1, 1].

2D toys are looked up by name in `DATASETS` and built in memory with numpy and
scikit-learn; images (`IMAGE_SHAPES`: MNIST, CIFAR-10) come from `images.load`.
`load(name, ...)` gives either kind. Batches are drawn by a pipeline that is a
pure function of `(seed, step)`, so a resumed run sees exactly the batches an
uninterrupted run would have seen, without checkpointing an iterator.
"""

import dataclasses
import math
from typing import Callable, Optional

import numpy as np

from tfganebm.images import IMAGE_SHAPES


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


DEFAULT_NUM_POINTS = 15000  # training points of a 2D toy when --num_examples is 0


def names():
  """Every dataset name the `--dataset` flag accepts."""
  return sorted(DATASETS) + sorted(IMAGE_SHAPES)


def kind(name):
  """'images' or 'points' (a 2D toy): what evaluation.EVALUATORS is keyed by."""
  return 'images' if is_image(name) else 'points'


def is_image(name):
  return name in IMAGE_SHAPES


def shape_of(name):
  """The shape of one example of dataset `name`, without loading it."""
  return IMAGE_SHAPES[name] if is_image(name) else (2,)


@dataclasses.dataclass(frozen=True)
class Data:
  """A run's training data and its held-out data.

  `train` and `held_out` are [n, *shape] arrays in [-1, 1] (float32) for 2D
  toys, or uint8 images (`to_unit_range` maps them); `train_labels` and
  `held_out_labels` are the classes of images (None for 2D); `mixture` is the
  held-out mixture of a Gaussian toy.
  """
  name: str
  train: np.ndarray
  held_out: np.ndarray
  held_out_labels: Optional[np.ndarray] = None
  train_labels: Optional[np.ndarray] = None
  mixture: Optional[Mixture] = None

  @property
  def shape(self):
    return self.train.shape[1:]


def to_unit_range(x):
  """uint8 images -> float32 in [-1, 1]; float32 points unchanged."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    from tfganebm import images  # pylint: disable=g-import-not-at-top
    return images.to_model_range(x)
  return x.astype(np.float32)


def load(name, num_examples=0, noise=None, seed=0, data_dir=None, download=False,
         num_held_out=0):
  """Training and held-out data of any dataset.

  Args:
    name: a name of `names()`.
    num_examples: training examples; 0 means 15,000 points for a 2D toy and the
      whole training split for images (else its first `num_examples` images).
    noise, seed: of a 2D toy (`load_points`); images ignore them.
    data_dir, download: where images are looked for (`images.load`).
    num_held_out: at least this many held-out 2D points (images: the test split).

  Raises:
    images.DataError: no usable copy of an image dataset.
    ValueError: an unknown name, or fewer training images than `num_examples`.
  """
  if is_image(name):
    from tfganebm import images  # pylint: disable=g-import-not-at-top
    train, train_labels = images.load(name, data_dir, 'train', download)
    held_out, labels = images.load(name, data_dir, 'test', download)
    if num_examples:
      if num_examples > len(train):
        raise ValueError(f'--num_examples={num_examples} but {name} has {len(train)} training '
                         'images; lower it or use 0 (all)')
      train, train_labels = train[:num_examples], train_labels[:num_examples]
    return Data(name, train, held_out, held_out_labels=labels, train_labels=train_labels)
  num_train = num_examples or DEFAULT_NUM_POINTS
  train, held_out = load_points(name, num_train, noise, seed, max(num_train, num_held_out))
  return Data(name, train.x, held_out.x, mixture=held_out.mixture)


def load_points(name, num_examples, noise, seed, num_held_out=None):
  """Training and held-out points of a 2D dataset.

  Returns:
    (train, held_out): `Points`; `num_held_out` (default num_examples) held-out points use
    seed + 1 and the scaling of these training points, whatever their number.
  """
  if name not in DATASETS:
    raise ValueError(f'unknown dataset {name!r}; choose one of {sorted(DATASETS)}')
  train = DATASETS[name](num_examples, noise, seed)
  held_out = DATASETS[name](num_held_out or num_examples, noise, seed + 1, scale=train.scale)
  return train, held_out


def batches(x, batch_size, seed, start_step=0, num_steps=None):
  """A tf.data pipeline of shuffled batches, each a pure function of (seed, step).

  Epochs are reshuffled with a stateless permutation; the last partial batch of
  an epoch is dropped. Starting at `start_step` yields exactly the batches an
  uninterrupted pipeline yields from that step on.

  Args:
    x: [n, *data_shape] array: float32 in [-1, 1], or uint8 images (mapped to [-1, 1]).
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
  data = tf.constant(x)  # uint8 images stay uint8 in memory (4x smaller) until batched

  def to_float(batch):
    if batch.dtype == tf.uint8:
      return tf.cast(batch, tf.float32) / 127.5 - 1.0
    return tf.cast(batch, tf.float32)
  stop = math.inf if num_steps is None else start_step + num_steps

  def batch_at(step):
    epoch, index = step // steps_per_epoch, step % steps_per_epoch
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return to_float(tf.gather(data, order[index * batch_size:(index + 1) * batch_size]))

  steps = (tf.data.Dataset.range(start_step, stop) if num_steps is not None
           else tf.data.Dataset.counter(start_step))
  return steps.map(batch_at, num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=True).prefetch(tf.data.AUTOTUNE)
