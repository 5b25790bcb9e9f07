"""tools/results.py and the results table of tools/make_readmes.py."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
import make_readmes  # pylint: disable=g-import-not-at-top,wrong-import-position
import results  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_a_seed_runs_the_configs_own_commands_in_its_own_folders():
  """The header's commands, with this seed's workdir, the generated data file in the config's
  folder, and another config's run (refine_mnist's G) read from the same seed."""
  workdir, commands = results.seed_commands('digits.cfg', 2, '/R', [])
  assert workdir == '/R/digits/seed2'
  make, train = commands
  assert make[1:] == ['tools/make_datasets.py', 'digits', '--out', '/R/digits/digits.npz']
  assert train[1:5] == ['-m', 'tfganebm.train', '--flagfile', 'configs/digits.cfg']
  assert 'npy:/R/digits/digits.npz' in train and '--seed=2' in train
  assert train[train.index('--workdir') + 1] == workdir
  [refine] = results.seed_commands('refine_mnist.cfg', 1, '/R', ['--data_dir=/D'])[1]
  assert refine[refine.index('--generator') + 1] == '/R/gan_mnist/seed1/generator.keras'
  assert refine[refine.index('--workdir') + 1] == '/R/refine_mnist/seed1'
  assert refine[-2:] == ['--seed=1', '--data_dir=/D'] and '[--data_dir' not in ' '.join(refine)


def test_the_table_shows_the_median_and_range_of_the_seeds(tmp_path, monkeypatch):
  (tmp_path / 'configs').mkdir()
  seeds = {str(s): dict(generator=dict(sliced_wasserstein=v), cpu='a CPU', wall_seconds=60 * w)
           for s, v, w in ((0, 0.3, 2), (1, 0.1, 1), (2, 0.11, 4))}
  (tmp_path / 'configs' / 'results.json').write_text(json.dumps(
      {'moons.cfg': dict(seeds=seeds), 'points.cfg': dict(seeds={}, not_run='your points')}))
  monkeypatch.setattr(make_readmes, 'ROOT', str(tmp_path))
  table = make_readmes.results_table()
  assert '| moons.cfg | 3 | 0.110 (0.100-0.300) | 2.0 (1.0-4.0) |' in table
  assert '| points.cfg | 0 |  | not run: your points |' in table
  assert 'a CPU' in table


def test_a_seed_stopped_and_resumed_adds_up_the_time_of_each_invocation(tmp_path):
  workdir, log = str(tmp_path / 'seed0'), tmp_path / 'seed0.log'
  log.write_text('step 100\n')
  os.utime(log, (1000.0, 1000.0))  # the stopped process last wrote its log at t = 1000
  path, spans = results.invocations(workdir, str(log), 400.0)  # the first invocation
  assert spans == [[400.0, None]]
  _, spans = results.invocations(workdir, str(log), 5000.0)  # stopped; started again
  assert spans == [[400.0, 1000.0], [5000.0, None]]
  with open(path) as f:
    assert json.load(f) == spans
