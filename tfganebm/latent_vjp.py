"""The latent potential U(z) = E(G(z)) + |z|^2 / 2 with its gradient written out through an MLP G.

The export's latent signatures step on U; a gradient tape through G would put
LeakyReluGrad and broadcast gradients in the graph, which are not builtin TFLite ops,
so `LatentPotential` writes the vector-Jacobian product of G layer by layer instead.
"""

import keras
import tensorflow as tf

from tfganebm import langevin


class UnsupportedGenerator(ValueError):
  """A G whose input gradient the export cannot write with builtin TFLite ops."""


class LatentPotential:
  """U(z) = E(G(z)) + |z|^2 / 2 with grad_z U = J_G(z)^T grad_x E(G(z)) + z, the
  vector-Jacobian product of G written out layer by layer (matmuls, selects and
  products only), for an MLP G: Dense (linear or tanh), BatchNormalization in
  inference mode (folded into the Dense before it), LeakyReLU, Reshape.

  Raises (when made):
    UnsupportedGenerator: G has another layer.
  """

  def __init__(self, generator, energy_fn):
    self.energy_fn = energy_fn
    self.plan = []  # ('dense', kernel, bias) | ('tanh',) | ('leaky', slope) | ('reshape', shape)
    for layer in getattr(generator, 'layers', [generator]):
      if isinstance(layer, keras.layers.Dense):
        if layer.activation not in (keras.activations.linear, keras.activations.tanh):
          raise UnsupportedGenerator(f'a Dense layer with activation {layer.activation.__name__}')
        bias = layer.bias if layer.use_bias else 0.0
        self.plan.append(['dense', layer.kernel, bias])
        if layer.activation is keras.activations.tanh:
          self.plan.append(['tanh'])
      elif isinstance(layer, keras.layers.BatchNormalization):
        if (not self.plan or self.plan[-1][0] != 'dense' or layer.axis not in (-1, 1)
            or any(op[0] == 'reshape' for op in self.plan)):  # only [B, units] features
          raise UnsupportedGenerator('BatchNormalization not right after a linear Dense')
        scale = (layer.gamma if layer.scale else 1.0) / tf.sqrt(layer.moving_variance
                                                                + layer.epsilon)
        offset = (layer.beta if layer.center else 0.0) - layer.moving_mean * scale
        _, kernel, bias = self.plan[-1]
        self.plan[-1] = ['dense', kernel * scale, bias * scale + offset]
      elif isinstance(layer, keras.layers.LeakyReLU):
        self.plan.append(['leaky', float(layer.negative_slope)])
      elif isinstance(layer, keras.layers.Reshape):
        self.plan.append(['reshape', tuple(layer.target_shape)])
      else:
        raise UnsupportedGenerator(f'a {type(layer).__name__} layer')

  def _forward(self, z):
    h, cache = z, []
    for op in self.plan:
      cache.append(h)
      if op[0] == 'dense':
        h = tf.matmul(h, op[1]) + op[2]
      elif op[0] == 'tanh':
        h = tf.tanh(h)
      elif op[0] == 'leaky':
        h = tf.where(h > 0, h, op[1] * h)
      else:
        h = tf.reshape(h, [-1, *op[1]])
    return h, cache

  def __call__(self, z):
    return self.energy_fn(self._forward(z)[0]) + 0.5 * tf.reduce_sum(tf.square(z), axis=1)

  def value_and_gradient(self, z):
    x, cache = self._forward(z)
    energy, grad = langevin.energy_and_gradient(self.energy_fn, x)
    for op, h in zip(reversed(self.plan), reversed(cache)):
      if op[0] == 'dense':
        grad = tf.matmul(grad, op[1], transpose_b=True)
      elif op[0] == 'tanh':
        t = tf.tanh(h)
        grad = grad * (1.0 - t * t)
      elif op[0] == 'leaky':
        grad = tf.where(h > 0, grad, op[1] * grad)
      else:
        grad = tf.reshape(grad, tf.shape(h))
    return energy + 0.5 * tf.reduce_sum(tf.square(z), axis=1), grad + z
