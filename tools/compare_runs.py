"""Prints the metrics.json of several runs as one table.

  python tools/compare_runs.py runs/moons runs/gan_moons [...]

2D runs show distances and mode metrics; image runs classifier-FID, KID and class coverage.
"""

import json
import os
import sys

COLUMNS = ('sliced_wasserstein', 'mmd2', 'nn_sample_to_data', 'nn_data_to_sample',
           'modes_recovered', 'high_quality_fraction', 'high_quality_std')
IMAGE_COLUMNS = ('fid', 'kid', 'class_kl', 'classes_covered', 'confidence')


def main(paths):
  header = None
  for path in paths:
    metrics_path = path if path.endswith('.json') else os.path.join(path, 'metrics.json')
    if not os.path.exists(metrics_path):
      print(f'{path:40s} (no metrics.json)')
      continue
    with open(metrics_path) as f:
      result = json.load(f)
    columns = IMAGE_COLUMNS if 'fid' in result.get('generator', {}) else COLUMNS
    if header != columns:
      header = columns
      print(f'{"run":40s} {"samples":18s}' + ''.join(f'{c[:14]:>15s}' for c in columns))
    for kind in ('real_data', 'generator', 'generator_langevin'):
      if kind in result:
        row = result[kind]
        cells = ''.join(f'{row[c]:15.4g}' if row.get(c) is not None else f'{"-":>15s}'
                        for c in columns)
        print(f'{path[-40:]:40s} {kind:18s}{cells}')
    nll = (result.get('energy') or {}).get('held_out_nll')
    if 'energy' in result:
      print(f'{"":40s} {"energy":18s} held-out NLL ' + ('-' if nll is None else f'{nll:.4g}'))


if __name__ == '__main__':
  main(sys.argv[1:])
