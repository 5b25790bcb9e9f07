"""`tfds:NAME[/CONFIG]`: the images (and class labels) of a TensorFlow Datasets dataset.

Read offline from `--data_dir` (or the TFDS default folder) unless `--download` and the
network answers; each image is fitted to the run's shape before batching.
"""

import numpy as np

from tfganebm import image_fitting
from tfganebm import images as images_lib
from tfganebm import source_splits
from tfganebm.images import DataError, _one_line  # pylint: disable=protected-access
from tfganebm.source_splits import MAX_HELD_OUT, Source, Split

LIST_NAMES = ('python -c "import tensorflow_datasets as tfds; '
              'print(tfds.list_builders(with_community_datasets=False))"')


def _builder(name, data_dir):
  """The TFDS builder of `name`; DataError with how to list the names if there is none."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError as e:
    hint = next((line.strip() for line in str(e).splitlines() if 'Did you mean' in line), '')
    raise DataError(f'tfds:{name}: no such TFDS dataset{" (" + hint + ")" if hint else ""}; '
                    f'list the names with: {LIST_NAMES}') from None
  except Exception as e:  # pylint: disable=broad-except  (a bad config name, a bad folder)
    raise DataError(f'tfds:{name}: {_one_line(e)}; list the names with: {LIST_NAMES}') from None


def _feature_keys(name, features):
  """(image feature key, class label key or None): the first of each kind."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  image_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  if not image_keys:
    raise DataError(f'tfds:{name}: no image feature (it has {", ".join(features.keys())}); '
                    'this library trains on TFDS image datasets')
  label_keys = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
  return image_keys[0], (label_keys[0] if label_keys else None)


def _held_out_split(name, builder, config):
  """`--held_out_split`, else 'test' or 'validation' if the dataset has one, else ''; both
  splits checked against the dataset's."""
  splits = list(builder.info.splits.keys())
  held_split = config.held_out_split or next(
      (s for s in ('test', 'validation') if s in splits), '')
  for split in (config.train_split, held_split):
    if split and splits and split.split('[')[0] not in splits:  # 'train[:90%]' slices too
      raise DataError(f'tfds:{name}: no split {split!r} (it has {", ".join(splits)}); pick one '
                      'with --train_split / --held_out_split')
  return held_split


def _read_split(name, split, keys, shape, config, download):
  """(x uint8 [N, size, size, channels], labels int64 [N] or None) of one split.

  Args:
    name: the TFDS name (NAME[/CONFIG]).
    split: the split, e.g. 'train' or 'train[:90%]'.
    keys: (image feature key, class label key or None).
    shape: (size, channels) the images are fitted to.
    config: the data config (`data_dir`, `download`).
    download: whether TFDS may download the dataset.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  image_key, label_key = keys
  size, channels = shape
  data_dir = config.data_dir or None

  def fitted(example):  # each image to one shape before batching: sizes may vary
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    image = image_fitting.fit_image(tf.cast(example[image_key], tf.uint8), size, channels)
    return {image_key: image, **({label_key: example[label_key]} if label_key else {})}

  try:
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
    batches = list(tfds.as_numpy(dataset.map(fitted).batch(1024)))
  except AssertionError:
    raise DataError(f'tfds:{name}: not prepared in {data_dir or "the TFDS default folder"} '
                    f'and {"offline" if config.download else "--nodownload"}; run `tfds build '
                    f'{name}` where there is network and pass --data_dir=ITS_FOLDER') from None
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f'tfds:{name}: cannot read split {split!r} ({_one_line(e)})') from None
  if not batches:
    raise DataError(f'tfds:{name}: split {split!r} is empty')
  x = np.concatenate([batch[image_key] for batch in batches])
  y = (None if label_key is None
       else np.concatenate([batch[label_key] for batch in batches]).astype(np.int64))
  return x, y


def read_tfds(name, config):
  """Images (and labels, if the dataset has a ClassLabel) of a TFDS dataset, offline unless
  `--download` and the network answers.

  Raises:
    DataError: an unknown name (with how to list names), no image feature, a dataset not
      prepared and not downloadable, an unknown split.
  """
  builder = _builder(name, config.data_dir or None)
  features = builder.info.features
  image_key, label_key = _feature_keys(name, features)
  held_split = _held_out_split(name, builder, config)
  try:
    prepared = builder.is_prepared()
  except Exception:  # pylint: disable=broad-except
    prepared = False
  download = bool(config.download and not prepared and images_lib._online())  # pylint: disable=protected-access

  image_feature = features[image_key]
  if np.dtype(getattr(image_feature, 'np_dtype', np.uint8)) != np.uint8:
    raise DataError(f'tfds:{name}: its {image_key!r} feature is not uint8 images')
  shape = image_fitting.image_shape(f'tfds:{name}', tuple(image_feature.shape), config)
  keys = (image_key, label_key)
  x, y = _read_split(name, config.train_split, keys, shape, config, download)
  if held_split:
    x_held, y_held = _read_split(name, held_split, keys, shape, config, download)
    held_from = f'split {held_split}'
  else:
    x, y, x_held, y_held = source_splits.hold_out(x, y, config.held_out_fraction)
    held_from = f'a seeded {config.held_out_fraction:g} of split {config.train_split}'
  source_splits.check_split_sizes(f'tfds:{name}', len(x), len(x_held), '--held_out_fraction')
  chosen = source_splits.subset(len(x_held), MAX_HELD_OUT)
  x_held, y_held = x_held[chosen], None if y_held is None else y_held[chosen]
  names = tuple(features[label_key].names) if label_key else None
  return Source(Split(x, y), Split(x_held, y_held),
                dict(source='tfds', held_out=held_from, num_held_out=len(x_held)), names)
