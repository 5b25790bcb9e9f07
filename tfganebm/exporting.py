"""A trained model's generator and energy as a SavedModel and TFLite files.

`export(model, config, data_shape, out)` writes OUT/saved_model/, OUT/model.tflite
(float32; plus model_<q>.tflite per quantization asked for) and OUT/export.json.
Signatures, in both formats:

  generate(z [B, latent]) -> x [B, *data_shape] in [-1, 1]
  energy(x) -> e [B]                       (log p(x) = -e - log Z)
  langevin_step(x, noise, step_size) -> x  (noise: sigma * eps, drawn by the caller)
  sample(z, noise [K, B, *data_shape], step_size) -> x   (G, then K Langevin steps)
  metropolis_step(x, noise, uniform [B], step_size, noise_std) -> x   (one MALA step)
  sample_metropolis(z, noise [K, B, ...], uniform [K, B], step_size, noise_std) -> x
and the latent-space sampler's (chains on z for U(z) = E(G(z)) + |z|^2 / 2, then
x = generate(z); tfganebm.sampler):
  latent_step(z, noise [B, latent], step_size) -> z
  latent_metropolis_step(z, noise, uniform [B], step_size, noise_std) -> z
  sample_latent(z, noise [K, B, latent], step_size) -> x
  sample_latent_metropolis(z, noise [K, B, latent], uniform [K, B], step_size, noise_std) -> x
  latent_prior_step(z, noise [B, latent], uniform [B], beta [B], temperature) -> z
  sample_latent_prior(z, noise [K, B, latent], uniform [K, B], beta [K, B], temperature) -> x
(the last two: Metropolis-Hastings for N(0, I) exp(-E(G(z)) / T) with the proposal
z' = sqrt(1 - beta^2) z + beta * noise, noise ~ N(0, I) drawn by the caller: beta = 1 a
jump, beta < 1 a local move (tfganebm.sampler, proposal=prior); forward passes only,
so they are there for every G)

The batch dimension is dynamic. Weights are frozen into the graphs as
constants, so the .tflite holds them and runs on a stock LiteRT runtime with
builtin ops only (no Flex delegate). The output directory appears whole or not
at all.
"""

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import tempfile

from absl import logging

SIGNATURES = ('generate', 'energy', 'langevin_step', 'sample', 'metropolis_step',
              'sample_metropolis', 'latent_step', 'latent_metropolis_step', 'sample_latent',
              'sample_latent_metropolis', 'latent_prior_step', 'sample_latent_prior')


# The SavedModel in the XNNPACK form that the .tflite files are converted from, inside the
# staging directory and removed before it is moved into place.
LITERT_SOURCE = 'saved_model_for_litert'


class ExportError(ValueError):
  """A run that cannot be exported, with the reason and the fix."""


def tflite_name(quantize):
  return 'model.tflite' if quantize == 'none' else f'model_{quantize}.tflite'


LATENT_SIGNATURES = ('latent_step', 'latent_metropolis_step', 'sample_latent',
                     'sample_latent_metropolis')


def _signature_module(model, data_shape, grad_clip):
  """A tf.Module of the SIGNATURES over the model's (variable) weights."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top
  from tfganebm import sampler as sampler_lib  # pylint: disable=g-import-not-at-top

  x_spec = tf.TensorSpec([None, *data_shape], tf.float32)
  z_spec = tf.TensorSpec([None, model.latent_dim], tf.float32)
  noise_chain_spec = tf.TensorSpec([None, None, *data_shape], tf.float32)
  uniform_spec = tf.TensorSpec([None], tf.float32)
  uniform_chain_spec = tf.TensorSpec([None, None], tf.float32)
  scalar = tf.TensorSpec([], tf.float32)

  def energy_fn(x):
    return model.energy_of(x, training=False)

  def step(x, noise, step_size):
    return langevin.langevin_step(energy_fn, x, noise, step_size, 1.0, grad_clip)

  def metropolis(state, noise, uniform, step_size, noise_std):
    x, energy, grad, _ = langevin.metropolis_step(energy_fn, *state, noise / noise_std, uniform,
                                                  step_size, noise_std, grad_clip)
    return x, energy, grad

  def start(x):
    return (x, *langevin.energy_and_gradient(energy_fn, x, grad_clip))

  # The latent chain: unbounded steps on U(z) = E(G(z)) + |z|^2 / 2, its gradient
  # written out through G (a tape's LeakyReluGrad and broadcast gradients are not
  # builtin TFLite ops).
  try:
    latent_energy = LatentPotential(model.generator, energy_fn)
  except UnsupportedGenerator:
    latent_energy = None  # export() leaves the latent signatures out
  latent_chain_spec = tf.TensorSpec([None, None, model.latent_dim], tf.float32)

  def latent_step(z, noise, step_size):
    return langevin.langevin_step(latent_energy, z, noise, step_size, 1.0, grad_clip, None, None)

  def latent_metropolis(state, noise, uniform, step_size, noise_std):
    z, energy, grad, _ = langevin.metropolis_step(latent_energy, *state, noise / noise_std,
                                                  uniform, step_size, noise_std, grad_clip,
                                                  None, None)
    return z, energy, grad

  def latent_start(z):
    return (z, *langevin.energy_and_gradient(latent_energy, z, grad_clip))

  # Metropolis-Hastings in z with proposals that keep the prior (proposal=prior): forward
  # passes of G and E only, so every G exports it.
  prior_potential = sampler_lib.prior_potential(energy_fn,
                                                lambda z: model.generator(z, training=False))

  def prior(state, noise, uniform, beta, temperature):
    return langevin.prior_step(prior_potential, *state, noise, uniform, temperature, beta)[:2]

  def loop(body, noise, state):
    """state = body(k, state) for k < K, the length of `noise` [K, ...]."""
    return tf.while_loop(lambda i, _: i < tf.shape(noise)[0],
                         lambda i, s: (i + 1, body(i, s)), (0, state))[1]

  # Every loop is an explicit tf.while_loop: no autograph (converting the Keras calls took
  # 1.5 s of a 10 s export).
  signature = functools.partial(tf.function, autograph=False)

  class Signatures(tf.Module):

    @signature(input_signature=[z_spec])
    def generate(self, z):
      return model.generator(z, training=False)

    @signature(input_signature=[x_spec])
    def energy(self, x):
      return energy_fn(x)

    @signature(input_signature=[x_spec, x_spec, scalar])
    def langevin_step(self, x, noise, step_size):
      return step(x, noise, step_size)

    @signature(input_signature=[z_spec, noise_chain_spec, scalar])
    def sample(self, z, noise, step_size):
      x = model.generator(z, training=False)
      _, x = tf.while_loop(lambda i, _: i < tf.shape(noise)[0],
                           lambda i, x: (i + 1, step(x, noise[i], step_size)), (0, x))
      return x

    @signature(input_signature=[x_spec, x_spec, uniform_spec, scalar, scalar])
    def metropolis_step(self, x, noise, uniform, step_size, noise_std):
      return metropolis(start(x), noise, uniform, step_size, noise_std)[0]

    @signature(input_signature=[z_spec, noise_chain_spec, uniform_chain_spec, scalar, scalar])
    def sample_metropolis(self, z, noise, uniform, step_size, noise_std):
      state = start(tf.clip_by_value(model.generator(z, training=False), -1.0, 1.0))
      _, state = tf.while_loop(
          lambda i, _: i < tf.shape(noise)[0],
          lambda i, s: (i + 1, metropolis(s, noise[i], uniform[i], step_size, noise_std)),
          (0, state))
      return state[0]

    @signature(input_signature=[z_spec, z_spec, scalar])
    def latent_step(self, z, noise, step_size):
      return latent_step(z, noise, step_size)

    @signature(input_signature=[z_spec, z_spec, uniform_spec, scalar, scalar])
    def latent_metropolis_step(self, z, noise, uniform, step_size, noise_std):
      return latent_metropolis(latent_start(z), noise, uniform, step_size, noise_std)[0]

    @signature(input_signature=[z_spec, latent_chain_spec, scalar])
    def sample_latent(self, z, noise, step_size):
      z = loop(lambda i, z: latent_step(z, noise[i], step_size), noise, z)
      return model.generator(z, training=False)

    @signature(input_signature=[z_spec, latent_chain_spec, uniform_chain_spec, scalar, scalar])
    def sample_latent_metropolis(self, z, noise, uniform, step_size, noise_std):
      state = loop(lambda i, s: latent_metropolis(s, noise[i], uniform[i], step_size, noise_std),
                   noise, latent_start(z))
      return model.generator(state[0], training=False)

    @signature(input_signature=[z_spec, z_spec, uniform_spec, uniform_spec, scalar])
    def latent_prior_step(self, z, noise, uniform, beta, temperature):
      return prior((z, prior_potential(z)), noise, uniform, beta, temperature)[0]

    @signature(input_signature=[z_spec, latent_chain_spec, uniform_chain_spec,
                                  uniform_chain_spec, scalar])
    def sample_latent_prior(self, z, noise, uniform, beta, temperature):
      state = loop(lambda i, s: prior(s, noise[i], uniform[i], beta[i], temperature), noise,
                   (z, prior_potential(z)))
      return model.generator(state[0], training=False)

  return Signatures()


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
    import keras  # pylint: disable=g-import-not-at-top
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
        scale = (layer.gamma if layer.scale else 1.0) / _sqrt(layer.moving_variance + layer.epsilon)
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
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
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
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return self.energy_fn(self._forward(z)[0]) + 0.5 * tf.reduce_sum(tf.square(z), axis=1)

  def value_and_gradient(self, z):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tfganebm import langevin  # pylint: disable=g-import-not-at-top
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


def _has_stride_two_convolutions(model):
  import keras  # pylint: disable=g-import-not-at-top
  from tfganebm import chain_energy  # pylint: disable=g-import-not-at-top  (TensorFlow)
  networks = [model.generator] + ([model.energy] if model.energy is not None else [])
  return any(isinstance(getattr(layer, 'layer', layer), (keras.layers.Conv2D,
                                                          keras.layers.Conv2DTranspose))
             and chain_energy.plain_2d(getattr(layer, 'layer', layer))
             for network in networks for layer in getattr(network, 'layers', []))


@contextlib.contextmanager
def _xnnpack_convolutions():
  """While the signatures are traced: stride-2 'same' Conv2DTranspose layers (DCGAN G) and
  the input gradients of stride-2 'same' Conv2D layers (the conv E's chains) are written
  with `stride_two_transpose`. TFLite's TRANSPOSE_CONV with a dynamic batch runs outside
  XNNPACK, on one thread: at batch 64 it made LiteRT slower than TensorFlow."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfganebm import chain_energy  # pylint: disable=g-import-not-at-top
  conv_op = keras.layers.Conv2D.convolution_op
  transpose_call = keras.layers.Conv2DTranspose.call

  def convolution_op(self, inputs, kernel):
    height, width = inputs.shape[1], inputs.shape[2]
    if not (isinstance(self, keras.layers.Conv2D) and chain_energy.plain_2d(self) and height
            and width):
      return conv_op(self, inputs, kernel)
    pad = chain_energy.stride_two_pad(height, width, kernel.shape[0])
    if pad is None:
      return conv_op(self, inputs, kernel)
    return chain_energy.phase_gradient_conv(inputs, tf.convert_to_tensor(kernel), pad)

  def call(self, inputs):
    if not (chain_energy.plain_2d(self) and self.output_padding is None and inputs.shape[1]
            and inputs.shape[2]):
      return transpose_call(self, inputs)
    size = inputs.shape[1]
    outputs = chain_energy.stride_two_transpose(
        inputs, tf.convert_to_tensor(self.kernel),
        chain_energy.same_pad_before(2 * size, size, self.kernel.shape[0]),
        (2 * size, 2 * inputs.shape[2]))
    if self.use_bias:
      outputs = outputs + self.bias
    return self.activation(outputs) if self.activation is not None else outputs

  patches = [(keras.layers.Conv2D, 'convolution_op', convolution_op),
             (keras.layers.Conv2DTranspose, 'call', call)]
  own = [vars(cls).get(name) for cls, name, _ in patches]  # None: inherited
  for cls, name, function in patches:
    setattr(cls, name, function)
  try:
    yield
  finally:
    for (cls, name, _), original in zip(patches, own):
      if original is None:
        delattr(cls, name)
      else:
        setattr(cls, name, original)


def _sqrt(x):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.sqrt(x)


def _frozen_signatures(signatures, names):
  """{name: concrete function} calling the frozen, variable-free graph of each signature.

  Freezing drops the input and output names; the wrappers put them back.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import

  def wrap(name):
    method = getattr(signatures, name)
    graph = convert_to_constants.convert_variables_to_constants_v2(method.get_concrete_function())
    specs = [tf.TensorSpec(spec.shape, spec.dtype, name=arg)
             for arg, spec in zip(INPUTS[name], method.input_signature)]
    call = lambda *args: {OUTPUTS[name]: tf.nest.flatten(graph(*args))[0]}
    return tf.function(call, input_signature=specs, autograph=False).get_concrete_function()

  return {name: wrap(name) for name in names}


INPUTS = dict(generate=('z',), energy=('x',), langevin_step=('x', 'noise', 'step_size'),
              sample=('z', 'noise', 'step_size'),
              metropolis_step=('x', 'noise', 'uniform', 'step_size', 'noise_std'),
              sample_metropolis=('z', 'noise', 'uniform', 'step_size', 'noise_std'),
              latent_step=('z', 'noise', 'step_size'),
              latent_metropolis_step=('z', 'noise', 'uniform', 'step_size', 'noise_std'),
              sample_latent=('z', 'noise', 'step_size'),
              sample_latent_metropolis=('z', 'noise', 'uniform', 'step_size', 'noise_std'),
              latent_prior_step=('z', 'noise', 'uniform', 'beta', 'temperature'),
              sample_latent_prior=('z', 'noise', 'uniform', 'beta', 'temperature'))
OUTPUTS = dict(generate='x', energy='e', langevin_step='x', sample='x', metropolis_step='x',
               sample_metropolis='x', latent_step='z', latent_metropolis_step='z',
               sample_latent='x', sample_latent_metropolis='x', latent_prior_step='z',
               sample_latent_prior='x')


def _contains(directory, path):
  """Whether `path` is `directory` or lies inside it, links resolved."""
  directory, path = os.path.realpath(directory), os.path.realpath(path)
  return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _foreign_entries(directory):
  """Names in `directory` that an export does not write; None when it has no tfganebm export.json.

  An export is recognised by its export.json (a JSON object with `signatures` and
  `latent_dim`) and by holding nothing but saved_model/, model*.tflite and export.json.
  """
  try:
    entries = os.listdir(directory)
  except OSError as e:
    raise ExportError(f'cannot read --out {directory} ({e.strerror or e}); choose another '
                      '--out') from e
  if not entries:
    return []
  try:
    with open(os.path.join(directory, 'export.json')) as f:
      info = json.load(f)
  except (OSError, ValueError):
    info = None
  if not isinstance(info, dict) or not {'signatures', 'latent_dim'} <= info.keys():
    return None
  return sorted(entry for entry in entries if not _written_by_export(directory, entry))


def _written_by_export(directory, entry):
  """Whether `directory/entry` is a name an export writes (saved_model/, model*.tflite,
  export.json), as the kind of file it writes there."""
  path = os.path.join(directory, entry)
  if os.path.islink(path):
    return False
  if entry in ('saved_model', LITERT_SOURCE):
    return os.path.isdir(path)
  return os.path.isfile(path) and (
      entry == 'export.json' or (entry.startswith('model') and entry.endswith('.tflite')))


def _holds_only_export_files(path, kind):
  """Whether a leftover of `kind` holds only what an export writes: a staging folder its
  files, a `.replaced-*` folder one `old` export; anything else is not ours to delete."""
  try:
    entries = os.listdir(path)
    if kind == 'replaced':
      if not set(entries) <= {'old'}:
        return False
      if not entries:
        return True
      path, entries = os.path.join(path, 'old'), os.listdir(os.path.join(path, 'old'))
  except OSError:
    return False
  return all(_written_by_export(path, entry) for entry in entries)


def _check_out(out, overwrite, workdir):
  """Raises ExportError unless writing `out` can replace nothing but an earlier export.

  Without `overwrite`, any existing `out` is refused; with it, only an earlier
  export (or an empty directory) that holds neither the run, the current
  directory nor the home directory.
  """
  if not os.path.lexists(out):
    return
  keep = 'nothing was written; choose another --out'
  if os.path.islink(out):
    raise ExportError(f'--out {out} is a symbolic link; pass the directory it points to '
                      f'({os.path.realpath(out)}) or another --out')
  if not os.path.isdir(out):
    raise ExportError(f'--out {out} is an existing file, not an export directory; {keep}')
  real = os.path.realpath(out)
  if os.path.dirname(real) == real or _contains(out, os.path.expanduser('~')):
    raise ExportError(f'--out {out} is the file system root or holds your home directory; {keep}')
  if _contains(out, os.getcwd()):
    raise ExportError(f'--out {out} is the current directory or one of its parents; {keep}')
  if workdir is not None and _contains(out, workdir):
    raise ExportError(f'--out {out} holds the training run --workdir {workdir}; {keep}')
  foreign = _foreign_entries(out)
  if foreign is None:
    raise ExportError(f'--out {out} exists and is not an earlier export (it has no export.json '
                      f'of tfganebm); --overwrite only replaces an export: {keep}')
  if foreign:
    listed = ', '.join(foreign[:5]) + (', ...' if len(foreign) > 5 else '')
    raise ExportError(f'--out {out} holds files that an export does not write ({listed}); '
                      '--overwrite only replaces saved_model/, model*.tflite and export.json: '
                      'move them away or choose another --out')
  if not overwrite:
    raise ExportError(f'{out} exists; pass --overwrite to replace it or choose another --out')


def _check_finite(model):
  """Raises ExportError when G or E (if any) has a NaN or infinite weight."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  for label, network in (('G', model.generator), ('E', model.energy)):
    if network is None:
      continue
    bad = [getattr(w, 'path', w.name) for w in network.weights
           if not np.all(np.isfinite(np.asarray(w.numpy())))]
    if bad:
      raise ExportError(f'{label} has non-finite weights (NaN or inf in {", ".join(bad[:3])}): '
                        'the run diverged; retrain with lower learning rates or resume from an '
                        'earlier checkpoint, then export')


def _temp_dir(kind, out):
  """A new directory `.<kind>-<name of out>-<pid>-<random>` beside `out`."""
  parent, name = os.path.split(os.path.abspath(out))
  return tempfile.mkdtemp(prefix=f'.{kind}-{name}-{os.getpid()}-', dir=parent)


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except (ProcessLookupError, OverflowError):
    return False
  except PermissionError:  # another user's live process
    return True
  return True


def _leftovers(out, kind):
  """Directories of `kind` ('export' or 'replaced') that a dead export of `out` left beside it."""
  parent, name = os.path.split(os.path.abspath(out))
  prefix = f'.{kind}-{name}-'
  try:
    entries = os.listdir(parent)
  except OSError:
    return []
  found = []
  for entry in entries:
    if not entry.startswith(prefix):
      continue
    # <pid>-<random>; the random part has no '-', so the out `a` never claims those of `a-1`.
    pid, dash, rest = entry[len(prefix):].partition('-')
    path = os.path.join(parent, entry)
    if (dash and rest and '-' not in rest and pid.isascii() and pid.isdigit()
        and os.path.isdir(path) and not os.path.islink(path) and not _pid_alive(int(pid))
        and _holds_only_export_files(path, kind)):
      found.append(path)
  return found


def _clean_leftovers(out):
  """Removes what a killed export of `out` left beside it, putting back an export it moved away.

  A kill between moving the old export aside and moving the new one in leaves
  `out` missing and the old export in `.replaced-*/old`: that one is restored.
  """
  path = None
  try:
    replaced = sorted(_leftovers(out, 'replaced'), key=os.path.getmtime, reverse=True)
    for path in replaced:
      old = os.path.join(path, 'old')
      if not os.path.lexists(out) and os.path.isdir(old):
        os.rename(old, out)
        logging.warning('restored %s, which an interrupted export had moved to %s', out, old)
      shutil.rmtree(path)
    for path in _leftovers(out, 'export'):
      shutil.rmtree(path)
  except OSError as e:
    raise ExportError(f'cannot clean up {path}, left by an interrupted export of {out}: '
                      f'{e.strerror or e}; move it away by hand') from e


def _move_into_place(staging, out):
  """Renames `staging` to `out`, replacing an existing `out` (checked by _check_out)."""
  if not os.path.lexists(out):
    os.rename(staging, out)
    return
  trash = _temp_dir('replaced', out)
  old = os.path.join(trash, 'old')
  os.rename(out, old)
  try:
    os.rename(staging, out)
  except BaseException:
    os.rename(old, out)
    raise
  shutil.rmtree(trash, ignore_errors=True)  # what stays is cleaned by the next export


def export(model, config, data_shape, out, quantize=('none',), overwrite=False, step=None,
           workdir=None):
  """Writes saved_model/, the .tflite files and export.json into `out`, atomically.

  Before anything is written, removes what an interrupted export of `out` left
  beside it (`.export-*`, `.replaced-*` of dead processes), restoring an old
  export that such a kill had moved away.

  Args:
    model: the GanEbm to export; its G and E weights must be finite.
    config: the run's Config.
    data_shape: the shape of one example, e.g. (2,) or (28, 28, 1).
    out: the directory to create.
    quantize: extra TFLite files: any of 'none', 'float16', 'dynamic_range'.
    overwrite: replace `out` when it is an earlier export (or an empty directory).
    step: the training step, recorded in export.json.
    workdir: the run's directory; an `out` that holds it is refused.

  Returns:
    The dict written to export.json.

  Raises:
    ExportError: `out` exists without `overwrite`; `out` is a file, a link, a
      directory that is not an earlier export, or holds the workdir, the current
      directory or the home directory; G or E has non-finite weights; the model
      holds what the export cannot express with builtin TFLite ops; or writing failed.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  _clean_leftovers(out)
  _check_out(out, overwrite, workdir)
  _check_finite(model)
  if config.use_energy and config.networks.energy_batch_norm:
    raise ExportError('E has BatchNorm (--energy_batch_norm), whose input gradient needs the '
                      'Flex delegate; retrain without it to export')
  names = SIGNATURES if config.use_energy else ('generate',)
  if config.use_energy:
    try:
      LatentPotential(model.generator, None)
    except UnsupportedGenerator as e:
      names = tuple(name for name in names if name not in LATENT_SIGNATURES)
      if config.sampler.space == 'latent' and config.sampler.proposal == 'langevin':
        raise ExportError(f'the latent sampler (--langevin_space=latent) cannot be exported for '
                          f'this G: it has {e}, whose input gradient has no builtin TFLite ops; '
                          'export with --langevin_space=data') from None
      logging.warning('no latent-space signatures: G has %s (an MLP G of Dense, BatchNorm and '
                      'LeakyReLU layers has them)', e)
  signatures = lambda: _frozen_signatures(
      _signature_module(model, data_shape, config.sampler.grad_clip), names)
  frozen = signatures()
  # TensorFlow runs its own convolution kernels fastest; LiteRT gets the XNNPACK form.
  frozen_for_litert = None
  if _has_stride_two_convolutions(model):
    with _xnnpack_convolutions():
      frozen_for_litert = signatures()

  parent = os.path.dirname(os.path.abspath(out))
  try:
    os.makedirs(parent, exist_ok=True)
    staging = _temp_dir('export', out)
  except OSError as e:
    raise ExportError(f'cannot create a directory beside --out {out}: {e.strerror or e}; '
                      'choose a writable place') from e
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private
  from tfganebm import progress  # pylint: disable=g-import-not-at-top
  conversions = list(dict.fromkeys(['none', *quantize]))
  bar = progress.Progress(1 + len(conversions), f'export to {out}')
  try:
    saved_model = os.path.join(staging, 'saved_model')
    tf.saved_model.save(tf.Module(), saved_model, signatures=frozen,
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    bar.update(1, 'SavedModel written')
    litert_source = saved_model
    if frozen_for_litert is not None:  # converted from, then removed
      litert_source = os.path.join(staging, LITERT_SOURCE)
      tf.saved_model.save(tf.Module(), litert_source, signatures=frozen_for_litert,
                          options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    sizes = {}
    for q in conversions:
      converter = tf.lite.TFLiteConverter.from_saved_model(litert_source,
                                                           signature_keys=list(names))
      converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
      if q != 'none':
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
      if q == 'float16':
        converter.target_spec.supported_types = [tf.float16]
      try:
        content = converter.convert()
      except Exception as e:  # pylint: disable=broad-except
        raise ExportError(f'TFLite conversion ({q}) failed: {str(e).splitlines()[0]}') from e
      with open(os.path.join(staging, tflite_name(q)), 'wb') as f:
        f.write(content)
      sizes[tflite_name(q)] = len(content)
      bar.update(1, f'{tflite_name(q)} converted')
    if litert_source != saved_model:
      shutil.rmtree(litert_source)
    bar.close()
    info = dict(
        dataset=config.data.dataset, model=config.networks.model, step=step,
        **model.averaging(), latent_dim=config.networks.latent_dim,
        data_shape=list(data_shape), data_range=[-1.0, 1.0],
        langevin=dataclasses.asdict(config.sampler),
        signatures={n: dict(inputs=list(INPUTS[n]), outputs=[OUTPUTS[n]]) for n in names},
        notes=('batch dimension is dynamic; every noise input is already multiplied by sigma: '
               'x <- clip(x - step_size * grad E(x) + noise, -1, 1); the metropolis signatures '
               'also take uniform [0, 1) draws and sigma itself (noise_std) and accept or '
               'reject each proposal for exp(-E / T), T = noise_std^2 / (2 step_size); the '
               'latent prior signatures take standard normal noise and beta (1: a fresh z, < 1: '
               'z <- sqrt(1 - beta^2) z + beta noise) and accept on exp(-E(G(z)) / T)'),
        tflite_bytes=sizes)
    with open(os.path.join(staging, 'export.json'), 'w') as f:
      json.dump(info, f, indent=2)
    _check_out(out, overwrite, workdir)  # again: `out` may have appeared during the export
    _move_into_place(staging, out)
  except (OSError, tf.errors.OpError) as e:
    message = (getattr(e, 'strerror', None) or str(e)).splitlines()[0]
    raise ExportError(f'writing {out} failed: {message}; check the free space and permissions '
                      f'of {parent}') from e
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)
  return info


def preflight(run_dir, out, overwrite=False, overrides=None):
  """The checks of `export_run` that need no TensorFlow (the workdir's config and
  checkpoint files, --out), in its order: the command refuses a bad --workdir or --out
  before importing TensorFlow. `export_run` makes them all again.

  Raises:
    workdir.LoadError, ExportError.
  """
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  workdir.preflight(run_dir, overrides, out=out)
  _check_out(out, overwrite, run_dir)


def export_run(run_dir, out, quantize=('none',), overwrite=False, overrides=None):
  """What `python -m tfganebm.export` does: exports the trained run in `run_dir` (G and E,
  averaged as its config or `overrides` say) to `out`; see `export`.

  Raises:
    workdir.LoadError, ExportError: with nothing written.
  """
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  workdir.check_output(run_dir, out)
  model, config = workdir.load_run(run_dir, overrides)
  return export(model, config, model.data_shape, out, quantize, overwrite,
                step=int(model.step.numpy()), workdir=run_dir)
