"""Draw samples from a trained model (G alone, G + Langevin) and measure them.

Used at the end of training and by `tfganebm.sample`; writes `metrics.json` and
the figures into one directory.
"""

import dataclasses
import os
import weakref

from absl import logging
import numpy as np
import tensorflow as tf

from tfganebm import classifier
from tfganebm import data
from tfganebm import files
from tfganebm import langevin
from tfganebm import metrics
from tfganebm import plots
from tfganebm import progress
from tfganebm import sampler as sampler_lib
from tfganebm import workdir as workdir_lib

GRID_RESOLUTION = 200  # cells per axis of the [-1, 1]^2 density grid
PROGRESSION_FRAMES = 6  # panels of the Langevin progression figure
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


def _count_non_finite(x_gen, x_langevin, refuse, sampler):
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


def draw_samples(model, num_samples, seed, sampler, record_every=0, record_chains=None):
  """G samples and their refinement by `sampler`: the chains of `chains_at`, read at the
  sampler's length (and, for a trajectory, every `record_every` steps on the way).

  Args:
    model: a `GanEbm`.
    num_samples: int.
    seed: seed of this draw (z and Langevin noise), independent of training's stream.
    sampler: a `SamplerConfig`; steps == 0 or a plain GAN gives no refinement.
    record_every: if > 0, also return the chain states every `record_every` steps, of the
      first `record_chains` chains (None: all).

  Returns:
    (x_gen, x_langevin, trajectory) as numpy arrays in data space; the last two
    may be None.
  """
  if model.energy is None or sampler.steps == 0:
    rng = tf.random.Generator.from_seed(seed, alg='philox')  # the stream of chains_at(seed)
    return generate(model, rng.normal([num_samples, model.latent_dim])), None, None
  frames = set(range(0, sampler.steps + 1, record_every)) if record_every else set()
  x_gen, x_langevin, trajectory = None, None, []
  for k, x in chains_at(model, num_samples, seed, sampler, sorted(frames | {0, sampler.steps})):
    x_gen = x if k == 0 else x_gen
    x_langevin = x
    if k in frames:
      trajectory.append(np.array(x[:record_chains]))  # a copy: not the whole batch
  return x_gen, x_langevin, np.stack(trajectory) if record_every else None


def generate(model, z):
  """G(z) in inference mode, float32 numpy, in batches (see CHAIN_BATCH_VALUES)."""
  batch = chain_batch(model.data_shape)
  return np.concatenate([model.inference_generator(z[i:i + batch]).numpy()
                         for i in range(0, max(len(z), 1), batch)])


_CHAIN_FUNCTIONS = weakref.WeakKeyDictionary()  # model -> {graph-shaping settings: ...}


# The sampler settings a chain's graph holds as constants (the others come in as tensors).
_GRAPH_SETTINGS = ('metropolis', 'space', 'proposal', 'jump_prob', 'local_beta')


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
    def advance(state, seed, first_step, steps, step_size, noise, grad_clip):
      traced = model_ref()
      energy_fn = traced.chain_energy if grouped else traced.energy_of
      return sampler_lib.advance(energy_fn, traced.inference_generator, state,
                                 langevin.NoiseStream(seed, first_step), shape, steps,
                                 step_size=step_size, noise=noise, grad_clip=grad_clip)

    functions[key] = advance
  return functions[key]


def chains_at(model, num_samples, seed, sampler, steps_list):
  """The samples of G + k steps of `sampler` for each k of `steps_list`, from one set of
  chains run once to the longest k (a chain's state at k steps is its state at k).

  Yields:
    (k, x [num_samples, ...] numpy) in increasing k; k = 0 is G alone.
  """
  if model.energy is None and max(steps_list) > 0:
    raise ValueError('a plain GAN has no energy to run chains on; use --langevin_steps=0')
  advance = _chain_function(model, sampler)
  rng = tf.random.Generator.from_seed(seed, alg='philox')  # z, then the chains' noise seeds
  z = rng.normal([num_samples, model.latent_dim])
  generator_fn = model.inference_generator
  scalars = [tf.constant(v, tf.float32) for v in (sampler.step_size, sampler.noise,
                                                    sampler.grad_clip)]
  batch = chain_batch(model.data_shape)
  seeds = _chain_seeds(rng, num_samples, batch)
  states = [sampler_lib.start(generator_fn, z[i:i + batch], sampler)
            for i in range(0, num_samples, batch)]
  done = 0
  for k in sorted(set(steps_list)):
    if k == 0:
      yield k, generate(model, z)
      continue
    for i, seed in enumerate(seeds):  # each batch of chains goes on from step `done`
      states[i] = advance(states[i], seed, tf.constant(done, tf.int32),
                          tf.constant(k - done, tf.int32), *scalars)
    done = k
    yield k, np.concatenate([sampler_lib.to_data(generator_fn, state, sampler).numpy()
                             for state in states])


def energy_density_grid(model, resolution=GRID_RESOLUTION):
  """exp(-E)/Z on the [-1, 1]^2 grid (log Z by quadrature): (log_density [res, res], log_z)."""
  axis = np.linspace(-1, 1, resolution, dtype=np.float32)
  xx, yy = np.meshgrid(axis, axis, indexing='xy')
  grid = np.stack([xx.ravel(), yy.ravel()], 1)
  energies = model.energy_of(tf.constant(grid), training=False).numpy().reshape(resolution,
                                                                                resolution)
  cell_area = (axis[1] - axis[0]) ** 2
  return metrics.grid_log_density(energies, cell_area)


def load_data(config, num_held_out=0):
  """The run's data (data.load of its data section and seed)."""
  return data.load(config.data, config.run.seed, num_held_out=num_held_out)


class PointsEvaluator:
  """Points of any dimension D: the sliced Wasserstein distance and MMD in D dimensions to
  held-out points (metrics.evaluate_points); 2D: also the energy's density and held-out
  NLL, and a scatter plot over the density map (D > 2: the first two coordinates).

  A 2D toy's held-out points are drawn afresh (twice the samples); a user's points are
  their held-out split, shuffled with a fixed seed and halved: one half the reference,
  the other the floor."""

  headline = ('sliced_wasserstein', 'mmd2')

  def __init__(self, config, num_samples, seed, dataset=None):
    del seed  # the distances need no seed
    if config.data.dataset in data.DATASETS or dataset is None:
      dataset = load_data(config, num_held_out=2 * num_samples)
    held_out = dataset.held_out
    if config.data.dataset in data.DATASETS:  # drawn afresh: the draw is already random
      self.real, self.floor = held_out[:num_samples], held_out[num_samples:2 * num_samples]
    else:
      held_out = held_out[np.random.default_rng(0).permutation(len(held_out))]
      half = len(held_out) // 2
      self.real, self.floor = held_out[:half], held_out[half:][:num_samples]
    self.mixture = dataset.mixture
    self.dimension = int(held_out.shape[1])
    self.info = dict(feature_space=f'points ({self.dimension}-D)',
                     held_out=dict(dataset.description or {}, num_reference=len(self.real)))
    self.trajectory_chains = None  # the progression figure shows every chain
    self.log_density = None  # of E on a grid, for the figure (energy_metrics)

  def __call__(self, x):
    return metrics.evaluate_points(x, self.real, self.mixture)

  def energy_metrics(self, model):
    if self.dimension != 2:
      return None  # a grid's quadrature only in 2D
    log_density, log_z = energy_density_grid(model)
    nll = float(np.mean(model.energy_of(tf.constant(self.real), training=False).numpy()) + log_z)
    self.log_density = log_density
    return dict(log_z=log_z, held_out_nll=nll)

  def figures(self, out_dir, x_gen, x_langevin, trajectory, record_every, title, label):
    if self.dimension < 2:
      logging.info('no scatter plots for 1-D points')
      return
    if self.dimension > 2:
      title += f' (coordinates 1 and 2 of {self.dimension})'
    two = lambda x: None if x is None else np.asarray(x)[..., :2]
    with files.atomic_path(os.path.join(out_dir, 'samples.png')) as path:
      plots.samples_2d(path, two(self.real), two(x_gen), two(x_langevin), self.log_density,
                       title, label)
    if trajectory is not None:
      with files.atomic_path(os.path.join(out_dir, 'langevin_progression.png')) as path:
        plots.langevin_progression(path, two(trajectory), record_every, title)


IMAGE_GRID = 100  # images per panel of samples.png
CHAIN_STRIP = 10  # chains shown in langevin_progression.png


class ImageEvaluator:
  """Images: against half of the held-out images (`image_scorer`: classifier-FID, KID and
  class coverage for labelled data, the Laplacian-pyramid SWD for unlabelled data); image
  grids and a strip of chains."""

  def __init__(self, config, num_samples, seed, dataset=None):
    if dataset is None:
      dataset = load_data(config)
    self.scorer = image_scorer(config, dataset, num_samples)
    self.floor = self.scorer.floor
    self.headline = self.scorer.headline
    self.info = dict(self.scorer.info, num_reference=self.scorer.num_reference,
                     num_real=len(self.floor))
    self.seed = seed
    self.trajectory_chains = CHAIN_STRIP  # the chains the progression figure shows

  def __call__(self, x):
    return self.scorer(x, self.seed)

  def energy_metrics(self, model):
    del model
    return None

  def figures(self, out_dir, x_gen, x_langevin, trajectory, record_every, title, label):
    panels = [('held-out data', self.floor[:IMAGE_GRID]), ('G(z)', x_gen[:IMAGE_GRID])]
    if x_langevin is not None:
      panels.append((label, x_langevin[:IMAGE_GRID]))
    with files.atomic_path(os.path.join(out_dir, 'samples.png')) as path:
      plots.image_grids(path, panels, title)
    if trajectory is not None:
      with files.atomic_path(os.path.join(out_dir, 'langevin_progression.png')) as path:
        plots.chain_strip(path, trajectory, record_every, title)


# By data.kind(dataset): how samples of that kind are measured and drawn.
EVALUATORS = {'points': PointsEvaluator, 'images': ImageEvaluator}


def evaluate(model, config, out_dir, num_samples, seed, step=None, dataset=None,
             refuse_non_finite=False, evaluator=None):
  """Samples of G and of G + `config.sampler`, their metrics.json and figures in `out_dir`.

  Args:
    model: a `GanEbm`.
    config: the run's `Config`; its `sampler` refines G's samples.
    num_samples: samples to draw; seed: seed of this draw.
    step: the training step, recorded (default: the model's).
    dataset: the run's `data.Data` if at hand (images: saves loading them again).
    refuse_non_finite: raise NonFiniteSamples, before writing anything, when a sample is
      not finite; otherwise metrics.json counts them in `non_finite_samples`.
    evaluator: an `EVALUATORS` instance for these samples, if at hand (shared with a
      quality curve of the same draw).

  Returns:
    (metrics dict, x_gen, x_langevin).
  """
  sampler = config.sampler
  step = int(model.step.numpy()) if step is None else step
  evaluator = evaluator or EVALUATORS[data.kind(config.data)](config, num_samples, seed,
                                                               dataset)
  frames = PROGRESSION_FRAMES - 1
  record_every = sampler.steps // frames if sampler.steps >= frames else 0
  bar = progress.Progress(5, f'evaluation of {num_samples} samples')
  x_gen, x_langevin, trajectory = draw_samples(model, num_samples, seed, sampler, record_every,
                                               evaluator.trajectory_chains)
  bar.update(1, f'drew G and {sampler.describe()}')
  non_finite = _count_non_finite(x_gen, x_langevin, refuse_non_finite, sampler)
  result = dict(dataset=config.data.dataset, model=config.networks.model, step=step,
                **model.averaging(), seed=seed, num_samples=num_samples,
                langevin=dataclasses.asdict(sampler), **evaluator.info,
                real_data=evaluator(evaluator.floor))
  bar.update(1, 'scored the real-data floor')
  result['generator'] = evaluator(x_gen)
  bar.update(1, 'scored G')
  if non_finite:
    result['non_finite_samples'] = non_finite
  if x_langevin is not None:
    result['generator_langevin'] = evaluator(x_langevin)
  bar.update(1, 'scored G + chain')
  if model.energy is not None:
    energy = evaluator.energy_metrics(model)
    if energy is not None:
      result['energy'] = energy

  os.makedirs(out_dir, exist_ok=True)
  files.write_json(os.path.join(out_dir, 'metrics.json'), result)
  title = f'{config.data.dataset}, {config.networks.model}, step {step}'
  if model.averaged_steps:
    title += f' (mean of {len(model.averaged_steps)} checkpoints)'
  if model.averages:
    title += f" ({' and '.join(model.averages)}: moving averages)"
  evaluator.figures(out_dir, x_gen, x_langevin, trajectory, record_every, title,
                    sampler.describe())
  bar.update(1, 'figures written')
  bar.close()
  return result, x_gen, x_langevin


IMAGE_SUMMARY_SAMPLES = {'points': 1000, 'images': 64}


class ImageSummaries:
  """TensorBoard pictures of a run in training: images, a grid of G(z) and of G + the
  run's sampler; 2D, their scatter over the energy's density map. The same z every
  time (seeded by the run), so the pictures show one set of samples as training goes.
  One traced function for the whole run."""

  def __init__(self, model, config, jit_compile=None):
    """`jit_compile`: XLA for the sampler (default: the run's setting; training passes the
    one its host loop uses, off for multi-replica strategies and --deterministic)."""
    self.model, self.config = model, config
    jit_compile = config.run.jit_compile if jit_compile is None else jit_compile
    self.kind = data.kind(config.data)
    num = IMAGE_SUMMARY_SAMPLES[self.kind]
    self.z = tf.random.Generator.from_seed(config.run.seed + 1, alg='philox').normal(
        [num, model.latent_dim])
    self.rng = tf.random.Generator.from_seed(config.run.seed + 2, alg='philox')
    sampler = config.sampler
    generator_fn = model.inference_generator

    @tf.function(jit_compile=jit_compile, autograph=False)
    def refine(z):
      return sampler_lib.refine(model.energy_of, generator_fn, z, self.rng, sampler)

    self.generate = tf.function(generator_fn, autograph=False)
    self.refine = refine if model.energy is not None and sampler.steps else None
    self.real = None
    if self.kind == 'points':  # the run's own held-out points (the same scaling)
      self.real = load_data(config, num_held_out=num).held_out[:num][..., :2]

  def write(self, step):
    """Writes the pictures at `step` into the default summary writer."""
    import io  # pylint: disable=g-import-not-at-top
    x_gen = self.generate(self.z).numpy()
    x_chain = self.refine(self.z).numpy() if self.refine is not None else None
    label = self.config.sampler.describe()
    if self.kind == 'images':
      tf.summary.image('G', plots._tile(x_gen, 8)[None], step=step)  # pylint: disable=protected-access
      if x_chain is not None:
        tf.summary.image(label, plots._tile(x_chain, 8)[None], step=step)  # pylint: disable=protected-access
      return
    log_density = None
    if self.real.shape[1] < 2:
      return
    x_gen, x_chain = x_gen[..., :2], None if x_chain is None else x_chain[..., :2]
    if self.model.energy is not None and self.model.data_shape == (2,):
      log_density, _ = energy_density_grid(self.model, resolution=100)
    buffer = io.BytesIO()
    plots.samples_2d(buffer, self.real, x_gen, x_chain, log_density, f'step {step}', label)
    picture = tf.image.decode_png(buffer.getvalue(), channels=3)
    tf.summary.image('samples', picture[None], step=step)


# The metrics drawn against chain length are the evaluator's `headline`; mixtures add these.
MODE_CURVE_METRICS = ('modes_recovered', 'high_quality_fraction', 'mode_kl')
QUALITY_FILE = 'quality_vs_steps'  # .json, .csv and .png


def quality_against_steps(model, config, out_dir, steps_list, num_samples, seed=0,
                          baseline=None, dataset=None, evaluator=None, measured=None):
  """Quality against sampling cost: the metrics of G + k steps of `config.sampler`, for
  each k of `steps_list`, against the held-out data, beside the real-data floor and
  (with `baseline`, a plain GAN's model) the plain GAN's G at the same sample size.

  Writes OUT/quality_vs_steps.json (every metric), .csv (one row per k) and .png
  (the headline metrics against k, the floor and the plain GAN as lines).

  `evaluator` and `measured` (the dict `evaluate` returned for the same model, draw and
  sampler) let a caller that has just evaluated share that work: their G, G + K and
  floor metrics are taken, not scored again, and the chains stop at the longest k left.

  Returns:
    the JSON dict: sampler, rows [{steps, metrics...}], floor, baseline.
  """
  sampler = config.sampler
  kind = data.kind(config.data)
  evaluator = evaluator or EVALUATORS[kind](config, num_samples, seed, dataset)
  known = {}
  if measured is not None:
    known = {0: measured['generator'], sampler.steps: measured.get('generator_langevin')}
    known = {k: v for k, v in known.items() if v is not None}
  by_steps = {k: known[k] for k in set(steps_list) & set(known)}
  todo = sorted(set(steps_list) - set(by_steps))
  bar = progress.Progress(len(todo), 'quality against chain length')
  for k, x in chains_at(model, num_samples, seed, sampler, todo) if todo else ():
    _count_non_finite(x, None, True, dataclasses.replace(sampler, steps=k))
    by_steps[k] = evaluator(x)
    bar.update(1, f'{dataclasses.replace(sampler, steps=k).describe()}: '
                  f'{_headline(by_steps[k], evaluator.headline)}')
  bar.close()
  rows = [dict(steps=k, **by_steps[k]) for k in sorted(by_steps)]
  result = dict(dataset=config.data.dataset, sampler=dataclasses.asdict(sampler),
                label=sampler.describe().replace(f'G + {sampler.steps} ', 'G + k '),
                num_samples=num_samples, seed=seed, rows=rows,
                floor=measured['real_data'] if measured else evaluator(evaluator.floor))
  if baseline is not None:
    x_base, _, _ = draw_samples(baseline, num_samples, seed,
                                dataclasses.replace(sampler, steps=0))  # its G alone
    result['baseline'] = evaluator(x_base)
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, QUALITY_FILE)
  files.write_json(path + '.json', result)
  names = [name for name in rows[0] if not isinstance(rows[0][name], list)]
  lines = [','.join(names)] + [','.join('' if row[n] is None else f'{row[n]:.6g}'
                                       for n in names) for row in rows]
  files.write_text(path + '.csv', '\n'.join(lines) + '\n')
  curves = evaluator.headline + (MODE_CURVE_METRICS if 'mode_kl' in rows[0] else ())
  with files.atomic_path(path + '.png') as png:
    plots.quality_against_steps(png, result, curves,
                                title=f'{config.data.dataset}: quality against chain length')
  return result


def _headline(metrics_row, headline):
  keys = headline + MODE_CURVE_METRICS
  return ' '.join(f'{k}={metrics_row[k]:.4g}' for k in keys
                  if isinstance(metrics_row.get(k), (int, float)))


def sample_run(run_dir, out_dir, num_samples, seed=0, overrides=None, steps_list=None,
               baseline=None):
  """What `python -m tfganebm.sample` does: G and G + sampler samples of a trained run,
  as OUT/samples_generator.npy and OUT/samples_langevin.npy (row i of the second refines
  row i of the first; G alone for a plain GAN), with metrics.json and the figures.

  Args:
    run_dir: the run's workdir; out_dir: where to write (not the workdir itself).
    overrides: {flag name: value} for `workdir.load_run` (the sampler, data folders...).
    steps_list: chain lengths k for `quality_against_steps` (OUT/quality_vs_steps.*), if any.
    baseline: a plain GAN's workdir, the baseline line of that plot.

  Returns:
    The metrics dict.

  Raises:
    workdir.LoadError, images.DataError, NonFiniteSamples: nothing was written.
  """
  workdir_lib.check_output(run_dir, out_dir)
  model, config = workdir_lib.load_run(run_dir, overrides)
  if steps_list and model.energy is None and max(steps_list) > 0:
    raise workdir_lib.LoadError(f'{run_dir} is a plain GAN: it has no energy to run chains on; '
                                'give it as --baseline of a gan_ebm run instead')
  baseline_model = None
  if baseline:
    baseline_model, baseline_config = workdir_lib.load_run(baseline, {})
    if (baseline_config.data.dataset != config.data.dataset):
      raise workdir_lib.LoadError(f'--baseline {baseline} was trained on '
                                  f'{baseline_config.data.dataset}, not {config.data.dataset}')
  dataset = None
  if config.data.dataset not in data.DATASETS:  # loaded once for both evaluations
    dataset = load_data(config)
  # One evaluator and one draw for both: the curve takes G, G + K and the floor from the
  # evaluation, and runs its chains only to the longest shorter k.
  evaluator = EVALUATORS[data.kind(config.data)](config, num_samples, seed, dataset)
  result, x_gen, x_langevin = evaluate(model, config, out_dir, num_samples, seed,
                                       dataset=dataset, refuse_non_finite=True,
                                       evaluator=evaluator)
  if steps_list:
    quality_against_steps(model, config, out_dir, steps_list, num_samples, seed,
                          baseline=baseline_model, evaluator=evaluator, measured=result)
  files.write_npy(os.path.join(out_dir, 'samples_generator.npy'), x_gen)
  if x_langevin is None:
    if model.energy is None:
      logging.warning('%s is a plain GAN: samples_langevin.npy holds G alone', run_dir)
    x_langevin = x_gen
  files.write_npy(os.path.join(out_dir, 'samples_langevin.npy'), x_langevin)
  return result


def _classifier(config, dataset):
  """The cached metrics classifier of a run's labelled images (trained on first use)."""
  return classifier.load_or_train(config.data.dataset, dataset.train_array(classifier.MAX_TRAIN),
                                  dataset.train_labels[:classifier.MAX_TRAIN],
                                  dataset.held_out, dataset.held_out_labels,
                                  config.run.classifier_dir, num_classes=dataset.num_classes)


def _halves(held_out, num_real):
  """(reference, floor): a fixed shuffle of the held-out images, halved; the floor at most
  `num_real` images, in [-1, 1]."""
  # A fixed shuffle first: MNIST's test split is ordered (its first 5,000 images come from
  # other writers than its last 5,000), so its halves would not be alike.
  held_out = held_out[np.random.default_rng(0).permutation(len(held_out))]
  half = len(held_out) // 2
  return held_out[:half], data.to_unit_range(held_out[half:][:num_real])


def image_scorer(config, dataset, num_real):
  """The scorer of a run's images: `ImageScorer` (a classifier's features) when the data
  have labels of at least two classes, else `PyramidScorer`."""
  if dataset.num_classes >= 2 and dataset.held_out_labels is not None:
    return ImageScorer(config, dataset, num_real)
  return PyramidScorer(dataset, num_real)


class ImageScorer:
  """Scores images against a run's held-out images in its classifier's feature space.

  The reference is one half of the held-out (test) split, shuffled with a fixed
  seed; `floor` holds up to `num_real` images of the other half, which score the
  best a model can at that sample size.
  """

  headline = ('fid', 'kid')

  def __init__(self, config, dataset, num_real):
    self.classifier = _classifier(config, dataset)
    reference, self.floor = _halves(dataset.held_out, num_real)
    self.num_reference = len(reference)
    self.reference_features, _ = self.classifier.features_and_probabilities(
        data.to_unit_range(reference))
    self.info = dict(feature_space='classifier', classifier=self.classifier.info,
                     held_out=dataset.description)

  def __call__(self, x, seed=0):
    """metrics.evaluate_images of images x [n, H, W, C] in [-1, 1]."""
    return metrics.evaluate_images(*self.classifier.features_and_probabilities(x),
                                   self.reference_features, seed=seed)


class PyramidScorer:
  """Scores unlabelled images against half of the held-out images by ProGAN's sliced
  Wasserstein distance on Laplacian-pyramid patches (metrics.pyramid_sliced_wasserstein):
  no labels, no trained network."""

  headline = ('swd',)

  def __init__(self, dataset, num_real):
    reference, self.floor = _halves(dataset.held_out, num_real)
    self.reference = data.to_unit_range(reference)
    self.num_reference = len(reference)
    self.info = dict(feature_space='laplacian_pyramid_swd', held_out=dataset.description)

  def __call__(self, x, seed=0):
    return metrics.pyramid_sliced_wasserstein(x, self.reference, seed=seed)
