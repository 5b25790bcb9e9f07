"""`folder:PATH`: a folder of image files, read as `ImageFiles` decoded batch by batch.

Every file is checked (header and data) before a run writes anything. `train/` and
`test/` (or `validation/`, `val/`) subfolders give the splits; one subfolder per class
gives labels.
"""

import concurrent.futures
import dataclasses
import os

from absl import logging
import numpy as np

from tfganebm import image_fitting
from tfganebm import source_splits
from tfganebm.images import DataError, _one_line  # pylint: disable=protected-access
from tfganebm.source_splits import MAX_HELD_OUT, MIN_HELD_OUT, Source, Split

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif')
_DECODED_BY_TF = ('PNG', 'JPEG', 'GIF', 'BMP')  # tf.io.decode_image's formats
_GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'F')


@dataclasses.dataclass(frozen=True)
class ImageFiles:
  """Image files decoded on demand: `paths` [N] str, made `size` x `size` x `channels`.

  Stands in for a uint8 [N, size, size, channels] array: `len`, `shape`, slices, and
  `read()` for the array itself. Training reads batches through `decode` (data.batches).
  """
  paths: np.ndarray
  size: int
  channels: int

  def __len__(self):
    return len(self.paths)

  @property
  def shape(self):
    return (len(self.paths), self.size, self.size, self.channels)

  @property
  def dtype(self):
    return np.dtype(np.uint8)

  def __getitem__(self, index):
    return dataclasses.replace(self, paths=self.paths[index])

  def decode(self, path):
    """A path (string tensor) -> uint8 [size, size, channels] (tf)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    return image_fitting.fit_image(image, self.size, self.channels)

  def dataset(self):
    """tf.data of the images in order, decoded in parallel."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.data.Dataset.from_tensor_slices(self.paths).map(
        self.decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def read(self):
    """The images as one uint8 [N, size, size, channels] array."""
    out = np.empty(self.shape, np.uint8)
    start = 0
    for batch in self.dataset().batch(512).prefetch(2).as_numpy_iterator():
      out[start:start + len(batch)] = batch
      start += len(batch)
    return out


def _image_files(folder):
  """(image paths, number of other files skipped) under `folder`, recursively."""
  found, skipped, seen = [], 0, set()
  for root, dirs, names in os.walk(folder, followlinks=True):
    real = os.path.realpath(root)
    if real in seen:  # a link back to a folder already read: its files once only
      dirs[:] = []
      continue
    seen.add(real)
    dirs[:] = sorted(d for d in dirs if not d.startswith('.')
                     and os.path.realpath(os.path.join(root, d)) not in seen)
    for name in names:
      if name.startswith('.'):
        continue
      if name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.join(root, name))
      else:
        skipped += 1
  return found, skipped


def _probe(path):
  """(height, width, grey) of an image file; DataError if it is damaged or of a format
  TensorFlow does not decode. PNGs are checked by their chunks' CRCs (a truncated or
  altered file fails), the other formats by decoding them."""
  from PIL import Image  # pylint: disable=g-import-not-at-top  (matplotlib's dependency)
  try:
    with Image.open(path) as image:
      width, height = image.size
      mode, kind = image.mode, image.format
      if kind not in _DECODED_BY_TF:
        raise DataError(f'{path}: a {kind} image, which TensorFlow does not decode; convert it '
                        'to PNG or JPEG, or remove it')
      if kind == 'PNG':
        image.verify()
      else:
        image.load()
  except DataError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (PIL fails in many ways)
    raise DataError(f'{path}: not a readable image ({_one_line(e)}); remove or replace it') \
        from None
  return height, width, mode in _GREY_MODES


def _order(paths, folder):
  """Files ordered by their name, then by their path under `folder`: a class-per-folder
  copy of an array (`<class>/<index>.png`) lists its images in the array's order."""
  return sorted(paths, key=lambda p: (os.path.basename(p), os.path.relpath(p, folder)))


def _no_classes(folder, paths, known=None):
  del folder, paths, known
  return None, None


def _classes_of(folder, paths, known=None):
  """(labels [N], class names) when every image lies in a first-level subfolder and there
  are at least two of them (or they are among the `known` class names); (None, None)
  otherwise."""
  tops = [os.path.relpath(p, folder).split(os.sep) for p in paths]
  if not tops:
    return None, None
  stray = sum(len(parts) < 2 for parts in tops)
  if stray:
    if stray < len(tops):
      logging.warning('%s: %d image(s) lie beside the class subfolders: the images are read '
                      'without labels (move them into a class folder for labels)', folder, stray)
    return None, None
  names = tuple(sorted({parts[0] for parts in tops}))
  if len(names) < 2 and not (known and set(names) <= set(known)):
    return None, None
  index = {name: i for i, name in enumerate(names)}
  return np.array([index[parts[0]] for parts in tops], np.int64), names


def _split_folders(folder):
  """(train folder, held-out folder or None) when `folder` has a train/ subfolder (any
  case), else None."""
  subfolders = {name.lower(): os.path.join(folder, name) for name in sorted(os.listdir(folder))
                if os.path.isdir(os.path.join(folder, name))}
  if 'train' not in subfolders:  # Train/ and Test/ as well
    return None
  held = next((subfolders[name] for name in ('test', 'validation', 'val')
               if name in subfolders), None)
  return subfolders['train'], held


def _listed_images(folder, roots):
  """[image paths] of each of `roots` (None: no such folder, skipped), in `_order`.

  Raises:
    DataError: no image file under any of them.
  """
  listed = [_image_files(root) for root in roots if root is not None]
  skipped = sum(count for _, count in listed)
  if skipped:
    logging.warning('folder:%s: skipped %d file(s) that are not %s images', folder, skipped,
                    '/'.join(e[1:] for e in IMAGE_EXTENSIONS))
  if not any(paths for paths, _ in listed):
    raise DataError(f'folder:{folder}: no image files ({", ".join(IMAGE_EXTENSIONS)}) in it or '
                    'its subfolders; point --dataset at the folder that holds the images')
  return [_order(paths, root) for (paths, _), root in zip(listed, roots)]


def _image_format(folder, paths, config):
  """(size, channels) of the run for the image files `paths`, each of them checked.

  Raises:
    DataError: a damaged image, images of several sizes without `--image_size`.
  """
  logging.info('folder:%s: checking %d image files', folder, len(paths))
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    headers = list(pool.map(_probe, paths, chunksize=256))
  sizes = {}
  for path, (height, width, _) in zip(paths, headers):
    sizes.setdefault((height, width), path)
  if not config.image_size and len(sizes) > 1:
    examples = ', '.join(f'{h}x{w} ({os.path.relpath(p, folder)})'
                         for (h, w), p in list(sizes.items())[:3])
    raise DataError(f'folder:{folder}: images of {len(sizes)} sizes, e.g. {examples}; pass '
                    '--image_size=S to centre-crop and resize them all to S x S')
  (height, width), = list(sizes)[:1]
  size, _ = image_fitting.image_shape(f'folder:{folder}', (height, width, None), config)
  grey = sum(g for _, _, g in headers)
  channels = config.channels or (1 if grey == len(headers) else 3)
  if not config.channels and 0 < grey < len(headers):
    logging.warning('folder:%s: %d grey and %d colour images: the grey ones are converted to '
                    'RGB (--channels=1 makes all grey)', folder, grey, len(headers) - grey)
  return size, channels


def _labelled(folder, split_folders, ordered, config):
  """(train paths, train labels, held-out paths, held-out labels, class names) of the
  listed images; held-out paths None where the folder has no held-out images.

  Raises:
    DataError: held-out classes that are not among the training classes.
  """
  classes_of = _classes_of if config.folder_labels else _no_classes
  if not split_folders:
    train_labels, names = classes_of(folder, ordered[0])
    return ordered[0], train_labels, None, None, names
  train_paths, held_paths = ordered[0], ordered[1] if len(ordered) > 1 else []
  train_labels, names = classes_of(split_folders[0], train_paths)
  if not held_paths:
    return train_paths, train_labels, None, None, names
  held_labels, held_names = classes_of(split_folders[1], held_paths, names)
  if names and held_names != names and not set(held_names or ()) <= set(names):
    raise DataError(f'folder:{folder}: the held-out classes {held_names} are not among '
                    f'the training classes {names}; give both splits the same subfolders')
  if names and held_names:
    remap = np.array([names.index(n) for n in held_names])
    held_labels = remap[held_labels]
  elif names:
    logging.warning('folder:%s: the held-out split has no class subfolders: no labels',
                    folder)
    return train_paths, None, held_paths, None, None
  return train_paths, train_labels, held_paths, held_labels, names


def read_folder(folder, config):
  """The images under `folder` (see the module docstring and the README's rules).

  `train/` and `test/` (or `validation/`, `val/`) subfolders give the splits, else a
  seeded `held_out_fraction` of the images is held out; one subfolder per class (in the
  split folder) gives labels.

  Raises:
    DataError: no folder, no images, a damaged image, images of several sizes without
      `--image_size`, fewer images than the splits need.
  """
  if not os.path.isdir(folder):
    raise DataError(f'folder:{folder}: no such folder; give the folder that holds the images')
  split_folders = _split_folders(folder)
  ordered = _listed_images(folder, split_folders or (folder,))
  size, channels = _image_format(folder, [p for paths in ordered for p in paths], config)
  train_paths, train_labels, held_paths, held_labels, names = _labelled(
      folder, split_folders, ordered, config)
  train_paths = np.array(train_paths)
  if held_paths is None:  # a seeded fraction of the images
    if len(train_paths) < 2 * MIN_HELD_OUT:
      raise DataError(f'folder:{folder}: {len(train_paths)} images; it needs at least '
                      f'{2 * MIN_HELD_OUT} (some are held out for the metrics)')
    train_paths, train_labels, held_paths, held_labels = source_splits.hold_out(
        train_paths, train_labels, config.held_out_fraction)
    held_from = f'a seeded {config.held_out_fraction:g} of the images'
  else:
    held_from = os.path.basename(split_folders[1])
  source_splits.check_split_sizes(f'folder:{folder}', len(train_paths), len(held_paths),
                                  'train/' if split_folders else '--held_out_fraction')
  held_paths = np.array(held_paths)
  chosen = source_splits.subset(len(held_paths), MAX_HELD_OUT)
  held = ImageFiles(held_paths[chosen], size, channels)
  held_labels = None if held_labels is None else np.asarray(held_labels)[chosen]
  logging.info('folder:%s: %d training and %d held-out images, %dx%dx%d%s', folder,
               len(train_paths), len(held), size, size, channels,
               f', {len(names)} classes' if names else ', no labels')
  return Source(Split(ImageFiles(train_paths, size, channels), train_labels),
                Split(held.read(), held_labels),
                dict(source='folder', held_out=held_from, num_held_out=len(held)),
                class_names=names)
