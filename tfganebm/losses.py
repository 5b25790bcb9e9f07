"""The losses of Algorithm 3 as pure functions of logits and energies."""

import tensorflow as tf


def _bce_with_logits(labels_value, logits):
  logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)  # mixed precision: losses in float32
  labels = tf.fill(tf.shape(logits), labels_value)
  return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def discriminator_loss(real_logits, fake_logits):
  """BCE with `real_logits` labelled 1 and `fake_logits` labelled 0; logits [B] or [B, 1]."""
  return _bce_with_logits(1.0, real_logits) + _bce_with_logits(0.0, fake_logits)


def generator_loss(fake_logits):
  """Non-saturating G loss, -log D(G(z)); logits [B] or [B, 1]."""
  return _bce_with_logits(1.0, fake_logits)


def energy_loss(energy_real, energy_sampled, alpha):
  """Contrastive divergence plus the L2 regulariser (report, Alg. 3; Du & Mordatch 2019).

  mean(E(x+) - E(x_ebm)) + alpha * mean(E(x+)^2 + E(x_ebm)^2), energies [B].
  """
  contrastive = tf.reduce_mean(energy_real) - tf.reduce_mean(energy_sampled)
  regulariser = tf.reduce_mean(tf.square(energy_real) + tf.square(energy_sampled))
  return contrastive + alpha * regulariser
