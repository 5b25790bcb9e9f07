"""The settings of a run: one typed, nested, frozen `Config`.

One section per concern: data, networks, optimisation (`train`), the training
sampler, the sampler used after training, and the run itself. Each setting is
one `fields.setting` with its help text and checks; `cli.define_config_flags`
makes the absl flags from them, a workdir stores them as `config.json`, and the
flag names are the field names (the samplers' with their prefixes:
`--train_langevin_steps`, `--langevin_steps`).
"""

import dataclasses
from typing import Optional

from tfganebm import data
from tfganebm import distribute
from tfganebm import fields
from tfganebm.fields import ConfigError, setting  # pylint: disable=unused-import  (re-exported)
from tfganebm.sampler import SamplerConfig

MODELS = ('gan_ebm', 'gan')
# The keys of networks.GENERATORS, DISCRIMINATORS and ENERGIES (importing Keras here would
# import TensorFlow before flags are checked).
GENERATOR_NETWORKS = ('mlp', 'dcgan')
DISCRIMINATOR_NETWORKS = ('mlp', 'dcgan')
ENERGY_NETWORKS = ('mlp', 'conv')


def _value_range_problem(value):  # --value_range
  return (None if not value or (len(value) == 2 and value[0] < value[1])
          else 'must be two numbers: low,high (e.g. 0,1)')


@dataclasses.dataclass(frozen=True)
class DataConfig(fields.Section):
  dataset: str = setting('moons', 'Dataset: a built-in name (moons, swissroll, 8gaussians, '
                         '25gaussians, mnist, cifar10), or your own data: folder:PATH (images, '
                         'read recursively; class subfolders give labels, train/ and test/ the '
                         'splits), npy:PATH (.npy/.npz: points [N, D] or images [N, H, W(, C)]), '
                         'tfds:NAME[/CONFIG] (a TFDS image dataset).',
                         check=data.dataset_problem, fixed=True)
  data_dir: str = setting('', 'Images: a folder with MNIST IDX files (train-images-idx3-ubyte.gz '
                          '...), CIFAR-10 batches (cifar-10-batches-bin/) or TFDS data; empty: '
                          'the TFDS default folder.')
  download: bool = setting(True, 'Images: let TFDS download a dataset not found locally '
                           '(needs network).')
  num_examples: int = setting(0, 'Training examples: 2D points to draw, or the first N training '
                              'examples; 0: 15,000 points, or all of them.', low=0,
                              fixed=True)
  data_noise: Optional[float] = setting(None, 'Noise of a 2D dataset (default: its own, see '
                                        'data.py).', low=0.0, fixed=True)
  image_size: int = setting(0, "Your images: centre-crop to a square and resize to S x S "
                            "(0: the images' own size, when they all agree and are square).",
                            low=0, fixed=True)
  channels: int = setting(0, "Your images: 1 (grey) or 3 (RGB); 0: 1 when every image is grey, "
                          'else 3.', choices=(0, 1, 3), fixed=True)
  value_range: tuple[float, ...] = setting((), 'npy: the range low,high of float (or non-uint8) '
                                           'images, mapped to [-1, 1] (e.g. 0,1).',
                                           check=_value_range_problem, fixed=True)
  folder_labels: bool = setting(True, 'folder: one subfolder per class gives labels (off: the '
                                'subfolders only organise unlabelled images).', fixed=True)
  held_out_fraction: float = setting(0.1, 'Your data without a held-out split (no test/ folder, '
                                     'no x_test): the fraction held out for the metrics, drawn '
                                     'with a fixed seed.', above=0.0, below=1.0, fixed=True)
  train_split: str = setting('train', 'tfds: the split to train on.', fixed=True)
  held_out_split: str = setting('', 'tfds: the held-out split (empty: test, else validation, '
                                'else a --held_out_fraction of the training split).', fixed=True)
  example_shape: tuple[int, ...] = setting((), 'The shape of one example; set by training from '
                                           'the data and recorded in the workdir (leave it '
                                           'empty).', fixed=True)


@dataclasses.dataclass(frozen=True)
class NetworkConfig(fields.Section):
  model: str = setting('gan_ebm', 'gan_ebm: GAN + EBM (report, Alg. 3); gan: the plain GAN '
                       'baseline.', choices=MODELS, fixed=True)
  latent_dim: int = setting(20, 'Size of z ~ N(0, I).', low=1, fixed=True)
  generator_network: str = setting('auto', 'G: mlp (report) or dcgan (transposed convolutions, '
                                   'images); auto: mlp.', choices=('auto', *GENERATOR_NETWORKS),
                                   fixed=True)
  discriminator_network: str = setting('auto', 'D: mlp (report) or dcgan (strided convolutions, '
                                       'images); auto: mlp.',
                                       choices=('auto', *DISCRIMINATOR_NETWORKS), fixed=True)
  energy_network: str = setting('auto', 'E: mlp, or conv (report: 4 conv + 2 dense, images); '
                                'auto: conv for images, mlp for 2D.',
                                choices=('auto', *ENERGY_NETWORKS), fixed=True)
  generator_units: tuple[int, ...] = setting((32, 64), 'Hidden widths of G (dcgan: channels, '
                                             'one upsampling x2 each); empty: scaled to the '
                                             'data (README).', fixed=True, empty=True)
  discriminator_units: tuple[int, ...] = setting((32, 32, 16, 8), 'Hidden widths of D (dcgan: '
                                                 'channels, one stride-2 conv each); empty: '
                                                 'scaled to the data.', fixed=True, empty=True)
  energy_units: tuple[int, ...] = setting((64, 64, 64, 64, 64), 'Hidden widths of E (conv: '
                                          'channels, one stride-2 conv each, then Dense(64)); '
                                          'empty: scaled to the data.', fixed=True, empty=True)
  generator_batch_norm: bool = setting(True, 'BatchNorm in G (report; mlp: every hidden layer '
                                       'but the first).', fixed=True)
  discriminator_batch_norm: bool = setting(True, 'BatchNorm in D (report; every hidden layer '
                                           'but the first).', fixed=True)
  discriminator_pack: int = setting(1, 'PacGAN: D judges this many samples at once (1: one, '
                                    'the report); the per-replica batch must be a multiple.',
                                    low=1, fixed=True)
  energy_spectral_norm: bool = setting(False, 'Spectral normalisation on every layer of E.',
                                       fixed=True)
  energy_batch_norm: bool = setting(False, 'BatchNorm after the last two hidden layers of E '
                                    '(report); not exportable.', fixed=True)
  energy_fourier_features: int = setting(0, 'Random Fourier features at the input of E (0: off).',
                                         low=0, fixed=True)
  energy_fourier_scale: float = setting(4.0, 'Std of the Fourier feature frequencies (cycles per '
                                        'data unit).', low=0.0, fixed=True)
  conditional: bool = setting(False, "Class-conditional: G(z, y), D(x, y) (projection "
                              "discriminator) and E(x, y) on the data's labels; sample a class "
                              'with --label.', fixed=True)
  num_classes: int = setting(0, 'Classes of a conditional run; set by training from the labels '
                             'and recorded in the workdir (leave it 0).', low=0, fixed=True)


def _range_problem(value):  # --generator_range
  return None if len(value) == 2 and value[0] < value[1] else 'must be two numbers: low,high'


@dataclasses.dataclass(frozen=True)
class PretrainedConfig(fields.Section):
  """A generator the user already has (python -m tfganebm.refine): E is trained around it."""
  generator: str = setting('', "A trained generator z -> x to refine: a .keras file (opened in "
                           "Keras' safe mode) or a SavedModel directory; z ~ N(0, I), its size "
                           'read from the model. Empty: G is trained from scratch.', fixed=True)
  generator_range: tuple[float, ...] = setting((-1.0, 1.0), "The range of --generator's "
                                               'outputs, low,high (e.g. 0,1); rescaled to the '
                                               "data's [-1, 1].", check=_range_problem,
                                               fixed=True)
  finetune_generator: bool = setting(False, 'Also train D and G (Algorithm 3) from the given '
                                     "weights; default: G stays frozen and only E learns.",
                                     fixed=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig(fields.Section):
  """Optimisation, and the replay buffer the training chains start from (Algorithm 2)."""
  train_steps: int = setting(10000, 'Total training steps.', low=1)
  batch_size: int = setting(128, 'Global batch size.', low=1)
  gd_learning_rate: float = setting(2e-3, 'Adam lr of G and D.', above=0.0)
  gd_updates: int = setting(1, "G and D updates per training step (gan_ebm). The first takes the "
                            "step's fresh Langevin chains as D's real batch, the others draw it "
                            'from the replay buffer; no extra chains are run.', low=1)
  gan_target: str = setting('chains', "D's real batch: chains (the Langevin chains on E, "
                            'report Alg. 3: G learns what E samples) or data (G learns the data '
                            'as a plain GAN; E learns the correction of G, for latent chains).',
                            choices=('chains', 'data'))
  energy_learning_rate: float = setting(1e-3, 'Adam lr of E.', above=0.0)
  lr_decay: float = setting(0.0, 'The learning rates of G, D and E fall linearly towards 0 '
                            'over this last fraction of --train_steps, the last step at 1 / '
                            '(fraction x steps) of the rate (e.g. 0.5: constant for the first '
                            'half; 0: constant throughout). Set from the step, so a resume '
                            'continues it; one with another --train_steps moves it.',
                            low=0.0, high=1.0)
  energy_beta1: float = setting(0.9, 'Adam beta1 of E.', low=0.0, below=1.0,
                                why='Adam divides by 1 - beta1^t')
  alpha: float = setting(0.1, 'Weight of the energy regulariser.', low=0.0)
  real_noise: float = setting(0.0, 'Std of Gaussian noise added to real data in the energy '
                              'loss.', low=0.0)
  classify_weight: float = setting(0.0, "--conditional: weight of E's classification loss "
                                   '-log p(y|x) on the real batch, p(y|x) = softmax_y(-E(x, y)) '
                                   '(JEM, Grathwohl et al. 2020), so that E also classifies and '
                                   'E(x) = -logsumexp_y(-E(x, y)) samples without a class; 0: '
                                   'E(x, y) learns by contrastive divergence alone.', low=0.0)
  buffer_capacity: int = setting(10000, 'Replay buffer slots.', low=1, fixed=True)
  buffer_reuse_prob: float = setting(0.95, 'Probability that a chain starts from the buffer '
                                     'rather than G(z).', low=0.0, high=1.0)
  ema_decay: float = setting(0.0, "Keep an exponential moving average of G's and E's weights "
                            '(BatchNorm statistics too) with this decay, e.g. 0.999 (0: none); '
                            'evaluation, sampling and export then use it. It warms up as '
                            'min(decay, (1 + t) / (10 + t)) at step t.', low=0.0, below=1.0,
                            fixed=True)

  RELATIONS = ((('buffer_capacity', 'batch_size'), lambda capacity, batch: capacity >= batch,
                '{0} must be at least {1}'),)


@dataclasses.dataclass(frozen=True)
class RunConfig(fields.Section):
  """Where and how the run executes; none of it changes what is learned, except `seed`."""
  workdir: str = setting('', 'Run directory: checkpoints, TensorBoard events, flags.txt, '
                         'config.json, metrics.json, figures. Re-running with it resumes.')
  seed: int = setting(0, 'Seed of every random draw.', fixed=True)
  checkpoint_every: int = setting(1000, 'Steps between checkpoints.', low=1)
  average_checkpoints: int = setting(1, "Evaluation, sampling and export use the mean of G's and "
                                     "E's weights over the last N checkpoints (Polyak averaging; "
                                     '1: the latest only; with --ema_decay, the mean of '
                                     'the moving averages). Training keeps max(3, N) '
                                     'checkpoints.', low=1)
  log_every: int = setting(100, 'Steps between TensorBoard scalars.', low=1)
  grace_period: float = setting(30.0, 'Seconds a stop signal (SIGTERM from a scheduler, '
                                'Ctrl-C) leaves training to save a checkpoint of the step it '
                                'reached; it then exits with 128 + the signal number. Under '
                                'multi_worker the tasks stop at the end of a --log_every '
                                'period: keep one period shorter than this.', above=0.0)
  image_every: int = setting(1000, 'Steps between TensorBoard images (G and G + chain; 2D: '
                             'their scatter over the energy map); 0: none.', low=0)
  eval_num_samples: int = setting(2000, 'Samples drawn for metrics.json and figures at the end.',
                                  low=1)
  classifier_dir: str = setting('', 'Images: cache of the classifiers behind the image metrics '
                                '(empty: $TFGANEBM_CACHE or ~/.cache/tfganebm).')
  jit_compile: bool = setting(True, 'XLA-compile the train step (single-replica strategies '
                              'only).')
  strategy: str = setting('default', 'tf.distribute strategy; --batch_size is the global batch.',
                          choices=distribute.STRATEGIES)
  tpu: str = setting('', 'TPU address or name for --strategy=tpu.')
  cpu_replicas: int = setting(1, 'With --strategy=mirrored and no GPU: logical CPU replicas.',
                              low=1)
  chain_groups: int = setting(0, "Training's Langevin chains run their batch as this many "
                              'groups side by side, one CPU core each (TF then runs each op on '
                              'one thread), each group a chain with its own noise stream (the '
                              'same distribution, another draw: set it to repeat a run on '
                              'another number of cores). 0: '
                              'the number of cores for a run on CPU without XLA '
                              '(--nojit_compile) and the default strategy, else 1.', low=0)
  deterministic: bool = setting(False, 'tf.config.experimental.enable_op_determinism(): '
                                'bit-identical reruns (the step then runs without XLA).')
  mixed_precision: bool = setting(False, 'mixed_bfloat16 for G and D (GPU/TPU); E and Langevin '
                                  'stay float32.')


def _section(factory, prefix='', when=''):
  return dataclasses.field(default_factory=factory, metadata=dict(prefix=prefix, when=when))


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on, one section per concern."""
  data: DataConfig = _section(DataConfig)
  networks: NetworkConfig = _section(NetworkConfig)
  pretrained: PretrainedConfig = _section(PretrainedConfig)
  train: TrainConfig = _section(TrainConfig)
  train_sampler: SamplerConfig = _section(SamplerConfig, 'train_langevin_', 'in training')
  sampler: SamplerConfig = _section(lambda: SamplerConfig(steps=1500), 'langevin_',
                                    'after training (sample, evaluation, export)')
  run: RunConfig = _section(RunConfig)

  # Checks across sections, by flag name.
  RELATIONS = (
      (('batch_size', 'cpu_replicas', 'strategy'),
       lambda batch, replicas, strategy: strategy != 'mirrored' or batch % replicas == 0,
       '{0} must be a multiple of {1} (the global batch is split evenly)'),
      (('gd_updates', 'model'), lambda updates, model: updates == 1 or model == 'gan_ebm',
       "{0} > 1 needs {1}=gan_ebm (the extra updates take D's real batch from the replay "
       'buffer); for the plain GAN, raise --train_steps instead'),
      (('batch_size', 'discriminator_pack', 'cpu_replicas', 'strategy'),
       lambda batch, pack, replicas, strategy:
       batch % (pack * (replicas if strategy == 'mirrored' else 1)) == 0,
       '{0} must be a multiple of {1} (times {2} with {3}=mirrored): D judges packs of {1}'),
      (('gd_updates', 'gan_target'), lambda updates, target: updates == 1 or target == 'chains',
       "{0} > 1 takes D's extra real batches from the replay buffer: it needs {1}=chains"),
      (('num_examples', 'batch_size'), lambda examples, batch: examples == 0 or examples >= batch,
       '{0} must be 0 (all) or at least {1}'),
      (('train_langevin_space', 'buffer_reuse_prob'),
       lambda space, reuse: space == 'data' or reuse == 0,
       '{0}=latent starts every chain from the prior in z: it needs {1}=0 (the replay buffer '
       'holds data-space states)'),
      (('generator', 'model'), lambda generator, model: not generator or model == 'gan_ebm',
       '{0} refines a generator with an energy: it needs {1}=gan_ebm'),
      (('classify_weight', 'conditional', 'model'), lambda weight, conditional, model:
       weight == 0 or (conditional and model == 'gan_ebm'), '{0} > 0 trains E as a classifier '
       'of the labels too: it needs {1} and {2}=gan_ebm'),
      (('conditional', 'discriminator_pack'), lambda conditional, pack: not conditional
       or pack == 1, '{0} gives D one label per sample: it needs {1}=1'),
      (('train_langevin_target_accept', 'langevin_target_accept'), lambda train, _: train == 0,
       "{0} must be 0: the training chains' step size is set, not tuned; {1} tunes the "
       'sampler used after training'),
  )

  def __post_init__(self):
    flat = self.flat()
    for names, predicate, template in self.RELATIONS:
      if not predicate(*(flat[name] for name in names)):
        raise ConfigError(template, names)

  @property
  def use_energy(self):
    return self.networks.model == 'gan_ebm'

  @property
  def train_generator(self):
    """Whether G (and D) learn: always, unless G is a user's frozen generator."""
    return not self.pretrained.generator or self.pretrained.finetune_generator

  def network_names(self):
    """(G, D, E) architecture names, 'auto' resolved: MLPs for 2D data; for images the
    report's layout, MLP G and D with the conv E."""
    pick = lambda name, auto: auto if name == 'auto' else name
    net = self.networks
    return (pick(net.generator_network, 'mlp'), pick(net.discriminator_network, 'mlp'),
            pick(net.energy_network, 'conv' if data.is_image(self.data) else 'mlp'))

  def flat(self):
    """{flag name: value} of every setting."""
    return {name: getattr(getattr(self, section), field.name)
            for name, section, field in flag_fields()}

  @classmethod
  def from_flat(cls, values, base=None):
    """The config of `base` (default: the defaults) with settings changed by flag name.

    Raises:
      ConfigError: an unknown name, a value of the wrong type, or one a check refuses.
    """
    base = base or cls()
    where = {name: (section, field.name) for name, section, field in flag_fields()}
    unknown = sorted(set(values) - set(where))
    if unknown:
      raise ConfigError('unknown setting(s) ' + ', '.join(f'--{n}' for n in unknown))
    changes = {}
    for name, value in values.items():
      section, field = where[name]
      changes.setdefault(section, {})[field] = value
    return dataclasses.replace(base, **{
        section: _replace_section(getattr(base, section), section, new)
        for section, new in changes.items()})

  def override(self, **values):
    """This config with the settings named by flag (`langevin_steps=100`) changed."""
    return Config.from_flat(values, self)

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, value):
    """The inverse of `to_dict`; settings it lacks (an older file) take their defaults.

    Raises:
      ConfigError: an unknown section or setting, or a value of the wrong type.
    """
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
      raise ConfigError('a config must be a JSON object of sections, each an object')
    unknown = sorted(set(value) - set(_SECTIONS))
    if unknown:
      raise ConfigError(f'unknown section(s) {", ".join(unknown)}')
    return cls.from_flat({_SECTIONS[name].metadata['prefix'] + key: item
                          for name, settings in value.items() for key, item in settings.items()})

  def to_flagfile(self):
    """The flags that reproduce this config, one `--name=value` per line."""
    text = lambda value: ','.join(map(str, value)) if isinstance(value, tuple) else value
    return ''.join(f'--{name}={text(value)}\n' for name, value in self.flat().items()
                   if value is not None)


def _replace_section(section, name, changes):
  prefix = _SECTIONS[name].metadata['prefix']
  try:
    return dataclasses.replace(section, **changes)
  except ConfigError as e:
    raise e.prefixed(prefix) from None


_SECTIONS = {f.name: f for f in dataclasses.fields(Config)}


def flag_fields():
  """(flag name, section name, field) of every setting, in declaration order."""
  for section in dataclasses.fields(Config):
    for field in dataclasses.fields(section.type):
      yield section.metadata['prefix'] + field.name, section.name, field


def section_of(name):
  """The field of Config's section `name` (metadata: its flag `prefix` and `when`)."""
  return _SECTIONS[name]


def fixed_by_checkpoint():
  """Flag names of the settings a checkpoint fixes (see `fields.setting(fixed=...)`)."""
  return tuple(name for name, _, field in flag_fields() if field.metadata['fixed'])


def relations():
  """Every check across settings, by flag name: (names, predicate(*values), template)."""
  found = list(Config.RELATIONS)
  for section in dataclasses.fields(Config):
    prefix = section.metadata['prefix']
    found += [(tuple(prefix + name for name in names), predicate, template)
              for names, predicate, template in section.type.RELATIONS]
  return found
