"""Refining a generator the user already has: a Keras model of their own making, frozen or
fine-tuned, through sampling, export and the device runner."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TINY_FLAGS, config_from_flags, run_module
from tfganebm import exporting
from tfganebm import pretrained
from tfganebm import runs
from tfganebm import sample as sample_lib
from tfganebm import training
from tfganebm import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [flag for flag in TINY_FLAGS if not flag.startswith('--generator_units')]  # G: a file
_run = run_module


def _errors(result):
  return [line for line in result.stderr.splitlines() if line.startswith('error:')]


def _refine_config(tmp_path, *flags):
  """The Config `python -m tfganebm.refine flags...` trains: refine's main is train's, with
  --generator required (the flags' file in `tmp_path`)."""
  assert any(flag.startswith('--generator=') for flag in flags)
  return config_from_flags(tmp_path, *flags)


def _users_generator(path, latent=4, activation='sigmoid', scale=1.0):
  """Not a tfganebm network: the user's own Sequential, outputs in [0, scale] (sigmoid)."""
  keras.utils.set_random_seed(7)
  model = keras.Sequential([keras.Input((latent,)), keras.layers.Dense(16, activation='relu'),
                            keras.layers.Dense(2, activation=activation),
                            keras.layers.Rescaling(scale)])
  model.save(path)
  return model


@pytest.fixture(scope='module')
def refined(tmp_path_factory):
  """The user's [0, 1] generator refined 4 steps with G frozen, on moons."""
  root = tmp_path_factory.mktemp('refine')
  user = _users_generator(str(root / 'mine.keras'))
  workdir = root / 'run'
  result = _run('tfganebm.refine', f'--generator={root / "mine.keras"}', '--generator_range=0,1',
                f'--workdir={workdir}', *TINY, '--train_steps=4')
  assert result.returncode == 0, result.stderr[-3000:]
  return user, root, workdir


def test_refine_trains_only_e_and_keeps_the_users_generator(refined):
  user, root, workdir = refined
  model, config = runs.load_run(str(workdir))
  assert config.networks.latent_dim == 4  # read from the user's model
  assert config.pretrained.generator_range == (0.0, 1.0)
  assert not config.pretrained.finetune_generator
  z = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
  # G is the user's network, frozen, mapped from [0, 1] to the data's [-1, 1].
  np.testing.assert_allclose(model.generator(z), 2 * np.asarray(user(z)) - 1, atol=1e-6)
  metrics = json.loads((workdir / 'metrics.json').read_text())
  assert metrics['step'] == 4 and 'generator_langevin' in metrics
  assert (workdir / 'source_generator.keras').exists()  # the run is whole without mine.keras
  early, _ = runs.load_run(str(workdir))
  runs.restore_networks(early, str(workdir / 'checkpoints' / 'ckpt-2'))
  assert int(early.step.numpy()) == 2
  assert any(not np.allclose(a, b) for a, b in zip(model.energy.get_weights(),
                                                   early.energy.get_weights()))  # E learned
  np.testing.assert_array_equal(early.generator(z), model.generator(z))  # G did not
  # Native Keras files of G and E: a process that never imported tfganebm opens them.
  script = ('import sys, keras, numpy as np; z = np.load(sys.argv[1]); '
            'g = keras.models.load_model(sys.argv[2]); e = keras.models.load_model(sys.argv[3]); '
            'x = np.asarray(g(z)); np.save(sys.argv[1], np.reshape(e(x), [-1]))')
  np.save(root / 'z.npy', z)
  result = subprocess.run([sys.executable, '-c', script, str(root / 'z.npy'),
                           str(workdir / 'generator.keras'), str(workdir / 'energy.keras')],
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  np.testing.assert_allclose(np.load(root / 'z.npy'), model.energy_of(model.generator(z)),
                             atol=1e-5)


def test_refined_run_samples_exports_and_runs_on_the_device(refined):
  user, root, workdir = refined
  # `python -m tfganebm.sample --num_samples=50` and `tfganebm.export`, in this process.
  out = root / 'samples'
  sample_lib.sample_run(str(workdir), str(out), 50, overrides={})
  x_gen = np.load(out / 'samples_generator.npy')
  assert x_gen.shape == (50, 2) and x_gen.min() >= -1 and x_gen.max() <= 1
  exported = root / 'exported'
  exporting.export_run(str(workdir), str(exported))
  info = json.loads((exported / 'export.json').read_text())
  assert info['latent_dim'] == 4 and 'sample' in info['signatures']
  device = root / 'device'
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'export', 'sample_litert.py'),
                           str(exported / 'model.tflite'), '--num_samples', '32',
                           '--out', str(device)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  samples = np.load(device / 'samples.npy')
  assert samples.shape == (32, 2) and np.all(np.isfinite(samples))


def test_finetune_generator_also_trains_g(refined, tmp_path):
  user, root, _ = refined
  workdir = tmp_path / 'run'
  # The refine command's flags, trained in this process (the `refined` fixture runs the
  # command; its --finetune_generator flag is parsed by the refused refine of the last test).
  training.train(_refine_config(tmp_path, f'--generator={root / "mine.keras"}',
                                '--generator_range=0,1', '--finetune_generator',
                                f'--workdir={workdir}', *TINY, '--train_steps=2'))
  model, config = runs.load_run(str(workdir))
  assert config.pretrained.finetune_generator
  z = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
  assert not np.allclose(model.generator(z), 2 * np.asarray(user(z)) - 1, atol=1e-6)


@pytest.mark.parametrize('make, flags, words', [
    (lambda p: _users_generator(p, latent=3, activation='tanh', scale=10.0),
     ['--generator_range=-1,1'], ['outside --generator_range=-1,1']),
    (lambda p: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save(p), [],
     ['shape (3,)', '(2,)']),
    (lambda p: keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda z: z[:, :2])]
                                ).save(p), [], ['cannot open', 'Lambda']),
    (lambda p: open(p, 'w').write('not a model'), [], ['cannot open']),
])
def test_a_generator_that_does_not_fit_is_one_line_before_anything_is_written(
    tmp_path, make, flags, words):
  path = str(tmp_path / 'g.keras')
  make(path)
  workdir = tmp_path / 'run'
  result = _run('tfganebm.refine', f'--generator={path}', f'--workdir={workdir}', *TINY,
                '--train_steps=2', *flags)
  assert result.returncode != 0 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  errors = _errors(result)
  assert len(errors) == 1, result.stderr[-2000:]
  for word in words:
    assert word in errors[0], errors[0]
  assert not workdir.exists()


def test_a_new_run_takes_the_new_generator_and_a_refused_resume_writes_nothing(refined,
                                                                                tmp_path):
  _, root, workdir = refined
  other = tmp_path / 'other.keras'
  _users_generator(str(other), latent=6)
  # A workdir whose first attempt saved no checkpoint: the second attempt's file is used.
  fresh = tmp_path / 'fresh'
  fresh.mkdir()
  _users_generator(str(fresh / 'source_generator.keras'), latent=4)  # an earlier attempt's copy
  (fresh / 'source_generator.keras.source.json').write_text('{"source": "earlier.keras"}')
  training.train(_refine_config(tmp_path, f'--generator={other}', '--generator_range=0,1',
                                f'--workdir={fresh}', *TINY, '--train_steps=2'))
  assert workdir_lib.read_config(str(fresh)).networks.latent_dim == 6
  # A file of that name that no refine wrote is the user's: refused, kept as it was.
  users = tmp_path / 'users'
  users.mkdir()
  (users / 'source_generator.keras').write_text('mine')
  result = _run('tfganebm.refine', f'--generator={other}', '--generator_range=0,1',
                f'--workdir={users}', *TINY, '--train_steps=2')
  assert result.returncode != 0 and 'not written by tfganebm.refine' in _errors(result)[0]
  assert (users / 'source_generator.keras').read_text() == 'mine'
  # A finished plain run refuses a refine on top of it and gets no copy.
  before = sorted(os.listdir(workdir))
  for flags in ([f'--generator={other}', '--generator_range=0,1'],
                [f'--generator={root / "mine.keras"}', '--generator_range=0,1',
                 '--finetune_generator']):
    result = _run('tfganebm.refine', *flags, f'--workdir={workdir}', *TINY, '--train_steps=6')
    errors = _errors(result)
    assert result.returncode != 0 and len(errors) == 1, result.stderr[-2000:]
    assert 'other settings' in errors[0], errors[0]
  assert sorted(os.listdir(workdir)) == before
  result = _run('tfganebm.refine', '--generator=', f'--workdir={tmp_path / "none"}', *TINY)
  assert result.returncode != 0 and '--generator must name' in result.stderr


def test_saved_model_generator_loads_through_its_serving_endpoint(tmp_path):
  user = _users_generator(str(tmp_path / 'mine.keras'))
  user.export(str(tmp_path / 'saved'))
  generator = pretrained.load(str(tmp_path / 'saved'), (2,), (0.0, 1.0))
  z = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
  np.testing.assert_allclose(generator(z), 2 * np.asarray(user(z)) - 1, atol=1e-5)


def test_saved_model_with_a_serving_default_signature_and_unsafe_ops(tmp_path):
  """A plain tf.Module SavedModel works through serving_default; one whose function writes a
  file is refused before anything runs."""
  class Generator(tf.Module):

    def __init__(self, write):
      super().__init__()
      self.w = tf.Variable(tf.random.stateless_normal([3, 2], [1, 2]))
      self.write = write

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, z):
      if self.write:
        tf.io.write_file(str(tmp_path / 'ran'), 'side effect')
      return {'x': tf.tanh(z @ self.w)}

  for write in (False, True):
    module = Generator(write)
    path = str(tmp_path / f'saved_{write}')
    tf.saved_model.save(module, path, signatures={'serving_default': module.__call__})
    if write:
      with pytest.raises(pretrained.GeneratorError, match='WriteFile'):
        pretrained.load(path, (2,))
      assert not (tmp_path / 'ran').exists()
    else:
      generator = pretrained.load(path, (2,))
      z = np.ones((4, 3), np.float32)
      np.testing.assert_allclose(generator(z), module(z)['x'], atol=1e-6)


def test_keep_copy_refuses_a_generator_inside_the_copy_it_would_replace(tmp_path):
  """A SavedModel G kept inside a refine's own source_generator/ copy: replacing that copy
  would delete the generator being copied, so it is refused and both stay."""
  workdir = tmp_path / 'run'
  copy = workdir / 'source_generator'
  inner = copy / 'mine'
  inner.mkdir(parents=True)
  (inner / 'saved_model.pb').write_text('graph')
  (workdir / 'source_generator.source.json').write_text('{"source": "earlier"}')
  with pytest.raises(pretrained.GeneratorError, match='inside'):
    pretrained.keep_copy(str(workdir), str(inner))
  assert (inner / 'saved_model.pb').read_text() == 'graph'
  assert sorted(p.name for p in workdir.iterdir()) == ['source_generator',
                                                       'source_generator.source.json']
