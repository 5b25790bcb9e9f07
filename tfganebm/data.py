"""Datasets as tf.data pipelines of batches in [-1, 1].

2D toys are looked up by name in `DATASETS` and built in memory with numpy and
scikit-learn; images (`IMAGE_SHAPES`: MNIST, CIFAR-10) come from `images.load`;
a user's data (`folder:`, `npy:`, `tfds:`) from `sources.read`. `load(config.data)`
gives any of them. Batches are drawn by a pipeline that is a
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
  labels: Optional[np.ndarray] = None  # [n] int: the moon or the mode of each point


def _min_max(x, scale):
  low, high = scale if scale is not None else (x.min(0), x.max(0))
  return (2.0 * (x - low) / (high - low) - 1.0).astype(np.float32), (low, high)


def moons(n, noise, seed, scale=None):
  """`sklearn.datasets.make_moons(n, noise=noise)`, min-max scaled to [-1, 1] per dimension.

  Default noise 0.05. Held-out data pass the training `scale` so both share one map.
  """
  from sklearn import datasets
  x, y = datasets.make_moons(n, noise=0.05 if noise is None else noise, random_state=seed)
  return Points(*_min_max(x, scale), labels=y.astype(np.int64))


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
                Mixture((centres / divisor).astype(np.float32), std / divisor), modes)


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
SOURCES = ('folder:PATH', 'npy:PATH', 'tfds:NAME[/CONFIG]')  # a user's data (sources.py)


def names():
  """Every built-in dataset name the `--dataset` flag accepts (and the SOURCES forms)."""
  return sorted(DATASETS) + sorted(IMAGE_SHAPES)


def dataset_problem(dataset):
  """Why the `--dataset` value cannot be a dataset (its syntax only; the data are checked
  when loaded), or None."""
  from tfganebm import sources  # pylint: disable=g-import-not-at-top
  if dataset in DATASETS or dataset in IMAGE_SHAPES:
    return None
  if sources.problem(dataset) == 'unknown':
    return (f'must be one of {", ".join(names())} or {", ".join(SOURCES)}, not {dataset!r}')
  return sources.problem(dataset)


def _dataset(data_config):
  return data_config if isinstance(data_config, str) else data_config.dataset


def shape_of(data_config):
  """The shape of one example of the data of `data_config` (a DataConfig, or a built-in
  name), without loading them: a run records it (`example_shape`) when it first loads them.

  Raises:
    ValueError: a user's dataset whose shape is not recorded.
  """
  if not isinstance(data_config, str) and data_config.example_shape:
    return tuple(data_config.example_shape)
  name = _dataset(data_config)
  if name in IMAGE_SHAPES:
    return IMAGE_SHAPES[name]
  if name in DATASETS:
    return (2,)
  raise ValueError(f'the shape of {name} is known once it is loaded (data.load)')


def is_image(data_config):
  """Whether the data are images ([H, W, C] examples); a user's array file is read to tell."""
  name = _dataset(data_config)
  if not isinstance(data_config, str) and data_config.example_shape:
    return len(data_config.example_shape) == 3
  if name in IMAGE_SHAPES or name.startswith(('folder:', 'tfds:')):
    return True
  if name.startswith('npy:'):
    from tfganebm import sources  # pylint: disable=g-import-not-at-top
    return sources.array_rank(sources.parse(name)[1]) > 2
  return False


def kind(data_config):
  """'images' or 'points': what evaluators.EVALUATORS is keyed by."""
  return 'images' if is_image(data_config) else 'points'


@dataclasses.dataclass(frozen=True)
class Data:
  """A run's training data and its held-out data.

  `train` and `held_out` are [n, *shape] arrays in [-1, 1] (float32) for points, or
  uint8 images (`to_unit_range` maps them); a folder's training images are
  `sources.ImageFiles`, decoded from disk as batches are drawn. `train_labels` and
  `held_out_labels` are class indices (None without labels); `mixture` is the
  held-out mixture of a Gaussian toy; `description` says where the held-out data come
  from (metrics.json); `scale` is the min-max map of a user's points.
  """
  name: str
  train: object
  held_out: np.ndarray
  held_out_labels: Optional[np.ndarray] = None
  train_labels: Optional[np.ndarray] = None
  mixture: Optional[Mixture] = None
  class_names: Optional[tuple] = None
  description: Optional[dict] = None
  scale: Optional[tuple] = None

  @property
  def shape(self):
    return tuple(self.train.shape[1:])

  @property
  def num_classes(self):
    if self.train_labels is None:
      return 0
    return len(self.class_names) if self.class_names else int(self.train_labels.max()) + 1

  def train_array(self, limit=None):
    """The training examples as one array (a folder's decoded), the first `limit` if given."""
    from tfganebm import sources  # pylint: disable=g-import-not-at-top
    return sources.as_array(self.train[:limit] if limit else self.train)


def to_unit_range(x):
  """uint8 images -> float32 in [-1, 1]; float32 points unchanged."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    from tfganebm import images  # pylint: disable=g-import-not-at-top
    return images.to_model_range(x)
  return x.astype(np.float32)


def load(data_config, seed=0, num_held_out=0):
  """Training and held-out data of the run's data section: the one data entry point.

  Args:
    data_config: a `config.DataConfig` (dataset, data_dir, download, num_examples,
      data_noise, image_size, channels, ...).
    seed: the run's seed (a 2D toy's draw; images ignore it).
    num_held_out: at least this many held-out 2D toy points (others: what the data hold).

  Raises:
    images.DataError: missing or damaged data, with the fix (a ValueError).
    ValueError: fewer training examples than `num_examples`.
  """
  name, num_examples = data_config.dataset, data_config.num_examples
  if name in IMAGE_SHAPES:
    from tfganebm import images  # pylint: disable=g-import-not-at-top
    train, train_labels = images.load(name, data_config.data_dir, 'train', data_config.download)
    held_out, labels = images.load(name, data_config.data_dir, 'test', data_config.download)
    data = Data(name, train, held_out, held_out_labels=labels, train_labels=train_labels,
                description=dict(source=name, held_out='test split', num_held_out=len(held_out)))
    return _first(data, num_examples)
  if name in DATASETS:
    num_train = num_examples or DEFAULT_NUM_POINTS
    train, held_out = load_points(name, num_train, data_config.data_noise, seed,
                                  max(num_train, num_held_out))
    return Data(name, train.x, held_out.x, mixture=held_out.mixture, scale=train.scale,
                train_labels=train.labels, held_out_labels=held_out.labels,
                description=dict(source=name, held_out=f'a fresh draw (seed {seed + 1})',
                                 num_held_out=len(held_out.x)))
  from tfganebm import sources  # pylint: disable=g-import-not-at-top
  found = sources.read(name, data_config)
  data = Data(name, found.train.x, found.held_out.x, held_out_labels=found.held_out.labels,
              train_labels=found.train.labels, class_names=found.class_names,
              description=found.description, scale=found.scale)
  return _first(data, num_examples)


def _first(data, num_examples):
  """`data` with its first `num_examples` training examples (0: all)."""
  if not num_examples:
    return data
  if num_examples > len(data.train):
    raise ValueError(f'--num_examples={num_examples} but {data.name} has {len(data.train)} '
                     'training examples; lower it or use 0 (all)')
  labels = None if data.train_labels is None else data.train_labels[:num_examples]
  return dataclasses.replace(data, train=data.train[:num_examples], train_labels=labels)


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


def batches(x, batch_size, seed, start_step=0, num_steps=None, labels=None):
  """A tf.data pipeline of shuffled batches, each a pure function of (seed, step).

  Epochs are reshuffled with a stateless permutation; the last partial batch of
  an epoch is dropped. Starting at `start_step` yields exactly the batches an
  uninterrupted pipeline yields from that step on.

  Args:
    x: [n, *data_shape] array: float32 in [-1, 1], or uint8 images (mapped to [-1, 1]), or
      `sources.ImageFiles` (decoded batch by batch: larger than memory is fine).
    batch_size: global batch size, <= n.
    seed: int, the run's seed.
    start_step: first step to yield.
    num_steps: number of batches, None for infinitely many.
    labels: [n] class indices of x, or None.

  Returns:
    tf.data.Dataset of [batch_size, *data_shape] float32 tensors; with `labels`, of
    (x, y [batch_size] int32) pairs, y the labels of x's examples.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (flag parsing stays TF-free)
  from tfganebm import sources  # pylint: disable=g-import-not-at-top
  n = len(x)
  if batch_size > n:
    raise ValueError(f'batch size {batch_size} exceeds the {n} training examples; '
                     'lower --batch_size or raise --num_examples')
  steps_per_epoch = n // batch_size
  files = isinstance(x, sources.ImageFiles)
  # uint8 images stay uint8 in memory (4x smaller) until batched; files stay on disk.
  data = tf.constant(x.paths if files else x)

  def to_float(batch):
    if batch.dtype == tf.uint8:
      return tf.cast(batch, tf.float32) / 127.5 - 1.0
    return tf.cast(batch, tf.float32)
  stop = math.inf if num_steps is None else start_step + num_steps

  def indices_at(step):  # the examples' indices of batch `step`
    epoch, index = step // steps_per_epoch, step % steps_per_epoch
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return order[index * batch_size:(index + 1) * batch_size]

  examples_at = lambda step: tf.gather(data, indices_at(step))  # the examples (or files)

  steps = (tf.data.Dataset.range(start_step, stop) if num_steps is not None
           else tf.data.Dataset.counter(start_step))
  if files:  # the same order of examples, each file decoded in parallel
    images = steps.map(examples_at).unbatch().map(x.decode, num_parallel_calls=tf.data.AUTOTUNE,
                                                deterministic=True)
    result = images.batch(batch_size).map(to_float)
  else:
    result = steps.map(lambda step: to_float(examples_at(step)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if labels is not None:
    label_data = tf.constant(np.asarray(labels, np.int32))
    steps = (tf.data.Dataset.range(start_step, stop) if num_steps is not None
             else tf.data.Dataset.counter(start_step))
    result = tf.data.Dataset.zip(result, steps.map(lambda step: tf.gather(label_data,
                                                                          indices_at(step))))
  return result.prefetch(tf.data.AUTOTUNE)
