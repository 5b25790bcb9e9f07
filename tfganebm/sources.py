"""A user's own data: a folder of images, an array file, a TFDS dataset.

`--dataset` names a source as `folder:PATH`, `npy:PATH` or `tfds:NAME[/CONFIG]`
(the built-in names are data.py's). Each reader checks the whole input before a
run writes anything, and answers a problem with one `DataError` line that names
the file and the fix. Images come out as uint8 [N, H, W, C] (a folder's as
`ImageFiles`, decoded from disk batch by batch), points as float32 [N, D].

Images are made to one shape by the same rule everywhere (image_fitting.py). The
readers: folders.py (`folder:`), arrays.py (`npy:`), tfds_source.py (`tfds:`); the
`Source` they return and its held-out split: source_splits.py.
"""

import os

from tfganebm.arrays import array_rank, read_array_file
from tfganebm.folders import IMAGE_EXTENSIONS, ImageFiles, read_folder
from tfganebm.images import DataError
from tfganebm.image_fitting import MIN_IMAGE_SIZE, fit_image, fit_images
from tfganebm.source_splits import HELD_OUT_SEED, MAX_HELD_OUT, MIN_HELD_OUT, Source, Split
from tfganebm.tfds_source import LIST_NAMES, read_tfds

# The readers' names stay importable from here, where other modules and tools look for them.
__all__ = ['DataError', 'HELD_OUT_SEED', 'IMAGE_EXTENSIONS', 'LIST_NAMES', 'MAX_HELD_OUT',
           'MIN_HELD_OUT', 'MIN_IMAGE_SIZE', 'PREFIXES', 'READERS', 'ImageFiles', 'Source', 'Split',
           'array_rank', 'as_array', 'fit_image', 'fit_images', 'parse', 'problem', 'read',
           'read_array_file', 'read_folder', 'read_tfds']

PREFIXES = ('folder', 'npy', 'tfds')
READERS = {'folder': read_folder, 'npy': read_array_file, 'tfds': read_tfds}


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


def as_array(x):
  """An array, or `ImageFiles` read into one."""
  return x.read() if isinstance(x, ImageFiles) else x


def read(dataset, config):
  """The `Source` of a `prefix:rest` dataset name."""
  prefix, rest = parse(dataset)
  if prefix == 'folder' or prefix == 'npy':
    rest = os.path.expanduser(rest)
  return READERS[prefix](rest, config)
