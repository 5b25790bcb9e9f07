"""The replay buffer of short-run chains (report, Algorithm 2), held in tf.Variables."""

import tensorflow as tf


def _replica():
  """(replica id, number of replicas) of the current replica context, (0, 1) outside one."""
  context = tf.distribute.get_replica_context()
  if context is None:
    return 0, 1
  return context.replica_id_in_sync_group, context.num_replicas_in_sync


class ReplayBuffer(tf.Module):
  """A ring buffer of finished Langevin chains per replica; part of the checkpoint.

  It starts empty. Under a tf.distribute strategy with R replicas, it holds R
  partitions of `capacity` slots and each replica draws from and refills its own
  partition only; the variables stay identical on every device (all replicas
  write the gathered chains of all), so a checkpoint holds every partition once.

  `initial_chains` starts each chain from a uniformly drawn filled slot with
  probability `reuse_prob`, else from the fresh sample given (G(z)); `push_`
  writes finished chains over the oldest ones; `sample` draws filled slots.
  """

  def __init__(self, capacity, sample_shape, reuse_prob=0.95, num_replicas=1, xla=False,
               labelled=False, name='replay_buffer'):
    """Args: capacity: slots per replica; sample_shape: one sample's shape; reuse_prob: in [0, 1];
    num_replicas: replicas of the strategy it is created under; xla: whether the steps
    that read it are XLA-compiled (`_read`); labelled: each slot also keeps its chain's
    class label (a conditional run)."""
    super().__init__(name=name)
    if capacity <= 0:
      raise ValueError(f'replay buffer capacity must be positive, got {capacity}')
    if not 0.0 <= reuse_prob <= 1.0:
      raise ValueError(f'reuse probability must be in [0, 1], got {reuse_prob}')
    self.capacity = int(capacity)
    self.reuse_prob = float(reuse_prob)
    self.num_replicas = int(num_replicas)
    self.xla = bool(xla)
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA  # identical writes from every replica
    self.samples = tf.Variable(tf.zeros([num_replicas, capacity, *sample_shape]),
                               trainable=False, name='samples', aggregation=first)
    self.size = tf.Variable(tf.zeros([num_replicas], tf.int64), trainable=False, name='size',
                            aggregation=first)
    self.next_index = tf.Variable(tf.zeros([num_replicas], tf.int64), trainable=False,
                                  name='next_index', aggregation=first)
    self.labels = (tf.Variable(tf.zeros([num_replicas, capacity], tf.int32), trainable=False,
                               name='labels', aggregation=first) if labelled else None)

  def initial_chains(self, x_fresh, rng, labels=None):
    """Chain starts: a slot of this replica's partition with probability reuse_prob (when any is
    filled), else x_fresh.

    Args:
      x_fresh: [B, *sample_shape] fresh starts, e.g. G(z).
      rng: tf.random.Generator.
      labels: [B] int32, x_fresh's labels (a labelled buffer), or None.

    Returns:
      (x_init [B, *sample_shape], their labels [B] (a reused slot's own; None without
      labels), reused [B] bool).
    """
    replica, _ = _replica()
    batch = tf.shape(x_fresh, out_type=tf.int64)[0]
    size = tf.gather(self.size, replica)
    reused = tf.logical_and(rng.uniform([batch]) < self.reuse_prob, size > 0)
    index = rng.uniform([batch], 0, tf.maximum(size, 1), dtype=tf.int64)
    from_buffer = self._read(replica, index)
    mask = tf.reshape(reused, [-1] + [1] * (len(x_fresh.shape) - 1))
    y_init = None
    if labels is not None:
      y_init = tf.where(reused, self._read_labels(replica, index), tf.cast(labels, tf.int32))
    return tf.where(mask, from_buffer, x_fresh), y_init, reused

  def sample(self, batch, rng, labelled=False):
    """`batch` chains drawn uniformly (with replacement) from this replica's filled slots.

    Args:
      batch: int or scalar tensor; rng: tf.random.Generator; labelled: also their labels.

    Returns:
      [batch, *sample_shape]; zeros while the partition is still empty. With `labelled`,
      (that, their labels [batch] or None for a buffer without labels).
    """
    replica, _ = _replica()
    size = tf.gather(self.size, replica)
    index = rng.uniform([batch], 0, tf.maximum(size, 1), dtype=tf.int64)
    if not labelled:
      return self._read(replica, index)
    labels = None if self.labels is None else self._read_labels(replica, index)
    return self._read(replica, index), labels

  def _read_labels(self, replica, index):
    return tf.gather(tf.gather(self.labels, replica), index)

  def _read(self, replica, index):
    """Slots `index` [B] int64 of `replica`'s partition: [B, *sample_shape].

    In graph mode one gather of (replica, slot) pairs reads only those rows: reading the
    variable first (a partition, or all of it reshaped) copies it whole, 25 MB for MNIST's
    8192 slots, 3 to 8 ms of a 2-core step. XLA has no kernel for that gather and elides
    the copy itself, so a buffer made for XLA-compiled steps (`xla=True`) reads through the
    partition.
    """
    if self.xla:
      return tf.gather(tf.gather(self.samples, replica), index)
    rows = tf.fill(tf.shape(index), tf.cast(replica, tf.int64))
    return tf.gather_nd(self.samples, tf.stack([rows, index], 1))

  def push_(self, x, labels=None):
    """Writes this replica's x [B, *sample_shape] (B <= capacity) over its oldest slots, and
    in a labelled buffer their `labels` [B]."""
    _, num_replicas = _replica()
    if num_replicas != self.num_replicas:
      raise ValueError(f'buffer made for {self.num_replicas} replicas used by {num_replicas}')
    batch = tf.shape(x, out_type=tf.int64)[0]
    slots = (self.next_index[:, None] + tf.range(batch, dtype=tf.int64)[None]) % self.capacity
    if self.labels is not None:
      self._push_labels(slots, tf.cast(labels, tf.int32), num_replicas)
    if num_replicas == 1 and not isinstance(self.samples, tf.distribute.DistributedValues):
      # In place, without copying the buffer; distributed variables (a mirrored strategy on
      # one device included) implement no scatter_nd_update, so they take the path below.
      self.samples.scatter_nd_update(tf.stack([tf.zeros_like(slots[0]), slots[0]], 1), x)
    elif num_replicas == 1:
      self.samples.assign(tf.tensor_scatter_nd_update(
          self.samples, tf.stack([tf.zeros_like(slots[0]), slots[0]], 1), x))
    else:
      # Every replica applies all replicas' chains, so the copies stay identical.
      chains = tf.distribute.get_replica_context().all_gather(x[None], axis=0)
      rows = tf.broadcast_to(tf.range(num_replicas, dtype=tf.int64)[:, None], tf.shape(slots))
      index = tf.reshape(tf.stack([rows, slots], -1), [-1, 2])
      self.samples.assign(tf.tensor_scatter_nd_update(
          self.samples, index, tf.reshape(chains, [-1, *x.shape[1:]])))
    self.next_index.assign((self.next_index + batch) % self.capacity)
    self.size.assign(tf.minimum(self.size + batch, self.capacity))

  def _push_labels(self, slots, labels, num_replicas):
    """The labels of `push_`'s chains into their slots (every replica's, as `push_`)."""
    if num_replicas == 1:
      index = tf.stack([tf.zeros_like(slots[0]), slots[0]], 1)
      self.labels.assign(tf.tensor_scatter_nd_update(self.labels, index, labels))
      return
    gathered = tf.distribute.get_replica_context().all_gather(labels[None], axis=0)
    rows = tf.broadcast_to(tf.range(num_replicas, dtype=tf.int64)[:, None], tf.shape(slots))
    index = tf.reshape(tf.stack([rows, slots], -1), [-1, 2])
    self.labels.assign(tf.tensor_scatter_nd_update(self.labels, index,
                                                   tf.reshape(gathered, [-1])))
