"""Draw samples from a trained model (G alone, G + Langevin) and measure them.

Used at the end of training and by `tfganebm.sample`; writes `metrics.json` and
the figures into one directory.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tfganebm import data
from tfganebm import files
from tfganebm import langevin as langevin_lib
from tfganebm import metrics
from tfganebm import plots

GRID_RESOLUTION = 200  # cells per axis of the [-1, 1]^2 density grid
PROGRESSION_FRAMES = 6  # panels of the Langevin progression figure


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

  @tf.function(jit_compile=True)
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


def evaluate(model, config, out_dir, num_samples, seed, settings, step=None):
  """Samples, metrics.json and figures of a 2D run into `out_dir`.

  Returns:
    (metrics dict, x_gen, x_langevin).
  """
  _, held_out = data.load_points(config.dataset, max(config.num_examples, 2 * num_samples),
                                 config.data_noise, config.seed)
  # `floor`, a second held-out sample, measured like the samples: the best a model can score.
  real, floor = held_out.x[:num_samples], held_out.x[num_samples:2 * num_samples]
  frames = PROGRESSION_FRAMES - 1
  record_every = settings.steps // frames if settings.steps >= frames else 0
  x_gen, x_langevin, trajectory = draw_samples(model, num_samples, seed, settings, record_every)
  result = dict(dataset=config.dataset, model=config.model, step=step, seed=seed,
                num_samples=num_samples, langevin=dataclasses.asdict(settings),
                real_data=metrics.evaluate_points(floor, real, held_out.mixture),
                generator=metrics.evaluate_points(x_gen, real, held_out.mixture))
  log_density = None
  if x_langevin is not None:
    result['generator_langevin'] = metrics.evaluate_points(x_langevin, real, held_out.mixture)
  if model.energy is not None:
    log_density, log_z = energy_density_grid(model)
    nll = float(np.mean(model.energy_of(tf.constant(real), training=False).numpy()) + log_z)
    result['energy'] = dict(log_z=log_z, held_out_nll=nll)

  os.makedirs(out_dir, exist_ok=True)
  files.write_json(os.path.join(out_dir, 'metrics.json'), result)
  title = f'{config.dataset}, {config.model}, step {step}'
  label = (f'G + {settings.steps} {"MALA" if settings.metropolis else "Langevin"} steps '
           f'(eta={settings.step_size:g}, sigma={settings.noise:g})')
  with files.atomic_path(os.path.join(out_dir, 'samples.png')) as path:
    plots.samples_2d(path, real, x_gen, x_langevin, log_density, title, label)
  if trajectory is not None:
    with files.atomic_path(os.path.join(out_dir, 'langevin_progression.png')) as path:
      plots.langevin_progression(path, trajectory, record_every, title)
  return result, x_gen, x_langevin
