"""E as the Langevin chains use it: E(x) and grad_x E(x), computed faster than autodiff does.

Two changes to how the gradient is computed, neither to what it is:

- **Stride-2 convolutions' input gradients as stride-1 convolutions.** The input gradient
  of a stride-2 'same' Conv2D is a stride-2 transposed convolution. CPU kernels run it
  slowly when its output has few channels: for the conv E's first layer (1 -> 16 channels,
  5 x 5) TF's oneDNN `Conv2DBackpropInput` took 0.41 ms at batch 32 on one core, a third of
  the chain's time. `stride_two_transpose` writes it as one stride-1 convolution over the
  four output phases and a `depth_to_space` (0.14 ms). The export writes the same form
  for LiteRT.
- **Groups of chains that run concurrently.** On a CPU, the chain's small convolutions
  gain little from splitting each op across cores (2 cores: x1.1). With `groups` > 1,
  `langevin.langevin` cuts the batch into that many groups (`split`) and runs each as a
  chain of its own (its own loop, gradients, update and noise); with TF's intra-op threads
  set to 1 (`configure_threads`), the inter-op pool runs the groups side by side, one core
  each, without waiting for each other at every step. Each sample's chain depends on that
  sample alone, so the groups change only which noise each chain draws (each group draws
  from its own stream, `langevin.NoiseStream.group`): the same distribution, another
  draw; `--chain_groups` fixes them.
"""

import os

import tensorflow as tf
import keras

from tfganebm import conditioning


def same_pad_before(in_size, out_size, kernel_size):
  """Rows of zeros a stride-2 'same' convolution pads before its input."""
  return max((out_size - 1) * 2 + kernel_size - in_size, 0) // 2


def stride_two_pad(height, width, kernel_size):
  """The rows and columns of zeros a stride-2 'same' convolution pads before an H x W input;
  None when it pads rows and columns unalike (`stride_two_transpose` takes one for both)."""
  pad = same_pad_before(height, -(-height // 2), kernel_size)
  return pad if pad == same_pad_before(width, -(-width // 2), kernel_size) else None


def plain_2d(layer):
  """A stride-2 'same' 2D (transposed) convolution with a square kernel: the kind
  `stride_two_transpose` writes; every other layer keeps its own op."""
  kernel = getattr(layer, 'kernel_size', (0, 1))
  return (tuple(layer.strides) == (2, 2) and layer.padding == 'same'
          and tuple(layer.dilation_rate) == (1, 1) and layer.data_format == 'channels_last'
          and kernel[0] == kernel[1] and getattr(layer, 'groups', 1) == 1)


def phase_kernel(kernel, pad_before):
  """`stride_two_transpose`'s stride-1 kernel for `kernel` [K, K, C_in, C_out]: (the kernel
  [n, n, C_out, 4 C_in], the first and last offsets of the dy rows it reads)."""
  size, _, channels_in, channels_out = kernel.shape
  taps = {}  # (phase, offset of the dy row) -> kernel row
  for phase in (0, 1):
    for k in range(size):
      if (k - phase - pad_before) % 2 == 0:
        taps[(phase, -(k - phase - pad_before) // 2)] = k
  low, high = min(d for _, d in taps), max(d for _, d in taps)
  zeros = tf.zeros([channels_out, channels_in], kernel.dtype)
  rows = []
  for dh in range(low, high + 1):
    row = []
    for dw in range(low, high + 1):
      phases = []
      for a in (0, 1):
        for b in (0, 1):
          kh, kw = taps.get((a, dh)), taps.get((b, dw))
          phases.append(zeros if kh is None or kw is None else tf.transpose(kernel[kh, kw]))
      row.append(tf.concat(phases, axis=1))  # [C_out, 4 C_in], depth_to_space's order
    rows.append(tf.stack(row))
  return tf.stack(rows), low, high


def stride_two_transpose(dy, kernel, pad_before, out_hw, phases=None):
  """The transpose of a stride-2 2D convolution, as a stride-1 convolution and depth_to_space.

  For y = conv2d(x, kernel [K, K, C_in, C_out], stride 2, `pad_before` rows and columns of
  zeros before x [B, H, W, C_in]), returns the transposed convolution of dy [B, n, n, C_out]
  (its gradient with respect to x) as [B, H, W, C_in]. Each of the 4 output phases
  (row and column parity) sums a few input taps, so one stride-1 convolution with 4 C_in
  channels computes all of them, and depth_to_space interleaves them. The result is
  exact. Unlike TRANSPOSE_CONV, whose output shape follows the dynamic batch, these ops run
  under LiteRT's XNNPACK CPU kernels on every thread; on TF's CPU kernels they are faster
  than `Conv2DBackpropInput` when C_in is small. `phases`: `phase_kernel(kernel,
  pad_before)`, when the caller made it once for many calls.
  """
  stacked, low, high = phases or phase_kernel(kernel, pad_before)
  padded = tf.pad(dy, [[0, 0], [-low, high], [-low, high], [0, 0]])
  y = tf.nn.depth_to_space(tf.nn.conv2d(padded, stacked, 1, 'VALID'), 2)
  return y[:, :out_hw[0], :out_hw[1], :]


def phase_gradient_conv(x, kernel, pad_before, phases=None):
  """conv2d(x, kernel, stride 2, 'same') whose input gradient is `stride_two_transpose`
  (`phases`: its kernel, made once). The kernel gets no gradient: for chains and the
  export's signatures, which differentiate with respect to x only."""
  out_hw = x.shape[1:3]

  @tf.custom_gradient
  def convolve(x):
    return (tf.nn.conv2d(x, kernel, 2, 'SAME'),
            lambda dy: stride_two_transpose(dy, kernel, pad_before, out_hw, phases))

  return convolve(x)


# Input channels up to which a chain writes a stride-2 convolution's input gradient as
# `stride_two_transpose`: measured at batch 32 on one core (oneDNN), 1 -> 16 channels 5 x 5:
# 0.14 ms against 0.41; 16 -> 32 and wider 3 x 3: no faster.
PHASE_MAX_CHANNELS = 4


class ChainEnergy:
  """E for the chains: `chain_energy(x)` -> E(x) [B]; `value_and_gradient(x)` -> (E(x) [B],
  grad_x E(x)); `split(x)`: the batch in `groups` groups, each run as a chain of its own by
  `langevin.langevin`. Inference mode (E's BatchNorm, if any, uses its moving statistics).
  Only for gradients with respect to x: E's weights get none.

  `prepared()`, called where the chain starts (inside its tf.function, before its loop),
  reads the weights the chain holds fixed and writes the stride-2 convolutions with few
  input channels (an image E's first layer) so that their input gradient is
  `stride_two_transpose` with the kernel made there, once per chain.
  """

  def __init__(self, energy, groups=1, phases=None, labels=None):
    self.energy = energy
    self.groups = max(int(groups), 1)
    self.labels = labels  # a conditional E's class per chain [B], or None
    self._layers = list(energy.layers) if isinstance(energy, keras.Sequential) else None
    self._phases = phases or {}  # layer index -> (kernel, pad, phase_kernel(kernel, pad))

  def prepared(self):
    phases = {}
    for index, layer in enumerate(self._layers or []):
      if not (type(layer) is keras.layers.Conv2D and plain_2d(layer)):  # pylint: disable=unidiomatic-typecheck
        continue
      _, height, width, channels = layer.input.shape
      pad = stride_two_pad(height, width, layer.kernel.shape[0])
      if channels <= PHASE_MAX_CHANNELS and pad is not None:
        kernel = tf.convert_to_tensor(layer.kernel)
        phases[index] = (kernel, pad, phase_kernel(kernel, pad))
    return ChainEnergy(self.energy, self.groups, phases, self.labels)

  def with_labels(self, labels):
    """This E read as E(x, y) for chains of labels y [B] (a conditional E)."""
    return ChainEnergy(self.energy, self.groups, self._phases, labels)

  def _forward(self, x):
    if self._layers is None:
      return conditioning.energy(self.energy(x, training=False), self.labels)
    h = x
    for index, layer in enumerate(self._layers):
      if index not in self._phases:
        h = layer(h, training=False)
        continue
      h = phase_gradient_conv(h, *self._phases[index])
      if layer.use_bias:
        h = h + layer.bias
      if layer.activation is not None:
        h = layer.activation(h)
    return conditioning.energy(h, self.labels)

  def __call__(self, x):
    return self._forward(x)

  def value_and_gradient(self, x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      energy = self._forward(x)
      total = tf.reduce_sum(energy)
    return energy, tape.gradient(total, x)

  def split(self, x):
    """x [B, ...] in `groups` parts whose sizes differ by at most one; never an empty one
    (a replica's batch can be smaller than the groups)."""
    return [part for _, part in self.split_chains(x)]

  def split_chains(self, x):
    """[(the E of a group's chains, the group's x)] for `split`'s groups (each E with its
    chains' labels)."""
    groups = min(self.groups, x.shape[0] or self.groups)
    if groups == 1:
      return [(self, x)]
    size = tf.shape(x)[0]
    # Sizes differing by at most one, summing to the batch (Hermite's identity).
    sizes = tf.stack([(size + i) // groups for i in range(groups)])
    parts = tf.split(x, sizes, num=groups)
    if self.labels is None:
      return [(self, part) for part in parts]
    return [(self.with_labels(labels), part)
            for labels, part in zip(tf.split(self.labels, sizes, num=groups), parts)]


def cpu_cores():
  """Cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


# The fewest samples a group gets by default: smaller groups gain nothing on a many-core CPU.
MIN_GROUP = 8


def resolve_groups(config, jit_compile):
  """The chain groups of a run's training chains: 1 without data-space chains (no E, or
  latent chains); --chain_groups, at most the batch; for 0, one per core (at least
  `MIN_GROUP` samples each) on a CPU-only machine when the step runs as a graph (not XLA,
  whose one compiled cluster runs its ops in order) under the default strategy; else 1."""
  run, batch = config.run, config.train.batch_size
  if not config.use_energy or config.train_sampler.space != 'data':
    return 1
  if run.chain_groups:
    return min(run.chain_groups, batch)
  if jit_compile or run.strategy != 'default' or tf.config.list_physical_devices('GPU'):
    return 1
  return max(1, min(cpu_cores(), batch // MIN_GROUP))


def configure_threads(groups):
  """With groups > 1: TF's intra-op threads 1, so that the inter-op pool (one thread per
  core) runs the groups side by side, one core each. Takes effect only before TF runs its
  first op in the process; returns False when it came too late (the groups then still
  give the same result, only without the speed)."""
  current = (tf.config.threading.get_intra_op_parallelism_threads()
              or int(os.environ.get('TF_NUM_INTRAOP_THREADS') or 0))
  if groups > 1 and current != 1:
    try:
      tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:  # TF already ran ops in this process (a library caller, tests)
      return False
  return True
