"""Short-run Langevin dynamics on an energy (report, Algorithm 1).

    x <- clip(x - step_size * g(x) + noise * eps, low, high),  eps ~ N(0, I)

where g(x) = grad_x E(x), optionally clipped to an L2 norm of `grad_clip` per
sample. With noise = sqrt(2 * step_size) this is the unadjusted Langevin
algorithm, whose chains sample exp(-E) as the step size goes to zero; the
report's settings use a smaller noise (a colder chain).
"""

import tensorflow as tf


def energy_gradient(energy_fn, x, grad_clip=0.0):
  """grad_x E(x) for a batch, each sample's gradient clipped to L2 norm `grad_clip` (0: no clip).

  Args:
    energy_fn: x [B, ...] -> energies [B].
    x: [B, ...] float32.
    grad_clip: python float or scalar tensor >= 0.

  Returns:
    [B, ...] float32, the same shape as x.
  """
  with tf.GradientTape() as tape:
    tape.watch(x)
    energy = tf.reduce_sum(energy_fn(x))
  grad = tape.gradient(energy, x)
  if isinstance(grad_clip, (int, float)) and grad_clip <= 0:
    return grad
  axes = list(range(1, len(x.shape)))
  norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=axes, keepdims=True) + 1e-12)
  scale = tf.minimum(1.0, grad_clip / norm)
  # grad_clip <= 0 as a tensor also means no clipping.
  return grad * tf.where(grad_clip > 0, scale, tf.ones_like(scale))


def langevin_step(energy_fn, x, noise_sample, step_size, noise, grad_clip=0.0,
                  low=-1.0, high=1.0):
  """One step of Algorithm 1 with the noise given: x [B, ...] -> x [B, ...] in [low, high]."""
  grad = energy_gradient(energy_fn, x, grad_clip)
  return tf.clip_by_value(x - step_size * grad + noise * noise_sample, low, high)


def langevin(energy_fn, x_init, rng, steps, step_size, noise, grad_clip=0.0,
             low=-1.0, high=1.0, record_every=0):
  """Runs `steps` Langevin steps from `x_init` as one tf.while_loop.

  Args:
    energy_fn: x [B, ...] -> energies [B]; called in inference mode by the caller's choice.
    x_init: [B, ...] float32 chain starts.
    rng: tf.random.Generator for the noise.
    steps: int (a python int gives a static trip count) or scalar int32 tensor.
    step_size: eta, float >= 0.
    noise: sigma, float >= 0.
    grad_clip: per-sample L2 clip of grad_x E; 0 disables it.
    low, high: the data range the chain is clipped to.
    record_every: if > 0, also return the states after every `record_every` steps.

  Returns:
    x [B, ...], the final state; with `record_every`, also the states
    [steps // record_every + 1, B, ...], starting with x_init.
  """
  x_init = tf.convert_to_tensor(x_init, tf.float32)

  def step(x):
    eps = rng.normal(tf.shape(x))
    return langevin_step(energy_fn, x, eps, step_size, noise, grad_clip, low, high)

  if record_every <= 0:
    _, x = tf.while_loop(lambda i, _: i < steps, lambda i, x: (i + 1, step(x)),
                         (tf.constant(0), x_init), maximum_iterations=steps)
    return x

  if not isinstance(steps, int):
    raise ValueError('recording a trajectory needs a python int number of steps')
  num_records = steps // record_every + 1
  records = tf.TensorArray(tf.float32, size=num_records, element_shape=x_init.shape)
  records = records.write(0, x_init)

  def body(i, x, records):
    x = step(x)
    i += 1
    records = tf.cond(i % record_every == 0,
                      lambda: records.write(i // record_every, x), lambda: records)
    return i, x, records

  _, x, records = tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), x_init, records),
                                maximum_iterations=steps)
  return x, records.stack()
