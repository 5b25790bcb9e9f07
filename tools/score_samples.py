"""Scores sample files (.npy, e.g. from export/sample_litert.py) against a run's held-out data.

  python tools/score_samples.py --workdir runs/mnist samples_device/samples.npy [...]

Uses the run's flags.txt for the dataset (and, for images, its data and metrics
classifier), and prints one JSON line per file with the metrics that metrics.json
would hold for it: classifier-FID / KID / class coverage for images, distances and
mode metrics for 2D data.

For 2D data, `--reference_draws K` scores each file's sliced Wasserstein distance
against K fresh held-out draws of its own size instead of the run's one
reference, and the floor (a further draw against each) the same way, and prints
the means and their ratio. Between two 10,000-point draws of the swiss roll the
distance varies by 29 % (std over 200 pairs: 0.0114 +- 0.0033; W2 of the
projections is ruled by their tails), so a ratio to the floor from one reference
can be off by a third; K = 32 holds the means to about 5 %. That steadies the
reference side only: the file's own draw moves the ratio as much (eight real
10,000-point draws read 0.87x to 1.27x), so score several draws and average them.
make_moons spaces its points evenly along the moons: there the floor is optimistic.
"""

import argparse
import json
import os
import sys

# TensorFlow's C++ start-up chatter would come before our one-line errors.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np

from tfganebm import data
from tfganebm import evaluators
from tfganebm import metrics
from tfganebm import workdir as workdir_lib


def _read_header(path):
  """(shape, dtype) from the header of .npy file `path`, or None when it is unreadable."""
  try:
    with open(path, 'rb') as f:
      version = np.lib.format.read_magic(f)
      read = {(1, 0): np.lib.format.read_array_header_1_0,
              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
      return read(f)[::2] if read else None
  except (OSError, ValueError):
    return None


def load_samples(path, data_shape):
  """The samples in .npy file `path`: a float32 array [N, *data_shape], N >= 1, all finite.

  Raises:
    ValueError: with what is wrong with the file and how to fix it.
  """
  if os.path.isdir(path):
    raise ValueError(f'{path} is a directory; pass the .npy files in it')
  if not os.path.isfile(path):
    raise ValueError(f'{path} not found')
  expected = f'[N, {", ".join(map(str, data_shape))}]'
  with open(path, 'rb') as f:
    start = f.read(6)
  if start.startswith(b'PK'):
    raise ValueError(f'{path} is a .npz archive; pass a .npy file (numpy.save) of one {expected} '
                     'array')
  if start != b'\x93NUMPY':
    raise ValueError(f'{path} is not a .npy file; save the samples with numpy.save as one '
                     f'{expected} array')
  try:
    x = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    header = _read_header(path)
    if header is not None and header[1].hasobject:
      raise ValueError(f'{path} holds Python objects (dtype object); save a numeric {expected} '
                       'array') from e
    raise ValueError(f'{path} is a damaged or truncated .npy file; write it again') from e
  if x.dtype.kind not in 'fiu':
    raise ValueError(f'{path} holds {x.dtype} values, not numbers; save a numeric {expected} '
                     'array')
  if tuple(x.shape[1:]) != tuple(data_shape) or x.ndim != len(data_shape) + 1:
    raise ValueError(f'{path} has shape {list(x.shape)}, but the run\'s samples are {expected}; '
                     'pass samples of this run\'s dataset')
  if len(x) == 0:
    raise ValueError(f'{path} holds no samples; draw some first')
  x = x.astype(np.float32)
  bad = int(np.sum(~np.all(np.isfinite(x.reshape(len(x), -1)), axis=1)))
  if bad:
    raise ValueError(f'{path}: {bad} of {len(x)} samples are non-finite (NaN or inf); draw them '
                     'again (fewer Langevin steps or a smaller step size) or drop those rows')
  return x


def fresh_references(config, n, draws):
  """`draws` held-out draws of n 2D points and the floor's sliced Wasserstein distance
  averaged over them (a second draw of n points against each): (references, floor).

  The draws use seeds seed + 2, seed + 3, ... (the run trains on seed and holds out
  seed + 1) and the training points' scaling.
  """
  name, noise, seed = config.data.dataset, config.data.data_noise, config.run.seed
  train, _ = data.load_points(name, config.data.num_examples or data.DEFAULT_NUM_POINTS, noise,
                              seed, num_held_out=1)
  references, floor = [], 0.0
  for k in range(draws):
    points = data.DATASETS[name](2 * n, noise, seed + 2 + k, scale=train.scale).x
    references.append(points[:n])
    floor += metrics.sliced_wasserstein(points[n:], points[:n]) / draws
  return references, floor


def reference_draws(config, x, draws, references=None):
  """The sliced Wasserstein distance of 2D samples `x` [n, 2] averaged over `draws`
  held-out draws of n points, the floor's averaged the same way, and the ratio of the
  two means; `references`: `fresh_references(config, n, draws)` when already drawn.
  """
  references, floor = references or fresh_references(config, len(x), draws)
  sw = sum(metrics.sliced_wasserstein(x, reference) for reference in references) / draws
  return dict(reference_draws=draws, sliced_wasserstein=sw, floor_sliced_wasserstein=floor,
              sliced_wasserstein_to_floor=sw / floor if floor > 0 else float('inf'))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='the run whose data the samples model')
  parser.add_argument('--data_dir', default=None, help="images: override the run's --data_dir")
  parser.add_argument('--classifier_dir', default=None)
  parser.add_argument('--reference_draws', type=int, default=0,
                      help='2D data: mean sliced Wasserstein distance over this many fresh '
                      "held-out draws and the floor's, and their ratio (0: all metrics against "
                      "the run's one held-out reference, as metrics.json)")
  parser.add_argument('samples', nargs='+', help='.npy files [N, *data_shape] in [-1, 1]')
  args = parser.parse_args(argv)
  if args.reference_draws < 0:
    sys.exit(f'error: --reference_draws={args.reference_draws} must be >= 0 (0: one reference)')
  try:
    config = workdir_lib.read_config(args.workdir)
  except workdir_lib.WorkdirError as e:
    sys.exit(f'error: {e}; pass the workdir of a tfganebm.train run')
  if config is None:
    sys.exit(f'error: {args.workdir} has no config.json or flags.txt; --workdir must be a '
             'directory written by tfganebm.train')
  config = config.override(**{name: value for name, value in (
      ('data_dir', args.data_dir), ('classifier_dir', args.classifier_dir)) if value is not None})
  if args.reference_draws and config.data.dataset not in data.DATASETS:
    sys.exit(f'error: --reference_draws is for the built-in 2D data, not {config.data.dataset}; '
             'drop it')
  try:
    samples = {path: load_samples(path, data.shape_of(config.data))
               for path in args.samples}
  except ValueError as e:
    sys.exit(f'error: {e}')
  num = max(len(x) for x in samples.values())
  try:
    if args.reference_draws:
      drawn = {}  # sample size -> its references and floor, drawn once for all files of that size
      for path, x in samples.items():
        if len(x) not in drawn:
          drawn[len(x)] = fresh_references(config, len(x), args.reference_draws)
        print(json.dumps({path: reference_draws(config, x, args.reference_draws,
                                                drawn[len(x)])}))
      return
    evaluator = evaluators.EVALUATORS[data.kind(config.data)](config, num, 0)
    print(json.dumps({'real_data': evaluator(evaluator.floor)}))
    score = evaluator
  except ValueError as e:  # images.DataError: the run's data are not on this machine
    sys.exit(f'error: {e} (--data_dir names another folder)')
  for path, x in samples.items():
    print(json.dumps({path: score(x)}))


if __name__ == '__main__':
  main()
