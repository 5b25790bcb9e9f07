"""Training flags and the frozen `Config` they become.

Flags are defined here, validated at start-up, and turned into one frozen
dataclass; nothing past `train.py` reads FLAGS. A run's `flags.txt` is itself a
valid flagfile, and `Config.from_flagfile` reads it back for sampling/export.
"""

import dataclasses
from typing import Optional

from absl import flags

from tfganebm import cli
from tfganebm import data
from tfganebm import distribute

MODELS = ('gan_ebm', 'gan')
# The keys of networks.GENERATORS, DISCRIMINATORS and ENERGIES (importing Keras here would
# import TensorFlow before flags are checked).
GENERATOR_NETWORKS = ('mlp', 'dcgan')
DISCRIMINATOR_NETWORKS = ('mlp', 'dcgan')
ENERGY_NETWORKS = ('mlp', 'conv')


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on. Field names equal the flag names."""
  workdir: str = ''
  dataset: str = 'moons'
  data_dir: str = ''
  download: bool = True
  num_examples: int = 0
  data_noise: Optional[float] = None
  model: str = 'gan_ebm'
  seed: int = 0
  train_steps: int = 10000
  batch_size: int = 128
  latent_dim: int = 20
  generator_network: str = 'auto'
  discriminator_network: str = 'auto'
  energy_network: str = 'auto'
  generator_units: tuple = (32, 64)
  discriminator_units: tuple = (32, 32, 16, 8)
  energy_units: tuple = (64, 64, 64, 64, 64)
  energy_spectral_norm: bool = False
  energy_batch_norm: bool = False
  energy_fourier_features: int = 0
  energy_fourier_scale: float = 4.0
  gd_learning_rate: float = 2e-3
  gd_updates: int = 1
  energy_learning_rate: float = 1e-3
  energy_beta1: float = 0.9
  alpha: float = 0.1
  real_noise: float = 0.0
  train_langevin_steps: int = 60
  train_langevin_step_size: float = 1e-3
  train_langevin_noise: float = 0.0447  # sqrt(2 * step size): unadjusted Langevin
  train_langevin_grad_clip: float = 0.0
  train_langevin_metropolis: bool = False
  langevin_steps: int = 1500
  langevin_step_size: float = 1e-3
  langevin_noise: float = 0.0447
  langevin_grad_clip: float = 0.0
  langevin_metropolis: bool = False
  buffer_capacity: int = 10000
  buffer_reuse_prob: float = 0.95
  checkpoint_every: int = 1000
  average_checkpoints: int = 1
  log_every: int = 100
  eval_num_samples: int = 2000
  classifier_dir: str = ''
  jit_compile: bool = True
  strategy: str = 'default'
  tpu: str = ''
  cpu_replicas: int = 1
  deterministic: bool = False
  mixed_precision: bool = False

  @property
  def use_energy(self):
    return self.model == 'gan_ebm'

  def networks(self):
    """(G, D, E) architecture names, 'auto' resolved: MLPs for 2D data; for images the
    report's layout, MLP G and D with the conv E."""
    image = data.is_image(self.dataset)
    pick = lambda name, auto: auto if name == 'auto' else name
    return (pick(self.generator_network, 'mlp'), pick(self.discriminator_network, 'mlp'),
            pick(self.energy_network, 'conv' if image else 'mlp'))

  @classmethod
  def from_flags(cls, flag_values):
    values = {}
    for field in dataclasses.fields(cls):
      value = flag_values[field.name].value
      if isinstance(value, list):
        value = tuple(int(v) for v in value)
      values[field.name] = value
    return cls(**values)

  def to_flagfile(self):
    """The flags that reproduce this config, one `--name=value` per line."""
    lines = []
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if value is None:
        continue
      if isinstance(value, tuple):
        value = ','.join(str(v) for v in value)
      lines.append(f'--{field.name}={value}')
    return '\n'.join(lines) + '\n'

  @classmethod
  def from_flagfile(cls, path):
    """Reads a `flags.txt` written by `to_flagfile`.

    Raises:
      ValueError: naming the file and the line it cannot read.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    values = {}
    with open(path) as f:
      for line_number, line in enumerate(f, 1):
        line = line.strip()
        if not line or line.startswith('#'):
          continue
        name, sep, text = line.lstrip('-').partition('=')
        if not sep or name not in fields:
          raise ValueError(f'{path}:{line_number}: cannot read {line!r}; '
                           'it is not a flags.txt written by tfganebm.train')
        default = getattr(defaults, name)
        if isinstance(default, bool):
          value = text.lower() in ('1', 'true')
        elif isinstance(default, tuple):
          value = tuple(int(v) for v in text.split(','))
        elif default is None or isinstance(default, float):
          value = float(text)
        elif isinstance(default, int):
          value = int(text)
        else:
          value = text
        values[name] = value
    return cls(**values)


# Fields whose change alters variable shapes or the meaning of a checkpoint.
ARCHITECTURE_FIELDS = ('dataset', 'model', 'latent_dim', 'generator_network',
                       'discriminator_network', 'energy_network', 'generator_units',
                       'discriminator_units', 'energy_units', 'energy_spectral_norm',
                       'energy_batch_norm', 'energy_fourier_features', 'energy_fourier_scale',
                       'buffer_capacity')


def define_flags():
  """Defines the training flags (defaults from `Config`) and their validators."""
  d = Config()
  flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, TensorBoard events, '
                      'flags.txt, metrics.json, figures. Re-running with it resumes.')
  flags.DEFINE_enum('dataset', d.dataset, data.names(),
                    'Dataset: a 2D toy (built in memory) or images (MNIST, CIFAR-10).')
  flags.DEFINE_string('data_dir', d.data_dir,
                      'Images: a folder with MNIST IDX files (train-images-idx3-ubyte.gz ...), '
                      'CIFAR-10 python batches (cifar-10-batches-py/) or TFDS data; '
                      'empty: the TFDS default folder.')
  flags.DEFINE_boolean('download', d.download,
                       'Images: let TFDS download a dataset not found locally (needs network).')
  flags.DEFINE_integer('num_examples', d.num_examples,
                       'Training examples: 2D points to draw, or the first N training images; '
                       '0: 15,000 points, or every training image.', lower_bound=0)
  flags.DEFINE_float('data_noise', None, 'Noise of a 2D dataset (default: its own, see data.py).',
                     lower_bound=0.0)
  flags.DEFINE_enum('model', d.model, list(MODELS),
                    'gan_ebm: GAN + EBM (report, Alg. 3); gan: the plain GAN baseline.')
  flags.DEFINE_integer('seed', d.seed, 'Seed of every random draw.')
  flags.DEFINE_integer('train_steps', d.train_steps, 'Total training steps.', lower_bound=1)
  flags.DEFINE_integer('batch_size', d.batch_size, 'Global batch size.', lower_bound=1)
  flags.DEFINE_integer('latent_dim', d.latent_dim, 'Size of z ~ N(0, I).', lower_bound=1)
  flags.DEFINE_enum('generator_network', d.generator_network, ['auto', *GENERATOR_NETWORKS],
                    'G: mlp (report) or dcgan (transposed convolutions, images); auto: mlp.')
  flags.DEFINE_enum('discriminator_network', d.discriminator_network,
                    ['auto', *DISCRIMINATOR_NETWORKS],
                    'D: mlp (report) or dcgan (strided convolutions, images); auto: mlp.')
  flags.DEFINE_enum('energy_network', d.energy_network, ['auto', *ENERGY_NETWORKS],
                    'E: mlp, or conv (report: 4 conv + 2 dense, images); '
                    'auto: conv for images, mlp for 2D.')
  flags.DEFINE_list('generator_units', list(map(str, d.generator_units)),
                    'Hidden widths of G (dcgan: channels, one upsampling x2 each).')
  flags.DEFINE_list('discriminator_units', list(map(str, d.discriminator_units)),
                    'Hidden widths of D (dcgan: channels, one stride-2 conv each).')
  flags.DEFINE_list('energy_units', list(map(str, d.energy_units)),
                    'Hidden widths of E (conv: channels, one stride-2 conv each, then Dense(64)).')
  flags.DEFINE_boolean('energy_spectral_norm', d.energy_spectral_norm,
                       'Spectral normalisation on every layer of E.')
  flags.DEFINE_boolean('energy_batch_norm', d.energy_batch_norm,
                       'BatchNorm after the last two hidden layers of E (report); not exportable.')
  flags.DEFINE_integer('energy_fourier_features', d.energy_fourier_features,
                       'Random Fourier features at the input of E (0: off).', lower_bound=0)
  flags.DEFINE_float('energy_fourier_scale', d.energy_fourier_scale,
                     'Std of the Fourier feature frequencies (cycles per data unit).',
                     lower_bound=0.0)
  flags.DEFINE_float('gd_learning_rate', d.gd_learning_rate, 'Adam lr of G and D (> 0).')
  flags.DEFINE_integer('gd_updates', d.gd_updates,
                       'G and D updates per training step (gan_ebm). The first takes the '
                       "step's fresh Langevin chains as D's real batch, the others draw it "
                       'from the replay buffer; no extra chains are run.', lower_bound=1)
  flags.DEFINE_float('energy_learning_rate', d.energy_learning_rate, 'Adam lr of E (> 0).')
  flags.DEFINE_float('energy_beta1', d.energy_beta1, 'Adam beta1 of E, in [0, 1).',
                     lower_bound=0.0)
  flags.DEFINE_float('alpha', d.alpha, 'Weight of the energy regulariser.', lower_bound=0.0)
  flags.DEFINE_float('real_noise', d.real_noise, 'Std of Gaussian noise added to real data '
                     'in the energy loss.', lower_bound=0.0)
  for prefix, when in (('train_', 'training'), ('', 'sampling after training')):
    flags.DEFINE_integer(f'{prefix}langevin_steps', getattr(d, f'{prefix}langevin_steps'),
                         f'Langevin steps K in {when}.', lower_bound=0)
    flags.DEFINE_float(f'{prefix}langevin_step_size', getattr(d, f'{prefix}langevin_step_size'),
                       f'Langevin step size eta in {when}.', lower_bound=0.0)
    flags.DEFINE_float(f'{prefix}langevin_noise', getattr(d, f'{prefix}langevin_noise'),
                       f'Langevin noise std sigma in {when}.', lower_bound=0.0)
    flags.DEFINE_float(f'{prefix}langevin_grad_clip', getattr(d, f'{prefix}langevin_grad_clip'),
                       f'Per-sample L2 clip of grad E in {when} (0: off).', lower_bound=0.0)
    flags.DEFINE_boolean(f'{prefix}langevin_metropolis', getattr(d, f'{prefix}langevin_metropolis'),
                         f'Metropolis-adjusted Langevin (MALA) steps in {when}.')
  flags.DEFINE_integer('buffer_capacity', d.buffer_capacity, 'Replay buffer slots.',
                       lower_bound=1)
  flags.DEFINE_float('buffer_reuse_prob', d.buffer_reuse_prob,
                     'Probability that a chain starts from the buffer rather than G(z).',
                     lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_integer('checkpoint_every', d.checkpoint_every, 'Steps between checkpoints.',
                       lower_bound=1)
  flags.DEFINE_integer('average_checkpoints', d.average_checkpoints,
                       "Evaluation, sampling and export use the mean of G's and E's weights over "
                       'the last N checkpoints (Polyak averaging; 1: the latest only). Training '
                       'keeps max(3, N) checkpoints.', lower_bound=1)
  flags.DEFINE_integer('log_every', d.log_every, 'Steps between TensorBoard scalars.',
                       lower_bound=1)
  flags.DEFINE_integer('eval_num_samples', d.eval_num_samples,
                       'Samples drawn for metrics.json and figures at the end.', lower_bound=1)
  flags.DEFINE_string('classifier_dir', d.classifier_dir,
                      'Images: cache of the classifiers behind the image metrics '
                      '(empty: $TFGANEBM_CACHE or ~/.cache/tfganebm).')
  flags.DEFINE_boolean('jit_compile', d.jit_compile,
                       'XLA-compile the train step (single-replica strategies only).')
  flags.DEFINE_enum('strategy', d.strategy, list(distribute.STRATEGIES),
                    'tf.distribute strategy; --batch_size is the global batch.')
  flags.DEFINE_string('tpu', d.tpu, 'TPU address or name for --strategy=tpu.')
  flags.DEFINE_integer('cpu_replicas', d.cpu_replicas,
                       'With --strategy=mirrored and no GPU: logical CPU replicas.', lower_bound=1)
  flags.DEFINE_boolean('deterministic', d.deterministic,
                       'tf.config.experimental.enable_op_determinism(): bit-identical reruns '
                       '(Keras then runs the step without XLA).')
  flags.DEFINE_boolean('mixed_precision', d.mixed_precision,
                       'mixed_bfloat16 for G and D (GPU/TPU); E and Langevin stay float32.')

  # First, so that NaN or inf is called what it is rather than failing a check below.
  cli.refuse_non_finite([f.name for f in dataclasses.fields(Config)
                         if f.type in (float, Optional[float])])
  for name in ('gd_learning_rate', 'energy_learning_rate'):
    flags.register_validator(name, lambda value: value > 0, f'--{name} must be > 0')
  # Adam's bias correction divides by 1 - beta1^t, which beta1 = 1 makes 0.
  flags.register_validator('energy_beta1', lambda value: value < 1,
                           '--energy_beta1 must be in [0, 1) (Adam divides by 1 - beta1^t)')

  def positive_widths(values):
    try:
      return bool(values) and all(int(v) > 0 for v in values)
    except ValueError:
      return False

  for name in ('generator_units', 'discriminator_units', 'energy_units'):
    flags.register_validator(name, positive_widths,
                             f'--{name} must be a comma-separated list of positive integers')
  for prefix in ('train_', ''):
    names = [f'{prefix}langevin_{n}' for n in ('metropolis', 'step_size', 'noise')]
    flags.register_multi_flags_validator(
        names, lambda v, names=names: not v[names[0]] or (v[names[1]] > 0 and v[names[2]] > 0),
        f'--{names[0]} needs --{names[1]} > 0 and --{names[2]} > 0')
  flags.mark_flag_as_required('workdir')
  flags.register_multi_flags_validator(
      ['batch_size', 'buffer_capacity'],
      lambda v: v['buffer_capacity'] >= v['batch_size'],
      '--buffer_capacity must be at least --batch_size')
  flags.register_multi_flags_validator(
      ['batch_size', 'cpu_replicas', 'strategy'],
      lambda v: v['batch_size'] % v['cpu_replicas'] == 0 or v['strategy'] != 'mirrored',
      '--batch_size must be a multiple of --cpu_replicas (the global batch is split evenly)')
  flags.register_multi_flags_validator(
      ['gd_updates', 'model'], lambda v: v['gd_updates'] == 1 or v['model'] == 'gan_ebm',
      '--gd_updates > 1 needs --model=gan_ebm (the extra updates take D\'s real batch from '
      'the replay buffer); for the plain GAN, raise --train_steps instead')
  flags.register_multi_flags_validator(
      ['batch_size', 'num_examples'],
      lambda v: v['num_examples'] == 0 or v['num_examples'] >= v['batch_size'],
      '--num_examples must be 0 (all) or at least --batch_size')
