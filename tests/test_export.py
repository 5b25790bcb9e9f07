"""Export to SavedModel/TFLite: LiteRT parity with TensorFlow, atomic writes, the device runner."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tests.conftest import one_line_error
from tests.conftest import run_module
from tfganebm import exporting
from tfganebm import langevin
from tfganebm import runs
from tfganebm import sampler as sampler_lib
from tfganebm import signatures
from tfganebm import training
from tfganebm import workdir as workdir_lib
from tfganebm import xnnpack_form

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-4  # float32 LiteRT vs TensorFlow


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('export')
  training.train(tiny_config(root / 'run', train_steps=6, energy_units=(16, 16)))
  model, config = runs.load_run(str(root / 'run'))
  data_shape = model.data_shape
  out = root / 'exported'
  exporting.export(model, config, data_shape, str(out), quantize=('float16', 'dynamic_range'))
  return model, out


def _runner(path, name):
  interpreter = Interpreter(model_path=str(path))
  return interpreter.get_signature_runner(name)


@pytest.mark.parametrize('batch', [1, 16, 64])
def test_litert_generate_and_energy_match_tensorflow(exported, batch):
  model, out = exported
  z = np.random.default_rng(batch).standard_normal((batch, model.latent_dim)).astype(np.float32)
  x = _runner(out / 'model.tflite', 'generate')(z=z)['x']
  np.testing.assert_allclose(x, model.generator(z, training=False), atol=TOLERANCE)
  e = _runner(out / 'model.tflite', 'energy')(x=x)['e']
  assert e.shape == (batch,)
  np.testing.assert_allclose(e, model.energy_of(tf.constant(x)), atol=TOLERANCE)


def test_litert_langevin_step_and_chain_match_tensorflow(exported):
  model, out = exported
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (32, 2)).astype(np.float32)
  steps, step_size = 25, np.float32(0.05)
  noise = (0.05 * rng.standard_normal((steps, 32, 2))).astype(np.float32)

  # One step: the input gradient of E inside the update.
  step = _runner(out / 'model.tflite', 'langevin_step')
  tf_grad = langevin.energy_gradient(model.energy_of, tf.constant(x)).numpy()
  litert_grad = (x - step(x=x, noise=np.zeros_like(x), step_size=np.float32(1.0))['x'])
  inside = np.abs(x - tf_grad).max(1) < 1  # where the clip to [-1, 1] did not act
  np.testing.assert_allclose(litert_grad[inside], tf_grad[inside], atol=TOLERANCE)

  # A whole K-step chain fed the same noise, looped on the device side and fused.
  expected, looped = tf.constant(x), x
  for k in range(steps):
    expected = langevin.langevin_step(model.energy_of, expected, noise[k], step_size, 1.0)
    looped = step(x=looped, noise=noise[k], step_size=step_size)['x']
  np.testing.assert_allclose(looped, expected, atol=TOLERANCE)
  z = rng.standard_normal((32, model.latent_dim)).astype(np.float32)
  fused = _runner(out / 'model.tflite', 'sample')(z=z, noise=noise, step_size=step_size)['x']
  expected = model.generator(z, training=False)
  for k in range(steps):
    expected = langevin.langevin_step(model.energy_of, expected, noise[k], step_size, 1.0)
  np.testing.assert_allclose(fused, expected, atol=TOLERANCE)


def _tf_latent_chain(model, z, noise, step_size, uniform=None, noise_std=None):
  """(z, the acceptance of each step) after tfganebm.sampler's chain on U(z) = E(G(z)) +
  |z|^2 / 2 in TensorFlow, fed `noise` [K, B, latent]; MALA steps given `uniform` [K, B]."""
  potential = sampler_lib.latent_energy(model.energy_of,
                                        lambda z: model.generator(z, training=False))
  z = tf.constant(z)
  energy, grad = langevin.energy_and_gradient(potential, z)
  accepted = []
  for k, noise_k in enumerate(noise):
    if uniform is not None:
      z, energy, grad, ok = langevin.metropolis_step(
          potential, z, energy, grad, noise_k / noise_std, uniform[k], step_size, noise_std,
          low=None, high=None)
      accepted.append(ok.numpy())
    else:
      z = langevin.langevin_step(potential, z, noise_k, step_size, 1.0, low=None, high=None)
  return z, accepted


@pytest.mark.parametrize('metropolis', [False, True])
def test_litert_latent_chain_matches_tensorflow(exported, metropolis):
  """The latent sampler's signatures, stepped on the device side and fused, against
  tfganebm.sampler's chain on U(z) = E(G(z)) + |z|^2 / 2 fed the same noise."""
  model, out = exported
  rng = np.random.default_rng(3)
  steps, batch, step_size, noise_std = 15, 32, np.float32(0.05), np.float32(0.3)
  z = rng.standard_normal((batch, model.latent_dim)).astype(np.float32)
  noise = (noise_std * rng.standard_normal((steps, batch, model.latent_dim))).astype(np.float32)
  uniform = rng.uniform(size=(steps, batch)).astype(np.float32)
  expected, accepted = _tf_latent_chain(model, z, noise, step_size,
                                        *((uniform, noise_std) if metropolis else ()))
  if metropolis:
    assert 0.05 < np.mean(accepted) < 1.0  # both branches of the accept/reject are exercised
  assert np.abs(expected.numpy()).max() > 1.0  # unbounded: nothing clipped z to [-1, 1]
  scalars = dict(step_size=step_size, **(dict(noise_std=noise_std) if metropolis else {}))
  name = 'latent_metropolis_step' if metropolis else 'latent_step'
  step, looped = _runner(out / 'model.tflite', name), z
  for k in range(steps):
    extra = dict(uniform=uniform[k]) if metropolis else {}
    looped = step(z=looped, noise=noise[k], **extra, **scalars)['z']
  np.testing.assert_allclose(looped, expected, atol=TOLERANCE)
  fused = _runner(out / 'model.tflite', 'sample_latent_metropolis' if metropolis
                  else 'sample_latent')(z=z, noise=noise,
                                        **(dict(uniform=uniform) if metropolis else {}),
                                        **scalars)['x']
  np.testing.assert_allclose(fused, model.generator(expected, training=False), atol=TOLERANCE)


@pytest.mark.parametrize('quantize, tolerance', [('float16', 2e-2), ('dynamic_range', 5e-2)])
def test_quantized_files_stay_close(exported, quantize, tolerance):
  model, out = exported
  z = np.random.default_rng(1).standard_normal((16, model.latent_dim)).astype(np.float32)
  x = _runner(out / exporting.tflite_name(quantize), 'generate')(z=z)['x']
  assert np.abs(x - model.generator(z, training=False).numpy()).max() < tolerance


def test_export_refuses_to_overwrite_and_leaves_the_old_files(exported, tmp_path):
  model, out = exported
  target = tmp_path / 'existing'
  target.mkdir()
  (target / 'keep.txt').write_text('mine')
  with pytest.raises(exporting.ExportError, match='--overwrite'):
    exporting.export(model, _config(out), (2,), str(target))
  assert (target / 'keep.txt').read_text() == 'mine'
  assert os.listdir(tmp_path) == ['existing']  # no staging directory left behind
  with pytest.raises(exporting.ExportError, match='not an earlier export'):
    exporting.export(model, _config(out), (2,), str(target), overwrite=True)
  assert (target / 'keep.txt').read_text() == 'mine'
  earlier = tmp_path / 'earlier'
  shutil.copytree(out, earlier)  # an earlier export, with its quantized files
  exporting.export(model, _config(out), (2,), str(earlier), overwrite=True)
  assert sorted(os.listdir(earlier)) == ['export.json', 'model.tflite', 'saved_model']
  assert sorted(os.listdir(tmp_path)) == ['earlier', 'existing']


def test_saved_model_signatures_match_the_model(exported):
  model, out = exported
  loaded = tf.saved_model.load(str(out / 'saved_model'))
  assert set(loaded.signatures) == set(signatures.SIGNATURES)
  z = tf.random.normal([4, model.latent_dim])
  np.testing.assert_allclose(loaded.signatures['generate'](z=z)['x'],
                             model.generator(z, training=False), atol=1e-6)


def test_both_formats_and_export_json_name_the_tables_inputs_and_outputs(exported):
  """An MLP G's export holds every signature of the table, in each place under the names
  the table gives its inputs and output (what the device runner calls them by)."""
  _, out = exported
  info = json.loads((out / 'export.json').read_text())
  table = {s.name: (sorted(s.input_names), [s.output]) for s in signatures.TABLE}
  assert {name: (sorted(entry['inputs']), entry['outputs'])
          for name, entry in info['signatures'].items()} == table
  litert = Interpreter(model_path=str(out / 'model.tflite')).get_signature_list()
  assert {name: (sorted(entry['inputs']), sorted(entry['outputs']))
          for name, entry in litert.items()} == table
  saved = tf.saved_model.load(str(out / 'saved_model')).signatures
  assert {name: (sorted(function.structured_input_signature[1]),
                 sorted(function.structured_outputs)) for name, function in saved.items()} == table


# The README's shapes of each kind of input in the table.
_README_SHAPES = {signatures.X: '[B, *data_shape]', signatures.Z: '[B, latent]',
                  signatures.X_CHAIN: '[K, B, ...]', signatures.Z_CHAIN: '[K, B, latent]',
                  signatures.PER_CHAIN: '[B]', signatures.PER_STEP: '[K, B]'}


def test_readme_signature_table_is_the_export_table():
  """The README's table: the table's signatures in its order, with their inputs' and
  output's names, and the shape of each input where the README gives one."""
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    rows = [line for line in f if line.startswith('| `')]
  assert [re.match(r'\| `(\w+)`', row).group(1) for row in rows] == list(signatures.SIGNATURES)
  for row, signature in zip(rows, signatures.TABLE):
    inputs, output = re.match(r'\| `\w+` \| `([^`]*)` -> `([^`]*)`', row).groups()
    given = [re.match(r'(\w+)(?: (\[.*\]))?$', part).groups()
             for part in re.split(r', (?![^\[]*\])', inputs)]
    assert [name for name, _ in given] == list(signature.input_names), row
    for (name, shape), (_, kind) in zip(given, signature.inputs):
      assert shape in (None, _README_SHAPES.get(kind)), (row, name)
    assert output.split(' ')[0] == signature.output, row


@pytest.mark.parametrize('space', ['data', 'latent'])
def test_device_runner_needs_no_tensorflow(exported, tmp_path, space):
  _, out = exported
  script = os.path.join(ROOT, 'export', 'sample_litert.py')
  code = (f'import runpy, sys; sys.argv = ["sample_litert.py", {str(out / "model.tflite")!r}, '
          f'"--num_samples", "40", "--out", {str(tmp_path)!r}, "--langevin_steps", "5", '
          f'"--langevin_space", {space!r}]; '
          f'runpy.run_path({script!r}, run_name="__main__"); '
          'assert "tensorflow" not in sys.modules, "the runner imported tensorflow"')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  # The runner's draws (seed 0: z, then the noise of each step) through TF's model and chain.
  model, settings = exported[0], json.loads((out / 'export.json').read_text())['langevin']
  assert not settings['metropolis'] and settings['proposal'] == 'langevin'
  rng, step_size = np.random.default_rng(0), np.float32(settings['step_size'])
  z = rng.standard_normal((40, model.latent_dim)).astype(np.float32)
  x_gen = model.generator(z, training=False)
  np.testing.assert_allclose(np.load(tmp_path / 'samples_generator.npy'), x_gen, atol=TOLERANCE)
  noise_shape = (5, 40, model.latent_dim if space == 'latent' else 2)
  noise = (settings['noise'] * rng.standard_normal(noise_shape)).astype(np.float32)
  if space == 'latent':
    expected = model.generator(_tf_latent_chain(model, z, noise, step_size)[0], training=False)
  else:
    expected = x_gen
    for noise_k in noise:
      expected = langevin.langevin_step(model.energy_of, expected, noise_k, step_size, 1.0,
                                        settings['grad_clip'])
  samples = np.load(tmp_path / 'samples.npy')
  assert samples.shape == (40, 2)
  assert np.abs(samples - x_gen).max() > 1e-3  # the chains moved
  np.testing.assert_allclose(samples, expected, atol=TOLERANCE)


@pytest.mark.parametrize('metropolis', [False, True])
def test_device_runner_latent_sampler_loops_and_fuses_alike(exported, metropolis):
  model, out = exported
  runner = _device_runner()
  info = json.loads((out / 'export.json').read_text())
  interpreter = Interpreter(model_path=str(out / 'model.tflite'))
  draw = lambda fused: runner.sample(interpreter, info, 40, 8, 0.05, 0.3, seed=1, fused=fused,
                                     metropolis=metropolis, space='latent')
  (x_gen, looped), (_, fused) = draw(False), draw(True)
  np.testing.assert_allclose(fused, looped, atol=TOLERANCE)
  assert np.abs(looped - x_gen).max() > 1e-3  # the chains moved
  # The runner's draws (seed 1: z, the noise, then the uniforms) through TF's latent chain.
  rng, step_size, noise_std = np.random.default_rng(1), np.float32(0.05), np.float32(0.3)
  z = rng.standard_normal((40, model.latent_dim)).astype(np.float32)
  noise = (0.3 * rng.standard_normal((8, 40, model.latent_dim))).astype(np.float32)
  uniform = rng.uniform(size=(8, 40)).astype(np.float32) if metropolis else None
  z_chain, _ = _tf_latent_chain(model, z, noise, step_size, uniform, noise_std)
  np.testing.assert_allclose(looped, model.generator(z_chain, training=False), atol=TOLERANCE)


def _device_runner():
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      'sample_litert', os.path.join(ROOT, 'export', 'sample_litert.py'))
  runner = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(runner)
  return runner


def test_device_runner_rejects_a_file_that_is_not_a_model(tmp_path):
  bad = tmp_path / 'model.tflite'
  bad.write_bytes(b'not a flatbuffer')
  (tmp_path / 'export.json').write_text('{"langevin": {"steps": 1, "step_size": 0.1, '
                                        '"noise": 0.1}, "data_shape": [2], "latent_dim": 2}')
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'export', 'sample_litert.py'),
                           str(bad), '--out', str(tmp_path / 'out')],
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith('error:')
  assert not (tmp_path / 'out').exists()


def test_litert_metropolis_chain_matches_tensorflow(exported):
  model, out = exported
  rng = np.random.default_rng(2)
  steps, batch, step_size, noise_std = 20, 32, np.float32(0.01), np.float32(0.1)
  z = rng.standard_normal((batch, model.latent_dim)).astype(np.float32)
  noise = (noise_std * rng.standard_normal((steps, batch, 2))).astype(np.float32)
  uniform = rng.uniform(size=(steps, batch)).astype(np.float32)
  x = tf.clip_by_value(model.generator(z, training=False), -1.0, 1.0)
  energy, grad = langevin.energy_and_gradient(model.energy_of, x)
  accepted = []
  for k in range(steps):
    x, energy, grad, ok = langevin.metropolis_step(model.energy_of, x, energy, grad,
                                                   noise[k] / noise_std, uniform[k], step_size,
                                                   noise_std)
    accepted.append(ok.numpy())
  assert 0.05 < np.mean(accepted) < 1.0  # both branches of the accept/reject are exercised
  fused = _runner(out / 'model.tflite', 'sample_metropolis')(
      z=z, noise=noise, uniform=uniform, step_size=step_size, noise_std=noise_std)['x']
  np.testing.assert_allclose(fused, x, atol=TOLERANCE)
  looped = model.generator(z, training=False).numpy()
  step = _runner(out / 'model.tflite', 'metropolis_step')
  for k in range(steps):
    looped = step(x=looped, noise=noise[k], uniform=uniform[k], step_size=step_size,
                  noise_std=noise_std)['x']
  np.testing.assert_allclose(looped, x, atol=TOLERANCE)


def test_fourier_feature_energy_exports_with_builtin_ops(tmp_path):
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top
  config = tiny_config(energy_fourier_features=16, jit_compile=False)
  model = model_lib.build(config, (2,))
  exporting.export(model, config, (2,), str(tmp_path / 'out'))
  x = np.random.default_rng(0).uniform(-1, 1, (16, 2)).astype(np.float32)
  np.testing.assert_allclose(_runner(tmp_path / 'out' / 'model.tflite', 'energy')(x=x)['e'],
                             model.energy_of(tf.constant(x)), atol=TOLERANCE)
  step = _runner(tmp_path / 'out' / 'model.tflite', 'langevin_step')
  expected = langevin.langevin_step(model.energy_of, tf.constant(x), np.zeros_like(x), 0.01, 1.0)
  np.testing.assert_allclose(step(x=x, noise=np.zeros_like(x), step_size=np.float32(0.01))['x'],
                             expected, atol=TOLERANCE)


def _snapshot(root):
  """{path relative to root: bytes} of every file under root, hidden ones included."""
  files = {}
  for directory, _, names in os.walk(root):
    for name in names:
      path = os.path.join(directory, name)
      with open(path, 'rb') as f:
        files[os.path.relpath(path, root)] = f.read()
  return files


def _config(out):
  """The config of the run that `out` was exported from."""
  return workdir_lib.read_config(str(out.parent / 'run'))


def _dead_pid():
  child = subprocess.Popen([sys.executable, '-c', ''])
  child.wait()
  return child.pid


def test_overwrite_never_deletes_the_run_beside_the_export(exported, tmp_path):
  _, out = exported
  run = tmp_path / 'run'
  shutil.copytree(out.parent / 'run', run)
  (tmp_path / 'notes.txt').write_text('mine')
  before = _snapshot(tmp_path)
  assert 'run/flags.txt' in before and any(p.startswith('run/checkpoints') for p in before)
  result = subprocess.run([sys.executable, '-m', 'tfganebm.export', '--workdir', str(run),
                           '--out', str(tmp_path), '--overwrite'],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode != 0
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and '--out' in errors[0], result.stderr
  assert 'Traceback' not in result.stderr
  assert _snapshot(tmp_path) == before


@pytest.mark.parametrize('case, message', [
    ('regular_file', 'existing file'),
    ('directory_of_other_files', 'not an earlier export'),
    ('export_with_a_file_of_the_user', 'notes.txt'),
    ('directory_holding_the_workdir', 'holds the training run'),
    ('current_directory', 'current directory'),
    ('home_directory', 'home directory'),
])
def test_overwrite_replaces_only_an_earlier_export(exported, tmp_path, monkeypatch, case,
                                                   message):
  model, out = exported
  config = _config(out)
  target, workdir = tmp_path / 'target', None
  if case == 'regular_file':
    target.write_text('mine')
  elif case == 'directory_of_other_files':
    target.mkdir()
    (target / 'results.csv').write_text('mine')
  else:
    shutil.copytree(out, target)
  if case == 'export_with_a_file_of_the_user':
    (target / 'notes.txt').write_text('mine')
  elif case == 'directory_holding_the_workdir':
    workdir = str(target / 'saved_model')
  elif case == 'current_directory':
    monkeypatch.chdir(target / 'saved_model')
  elif case == 'home_directory':
    monkeypatch.setenv('HOME', str(target))
  before = _snapshot(tmp_path)
  with pytest.raises(exporting.ExportError, match=message):
    exporting.export(model, config, (2,), str(target), overwrite=True, workdir=workdir)
  assert _snapshot(tmp_path) == before
  assert sorted(os.listdir(tmp_path)) == ['target']


def test_export_removes_only_what_dead_exports_of_the_same_out_left(exported, tmp_path):
  model, out = exported
  dead, alive = _dead_pid(), os.getpid()
  left = [f'.export-exp-{dead}-a1b2c3d4', f'.replaced-exp-{dead}-e5f6g7h8']
  kept = [f'.export-exp-{alive}-i9j0k1l2',  # an export running now
          f'.export-exp-1-{dead}-m3n4o5p6',  # one of --out exp-1
          '.export-notes']  # the user's
  for name in left + kept:
    (tmp_path / name).mkdir()
    if not name.startswith('.replaced-'):  # killed before it moved an old export in
      (tmp_path / name / 'export.json').write_text('{}')
  foreign = tmp_path / f'.replaced-exp-{dead}-q7r8s9t0'  # not an export's: kept
  foreign.mkdir()
  (foreign / 'notes.txt').write_text('mine')
  exporting.export(model, _config(out), (2,), str(tmp_path / 'exp'))
  assert sorted(os.listdir(tmp_path)) == sorted(kept + [foreign.name, 'exp'])
  assert sorted(os.listdir(tmp_path / 'exp')) == ['export.json', 'model.tflite', 'saved_model']


def test_export_restores_an_earlier_export_that_a_kill_left_moved_aside(exported, tmp_path):
  model, out = exported
  dead = _dead_pid()
  # Killed between its two renames: the old export moved aside, the new one not yet in place.
  shutil.copytree(out, tmp_path / f'.replaced-exp-{dead}-a1b2c3d4' / 'old')
  shutil.copytree(out, tmp_path / f'.export-exp-{dead}-e5f6g7h8')
  with pytest.raises(exporting.ExportError, match='exists; pass --overwrite'):
    exporting.export(model, _config(out), (2,), str(tmp_path / 'exp'))
  assert os.listdir(tmp_path) == ['exp']
  assert _snapshot(tmp_path / 'exp') == _snapshot(out)


@pytest.mark.parametrize('network, label', [('generator', 'G'), ('energy', 'E')])
def test_export_refuses_non_finite_weights_before_writing(exported, tmp_path, network, label):
  _, out = exported
  model, config = runs.load_run(str(out.parent / 'run'))
  data_shape = model.data_shape
  weight = getattr(model, network).weights[0]
  weight.assign(np.full(weight.shape, np.nan, np.float32))
  with pytest.raises(exporting.ExportError, match=f'{label} has non-finite weights.*learning rate'):
    exporting.export(model, config, data_shape, str(tmp_path / 'out'))
  assert not os.listdir(tmp_path)


def _keras_convolutions():
  """The Keras classes' convolution methods that the XNNPACK form must leave alone."""
  import keras  # pylint: disable=g-import-not-at-top
  return keras.layers.Conv2D.convolution_op, keras.layers.Conv2DTranspose.call


def _op_types(function, *specs):
  return {op.type for op in tf.function(function, autograph=False).get_concrete_function(
      *specs).graph.get_operations()}


def test_image_export_runs_convolutions_that_litert_threads_and_matches_the_model(
    tmp_path, capsys, monkeypatch):
  """DCGAN G and the conv E: LiteRT's file has no TRANSPOSE_CONV (whose dynamic output shape
  keeps it off XNNPACK's threads), yet its G, E, chain step and fused chain (`sample`) are
  the model's; the SavedModel keeps TensorFlow's own kernels. While the export traces the
  XNNPACK form, another Keras layer in the process still traces TensorFlow's own op."""
  import keras  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top
  config = tiny_config(dataset='mnist', generator_network='dcgan', generator_units=(16, 8),
                       discriminator_network='dcgan', discriminator_units=(8,),
                       energy_network='conv', energy_units=(4, 8, 8, 8), latent_dim=8,
                       langevin_step_size=1.0, langevin_grad_clip=1.0)
  model = model_lib.build(config, (28, 28, 1), inference=True)
  out = tmp_path / 'export'
  keras_methods = _keras_convolutions()
  transposed = [layer for layer in model.generator.layers
                if isinstance(layer, keras.layers.Conv2DTranspose)]
  other = keras.layers.Conv2DTranspose(2, 4, strides=2, padding='same')  # another model's
  other.build((None, 7, 7, 3))
  seen = []  # (XNNPACK form on, Keras' methods unchanged, `other`'s op TF's own) per E call
  energy_of = model.energy_of

  def energy_while_tracing(x, training=False):
    seen.append(('call' in vars(transposed[0]), _keras_convolutions() == keras_methods,
                 'Conv2DBackpropInput' in _op_types(other, tf.TensorSpec([None, 7, 7, 3]))))
    return energy_of(x, training=training)

  with monkeypatch.context() as patch:
    patch.setattr(model, 'energy_of', energy_while_tracing)
    exporting.export(model, config, (28, 28, 1), str(out))
  assert {form for form, _, _ in seen} == {False, True}  # traced for TF, then for LiteRT
  assert all(unchanged and own for _, unchanged, own in seen)
  assert _keras_convolutions() == keras_methods and 'call' not in vars(transposed[0])
  assert sorted(os.listdir(out)) == ['export.json', 'model.tflite', 'saved_model']
  tf.lite.experimental.Analyzer.analyze(model_path=str(out / 'model.tflite'))
  ops = capsys.readouterr().out
  assert 'CONV_2D' in ops and 'DEPTH_TO_SPACE' in ops and 'TRANSPOSE_CONV' not in ops
  rng = np.random.default_rng(0)
  z = rng.standard_normal((5, 8)).astype(np.float32)
  x = model.generator(z, training=False).numpy()
  generated = _runner(out / 'model.tflite', 'generate')(z=z)['x']
  assert generated.shape == (5, 28, 28, 1)
  np.testing.assert_allclose(generated, x, atol=1e-5)
  energy_of = lambda v: model.energy_of(v, training=False)
  np.testing.assert_allclose(_runner(out / 'model.tflite', 'energy')(x=x)['e'],
                             energy_of(tf.constant(x)), atol=TOLERANCE)
  noise = (0.01 * rng.standard_normal(x.shape)).astype(np.float32)
  expected = langevin.langevin_step(energy_of, tf.constant(x), noise, 1.0, 1.0,
                                    grad_clip=1.0).numpy()
  got = _runner(out / 'model.tflite', 'langevin_step')(x=x, noise=noise,
                                                       step_size=np.float32(1.0))['x']
  np.testing.assert_allclose(got, expected, atol=1e-4)
  assert np.abs(expected - x).max() > 1e-3  # the step moved the images
  # The fused chain: G and K steps in one call, fed the same noise.
  steps, step_size = 5, np.float32(0.01)
  noise = (0.005 * rng.standard_normal((steps, *x.shape))).astype(np.float32)
  expected = tf.constant(x)
  for k in range(steps):
    expected = langevin.langevin_step(energy_of, expected, noise[k], step_size, 1.0,
                                      grad_clip=1.0)
  fused = _runner(out / 'model.tflite', 'sample')(z=z, noise=noise, step_size=step_size)['x']
  np.testing.assert_allclose(fused, expected, atol=TOLERANCE)
  saved = tf.saved_model.load(str(out / 'saved_model')).signatures
  np.testing.assert_allclose(saved['generate'](z=tf.constant(z))['x'], x, atol=1e-5)
  graph = open(out / 'saved_model' / 'saved_model.pb', 'rb').read()
  assert b'Conv2DBackpropInput' in graph and b'DepthToSpace' not in graph


@pytest.mark.parametrize('kernel_size, width, rewritten',
                         [(3, 28, True), ((3, 5), 28, False), (3, 27, False), (5, 28, True)])
def test_xnnpack_form_keeps_every_convolutions_gradient_and_changes_only_its_layers(
    kernel_size, width, rewritten):
  """Square kernels on inputs padded alike take the rewritten gradient (depth_to_space);
  others (a 3 x 5 kernel, rows and columns padded unalike) keep TF's op; either way the
  gradient is TF's. Only the layer given changes, and only inside the block."""
  import keras  # pylint: disable=g-import-not-at-top
  layer = keras.layers.Conv2D(4, kernel_size, strides=2, padding='same')
  other = keras.layers.Conv2D(4, kernel_size, strides=2, padding='same')
  x = tf.constant(np.random.default_rng(0).standard_normal((2, 28, width, 3)), tf.float32)

  def gradient(conv=layer):
    with tf.GradientTape() as tape:
      tape.watch(x)
      total = tf.reduce_sum(tf.sin(conv(x)))
    return tape.gradient(total, x)

  expected, keras_methods = gradient(), _keras_convolutions()
  other(x)  # built outside the traces below
  with xnnpack_form.convolutions([layer]) as changed:
    assert changed == (kernel_size == 3 or kernel_size == 5)  # square: rewritten where it fits
    np.testing.assert_allclose(gradient(), expected, atol=1e-5)
    assert ('DepthToSpace' in _op_types(gradient)) == rewritten
    assert 'DepthToSpace' not in _op_types(lambda: gradient(other))
    assert _keras_convolutions() == keras_methods
  assert 'DepthToSpace' not in _op_types(gradient) and 'convolution_op' not in vars(layer)


def test_litert_prior_latent_chain_matches_tensorflow(exported, tmp_path):
  """proposal=prior: Metropolis-Hastings in z with jumps (beta 1) and local moves (beta < 1)
  mixed per chain and step, stepped on the device side and fused, against
  tfganebm.langevin's step fed the same noise, uniforms and betas; and the device
  runner's CLI runs it."""
  model, out = exported
  rng = np.random.default_rng(5)
  steps, batch, temperature = 12, 32, np.float32(0.02)
  z = rng.standard_normal((batch, model.latent_dim)).astype(np.float32)
  noise = rng.standard_normal((steps, batch, model.latent_dim)).astype(np.float32)
  uniform = rng.uniform(size=(steps, batch)).astype(np.float32)
  beta = np.where(rng.uniform(size=(steps, batch)) < 0.5, 1.0, 0.3).astype(np.float32)
  potential_fn = sampler_lib.prior_potential(model.energy_of,
                                             lambda z: model.generator(z, training=False))
  expected, accepted = tf.constant(z), []
  potential = potential_fn(expected)
  for k in range(steps):
    expected, potential, ok = langevin.prior_step(
        potential_fn, expected, potential, noise[k], uniform[k], temperature, beta[k])
    accepted.append(ok.numpy())
  assert 0.05 < np.mean(accepted) < 0.95  # both branches of the accept/reject are exercised
  step, looped = _runner(out / 'model.tflite', 'latent_prior_step'), z
  for k in range(steps):
    looped = step(z=looped, noise=noise[k], uniform=uniform[k], beta=beta[k],
                  temperature=temperature)['z']
  np.testing.assert_allclose(looped, expected, atol=TOLERANCE)
  fused = _runner(out / 'model.tflite', 'sample_latent_prior')(
      z=z, noise=noise, uniform=uniform, beta=beta, temperature=temperature)['x']
  np.testing.assert_allclose(fused, model.generator(expected, training=False), atol=TOLERANCE)

  for fused_flag in ([], ['--fused']):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'export', 'sample_litert.py'),
         str(out / 'model.tflite'), '--num_samples', '40', '--out', str(tmp_path / 'device'),
         '--langevin_steps', '5', '--langevin_space', 'latent', '--langevin_proposal', 'prior',
         '--langevin_jump_prob', '0.5', *fused_flag], capture_output=True, text=True,
        check=False)
    assert result.returncode == 0, result.stderr
    assert 'prior MH steps in z' in result.stdout
    assert np.load(tmp_path / 'device' / 'samples.npy').shape == (40, 2)
  refused = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'export', 'sample_litert.py'),
       str(out / 'model.tflite'), '--out', str(tmp_path / 'other'), '--langevin_proposal',
       'prior', '--langevin_space', 'data'], capture_output=True, text=True, check=False)
  assert refused.returncode != 0 and refused.stderr.count('\n') == 1
  assert 'needs --langevin_space latent' in refused.stderr
  assert not (tmp_path / 'other').exists()
  refused = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'export', 'sample_litert.py'),
       str(out / 'model.tflite'), '--out', str(tmp_path / 'other'), '--langevin_space', 'latent',
       '--langevin_proposal', 'prior', '--langevin_local_beta', '0'], capture_output=True,
      text=True, check=False)
  assert refused.returncode != 0 and refused.stderr.count('\n') == 1
  assert 'local_beta' in refused.stderr and 'in (0, 1]' in refused.stderr
  assert not (tmp_path / 'other').exists()


def test_export_refuses_an_energy_with_batch_norm_in_one_line(tmp_path):
  """E's BatchNorm has an input gradient that needs the Flex delegate: the command says so
  in one line, before anything is written."""
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  training.train(tiny_config(tmp_path / 'run', train_steps=2, energy_batch_norm=True))
  result = run_module('tfganebm.export', '--workdir', tmp_path / 'run', '--out',
                      tmp_path / 'exported')
  one_line_error(result, 'E has BatchNorm (--energy_batch_norm)', 'Flex delegate',
                 'retrain without it')
  assert os.listdir(tmp_path) == ['run']
