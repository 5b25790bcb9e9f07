"""E and grad_x E for the chains: stride-2 input gradients as stride-1 convolutions, groups."""

import numpy as np
import pytest
import tensorflow as tf

from tfganebm import chain_energy
from tfganebm import data
from tfganebm import langevin
from tfganebm import model as model_lib
from tfganebm import networks


@pytest.mark.parametrize('size, kernel_size', [(28, 5), (14, 3), (7, 3), (4, 3), (9, 4)])
def test_stride_two_transpose_is_the_input_gradient_of_a_strided_convolution(size, kernel_size):
  rng = np.random.default_rng(size)
  x = tf.constant(rng.standard_normal((3, size, size, 2)), tf.float32)
  kernel = tf.constant(rng.standard_normal((kernel_size, kernel_size, 2, 5)), tf.float32)
  y = tf.nn.conv2d(x, kernel, 2, 'SAME')
  dy = tf.constant(rng.standard_normal(y.shape), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    total = tf.reduce_sum(tf.nn.conv2d(x, kernel, 2, 'SAME') * dy)
  expected = tape.gradient(total, x)
  pad = chain_energy.same_pad_before(size, y.shape[1], kernel_size)
  np.testing.assert_allclose(chain_energy.stride_two_transpose(dy, kernel, pad, (size, size)),
                             expected, atol=1e-4)
  phases = chain_energy.phase_kernel(kernel, pad)  # made once, used for many calls
  np.testing.assert_allclose(
      chain_energy.stride_two_transpose(dy, kernel, pad, (size, size), phases), expected,
      atol=1e-4)


def _tape(energy, x):
  with tf.GradientTape() as tape:
    tape.watch(x)
    values = tf.reshape(energy(x, training=False), [-1])
    total = tf.reduce_sum(values)
  return values, tape.gradient(total, x)


@pytest.mark.parametrize('image', [True, False])
def test_chain_energy_is_e_and_its_input_gradient(image):
  """Prepared (the first convolution's input gradient as stride_two_transpose) or not: the
  same energies and gradients as a tape on E."""
  tf.random.set_seed(0)
  if image:
    energy = networks.conv_energy((28, 28, 1), units=(8, 16))
    x = tf.random.uniform([7, 28, 28, 1], -1, 1)
  else:
    energy = networks.mlp_energy((2,), units=(16, 16))
    x = tf.random.uniform([7, 2], -1, 1)
  expected = _tape(energy, x)
  chain = chain_energy.ChainEnergy(energy)
  prepared = chain.prepared()
  assert len(prepared._phases) == (1 if image else 0)  # pylint: disable=protected-access
  for fn in (chain, prepared):
    values, grad = fn.value_and_gradient(x)
    np.testing.assert_allclose(values, expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fn(x), expected[0], rtol=1e-5, atol=1e-6)
  compiled = tf.function(lambda x: prepared.value_and_gradient(x)[1])  # graph mode
  np.testing.assert_allclose(compiled(x), expected[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('metropolis, record_every', [(False, 0), (True, 0), (False, 2)])
def test_chain_groups_are_chains_of_their_own(metropolis, record_every):
  """3 groups of 7 chains (2, 2, 3): each group is the one-group chain of its samples on its
  own noise stream, so the groups draw different noise (no group repeats another's)."""
  energy = networks.mlp_energy((2,), units=(16, 16))
  x = tf.random.uniform([7, 2], -1, 1, seed=3)
  stream = langevin.NoiseStream(tf.constant([5, 6], tf.int64))
  run = lambda fn, x, draws: langevin.langevin(fn, x, draws, 6, 0.05, 0.1,
                                              metropolis=metropolis, record_every=record_every)
  grouped = run(chain_energy.ChainEnergy(energy, 3), x, stream)
  one = chain_energy.ChainEnergy(energy)
  parts = [run(one, part, stream.group(g)) for g, part in enumerate((x[:2], x[2:4], x[4:]))]
  if record_every:
    np.testing.assert_allclose(grouped[1], tf.concat([p[1] for p in parts], 1), atol=1e-6)
    grouped, parts = grouped[0], [p[0] for p in parts]
  np.testing.assert_allclose(grouped, tf.concat(parts, 0), atol=1e-6)
  assert not np.allclose(grouped, run(one, x, stream)[0] if record_every else run(one, x, stream))


def test_chain_energy_leaves_a_wrapped_convolution_its_own_op():
  energy = networks.conv_energy((28, 28, 1), units=(4, 8), spectral_norm=True)
  assert not chain_energy.ChainEnergy(energy).prepared()._phases  # pylint: disable=protected-access


def test_a_train_step_in_chain_groups_is_the_step_in_one(tiny):
  """The step's chains in 3 groups (batch 32: 11, 11, 10), without noise (which the groups
  draw from their own streams), update the networks as in one."""
  train, _ = data.load_points('moons', 256, None, 0)
  x_real = tf.constant(train.x[:32])
  weights = []
  for groups in (1, 3):
    model = model_lib.build(tiny(chain_groups=groups, train_langevin_noise=0.0), (2,))
    assert model.chain_energy.groups == groups
    model.train_step(x_real)
    weights.append([w.numpy() for n in (model.generator, model.discriminator, model.energy)
                    for w in n.weights])
  for one, three in zip(*weights):
    np.testing.assert_allclose(three, one, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(bool(tf.config.list_physical_devices('GPU')), reason='CPU rule')
def test_groups_default_to_the_cores_for_a_graph_step_on_cpu(tiny):
  cores = chain_energy.cpu_cores()
  assert chain_energy.resolve_groups(tiny(), jit_compile=False) == min(cores, 32 // 8)
  assert chain_energy.resolve_groups(tiny(batch_size=8), jit_compile=False) == 1
  assert chain_energy.resolve_groups(tiny(), jit_compile=True) == 1
  assert chain_energy.resolve_groups(tiny(strategy='mirrored'), jit_compile=False) == 1
  assert chain_energy.resolve_groups(tiny(chain_groups=3), jit_compile=True) == 3
  assert chain_energy.resolve_groups(tiny(chain_groups=50), jit_compile=True) == 32  # the batch
  assert chain_energy.resolve_groups(tiny(model='gan'), jit_compile=False) == 1  # no chains
  assert chain_energy.resolve_groups(tiny(train_langevin_space='latent', buffer_reuse_prob=0.0),
                                     jit_compile=False) == 1  # chains in z, not on E alone


def test_a_conv_chain_in_more_groups_than_samples_is_the_plain_chain():
  """langevin.langevin prepares the ChainEnergy before its loop (the first convolution's
  phase gradient) and never makes an empty group: 4 groups for 3 chains, in a tf.function,
  give the chain that a tape on E gives (without noise, which each group draws from its own
  stream)."""
  tf.random.set_seed(1)
  energy = networks.conv_energy((28, 28, 1), units=(8, 16))
  x = tf.random.uniform([3, 28, 28, 1], -1, 1)
  energy_of = lambda x: tf.reshape(energy(x, training=False), [-1])

  def chain(fn):
    rng = tf.random.Generator.from_seed(5, alg='philox')
    return tf.function(lambda x: langevin.langevin(fn, x, rng, 4, 1.0, 0.0, grad_clip=1.0))(x)

  assert len(chain_energy.ChainEnergy(energy, 4).split(x)) == 3
  np.testing.assert_allclose(chain(chain_energy.ChainEnergy(energy, 4)), chain(energy_of),
                             atol=1e-5)


def test_threads_set_too_late_are_reported(monkeypatch):
  def refuse(_):
    raise RuntimeError('Intra op parallelism cannot be modified after initialization.')
  monkeypatch.setattr(tf.config.threading, 'get_intra_op_parallelism_threads', lambda: 0)
  monkeypatch.setattr(tf.config.threading, 'set_intra_op_parallelism_threads', refuse)
  monkeypatch.setenv('TF_NUM_INTRAOP_THREADS', '2')
  assert not chain_energy.configure_threads(2)
  monkeypatch.setenv('TF_NUM_INTRAOP_THREADS', '1')  # one thread per op already
  assert chain_energy.configure_threads(2)
  assert chain_energy.configure_threads(1)  # one group needs nothing
