"""A sampler that tunes its own step size: dual averaging (Hoffman & Gelman 2014).

With `--langevin_target_accept` in (0, 1), the sampler's step size is not taken as given
but tuned on the trained E before sampling: chains start from G(z) and run the sampler's
own length, restarting from fresh G(z) until `--langevin_tune_steps` steps have run, and
after each step the step size moves so that the mean acceptance probability over the
chains approaches the target:

    H_t = H_{t-1} + (target - mean acceptance_t)
    log eta_t = mu - H_t sqrt(t) / ((t + t0) gamma),   mu = log(10 eta_0)
    log bar_eta_t = t^-kappa log eta_t + (1 - t^-kappa) log bar_eta_{t-1}

(gamma 0.05, t0 10, kappa 0.75: the defaults of NUTS and TFP). The chains use eta_t while
they adapt; bar_eta, the average, is the tuned value, frozen after the warm-up. The noise
follows the step size at the sampler's temperature T = noise^2 / (2 eta): tuning changes
how far a step goes, not which density the chain samples.

MALA steps (`--langevin_metropolis`) are accepted with the Metropolis-Hastings probability,
and that is the acceptance tuned. Unadjusted steps are always taken; for them the tuned
acceptance is the one the same step would have had as a MALA proposal, before the clip to
the data range (its step is sound where that is high). MALA's usual target is 0.57 (Roberts
& Rosenthal 1998); an unadjusted chain, whose error grows with its step where MALA's
rejections would remove it, wants a higher one: on moons.cfg's runs (T 1, 300 steps) 0.9
tunes to the step of the best cell of a sweep (sliced Wasserstein within the sampling
noise), 0.57 to a step six times longer and samples five times farther from the data. The criterion is a sampler's: for a cold chain (a temperature far below
1, as the MNIST configs' short-run chains) it asks for steps whose energy change is of the
order of T, far shorter than such a chain takes to descend E in a few steps.

The tuned values are stored with the run (`tuned_sampler.json` in its workdir, with the
warm-up's diagnostics), so `sample`, `export` (export.json's sampler) and the device use
what was tuned; `runs.load_run` tunes once and reads the file after.
"""

import dataclasses
import json
import math
import os

from absl import logging
import numpy as np

from tfganebm import files
from tfganebm import sampler as sampler_lib

TUNED_FILE = 'tuned_sampler.json'
GAMMA, T0, KAPPA = 0.05, 10.0, 0.75
MAX_CHAINS = 256  # chains adapted side by side
TRACE_POINTS = 100  # per-step diagnostics kept in the file (evenly spaced)
MAX_STORED = 8  # tunings kept per run (one per sampler asked for, for the latest weights)


def dual_averaging_update(state, accept, target, mu):
  """One update of the dual-averaging state (t, H, log eta, log bar eta), tensors or numbers;
  `accept` is this step's mean acceptance probability."""
  t, error_sum, _, log_bar = state
  t = t + 1.0
  error_sum = error_sum + (target - accept)
  log_step = mu - error_sum * t**0.5 / ((t + T0) * GAMMA)
  weight = t**-KAPPA
  return t, error_sum, log_step, weight * log_step + (1.0 - weight) * log_bar


def acceptance(energy_fn, x, energy, grad, noise_sample, step_size, noise, grad_clip, low, high):
  """One Langevin step from x and the probability that MALA would accept it: 0 for a
  proposal outside [low, high], which MALA rejects (an unadjusted chain clips it instead:
  its callers pass low = high = None).

  Returns:
    (proposal, its energy, its gradient, acceptance probability [B] in [0, 1]).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top
  proposal = x - step_size * grad + noise * noise_sample
  proposal_energy, proposal_grad = langevin.energy_and_gradient(energy_fn, proposal, grad_clip)
  log_ratio = langevin.metropolis_log_ratio(x, energy, proposal, proposal_energy, proposal_grad,
                                           noise_sample, step_size, noise)
  probability = tf.exp(tf.minimum(log_ratio, 0.0))
  probability = tf.where(tf.math.is_finite(probability), probability, 0.0)
  if low is not None:
    axes = list(range(1, len(x.shape)))
    inside = tf.reduce_all(tf.logical_and(proposal >= low, proposal <= high), axes)
    probability = tf.where(inside, probability, 0.0)
  return proposal, proposal_energy, proposal_grad, probability


def _move(energy_fn, x, energy, grad, draws, i, step_size, noise, grad_clip, low, high,
          metropolis):
  """Step i of a tuning chain: ((x, E, grad E) after it, its acceptance probability [B]). MALA
  accepts or rejects; an unadjusted step is always taken, clipped to [low, high]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top
  bounds = (low, high) if metropolis else (None, None)  # see `acceptance`
  proposal, p_energy, p_grad, probability = acceptance(
      energy_fn, x, energy, grad, draws.normal(x, i), step_size, noise, grad_clip, *bounds)
  if metropolis:
    taken = draws.uniform(tf.shape(probability), i) < probability
    mask = tf.reshape(taken, [-1] + [1] * (len(x.shape) - 1))
    return (tf.where(mask, proposal, x), tf.where(taken, p_energy, energy),
            tf.where(mask, p_grad, grad)), probability
  if low is None:  # unbounded: the proposal's energy and gradient are the new state's
    return (proposal, p_energy, p_grad), probability
  moved = tf.clip_by_value(proposal, low, high)
  return (moved, *langevin.energy_and_gradient(energy_fn, moved, grad_clip)), probability


def adapt(energy_fn, x, draws, steps, state, temperature, target, mu, grad_clip=0.0,
          low=-1.0, high=1.0, metropolis=False):
  """`steps` adapting steps from chains `x` [B, ...] (a python int: one tf.while_loop).

  Args:
    draws: a `langevin.NoiseStream`.
    state: the dual-averaging state (t, H, log eta, log bar eta), float32 scalars.
    temperature: T; the noise of a step of size eta is sqrt(2 eta T).

  Returns:
    (x, state, trace [steps, 4]: the step size used, the mean acceptance, the mean energy
    and the mean gradient norm at each step).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top
  x = tf.convert_to_tensor(x, tf.float32)
  energy, grad = langevin.energy_and_gradient(energy_fn, x, grad_clip)
  trace = tf.TensorArray(tf.float32, size=steps, element_shape=[4])
  axes = list(range(1, len(x.shape)))

  def body(i, x, energy, grad, state, trace):
    step_size = tf.exp(state[2])
    noise = tf.sqrt(2.0 * step_size * temperature)
    new, probability = _move(energy_fn, x, energy, grad, draws, i, step_size, noise, grad_clip,
                             low, high, metropolis)
    mean_accept = tf.reduce_mean(probability)
    norm = tf.reduce_mean(tf.sqrt(tf.reduce_sum(tf.square(grad), axes)))
    trace = trace.write(i, tf.stack([step_size, mean_accept, tf.reduce_mean(energy), norm]))
    state = dual_averaging_update(state, mean_accept, target, mu)
    return (i + 1, *new, state, trace)

  _, x, _, _, state, trace = tf.while_loop(
      lambda i, *_: i < steps, body, (tf.constant(0), x, energy, grad, state, trace),
      maximum_iterations=steps)
  return x, state, trace.stack()


def measure(energy_fn, x, draws, steps, step_size, noise, grad_clip=0.0, low=-1.0, high=1.0,
            metropolis=False):
  """The mean acceptance probability over `steps` steps of fixed size from chains `x`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top
  x = tf.convert_to_tensor(x, tf.float32)
  energy, grad = langevin.energy_and_gradient(energy_fn, x, grad_clip)

  def body(i, x, energy, grad, total):
    new, probability = _move(energy_fn, x, energy, grad, draws, i, step_size, noise, grad_clip,
                             low, high, metropolis)
    return (i + 1, *new, total + tf.reduce_mean(probability))

  _, _, _, _, total = tf.while_loop(lambda i, *_: i < steps, body,
                                    (tf.constant(0), x, energy, grad, tf.constant(0.0)),
                                    maximum_iterations=steps)
  return total / float(max(steps, 1))


def _chains(model, sampler, num_chains):
  """(the chains' potential, bounds, start function z -> state) of `sampler` on `model`
  (a conditional model's chains: the classes in turn)."""
  labels = None
  if getattr(model, 'num_classes', 0):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tfganebm import conditioning  # pylint: disable=g-import-not-at-top
    labels = tf.constant(conditioning.balanced(num_chains, model.num_classes))
  energy_fn, generator_fn = model.bound(labels)
  if sampler.space == 'latent':
    return sampler_lib.latent_energy(energy_fn, generator_fn), None, None, lambda z: z
  return energy_fn, -1.0, 1.0, generator_fn


def tune(model, sampler, seed=0, num_chains=None):
  """Tunes `sampler`'s step size on `model`'s E (see the module's docstring).

  Returns:
    (the tuned SamplerConfig: step size and noise replaced, diagnostics dict).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top
  if sampler.steps <= 0:
    return sampler, None
  num_chains = num_chains or MAX_CHAINS
  energy_fn, low, high, start = _chains(model, sampler, num_chains)
  temperature = sampler_lib.temperature(sampler.step_size, sampler.noise)
  round_length = min(sampler.steps, sampler.tune_steps)
  rounds = math.ceil(sampler.tune_steps / round_length)
  mu = math.log(10.0 * sampler.step_size)
  rng = tf.random.Generator.from_seed(seed, alg='philox')
  settings = dict(temperature=tf.constant(temperature, tf.float32),
                  target=tf.constant(sampler.target_accept, tf.float32),
                  mu=tf.constant(mu, tf.float32), grad_clip=sampler.grad_clip, low=low,
                  high=high, metropolis=sampler.metropolis)

  @tf.function(autograph=False)
  def warm_round(z, seed, first_step, state):
    draws = langevin.NoiseStream(seed, first_step)
    return adapt(energy_fn, start(z), draws, round_length, state, **settings)

  @tf.function(autograph=False)
  def measure_round(z, seed, step_size):
    noise = tf.sqrt(2.0 * step_size * settings['temperature'])
    return measure(energy_fn, start(z), langevin.NoiseStream(seed), round_length, step_size,
                   noise, sampler.grad_clip, low, high, sampler.metropolis)

  state = tuple(tf.constant(v, tf.float32) for v in (0.0, 0.0, math.log(sampler.step_size), 0.0))
  traces = []
  for r in range(rounds):
    z = rng.normal([num_chains, model.latent_dim])
    _, state, trace = warm_round(z, rng.make_seeds(1)[:, 0], tf.constant(r * round_length,
                                                                          tf.int64), state)
    traces.append(trace.numpy())
  tuned_step = float(np.exp(state[3].numpy()))
  if not np.isfinite(tuned_step) or tuned_step <= 0:
    raise ValueError(f'tuning the step size to acceptance {sampler.target_accept:g} diverged '
                     f'(step size {tuned_step}); start it nearer with --langevin_step_size')
  accepted = float(measure_round(rng.normal([num_chains, model.latent_dim]),
                                 rng.make_seeds(1)[:, 0], tf.constant(tuned_step, tf.float32)))
  tuned_noise = math.sqrt(2.0 * tuned_step * temperature)
  trace = np.concatenate(traces)[:sampler.tune_steps]
  keep = np.unique(np.linspace(0, len(trace) - 1, min(TRACE_POINTS, len(trace))).astype(int))
  diagnostics = dict(
      target_accept=sampler.target_accept, step_size=tuned_step, noise=tuned_noise,
      acceptance=accepted, start_step_size=sampler.step_size, start_noise=sampler.noise,
      temperature=temperature, warmup_steps=int(len(trace)), chains=num_chains,
      trace=dict(step=[int(i) for i in keep],
                 **{name: [float(v) for v in trace[keep, column]] for column, name in
                    enumerate(('step_size', 'acceptance', 'energy', 'grad_norm'))}))
  tuned = dataclasses.replace(sampler, step_size=tuned_step, noise=tuned_noise)
  return tuned, diagnostics


def _key(sampler, model):
  """What a stored tuning depends on: the sampler as asked (before tuning) and the weights'
  checkpoint steps."""
  return dict(sampler=dataclasses.asdict(sampler),
              steps=list(model.averaged_steps or [int(model.step.numpy())]))


def tuned_config(config, model, workdir):
  """`config` with its sampler's step size and noise tuned (when it asks for tuning): read
  from the workdir's tuned_sampler.json when that was tuned for this sampler and these
  weights, else tuned now and written there (a read-only workdir keeps it in memory).
  Sets `model.sampler_tuning` to the diagnostics (None without tuning)."""
  model.sampler_tuning = None
  sampler = config.sampler
  if sampler.target_accept <= 0 or model.energy is None or sampler.steps <= 0:
    return config
  path = os.path.join(workdir, TUNED_FILE)
  key = _key(sampler, model)
  entries = []
  try:
    with open(path) as f:
      entries = json.load(f).get('tunings', [])
  except (OSError, ValueError, AttributeError):
    pass
  entries = [e for e in entries if isinstance(e, dict) and 'key' in e and 'tuned' in e]
  diagnostics = next((e['tuned'] for e in entries if e['key'] == key), None)
  if diagnostics is None:
    logging.info('tuning the step size of %s to acceptance %g (%d warm-up steps)',
                 sampler.describe(), sampler.target_accept, sampler.tune_steps)
    _, diagnostics = tune(model, sampler, seed=config.run.seed)
    entries = [e for e in entries if e['key']['steps'] == key['steps']][-(MAX_STORED - 1):]
    try:
      files.write_json(path, dict(tunings=entries + [dict(key=key, tuned=diagnostics)]))
    except OSError as e:
      logging.warning('%s not written (%s): the tuned step size holds for this use only',
                      path, e.strerror or e)
  logging.info('tuned step size %.4g, noise %.4g: acceptance %.3f (target %g)',
               diagnostics['step_size'], diagnostics['noise'], diagnostics['acceptance'],
               sampler.target_accept)
  model.sampler_tuning = diagnostics
  return dataclasses.replace(config, sampler=dataclasses.replace(
      sampler, step_size=diagnostics['step_size'], noise=diagnostics['noise']))


def write_summaries(diagnostics, directory):
  """The warm-up's per-step diagnostics as TensorBoard scalars (`sampler_tuning/...`, against
  the warm-up step) in `directory`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  trace = diagnostics['trace']
  writer = tf.summary.create_file_writer(directory)
  with writer.as_default():
    for i, step in enumerate(trace['step']):
      for name in ('step_size', 'acceptance', 'energy', 'grad_norm'):
        tf.summary.scalar(f'sampler_tuning/{name}', trace[name][i], step=step)
  writer.close()
