"""Draw samples from a trained model (G alone, G + Langevin) and measure them.

Used at the end of training and by `tfganebm.sample`; writes `metrics.json` and
the figures into one directory.
"""

import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tfganebm import classifier
from tfganebm import data
from tfganebm import files
from tfganebm import langevin as langevin_lib
from tfganebm import metrics
from tfganebm import plots

GRID_RESOLUTION = 200  # cells per axis of the [-1, 1]^2 density grid
PROGRESSION_FRAMES = 6  # panels of the Langevin progression figure


class NonFiniteSamples(ValueError):
  """Samples with NaN or infinite values, which `evaluate` was asked not to write."""


def _count_non_finite(x_gen, x_langevin, refuse, settings):
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
             f'the {settings.steps} Langevin steps (eta={settings.step_size:g})')
    raise NonFiniteSamples(f'{max(counts.values())} samples are not finite, from {where}; '
                           'check the run for divergence, or try fewer --langevin_steps or a '
                           'smaller --langevin_step_size')
  if counts:
    logging.warning('non-finite samples (written as null metrics): %s', counts)
  return counts


@dataclasses.dataclass(frozen=True)
class LangevinSettings:
  steps: int
  step_size: float
  noise: float
  grad_clip: float = 0.0
  metropolis: bool = False

  @classmethod
  def inference(cls, config):
    """The sampling settings a run was configured with."""
    return cls(config.langevin_steps, config.langevin_step_size, config.langevin_noise,
               config.langevin_grad_clip, config.langevin_metropolis)


def draw_samples(model, num_samples, seed, settings, record_every=0):
  """G samples and their Langevin refinement.

  Args:
    model: a `GanEbm`.
    num_samples: int.
    seed: seed of this draw (z and Langevin noise), independent of training's stream.
    settings: `LangevinSettings`; steps == 0 or a plain GAN gives no refinement.
    record_every: if > 0, also return the chain states every `record_every` steps.

  Returns:
    (x_gen, x_langevin, trajectory) as numpy arrays in data space; the last two
    may be None.
  """
  rng = tf.random.Generator.from_seed(seed, alg='philox')
  x_gen = model.generator(rng.normal([num_samples, model.latent_dim]), training=False)
  if model.energy is None or settings.steps == 0:
    return x_gen.numpy(), None, None

  @tf.function(jit_compile=True, autograph=False)
  def refine(x):
    return langevin_lib.langevin(model.energy_of, x, rng, settings.steps, settings.step_size,
                                 settings.noise, settings.grad_clip, record_every=record_every,
                                 metropolis=settings.metropolis)

  if record_every:
    x_langevin, trajectory = refine(x_gen)
    return x_gen.numpy(), x_langevin.numpy(), trajectory.numpy()
  return x_gen.numpy(), refine(x_gen).numpy(), None


def energy_density_grid(model, resolution=GRID_RESOLUTION):
  """exp(-E)/Z on the [-1, 1]^2 grid (log Z by quadrature): (log_density [res, res], log_z)."""
  axis = np.linspace(-1, 1, resolution, dtype=np.float32)
  xx, yy = np.meshgrid(axis, axis, indexing='xy')
  grid = np.stack([xx.ravel(), yy.ravel()], 1)
  energies = model.energy_of(tf.constant(grid), training=False).numpy().reshape(resolution,
                                                                                resolution)
  cell_area = (axis[1] - axis[0]) ** 2
  return metrics.grid_log_density(energies, cell_area)


def _labels(config, settings, step, averaged_steps=None):
  title = f'{config.dataset}, {config.model}, step {step}'
  if averaged_steps:
    title += f' (mean of {len(averaged_steps)} checkpoints)'
  label = (f'G + {settings.steps} {"MALA" if settings.metropolis else "Langevin"} steps '
           f'(eta={settings.step_size:g}, sigma={settings.noise:g})')
  return title, label


def evaluate(model, config, out_dir, num_samples, seed, settings, step=None, dataset=None,
             refuse_non_finite=False):
  """Samples, metrics.json and figures of a run into `out_dir`.

  Args:
    dataset: the run's `data.Data` if at hand (images: saves loading them again).
    refuse_non_finite: raise NonFiniteSamples, before writing anything, when a sample is
      not finite; otherwise metrics.json counts them in `non_finite_samples`.

  Returns:
    (metrics dict, x_gen, x_langevin).
  """
  if data.is_image(config.dataset):
    if dataset is None:
      dataset = data.load(config.dataset, config.num_examples, data_dir=config.data_dir,
                          download=config.download)
    return evaluate_images(model, config, out_dir, num_samples, seed, settings, step, dataset,
                           refuse_non_finite)
  held_out = data.load(config.dataset, config.num_examples, config.data_noise, config.seed,
                       num_held_out=2 * num_samples)
  # `floor`, a second held-out sample, measured like the samples: the best a model can score.
  real, floor = held_out.held_out[:num_samples], held_out.held_out[num_samples:2 * num_samples]
  frames = PROGRESSION_FRAMES - 1
  record_every = settings.steps // frames if settings.steps >= frames else 0
  x_gen, x_langevin, trajectory = draw_samples(model, num_samples, seed, settings, record_every)
  non_finite = _count_non_finite(x_gen, x_langevin, refuse_non_finite, settings)
  result = dict(dataset=config.dataset, model=config.model, step=step,
                averaged_steps=model.averaged_steps, seed=seed,
                num_samples=num_samples, langevin=dataclasses.asdict(settings),
                real_data=metrics.evaluate_points(floor, real, held_out.mixture),
                generator=metrics.evaluate_points(x_gen, real, held_out.mixture))
  if non_finite:
    result['non_finite_samples'] = non_finite
  log_density = None
  if x_langevin is not None:
    result['generator_langevin'] = metrics.evaluate_points(x_langevin, real, held_out.mixture)
  if model.energy is not None:
    log_density, log_z = energy_density_grid(model)
    nll = float(np.mean(model.energy_of(tf.constant(real), training=False).numpy()) + log_z)
    result['energy'] = dict(log_z=log_z, held_out_nll=nll)

  os.makedirs(out_dir, exist_ok=True)
  files.write_json(os.path.join(out_dir, 'metrics.json'), result)
  title, label = _labels(config, settings, step, model.averaged_steps)
  with files.atomic_path(os.path.join(out_dir, 'samples.png')) as path:
    plots.samples_2d(path, real, x_gen, x_langevin, log_density, title, label)
  if trajectory is not None:
    with files.atomic_path(os.path.join(out_dir, 'langevin_progression.png')) as path:
      plots.langevin_progression(path, trajectory, record_every, title)
  return result, x_gen, x_langevin


IMAGE_GRID = 100  # images per panel of samples.png
CHAIN_STRIP = 10  # chains shown in langevin_progression.png


def _classifier(config, dataset):
  """The cached metrics classifier of a run's image dataset (trained on first use)."""
  return classifier.load_or_train(config.dataset, dataset.train, dataset.train_labels,
                                  dataset.held_out, dataset.held_out_labels,
                                  config.classifier_dir)


class ImageScorer:
  """Scores images against a run's held-out images in its classifier's feature space.

  The reference is one half of the held-out (test) split, shuffled with a fixed
  seed; `floor` holds up to `num_real` images of the other half, which score the
  best a model can at that sample size.
  """

  def __init__(self, config, dataset, num_real):
    self.classifier = _classifier(config, dataset)
    # A fixed shuffle first: MNIST's test split is ordered (its first 5,000 images come from
    # other writers than its last 5,000), so its halves would not be alike.
    held_out = dataset.held_out[np.random.default_rng(0).permutation(len(dataset.held_out))]
    half = len(held_out) // 2
    self.num_reference = half
    self.floor = data.to_unit_range(held_out[half:][:num_real])
    self.reference_features, _ = self.classifier.features_and_probabilities(
        data.to_unit_range(held_out[:half]))

  def __call__(self, x, seed=0):
    """metrics.evaluate_images of images x [n, H, W, C] in [-1, 1]."""
    return metrics.evaluate_images(*self.classifier.features_and_probabilities(x),
                                   self.reference_features, seed=seed)


def evaluate_images(model, config, out_dir, num_samples, seed, settings, step, dataset,
                    refuse_non_finite=False):
  """`evaluate` for images: classifier-FID, KID and class coverage; image grids."""
  scorer = ImageScorer(config, dataset, num_samples)
  floor = scorer.floor
  frames = PROGRESSION_FRAMES - 1
  record_every = settings.steps // frames if settings.steps >= frames else 0
  x_gen, x_langevin, trajectory = draw_samples(model, num_samples, seed, settings, record_every)
  non_finite = _count_non_finite(x_gen, x_langevin, refuse_non_finite, settings)
  measure = lambda x: scorer(x, seed)
  result = dict(dataset=config.dataset, model=config.model, step=step,
                averaged_steps=model.averaged_steps, seed=seed,
                num_samples=num_samples, num_reference=scorer.num_reference,
                num_real=len(floor), langevin=dataclasses.asdict(settings),
                classifier=scorer.classifier.info,
                real_data=measure(floor), generator=measure(x_gen))
  if non_finite:
    result['non_finite_samples'] = non_finite
  if x_langevin is not None:
    result['generator_langevin'] = measure(x_langevin)

  os.makedirs(out_dir, exist_ok=True)
  files.write_json(os.path.join(out_dir, 'metrics.json'), result)
  title, label = _labels(config, settings, step, model.averaged_steps)
  panels = [('held-out data', floor[:IMAGE_GRID]), ('G(z)', x_gen[:IMAGE_GRID])]
  if x_langevin is not None:
    panels.append((label, x_langevin[:IMAGE_GRID]))
  with files.atomic_path(os.path.join(out_dir, 'samples.png')) as path:
    plots.image_grids(path, panels, title)
  if trajectory is not None:
    with files.atomic_path(os.path.join(out_dir, 'langevin_progression.png')) as path:
      plots.chain_strip(path, trajectory[:, :CHAIN_STRIP], record_every, title)
  return result, x_gen, x_langevin


def sweep_langevin_steps(model, config, dataset, settings, every, num_samples=2000, seed=0,
                         num_reference=5000):
  """Sample quality of G + k Langevin steps for k = 0, every, 2 every, ..., settings.steps.

  Chains run once and are scored at every `every` steps against the *training*
  data, so that choosing `--langevin_steps` leaves the held-out split to the
  numbers reported with the choice. Images: classifier-FID to `num_reference`
  training images (a fixed shuffle); 2D: sliced Wasserstein distance to as many
  training points.

  Args:
    dataset: the run's `data.Data`.
    settings: `LangevinSettings`; its `steps` is the longest chain scored.
    every: steps between two scored states; must divide settings.steps.

  Returns:
    [(steps, score)], lower is better; the first entry is G alone.
  """
  if model.energy is None:
    raise ValueError('a plain GAN has no energy to run Langevin chains on')
  if every <= 0 or settings.steps % every:
    raise ValueError(f'--every={every} must be positive and divide --max_steps={settings.steps}')
  _, _, trajectory = draw_samples(model, num_samples, seed, settings, record_every=every)
  order = np.random.default_rng(0).permutation(len(dataset.train))[:num_reference]
  reference = dataset.train[order]
  if data.is_image(config.dataset):
    scorer = _classifier(config, dataset)
    reference_features, _ = scorer.features_and_probabilities(data.to_unit_range(reference))
    score = lambda x: metrics.frechet_distance(scorer.features_and_probabilities(x)[0],
                                               reference_features)
  else:
    score = lambda x: metrics.sliced_wasserstein(x, reference, seed=seed)
  return [(i * every, score(x)) for i, x in enumerate(trajectory)]
