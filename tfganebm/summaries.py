"""TensorBoard pictures of a run in training: G's samples and G + the run's sampler."""

import io

import tensorflow as tf

from tfganebm import conditioning
from tfganebm import data
from tfganebm import evaluators
from tfganebm import plots
from tfganebm import sampler as sampler_lib

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
    labels = None  # a conditional run's: the classes in turn
    if getattr(model, 'num_classes', 0):
      labels = tf.constant(conditioning.balanced(num, model.num_classes))
    energy_fn, generator_fn = model.bound(labels)

    @tf.function(jit_compile=jit_compile, autograph=False)
    def refine(z):
      return sampler_lib.refine(energy_fn, generator_fn, z, self.rng, sampler)

    self.generate = tf.function(generator_fn, autograph=False)
    self.refine = refine if model.energy is not None and sampler.steps else None
    self.real = None
    if self.kind == 'points':  # the run's own held-out points (the same scaling)
      self.real = evaluators.load_data(config, num_held_out=num).held_out[:num][..., :2]

  def write(self, step):
    """Writes the pictures at `step` into the default summary writer."""
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
      log_density, _ = evaluators.energy_density_grid(self.model, resolution=100)
    buffer = io.BytesIO()
    plots.samples_2d(buffer, self.real, x_gen, x_chain, log_density, f'step {step}', label)
    picture = tf.image.decode_png(buffer.getvalue(), channels=3)
    tf.summary.image('samples', picture[None], step=step)
