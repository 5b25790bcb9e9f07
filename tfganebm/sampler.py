"""The sampler's settings and its entry points, for training and inference alike.

A run has two samplers of the same type: the training chains (flags
`--train_langevin_*`) and the sampler used after training (`--langevin_*`), whose
settings also travel with an export (`export.json`) to the device runner.

Two spaces to run a chain in:
- `data`: x starts at G(z) and moves on E(x), clipped to [-1, 1] (report, Algorithm 1).
- `latent`: z moves on U(z) = E(G(z)) + |z|^2 / 2 and x = G(z), as in
  discriminator-driven latent sampling (Che et al. 2020) and generalized EBMs
  (Arbel et al. 2021). exp(-U) is the prior N(0, I) reweighted by exp(-E(G(z))), so
  the samples stay on G's manifold, and their density is G's push-forward
  reweighted, not exp(-E(x)): the Jacobian of G is ignored, which is what makes a
  smooth z-space chain possible. Modes G does not reach stay out of reach.
Temperature: T = noise^2 / (2 step_size). A Langevin chain samples exp(-E / T) in
data space and exp(-U / T) in latent space (the prior tempered too).

Two proposals in latent space: `langevin` (a gradient step on U, optionally with
Metropolis) and `prior`: Metropolis-Hastings with proposals that keep the prior
N(0, I), for N(0, I) exp(-E(G(z)) / T): G's samples reweighted by exp(-E / T), only
E tempered (at T = 1 the same target as the Langevin chain's). A step is a jump, a
fresh z' ~ N(0, I) (independence MH: G itself is the proposal, and a chain reaches any
mode G reaches in one step, where a gradient chain would have to cross the flat
energy between wells), with probability `jump_prob`, and otherwise a local move
z' = sqrt(1 - b^2) z + b eps with b = `local_beta` (preconditioned Crank-Nicolson),
which pulls a chain into the core of its well. Either is accepted on the ratio of
exp(-E(G(.)) / T) alone, and costs a forward pass of G and E, no gradient.
"""

import dataclasses

from tfganebm import fields
from tfganebm.fields import setting


@dataclasses.dataclass(frozen=True)
class SamplerConfig(fields.Section):
  """Short-run Langevin dynamics on E from G's samples (report, Algorithm 1)."""
  steps: int = setting(60, 'Langevin steps K (0: G alone).', low=0, tensor=True)
  step_size: float = setting(1e-3, 'Langevin step size eta.', low=0.0, tensor=True)
  noise: float = setting(0.0447, 'Langevin noise std sigma; sqrt(2 * eta) samples exp(-E).',
                         low=0.0, tensor=True)
  grad_clip: float = setting(0.0, 'Per-sample L2 clip of grad E (0: off).', low=0.0,
                             tensor=True)
  metropolis: bool = setting(False, 'Metropolis-adjusted Langevin (MALA) steps.')
  space: str = setting('data', 'Where the chain runs: data (x on E(x), from G(z)) or latent '
                       '(z on E(G(z)) + |z|^2/2, then x = G(z)).', choices=('data', 'latent'))
  proposal: str = setting('langevin', 'How a step proposes: langevin (a gradient step, MALA with '
                          'metropolis) or prior (latent space: Metropolis-Hastings on '
                          'exp(-E(G(z)) / T) with proposals that keep N(0, I), see jump_prob; '
                          'no gradient, T = noise^2 / (2 step_size)).',
                          choices=('langevin', 'prior'))
  jump_prob: float = setting(1.0, 'proposal=prior: the chance that a step draws a fresh '
                             'z ~ N(0, I) (a jump between modes); otherwise it moves locally, '
                             'z\' = sqrt(1 - b^2) z + b eps with b = local_beta. 1: every step '
                             'jumps (independence Metropolis-Hastings), 0: local moves only. '
                             'Ignored by proposal=langevin.', low=0.0, high=1.0)
  local_beta: float = setting(0.1, "proposal=prior: the local move's b, in (0, 1] (see "
                              'jump_prob).', above=0.0, high=1.0)

  target_accept: float = setting(0.0, 'Tune step_size before sampling (dual averaging, '
                                 'tfganebm.tuning) so that the mean acceptance probability of '
                                 'a step is this, then keep it: step_size is then the start and '
                                 'noise follows it at the temperature of the two; the tuned '
                                 'values are stored with the run. MALA: 0.57; unadjusted '
                                 'Langevin: 0.9 (the acceptance its step would have had as '
                                 'MALA\'s); 0: step_size as given.', low=0.0, below=1.0)
  tune_steps: int = setting(300, 'target_accept > 0: steps of the warm-up that tunes the step '
                            'size (chains from G, restarted every `steps`).', low=1)

  RELATIONS = ((('metropolis', 'step_size', 'noise'),
                lambda metropolis, step_size, noise: not metropolis or min(step_size, noise) > 0,
                '{0} needs {1} > 0 and {2} > 0'),
               (('proposal', 'space'), lambda proposal, space: proposal == 'langevin'
                or space == 'latent', '{0}=prior proposes latents z ~ N(0, I): it needs {1}=latent'),
               (('proposal', 'step_size', 'noise'), lambda proposal, step_size, noise:
                proposal == 'langevin' or min(step_size, noise) > 0,
                '{0}=prior needs {1} > 0 and {2} > 0 (its temperature is {2}^2 / (2 {1}))'),
               (('target_accept', 'proposal'), lambda target, proposal: target == 0
                or proposal == 'langevin', '{0} tunes a Langevin step size: it needs '
                '{1}=langevin'),
               (('target_accept', 'step_size', 'noise'), lambda target, step_size, noise:
                target == 0 or min(step_size, noise) > 0, '{0} needs {1} > 0 (where tuning '
                'starts) and {2} > 0 (the temperature it keeps is {2}^2 / (2 {1}))'))

  @classmethod
  def names(cls):
    """Every setting's name, in declaration order: the flags (with their prefix), the sweep's
    axes and sweep.csv's columns, best.cfg and export.json all follow from it."""
    return tuple(field.name for field in dataclasses.fields(cls))

  @classmethod
  def graph_names(cls):
    """The settings a compiled chain holds as constants (the compile cache's key); the
    others (`fields.setting(tensor=True)`) come in as tensors."""
    return tuple(field.name for field in dataclasses.fields(cls)
                 if not field.metadata.get('tensor'))

  @classmethod
  def field_of(cls, name):
    return next(field for field in dataclasses.fields(cls) if field.name == name)

  def ignored(self):
    """The settings this sampler's proposal does not read (a sweep keeps them at the run's
    values, so that cells differing only there are one cell)."""
    ignored = ('tune_steps',) if self.target_accept == 0 else ()
    return ignored + (('jump_prob', 'local_beta') if self.proposal == 'langevin' else ())

  def describe(self):
    """A short label, e.g. 'G + 60 Langevin steps (eta=0.001, sigma=0.0447)'; ' in z' for
    the latent space."""
    where = ' in z' if self.space == 'latent' else ''
    if self.proposal == 'prior':
      moves = ('independence MH steps' if self.jump_prob >= 1 else
               f'prior MH steps (jump {self.jump_prob:g}, local {self.local_beta:g})')
      return f'G + {self.steps} {moves}{where} (T={temperature(self.step_size, self.noise):g})'
    return (f'G + {self.steps} {"MALA" if self.metropolis else "Langevin"} steps{where} '
            f'(eta={self.step_size:g}, sigma={self.noise:g})')


def temperature(step_size, noise):
  """T = noise^2 / (2 step_size), the chains' temperature (numbers or tensors)."""
  return noise**2 / (2.0 * step_size)


def run(energy_fn, x_init, rng, sampler, record_every=0):
  """Refines chains `x_init` [B, ...] in [-1, 1] with `sampler` (a SamplerConfig) on
  `energy_fn` (x -> [B]); `rng` is a tf.random.Generator.

  Returns:
    x [B, ...]; with `record_every` > 0 also the states every `record_every` steps
    [steps // record_every + 1, B, ...], starting with x_init.
  """
  if sampler.space != 'data':
    raise ValueError(f'sampler.run runs data-space chains; use refine for space={sampler.space}')
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return langevin.langevin(energy_fn, x_init, rng, sampler.steps, sampler.step_size,
                           sampler.noise, sampler.grad_clip, record_every=record_every,
                           metropolis=sampler.metropolis)


def latent_energy(energy_fn, generator_fn):
  """U(z) = E(G(z)) + |z|^2 / 2, the latent Langevin chain's potential: z [B, latent] -> [B]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return lambda z: energy_fn(generator_fn(z)) + 0.5 * tf.reduce_sum(tf.square(z), axis=1)


def prior_potential(energy_fn, generator_fn):
  """V(z) = E(G(z)), the prior proposal's potential (its proposals keep N(0, I) themselves)."""
  return lambda z: energy_fn(generator_fn(z))


def start(generator_fn, z, sampler):
  """The chain state for latents z: G(z) in data space, z itself in latent space."""
  return z if sampler.space == 'latent' else generator_fn(z)


def advance(energy_fn, generator_fn, state, rng, sampler, steps=None, record_every=0,
            step_size=None, noise=None, grad_clip=None):
  """Runs `steps` (default: sampler.steps; a python int or an int32 tensor) steps of the
  chain from `state` (see `start`); returns the new state, and with `record_every`
  also the states every `record_every` steps in *data* space [R, B, ...].

  `step_size`, `noise`, `grad_clip` (scalar tensors) replace the sampler's, so that one
  traced function serves many values (a sweep); the sampler's `metropolis`, `space`
  and `proposal` shape the graph.
  """
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top  (TensorFlow)
  steps = sampler.steps if steps is None else steps
  pick = lambda given, own: own if given is None else given
  if sampler.proposal == 'prior':
    result = langevin.prior_chain(
        prior_potential(energy_fn, generator_fn), state, rng, steps,
        temperature(pick(step_size, sampler.step_size), pick(noise, sampler.noise)),
        sampler.jump_prob, sampler.local_beta, record_every=record_every)
  else:
    if sampler.space == 'latent':
      potential, low, high = latent_energy(energy_fn, generator_fn), None, None
    else:
      potential, low, high = energy_fn, -1.0, 1.0
    result = langevin.langevin(potential, state, rng, steps, pick(step_size, sampler.step_size),
                               pick(noise, sampler.noise), pick(grad_clip, sampler.grad_clip),
                               low=low, high=high, record_every=record_every,
                               metropolis=sampler.metropolis)
  if not record_every or sampler.space == 'data':
    return result
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  state, records = result
  flat = generator_fn(tf.reshape(records, [-1, records.shape[-1]]))
  return state, tf.reshape(flat, [records.shape[0], -1, *flat.shape[1:]])


def to_data(generator_fn, state, sampler):
  """The samples x of a chain state: the state itself in data space, G(z) in latent space."""
  return generator_fn(state) if sampler.space == 'latent' else state


def refine(energy_fn, generator_fn, z, rng, sampler, record_every=0):
  """x = G(z) refined by `sampler` in its space; with `record_every` > 0, also the
  data-space states every `record_every` steps [steps // record_every + 1, B, ...]."""
  result = advance(energy_fn, generator_fn, start(generator_fn, z, sampler), rng, sampler,
                   record_every=record_every)
  if record_every:
    return to_data(generator_fn, result[0], sampler), result[1]
  return to_data(generator_fn, result, sampler)
