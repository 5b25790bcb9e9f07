"""The chains of a trained model: G's samples and their refinement by a sampler.

One compiled chain per model and graph-shaping settings (`_chain_function`), run in
batches (`chain_batch`) and read at several lengths from one set of chains (`chains_at`);
`draw_samples` is the draw of an evaluation, `generate` G alone.
"""

import weakref

from absl import logging
import numpy as np
import tensorflow as tf

from tfganebm import conditioning
from tfganebm import langevin
from tfganebm import sampler as sampler_lib

# Chains run in batches of at most this many values (samples x values per sample): a
# 10,000-image chain in one batch held 8 GB of G's and E's activations for MNIST; in
# batches of 668 images the draw peaks at 1.1 GB, and runs no slower. 2D chains run in
# one batch.
CHAIN_BATCH_VALUES = 2**19


def chain_batch(data_shape):
  """Chains per batch for samples of `data_shape`."""
  return max(1, CHAIN_BATCH_VALUES // int(np.prod(data_shape)))


def _chain_seeds(rng, num_samples, batch):
  """The noise seeds [2] of each batch's chains, drawn from `rng` after z.

  One batch draws the seed one unbatched chain would draw from `rng`
  (`langevin.NoiseStream.of`); more batches draw one each, so every batch's noise is its
  own whatever the order in which batches and segments of chains run.
  """
  return tf.unstack(rng.make_seeds(-(-num_samples // batch)), axis=1)


class NonFiniteSamples(ValueError):
  """Samples with NaN or infinite values, which `evaluate` was asked not to write."""


def count_non_finite(x_gen, x_langevin, refuse, sampler):
  """{'generator': n, 'generator_langevin': n} of the samples that are not all finite.

  Raises:
    NonFiniteSamples: with `refuse`, when any is.
  """
  counts = {}
  for name, x in (('generator', x_gen), ('generator_langevin', x_langevin)):
    if x is not None:
      bad = int(np.sum(~np.all(np.isfinite(x.reshape(len(x), -1)), axis=1)))
      if bad:
        counts[name] = bad
  if counts and refuse:
    where = ('G itself' if 'generator' in counts else
             f'the {sampler.steps} Langevin steps (eta={sampler.step_size:g})')
    raise NonFiniteSamples(f'{max(counts.values())} samples are not finite, from {where}; '
                           'check the run for divergence, or try fewer --langevin_steps or a '
                           'smaller --langevin_step_size')
  if counts:
    logging.warning('non-finite samples (written as null metrics): %s', counts)
  return counts



def draw_samples(model, num_samples, seed, sampler, record_every=0, record_chains=None,
                 labels=None):
  """G samples and their refinement by `sampler`: the chains of `chains_at`, read at the
  sampler's length (and, for a trajectory, every `record_every` steps on the way).

  Args:
    model: a `GanEbm`.
    num_samples: int.
    seed: seed of this draw (z and Langevin noise), independent of training's stream.
    sampler: a `SamplerConfig`; steps == 0 or a plain GAN gives no refinement.
    record_every: if > 0, also return the chain states every `record_every` steps, of the
      first `record_chains` chains (None: all).
    labels: a conditional model's class of each sample [num_samples] (None: `chains_at`'s).

  Returns:
    (x_gen, x_langevin, trajectory) as numpy arrays in data space; the last two
    may be None.
  """
  if model.energy is None or sampler.steps == 0:
    rng = tf.random.Generator.from_seed(seed, alg='philox')  # the stream of chains_at(seed)
    return generate(model, rng.normal([num_samples, model.latent_dim]),
                    sample_labels(model, num_samples, labels)), None, None
  frames = set(range(0, sampler.steps + 1, record_every)) if record_every else set()
  x_gen, x_langevin, trajectory = None, None, []
  for k, x in chains_at(model, num_samples, seed, sampler, sorted(frames | {0, sampler.steps}),
                        labels):
    x_gen = x if k == 0 else x_gen
    x_langevin = x
    if k in frames:
      trajectory.append(np.array(x[:record_chains]))  # a copy: not the whole batch
  return x_gen, x_langevin, np.stack(trajectory) if record_every else None


def sample_labels(model, num_samples, labels=None):
  """The labels [num_samples] int32 of a conditional model's samples: `labels` (checked),
  or without them the classes in turn (`conditioning.balanced`); None for an unconditional
  model.

  Raises:
    ValueError: labels for an unconditional model, or out of its classes.
  """
  classes = getattr(model, 'num_classes', 0)
  if not classes:
    if labels is not None:
      raise ValueError('labels were given, but the run is not conditional (--conditional)')
    return None
  if labels is None:
    return conditioning.balanced(num_samples, classes)
  labels = np.asarray(labels)
  if labels.shape != (num_samples,) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be {num_samples} integers, got {labels.dtype} {labels.shape}')
  if labels.size and not 0 <= labels.min() <= labels.max() < classes:
    raise ValueError(f'labels must be classes 0..{classes - 1} of the run, got '
                     f'{labels.min()}..{labels.max()}')
  return labels.astype(np.int32)


def generate(model, z, labels=None):
  """G(z) in inference mode (a conditional G: G(z, labels)), float32 numpy, in batches (see
  CHAIN_BATCH_VALUES)."""
  batch = chain_batch(model.data_shape)
  pick = lambda i: None if labels is None else tf.constant(labels[i:i + batch])
  return np.concatenate([model.inference_generator(z[i:i + batch], pick(i)).numpy()
                         for i in range(0, max(len(z), 1), batch)])


_CHAIN_FUNCTIONS = weakref.WeakKeyDictionary()  # model -> {graph-shaping settings: ...}


# The sampler settings a chain's graph holds as constants (the others come in as tensors).
_GRAPH_SETTINGS = sampler_lib.SamplerConfig.graph_names()


def _chain_function(model, sampler):
  """One compiled `advance(state, seed, first_step, steps, step_size, noise, grad_clip)` per
  model and graph-shaping settings of `sampler` (_GRAPH_SETTINGS): the chain's noise is
  `langevin.NoiseStream(seed, first_step)`. The seed, step counts and scalars are tensors,
  so every segment of a chain and every cell of a sweep reuse one trace. XLA, except for the
  data-space Langevin chains of a model whose chains run in groups (a graph-mode CPU run:
  `chain_energy`), which run as a graph on its `chain_energy`, as in training (XLA runs a
  conv E's chain at half the speed of TF's graph kernels on CPU, and one thread per op
  where training set TF's intra-op threads to 1)."""
  functions = _CHAIN_FUNCTIONS.setdefault(model, {})
  key = tuple(getattr(sampler, name) for name in _GRAPH_SETTINGS)
  if key not in functions:
    # Only the graph-shaping settings matter (the scalars come in as tensors); step size and
    # noise of 1 pass the checks that a MALA or prior-proposal config makes of them.
    shape = sampler_lib.SamplerConfig(**dict(zip(_GRAPH_SETTINGS, key)), step_size=1.0,
                                      noise=1.0)
    model_ref = weakref.ref(model)  # the cache must not keep the model alive
    grouped = (model.chain_energy is not None and model.chain_energy.groups > 1
               and shape.space == 'data' and shape.proposal == 'langevin')

    @tf.function(jit_compile=not grouped, autograph=False)
    def advance(state, seed, first_step, steps, step_size, noise, grad_clip, labels=None):
      traced = model_ref()
      energy_fn, generator_fn = traced.bound(labels)
      if grouped:
        energy_fn = (traced.chain_energy if labels is None
                     else traced.chain_energy.with_labels(labels))
      return sampler_lib.advance(energy_fn, generator_fn, state,
                                 langevin.NoiseStream(seed, first_step), shape, steps,
                                 step_size=step_size, noise=noise, grad_clip=grad_clip)

    functions[key] = advance
  return functions[key]


def chains_at(model, num_samples, seed, sampler, steps_list, labels=None):
  """The samples of G + k steps of `sampler` for each k of `steps_list`, from one set of
  chains run once to the longest k (a chain's state at k steps is its state at k). A
  conditional model's chain i samples class labels[i] (default: `sample_labels`).

  Yields:
    (k, x [num_samples, ...] numpy) in increasing k; k = 0 is G alone.
  """
  if model.energy is None and max(steps_list) > 0:
    raise ValueError('a plain GAN has no energy to run chains on; use --langevin_steps=0')
  advance = _chain_function(model, sampler)
  rng = tf.random.Generator.from_seed(seed, alg='philox')  # z, then the chains' noise seeds
  z = rng.normal([num_samples, model.latent_dim])
  labels = sample_labels(model, num_samples, labels)
  scalars = [tf.constant(v, tf.float32) for v in (sampler.step_size, sampler.noise,
                                                    sampler.grad_clip)]
  batch = chain_batch(model.data_shape)
  seeds = _chain_seeds(rng, num_samples, batch)
  starts = range(0, num_samples, batch)
  batch_labels = [None if labels is None else tf.constant(labels[i:i + batch]) for i in starts]
  generators = [model.bound(y)[1] for y in batch_labels]
  states = [sampler_lib.start(generator_fn, z[i:i + batch], sampler)
            for generator_fn, i in zip(generators, starts)]
  done = 0
  for k in sorted(set(steps_list)):
    if k == 0:
      yield k, generate(model, z, labels)
      continue
    for i, seed in enumerate(seeds):  # each batch of chains goes on from step `done`
      states[i] = advance(states[i], seed, tf.constant(done, tf.int32),
                          tf.constant(k - done, tf.int32), *scalars, batch_labels[i])
    done = k
    yield k, np.concatenate([sampler_lib.to_data(generator_fn, state, sampler).numpy()
                             for generator_fn, state in zip(generators, states)])

