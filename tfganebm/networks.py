"""Keras builders for the generator G, the discriminator D and the energy E.

Builders are looked up by architecture name in `GENERATORS`, `DISCRIMINATORS`
and `ENERGIES` (flags --generator_network, --discriminator_network,
--energy_network); adding an architecture is one function and one entry here
and one name in config.py.
"""

import math

import keras
import numpy as np


@keras.saving.register_keras_serializable('tfganebm')
class FourierFeatures(keras.layers.Layer):
  """x [B, d] -> [sin(2 pi x P), cos(2 pi x P)] [B, 2 num], fixed random P [d, num] ~ N(0, scale^2).

  Random Fourier features (Tancik et al. 2020) let a small MLP fit the sharp,
  many-mode energies of the 2D benchmarks, which plain MLPs learn slowly.
  Written as one sin(x [P, P] + [0, pi/2]) with a bias add: a concatenation or a
  broadcasting add would give grad_x E ops (ShapeN, BroadcastGradientArgs) that
  builtin TFLite lacks, and the export needs grad_x E.
  """

  def __init__(self, num, scale, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.num, self.scale, self.seed = num, scale, seed

  def build(self, input_shape):
    self.projection = self.add_weight(
        shape=(input_shape[-1], self.num), trainable=False, name='projection',
        initializer=keras.initializers.RandomNormal(stddev=self.scale, seed=self.seed))

  def call(self, x):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (bias_add: a TF-only op)
    projection = 2 * math.pi * keras.ops.concatenate([self.projection, self.projection], axis=1)
    phase = np.concatenate([np.zeros(self.num), np.full(self.num, np.pi / 2)]).astype('float32')
    return keras.ops.sin(tf.nn.bias_add(keras.ops.matmul(x, projection), phase))

  def get_config(self):
    return {**super().get_config(), 'num': self.num, 'scale': self.scale, 'seed': self.seed}


@keras.saving.register_keras_serializable('tfganebm')
class Pack(keras.layers.Layer):
  """PacGAN packing (Lin et al. 2018): D judges `num` samples at once, so a G that drops
  modes is told apart by the lack of variety in its packs. [B, d] -> [B / num, num * d];
  images [B, H, W, C] -> [B / num, H, W, num * C]. B must be a multiple of `num`."""

  def __init__(self, num, **kwargs):
    super().__init__(**kwargs)
    self.num = num

  def call(self, x):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if len(x.shape) == 2:
      return tf.reshape(x, [-1, self.num * x.shape[1]])
    height, width, channels = x.shape[1:]
    packs = tf.reshape(x, [-1, self.num, height, width, channels])
    return tf.reshape(tf.transpose(packs, [0, 2, 3, 1, 4]),
                      [-1, height, width, self.num * channels])

  def compute_output_shape(self, input_shape):
    batch = None if input_shape[0] is None else input_shape[0] // self.num
    return (batch, *input_shape[1:-1], self.num * input_shape[-1])

  def get_config(self):
    return {**super().get_config(), 'num': self.num}


def _pack_or_none(pack):
  return [Pack(pack)] if pack > 1 else []


def _dense(units, spectral_norm):
  layer = keras.layers.Dense(units)
  return keras.layers.SpectralNormalization(layer) if spectral_norm else layer


def mlp_generator(latent_dim, data_shape, units=(32, 64), batch_norm=True):
  """G: z [B, latent_dim] ~ N(0, I) -> x [B, *data_shape] in [-1, 1] (tanh).

  Dense layers with LeakyReLU(0.2); `batch_norm`: BatchNorm on every hidden layer but the
  first (report, 4.4).
  """
  layers = [keras.Input((latent_dim,))]
  for i, width in enumerate(units):
    layers.append(keras.layers.Dense(width))
    if i > 0 and batch_norm:
      layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.LeakyReLU(0.2))
  layers += [keras.layers.Dense(math.prod(data_shape), activation='tanh'),
             keras.layers.Reshape(data_shape)]
  return keras.Sequential(layers, name='generator')


def mlp_discriminator(data_shape, units=(32, 32, 16, 8), batch_norm=True, pack=1):
  """D: x [B, *data_shape] -> logit [B / pack, 1] (real = data-like).

  Dense layers with LeakyReLU(0.2); `batch_norm`: BatchNorm on every hidden layer but the
  first (report, 4.4); `pack` > 1: one logit per `pack` samples (`Pack`).
  """
  layers = [keras.Input(data_shape), keras.layers.Flatten(), *_pack_or_none(pack)]
  for i, width in enumerate(units):
    layers.append(keras.layers.Dense(width))
    if i > 0 and batch_norm:
      layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.LeakyReLU(0.2))
  layers.append(keras.layers.Dense(1))
  return keras.Sequential(layers, name='discriminator')


def mlp_energy(data_shape, units=(64, 64, 64, 64, 64), spectral_norm=False, batch_norm=False,
               fourier_features=0, fourier_scale=4.0, outputs=1):
  """E: x [B, *data_shape] -> energy [B, outputs] (low = likely; a conditional run's E has
  one output per class, `conditioning`).

  Report, 4.4: 6 Dense layers with SiLU. `batch_norm` adds BatchNorm after the
  last two hidden layers as the report did; it is off by default because
  Langevin runs E in inference mode (running statistics) while training sees
  batch statistics, and BatchNorm's input gradient does not export to builtin
  TFLite ops. SiLU keeps grad_x E smooth, which Langevin needs.
  `fourier_features` > 0 prepends `FourierFeatures(fourier_features, fourier_scale)`.
  """
  layers = [keras.Input(data_shape), keras.layers.Flatten()]
  if fourier_features:
    layers.append(FourierFeatures(fourier_features, fourier_scale))
  for i, width in enumerate(units):
    layers.append(_dense(width, spectral_norm))
    if batch_norm and i >= len(units) - 2:
      layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.Activation('silu'))
  layers.append(_dense(outputs, spectral_norm))
  return keras.Sequential(layers, name='energy')


def conv_energy(data_shape, units=(16, 32, 64, 64), spectral_norm=False, batch_norm=False,
                fourier_features=0, fourier_scale=None, dense_units=64, outputs=1):
  """E for images: x [B, H, W, C] in [-1, 1] -> energy [B, outputs].

  Report, 4.4: 4 conv layers and 2 dense layers with SiLU: Conv2D(units[0], 5, stride 2),
  then Conv2D(u, 3, stride 2) for the rest, Dense(dense_units), Dense(1).
  """
  del fourier_scale
  if fourier_features or batch_norm:
    raise ValueError('the conv energy has no Fourier features or BatchNorm options')
  layers = [keras.Input(data_shape)]
  for i, filters in enumerate(units):
    conv = keras.layers.Conv2D(filters, 5 if i == 0 else 3, strides=2, padding='same')
    layers += [keras.layers.SpectralNormalization(conv) if spectral_norm else conv,
               keras.layers.Activation('silu')]
  layers += [keras.layers.Flatten(), _dense(dense_units, spectral_norm),
             keras.layers.Activation('silu'), _dense(outputs, spectral_norm)]
  return keras.Sequential(layers, name='energy')


def _batch_norm_or_none(batch_norm):
  return [keras.layers.BatchNormalization()] if batch_norm else []


def dcgan_generator(latent_dim, data_shape, units=(128, 64), batch_norm=True):
  """G for images (DCGAN, Radford et al. 2016): z -> x [B, H, W, C] in [-1, 1] (tanh).

  Dense to [H / 2^n, W / 2^n, units[0]], then per width u of `units` (n of them) a
  Conv2DTranspose(u, 4, stride 2) with BatchNorm (`batch_norm`) and ReLU (the first width is
  also the one of the dense block), and a final 3x3 Conv2D to C channels. H and W must be
  divisible by 2^n: 28x28 takes 2 widths, 32x32 up to 5.
  """
  height, width, channels = data_shape
  factor = 2 ** len(units)
  if height % factor or width % factor:
    raise ValueError(f'dcgan G: {height}x{width} images are not divisible by 2^{len(units)}; '
                     'use fewer --generator_units')
  layers = [keras.Input((latent_dim,)),
            keras.layers.Dense(height // factor * width // factor * units[0],
                               use_bias=not batch_norm),
            *_batch_norm_or_none(batch_norm), keras.layers.ReLU(),
            keras.layers.Reshape((height // factor, width // factor, units[0]))]
  for filters in units:
    layers += [keras.layers.Conv2DTranspose(filters, 4, strides=2, padding='same',
                                            use_bias=not batch_norm),
               *_batch_norm_or_none(batch_norm), keras.layers.ReLU()]
  layers.append(keras.layers.Conv2D(channels, 3, padding='same', activation='tanh'))
  return keras.Sequential(layers, name='generator')


def dcgan_discriminator(data_shape, units=(64, 128), batch_norm=True, pack=1):
  """D for images (DCGAN): x [B, H, W, C] -> logit [B / pack, 1].

  Per width u of `units` a Conv2D(u, 4, stride 2) with LeakyReLU(0.2), BatchNorm
  (`batch_norm`) on all but the first; then Flatten and Dense(1). `pack` > 1: one logit
  per `pack` images, stacked along the channels (`Pack`).
  """
  layers = [keras.Input(data_shape), *_pack_or_none(pack)]
  for i, filters in enumerate(units):
    layers.append(keras.layers.Conv2D(filters, 4, strides=2, padding='same'))
    if i > 0 and batch_norm:
      layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.LeakyReLU(0.2))
  layers += [keras.layers.Flatten(), keras.layers.Dense(1)]
  return keras.Sequential(layers, name='discriminator')


def conditional_generator(generator, latent_dim, num_classes):
  """G(z, y): the label's learned embedding (`latent_dim` values) joins z at the input of
  `generator`, an unconditional G built for latents of 2 `latent_dim`. Inputs z
  [B, latent_dim] and y [B] int32."""
  z = keras.Input((latent_dim,), name='z')
  y = keras.Input((), dtype='int32', name='label')
  joined = keras.layers.Concatenate()([z, keras.layers.Embedding(num_classes, latent_dim)(y)])
  return keras.Model([z, y], generator(joined), name='generator')


def projection_discriminator(discriminator, data_shape, num_classes):
  """D(x, y) = w . phi(x) + b + embed(y) . phi(x) (the projection discriminator, Miyato &
  Koyama 2018), phi(x) the features of `discriminator` (an unconditional D) before its last
  Dense. Inputs x [B, *data_shape] and y [B] int32; output [B, 1]."""
  features = keras.Sequential(discriminator.layers[:-1], name='features')
  x = keras.Input(data_shape, name='x')
  y = keras.Input((), dtype='int32', name='label')
  phi = features(x)
  projection = keras.layers.Dot(axes=1)([keras.layers.Embedding(num_classes,
                                                                phi.shape[-1])(y), phi])
  return keras.Model([x, y], keras.layers.Add()([discriminator.layers[-1](phi), projection]),
                     name='discriminator')


# Keep the keys in step with config.GENERATOR_NETWORKS, DISCRIMINATOR_NETWORKS, ENERGY_NETWORKS.
GENERATORS = {'mlp': mlp_generator, 'dcgan': dcgan_generator}
DISCRIMINATORS = {'mlp': mlp_discriminator, 'dcgan': dcgan_discriminator}
ENERGIES = {'mlp': mlp_energy, 'conv': conv_energy}


# The widths a role takes when its --*_units flag is left empty: the report's for MLPs (and
# for points); for images, scaled to the resolution (`scaled_units`).
MLP_UNITS = {'generator': (32, 64), 'discriminator': (32, 32, 16, 8), 'energy': (64,) * 5}
MAX_CHANNELS = {'generator': 256, 'discriminator': 256, 'energy': 64}


def _halvings(height, width, limit=5):
  """How often an image halves (exactly) before a side would fall under 4 px, at most `limit`."""
  count = 0
  while (count < limit and height % 2 ** (count + 1) == 0 and width % 2 ** (count + 1) == 0
         and min(height, width) // 2 ** (count + 1) >= 4):
    count += 1
  return count


def scaled_units(network, role, data_shape):
  """The widths of `network` (an architecture name) in `role` for examples of `data_shape`.

  MLPs: the report's widths (MLP_UNITS). Images, with n the halvings down to a 4-7 px
  start (at most 5: 16 and 28 px give 2, 32 and 48 give 3, 64 gives 4, 128 gives 5):
  dcgan G one x2 upsampling per halving, 32 channels at the output resolution doubling
  per halving towards the start (at most 256): 28 px (64, 32); dcgan D the mirror image,
  (32, 64, ...); the conv E one stride-2 conv per halving down to 4 px or less, at least 4
  (the report's 4), with 16 channels doubling to at most 64: (16, 32, 64, 64) up to 64 px.
  """
  if len(data_shape) != 3 or network == 'mlp':
    return MLP_UNITS[role]
  height, width = data_shape[:2]
  top = MAX_CHANNELS[role]
  if role == 'energy':
    convs, side = 0, max(height, width)
    while side > 4:
      side, convs = -(-side // 2), convs + 1
    return tuple(min(top, 16 * 2 ** i) for i in range(max(4, convs)))
  count = max(1, _halvings(height, width))  # 1 for an odd size: the builder says why not
  if role == 'generator':
    return tuple(min(top, 32 * 2 ** (count - 1 - i)) for i in range(count))
  return tuple(min(top, 32 * 2 ** i) for i in range(count))
