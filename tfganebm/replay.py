"""The replay buffer of short-run chains (report, Algorithm 2), held in tf.Variables."""

import tensorflow as tf


class ReplayBuffer(tf.Module):
  """A ring buffer of finished Langevin chains; part of the checkpoint.

  It starts empty. `initial_chains` starts each chain from a uniformly drawn
  filled slot with probability `reuse_prob`, else from the fresh sample given
  (G(z)); `push_` writes finished chains over the oldest ones.
  """

  def __init__(self, capacity, sample_shape, reuse_prob=0.95, name='replay_buffer'):
    """Args: capacity: number of slots; sample_shape: one sample's shape; reuse_prob: in [0, 1]."""
    super().__init__(name=name)
    if capacity <= 0:
      raise ValueError(f'replay buffer capacity must be positive, got {capacity}')
    if not 0.0 <= reuse_prob <= 1.0:
      raise ValueError(f'reuse probability must be in [0, 1], got {reuse_prob}')
    self.capacity = int(capacity)
    self.reuse_prob = float(reuse_prob)
    self.samples = tf.Variable(tf.zeros([capacity, *sample_shape]), trainable=False, name='samples')
    self.size = tf.Variable(0, dtype=tf.int64, trainable=False, name='size')
    self.next_index = tf.Variable(0, dtype=tf.int64, trainable=False, name='next_index')

  def initial_chains(self, x_fresh, rng):
    """Chain starts: a buffer slot with probability reuse_prob (when any is filled), else x_fresh.

    Args:
      x_fresh: [B, *sample_shape] fresh starts, e.g. G(z).
      rng: tf.random.Generator.

    Returns:
      (x_init [B, *sample_shape], reused [B] bool).
    """
    batch = tf.shape(x_fresh, out_type=tf.int64)[0]
    size = self.size.read_value()
    reused = tf.logical_and(rng.uniform([batch]) < self.reuse_prob, size > 0)
    index = rng.uniform([batch], 0, tf.maximum(size, 1), dtype=tf.int64)
    from_buffer = tf.gather(self.samples, index)
    mask = tf.reshape(reused, [-1] + [1] * (len(x_fresh.shape) - 1))
    return tf.where(mask, from_buffer, x_fresh), reused

  def push_(self, x):
    """Writes x [B, *sample_shape] (B <= capacity) over the oldest slots."""
    batch = tf.shape(x, out_type=tf.int64)[0]
    index = (self.next_index + tf.range(batch, dtype=tf.int64)) % self.capacity
    self.samples.scatter_nd_update(index[:, None], x)
    self.next_index.assign((self.next_index + batch) % self.capacity)
    self.size.assign(tf.minimum(self.size + batch, self.capacity))
