"""`GanEbm`: G, D and E trained jointly by a custom `train_step` (report, Algorithm 3).

With `energy=None` the same class is the plain GAN baseline: D sees real data as
real, and nothing else changes, so the two are compared on identical code.
"""

import keras
import tensorflow as tf

from tfganebm import chain_energy
from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import losses
from tfganebm import networks
from tfganebm import replay
from tfganebm import sampler as sampler_lib
from tfganebm import seeding


class WeightAverage(tf.Module):
  """The exponential moving average of a network's weights, BatchNorm's statistics too
  (`--ema_decay`). After training step t it moves towards the network by
  1 - min(decay, (1 + t) / (10 + t)), so a short run's average does not stay near the
  initial weights. Checkpointed with the run; sampling, evaluation and export read it."""

  def __init__(self, network, decay, name):
    super().__init__(name=name)
    self.decay = float(decay)
    # The first replica's: trained weights are the same on every replica (BatchNorm's
    # statistics are each replica's own; the checkpoint keeps the first's too).
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    self.averages = [tf.Variable(weight.numpy().astype('float32'), trainable=False,
                                 aggregation=first, name=f'average_{i}')
                     for i, weight in enumerate(network.weights)]

  def update(self, network, step):
    t = tf.cast(step, tf.float32)
    decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
    for average, weight in zip(self.averages, network.weights):
      average.assign_sub((1.0 - decay) * (average - tf.cast(weight, tf.float32)))

  def copy_to(self, network):
    """Gives `network` the averaged weights."""
    weights = network.weights
    if len(weights) != len(self.averages):
      raise ValueError(f'{len(self.averages)} averaged weights for a network with '
                       f'{len(weights)}')
    for weight, average in zip(weights, self.averages):
      weight.assign(tf.cast(average, weight.dtype))


class GanEbm(keras.Model):
  """G proposes, Langevin on E refines, D tells refined (real) from proposed (fake).

  Use `compile(g_optimizer, d_optimizer, e_optimizer)` then `fit(batches)`.
  """

  def __init__(self, generator, discriminator, energy, replay_buffer, *, latent_dim, seed,
               alpha=0.1, real_noise=0.0, gd_updates=1, sampler=None, train_generator=True,
               gan_target='chains', chain_groups=1, ema_decay=0.0, lr_decay=None, **kwargs):
    """`sampler`: the training chains' `SamplerConfig` (default: its defaults);
    `train_generator=False` keeps G (a user's pretrained one) and D as they are: only E
    learns, from chains that start at G's samples and the replay buffer. `gan_target`:
    D's real batch, the chains (report) or the data (G a plain GAN, E its correction).
    `chain_groups`: the data-space training chains' batch runs as this many concurrent
    groups (`chain_energy.ChainEnergy`). `ema_decay` > 0: keep a `WeightAverage` of each
    network that learns, G and E (`averages`, checkpointed as `generator_average` and
    `energy_average`). `lr_decay`: (start, end) steps: from step start the optimizers'
    learning rates fall linearly from their compiled values towards 0 at step end (the
    last step, end - 1, at 1 / (end - start) of them)."""
    super().__init__(**kwargs)
    self.generator = generator
    self.discriminator = discriminator
    self.energy = energy
    # E and grad_x E for the data-space chains: faster, the same values.
    self.chain_energy = (chain_energy.ChainEnergy(energy, chain_groups)
                         if energy is not None else None)
    self.replay_buffer = replay_buffer
    self.latent_dim = latent_dim
    self.alpha = alpha
    if gd_updates < 1 or (gd_updates > 1 and energy is None):
      raise ValueError(f'gd_updates must be 1, or more with an energy (its replay buffer '
                       f'gives D its real batch), got {gd_updates}')
    self.gd_updates = int(gd_updates)
    self.real_noise = real_noise
    self.sampler = sampler or sampler_lib.SamplerConfig()
    if not train_generator and energy is None:
      raise ValueError('a frozen generator needs an energy to train')
    self.train_generator = train_generator
    if gan_target not in ('chains', 'data'):
      raise ValueError(f"gan_target must be 'chains' or 'data', got {gan_target!r}")
    self.gan_target = gan_target
    # One seeded stream for every draw in training; it is checkpointed.
    self.rng = tf.random.Generator.from_seed(seed, alg='philox')
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    # Steps of the checkpoints whose mean weights G and E hold (runs.average_weights).
    self.averaged_steps = None
    self.averages = {}
    if lr_decay is not None and not 0 <= lr_decay[0] < lr_decay[1]:
      raise ValueError(f'lr_decay must be (start, end) steps with 0 <= start < end, got {lr_decay}')
    self.lr_decay = lr_decay
    if ema_decay > 0:
      for name, network in (('generator', generator if train_generator else None),
                            ('energy', energy)):
        if network is not None:
          self.averages[name] = WeightAverage(network, ema_decay, f'{name}_average')
    names = ['d_loss', 'g_loss'] if train_generator else []
    if energy is not None:
      names += ['e_loss', 'energy_real', 'energy_ebm', 'buffer_reuse']
    self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
    self.built = True  # the networks are built from their Inputs; fit() must not call us on data

  @property
  def metrics(self):
    return list(self.trackers.values())

  def compile(self, g_optimizer, d_optimizer, e_optimizer=None, **kwargs):
    super().compile(**kwargs)
    self.g_optimizer, self.d_optimizer, self.e_optimizer = g_optimizer, d_optimizer, e_optimizer
    # The rates the decay scales: the compiled ones (a resume compiles the flags' rates).
    self._base_rates = [(optimizer, float(optimizer.learning_rate.numpy()))
                        for optimizer in (g_optimizer, d_optimizer, e_optimizer)
                        if optimizer is not None]
    # Build optimizer slots now so a checkpoint can be restored before the first step.
    g_optimizer.build(self.generator.trainable_variables)
    d_optimizer.build(self.discriminator.trainable_variables)
    if self.energy is not None:
      e_optimizer.build(self.energy.trainable_variables)

  @property
  def data_shape(self):
    """The shape of one example, e.g. (2,) or (28, 28, 1)."""
    return tuple(self.generator.compute_output_shape((None, self.latent_dim))[1:])

  def call(self, z, training=False):
    return self.generator(z, training=training)

  def energy_of(self, x, training=False):
    """E(x): x [B, *data_shape] -> [B]."""
    return tf.reshape(self.energy(x, training=training), [-1])

  def _apply(self, optimizer, network, tape, loss):
    variables = network.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

  @staticmethod
  def _per_replica(loss):
    """Scales a per-replica mean loss so that summing gradients over replicas (what the
    optimizers do under a strategy) gives the gradient of the global-batch mean: the
    replica's mean as one example of a global batch of one per replica."""
    return tf.nn.compute_average_loss(tf.reshape(loss, [1]))

  def _update_gd(self, x_d_real, x_gen, batch):
    """One D step (x_d_real real, x_gen fake), then one G step on fresh z."""
    with tf.GradientTape() as tape:
      d_loss = losses.discriminator_loss(
          self.discriminator(x_d_real, training=True),
          self.discriminator(tf.stop_gradient(x_gen), training=True))
      scaled = self._per_replica(d_loss)
    self._apply(self.d_optimizer, self.discriminator, tape, scaled)

    z_hat = self.rng.normal([batch, self.latent_dim])
    with tf.GradientTape() as tape:
      g_loss = losses.generator_loss(
          self.discriminator(self.generator(z_hat, training=True), training=True))
      scaled = self._per_replica(g_loss)
    self._apply(self.g_optimizer, self.generator, tape, scaled)
    self.trackers['d_loss'].update_state(d_loss)
    self.trackers['g_loss'].update_state(g_loss)

  def _generate(self, batch):
    # Under mixed precision G computes in bfloat16; chains, buffer and E stay float32.
    # A frozen G runs in inference mode: its BatchNorm statistics stay the user's.
    return tf.cast(self.generator(self.rng.normal([batch, self.latent_dim]),
                                  training=self.train_generator), tf.float32)

  def inference_generator(self, z):
    """G in inference mode (BatchNorm's moving statistics), float32 out: the G that chains
    in latent space and every sampler after training map z through."""
    return tf.cast(self.generator(z, training=False), tf.float32)

  def reset_learning_rates(self):
    """The compiled rates back in the optimizers (a checkpoint restores the rates it was
    saved with; a resume runs at the flags' rates, decayed from the step if --lr_decay)."""
    self._scale_learning_rates(1.0)

  def _scale_learning_rates(self, scale):
    for optimizer, rate in self._base_rates:
      optimizer.learning_rate.assign(rate * scale)

  def _decay_learning_rates(self):
    """Step t's rates: base * min(1, (end - t) / (end - start)); the last step's is
    base / (end - start), never 0."""
    start, end = self.lr_decay
    self._scale_learning_rates(tf.clip_by_value(
        tf.cast(end - self.step, tf.float32) / float(end - start), 0.0, 1.0))

  def train_step(self, x_real):
    if self.lr_decay is not None:
      self._decay_learning_rates()
    batch = tf.shape(x_real)[0]
    x_gen = self._generate(batch)
    if self.energy is not None:
      if self.sampler.space == 'latent':
        # Chains in z from the prior (Algorithm 2 without the buffer), x = G(z).
        x_ebm = tf.stop_gradient(sampler_lib.refine(
            self.energy_of, self.inference_generator, self.rng.normal([batch, self.latent_dim]),
            self.rng, self.sampler))
        reused = tf.zeros([batch], tf.bool)
      else:
        x_init, reused = self.replay_buffer.initial_chains(tf.stop_gradient(x_gen), self.rng)
        x_ebm = tf.stop_gradient(sampler_lib.run(self.chain_energy, x_init, self.rng,
                                                   self.sampler))
      self.replay_buffer.push_(x_ebm)
      x_d_real = x_ebm if self.gan_target == 'chains' else x_real
    else:
      x_d_real = x_real

    if self.train_generator:
      self._update_gd(x_d_real, x_gen, batch)
      for _ in range(self.gd_updates - 1):  # unrolled: a fixed count, no cond in the graph
        self._update_gd(self.replay_buffer.sample(batch, self.rng), self._generate(batch), batch)

    if self.energy is not None:
      x_pos = x_real
      if self.real_noise > 0:
        x_pos = tf.clip_by_value(x_pos + self.real_noise * self.rng.normal(tf.shape(x_pos)),
                                 -1.0, 1.0)
      with tf.GradientTape() as tape:
        energies = self.energy_of(tf.concat([x_pos, x_ebm], 0), training=True)
        energy_real, energy_ebm = energies[:batch], energies[batch:]
        e_loss = losses.energy_loss(energy_real, energy_ebm, self.alpha)
        scaled = self._per_replica(e_loss)
      self._apply(self.e_optimizer, self.energy, tape, scaled)
      self.trackers['e_loss'].update_state(e_loss)
      self.trackers['energy_real'].update_state(tf.reduce_mean(energy_real))
      self.trackers['energy_ebm'].update_state(tf.reduce_mean(energy_ebm))
      self.trackers['buffer_reuse'].update_state(tf.reduce_mean(tf.cast(reused, tf.float32)))
    for name, average in self.averages.items():
      average.update(getattr(self, name), self.step)
    self.step.assign_add(1)
    logs = {name: tracker.result() for name, tracker in self.trackers.items()}
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
      # Keras reduces logs across workers with reduce(MEAN, axis=0), which needs a rank >= 1.
      logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs

  def checkpoint_items(self):
    """The trackables of a training checkpoint: weights, optimizers, buffer, RNG and step."""
    items = dict(generator=self.generator, discriminator=self.discriminator,
                 g_optimizer=self.g_optimizer, d_optimizer=self.d_optimizer,
                 rng=self.rng, step=self.step)
    if self.energy is not None:
      items.update(energy=self.energy, e_optimizer=self.e_optimizer,
                   replay_buffer=self.replay_buffer)
    items.update(self._average_items())
    return items

  def inference_items(self):
    """The trackables sampling restores: G, E, their averages when the run keeps them, and
    the step; `use_averages` then puts the averages into G and E."""
    items = dict(generator=self.generator, step=self.step)
    if self.energy is not None:
      items['energy'] = self.energy
    items.update(self._average_items())
    return items

  def averaging(self):
    """What G's and E's weights are, for the JSON records of evaluation, export and sweep:
    {'averaged_steps': the checkpoints' steps or None, 'moving_averages': the networks that
    hold their moving averages}."""
    return dict(averaged_steps=self.averaged_steps, moving_averages=sorted(self.averages))

  def _average_items(self):
    return {f'{name}_average': average for name, average in self.averages.items()}

  def use_averages(self):
    """G and E take their moving averages' weights (nothing when the run keeps none)."""
    for name, average in self.averages.items():
      average.copy_to(getattr(self, name))


def _decay_steps(train):
  """(start, end) steps of `--lr_decay`, or None for constant rates."""
  steps = round(train.lr_decay * train.train_steps)  # under one step: no decay
  return (train.train_steps - steps, train.train_steps) if steps else None


def for_data(config, data_shape):
  """`config` with the data's example shape recorded and the network widths left empty
  (`--generator_units=` ...) set by `networks.scaled_units`, so that a workdir's config
  rebuilds the same networks.

  Raises:
    config.ConfigError: a recorded example shape that is not the data's.
  """
  data_shape = tuple(int(d) for d in data_shape)
  recorded = config.data.example_shape
  if recorded and tuple(recorded) != data_shape:
    raise config_lib.ConfigError(f'--example_shape={",".join(map(str, recorded))} is not the '
                                 f'shape of the data, {data_shape}; leave it empty')
  config = config.override(example_shape=data_shape)
  names = dict(zip(('generator', 'discriminator', 'energy'), config.network_names()))
  units = {f'{role}_units': networks.scaled_units(names[role], role, data_shape)
           for role in names if not getattr(config.networks, f'{role}_units')}
  if 'dcgan' in names.values() and len(data_shape) == 3 and data_shape[0] % 2:
    raise config_lib.ConfigError(f'DCGAN networks upsample by 2: {data_shape[0]} px images do '
                                 'not halve; pass --image_size with an even size (e.g. '
                                 f'{data_shape[0] + 1})')
  return config.override(**units) if units else config


def build(config, data_shape=None, strategy=None, inference=False, generator=None):
  """A compiled `GanEbm` for a `Config`, built in `strategy`'s scope.

  `data_shape` defaults to the dataset's. `generator`: a callable that makes G in the
  strategy's scope (a user's pretrained one, `config.pretrained`) instead of the
  config's architecture. Initial weights are a function of
  `config.run.seed` (Keras is seeded for the build; NumPy's and Python's random states are
  left as they were). `strategy` defaults to
  the current one. With `config.run.mixed_precision` (and not `inference`), G and D
  compute in bfloat16 while E, the chains and the buffer stay float32;
  `inference=True` builds everything in float32, whatever the run trained in.
  The global Keras dtype policy is the same afterwards as before.
  """
  data_shape = tuple(data_shape or data.shape_of(config.data))
  config = for_data(config, data_shape)
  net, train = config.networks, config.train
  strategy = strategy or tf.distribute.get_strategy()
  mixed = config.run.mixed_precision and not inference
  policy = keras.config.dtype_policy()
  try:
    with seeding.seeded(config.run.seed), strategy.scope():
      keras.config.set_dtype_policy('mixed_bfloat16' if mixed else 'float32')
      g_name, d_name, e_name = config.network_names()
      if generator is None:
        generator = networks.GENERATORS[g_name](net.latent_dim, data_shape, net.generator_units,
                                                batch_norm=net.generator_batch_norm)
      else:
        generator = generator()
      replicas = strategy.num_replicas_in_sync
      if net.discriminator_pack > 1 and (train.batch_size // replicas) % net.discriminator_pack:
        raise ValueError(f'--discriminator_pack={net.discriminator_pack} does not divide the '
                         f'batch of each of the {replicas} replicas ({train.batch_size} / '
                         f'{replicas}); choose a --batch_size that it does')
      discriminator = networks.DISCRIMINATORS[d_name](data_shape, net.discriminator_units,
                                                      batch_norm=net.discriminator_batch_norm,
                                                      pack=net.discriminator_pack)
      energy, buffer = None, None
      if config.use_energy:
        keras.config.set_dtype_policy('float32')  # E and grad E stay float32
        energy = networks.ENERGIES[e_name](
            data_shape, net.energy_units, spectral_norm=net.energy_spectral_norm,
            batch_norm=net.energy_batch_norm, fourier_features=net.energy_fourier_features,
            fourier_scale=net.energy_fourier_scale)
        buffer = replay.ReplayBuffer(train.buffer_capacity, data_shape, train.buffer_reuse_prob,
                                     num_replicas=strategy.num_replicas_in_sync,
                                     xla=config.run.jit_compile)
      model = GanEbm(generator, discriminator, energy, buffer, latent_dim=net.latent_dim,
                     seed=config.run.seed, alpha=train.alpha, real_noise=train.real_noise,
                     gd_updates=train.gd_updates, sampler=config.train_sampler,
                     train_generator=config.train_generator, gan_target=train.gan_target,
                     chain_groups=chain_energy.resolve_groups(config, config.run.jit_compile),
                     ema_decay=train.ema_decay, lr_decay=_decay_steps(train))
      adam = lambda lr, beta1: keras.optimizers.Adam(lr, beta_1=beta1, beta_2=0.999)
      model.compile(g_optimizer=adam(train.gd_learning_rate, 0.5),
                    d_optimizer=adam(train.gd_learning_rate, 0.5),
                    e_optimizer=adam(train.energy_learning_rate, train.energy_beta1)
                    if config.use_energy else None,
                    jit_compile=config.run.jit_compile)
  finally:
    keras.config.set_dtype_policy(policy)
  return model
