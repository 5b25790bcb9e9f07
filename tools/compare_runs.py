"""Prints the metrics.json of several runs as one table.

  python tools/compare_runs.py runs/moons runs/gan_moons [...]
"""

import json
import os
import sys

COLUMNS = ('sliced_wasserstein', 'mmd2', 'nn_sample_to_data', 'nn_data_to_sample',
           'modes_recovered', 'high_quality_fraction', 'high_quality_std')


def main(paths):
  header = f'{"run":40s} {"samples":18s}' + ''.join(f'{c[:14]:>15s}' for c in COLUMNS)
  print(header)
  for path in paths:
    metrics_path = path if path.endswith('.json') else os.path.join(path, 'metrics.json')
    if not os.path.exists(metrics_path):
      print(f'{path:40s} (no metrics.json)')
      continue
    with open(metrics_path) as f:
      result = json.load(f)
    for kind in ('real_data', 'generator', 'generator_langevin'):
      if kind in result:
        row = result[kind]
        cells = ''.join(f'{row[c]:15.4g}' if c in row else f'{"-":>15s}' for c in COLUMNS)
        print(f'{path[-40:]:40s} {kind:18s}{cells}')
    if 'energy' in result:
      print(f'{"":40s} {"energy":18s} held-out NLL {result["energy"]["held_out_nll"]:.4g}')


if __name__ == '__main__':
  main(sys.argv[1:])
