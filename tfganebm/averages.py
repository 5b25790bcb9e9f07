"""Moving averages of a network's weights (`--ema_decay`)."""

import tensorflow as tf


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
