"""A user's own data: a folder of images, an array file, a TFDS dataset.

`--dataset` names a source as `folder:PATH`, `npy:PATH` or `tfds:NAME[/CONFIG]`
(the built-in names are data.py's). Each reader checks the whole input before a
run writes anything, and answers a problem with one `DataError` line that names
the file and the fix. Images come out as uint8 [N, H, W, C] (a folder's as
`ImageFiles`, decoded from disk batch by batch), points as float32 [N, D].

Images are made to one shape by the same rule everywhere: converted to the run's
channels (grey <-> RGB, alpha dropped), centre-cropped to a square, and resized
(bilinear, antialiased) to `--image_size`; an image already of that size passes
unchanged, bit for bit.
"""

import concurrent.futures
import dataclasses
import os
import zipfile
from typing import Optional

from absl import logging
import numpy as np

from tfganebm.images import DataError, _one_line  # pylint: disable=protected-access

PREFIXES = ('folder', 'npy', 'tfds')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif')
MAX_HELD_OUT = 20000  # held-out images read into memory for the metrics (a seeded subset)
HELD_OUT_SEED = 0  # the held-out fraction's draw: one for every run seed, so seeds compare
_DECODED_BY_TF = ('PNG', 'JPEG', 'GIF', 'BMP')  # tf.io.decode_image's formats
MIN_IMAGE_SIZE = 8  # the pyramid metric's 7x7 patches, one halving of the scaled networks
MIN_HELD_OUT = 4  # held-out examples: halved into a reference and a floor of at least 2
_GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'F')


def parse(dataset):
  """'folder:PATH' -> ('folder', 'PATH'); a built-in name -> (None, name)."""
  prefix, colon, rest = dataset.partition(':')
  if colon and prefix in PREFIXES:
    return prefix, rest
  return None, dataset


def problem(dataset):
  """Why `dataset` is not a dataset name the flag accepts (syntax only), or None."""
  prefix, rest = parse(dataset)
  if prefix is not None:
    return None if rest else f'names no {prefix}: write {prefix}:PATH' if prefix != 'tfds' \
        else 'names no TFDS dataset: write tfds:NAME, e.g. tfds:fashion_mnist'
  return 'unknown'


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


# ---------------------------------------------------------------------------------------------
# Images to one shape.


def fit_image(image, size, channels):
  """One decoded image uint8 [h, w, c] (c in 1..4) -> uint8 [size, size, channels] (tf).

  Grey to RGB by repeating, RGB to grey by tf.image.rgb_to_grayscale, alpha dropped;
  then, unless it is already size x size, a centre crop to a square and a bilinear,
  antialiased resize.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  grey = lambda: image[..., :1]
  if channels == 1:
    colour = lambda: tf.image.rgb_to_grayscale(image[..., :3])
  else:
    grey, colour = lambda: tf.tile(image[..., :1], [1, 1, 3]), lambda: image[..., :3]
  if image.shape[-1] is not None:  # an array's images: one branch, traced once
    image = grey() if image.shape[-1] < 3 else colour()
  else:  # a decoded file: 1 to 4 channels, known when it is read
    image = tf.cond(tf.shape(image)[-1] < 3, grey, colour)
  image = tf.ensure_shape(image, [None, None, channels])

  def resize():
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    square = tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2,
                                           side, side)
    resized = tf.image.resize(square, [size, size], method='bilinear', antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

  shape = tf.shape(image)
  same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
  image = tf.cond(same, lambda: image, resize)
  return tf.ensure_shape(image, [size, size, channels])


def fit_images(images, size, channels, batch=1024):
  """uint8 [N, H, W, C] -> uint8 [N, size, size, channels], by `fit_image` (numpy out)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if images.shape[1:] == (size, size, channels):
    return images
  fit = tf.function(lambda x: tf.map_fn(lambda i: fit_image(i, size, channels), x,
                                        fn_output_signature=tf.TensorSpec(
                                            [size, size, channels], tf.uint8)))
  return np.concatenate([fit(tf.constant(images[i:i + batch])).numpy()
                         for i in range(0, len(images), batch)]) if len(images) else \
      np.zeros((0, size, size, channels), np.uint8)


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
    return fit_image(image, self.size, self.channels)

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


def as_array(x):
  """An array, or `ImageFiles` read into one."""
  return x.read() if isinstance(x, ImageFiles) else x


# ---------------------------------------------------------------------------------------------
# folder:PATH


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


def _hold_out(x, labels, fraction):
  """(x, labels, x_held, labels_held): a fixed-seed `fraction` (at least MIN_HELD_OUT) of
  the examples held out, both parts in their order; labels may be None."""
  n = len(x)
  count = max(MIN_HELD_OUT, round(fraction * n))
  held = np.sort(np.random.default_rng(HELD_OUT_SEED).permutation(n)[:count])
  keep = np.setdiff1d(np.arange(n), held)
  if labels is None:
    return x[keep], None, x[held], None
  return x[keep], labels[keep], x[held], labels[held]


def _subset(n, limit):
  """Indices of at most `limit` of n items: all, or a seeded subset in order."""
  if n <= limit:
    return np.arange(n)
  return np.sort(np.random.default_rng(HELD_OUT_SEED).permutation(n)[:limit])


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
  split_folders = None
  subfolders = {name.lower(): os.path.join(folder, name) for name in sorted(os.listdir(folder))
                if os.path.isdir(os.path.join(folder, name))}
  if 'train' in subfolders:  # Train/ and Test/ as well
    held = next((subfolders[name] for name in ('test', 'validation', 'val')
                 if name in subfolders), None)
    split_folders = (subfolders['train'], held)
  roots = split_folders or (folder,)
  listed = [_image_files(root) for root in roots if root is not None]
  skipped = sum(count for _, count in listed)
  if skipped:
    logging.warning('folder:%s: skipped %d file(s) that are not %s images', folder, skipped,
                    '/'.join(e[1:] for e in IMAGE_EXTENSIONS))
  if not any(paths for paths, _ in listed):
    raise DataError(f'folder:{folder}: no image files ({", ".join(IMAGE_EXTENSIONS)}) in it or '
                    'its subfolders; point --dataset at the folder that holds the images')
  ordered = [_order(paths, root) for (paths, _), root in zip(listed, roots)]
  everything = [p for paths in ordered for p in paths]
  logging.info('folder:%s: checking %d image files', folder, len(everything))
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    headers = list(pool.map(_probe, everything, chunksize=256))
  sizes = {}
  for path, (height, width, _) in zip(everything, headers):
    sizes.setdefault((height, width), path)
  if not config.image_size and len(sizes) > 1:
    examples = ', '.join(f'{h}x{w} ({os.path.relpath(p, folder)})'
                         for (h, w), p in list(sizes.items())[:3])
    raise DataError(f'folder:{folder}: images of {len(sizes)} sizes, e.g. {examples}; pass '
                    '--image_size=S to centre-crop and resize them all to S x S')
  (height, width), = list(sizes)[:1]
  size, _ = _image_shape(f'folder:{folder}', (height, width, None), config)
  grey = sum(g for _, _, g in headers)
  channels = config.channels or (1 if grey == len(headers) else 3)
  if not config.channels and 0 < grey < len(headers):
    logging.warning('folder:%s: %d grey and %d colour images: the grey ones are converted to '
                    'RGB (--channels=1 makes all grey)', folder, grey, len(headers) - grey)
  classes_of = _classes_of if config.folder_labels else _no_classes
  if split_folders:
    train_paths, held_paths = ordered[0], ordered[1] if len(ordered) > 1 else []
    train_labels, names = classes_of(split_folders[0], train_paths)
    held_labels = None
    if held_paths:
      held_labels, held_names = classes_of(split_folders[1], held_paths, names)
      if names and held_names != names and not set(held_names or ()) <= set(names):
        raise DataError(f'folder:{folder}: the held-out classes {held_names} are not among '
                        f'the training classes {names}; give both splits the same subfolders')
      if names and held_names:
        remap = np.array([names.index(n) for n in held_names])
        held_labels = remap[held_labels]
      elif names:
        held_labels = None
        names = None
        train_labels = None
        logging.warning('folder:%s: the held-out split has no class subfolders: no labels',
                        folder)
    else:
      held_paths = None
  else:
    train_paths, held_paths = ordered[0], None
    train_labels, names = classes_of(folder, train_paths)
  train_paths = np.array(train_paths)
  if held_paths is None:  # a seeded fraction of the images
    if len(train_paths) < 2 * MIN_HELD_OUT:
      raise DataError(f'folder:{folder}: {len(train_paths)} images; it needs at least '
                      f'{2 * MIN_HELD_OUT} (some are held out for the metrics)')
    train_paths, train_labels, held_paths, held_labels = _hold_out(
        train_paths, train_labels, config.held_out_fraction)
    held_from = f'a seeded {config.held_out_fraction:g} of the images'
  else:
    held_from = os.path.basename(split_folders[1])
  _check_split_sizes(f'folder:{folder}', len(train_paths), len(held_paths),
                     'train/' if split_folders else '--held_out_fraction')
  held_paths = np.array(held_paths)
  chosen = _subset(len(held_paths), MAX_HELD_OUT)
  held = ImageFiles(held_paths[chosen], size, channels)
  held_labels = None if held_labels is None else np.asarray(held_labels)[chosen]
  logging.info('folder:%s: %d training and %d held-out images, %dx%dx%d%s', folder,
               len(train_paths), len(held), size, size, channels,
               f', {len(names)} classes' if names else ', no labels')
  return Source(Split(ImageFiles(train_paths, size, channels), train_labels),
                Split(held.read(), held_labels),
                dict(source='folder', held_out=held_from, num_held_out=len(held)),
                class_names=names)


# ---------------------------------------------------------------------------------------------
# npy:PATH


_TRAIN_KEYS = ('x', 'x_train', 'images', 'points')
_LABEL_KEYS = ('y', 'y_train', 'labels')
_HELD_KEYS = ('x_test', 'x_held_out')
_HELD_LABEL_KEYS = ('y_test', 'y_held_out')


def _load_array_file(path):
  """{name: array} of a .npy (name 'x') or .npz file, without unpickling anything."""
  if not os.path.isfile(path):
    raise DataError(f'npy:{path}: no such file; give an .npy or .npz file')
  with open(path, 'rb') as f:
    magic = f.read(6)
  if not magic.startswith((b'\x93NUMPY', b'PK')):  # .npy, or .npz (a zip)
    raise DataError(f'npy:{path}: not a NumPy .npy/.npz file; write it with np.save or np.savez')
  try:
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
      return {'x': loaded}
    with loaded:
      return {name: loaded[name] for name in loaded.files}
  except ValueError as e:
    if 'allow_pickle' in str(e):
      raise DataError(f'npy:{path}: holds Python objects (a pickle), which are not loaded; save '
                      'numeric arrays: np.savez(path, x=x.astype(np.float32), y=labels)') from None
    raise DataError(f'npy:{path}: not a NumPy .npy/.npz file ({_one_line(e)})') from None
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    raise DataError(f'npy:{path}: unreadable ({_one_line(e)}); the file is damaged or '
                    'truncated, write it again') from None


def _check_split_sizes(where, num_train, num_held_out, train_fix):
  if num_held_out < MIN_HELD_OUT:
    raise DataError(f'{where}: {num_held_out} held-out example(s); the metrics need at least '
                    f'{MIN_HELD_OUT}')
  if num_train < 2:
    raise DataError(f'{where}: {num_train} training example(s) left; give more, or lower '
                    f'{train_fix}')


def array_rank(path):
  """The rank of the training array of an .npy/.npz file (2: points; 3, 4: images)."""
  arrays = _load_array_file(os.path.expanduser(path))
  return _pick(arrays, _TRAIN_KEYS, path, 'the training data', required=True)[1].ndim


def _pick(arrays, keys, path, what, required=False):
  found = [k for k in keys if k in arrays]
  if len(found) > 1:
    raise DataError(f'npy:{path}: both {found[0]!r} and {found[1]!r} hold {what}; keep one')
  if not found:
    if required:
      raise DataError(f'npy:{path}: no array named {" or ".join(keys)} ({what}); it holds '
                      f'{sorted(arrays)}: save it as np.savez(path, x=..., y=labels)')
    return None, None
  return found[0], arrays[found[0]]


def _check_numbers(path, name, x):
  if x.dtype.kind not in 'uif':
    raise DataError(f'npy:{path}: {name!r} is of type {x.dtype}, not numbers; save it as '
                    'uint8 images or float32')
  if x.dtype.kind == 'f' and not np.all(np.isfinite(x)):
    bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)).all(1))[0, 0]
    raise DataError(f'npy:{path}: {name!r} holds NaN or infinite values (first in row {bad}); '
                    'drop or fix those rows')


def _labels(path, name, y, n):
  if y is None:
    return None
  if y.ndim != 1 or len(y) != n or y.dtype.kind not in 'iu':
    raise DataError(f'npy:{path}: labels {name!r} must be n={n} integers [n], not {y.dtype} '
                    f'{list(y.shape)}')
  return y


def _to_uint8_images(path, name, x, value_range):
  """Images [N, H, W] or [N, H, W, C] -> uint8 NHWC, scaled from `value_range` if not uint8."""
  if x.ndim == 3:
    x = x[..., None]
  if x.shape[-1] not in (1, 3, 4):
    raise DataError(f'npy:{path}: {name!r} has {x.shape[-1]} channels; images have 1, 3 or 4 '
                    '(NHWC)')
  if x.dtype == np.uint8 and not value_range:
    return x
  if not value_range:
    raise DataError(f'npy:{path}: {name!r} holds {x.dtype} images; state their range with '
                    '--value_range=low,high (e.g. 0,1 or 0,255), or save them as uint8')
  low, high = value_range
  if x.min() < low or x.max() > high:
    raise DataError(f'npy:{path}: {name!r} has values in [{x.min():g}, {x.max():g}], outside '
                    f'--value_range={low:g},{high:g}; widen it')
  return np.round((x.astype(np.float64) - low) / (high - low) * 255).astype(np.uint8)


def read_array_file(path, config):
  """Points [N, D] or images [N, H, W(, C)] from an .npy or .npz file.

  An .npz holds `x` (or x_train), optionally `y` (labels), `x_test` and `y_test`
  (held-out data); without `x_test` a seeded `held_out_fraction` is held out. Points are
  min-max scaled to [-1, 1] per dimension by the training points; images become uint8.

  Raises:
    DataError: no file, a pickle, NaN, a wrong number of dimensions, labels that do not fit.
  """
  arrays = _load_array_file(path)
  name, x = _pick(arrays, _TRAIN_KEYS, path, 'the training data', required=True)
  label_name, y = _pick(arrays, _LABEL_KEYS, path, 'labels')
  held_name, x_held = _pick(arrays, _HELD_KEYS, path, 'held-out data')
  held_label_name, y_held = _pick(arrays, _HELD_LABEL_KEYS, path, 'held-out labels')
  if x.ndim not in (2, 3, 4) or len(x) == 0:
    raise DataError(f'npy:{path}: {name!r} has shape {list(x.shape)}; it must be points [N, D] '
                    'or images [N, H, W] / [N, H, W, C], N > 0')
  _check_numbers(path, name, x)
  y = _labels(path, label_name, y, len(x))
  if x_held is not None:
    if x_held.shape[1:] != x.shape[1:]:
      raise DataError(f'npy:{path}: {held_name!r} has shape {list(x_held.shape)}, {name!r} '
                      f'{list(x.shape)}: one example must have one shape')
    _check_numbers(path, held_name, x_held)
    y_held = _labels(path, held_label_name, y_held, len(x_held))
    if (y is None) != (y_held is None):
      raise DataError(f'npy:{path}: labels for one split only; give both {name!r} and '
                      f'{held_name!r} labels, or neither')
    held_from = held_name
  else:
    if len(x) < 2 * MIN_HELD_OUT:
      raise DataError(f'npy:{path}: {len(x)} examples; it needs at least {2 * MIN_HELD_OUT} '
                      '(some are held out for the metrics)')
    x, y, x_held, y_held = _hold_out(x, y, config.held_out_fraction)
    held_from = f'a seeded {config.held_out_fraction:g} of {name!r}'
  _check_split_sizes(f'npy:{path}', len(x), len(x_held), '--held_out_fraction')
  description = dict(source='npy', held_out=held_from, num_held_out=len(x_held))
  names = None
  if y is not None:  # classes 0..k-1 for the k label values found, named by those values
    values, index = np.unique(np.concatenate([y, y_held]), return_inverse=True)
    y, y_held = index[:len(y)].astype(np.int64), index[len(y):].astype(np.int64)
    names = tuple(str(v) for v in values)
  if x.ndim == 2:  # points
    x = x.astype(np.float64)
    low, high = x.min(0), x.max(0)
    if np.any(high <= low):
      raise DataError(f'npy:{path}: dimension {int(np.argmax(high <= low))} of {name!r} is '
                      'constant; drop it (points are scaled to [-1, 1] per dimension)')
    scale = lambda a: (2.0 * (a - low) / (high - low) - 1.0).astype(np.float32)
    return Source(Split(scale(x), y), Split(scale(x_held.astype(np.float64)), y_held),
                  description, names, scale=(low, high))
  images = _to_uint8_images(path, name, x, config.value_range)
  held_images = _to_uint8_images(path, held_name or name, x_held, config.value_range)
  size, channels = _image_shape(f'npy:{path}', images.shape[1:], config)
  return Source(Split(fit_images(images, size, channels), y),
                Split(fit_images(held_images, size, channels), y_held), description, names)


def _image_shape(where, shape, config):
  """(size, channels) of the run for images of `shape` (H, W, C; None where they vary):
  the flags', else the images' own (square only)."""
  height, width, found = shape
  size = config.image_size
  if not size:
    if height is None or width is None or height != width:
      raise DataError(f'{where}: the images are {height or "any"}x{width or "any"}, not one '
                      'square size; pass --image_size=S to centre-crop and resize them to S x S')
    size = height
  _check_size(where, size)
  return size, config.channels or (1 if found == 1 else 3)


def _check_size(where, size):
  if size < MIN_IMAGE_SIZE:
    raise DataError(f'{where}: {size}x{size} images are too small for the networks and the '
                    f'metrics; pass --image_size={2 * MIN_IMAGE_SIZE} (or more) to resize them')


# ---------------------------------------------------------------------------------------------
# tfds:NAME[/CONFIG]


LIST_NAMES = ('python -c "import tensorflow_datasets as tfds; '
              'print(tfds.list_builders(with_community_datasets=False))"')


def read_tfds(name, config):
  """Images (and labels, if the dataset has a ClassLabel) of a TFDS dataset, offline unless
  `--download` and the network answers.

  Raises:
    DataError: an unknown name (with how to list names), no image feature, a dataset not
      prepared and not downloadable, an unknown split.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tfganebm import images as images_lib  # pylint: disable=g-import-not-at-top
  data_dir = config.data_dir or None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError as e:
    hint = next((line.strip() for line in str(e).splitlines() if 'Did you mean' in line), '')
    raise DataError(f'tfds:{name}: no such TFDS dataset{" (" + hint + ")" if hint else ""}; '
                    f'list the names with: {LIST_NAMES}') from None
  except Exception as e:  # pylint: disable=broad-except  (a bad config name, a bad folder)
    raise DataError(f'tfds:{name}: {_one_line(e)}; list the names with: {LIST_NAMES}') from None
  features = builder.info.features
  image_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  if not image_keys:
    raise DataError(f'tfds:{name}: no image feature (it has {", ".join(features.keys())}); '
                    'this library trains on TFDS image datasets')
  label_keys = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
  image_key, label_key = image_keys[0], (label_keys[0] if label_keys else None)
  splits = list(builder.info.splits.keys())
  held_split = config.held_out_split or next(
      (s for s in ('test', 'validation') if s in splits), '')
  for split in (config.train_split, held_split):
    if split and splits and split.split('[')[0] not in splits:  # 'train[:90%]' slices too
      raise DataError(f'tfds:{name}: no split {split!r} (it has {", ".join(splits)}); pick one '
                      'with --train_split / --held_out_split')
  try:
    prepared = builder.is_prepared()
  except Exception:  # pylint: disable=broad-except
    prepared = False
  download = bool(config.download and not prepared and images_lib._online())  # pylint: disable=protected-access

  image_feature = features[image_key]
  if np.dtype(getattr(image_feature, 'np_dtype', np.uint8)) != np.uint8:
    raise DataError(f'tfds:{name}: its {image_key!r} feature is not uint8 images')
  size, channels = _image_shape(f'tfds:{name}', tuple(image_feature.shape), config)

  def fitted(example):  # each image to one shape before batching: sizes may vary
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    image = fit_image(tf.cast(example[image_key], tf.uint8), size, channels)
    return {image_key: image, **({label_key: example[label_key]} if label_key else {})}

  def read(split):
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

  x, y = read(config.train_split)
  if held_split:
    x_held, y_held = read(held_split)
    held_from = f'split {held_split}'
  else:
    x, y, x_held, y_held = _hold_out(x, y, config.held_out_fraction)
    held_from = f'a seeded {config.held_out_fraction:g} of split {config.train_split}'
  _check_split_sizes(f'tfds:{name}', len(x), len(x_held), '--held_out_fraction')
  chosen = _subset(len(x_held), MAX_HELD_OUT)
  x_held, y_held = x_held[chosen], None if y_held is None else y_held[chosen]
  names = tuple(features[label_key].names) if label_key else None
  return Source(Split(x, y), Split(x_held, y_held),
                dict(source='tfds', held_out=held_from, num_held_out=len(x_held)), names)


READERS = {'folder': read_folder, 'npy': read_array_file, 'tfds': read_tfds}


def read(dataset, config):
  """The `Source` of a `prefix:rest` dataset name."""
  prefix, rest = parse(dataset)
  if prefix == 'folder' or prefix == 'npy':
    rest = os.path.expanduser(rest)
  return READERS[prefix](rest, config)
