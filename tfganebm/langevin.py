"""Short-run Langevin dynamics on an energy (report, Algorithm 1).

    x <- clip(x - step_size * g(x) + noise * eps, low, high),  eps ~ N(0, I)

where g(x) = grad_x E(x), optionally clipped to an L2 norm of `grad_clip` per
sample. With noise = sqrt(2 * step_size) this is the unadjusted Langevin
algorithm, whose chains sample exp(-E) as the step size goes to zero; a smaller
noise samples exp(-E / T) with T = noise^2 / (2 step_size), a colder chain.

With `metropolis=True` each step is a Metropolis-adjusted Langevin (MALA)
proposal, accepted with the Metropolis-Hastings probability for exp(-E / T);
proposals outside [low, high] are rejected instead of clipped. The chain then
samples exp(-E / T) restricted to the data range exactly, at any step size, so
steps can be large enough to cross flat regions of E without being thrown out
of its narrow wells.
"""


import tensorflow as tf


def _clip_per_sample(grad, grad_clip):
  if isinstance(grad_clip, (int, float)) and grad_clip <= 0:
    return grad
  axes = list(range(1, len(grad.shape)))
  norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=axes, keepdims=True) + 1e-12)
  scale = tf.minimum(1.0, grad_clip / norm)
  # grad_clip <= 0 as a tensor also means no clipping.
  return grad * tf.where(grad_clip > 0, scale, tf.ones_like(scale))


def energy_and_gradient(energy_fn, x, grad_clip=0.0):
  """(E(x) [B], grad_x E(x) [B, ...] clipped per sample to L2 norm `grad_clip`, 0: no clip).

  An `energy_fn` with a `value_and_gradient(x)` method gives both itself (the
  export's latent potential, whose gradient is written out with builtin TFLite ops);
  otherwise a gradient tape does.
  """
  explicit = getattr(energy_fn, 'value_and_gradient', None)
  if explicit is not None:
    energy, grad = explicit(x)
    return energy, _clip_per_sample(grad, grad_clip)
  with tf.GradientTape() as tape:
    tape.watch(x)
    energy = energy_fn(x)
    total = tf.reduce_sum(energy)
  return energy, _clip_per_sample(tape.gradient(total, x), grad_clip)


def energy_gradient(energy_fn, x, grad_clip=0.0):
  """grad_x E(x) for a batch, each sample's gradient clipped to L2 norm `grad_clip` (0: no clip).

  Args:
    energy_fn: x [B, ...] -> energies [B].
    x: [B, ...] float32.
    grad_clip: python float or scalar tensor >= 0.

  Returns:
    [B, ...] float32, the same shape as x.
  """
  return energy_and_gradient(energy_fn, x, grad_clip)[1]


def langevin_step(energy_fn, x, noise_sample, step_size, noise, grad_clip=0.0,
                  low=-1.0, high=1.0):
  """One step of Algorithm 1 with the noise given: x [B, ...] -> x [B, ...] in [low, high]."""
  grad = energy_gradient(energy_fn, x, grad_clip)
  return _bound(x - step_size * grad + noise * noise_sample, low, high)


def _bound(x, low, high):
  """x clipped to [low, high]; low = high = None: unbounded (latent chains)."""
  return x if low is None else tf.clip_by_value(x, low, high)


def metropolis_step(energy_fn, x, energy, grad, noise_sample, uniform, step_size, noise,
                    grad_clip=0.0, low=-1.0, high=1.0):
  """One MALA step for exp(-E / T), T = noise^2 / (2 step_size), carrying E and grad E.

  Args:
    x, energy, grad: the current states [B, ...], their energies [B] and gradients.
    noise_sample: [B, ...] standard normal; uniform: [B] uniform in [0, 1).

  Returns:
    (x, energy, grad, accepted [B] bool) after the step.
  """
  axes = list(range(1, len(x.shape)))
  proposal = x - step_size * grad + noise * noise_sample
  proposal_energy, proposal_grad = energy_and_gradient(energy_fn, proposal, grad_clip)
  log_ratio = metropolis_log_ratio(x, energy, proposal, proposal_energy, proposal_grad,
                                   noise_sample, step_size, noise)
  accepted = tf.math.log(uniform) < log_ratio
  if low is not None:
    inside = tf.reduce_all(tf.logical_and(proposal >= low, proposal <= high), axes)
    accepted = tf.logical_and(inside, accepted)
  mask = tf.reshape(accepted, [-1] + [1] * len(axes))
  return (tf.where(mask, proposal, x), tf.where(accepted, proposal_energy, energy),
          tf.where(mask, proposal_grad, grad), accepted)


def metropolis_log_ratio(x, energy, proposal, proposal_energy, proposal_grad, noise_sample,
                         step_size, noise):
  """log of MALA's acceptance ratio for the move x -> proposal = x - step_size grad E(x) +
  noise * noise_sample, for exp(-E / T), T = noise^2 / (2 step_size): [B]."""
  axes = list(range(1, len(x.shape)))
  temperature = noise**2 / (2.0 * step_size)
  forward = tf.reduce_sum(tf.square(noise * noise_sample), axes)
  backward = tf.reduce_sum(tf.square(x - proposal + step_size * proposal_grad), axes)
  return (energy - proposal_energy) / temperature + (forward - backward) / (2.0 * noise**2)


def standard_normal(like, seed):
  """Standard normal noise shaped as `like`, from the stateless `seed` [2] (int).

  Stateless, so a step's noise carries no ordering edge to the chain's other stateful ops
  and the scheduler draws it while the gradients run. One path in graph mode and under XLA:
  `tf.random.stateless_normal` (XLA generates it itself; a Box-Muller of stateless
  uniforms was 2.2x cheaper in graph mode on a CPU but ran XLA's moons chain 20 % slower,
  and two paths drew two streams).
  """
  return tf.random.stateless_normal(tf.shape(like), seed, dtype=like.dtype)


class NoiseStream:
  """A chain's random draws: step i's come from the stateless seed
  `stateless_fold_in(seed, DRAWS * (first_step + i) + draw)`, so a chain run in segments
  (`first_step` = the steps already run) draws what one chain would, and the draws carry no
  ordering edge to the chain's other ops (see `standard_normal`)."""

  DRAWS = 4  # the most draws a step takes

  def __init__(self, seed, first_step=0):
    self.seed = seed
    self.first_step = tf.cast(first_step, tf.int64)  # once, before the chain's loop

  @classmethod
  def of(cls, source):
    """`source` itself, or for a tf.random.Generator a stream seeded by one draw from it
    (so a chain's noise follows from the generator's state: seeded runs, exact resume)."""
    if isinstance(source, cls):
      return source
    return cls(source.make_seeds(1)[:, 0])

  def group(self, index):
    """The stream of a group of chains (`chain_energy`): its own seed, the same steps."""
    return NoiseStream(tf.random.experimental.stateless_fold_in(self.seed, index),
                       self.first_step)

  def _seed(self, i, draw):
    # One fold_in per draw: two nested ones ran XLA's moons chain at half its speed (each
    # is a small Philox call of its own).
    step = self.first_step + tf.cast(i, tf.int64)
    return tf.random.experimental.stateless_fold_in(self.seed, step * self.DRAWS + draw)

  def normal(self, like, i):
    """Standard normal noise shaped as `like` for step i."""
    return standard_normal(like, self._seed(i, 0))

  def uniform(self, shape, i, draw=1):
    """Uniforms in [0, 1) of `shape` for step i (`draw`: which of the step's draws)."""
    return tf.random.stateless_uniform(shape, self._seed(i, draw))


def langevin(energy_fn, x_init, rng, steps, step_size, noise, grad_clip=0.0,
             low=-1.0, high=1.0, record_every=0, metropolis=False):
  """Runs `steps` Langevin steps from `x_init` as one tf.while_loop (one per chain group
  when `energy_fn` is a `chain_energy.ChainEnergy` with groups).

  Args:
    energy_fn: x [B, ...] -> energies [B]; called in inference mode by the caller's choice.
    x_init: [B, ...] float32 chain starts.
    rng: a tf.random.Generator (the chain draws one seed from it: `NoiseStream.of`) or a
      `NoiseStream`.
    steps: int (a python int gives a static trip count) or scalar int32 tensor.
    step_size: eta, float >= 0.
    noise: sigma, float >= 0.
    grad_clip: per-sample L2 clip of grad_x E; 0 disables it.
    low, high: the data range the chain is clipped to; None, None: unbounded.
    record_every: if > 0, also return the states after every `record_every` steps.
    metropolis: accept or reject each step (MALA); needs step_size > 0 and noise > 0.

  Returns:
    x [B, ...], the final state; with `record_every`, also the states
    [steps // record_every + 1, B, ...], starting with x_init.
  """
  x_init = tf.convert_to_tensor(x_init, tf.float32)
  prepared = getattr(energy_fn, 'prepared', None)
  if prepared is not None:  # a chain_energy.ChainEnergy: its loop-invariant work, once
    energy_fn = prepared()
  if metropolis and any(isinstance(v, (int, float)) and v <= 0 for v in (step_size, noise)):
    raise ValueError(f'Metropolis-adjusted Langevin needs step size > 0 and noise > 0, got '
                     f'{step_size} and {noise}')
  chain = _metropolis_chain if metropolis else _chain
  args = (steps, step_size, noise, grad_clip, low, high, record_every)
  draws = NoiseStream.of(rng)
  parts = (energy_fn.split_chains(x_init) if hasattr(energy_fn, 'split_chains')
           else [(energy_fn, x_init)])
  if len(parts) == 1:
    return chain(energy_fn, x_init, draws, *args)
  # Chain groups (chain_energy): each group a chain of its own (and E, with its labels).
  results = [chain(part_energy, part, draws.group(g), *args)
             for g, (part_energy, part) in enumerate(parts)]
  if record_every:
    return (tf.concat([state for state, _ in results], 0),
            tf.concat([records for _, records in results], 1))
  return tf.concat(results, 0)


def _chain(energy_fn, x_init, draws, steps, step_size, noise, grad_clip, low, high,
           record_every):
  """`langevin`'s unadjusted chain on one batch, drawing from the NoiseStream `draws`."""

  def step(i, x):
    eps = draws.normal(x, i)
    return langevin_step(energy_fn, x, eps, step_size, noise, grad_clip, low, high)

  return _loop(step, x_init, steps, record_every)


def _metropolis_chain(energy_fn, x_init, draws, steps, step_size, noise, grad_clip, low, high,
                      record_every):
  """`langevin` with MALA steps; the loop state carries E and grad E, one evaluation per step."""
  x_init = _bound(x_init, low, high)
  energy, grad = energy_and_gradient(energy_fn, x_init, grad_clip)

  def step(i, state):
    x, energy, grad = state
    x, energy, grad, _ = metropolis_step(
        energy_fn, x, energy, grad, draws.normal(x, i), draws.uniform(tf.shape(energy), i),
        step_size, noise, grad_clip, low, high)
    return x, energy, grad

  result = _loop(step, (x_init, energy, grad), steps, record_every, first=lambda s: s[0])
  if record_every:
    return result[0][0], result[1]
  return result[0]


def prior_step(potential_fn, z, potential, noise, uniform, temperature, beta=1.0):
  """One Metropolis-Hastings step for N(0, I) exp(-V(z) / T), proposing from the prior.

  The proposal z' = sqrt(1 - beta^2) z + beta * noise leaves N(0, I) invariant (and is
  reversible for it), so the prior cancels from the acceptance ratio, which is the ratio
  of exp(-V / T) alone. beta = 1 draws z' ~ N(0, I) independent of z (independence
  Metropolis-Hastings: a jump to anywhere G reaches); beta < 1 is a local move
  (preconditioned Crank-Nicolson) that refines a chain within its mode.

  Args:
    potential_fn: V, z [B, latent] -> [B] (E(G(z)); the prior is not part of it).
    z, potential: the current states and V(z) [B].
    noise: [B, latent] standard normal; uniform: [B] in [0, 1).
    temperature: T > 0 (a number or scalar tensor).
    beta: the proposal's step, in (0, 1] (clipped to [0, 1]): a number, a scalar or a [B]
      tensor (one per chain).

  Returns:
    (z, potential, accepted [B] bool) after the step; z' is accepted with probability
    min(1, exp((V(z) - V(z')) / T)).
  """
  # Clipped: beta > 1 would not keep N(0, I), and the acceptance below relies on it.
  beta = tf.clip_by_value(tf.reshape(tf.cast(beta, tf.float32), [-1, 1]), 0.0, 1.0)
  proposal = tf.sqrt(1.0 - tf.square(beta)) * z + beta * noise
  proposal_potential = potential_fn(proposal)
  accepted = tf.math.log(uniform) < (potential - proposal_potential) / temperature
  return (tf.where(tf.reshape(accepted, [-1, 1]), proposal, z),
          tf.where(accepted, proposal_potential, potential), accepted)


def prior_betas(uniform, jump_prob, local_beta):
  """Each chain's beta for one `prior_step`: 1 (a jump) where uniform < jump_prob, else
  `local_beta` (a local move); uniform [B] in [0, 1)."""
  return tf.where(uniform < jump_prob, 1.0, local_beta)


def prior_chain(potential_fn, z_init, rng, steps, temperature, jump_prob=1.0, local_beta=0.1,
                record_every=0):
  """`steps` of `prior_step` from `z_init` [B, latent], drawing from `rng`.

  At each step each chain jumps (a fresh z' ~ N(0, I)) with probability `jump_prob` (a
  python number in [0, 1]) and otherwise moves locally with beta = `local_beta`; a mixture
  of kernels that each keep the target keeps it too. A step costs one forward pass of G
  and E and no gradient; a jump reaches any mode G reaches, so a chain never has to cross the flat
  energy between wells, and the local moves pull it into the core of its well, which
  fresh draws from a blurred G hit rarely.

  Returns:
    z [B, latent]; with `record_every`, also the states [steps // record_every + 1, B, latent].
  """
  z_init = tf.convert_to_tensor(z_init, tf.float32)
  draws = NoiseStream.of(rng)

  def step(i, state):
    z, potential = state
    betas = (1.0 if jump_prob >= 1 else
             prior_betas(draws.uniform(tf.shape(potential), i, 2), jump_prob, local_beta))
    z, potential, _ = prior_step(potential_fn, z, potential, draws.normal(z, i),
                                 draws.uniform(tf.shape(potential), i), temperature, betas)
    return z, potential

  result = _loop(step, (z_init, potential_fn(z_init)), steps, record_every,
                 first=lambda s: s[0])
  if record_every:
    return result[0][0], result[1]
  return result[0]


def _loop(step, state, steps, record_every, first=lambda s: s):
  """Runs `state = step(i, state)` for i = 0 .. `steps` - 1; with record_every, also
  stacks first(state)."""
  if record_every <= 0:
    _, state = tf.while_loop(lambda i, _: i < steps, lambda i, s: (i + 1, step(i, s)),
                             (tf.constant(0), state), maximum_iterations=steps)
    return state

  if not isinstance(steps, int):
    raise ValueError('recording a trajectory needs a python int number of steps')
  num_records = steps // record_every + 1
  x_init = first(state)
  records = tf.TensorArray(tf.float32, size=num_records, element_shape=x_init.shape)
  records = records.write(0, x_init)

  def body(i, state, records):
    state = step(i, state)
    i += 1
    records = tf.cond(i % record_every == 0,
                      lambda: records.write(i // record_every, first(state)), lambda: records)
    return i, state, records

  _, state, records = tf.while_loop(lambda i, *_: i < steps, body,
                                    (tf.constant(0), state, records), maximum_iterations=steps)
  return state, records.stack()
