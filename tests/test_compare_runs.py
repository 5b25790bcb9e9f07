"""tools/compare_runs.py: the metrics.json of several runs as one table."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from tfganebm import data
from tfganebm import files
from tfganebm import metrics

TOOL = os.path.join(ROOT, 'tools', 'compare_runs.py')
# The metrics each kind of run is compared by (a column's title: the first 14 characters).
POINT_METRICS = ('sliced_wasserstein', 'mmd2', 'nn_sample_to_data', 'nn_data_to_sample',
                 'modes_recovered', 'high_quality_fraction', 'high_quality_std')
IMAGE_METRICS = ('fid', 'kid', 'class_kl', 'classes_covered', 'confidence')
KINDS = ('real_data', 'generator', 'generator_langevin')


def _header(names):
  return ['run', 'samples', *(name[:14] for name in names)]


def _compare(cwd, *paths):
  """The tool's output lines, each split at its blanks (these paths hold none)."""
  result = subprocess.run([sys.executable, TOOL, *paths], capture_output=True, text=True,
                          cwd=cwd, timeout=60, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  return [line.split() for line in result.stdout.splitlines()]


def _write(path, result):
  """metrics.json as the evaluation writes it (strict JSON: NaN as null)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files.write_json(path, result)


def _points(seed):
  """What the evaluation computes for 200 samples of the 8 Gaussians against 200 more."""
  samples, reference = (data.eight_gaussians(200, None, s) for s in (seed, seed + 100))
  return metrics.evaluate_points(samples.x, reference.x, samples.mixture)


def _images(seed):
  """What the evaluation computes for 20 images' 4-d features and 10-class probabilities."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(20, 10))
  probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  return metrics.evaluate_images(rng.normal(size=(20, 4)), probabilities,
                                 rng.normal(size=(20, 4)))


def _check_row(row, run, kind, names, values):
  """A row of `run` and `kind` whose cells are `values` of `names` to 4 significant digits
  (a missing metric: '-')."""
  assert row[:2] == [run, kind]
  assert len(row) == 2 + len(names)
  for name, cell in zip(names, row[2:]):
    if name not in values:
      assert cell == '-', (kind, name)
    else:
      assert float(cell) == pytest.approx(values[name], rel=5e-4), (kind, name)


def test_a_points_run_shows_each_metric_the_evaluation_computes(tmp_path):
  """One row per kind of samples, in the order real data, G, G + chains, then the energy's
  held-out NLL; every column filled with its metric. Fails if a column names a metric that
  `metrics.evaluate_points` does not compute (its cells would all be '-'), or a row shows
  another kind's numbers."""
  written = {kind: _points(seed) for seed, kind in enumerate(KINDS)}
  assert set(POINT_METRICS) <= set(written['generator'])
  _write(str(tmp_path / 'run' / 'metrics.json'),
         {**written, 'energy': dict(held_out_nll=-1.234567, log_z=0.5)})
  header, *rows, energy = _compare(tmp_path, 'run')
  assert header == _header(POINT_METRICS)
  assert len(rows) == len(KINDS)
  for row, kind in zip(rows, KINDS):
    _check_row(row, 'run', kind, POINT_METRICS, written[kind])
  assert energy == ['energy', 'held-out', 'NLL', '-1.235']


def test_runs_of_both_kinds_share_one_table_with_a_header_where_the_kind_changes(tmp_path):
  """A moons GAN (no mode metrics, no chains, no energy), an image run, a run without
  metrics.json, and a metrics.json named by its path: one table, a header before the first
  row of each kind of run. Fails if an image run were shown in the point metrics' columns
  (all '-'), or a missing file stopped the table."""
  gan = {kind: metrics.evaluate_points(*(data.moons(200, None, s).x for s in (i, 9)))
         for i, kind in enumerate(KINDS[:2])}
  images = {kind: _images(seed) for seed, kind in enumerate(KINDS)}
  _write(str(tmp_path / 'gan' / 'metrics.json'), gan)
  _write(str(tmp_path / 'mnist' / 'metrics.json'), images)
  _write(str(tmp_path / 'other.json'), gan)
  lines = _compare(tmp_path, 'gan', 'mnist', 'empty', 'other.json')
  assert [line[:2] for line in lines] == [
      ['run', 'samples'], ['gan', 'real_data'], ['gan', 'generator'],
      ['run', 'samples'], *(['mnist', kind] for kind in KINDS),
      ['empty', '(no'],
      ['run', 'samples'], ['other.json', 'real_data'], ['other.json', 'generator']]
  assert lines[0] == lines[8] == _header(POINT_METRICS)
  assert lines[3] == _header(IMAGE_METRICS)
  for row, kind in zip(lines[1:3], KINDS):
    _check_row(row, 'gan', kind, POINT_METRICS, gan[kind])  # modes: '-'
  for row, kind in zip(lines[4:7], KINDS):
    _check_row(row, 'mnist', kind, IMAGE_METRICS, images[kind])
  assert lines[7] == ['empty', '(no', 'metrics.json)']
  for row, kind in zip(lines[9:], KINDS):
    _check_row(row, 'other.json', kind, POINT_METRICS, gan[kind])


def test_a_metric_written_as_null_is_shown_as_missing(tmp_path):
  """The evaluation writes a NaN metric as null: high_quality_std when no sample of G lies
  within 3 std of a mode (an early or collapsed 25-Gaussians run). The table should show it
  as '-' and go on; today the tool stops with a TypeError (fix: treat `row.get(c) is None`
  as missing in compare_runs.main)."""
  far = metrics.mode_metrics(np.full((50, 2), 0.9), data.eight_gaussians(10, None, 0)
                             .mixture.centres, 0.008)
  assert np.isnan(far['high_quality_std'])
  _write(str(tmp_path / 'run' / 'metrics.json'), {'generator': far})
  header, row = _compare(tmp_path, 'run')
  _check_row(row, 'run', 'generator', POINT_METRICS,
             {k: v for k, v in far.items() if k != 'high_quality_std'})
