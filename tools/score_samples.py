"""Scores sample files (.npy, e.g. from export/sample_litert.py) against a run's held-out data.

  python tools/score_samples.py --workdir runs/mnist samples_device/samples_langevin.npy [...]

Uses the run's flags.txt for the dataset (and, for images, its data and metrics
classifier), and prints one JSON line per file with the metrics that metrics.json
would hold for it: classifier-FID / KID / class coverage for images, distances and
mode metrics for 2D data.
"""

import argparse
import json
import os

import numpy as np

from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import evaluation
from tfganebm import metrics
from tfganebm import runs
from tfganebm import training


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='the run whose data the samples model')
  parser.add_argument('--data_dir', default=None, help="images: override the run's --data_dir")
  parser.add_argument('--classifier_dir', default=None)
  parser.add_argument('samples', nargs='+', help='.npy files [N, *data_shape] in [-1, 1]')
  args = parser.parse_args()
  config = config_lib.Config.from_flagfile(os.path.join(args.workdir, training.FLAGS_FILE))
  config = runs.relocated(config, args.data_dir, args.classifier_dir)
  samples = {path: np.load(path) for path in args.samples}
  num = max(len(x) for x in samples.values())
  if data.is_image(config.dataset):
    loaded = data.load(config.dataset, config.num_examples, data_dir=config.data_dir,
                       download=config.download)
    score = evaluation.ImageScorer(config, loaded, num)
    print(json.dumps({'real_data': score(score.floor)}))
  else:
    loaded = data.load(config.dataset, config.num_examples, config.data_noise, config.seed,
                       num_held_out=num)
    score = lambda x: metrics.evaluate_points(x, loaded.held_out[:num], loaded.mixture)
  for path, x in samples.items():
    print(json.dumps({path: score(x.astype(np.float32))}))


if __name__ == '__main__':
  main()
