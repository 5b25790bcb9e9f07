"""A generator the user already has: opened safely, checked against the data, rescaled.

`python -m tfganebm.refine --generator PATH` trains E (and with
`--finetune_generator` also D and G) around a trained generator z -> x. PATH is
a `.keras` file, opened in Keras' safe mode (a file that would run Python code,
such as a Lambda layer, is refused), or a SavedModel directory with a z -> x
endpoint (`serve`, as `model.export()` writes, or `serving_default`). z is taken
as N(0, I) of the size the model's input says. A copy of the file goes into the
workdir (`source_generator.keras` or `source_generator/`), so the run stays
whole when the original moves.
"""

import os
import shutil

import keras
import numpy as np

SOURCE = 'source_generator'
_ENDPOINTS = ('serve', 'serving_default')


class GeneratorError(ValueError):
  """A generator file that cannot be refined as asked, with the reason and the fix."""


@keras.saving.register_keras_serializable('tfganebm')
class ToUnitRange(keras.layers.Layer):
  """x in [low, high] -> 2 (x - low) / (high - low) - 1 in [-1, 1], the data's range."""

  def __init__(self, low, high, **kwargs):
    super().__init__(**kwargs)
    self.low, self.high = float(low), float(high)

  def call(self, x):
    x = keras.ops.cast(x, 'float32')
    if (self.low, self.high) == (-1.0, 1.0):
      return x
    return (x - self.low) * (2.0 / (self.high - self.low)) - 1.0

  def get_config(self):
    return {**super().get_config(), 'low': self.low, 'high': self.high}


def _open(path):
  """The user's model as a Keras model or layer; GeneratorError when it is neither."""
  if os.path.isfile(path) and path.endswith('.keras'):
    try:
      return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # pylint: disable=broad-except  (Keras raises many kinds)
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise GeneratorError(f'cannot open --generator {path}: {reason[:300]}') from None
  if os.path.isdir(path) and os.path.exists(os.path.join(path, 'saved_model.pb')):
    errors = []
    for endpoint in _ENDPOINTS:
      try:
        return keras.layers.TFSMLayer(path, call_endpoint=endpoint)
      except Exception as e:  # pylint: disable=broad-except
        errors.append(f'{endpoint}: {str(e).strip().splitlines()[0][:120]}')
    raise GeneratorError(f'--generator {path} is a SavedModel without a usable z -> x endpoint '
                         f'({"; ".join(errors)})')
  raise GeneratorError(f'--generator {path} is neither a .keras file nor a SavedModel '
                       'directory; save the generator with model.save("g.keras") or '
                       'model.export("g_savedmodel")')


def _latent_dim(network, path):
  if isinstance(network, keras.layers.TFSMLayer):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    endpoint = network.call_endpoint_fn
    signature = getattr(endpoint, 'input_signature', None)
    if signature is None:  # a restored tf.function: its traced concrete functions say
      concrete = getattr(endpoint, 'concrete_functions', None) or [endpoint]
      signature = concrete[0].structured_input_signature
    specs = tf.nest.flatten(signature)
    shapes = [tuple(spec.shape) for spec in specs if hasattr(spec, 'shape')]
  else:
    shape = getattr(network, 'input_shape', None)
    shapes = [tuple(shape)] if isinstance(shape, tuple) else list(shape or [])
  if len(shapes) != 1 or len(shapes[0]) != 2 or shapes[0][1] is None:
    raise GeneratorError(f'--generator {path} takes inputs of shape {shapes}; a generator '
                         'takes one z of shape [batch, latent]')
  return int(shapes[0][1])


def load(path, data_shape, value_range=(-1.0, 1.0), trainable=False, check=True):
  """The generator of `path` as a Keras model z [B, latent] -> x [B, *data_shape] in [-1, 1].

  Args:
    path: a .keras file or a SavedModel directory.
    data_shape: the shape of one example of the run's data.
    value_range: (low, high) of the generator's own outputs.
    trainable: whether its weights may learn (--finetune_generator).
    check: draw 256 samples and refuse outputs outside `value_range` (2 % slack).

  Raises:
    GeneratorError: a file that is not a generator, or one whose input, output shape or
      range does not fit the data, with what to change.
  """
  network = _open(path)
  latent_dim = _latent_dim(network, path)
  z = keras.Input((latent_dim,), name='z')
  x = network(z)
  if isinstance(x, dict):
    if len(x) != 1:
      raise GeneratorError(f'--generator {path} returns {sorted(x)}; a generator returns one x')
    x = next(iter(x.values()))
  low, high = value_range
  generator = keras.Model(z, ToUnitRange(low, high, name='to_unit_range')(x), name='generator')
  shape = tuple(generator.output.shape[1:])
  if shape != tuple(data_shape):
    raise GeneratorError(f'--generator {path} makes x of shape {shape}, but the dataset\'s '
                         f'examples have shape {tuple(data_shape)}; choose the --dataset it was '
                         'trained on')
  network.trainable = trainable
  if check:
    samples = np.asarray(network(np.random.default_rng(0).standard_normal(
        (256, latent_dim)).astype('float32')))
    if isinstance(samples, dict):
      samples = next(iter(samples.values()))
    slack = 0.02 * (high - low)
    seen = (float(np.min(samples)), float(np.max(samples)))
    if not np.all(np.isfinite(samples)) or seen[0] < low - slack or seen[1] > high + slack:
      raise GeneratorError(f'--generator {path} gives values in [{seen[0]:.3g}, {seen[1]:.3g}], '
                           f'outside --generator_range={low:g},{high:g}; pass the range its '
                           'outputs are in (e.g. --generator_range=0,1 for a sigmoid)')
  return generator


def source_path(workdir, path):
  """Where the workdir keeps its copy of the generator file `path`."""
  name = SOURCE + ('.keras' if path.endswith('.keras') else '')
  return os.path.join(workdir, name)


def keep_copy(workdir, path):
  """Copies the generator `path` into `workdir` (once); returns the copy's path."""
  target = source_path(workdir, path)
  if os.path.exists(target):
    return target
  partial = f'{target}.partial-{os.getpid()}'
  if os.path.isdir(path):
    shutil.copytree(path, partial)
  else:
    shutil.copy2(path, partial)
  os.replace(partial, target)
  return target
