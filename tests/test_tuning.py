"""The self-tuning sampler: dual averaging of the step size to a target acceptance, and the
tuned step kept through a save, a load and an export."""

import json
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from tfganebm import config as config_lib
from tfganebm import exporting
from tfganebm import runs
from tfganebm import training
from tfganebm import tuning
from tfganebm.sampler import SamplerConfig

SCALE = 0.05  # the target's standard deviation, well inside the data range [-1, 1]


def _gaussian_model(dim=8):
  """A stand-in model whose E is a Gaussian of known scale and whose G draws from it."""
  energy_of = lambda x: tf.reduce_sum(tf.square(x), axis=1) / (2 * SCALE**2)
  generator = lambda z: SCALE * z
  return types.SimpleNamespace(
      energy_of=energy_of, inference_generator=generator, latent_dim=dim, energy=True,
      step=tf.Variable(0), averaged_steps=None, num_classes=0,
      bound=lambda labels: (energy_of, generator))


@pytest.mark.parametrize('metropolis', [True, False])
@pytest.mark.parametrize('start', [1e-6, 1e-2])
def test_dual_averaging_reaches_the_target_acceptance_on_a_gaussian(metropolis, start):
  # T = 1: noise = sqrt(2 step), so the chain samples exp(-E) itself.
  sampler = SamplerConfig(steps=50, step_size=start, noise=math.sqrt(2 * start),
                          metropolis=metropolis, target_accept=0.57, tune_steps=400)
  tuned, diagnostics = tuning.tune(_gaussian_model(), sampler, seed=3)
  # Measured afresh at the frozen step: within +-0.05 of the target.
  assert abs(diagnostics['acceptance'] - 0.57) < 0.05, diagnostics['acceptance']
  # Whichever the start (four decades apart), the step lands near the known scale's: for
  # MALA on a d-dimensional Gaussian of std s, about (1.65 s)^2 d^(-1/3) / 2 = 2.7e-3 here.
  assert 1e-3 < tuned.step_size < 6e-3, tuned.step_size
  assert tuned.step_size == diagnostics['step_size']
  # The temperature is kept: noise^2 / (2 step) = 1.
  assert math.isclose(tuned.noise**2 / (2 * tuned.step_size), 1.0, rel_tol=1e-6)
  trace = diagnostics['trace']
  assert len(trace['step']) == len(trace['acceptance']) == len(trace['step_size']) <= 100
  assert trace['step_size'][0] == pytest.approx(start)  # it moved from where it started


def test_target_accept_is_refused_where_it_cannot_apply():
  with pytest.raises(config_lib.ConfigError, match='--train_langevin_target_accept must be 0'):
    config_lib.Config.from_flat(dict(train_langevin_target_accept=0.5))
  with pytest.raises(config_lib.ConfigError, match='--langevin_target_accept tunes a Langevin'):
    config_lib.Config.from_flat(dict(langevin_target_accept=0.5, langevin_space='latent',
                                     langevin_proposal='prior'))
  with pytest.raises(config_lib.ConfigError, match='--langevin_noise > 0'):
    config_lib.Config.from_flat(dict(langevin_target_accept=0.5, langevin_noise=0.0))
  with pytest.raises(config_lib.ConfigError, match='--langevin_target_accept'):
    config_lib.Config.from_flat(dict(langevin_target_accept=1.0))


def test_the_tuned_step_survives_a_save_a_load_and_an_export(tiny, tmp_path, monkeypatch):
  workdir = tmp_path / 'run'
  training.train(tiny(workdir, langevin_target_accept=0.6, langevin_tune_steps=40,
                      langevin_metropolis=True, langevin_step_size=1e-5, langevin_noise=0.01))
  with open(workdir / tuning.TUNED_FILE) as f:
    stored = json.load(f)['tunings'][-1]['tuned']
  tuned_step = stored['step_size']
  assert tuned_step != 1e-5 and stored['warmup_steps'] == 40
  with open(workdir / 'metrics.json') as f:
    metrics = json.load(f)
  assert metrics['langevin']['step_size'] == tuned_step  # the evaluation sampled with it
  assert metrics['sampler_tuning']['acceptance'] == stored['acceptance']
  assert list(workdir.glob('tensorboard/*'))

  def no_tuning(*args, **kwargs):
    raise AssertionError('tuned again: the stored tuning was not read')

  monkeypatch.setattr(tuning, 'tune', no_tuning)
  _, config = runs.load_run(str(workdir))  # a new process would read the same file
  assert config.sampler.step_size == tuned_step
  assert config.sampler.noise == pytest.approx(0.01 * math.sqrt(tuned_step / 1e-5))
  exporting.export_run(str(workdir), str(tmp_path / 'export'))
  with open(tmp_path / 'export' / 'export.json') as f:
    langevin = json.load(f)['langevin']
  assert langevin['step_size'] == tuned_step and langevin['noise'] == config.sampler.noise
  # Another sampler asked of the run is tuned for itself, and the first stays stored.
  monkeypatch.undo()
  _, other = runs.load_run(str(workdir), {'langevin_steps': 3})
  assert other.sampler.step_size != tuned_step
  with open(workdir / tuning.TUNED_FILE) as f:
    assert len(json.load(f)['tunings']) == 2
  _, again = runs.load_run(str(workdir))
  assert again.sampler.step_size == tuned_step
  assert np.isfinite(again.sampler.noise)
