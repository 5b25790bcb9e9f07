"""The replay buffer of Algorithm 2."""

import numpy as np
import pytest
import tensorflow as tf

from tfganebm import replay


def test_buffer_reuses_95_percent():
  buffer = replay.ReplayBuffer(1000, (2,), reuse_prob=0.95)
  buffer.push_(tf.tile(tf.range(1.0, 1001.0)[:, None], [1, 2]))
  x_init, _, reused = buffer.initial_chains(-tf.ones([20000, 2]),
                                           tf.random.Generator.from_seed(0))
  x_init, reused = x_init.numpy(), reused.numpy()
  assert abs(reused.mean() - 0.95) < 0.006  # 4 binomial standard deviations
  assert (x_init[reused] >= 1).all() and (x_init[~reused] == -1).all()
  assert len(np.unique(x_init[reused, 0])) > 990  # draws cover the whole buffer


def test_buffer_never_returns_uninitialised_slots():
  buffer = replay.ReplayBuffer(100, (3,))
  buffer.push_(tf.ones([10, 3]))  # 90 slots still hold their zeros
  x_init, _, reused = buffer.initial_chains(tf.fill([5000, 3], 7.0),
                                           tf.random.Generator.from_seed(1))
  x_init = x_init.numpy()
  assert reused.numpy().any()
  assert not (x_init == 0).any()


def test_sample_draws_only_filled_slots_and_all_of_them():
  buffer = replay.ReplayBuffer(100, (2,))
  buffer.push_(tf.tile(tf.range(1.0, 31.0)[:, None], [1, 2]))  # 70 slots still hold zeros
  drawn = buffer.sample(3000, tf.random.Generator.from_seed(0)).numpy()
  assert drawn.shape == (3000, 2)
  assert set(np.unique(drawn[:, 0])) == set(range(1, 31))


def test_empty_buffer_starts_every_chain_fresh():
  buffer = replay.ReplayBuffer(100, (2,))
  x_fresh = tf.random.normal([50, 2])
  x_init, _, reused = buffer.initial_chains(x_fresh, tf.random.Generator.from_seed(0))
  assert not reused.numpy().any()
  np.testing.assert_array_equal(x_init, x_fresh)


def test_push_overwrites_the_oldest_slots():
  buffer = replay.ReplayBuffer(5, (1,))
  buffer.push_(tf.constant([[1.0], [2.0], [3.0]]))
  buffer.push_(tf.constant([[4.0], [5.0], [6.0]]))
  np.testing.assert_array_equal(buffer.samples.numpy()[0, :, 0], [6, 2, 3, 4, 5])
  assert int(buffer.size.numpy()[0]) == 5 and int(buffer.next_index.numpy()[0]) == 1


def test_buffer_round_trips_through_a_checkpoint(tmp_path):
  buffer = replay.ReplayBuffer(8, (2,))
  buffer.push_(tf.random.normal([3, 2]))
  path = tf.train.Checkpoint(buffer=buffer).save(str(tmp_path / 'ckpt'))
  restored = replay.ReplayBuffer(8, (2,))
  tf.train.Checkpoint(buffer=restored).restore(path).assert_consumed()
  np.testing.assert_array_equal(restored.samples.numpy(), buffer.samples.numpy())
  assert int(restored.size.numpy()[0]) == 3 and int(restored.next_index.numpy()[0]) == 3


@pytest.mark.parametrize('jit_compile', [False, True])
def test_buffer_reads_whole_pushed_rows_in_graph_mode_and_under_xla(jit_compile):
  # Graphs read slots with one gather of (replica, slot) pairs; a buffer for XLA steps, which
  # has no kernel for that, gathers through the partition: only pushed rows, whole.
  buffer = replay.ReplayBuffer(50, (3,), reuse_prob=0.5, xla=jit_compile)
  buffer.push_(tf.reshape(tf.range(120.0), [40, 3]))
  rng = tf.random.Generator.from_seed(3)

  def fn(fresh):
    x_init, _, reused = buffer.initial_chains(fresh, rng)
    return x_init, reused, buffer.sample(16, rng)
  x_init, reused, drawn = [t.numpy() for t in tf.function(fn, jit_compile=jit_compile)(
      -tf.ones([64, 3]))]
  assert reused.any() and not reused.all() and (x_init[~reused] == -1).all()
  # Every row read is a pushed row (3 consecutive values), not a mix of slots.
  for rows in (x_init[reused], drawn):
    assert (rows[:, 0] % 3 == 0).all() and (rows[:, 0] < 120).all()
    np.testing.assert_array_equal(rows[:, 1:], rows[:, :1] + [1, 2])


@pytest.mark.parametrize('jit_compile', [False, True])
def test_buffer_reads_each_replica_its_own_partition(jit_compile):
  # Slot s of replica r, in either form of the read: reading another replica's chains (or
  # another slot) fails.
  buffer = replay.ReplayBuffer(4, (2,), num_replicas=3, xla=jit_compile)
  buffer.samples.assign(tf.reshape(tf.range(24.0), [3, 4, 2]))
  index = tf.constant([3, 0, 2], tf.int64)
  for replica in range(3):
    rows = tf.function(lambda r: buffer._read(r, index), jit_compile=jit_compile)(replica)
    np.testing.assert_array_equal(rows, buffer.samples.numpy()[replica][index.numpy()])
