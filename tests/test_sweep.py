"""tfganebm.sweep (tfganebm.sweeping): an inference-time grid over a trained run, resumable,
with best.cfg."""

import csv
import json

import numpy as np
import pytest

from tests.conftest import run_module, tiny_config
from tfganebm import runs
from tfganebm import sweeping
from tfganebm import training

GRID = dict(steps=[0, 2, 5], step_size=[0.001, 0.01], space=['data', 'latent'])
NUM_SAMPLES = 64


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('sweep') / 'run'
  training.train(tiny_config(workdir, dataset='8gaussians', train_steps=4))
  return workdir


def test_sweep_scores_every_cell_on_training_data_and_writes_best_cfg(run_dir, tmp_path):
  out = tmp_path / 'sweep'
  rows, best, _ = sweeping.run(str(run_dir), str(out), GRID, num_samples=NUM_SAMPLES)
  assert len(rows) == 3 * 2 * 2
  with open(out / 'sweep.csv', newline='') as f:
    table = list(csv.DictReader(f))
  assert len(table) == 12 and {'sliced_wasserstein', 'mode_kl', 'space'} <= set(table[0])
  assert {(r['steps'], r['space']) for r in table} == {(k, s) for k in '025'
                                                       for s in ('data', 'latent')}
  assert best['sliced_wasserstein'] == min(r['sliced_wasserstein'] for r in rows)
  for metric in ('sliced_wasserstein', 'mmd2', 'high_quality_fraction', 'mode_kl'):
    assert (out / f'sweep_{metric}.png').stat().st_size > 0
  about = json.loads((out / 'sweep.json').read_text())
  assert about['scored_against'] == 'training data' and about['num_samples'] == NUM_SAMPLES

  # best.cfg drives sample: the same chains, so the sweep's figure comes back.
  samples = tmp_path / 'samples'
  result = run_module('tfganebm.sample', f'--workdir={run_dir}', f'--flagfile={out}/best.cfg',
                      f'--out={samples}', f'--num_samples={NUM_SAMPLES}')
  assert result.returncode == 0, result.stderr
  used = json.loads((samples / 'metrics.json').read_text())['langevin']
  assert {name: used[name] for name in sweeping.SETTINGS} == {
      name: best[name] for name in sweeping.SETTINGS}
  assert used['proposal'] == 'langevin'  # the run's own: not a sweep axis
  model_x = np.load(samples / ('samples_langevin.npy' if best['steps'] else
                               'samples_generator.npy'))
  _, config = runs.load_run(str(run_dir))
  from tfganebm import evaluators  # pylint: disable=g-import-not-at-top
  scorer = evaluators.training_scorer(config, NUM_SAMPLES)
  assert scorer(model_x)['sliced_wasserstein'] == pytest.approx(best['sliced_wasserstein'],
                                                                rel=1e-5)
  # ... and export, whose export.json gives the device runner those settings.
  exported = tmp_path / 'export'
  result = run_module('tfganebm.export', f'--workdir={run_dir}', f'--flagfile={out}/best.cfg',
                      f'--out={exported}')
  assert result.returncode == 0, result.stderr
  info = json.loads((exported / 'export.json').read_text())
  assert info['langevin'] == used


def test_a_killed_sweep_reruns_only_the_missing_cells(run_dir, tmp_path):
  out, scored = tmp_path / 'sweep', []

  def kill_after_five(row):
    scored.append(row)
    if len(scored) == 5:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    sweeping.run(str(run_dir), str(out), GRID, num_samples=NUM_SAMPLES,
                 after_cell=kill_after_five)
  first = [sweeping._row_key(row) for row in scored]  # pylint: disable=protected-access
  rescored = []
  rows, _, _ = sweeping.run(str(run_dir), str(out), GRID, num_samples=NUM_SAMPLES,
                            after_cell=rescored.append)
  assert len(rescored) == 12 - 5 and len(rows) == 12
  assert not set(first) & {sweeping._row_key(row) for row in rescored}  # pylint: disable=protected-access
  # A resumed cell scores what an uninterrupted sweep scores (the chains are seeded).
  whole, _, _ = sweeping.run(str(run_dir), str(tmp_path / 'whole'), GRID,
                             num_samples=NUM_SAMPLES)
  by_key = lambda rs: {sweeping._row_key(r): r['sliced_wasserstein'] for r in rs}  # pylint: disable=protected-access
  assert by_key(rows) == pytest.approx(by_key(whole))


def test_a_sweep_with_other_settings_refuses_the_same_out(run_dir, tmp_path):
  out = tmp_path / 'sweep'
  sweeping.run(str(run_dir), str(out), dict(steps=[0, 2]), num_samples=NUM_SAMPLES)
  before = (out / 'sweep.csv').read_text()
  with pytest.raises(sweeping.SweepError, match='num_samples'):
    sweeping.run(str(run_dir), str(out), dict(steps=[0, 2]), num_samples=NUM_SAMPLES + 1)
  assert (out / 'sweep.csv').read_text() == before


def test_grid_takes_temperatures_and_refuses_bad_samplers():
  from tfganebm.config import Config  # pylint: disable=g-import-not-at-top
  cells = sweeping.grid(Config(), step_size=[0.01, 0.04], temperature=[1.0, 0.5])
  assert [(c.step_size, round(c.noise, 6)) for c in cells] == [
      (0.01, 0.141421), (0.01, 0.1), (0.04, 0.282843), (0.04, 0.2)]
  with pytest.raises(sweeping.SweepError, match='not both'):
    sweeping.grid(Config(), noise=[0.1], temperature=[1.0])
  with pytest.raises(sweeping.SweepError, match='--langevin_step_size'):
    sweeping.grid(Config(), step_size=[-1.0])
  with pytest.raises(sweeping.SweepError, match='--langevin_temperature'):
    sweeping.grid(Config(), temperature=[0.0])


def test_sweep_command_rejects_bad_grids_in_one_line(run_dir, tmp_path):
  """A comma list the command cannot parse: one line, before anything is written (other
  kinds' text, e.g. --langevin_metropolis=yes, is refused by the same parse: fields.parse_text,
  tests/test_fields.py). A value of the right kind that no sampler takes is refused by
  sweeping.run, whose one-line SweepError the command prints after `error: `."""
  result = run_module('tfganebm.sweep', f'--workdir={run_dir}', f'--out={tmp_path}/s',
                      '--langevin_steps=3,x')
  assert result.returncode != 0
  lines = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and '--langevin_steps' in lines[0], result.stderr
  assert not (tmp_path / 's').exists()
  with pytest.raises(sweeping.SweepError) as error:
    sweeping.run(str(run_dir), str(tmp_path / 's'), dict(space=['data', 'moon']),
                 num_samples=NUM_SAMPLES)
  assert '--langevin_space' in str(error.value) and '\n' not in str(error.value)
  assert not (tmp_path / 's').exists()


def test_a_second_grid_into_the_same_out_adds_its_cells(run_dir, tmp_path):
  out = tmp_path / 'sweep'
  sweeping.run(str(run_dir), str(out), dict(steps=[0, 2], step_size=[0.001]),
               num_samples=NUM_SAMPLES)
  rows, best, _ = sweeping.run(str(run_dir), str(out), dict(steps=[2], step_size=[0.05],
                                                            space=['latent']),
                               num_samples=NUM_SAMPLES)
  assert {(r['steps'], r['step_size'], r['space']) for r in rows} == {
      (0, 0.001, 'data'), (2, 0.001, 'data'), (2, 0.05, 'latent')}
  assert best['sliced_wasserstein'] == min(r['sliced_wasserstein'] for r in rows)
  assert 'space=' + best['space'] in (out / 'best.cfg').read_text()


def test_a_diverged_cell_is_never_the_best(run_dir, tmp_path, monkeypatch):
  from tfganebm import chains  # pylint: disable=g-import-not-at-top
  chains_at = chains.chains_at

  def diverging(model, num, seed, sampler, steps_list):
    for k, x in chains_at(model, num, seed, sampler, steps_list):
      yield k, (x * np.nan if sampler.step_size > 0.005 and k else x)

  monkeypatch.setattr(chains, 'chains_at', diverging)
  rows, best, _ = sweeping.run(str(run_dir), str(tmp_path / 's'),
                               dict(steps=[0, 2], step_size=[0.001, 0.01]),
                               num_samples=NUM_SAMPLES)
  assert [r['sliced_wasserstein'] for r in rows if r['step_size'] == 0.01 and r['steps']] == [None]
  assert best['step_size'] == 0.001


def test_grid_over_every_sampler_setting_skips_refused_combinations_and_ignored_settings():
  """Every sampler setting is an axis. A combination the sampler refuses (a prior proposal in
  data space) is skipped, not the whole grid; settings a cell's proposal ignores keep the
  run's values, so cells that would run the same chain are one cell."""
  from tfganebm.config import Config  # pylint: disable=g-import-not-at-top
  cells = sweeping.grid(Config(), proposal=['langevin', 'prior'], space=['data', 'latent'])
  assert sorted((c.proposal, c.space) for c in cells) == [
      ('langevin', 'data'), ('langevin', 'latent'), ('prior', 'latent')]
  assert len(sweeping.grid(Config(), jump_prob=[0.2, 0.5], local_beta=[0.1, 0.3])) == 1
  prior = Config().override(langevin_space='latent', langevin_proposal='prior')
  assert len(sweeping.grid(prior, jump_prob=[0.2, 0.5], local_beta=[0.1, 0.3])) == 4
  with pytest.raises(sweeping.SweepError, match='no sampler the run can use'):
    sweeping.grid(Config(), proposal=['prior'])


def test_a_sweep_csv_without_a_settings_column_reads_the_runs_value(tmp_path):
  """A sweep.csv written before a setting was an axis has no column for it: its cells ran
  with the run's value, which is what the row gets."""
  from tfganebm.sampler import SamplerConfig  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'sweep.csv'
  path.write_text('steps,step_size,noise,grad_clip,metropolis,space,sliced_wasserstein\n'
                  '20,0.001,0.0447,0.0,False,latent,0.05\n')
  run = SamplerConfig(space='latent', proposal='prior', jump_prob=0.5)
  [row] = sweeping.read_rows(str(path), run)
  assert (row['steps'], row['metropolis'], row['proposal'], row['jump_prob']) == (
      20, False, 'prior', 0.5)
  assert sweeping.key(run)[1:] != sweeping.key(SamplerConfig(space='latent'))[1:]


def test_a_target_accept_axis_tunes_its_cells_and_a_tuned_run_sweeps_as_a_fixed_one(
    run_dir, tmp_path):
  """A cell with --langevin_target_accept tunes its step size from its step_size, and its
  row says what tuning chose; without that axis, a tuned run's cells are fixed samplers."""
  from tfganebm.config import Config  # pylint: disable=g-import-not-at-top
  tuned_run = Config().override(langevin_target_accept=0.57, langevin_step_size=0.02)
  [cell] = sweeping.grid(tuned_run, steps=[5])
  assert (cell.target_accept, cell.step_size) == (0.0, 0.02)
  rows, _, _ = sweeping.run(str(run_dir), str(tmp_path / 's'),
                            dict(steps=[5], step_size=[1e-4], target_accept=[0, 0.57],
                                 tune_steps=[20]), num_samples=NUM_SAMPLES)
  fixed, tuned = sorted(rows, key=lambda r: r['target_accept'])
  assert 'tuned_step_size' not in fixed or fixed['tuned_step_size'] is None
  assert tuned['step_size'] == 1e-4 and tuned['tuned_step_size'] != 1e-4
  assert 0 <= tuned['tuned_acceptance'] <= 1
  assert fixed['sliced_wasserstein'] != tuned['sliced_wasserstein']
