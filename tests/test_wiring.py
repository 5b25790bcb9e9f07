"""The wiring of Algorithm 3: which batch each network learns from in `train_step`.

In GAN + EBM, D's real batch is the Langevin output x_ebm (the chains also pushed
into the replay buffer) and its fake batch is G's samples; in the plain GAN, D's
real batch is the data. E's loss takes the data as positive and x_ebm as negative.
The tests run `train_step` eagerly and record what D and the losses receive, so a
swapped batch fails them; the plain GAN is also taken through export to the
device runner.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import tfganebm
from tests.conftest import tiny_config
from tfganebm import data
from tfganebm import losses
from tfganebm import model as model_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, 'export', 'sample_litert.py')
BATCH = 32


class _Recorder:
  """Stands in for a network: forwards calls and attributes, keeps each (input, output)."""

  def __init__(self, network):
    self._network = network
    self.calls = []

  def __call__(self, x, *args, **kwargs):
    y = self._network(x, *args, **kwargs)
    self.calls.append((np.array(x, np.float32), np.array(y, np.float32)))
    return y

  def __getattr__(self, name):
    return getattr(self._network, name)


def _model(tmp_path, **overrides):
  """An eager tiny model and a moons batch [BATCH, 2]."""
  config = tiny_config(tmp_path, jit_compile=False, batch_size=BATCH, buffer_capacity=2 * BATCH,
                       **overrides)
  train, _ = data.load_points('moons', 256, None, 0)
  return model_lib.build(config, (2,)), tf.constant(train.x[:BATCH])


def _recorded(monkeypatch, name):
  """Replaces losses.<name> by a wrapper; returns the list of numpy args of its calls."""
  calls, original = [], getattr(losses, name)

  def record(*args):
    calls.append([np.array(a, np.float32) for a in args[:2]])
    return original(*args)

  monkeypatch.setattr(losses, name, record)
  return calls


def _pushed(model, step):
  """x_ebm [BATCH, 2]: what `step` (0-based, one push of BATCH per step) wrote to the buffer."""
  start = step * BATCH % model.replay_buffer.capacity
  return model.replay_buffer.samples.numpy()[0, start:start + BATCH]


def _input_of(recorder, logits):
  """The input of the recorded call whose output is `logits`."""
  found = [x for x, y in recorder.calls if np.array_equal(y.reshape(-1), logits.reshape(-1))]
  assert len(found) == 1, f'{len(found)} calls of D gave these logits'
  return found[0]


@pytest.mark.parametrize('model_name', ['gan_ebm', 'gan'])
def test_discriminator_sees_refined_chains_or_data_as_real_and_generator_samples_as_fake(
    tmp_path, monkeypatch, model_name):
  model, x_real = _model(tmp_path, model=model_name)
  discriminator = _Recorder(model.discriminator)
  generator = _Recorder(model.generator)
  monkeypatch.setattr(model, 'discriminator', discriminator)
  monkeypatch.setattr(model, 'generator', generator)
  d_losses = _recorded(monkeypatch, 'discriminator_loss')
  for step in range(2):  # the second starts most chains from the buffer
    discriminator.calls.clear()
    generator.calls.clear()
    d_losses.clear()
    model.train_step(x_real)
    assert len(d_losses) == 1, 'one D update per step'
    real_logits, fake_logits = d_losses[0]
    d_real, d_fake = _input_of(discriminator, real_logits), _input_of(discriminator, fake_logits)
    x_gen = generator.calls[0][1]  # the first G call of a step draws the batch D calls fake
    np.testing.assert_array_equal(d_fake, x_gen, err_msg='D fake batch is not G(z)')
    if model_name == 'gan':
      np.testing.assert_array_equal(d_real, x_real.numpy(), err_msg='D real batch is not data')
      continue
    x_ebm = _pushed(model, step)
    # The chains moved away from G's samples and the data, so the checks tell them apart.
    assert np.abs(x_ebm - x_gen).max() > 1e-3 and np.abs(x_ebm - x_real.numpy()).max() > 1e-3
    np.testing.assert_array_equal(d_real, x_ebm, err_msg='D real batch is not the chains')


def test_energy_loss_takes_data_as_positive_and_chains_as_negative(tmp_path, monkeypatch):
  model, x_real = _model(tmp_path)
  energy, expected, calls = model.energy, [], []
  original = losses.energy_loss

  def record(energy_real, energy_sampled, alpha):
    # Before E's update: E of the data and of the chains just pushed, computed here.
    x_ebm = _pushed(model, len(calls))
    expected.append([np.reshape(energy(x, training=False), [-1])
                     for x in (x_real, tf.constant(x_ebm))])
    calls.append([np.array(energy_real), np.array(energy_sampled)])
    return original(energy_real, energy_sampled, alpha)

  monkeypatch.setattr(losses, 'energy_loss', record)
  for _ in range(2):
    model.train_step(x_real)
  assert len(calls) == 2
  for (energy_real, energy_ebm), (of_data, of_chains) in zip(calls, expected):
    assert np.abs(of_data - of_chains).max() > 1e-4  # the two sets are told apart
    np.testing.assert_allclose(energy_real, of_data, atol=1e-5, err_msg='positive is not data')
    np.testing.assert_allclose(energy_ebm, of_chains, atol=1e-5, err_msg='negative is not x_ebm')


def test_energy_step_lowers_energy_of_data_relative_to_chains(tmp_path):
  # With alpha = 0 E's loss is the gap mean E(x_real) - mean E(x_ebm) itself, and one
  # small optimizer step along its gradient must lower it; swapped roles would raise it.
  model, x_real = _model(tmp_path, alpha=0.0, energy_learning_rate=1e-3)
  before = [w.numpy().copy() for w in model.energy.weights]
  model.train_step(x_real)
  x_ebm = tf.constant(_pushed(model, 0))

  def gap():
    return float(tf.reduce_mean(model.energy_of(x_real)) - tf.reduce_mean(model.energy_of(x_ebm)))

  after_step = gap()
  model.energy.set_weights(before)
  before_step = gap()
  assert after_step < before_step - 1e-4, (before_step, after_step)


def test_plain_gan_trains_exports_and_samples_on_the_device_runner(tmp_path):
  workdir, out, samples_dir = tmp_path / 'run', tmp_path / 'exported', tmp_path / 'samples'
  tfganebm.train(tiny_config(workdir, model='gan', train_steps=2, jit_compile=False))
  model, config = tfganebm.load_run(str(workdir))[:2]
  data_shape = (2,)  # moons
  assert model.energy is None and int(model.step.numpy()) == 2
  info = tfganebm.export_model(model, config, data_shape, str(out))
  assert list(info['signatures']) == ['generate']

  # The .tflite's generate is the trained G.
  interpreter = Interpreter(model_path=str(out / 'model.tflite'))
  assert list(interpreter.get_signature_list()) == ['generate']
  z = np.random.default_rng(0).standard_normal((16, model.latent_dim)).astype(np.float32)
  np.testing.assert_allclose(interpreter.get_signature_runner('generate')(z=z)['x'],
                             model.generator(z, training=False), atol=1e-4)

  # export.json asks for Langevin steps (tiny_config's langevin_steps=5); with no E the
  # runner must still sample, leaving G's samples as they are.
  assert info['langevin']['steps'] > 0
  result = subprocess.run([sys.executable, RUNNER, str(out / 'model.tflite'), '--num_samples',
                           '40', '--out', str(samples_dir)],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  samples = np.load(samples_dir / 'samples.npy')
  assert samples.shape == (40, *data_shape) and np.all(np.isfinite(samples))
  assert np.abs(samples).max() <= 1.0 and samples.std(0).min() > 0
  np.testing.assert_array_equal(samples, np.load(samples_dir / 'samples_generator.npy'))
