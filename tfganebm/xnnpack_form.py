"""The XNNPACK form of a model's stride-2 convolutions, for the graphs LiteRT runs.

TFLite's TRANSPOSE_CONV with a dynamic batch runs outside XNNPACK, on one thread: at
batch 64 it made LiteRT slower than TensorFlow. While `convolutions` is open, the
stride-2 'same' Conv2DTranspose layers of the given networks (DCGAN G) and the input
gradients of their stride-2 'same' Conv2D layers (the conv E's chains) are written with
`chain_energy.stride_two_transpose` (a stride-1 convolution and depth_to_space), which
XNNPACK threads. Only those layer objects change, and only inside the block: the Keras
classes, and every other layer in the process, keep their own ops.
"""

import contextlib

import keras
import tensorflow as tf

from tfganebm import chain_energy


def _rewritable(networks):
  """[(layer, method name, its replacement)] for the networks' rewritable convolutions,
  wrapped (spectral norm) and nested layers included."""
  found, seen = [], set()
  for network in networks:
    for layer in network._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
      if id(layer) in seen:
        continue
      seen.add(id(layer))
      if isinstance(layer, keras.layers.Conv2D) and chain_energy.plain_2d(layer):
        found.append((layer, 'convolution_op', _convolution_op(layer)))
      elif (isinstance(layer, keras.layers.Conv2DTranspose) and chain_energy.plain_2d(layer)
            and layer.output_padding is None):
        found.append((layer, 'call', _transpose_call(layer)))
  return found


def _convolution_op(layer):
  """`layer.convolution_op` whose input gradient is `stride_two_transpose`, where the
  input's rows and columns are known and padded alike."""
  original = layer.convolution_op

  def convolution_op(inputs, kernel):
    height, width = inputs.shape[1], inputs.shape[2]
    if not (height and width):
      return original(inputs, kernel)
    pad = chain_energy.stride_two_pad(height, width, kernel.shape[0])
    if pad is None:
      return original(inputs, kernel)
    return chain_energy.phase_gradient_conv(inputs, tf.convert_to_tensor(kernel), pad)

  return convolution_op


def _transpose_call(layer):
  """`layer.call` as `stride_two_transpose`, where the input's rows and columns are known."""
  original = layer.call

  def call(inputs):
    if not (inputs.shape[1] and inputs.shape[2]):
      return original(inputs)
    size = inputs.shape[1]
    outputs = chain_energy.stride_two_transpose(
        inputs, tf.convert_to_tensor(layer.kernel),
        chain_energy.same_pad_before(2 * size, size, layer.kernel.shape[0]),
        (2 * size, 2 * inputs.shape[2]))
    if layer.use_bias:
      outputs = outputs + layer.bias
    return layer.activation(outputs) if layer.activation is not None else outputs

  return call


@contextlib.contextmanager
def convolutions(networks):
  """Within the block, the networks' stride-2 'same' (transposed) convolutions trace in
  the XNNPACK form; yields how many layers that changed (0: the graphs are TF's own).

  Args:
    networks: Keras layers or models (G, E); their sublayers are searched too.
  """
  rewrites = _rewritable(networks)
  # An instance attribute overrides the class's method for that one layer object.
  own = [vars(layer).get(name) for layer, name, _ in rewrites]  # None: the class's
  try:
    for layer, name, replacement in rewrites:
      object.__setattr__(layer, name, replacement)
    yield len(rewrites)
  finally:
    for (layer, name, _), original in zip(rewrites, own):
      if original is None:
        vars(layer).pop(name, None)
      else:
        object.__setattr__(layer, name, original)
