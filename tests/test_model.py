"""One train_step of Algorithm 3 and its losses."""

import numpy as np
import pytest
import tensorflow as tf

from tfganebm import data
from tfganebm import losses
from tfganebm import model as model_lib


def test_discriminator_loss_at_zero_logits_is_two_log_two():
  value = losses.discriminator_loss(tf.zeros([5, 1]), tf.zeros([7]))
  np.testing.assert_allclose(value, 2 * np.log(2), rtol=1e-6)


def test_generator_loss_is_non_saturating():
  # -log sigmoid(l): large when D rejects the fakes, where log(1 - D) would saturate.
  np.testing.assert_allclose(losses.generator_loss(tf.constant([-10.0])),
                             -np.log(1 / (1 + np.exp(10.0))), rtol=1e-5)


def test_energy_loss_is_contrastive_divergence_plus_l2():
  energy_real, energy_ebm = tf.constant([1.0, 3.0]), tf.constant([2.0, -2.0])
  # mean(E+) - mean(E-) = 2 - 0; mean(E+^2 + E-^2) = (5 + 13) / 2 = 9.
  np.testing.assert_allclose(losses.energy_loss(energy_real, energy_ebm, 0.1), 2 + 0.9,
                             rtol=1e-6)


def _snapshot(network):
  return [v.numpy().copy() for v in network.trainable_variables]


def _changed(network, before):
  return [not np.array_equal(v.numpy(), b) for v, b in zip(network.trainable_variables, before)]


def _copy_of_generator(rng):
  """A tf.random.Generator that draws what `rng` will draw next, leaving `rng` as it is."""
  return tf.random.Generator.from_state(rng.state.numpy(), rng.algorithm)


def _one_step(tiny, **overrides):
  config = tiny(**{'jit_compile': False, **overrides})
  train, _ = data.load_points('moons', 256, None, 0)
  model = model_lib.build(config, (2,))
  return model, train.x[:config.train.batch_size]


def test_train_step_updates_all_three_networks(tiny):
  model, x_real = _one_step(tiny)
  networks = (model.generator, model.discriminator, model.energy)
  before = [_snapshot(n) for n in networks]
  logs = model.train_step(tf.constant(x_real))
  for network, snapshot in zip(networks, before):
    assert all(_changed(network, snapshot)), network.name
  assert {'d_loss', 'g_loss', 'e_loss', 'buffer_reuse'} <= set(logs)
  assert int(model.step.numpy()) == 1
  assert int(model.replay_buffer.size.numpy()[0]) == len(x_real)


def test_keras_fit_runs_the_train_step_and_reports_each_epochs_means(tiny):
  """`compile` then Keras' `fit`, the public shape of a keras.Model GAN: two epochs of one
  step each run the steps that `train_step` runs (a twin model from the same seed), train
  every network, and report each epoch's means of the trackers. With --buffer_reuse_prob=1
  the first step starts every chain fresh (an empty buffer: reuse 0) and the second every
  chain from the buffer (reuse 1). Fails if `metrics` did not list the trackers (Keras
  would not reset them between epochs: epoch 2 would report 0.5), or if the model were
  not marked built (`fit` would call it on a data batch as if it were z)."""
  model, x_real = _one_step(tiny, buffer_reuse_prob=1.0)
  twin, _ = _one_step(tiny, buffer_reuse_prob=1.0)
  networks = (model.generator, model.discriminator, model.energy)
  before = [_snapshot(n) for n in networks]
  batches = tf.data.Dataset.from_tensor_slices(x_real).batch(len(x_real)).repeat()
  history = model.fit(batches, epochs=2, steps_per_epoch=1, shuffle=False, verbose=0).history
  assert set(history) == set(model.trackers)
  assert history['buffer_reuse'] == [0.0, 1.0]
  for epoch in range(2):
    twin.reset_metrics()
    logs = twin.train_step(tf.constant(x_real))
    for name, value in logs.items():
      np.testing.assert_allclose(history[name][epoch], value, rtol=1e-5, atol=1e-6)
  for network, snapshot in zip(networks, before):
    assert all(_changed(network, snapshot)), network.name
  assert int(model.step.numpy()) == 2
  assert int(model.e_optimizer.iterations.numpy()) == 2


def test_keras_fit_writes_tensorboard_pictures_at_the_models_steps(tiny, tmp_path):
  """`loop.TensorBoardPictures` as a callback of `fit`, with --image_every=2, over 2 epochs
  of 2 steps: pictures after steps 2 and 4, the model's steps. Fails if the callback counted
  Keras' batch index (which starts again each epoch: pictures twice at 'step 2') or wrote
  after every batch."""
  from tests.test_training import _pictures  # pylint: disable=g-import-not-at-top
  from tfganebm import loop  # pylint: disable=g-import-not-at-top
  config = tiny(tmp_path, image_every=2, train_steps=4)
  model, x_real = _one_step(tiny, image_every=2, train_steps=4)
  writer = tf.summary.create_file_writer(str(tmp_path / 'tensorboard'))
  pictures = loop.TensorBoardPictures(model, config, False, writer, last_step=4)
  written, write = [], pictures.pictures.write
  pictures.pictures.write = lambda step: written.append(step) or write(step)
  batches = tf.data.Dataset.from_tensor_slices(x_real).batch(len(x_real)).repeat()
  model.fit(batches, epochs=2, steps_per_epoch=2, shuffle=False, verbose=0,
            callbacks=[pictures])
  writer.flush()
  assert written == [2, 4]
  assert [step for step, _ in _pictures(tmp_path)['samples']] == [2, 4]


@pytest.mark.parametrize('trained', ['generator', 'discriminator', 'energy'])
def test_each_optimizer_updates_only_its_own_network(tiny, trained):
  model, x_real = _one_step(tiny)
  optimizers = dict(generator=model.g_optimizer, discriminator=model.d_optimizer,
                    energy=model.e_optimizer)
  for name, optimizer in optimizers.items():
    if name != trained:
      optimizer.learning_rate.assign(0.0)
  before = {name: _snapshot(getattr(model, name)) for name in optimizers}
  model.train_step(tf.constant(x_real))
  for name in optimizers:
    changed = _changed(getattr(model, name), before[name])
    assert all(changed) if name == trained else not any(changed), name


def test_extra_gd_updates_take_replay_buffer_batches_and_run_no_extra_chains(tiny):
  model, x_real = _one_step(tiny, gd_updates=3)
  drawn = []
  sample = model.replay_buffer.sample
  model.replay_buffer.sample = lambda batch, rng: drawn.append(batch) or sample(batch, rng)
  model.train_step(tf.constant(x_real))
  assert drawn == [len(x_real)] * 2
  assert int(model.g_optimizer.iterations.numpy()) == 3
  assert int(model.d_optimizer.iterations.numpy()) == 3
  assert int(model.e_optimizer.iterations.numpy()) == 1
  assert int(model.replay_buffer.size.numpy()[0]) == len(x_real)  # one set of chains


def test_extra_gd_updates_need_an_energy(tiny):
  with pytest.raises(ValueError, match='gd_updates'):
    _one_step(tiny, model='gan', gd_updates=2)


def test_plain_gan_trains_without_an_energy(tiny):
  model, x_real = _one_step(tiny, model='gan')
  before = _snapshot(model.generator)
  logs = model.train_step(tf.constant(x_real))
  assert model.energy is None and model.replay_buffer is None
  assert set(logs) == {'d_loss', 'g_loss'}
  assert all(_changed(model.generator, before))


def test_latent_training_chains_start_from_the_prior_and_end_as_g_of_their_z(tiny):
  """--train_langevin_space=latent: the step's chains run in z from fresh prior draws (after
  G's batch), and what E learns from and the buffer keeps is G(z) at their end (G in
  inference mode), recomputed here from a copy of the model's generator with E before the
  step. Fails if the chains started from the buffer or from the z of G's batch, or if the
  pushed samples were G of the chains' starts (z not moved) or x moved in data space."""
  from tfganebm import sampler as sampler_lib  # pylint: disable=g-import-not-at-top
  model, x_real = _one_step(tiny, train_langevin_space='latent', buffer_reuse_prob=0.0,
                            train_langevin_step_size=0.05, train_langevin_noise=0.3)
  batch = len(x_real)
  rng = _copy_of_generator(model.rng)
  weights = model.generator.get_weights()
  model.generator(rng.normal([batch, model.latent_dim]), training=True)  # G's batch (and
  z = rng.normal([batch, model.latent_dim])  # its BatchNorm statistics, which G(z) reads)
  x_chains = sampler_lib.refine(model.energy_of, model.inference_generator, z, rng,
                                model.sampler).numpy()
  assert np.abs(x_chains - model.inference_generator(z).numpy()).max() > 1e-2  # z moved
  model.generator.set_weights(weights)  # as before: the step updates them itself
  energy_before = _snapshot(model.energy)
  logs = model.train_step(tf.constant(x_real))
  assert all(_changed(model.energy, energy_before))
  assert float(logs['buffer_reuse']) == 0.0
  np.testing.assert_allclose(model.replay_buffer.samples.numpy()[0][:batch], x_chains,
                             atol=1e-5)


def test_latent_training_chains_refuse_the_replay_buffer(tiny):
  with pytest.raises(ValueError, match='train_langevin_space=latent .*buffer_reuse_prob=0'):
    tiny(train_langevin_space='latent')


@pytest.mark.parametrize('gan_target', ['chains', 'data'])
def test_d_judges_the_steps_chains_as_real_and_g_samples_as_fake(gan_target):
  """Algorithm 3: D's real batch is this step's data-space chains (K Langevin steps on E
  from G's samples, the ones pushed into the buffer), or the data with
  --gan_target=data; its fake batch is G's samples. Both are recomputed here from a copy
  of the model's generator, with E before the step. Fails if D were fed G's raw samples
  (or the chains' starts) as real, or the chains as fake; with packs of 4, D judges the
  batch of 32 in 8 packs."""
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tfganebm import sampler as sampler_lib  # pylint: disable=g-import-not-at-top
  model = model_lib.build(tiny_config(gan_target=gan_target, discriminator_pack=4))
  x_real = tf.random.uniform([32, 2], -0.5, 0.5, seed=1)
  # The step's draws, in its order: z for G, the buffer's choice (empty: G's samples), the
  # chains' noise.
  rng = _copy_of_generator(model.rng)
  weights = model.generator.get_weights()
  x_gen = model.generator(rng.normal([32, model.latent_dim]), training=True).numpy()
  model.generator.set_weights(weights)  # BatchNorm's statistics: the step updates them
  x_init, _, _ = model.replay_buffer.initial_chains(tf.constant(x_gen), rng)
  x_chains = sampler_lib.run(model.chain_energy, x_init, rng, model.sampler).numpy()
  assert np.abs(x_chains - x_gen).max() > 1e-2  # the chains moved: the test tells them apart
  seen = []
  discriminator = model.discriminator

  class Recording:
    trainable_variables = discriminator.trainable_variables

    def __call__(self, x, training=False):
      seen.append(np.array(x))
      logits = discriminator(x, training=training)
      assert logits.shape[0] == len(x) // 4
      return logits

  model.discriminator = Recording()
  model.train_step(x_real)
  real, fake = seen[:2]  # D's update; then G's, on fresh z
  np.testing.assert_allclose(real, x_chains if gan_target == 'chains' else x_real, atol=1e-5)
  np.testing.assert_allclose(fake, x_gen, atol=1e-5)
  np.testing.assert_allclose(model.replay_buffer.samples.numpy()[0, :32], x_chains, atol=1e-5)


@pytest.mark.parametrize('model_name', ['gan_ebm', 'gan'])
def test_lr_decay_falls_linearly_to_zero_over_the_last_fraction(tiny, model_name):
  # 8 steps, the last half decaying: steps 0-4 at the full rate, then 3/4, 2/4, 1/4.
  model, x_real = _one_step(tiny, model=model_name, train_steps=8, lr_decay=0.5,
                            gd_learning_rate=2e-3, energy_learning_rate=1e-3)
  optimizers = [model.g_optimizer, model.d_optimizer, model.e_optimizer]
  bases = [2e-3, 2e-3, 1e-3][:3 if model_name == 'gan_ebm' else 2]
  seen = []
  for _ in range(8):
    model.train_step(tf.constant(x_real))
    seen.append([float(o.learning_rate.numpy()) for o in optimizers[:len(bases)]])
  scales = [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
  np.testing.assert_allclose(seen, [[b * s for b in bases] for s in scales], rtol=1e-6)


def test_without_lr_decay_the_rates_stay(tiny):
  model, x_real = _one_step(tiny, train_steps=2)
  for _ in range(3):
    model.train_step(tf.constant(x_real))
  assert float(model.g_optimizer.learning_rate.numpy()) == pytest.approx(2e-3)


def test_a_resume_inside_the_decay_continues_it(tiny, tmp_path):
  # 2 steps, checkpoint, a fresh model restores it (and resets the rates as a resume does),
  # 2 more: the same rates as 4 steps straight, though the checkpoint holds decayed ones.
  def run(model, x, steps):
    seen = []
    for _ in range(steps):
      model.train_step(tf.constant(x))
      seen.append([float(o.learning_rate.numpy()) for o in (model.g_optimizer, model.e_optimizer)])
    return seen
  straight, x_real = _one_step(tiny, train_steps=4, lr_decay=1.0)
  expected = run(straight, x_real, 4)
  first, _ = _one_step(tiny, train_steps=4, lr_decay=1.0)
  run(first, x_real, 2)
  path = tf.train.Checkpoint(**first.checkpoint_items()).save(str(tmp_path / 'ckpt'))
  resumed, _ = _one_step(tiny, train_steps=4, lr_decay=1.0)
  tf.train.Checkpoint(**resumed.checkpoint_items()).restore(path).assert_consumed()
  resumed.reset_learning_rates()
  assert float(resumed.g_optimizer.learning_rate.numpy()) == pytest.approx(2e-3)
  np.testing.assert_allclose(run(resumed, x_real, 2), expected[2:], rtol=1e-6)
  np.testing.assert_allclose([r[0] for r in expected], [2e-3 * s for s in (1, .75, .5, .25)],
                             rtol=1e-6)
