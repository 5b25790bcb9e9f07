"""`GanEbm`: G, D and E trained jointly by a custom `train_step` (report, Algorithm 3).

With `energy=None` the same class is the plain GAN baseline: D sees real data as
real, and nothing else changes, so the two are compared on identical code.
"""

import keras
import tensorflow as tf

from tfganebm import averages
from tfganebm import chain_energy
from tfganebm import conditioning
from tfganebm import data
from tfganebm import losses
from tfganebm import networks
from tfganebm import replay
from tfganebm import sampler as sampler_lib
from tfganebm import seeding
from tfganebm import sizing


class GanEbm(keras.Model):
  """G proposes, Langevin on E refines, D tells refined (real) from proposed (fake).

  Use `compile(g_optimizer, d_optimizer, e_optimizer)` then `fit(batches)`.
  """

  def __init__(self, generator, discriminator, energy, replay_buffer, *, latent_dim, seed,
               alpha=0.1, real_noise=0.0, gd_updates=1, sampler=None, train_generator=True,
               gan_target='chains', chain_groups=1, ema_decay=0.0, lr_decay=None,
               num_classes=0, classify_weight=0.0, **kwargs):
    """`sampler`: the training chains' `SamplerConfig` (default: its defaults);
    `train_generator=False` keeps G (a user's pretrained one) and D as they are: only E
    learns, from chains that start at G's samples and the replay buffer. `gan_target`:
    D's real batch, the chains (report) or the data (G a plain GAN, E its correction).
    `chain_groups`: the data-space training chains' batch runs as this many concurrent
    groups (`chain_energy.ChainEnergy`). `ema_decay` > 0: keep an `averages.WeightAverage` of each
    network that learns, G and E (`averages`, checkpointed as `generator_average` and
    `energy_average`). `lr_decay`: (start, end) steps: from step start the optimizers'
    learning rates fall linearly from their compiled values towards 0 at step end (the
    last step, end - 1, at 1 / (end - start) of them). `num_classes` > 0: a conditional
    model (G(z, y), D(x, y), E with one energy per class, `conditioning`) trained on (x, y)
    batches; `classify_weight`: the weight of E's classification loss on real data (JEM)."""
    super().__init__(**kwargs)
    self.generator = generator
    self.discriminator = discriminator
    self.energy = energy
    # E and grad_x E for the data-space chains: faster, the same values.
    self.chain_energy = (chain_energy.ChainEnergy(energy, chain_groups)
                         if energy is not None else None)
    self.replay_buffer = replay_buffer
    self.latent_dim = latent_dim
    self.num_classes = int(num_classes)
    self.classify_weight = float(classify_weight)
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
          self.averages[name] = averages.WeightAverage(network, ema_decay, f'{name}_average')
    names = ['d_loss', 'g_loss'] if train_generator else []
    if energy is not None:
      names += ['e_loss', 'energy_real', 'energy_ebm', 'buffer_reuse']
      names += ['classify_loss'] if self.classify_weight else []
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
    if self.num_classes:
      return tuple(self.generator.output_shape[1:])
    return tuple(self.generator.compute_output_shape((None, self.latent_dim))[1:])

  def call(self, z, training=False, labels=None):
    return self._g(z, labels, training)

  def _g(self, z, labels, training):
    """G(z), or G(z, y) for a conditional model (labels None: classes in turn by row)."""
    if not self.num_classes:
      return self.generator(z, training=training)
    if labels is None:
      labels = tf.range(tf.shape(z)[0]) % self.num_classes
    return self.generator([tf.convert_to_tensor(z), tf.cast(labels, tf.int32)],
                          training=training)

  def _d(self, x, labels):
    return self.discriminator([x, labels] if self.num_classes else x, training=True)

  def energy_of(self, x, training=False, labels=None):
    """E(x): x [B, *data_shape] -> [B]; for a conditional model E(x, y) of labels y [B],
    or without labels the marginal E(x) = -logsumexp_y(-E(x, y))."""
    return conditioning.energy(self.energy(x, training=training), labels)

  def bound(self, labels):
    """(x -> E(x, y), z -> G(z, y)) in inference mode for labels y [B] (a conditional
    model), or (E, G) (labels None)."""
    return (lambda x: self.energy_of(x, labels=labels),
            lambda z: self.inference_generator(z, labels))

  def _chain_energy(self, labels):
    """The training chains' E (`chain_energy.ChainEnergy`), for these labels if any."""
    return self.chain_energy if labels is None else self.chain_energy.with_labels(labels)

  def _apply(self, optimizer, network, tape, loss):
    variables = network.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

  @staticmethod
  def _per_replica(loss):
    """Scales a per-replica mean loss so that summing gradients over replicas (what the
    optimizers do under a strategy) gives the gradient of the global-batch mean: the
    replica's mean as one example of a global batch of one per replica."""
    return tf.nn.compute_average_loss(tf.reshape(loss, [1]))

  def _update_gd(self, x_d_real, y_d_real, x_gen, y_gen, batch):
    """One D step (x_d_real real, x_gen fake; y: their labels, or None), then one G step
    on fresh z (with the labels y_gen)."""
    with tf.GradientTape() as tape:
      d_loss = losses.discriminator_loss(self._d(x_d_real, y_d_real),
                                         self._d(tf.stop_gradient(x_gen), y_gen))
      scaled = self._per_replica(d_loss)
    self._apply(self.d_optimizer, self.discriminator, tape, scaled)

    z_hat = self.rng.normal([batch, self.latent_dim])
    with tf.GradientTape() as tape:
      g_loss = losses.generator_loss(self._d(self._g(z_hat, y_gen, True), y_gen))
      scaled = self._per_replica(g_loss)
    self._apply(self.g_optimizer, self.generator, tape, scaled)
    self.trackers['d_loss'].update_state(d_loss)
    self.trackers['g_loss'].update_state(g_loss)

  def _generate(self, batch, labels=None):
    # Under mixed precision G computes in bfloat16; chains, buffer and E stay float32.
    # A frozen G runs in inference mode: its BatchNorm statistics stay the user's.
    return tf.cast(self._g(self.rng.normal([batch, self.latent_dim]), labels,
                           self.train_generator), tf.float32)

  def inference_generator(self, z, labels=None):
    """G in inference mode (BatchNorm's moving statistics), float32 out: the G that chains
    in latent space and every sampler after training map z through (a conditional G: with
    labels [B], or without them classes in turn by row)."""
    return tf.cast(self._g(z, labels, False), tf.float32)

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

  def _run_chains(self, x_gen, y_real, batch):
    """The step's chains: (x_ebm, their labels (None unconditional), which started from
    the buffer [B] bool). A chain keeps the label of its start: G's sample's, or the one
    its buffer slot holds."""
    if self.sampler.space == 'latent':
      # Chains in z from the prior (Algorithm 2 without the buffer), x = G(z).
      energy_fn, generator_fn = self.bound(y_real)
      x_ebm = sampler_lib.refine(energy_fn, generator_fn,
                                 self.rng.normal([batch, self.latent_dim]), self.rng,
                                 self.sampler)
      return tf.stop_gradient(x_ebm), y_real, tf.zeros([batch], tf.bool)
    x_init, y_init, reused = self.replay_buffer.initial_chains(tf.stop_gradient(x_gen),
                                                               self.rng, y_real)
    x_ebm = sampler_lib.run(self._chain_energy(y_init), x_init, self.rng, self.sampler)
    return tf.stop_gradient(x_ebm), y_init, reused

  def _update_energy(self, x_real, y_real, x_ebm, y_ebm, batch):
    """One E step: real (x, y) down, chains up (and with classify_weight, JEM's
    classification loss on the real batch)."""
    x_pos = x_real
    if self.real_noise > 0:
      x_pos = tf.clip_by_value(x_pos + self.real_noise * self.rng.normal(tf.shape(x_pos)),
                               -1.0, 1.0)
    labels = None if y_real is None else tf.concat([y_real, y_ebm], 0)
    with tf.GradientTape() as tape:
      class_energies = self.energy(tf.concat([x_pos, x_ebm], 0), training=True)
      energies = conditioning.energy(class_energies, labels)
      energy_real, energy_ebm = energies[:batch], energies[batch:]
      e_loss = losses.energy_loss(energy_real, energy_ebm, self.alpha)
      if self.classify_weight:
        classify = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            y_real, -class_energies[:batch]))
        e_loss += self.classify_weight * classify
        self.trackers['classify_loss'].update_state(classify)
      scaled = self._per_replica(e_loss)
    self._apply(self.e_optimizer, self.energy, tape, scaled)
    self.trackers['e_loss'].update_state(e_loss)
    self.trackers['energy_real'].update_state(tf.reduce_mean(energy_real))
    self.trackers['energy_ebm'].update_state(tf.reduce_mean(energy_ebm))

  def train_step(self, batch_data):
    """One step of Algorithm 3 on a batch x [B, ...], or (x, y [B] int32) when conditional."""
    if self.lr_decay is not None:
      self._decay_learning_rates()
    x_real, y_real = batch_data if self.num_classes else (batch_data, None)
    batch = tf.shape(x_real)[0]
    x_gen = self._generate(batch, y_real)
    x_d_real, y_d_real = x_real, y_real
    if self.energy is not None:
      x_ebm, y_ebm, reused = self._run_chains(x_gen, y_real, batch)
      self.replay_buffer.push_(x_ebm, y_ebm)
      if self.gan_target == 'chains':
        x_d_real, y_d_real = x_ebm, y_ebm

    if self.train_generator:
      self._update_gd(x_d_real, y_d_real, x_gen, y_real, batch)
      for _ in range(self.gd_updates - 1):  # unrolled: a fixed count, no cond in the graph
        x_old, y_old = (self.replay_buffer.sample(batch, self.rng, labelled=True)
                        if self.num_classes else (self.replay_buffer.sample(batch, self.rng), None))
        self._update_gd(x_old, y_old, self._generate(batch, y_real), y_real, batch)

    if self.energy is not None:
      self._update_energy(x_real, y_real, x_ebm, y_ebm, batch)
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


def _networks(config, data_shape, replicas, generator=None):
  """(G, D, E, replay buffer) of `config` in the current scope and dtype policy (E and the
  buffer in float32; None, None for the plain GAN). `generator`: a function that makes G
  instead. A conditional run's G and D take labels, and its E has one output per class."""
  net, train = config.networks, config.train
  classes = net.num_classes if net.conditional else 0
  g_name, d_name, e_name = config.network_names()
  if generator is not None:
    generator = generator()
  elif classes:  # z and the label's embedding (latent_dim values) side by side
    generator = networks.conditional_generator(networks.GENERATORS[g_name](
        2 * net.latent_dim, data_shape, net.generator_units,
        batch_norm=net.generator_batch_norm), net.latent_dim, classes)
  else:
    generator = networks.GENERATORS[g_name](net.latent_dim, data_shape, net.generator_units,
                                            batch_norm=net.generator_batch_norm)
  if net.discriminator_pack > 1 and (train.batch_size // replicas) % net.discriminator_pack:
    raise ValueError(f'--discriminator_pack={net.discriminator_pack} does not divide the '
                     f'batch of each of the {replicas} replicas ({train.batch_size} / '
                     f'{replicas}); choose a --batch_size that it does')
  discriminator = networks.DISCRIMINATORS[d_name](data_shape, net.discriminator_units,
                                                  batch_norm=net.discriminator_batch_norm,
                                                  pack=net.discriminator_pack)
  if classes:
    discriminator = networks.projection_discriminator(discriminator, data_shape, classes)
  if not config.use_energy:
    return generator, discriminator, None, None
  keras.config.set_dtype_policy('float32')  # E and grad E stay float32
  energy = networks.ENERGIES[e_name](
      data_shape, net.energy_units, spectral_norm=net.energy_spectral_norm,
      batch_norm=net.energy_batch_norm, fourier_features=net.energy_fourier_features,
      fourier_scale=net.energy_fourier_scale, outputs=classes or 1)
  buffer = replay.ReplayBuffer(train.buffer_capacity, data_shape, train.buffer_reuse_prob,
                               num_replicas=replicas, xla=config.run.jit_compile,
                               labelled=bool(classes))
  return generator, discriminator, energy, buffer


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
  config = sizing.for_data(config, data_shape)
  net, train = config.networks, config.train
  strategy = strategy or tf.distribute.get_strategy()
  mixed = config.run.mixed_precision and not inference
  policy = keras.config.dtype_policy()
  try:
    with seeding.seeded(config.run.seed), strategy.scope():
      keras.config.set_dtype_policy('mixed_bfloat16' if mixed else 'float32')
      generator, discriminator, energy, buffer = _networks(
          config, data_shape, strategy.num_replicas_in_sync, generator)
      model = GanEbm(generator, discriminator, energy, buffer, latent_dim=net.latent_dim,
                     seed=config.run.seed, alpha=train.alpha, real_noise=train.real_noise,
                     gd_updates=train.gd_updates, sampler=config.train_sampler,
                     train_generator=config.train_generator, gan_target=train.gan_target,
                     chain_groups=chain_energy.resolve_groups(config, config.run.jit_compile),
                     ema_decay=train.ema_decay, lr_decay=_decay_steps(train),
                     num_classes=net.num_classes if net.conditional else 0,
                     classify_weight=train.classify_weight)
      adam = lambda lr, beta1: keras.optimizers.Adam(lr, beta_1=beta1, beta_2=0.999)
      model.compile(g_optimizer=adam(train.gd_learning_rate, 0.5),
                    d_optimizer=adam(train.gd_learning_rate, 0.5),
                    e_optimizer=adam(train.energy_learning_rate, train.energy_beta1)
                    if config.use_energy else None,
                    jit_compile=config.run.jit_compile)
  finally:
    keras.config.set_dtype_policy(policy)
  return model
