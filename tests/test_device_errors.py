"""What the device runner and the sample scorer say about bad input: one `error:` line, no loss.

Each bad input gets exit status != 0, exactly one stderr line starting with
`error:` that names the problem, no traceback, and leaves the files already on
disk as they were.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.test_export import _snapshot
from tfganebm import exporting
from tfganebm import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, 'export', 'sample_litert.py')
SCORER = os.path.join(ROOT, 'tools', 'score_samples.py')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """(workdir, export directory) of a tiny moons model: the workdir holds the config.json that
  training writes (all the scorer reads of a run), the export its untrained networks (what
  the runner's refusals need; training, load_run and export are tests/test_export.py's)."""
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top
  from tfganebm import sizing  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('device')
  # The config as training records it in config.json (the data's shape and widths filled in).
  config = sizing.for_data(tiny_config(root / 'run', train_steps=2), (2,))
  (root / 'run').mkdir()
  workdir_lib.write_config(str(root / 'run'), config)
  model = model_lib.build(config, (2,), inference=True)
  exporting.export(model, config, (2,), str(root / 'exported'))
  return root / 'run', root / 'exported'


def _run(*args):
  return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                        timeout=300, check=False)


def _error_line(result):
  """The one `error:` line of a failed run; fails the test on anything else."""
  assert result.returncode != 0, result.stdout
  assert 'Traceback' not in result.stderr, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1, result.stderr
  return errors[0]


def _export_copy(exported, tmp_path, export_json=None):
  """A copy of the export whose export.json is replaced by `export_json` (str or bytes)."""
  copy = tmp_path / 'copy'
  shutil.copytree(exported[1], copy)
  if isinstance(export_json, str):
    (copy / 'export.json').write_text(export_json)
  elif isinstance(export_json, bytes):
    (copy / 'export.json').write_bytes(export_json)
  return copy


def _tflite(tmp_path, **functions):
  """The .tflite bytes of a SavedModel whose signatures are the given tf.functions."""
  saved = tmp_path / 'saved_model'
  tf.saved_model.save(tf.Module(), str(saved), signatures={
      name: function.get_concrete_function() for name, function in functions.items()})
  return tf.lite.TFLiteConverter.from_saved_model(str(saved),
                                                  signature_keys=list(functions)).convert()


def _handmade_export(tmp_path, **functions):
  """A directory with the .tflite of `functions` and an export.json for latent 4, data [2]."""
  directory = tmp_path / 'handmade'
  directory.mkdir()
  (directory / 'model.tflite').write_bytes(_tflite(tmp_path, **functions))
  (directory / 'export.json').write_text(json.dumps(dict(
      latent_dim=4, data_shape=[2], langevin=dict(steps=3, step_size=0.01, noise=0.01))))
  return directory / 'model.tflite'


@pytest.mark.parametrize('content, message', [
    ('{"latent_dim": 8, "data_shape": [2', 'not readable JSON'),
    (b'\xff\xfe\x00', 'not readable JSON'),
    ('[1, 2]', 'not a JSON object'),
    ('{"data_shape": [2], "langevin": {"steps": 1, "step_size": 0.1, "noise": 0.1}}',
     'latent_dim'),
    ('{"latent_dim": 20, "langevin": {"steps": 1, "step_size": 0.1, "noise": 0.1}}',
     'data_shape'),
    ('{"latent_dim": 20, "data_shape": [2]}', 'langevin.steps'),
])
def test_runner_rejects_a_damaged_export_json(exported, tmp_path, content, message):
  copy = _export_copy(exported, tmp_path, content)
  (tmp_path / 'out').mkdir()
  (tmp_path / 'out' / 'samples.npy').write_text('earlier samples')
  before = _snapshot(tmp_path)
  assert message in _error_line(_run(RUNNER, copy / 'model.tflite', '--out', tmp_path / 'out'))
  assert _snapshot(tmp_path) == before


def test_runner_rejects_a_tflite_of_another_export(exported, tmp_path):
  info = json.loads((exported[1] / 'export.json').read_text())
  info['latent_dim'] += 1
  copy = _export_copy(exported, tmp_path, json.dumps(info))
  line = _error_line(_run(RUNNER, copy / 'model.tflite', '--out', tmp_path / 'out'))
  assert 'another export' in line and f'latent_dim {info["latent_dim"]}' in line
  assert not (tmp_path / 'out').exists()


def test_runner_rejects_a_tflite_without_a_generate_signature(tmp_path):
  energy = tf.function(lambda x: {'e': tf.reduce_sum(x, 1)},
                       input_signature=[tf.TensorSpec([None, 2], tf.float32, name='x')])
  model = _handmade_export(tmp_path, energy=energy)
  line = _error_line(_run(RUNNER, model, '--out', tmp_path / 'out'))
  assert 'no generate(z) -> x signature' in line and 'energy' in line
  assert not (tmp_path / 'out').exists()


def test_runner_says_a_directory_is_not_a_model(exported, tmp_path):
  line = _error_line(_run(RUNNER, exported[1], '--out', tmp_path / 'out'))
  assert 'is a directory' in line and str(exported[1] / 'model.tflite') in line
  assert not (tmp_path / 'out').exists()


def test_runner_keeps_a_regular_file_named_by_out(exported, tmp_path):
  (tmp_path / 'out').write_text('mine')
  line = _error_line(_run(RUNNER, exported[1] / 'model.tflite', '--out', tmp_path / 'out'))
  assert 'existing file' in line
  assert (tmp_path / 'out').read_text() == 'mine'


@pytest.mark.parametrize('flag, value', [('--langevin_steps', '-3'),
                                         ('--langevin_step_size', '-0.01'),
                                         ('--langevin_noise', '-0.01'),
                                         ('--langevin_noise', 'nan')])
def test_runner_refuses_negative_langevin_settings(exported, tmp_path, flag, value):
  line = _error_line(_run(RUNNER, exported[1] / 'model.tflite', '--out', tmp_path / 'out',
                          flag, value))
  assert flag in line and '>= 0' in line
  assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('flag, value, says', [
    ('--langevin_steps', '100000000', 'fewer --langevin_steps'),
    ('--num_samples', '100000000000', 'fewer --num_samples'),  # beyond any machine's memory
])
def test_runner_checks_the_memory_it_will_need_before_allocating(exported, tmp_path, flag,
                                                                  value, says):
  started = time.time()
  line = _error_line(_run(RUNNER, exported[1] / 'model.tflite', '--out', tmp_path / 'out',
                          flag, value))
  assert 'GiB of memory' in line and 'GiB are free' in line and says in line, line
  assert time.time() - started < 60  # refused before it allocates or runs
  assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('flags, export_json, message', [
    (['--langevin_jump_prob', '1.5'], None, '--langevin_jump_prob is 1.5; it must be in [0, 1]'),
    (['--langevin_jump_prob', 'nan'], None, '--langevin_jump_prob is nan'),
    (['--langevin_local_beta', '0'], None, '--langevin_local_beta is 0.0; it must be in (0, 1]'),
    ([], dict(jump_prob='half'), "export.json's langevin.jump_prob is 'half'"),
    ([], dict(local_beta=None), "export.json's langevin.local_beta is None"),
])
def test_runner_refuses_a_bad_prior_mix(exported, tmp_path, flags, export_json, message):
  """The prior proposal's jump_prob and local_beta, from the flags or export.json."""
  info = json.loads((exported[1] / 'export.json').read_text())
  info['langevin'].update(export_json or {})
  copy = _export_copy(exported, tmp_path, json.dumps(info))
  line = _error_line(_run(RUNNER, copy / 'model.tflite', '--out', tmp_path / 'out',
                          '--langevin_space', 'latent', '--langevin_proposal', 'prior', *flags))
  assert message in line
  assert not (tmp_path / 'out').exists()


def test_runner_refuses_a_prior_mix_flag_without_the_prior_proposal(exported, tmp_path):
  line = _error_line(_run(RUNNER, exported[1] / 'model.tflite', '--out', tmp_path / 'out',
                          '--langevin_jump_prob', '0.5'))
  assert '--langevin_jump_prob' in line and 'needs --langevin_proposal prior' in line
  assert not (tmp_path / 'out').exists()


def _nan_where_positive(v):
  """v [B, 2] -> NaN where v > 0, else v: some samples non-finite, some not."""
  return tf.sqrt(-v) * -tf.sqrt(-v)


@pytest.mark.parametrize('source, message', [('generate', 'check the export'),
                                             ('langevin_step', 'fewer --langevin_steps')])
def test_runner_writes_no_non_finite_samples(tmp_path, source, message):
  z_spec = tf.TensorSpec([None, 4], tf.float32, name='z')
  specs = [tf.TensorSpec([None, 2], tf.float32, name='x'),
           tf.TensorSpec([None, 2], tf.float32, name='noise'),
           tf.TensorSpec([], tf.float32, name='step_size')]
  generate = tf.function(
      lambda z: {'x': _nan_where_positive(z[:, :2]) if source == 'generate' else z[:, :2]},
      input_signature=[z_spec])
  step = tf.function(lambda x, noise, step_size: {'x': _nan_where_positive(x + noise)},
                     input_signature=specs)
  model = _handmade_export(tmp_path, generate=generate, langevin_step=step)
  (tmp_path / 'out').mkdir()
  np.save(tmp_path / 'out' / 'samples.npy', np.zeros((3, 2), np.float32))
  before = _snapshot(tmp_path)
  line = _error_line(_run(RUNNER, model, '--num_samples', '40', '--out', tmp_path / 'out'))
  assert 'of 40 samples' in line and 'non-finite' in line and message in line
  assert _snapshot(tmp_path) == before


def test_runner_still_writes_finite_samples(exported, tmp_path):
  result = _run(RUNNER, exported[1] / 'model.tflite', '--num_samples', '30', '--out',
                tmp_path / 'out', '--langevin_steps', '0')
  assert result.returncode == 0, result.stderr
  samples = np.load(tmp_path / 'out' / 'samples.npy')
  assert samples.shape == (30, 2)
  assert not [name for name in os.listdir(tmp_path / 'out') if 'partial' in name]


@pytest.fixture(scope='module')
def score_samples():
  spec = importlib.util.spec_from_file_location('score_samples', SCORER)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _write_samples(path, kind):
  if kind == 'wrong_shape':
    np.save(path, np.zeros((8, 3), np.float32))
  elif kind == 'empty':
    np.save(path, np.zeros((0, 2), np.float32))
  elif kind == 'npz':
    with open(path, 'wb') as f:
      np.savez(f, x=np.zeros((8, 2), np.float32))
  elif kind == 'strings':
    np.save(path, np.array([['0.1', '0.2']] * 8))
  elif kind == 'objects':
    np.save(path, np.array([[0.1, None]] * 8, dtype=object), allow_pickle=True)
  elif kind == 'text':
    path.write_text('0.1,0.2\n0.3,0.4\n')
  elif kind == 'non_finite':
    x = np.zeros((8, 2), np.float32)
    x[2, 0], x[5, 1] = np.nan, np.inf
    np.save(path, x)


@pytest.mark.parametrize('kind, message', [
    ('wrong_shape', 'has shape [8, 3]'),
    ('empty', 'holds no samples'),
    ('npz', '.npz archive'),
    ('strings', 'not numbers'),
    ('objects', 'Python objects'),
    ('text', 'not a .npy file'),
    ('non_finite', '2 of 8 samples are non-finite'),
])
def test_scorer_rejects_samples_it_cannot_score(exported, tmp_path, monkeypatch, score_samples,
                                                kind, message):
  path = tmp_path / 'samples.npy'
  _write_samples(path, kind)
  before = _snapshot(tmp_path)
  monkeypatch.setattr(sys, 'argv', [SCORER, '--workdir', str(exported[0]), str(path)])
  with pytest.raises(SystemExit) as exit_info:
    score_samples.main()
  # sys.exit(message) prints it to stderr as the only line and exits with status 1.
  line = exit_info.value.code
  assert isinstance(line, str) and line.startswith('error:') and '\n' not in line
  assert message in line and str(path) in line
  assert _snapshot(tmp_path) == before


def test_scorer_reports_a_bad_file_in_one_line_on_the_command_line(exported, tmp_path):
  path = tmp_path / 'samples.npz'
  _write_samples(path, 'npz')
  assert '.npz archive' in _error_line(_run(SCORER, '--workdir', exported[0], path))


def test_scorer_still_scores_good_samples(exported, tmp_path, monkeypatch, score_samples, capsys):
  path = tmp_path / 'samples.npy'
  np.save(path, np.random.default_rng(0).uniform(-1, 1, (64, 2)).astype(np.float64))
  monkeypatch.setattr(sys, 'argv', [SCORER, '--workdir', str(exported[0]), str(path)])
  score_samples.main()
  scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[str(path)]
  assert np.isfinite(scores['mmd2'])


def test_reference_draws_put_real_points_at_the_floor_and_shifted_ones_above(score_samples,
                                                                              monkeypatch):
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  # The swiss roll's points are i.i.d. (make_moons spaces its points evenly along the moons).
  config = config_lib.Config().override(dataset='swissroll')
  train, _ = data.load_points('swissroll', data.DEFAULT_NUM_POINTS, None, 0, num_held_out=1)
  real = data.DATASETS['swissroll'](1000, None, 99, scale=train.scale).x  # a seed no draw uses
  draws, draw = [], data.DATASETS['swissroll']
  monkeypatch.setitem(data.DATASETS, 'swissroll', lambda n, noise, seed, scale=None: (
      draws.append((n, seed, scale)), draw(n, noise, seed, scale=scale))[1])
  at_floor = score_samples.reference_draws(config, real, 8)
  # Fresh seeds (the run trains on 0 and holds out 1), in the training points' scaling.
  fresh = [(n, seed) for n, seed, scale in draws if n == 2000]
  assert fresh == [(2000, seed) for seed in range(2, 10)]
  assert all(np.array_equal(scale, train.scale) for n, _, scale in draws if n == 2000)
  shifted = score_samples.reference_draws(config, real + np.float32(0.1), 8)
  assert at_floor['reference_draws'] == 8
  assert at_floor['floor_sliced_wasserstein'] == shifted['floor_sliced_wasserstein'] > 0
  assert 0.7 < at_floor['sliced_wasserstein_to_floor'] < 1.4
  assert shifted['sliced_wasserstein_to_floor'] > 2.5
  assert np.isclose(shifted['sliced_wasserstein_to_floor'],
                    shifted['sliced_wasserstein'] / shifted['floor_sliced_wasserstein'])


def test_scorer_reference_draws_through_its_main(exported, tmp_path, score_samples, capsys):
  """--reference_draws through the scorer's main and its flags (in this process: the
  command-line's one error line and exit status are
  test_scorer_reports_a_bad_file_in_one_line_on_the_command_line's)."""
  path = tmp_path / 'samples.npy'
  np.save(path, np.random.default_rng(0).uniform(-1, 1, (200, 2)).astype(np.float32))
  score_samples.main(['--workdir', str(exported[0]), '--reference_draws', '3', str(path)])
  scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[str(path)]
  assert scores['reference_draws'] == 3 and scores['sliced_wasserstein_to_floor'] > 1
  with pytest.raises(SystemExit) as exit_info:
    score_samples.main(['--workdir', str(exported[0]), '--reference_draws', '-1', str(path)])
  # sys.exit(message) prints it to stderr as the only line and exits with status 1.
  line = exit_info.value.code
  assert isinstance(line, str) and line.startswith('error:') and '\n' not in line
  assert 'must be >= 0' in line


def test_scorer_refuses_reference_draws_for_images(exported, tmp_path, monkeypatch, score_samples):
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'samples.npy'
  np.save(path, np.zeros((4, 28, 28, 1), np.float32))
  monkeypatch.setattr(score_samples.workdir_lib, 'read_config',
                      lambda workdir: config_lib.Config().override(dataset='mnist'))
  monkeypatch.setattr(sys, 'argv', [SCORER, '--workdir', str(exported[0]), '--reference_draws',
                                    '4', str(path)])
  with pytest.raises(SystemExit) as exit_info:
    score_samples.main()
  assert exit_info.value.code.startswith(
      'error: --reference_draws is for the built-in 2D data, not mnist')
