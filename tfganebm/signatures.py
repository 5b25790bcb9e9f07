"""The export's signatures: one table of name, inputs, output and the graph of each.

`TABLE` lists every signature once; the SavedModel's and TFLite's signatures, their
entries in export.json, which of them an export includes, the tests and the README's
table all come from it. Inputs, with a dynamic batch B and chain length K:

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
so they are there for every G). The four latent signatures that step on grad U need
G's input gradient written with builtin TFLite ops (`latent_vjp`: an MLP G).

A conditional run's signatures (G, E or both) also take `label` [B] int32, the class of
each chain: generate(z, label), energy(x, label) = E(x, y), sample(z, noise, step_size,
label), ... The latent-gradient signatures are left out (G's input gradient through the
label's embedding is not written out).
"""

import dataclasses
import functools
from typing import Callable

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-direct-tensorflow-import

from tfganebm import langevin
from tfganebm import latent_vjp
from tfganebm import sampler as sampler_lib

# The kinds of input, by shape: B the batch, K the chain's length, both dynamic.
X, Z, X_CHAIN, Z_CHAIN = 'x', 'z', 'x_chain', 'z_chain'  # [B, *data_shape] [B, latent] [K, B, ...]
PER_CHAIN, PER_STEP, SCALAR = 'per_chain', 'per_step', 'scalar'  # [B], [K, B], []
LABEL = 'label'  # a conditional run's extra input: [B] int32, each chain's class


def _shapes(data_shape, latent_dim):
  return {X: [None, *data_shape], Z: [None, latent_dim], X_CHAIN: [None, None, *data_shape],
          Z_CHAIN: [None, None, latent_dim], PER_CHAIN: [None], PER_STEP: [None, None],
          SCALAR: []}


class _Parts:
  """The model's pieces that the graphs are made of: G, E and the chains' steps on them."""

  def __init__(self, model, grad_clip, labels=None):
    self.model, self.grad_clip, self.labels = model, grad_clip, labels
    self.latent_energy = None  # the export leaves the latent signatures out
    if not getattr(model, 'num_classes', 0):
      try:
        self.latent_energy = latent_vjp.LatentPotential(model.generator, self.energy)
      except latent_vjp.UnsupportedGenerator:
        pass
    # Metropolis-Hastings in z with proposals that keep the prior (proposal=prior): forward
    # passes of G and E only, so every G exports it.
    self.prior_potential = sampler_lib.prior_potential(self.energy, self.generate)

  def with_labels(self, labels):
    """These parts for a conditional model's chains of classes `labels` [B]."""
    return _Parts(self.model, self.grad_clip, labels)

  def generate(self, z):
    if self.labels is None:
      return self.model.generator(z, training=False)
    return self.model.generator([z, self.labels], training=False)

  def energy(self, x):
    if self.labels is None:
      return self.model.energy_of(x, training=False)
    return self.model.energy_of(x, training=False, labels=self.labels)

  def step(self, x, noise, step_size):
    return langevin.langevin_step(self.energy, x, noise, step_size, 1.0, self.grad_clip)

  def start(self, x):
    return (x, *langevin.energy_and_gradient(self.energy, x, self.grad_clip))

  def metropolis(self, state, noise, uniform, step_size, noise_std):
    x, energy, grad, _ = langevin.metropolis_step(self.energy, *state, noise / noise_std, uniform,
                                                  step_size, noise_std, self.grad_clip)
    return x, energy, grad

  # The latent chain: unbounded steps on U(z) = E(G(z)) + |z|^2 / 2, its gradient written
  # out through G (a tape's LeakyReluGrad and broadcast gradients are not builtin TFLite ops).
  def latent_step(self, z, noise, step_size):
    return langevin.langevin_step(self.latent_energy, z, noise, step_size, 1.0, self.grad_clip,
                                  None, None)

  def latent_start(self, z):
    return (z, *langevin.energy_and_gradient(self.latent_energy, z, self.grad_clip))

  def latent_metropolis(self, state, noise, uniform, step_size, noise_std):
    z, energy, grad, _ = langevin.metropolis_step(self.latent_energy, *state, noise / noise_std,
                                                  uniform, step_size, noise_std, self.grad_clip,
                                                  None, None)
    return z, energy, grad

  def prior(self, state, noise, uniform, beta, temperature):
    return langevin.prior_step(self.prior_potential, *state, noise, uniform, temperature,
                               beta)[:2]


def _loop(body, noise, state):
  """state = body(k, state) for k < K, the length of `noise` [K, ...]; an explicit
  tf.while_loop, as every loop here: no autograph (converting the Keras calls took 1.5 s
  of a 10 s export)."""
  return tf.while_loop(lambda i, _: i < tf.shape(noise)[0],
                       lambda i, s: (i + 1, body(i, s)), (0, state))[1]


# The graphs: f(parts, *inputs) -> the output.
def _sample(p, z, noise, step_size):
  return _loop(lambda i, x: p.step(x, noise[i], step_size), noise, p.generate(z))


def _metropolis_step(p, x, noise, uniform, step_size, noise_std):
  return p.metropolis(p.start(x), noise, uniform, step_size, noise_std)[0]


def _sample_metropolis(p, z, noise, uniform, step_size, noise_std):
  return _loop(lambda i, s: p.metropolis(s, noise[i], uniform[i], step_size, noise_std), noise,
               p.start(tf.clip_by_value(p.generate(z), -1.0, 1.0)))[0]


def _latent_metropolis_step(p, z, noise, uniform, step_size, noise_std):
  return p.latent_metropolis(p.latent_start(z), noise, uniform, step_size, noise_std)[0]


def _sample_latent(p, z, noise, step_size):
  return p.generate(_loop(lambda i, z: p.latent_step(z, noise[i], step_size), noise, z))


def _sample_latent_metropolis(p, z, noise, uniform, step_size, noise_std):
  state = _loop(lambda i, s: p.latent_metropolis(s, noise[i], uniform[i], step_size, noise_std),
                noise, p.latent_start(z))
  return p.generate(state[0])


def _latent_prior_step(p, z, noise, uniform, beta, temperature):
  return p.prior((z, p.prior_potential(z)), noise, uniform, beta, temperature)[0]


def _sample_latent_prior(p, z, noise, uniform, beta, temperature):
  state = _loop(lambda i, s: p.prior(s, noise[i], uniform[i], beta[i], temperature), noise,
                (z, p.prior_potential(z)))
  return p.generate(state[0])


@dataclasses.dataclass(frozen=True)
class Signature:
  """One signature: its inputs ((name, kind), ...), its one output's name, and its graph."""
  name: str
  inputs: tuple
  output: str
  graph: Callable
  needs_energy: bool = True  # a run without E exports only what does not
  needs_latent_gradient: bool = False  # G's input gradient: only for an MLP G (latent_vjp)

  @property
  def input_names(self):
    return tuple(name for name, _ in self.inputs)


_STEP = (('step_size', SCALAR),)
_MALA = (('step_size', SCALAR), ('noise_std', SCALAR))
TABLE = (
    Signature('generate', (('z', Z),), 'x', _Parts.generate, needs_energy=False),
    Signature('energy', (('x', X),), 'e', _Parts.energy),
    Signature('langevin_step', (('x', X), ('noise', X), *_STEP), 'x', _Parts.step),
    Signature('sample', (('z', Z), ('noise', X_CHAIN), *_STEP), 'x', _sample),
    Signature('metropolis_step', (('x', X), ('noise', X), ('uniform', PER_CHAIN), *_MALA), 'x',
              _metropolis_step),
    Signature('sample_metropolis', (('z', Z), ('noise', X_CHAIN), ('uniform', PER_STEP), *_MALA),
              'x', _sample_metropolis),
    Signature('latent_step', (('z', Z), ('noise', Z), *_STEP), 'z', _Parts.latent_step,
              needs_latent_gradient=True),
    Signature('latent_metropolis_step', (('z', Z), ('noise', Z), ('uniform', PER_CHAIN), *_MALA),
              'z', _latent_metropolis_step, needs_latent_gradient=True),
    Signature('sample_latent', (('z', Z), ('noise', Z_CHAIN), *_STEP), 'x', _sample_latent,
              needs_latent_gradient=True),
    Signature('sample_latent_metropolis',
              (('z', Z), ('noise', Z_CHAIN), ('uniform', PER_STEP), *_MALA), 'x',
              _sample_latent_metropolis, needs_latent_gradient=True),
    Signature('latent_prior_step', (('z', Z), ('noise', Z), ('uniform', PER_CHAIN),
                                    ('beta', PER_CHAIN), ('temperature', SCALAR)), 'z',
              _latent_prior_step),
    Signature('sample_latent_prior', (('z', Z), ('noise', Z_CHAIN), ('uniform', PER_STEP),
                                      ('beta', PER_STEP), ('temperature', SCALAR)), 'x',
              _sample_latent_prior),
)
SIGNATURES = tuple(signature.name for signature in TABLE)
_BY_NAME = {signature.name: signature for signature in TABLE}


def latent_gradient_problem(generator):
  """What keeps G's input gradient from builtin TFLite ops ('a Conv2D layer'), or None."""
  try:
    latent_vjp.LatentPotential(generator, None)
  except latent_vjp.UnsupportedGenerator as e:
    return str(e)
  return None


def names(with_energy, with_latent_gradient):
  """The signatures an export holds, in the table's order."""
  return tuple(s.name for s in TABLE if (with_energy or not s.needs_energy)
               and (with_latent_gradient or not s.needs_latent_gradient))


def described(selected, labelled=False):
  """{name: {inputs: [names], outputs: [name]}} of the `selected` signatures (export.json);
  `labelled`: a conditional run's, which take `label` too."""
  extra = [LABEL] if labelled else []
  return {name: dict(inputs=list(_BY_NAME[name].input_names) + extra,
                     outputs=[_BY_NAME[name].output]) for name in selected}


def frozen(model, data_shape, grad_clip, selected):
  """{name: concrete function} of the `selected` signatures over `model`, each calling the
  frozen, variable-free graph (weights as constants) with named inputs and output.

  Args:
    model: the GanEbm; its G and E are called in inference mode.
    data_shape: the shape of one example.
    grad_clip: the chains' gradient clip (0: none), built into the graphs.
    selected: names from `names`.
  """
  parts = _Parts(model, grad_clip)
  shapes = _shapes(data_shape, model.latent_dim)
  labelled = bool(getattr(model, 'num_classes', 0))
  return {name: _frozen(_BY_NAME[name], parts, shapes, labelled) for name in selected}


def _frozen(signature, parts, shapes, labelled=False):
  """The concrete function of `signature`'s frozen graph over `parts` (`labelled`: with
  the input `label` [B] int32 last, the class of each chain).

  Freezing drops the input and output names; the wrapper puts them back.
  """
  specs = [tf.TensorSpec(shapes[kind], tf.float32) for _, kind in signature.inputs]
  graph_fn = functools.partial(signature.graph, parts)
  input_names = signature.input_names
  if labelled:
    specs.append(tf.TensorSpec([None], tf.int32))
    input_names += (LABEL,)
    graph_fn = lambda *args: signature.graph(parts.with_labels(args[-1]), *args[:-1])
  traced = tf.function(graph_fn, input_signature=specs, autograph=False)
  graph = convert_to_constants.convert_variables_to_constants_v2(traced.get_concrete_function())
  named = [tf.TensorSpec(spec.shape, spec.dtype, name=name)
           for name, spec in zip(input_names, specs)]
  call = lambda *args: {signature.output: tf.nest.flatten(graph(*args))[0]}
  return tf.function(call, input_signature=named, autograph=False).get_concrete_function()
