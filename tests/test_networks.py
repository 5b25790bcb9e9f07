"""Network builders: shapes, ranges and the constraints their options promise."""

import numpy as np
import pytest
import tensorflow as tf

from tfganebm import networks


def test_generator_discriminator_energy_shapes():
  generator = networks.mlp_generator(20, (2,))
  x = generator(tf.random.normal([7, 20]), training=False)
  assert x.shape == (7, 2)
  assert networks.mlp_discriminator((2,))(x).shape == (7, 1)
  assert networks.mlp_energy((2,))(x).shape == (7, 1)


# A small example of every generator: (data shape, widths).
GENERATOR_EXAMPLES = {'mlp': ((3, 2), (8, 8)), 'dcgan': ((8, 8, 1), (8, 4))}


def _without_output_activation(generator, z):
  """G(z) with the activation of its last weight layer taken out: the values it squashes."""
  import keras  # pylint: disable=g-import-not-at-top
  last = [layer for layer in generator.layers
          if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))][-1]
  activation, last.activation = last.activation, keras.activations.linear
  try:
    return generator(z, training=False).numpy()
  finally:
    last.activation = activation


@pytest.mark.parametrize('name', sorted(networks.GENERATORS))
def test_generator_output_is_tanh_of_its_last_layer(name):
  """G reaches the data range [-1, 1] as tanh of its last layer's values, which a large z
  drives far outside it. Fails for an output that is bounded some other way: a sigmoid
  (never negative), a clip (no gradient outside the range) or none at all; and for a
  generator added to the registry without an example here (KeyError)."""
  shape, units = GENERATOR_EXAMPLES[name]
  generator = networks.GENERATORS[name](10, shape, units)
  z = 100 * tf.random.stateless_normal([16, 10], [0, 1])
  values = _without_output_activation(generator, z)
  assert values.shape == (16, *shape) and np.abs(values).max() > 2
  np.testing.assert_allclose(generator(z, training=False), np.tanh(values), atol=1e-6)


def test_spectral_norm_bounds_the_energy_gradient():
  energy = networks.mlp_energy((2,), units=(64, 64, 64), spectral_norm=True)
  x = tf.random.uniform([512, 2], -1, 1)
  for _ in range(30):  # power iterations run in training mode
    energy(x, training=True)
  with tf.GradientTape() as tape:
    tape.watch(x)
    e = tf.reduce_sum(energy(x, training=False))
  norms = tf.norm(tape.gradient(e, x), axis=1).numpy()
  assert norms.max() < 1.1**3 * 1.05  # SiLU's slope is at most 1.1; one per hidden layer


def test_fourier_features_widen_the_input_deterministically():
  layer = networks.FourierFeatures(16, 4.0, seed=3)
  x = tf.constant(np.random.default_rng(0).uniform(-1, 1, [5, 2]), tf.float32)
  features = layer(x).numpy()
  assert features.shape == (5, 32)
  angles = 2 * np.pi * x.numpy().astype(np.float64) @ layer.projection.numpy()
  # Angles reach tens of radians: float32 rounds them by up to about 1e-5.
  np.testing.assert_allclose(features, np.concatenate([np.sin(angles), np.cos(angles)], 1),
                             atol=3e-5)
  np.testing.assert_array_equal(networks.FourierFeatures(16, 4.0, seed=3)(x), features)


def test_public_api_resolves_to_its_implementations():
  import tfganebm  # pylint: disable=g-import-not-at-top
  from tfganebm import config, data, exporting, model, replay, runs, sampler, training  # pylint: disable=g-import-not-at-top
  expected = {'Config': config.Config, 'SamplerConfig': sampler.SamplerConfig,
              'load_data': data.load, 'GanEbm': model.GanEbm, 'build_model': model.build,
              'ReplayBuffer': replay.ReplayBuffer, 'train': training.train,
              'load_run': runs.load_run, 'export_model': exporting.export}
  assert sorted(tfganebm.__all__) == sorted(expected)
  for name, implementation in expected.items():
    assert getattr(tfganebm, name) is implementation, name
  with pytest.raises(AttributeError):
    tfganebm.load  # pylint: disable=pointless-statement


def test_image_networks_shapes():
  for shape, g_units in (((28, 28, 1), (32, 16)), ((32, 32, 3), (32, 16, 8))):
    generator = networks.dcgan_generator(10, shape, g_units)
    x = generator(tf.random.normal([3, 10]), training=False)
    assert x.shape == (3, *shape)
    assert networks.dcgan_discriminator(shape, (8, 16))(x).shape == (3, 1)
    assert networks.conv_energy(shape, (8, 8, 16, 16), dense_units=8)(x).shape == (3, 1)
    assert networks.mlp_generator(10, shape, (16,))(tf.zeros([3, 10])).shape == (3, *shape)


def test_dcgan_generator_refuses_sizes_it_cannot_reach():
  with pytest.raises(ValueError, match='divisible'):
    networks.dcgan_generator(10, (28, 28, 1), (8, 8, 8))  # 28 is not a multiple of 8


def test_flag_choices_match_the_registries():
  from tfganebm import config  # pylint: disable=g-import-not-at-top
  assert set(config.GENERATOR_NETWORKS) == set(networks.GENERATORS)
  assert set(config.DISCRIMINATOR_NETWORKS) == set(networks.DISCRIMINATORS)
  assert set(config.ENERGY_NETWORKS) == set(networks.ENERGIES)
  auto = config.Config().override(dataset='mnist')
  assert auto.network_names() == ('mlp', 'mlp', 'conv')
  assert config.Config().override(dataset='moons').network_names() == ('mlp', 'mlp', 'mlp')
  cifar = config.Config().override(dataset='cifar10', generator_network='dcgan')
  assert cifar.network_names()[0] == 'dcgan'


@pytest.mark.parametrize('batch_norm', [True, False])
def test_batch_norm_settings_reach_every_g_and_d(batch_norm):
  import keras  # pylint: disable=g-import-not-at-top
  from tfganebm import config as config_lib, model as model_lib  # pylint: disable=g-import-not-at-top
  count = lambda net: sum(isinstance(layer, keras.layers.BatchNormalization) for layer in net.layers)
  for dataset in ('moons', 'mnist'):
    config = config_lib.Config.from_flat(dict(
        dataset=dataset, generator_batch_norm=batch_norm, discriminator_batch_norm=not batch_norm,
        generator_units=(16, 8, 8) if dataset == 'moons' else (8, 4),
        discriminator_units=(8, 8, 8) if dataset == 'moons' else (4, 8)))
    model = model_lib.build(config)
    g, d = count(model.generator), count(model.discriminator)
    assert (g > 0, d > 0) == (batch_norm, not batch_norm), dataset
    # Without BatchNorm, G's training-mode output does not depend on the batch it is in.
    if not batch_norm:
      z = tf.random.normal([5, config.networks.latent_dim])
      np.testing.assert_allclose(model.generator(z, training=True)[:2],
                                 model.generator(z[:2], training=True), atol=1e-5)


def test_pack_groups_consecutive_samples():
  flat = tf.reshape(tf.range(8, dtype=tf.float32), [4, 2])
  np.testing.assert_array_equal(networks.Pack(2)(flat), [[0, 1, 2, 3], [4, 5, 6, 7]])
  images = tf.random.normal([4, 3, 3, 2])
  packed = networks.Pack(2)(images).numpy()
  assert packed.shape == (2, 3, 3, 4)
  np.testing.assert_array_equal(packed[1, ..., :2], images[2])  # pack 1: samples 2 and 3
  np.testing.assert_array_equal(packed[1, ..., 2:], images[3])
  for d in (networks.mlp_discriminator((2,), (8, 8), pack=4),
            networks.dcgan_discriminator((8, 8, 1), (4, 8), pack=4)):
    x = tf.random.normal([8, *d.input_shape[1:]])
    assert d(x).shape == (2, 1)
    # A pack's logit depends on every sample in it, and only on those.
    changed = tf.concat([x[:1] + 1.0, x[1:]], 0)
    logits, changed_logits = d(x).numpy(), d(changed).numpy()
    assert logits[0] != changed_logits[0] and logits[1] == changed_logits[1]


@pytest.mark.parametrize('size', [16, 28, 32, 48, 64, 128])
@pytest.mark.parametrize('channels', [1, 3])
def test_networks_scaled_to_the_data_fit_every_size(size, channels):
  """Empty --*_units: DCGAN G and D and the conv E of the README's rule, for any size."""
  shape = (size, size, channels)
  g_units = networks.scaled_units('dcgan', 'generator', shape)
  d_units = networks.scaled_units('dcgan', 'discriminator', shape)
  e_units = networks.scaled_units('conv', 'energy', shape)
  start = size // 2 ** len(g_units)
  assert 4 <= start <= 7 or len(g_units) == 5  # a 4-7 px start, at most 5 upsamplings
  assert g_units[-1] == 32 and d_units == g_units[::-1] and len(e_units) >= 4
  assert max(g_units) <= 256 and max(e_units) <= 64
  x = networks.dcgan_generator(8, shape, g_units)(tf.random.normal([2, 8]), training=False)
  assert x.shape == (2, *shape)
  assert networks.dcgan_discriminator(shape, d_units)(x).shape == (2, 1)
  assert networks.conv_energy(shape, e_units)(x).shape == (2, 1)


def test_scaled_widths_are_the_shipped_mnist_widths_and_the_report_widths():
  assert networks.scaled_units('dcgan', 'generator', (28, 28, 1)) == (64, 32)  # mnist.cfg
  assert networks.scaled_units('dcgan', 'discriminator', (28, 28, 1)) == (32, 64)
  assert networks.scaled_units('conv', 'energy', (28, 28, 1)) == (16, 32, 64, 64)  # report
  assert networks.scaled_units('mlp', 'energy', (5,)) == (64,) * 5
  assert networks.scaled_units('dcgan', 'generator', (64, 64, 3)) == (256, 128, 64, 32)
