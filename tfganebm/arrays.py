"""`npy:PATH`: points [N, D] or images [N, H, W(, C)] from a NumPy .npy or .npz file.

The file is loaded without unpickling anything, and checked whole (numbers, NaN,
shapes, labels) before a run writes anything.
"""

import os
import zipfile

import numpy as np

from tfganebm import image_fitting
from tfganebm import source_splits
from tfganebm.images import DataError, _one_line  # pylint: disable=protected-access
from tfganebm.source_splits import MIN_HELD_OUT, Source, Split

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
    x, y, x_held, y_held = source_splits.hold_out(x, y, config.held_out_fraction)
    held_from = f'a seeded {config.held_out_fraction:g} of {name!r}'
  source_splits.check_split_sizes(f'npy:{path}', len(x), len(x_held), '--held_out_fraction')
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
  size, channels = image_fitting.image_shape(f'npy:{path}', images.shape[1:], config)
  fit = image_fitting.fit_images
  return Source(Split(fit(images, size, channels), y),
                Split(fit(held_images, size, channels), y_held), description, names)
