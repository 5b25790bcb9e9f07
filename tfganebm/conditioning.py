"""Class labels in a conditional run (`--conditional`): which class a chain samples, and E's
energies per class.

A conditional E maps x to one energy per class, E(x, .) [B, K]; E(x, y) is the entry of
class y, and the unconditional energy of the joint's marginal is
E(x) = -logsumexp_y(-E(x, y)), with p(y | x) = softmax_y(-E(x, y)) (JEM: the same network
read as a classifier). G and the chains keep each sample's label from its start to its end.
"""

import numpy as np
import tensorflow as tf


def balanced(num, num_classes):
  """Labels [num] int32 that cycle through the classes (0, 1, ..., K - 1, 0, ...): the
  mixed labels of a conditional run sampled without a label."""
  return (np.arange(num) % num_classes).astype(np.int32)


def select(energies, labels):
  """E(x, y) [B] of the class energies [B, K] and labels y [B]."""
  return tf.gather(energies, tf.cast(labels, tf.int32), axis=1, batch_dims=1)


def marginal(energies):
  """E(x) = -logsumexp_y(-E(x, y)) [B] of the class energies [B, K]."""
  return -tf.reduce_logsumexp(-energies, axis=1)


def energy(energies, labels):
  """E(x, y) with labels, E(x) without (labels None); [B] either way. An unconditional E's
  energies [B, 1] are E(x) whatever the labels."""
  if energies.shape[-1] == 1:
    return tf.reshape(energies, [-1])
  return marginal(energies) if labels is None else select(energies, labels)
