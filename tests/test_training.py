"""Whole runs: resume from a checkpoint, refuse incompatible workdirs."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfganebm import loop
from tfganebm import runs
from tfganebm import training
from tfganebm import workdir as workdir_lib


def _variables(workdir):
  reader = tf.train.load_checkpoint(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
  names = [n for n in reader.get_variable_to_shape_map()
           if 'OBJECT_GRAPH' not in n and not n.startswith('save_counter')]  # bookkeeping
  return {n: reader.get_tensor(n) for n in names}


def test_resumed_run_continues_identically(tiny, tmp_path):
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  # With XLA, as configs/moons.cfg trains; conditional (the moon as the label), so that the
  # labels' batches and the buffer's labels resume exactly too. An unconditional run's exact
  # resume from a stop: tests/test_cluster.py's SIGTERM test.
  settings = dict(conditional=True, jit_compile=True)
  training.train(tiny(straight, train_steps=4, **settings))
  training.train(tiny(resumed, train_steps=2, **settings))  # "killed" after step 2
  training.train(tiny(resumed, train_steps=4, **settings))
  a, b = _variables(straight), _variables(resumed)
  assert a.keys() == b.keys()
  # Weights (saved under their optimizers' paths), the three optimizers, the replay buffer
  # with its labels and the RNG state are all in there.
  for part in ('generator', 'discriminator', 'g_optimizer', 'd_optimizer', 'e_optimizer',
               'replay_buffer', 'replay_buffer/labels', 'rng', 'step'):
    assert any(name.startswith(part + '/') for name in a), part
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_run_writes_its_workdir(tiny, tmp_path):
  training.train(tiny(tmp_path))
  for name in ('flags.txt', 'metrics.json', 'samples.png', 'langevin_progression.png'):
    assert (tmp_path / name).exists(), name
  assert os.listdir(tmp_path / 'tensorboard')
  with open(tmp_path / 'metrics.json') as f:
    written = json.load(f)
  assert written['step'] == 4 and written['num_samples'] == 64 and written['model'] == 'gan_ebm'
  assert {'generator', 'generator_langevin', 'real_data', 'energy'} <= set(written)
  assert np.isfinite(written['energy']['held_out_nll'])  # read by tools/compare_runs.py
  # The held-out floor is closer to the data than 4 steps of G.
  assert written['real_data']['mmd2'] < written['generator']['mmd2']
  assert written['langevin']['steps'] == 5  # the inference sampler, not the training one (3)
  assert json.loads((tmp_path / 'config.json').read_text())['sampler']['steps'] == 5


def test_resume_refuses_other_networks(tiny, tmp_path):
  training.train(tiny(tmp_path, train_steps=2))
  before = sorted(os.listdir(tmp_path / workdir_lib.CHECKPOINT_DIR))
  with pytest.raises(training.RunError, match='energy_units'):
    training.train(tiny(tmp_path, train_steps=4, energy_units=(16, 16)))
  assert sorted(os.listdir(tmp_path / workdir_lib.CHECKPOINT_DIR)) == before


def test_damaged_checkpoint_is_refused_without_touching_the_workdir(tiny, tmp_path):
  training.train(tiny(tmp_path, train_steps=2))
  checkpoints = tmp_path / workdir_lib.CHECKPOINT_DIR
  for data_file in checkpoints.glob('*.data-*'):
    data_file.write_bytes(b'\0' * 16)
  flags_before = (tmp_path / 'flags.txt').read_text()
  with pytest.raises(training.RunError, match='cannot resume'):
    training.train(tiny(tmp_path, train_steps=4))
  assert (tmp_path / 'flags.txt').read_text() == flags_before


def test_average_checkpoints_gives_g_and_e_the_mean_of_the_last_n(tiny, tmp_path):
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top
  config = tiny(tmp_path, train_steps=5, checkpoint_every=1, log_every=1, average_checkpoints=4)
  result = training.train(config)
  assert result['averaged_steps'] == [2, 3, 4, 5]
  state = tf.train.get_checkpoint_state(os.path.join(tmp_path, workdir_lib.CHECKPOINT_DIR))
  saved = []
  for path in state.all_model_checkpoint_paths:  # max(3, 4) kept: steps 2 to 5
    model = model_lib.build(config, (2,))
    tf.train.Checkpoint(**model.checkpoint_items()).restore(path).expect_partial()
    saved.append(model)
  assert len(saved) == 4

  loaded, _ = runs.load_run(str(tmp_path))

  assert loaded.averaged_steps == [2, 3, 4, 5] and int(loaded.step.numpy()) == 5
  for name in ('generator', 'energy'):
    for i, weight in enumerate(getattr(loaded, name).get_weights()):
      copies = [getattr(m, name).get_weights()[i] for m in saved]
      assert not np.allclose(copies[0], copies[-1])  # the weights moved between checkpoints
      np.testing.assert_allclose(weight, np.mean(copies, 0), rtol=1e-5, atol=1e-7)

  oldest = state.all_model_checkpoint_paths[0]
  for part in tf.io.gfile.glob(oldest + '.data-*'):
    os.remove(part)
  with pytest.raises(workdir_lib.LoadError, match='average_checkpoints=1'):
    runs.load_run(str(tmp_path))
  loaded, _ = runs.load_run(str(tmp_path), {'average_checkpoints': 1})
  assert loaded.averaged_steps is None
  for weight, latest in zip(loaded.generator.get_weights(), saved[-1].generator.get_weights()):
    np.testing.assert_array_equal(weight, latest)


@pytest.mark.parametrize('model', ['gan_ebm', 'gan'])
def test_ema_decay_gives_sampling_the_moving_average_of_g_and_e(tiny, tmp_path, model):
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top
  config = tiny(tmp_path, train_steps=3, checkpoint_every=1, log_every=1, ema_decay=0.5,
                model=model)
  names = ('generator', 'energy') if model == 'gan_ebm' else ('generator',)
  initial = model_lib.build(config, (2,))  # the same seed: the weights training starts from
  training.train(config)
  state = tf.train.get_checkpoint_state(os.path.join(tmp_path, workdir_lib.CHECKPOINT_DIR))
  saved = []
  for path in state.all_model_checkpoint_paths:  # steps 1, 2, 3
    model = model_lib.build(config, (2,))
    tf.train.Checkpoint(**model.checkpoint_items()).restore(path).expect_partial()
    saved.append(model)
  assert [int(m.step.numpy()) for m in saved] == [1, 2, 3]
  assert {n.split('/')[0] for n in _variables(tmp_path) if '_average' in n.split('/')[0]} == {
      f'{name}_average' for name in names}

  loaded, _ = runs.load_run(str(tmp_path))

  assert sorted(loaded.averages) == sorted(names)
  for name in names:
    expected = getattr(initial, name).get_weights()
    for t, model in enumerate(saved):  # the warm-up: decay min(0.5, (1 + t) / (10 + t))
      decay = min(0.5, (1 + t) / (10 + t))
      expected = [e - (1 - decay) * (e - w) for e, w in zip(expected, getattr(model, name)
                                                                .get_weights())]
    weights = getattr(loaded, name).get_weights()
    latest = getattr(saved[-1], name).get_weights()
    assert not all(np.allclose(w, l) for w, l in zip(weights, latest))  # not the latest
    for weight, want in zip(weights, expected):
      np.testing.assert_allclose(weight, want, rtol=1e-5, atol=1e-6)
  with pytest.raises(training.RunError, match='ema_decay'):  # the checkpoint holds them
    training.train(tiny(tmp_path, train_steps=4, ema_decay=0.0))


def _pictures(workdir):
  """{tag: [(step, (width, height, PNG bytes))]} of the image summaries in a run's events."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  events = event_accumulator.EventAccumulator(str(workdir / 'tensorboard'),
                                              size_guidance={'tensors': 0})
  events.Reload()
  return {tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
          for tag in events.Tags()['tensors']
          if events.SummaryMetadata(tag).plugin_data.plugin_name == 'images'}


def _scalars(workdir):
  """{tag: [(step, value)]} of the scalar summaries in a run's events."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  events = event_accumulator.EventAccumulator(str(workdir / 'tensorboard'),
                                              size_guidance={'tensors': 0})
  events.Reload()
  return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
          for tag in events.Tags()['tensors']
          if events.SummaryMetadata(tag).plugin_data.plugin_name == 'scalars'}


def test_tensorboard_scalars_are_the_means_of_each_log_window(tiny, tmp_path):
  """--log_every=2 over 4 steps: every tracker and the speed at steps 2 and 4, each the mean
  of its window's steps. With --buffer_reuse_prob=1 the first step reuses no chain (an empty
  buffer) and every later one all of them: reuse 1/2 at step 2, 1 at step 4. Fails if the
  trackers were not reset between windows (step 4 would show 3/4, the run's mean) or a
  window's scalars were written at another step."""
  training.train(tiny(tmp_path, train_steps=4, log_every=2, buffer_reuse_prob=1.0,
                      eval_num_samples=16))
  scalars = _scalars(tmp_path)
  assert set(scalars) == {'d_loss', 'g_loss', 'e_loss', 'energy_real', 'energy_ebm',
                          'buffer_reuse', 'steps_per_second'}
  for tag, values in scalars.items():
    assert [step for step, _ in values] == [2, 4], tag
    assert all(np.isfinite(value) for _, value in values), tag
  assert scalars['buffer_reuse'] == [(2, 0.5), (4, 1.0)]


def test_tensorboard_holds_pictures_of_g_and_the_chain(tmp_path):
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  training.train(tiny_config(tmp_path / 'run', train_steps=6, image_every=3))
  pictures = _pictures(tmp_path / 'run')
  assert set(pictures) == {'samples'}
  assert [step for step, _ in pictures['samples']] == [3, 6]
  width, height, png = pictures['samples'][-1][1]
  assert int(width) > 200 and int(height) > 200 and png[:4] == b'\x89PNG'


def test_train_step_and_samplers_trace_once_across_a_run_and_its_resume(tmp_path, monkeypatch):
  """Every call of the host loop (any number of steps), every TensorBoard picture and every
  segment of a quality curve reuses its one trace: no retracing in a run or a resume."""
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tfganebm import chains  # pylint: disable=g-import-not-at-top
  from tfganebm import summaries  # pylint: disable=g-import-not-at-top
  loops, pictures = [], []
  make_multi_step = loop.make_multi_step
  monkeypatch.setattr(loop, 'make_multi_step',
                      lambda *args: loops.append(make_multi_step(*args)) or loops[-1])

  class Pictures(summaries.ImageSummaries):

    def __init__(self, *args):
      super().__init__(*args)
      pictures.append(self)

  monkeypatch.setattr(summaries, 'ImageSummaries', Pictures)
  workdir = tmp_path / 'run'
  # Calls of 2, 1, 2 and 1 steps (log 2, checkpoint 3, pictures 2): one signature.
  training.train(tiny_config(workdir, train_steps=6, log_every=2, checkpoint_every=3,
                             image_every=2, eval_num_samples=16))
  training.train(tiny_config(workdir, train_steps=11, log_every=2, checkpoint_every=3,
                             image_every=2, eval_num_samples=16))  # resumes from step 6
  assert len(loops) == len(pictures) == 2
  for host_loop, picture in zip(loops, pictures):
    assert host_loop.experimental_get_tracing_count() == 1
    assert picture.refine.experimental_get_tracing_count() == 1
    assert picture.generate.experimental_get_tracing_count() == 1

  # The quality curve advances one chain in segments of 2, 3 and 5 steps: one trace.
  model, config = runs.load_run(str(workdir))
  traced, function = [], tf.function

  def spy(func=None, **options):
    if func is None:  # used as @tf.function(...)
      return lambda f: spy(f, **options)
    traced.append(function(func, **options))
    return traced[-1]

  monkeypatch.setattr(tf, 'function', spy)
  list(chains.chains_at(model, 16, 0, config.sampler, [0, 2, 5, 10]))
  # ... and so does every other draw and step size of that kind of chain (a sweep's cells).
  other = dataclasses.replace(config.sampler, step_size=0.01, noise=0.2)
  list(chains.chains_at(model, 16, 1, other, [3, 7]))
  assert len(traced) == 1 and traced[0].experimental_get_tracing_count() == 1


def test_resume_refuses_data_that_changed_size(tiny, tmp_path):
  """A user's file with more rows would shift every later batch: the resume is refused."""
  points = tmp_path / 'points.npy'
  rng = np.random.default_rng(0)
  first = rng.normal(size=(300, 3))
  np.save(points, first)
  run = tmp_path / 'run'
  training.train(tiny(run, dataset=f'npy:{points}', num_examples=0, train_steps=2))
  np.save(points, rng.normal(size=(320, 3)))
  with pytest.raises(training.RunError, match='270 training examples then, 288 now'):
    training.train(tiny(run, dataset=f'npy:{points}', num_examples=0, train_steps=4))
  np.save(points, first[::-1])  # the same size, other contents
  with pytest.raises(training.RunError, match='other data'):
    training.train(tiny(run, dataset=f'npy:{points}', num_examples=0, train_steps=4))
  np.save(points, first)  # the data back: the run resumes
  assert training.train(tiny(run, dataset=f'npy:{points}', num_examples=0,
                             train_steps=4))['step'] == 4
