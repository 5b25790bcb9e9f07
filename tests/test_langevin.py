"""The Langevin sampler against energies whose samples are known in closed form."""

import numpy as np
import pytest
import tensorflow as tf

from tfganebm import langevin


def _gaussian_energy(mean, std):
  return lambda x: tf.reduce_sum(tf.square(x - mean), axis=1) / (2 * std**2)


def _run(energy_fn, x_init, steps, step_size, noise, seed=0, **kwargs):
  rng = tf.random.Generator.from_seed(seed)
  run = tf.function(lambda x: langevin.langevin(energy_fn, x, rng, steps, step_size, noise,
                                                **kwargs))
  return run(tf.constant(x_init, tf.float32))


@pytest.mark.parametrize('mean, std, step_size, low, high', [
    (0.0, 1.0, 0.01, -10.0, 10.0),   # E = |x|^2 / 2
    (0.3, 0.2, 0.002, -1.0, 1.0),    # a narrow Gaussian inside the data range
])
def test_langevin_samples_gaussian_energy(mean, std, step_size, low, high):
  # Unadjusted Langevin with noise sqrt(2 eta) on a Gaussian of variance s^2 is an
  # AR(1) chain with stationary variance s^2 / (1 - eta / (2 s^2)).
  chains, steps = 4000, int(20 * std**2 / step_size)
  x_init = np.full((chains, 2), mean + 3 * std, np.float32)  # start far out: tests the drift
  x = _run(_gaussian_energy(mean, std), x_init, steps, step_size, np.sqrt(2 * step_size),
           low=low, high=high).numpy()
  expected_var = std**2 / (1 - step_size / (2 * std**2))
  np.testing.assert_allclose(x.mean(0), [mean, mean], atol=4 * std / np.sqrt(chains))
  np.testing.assert_allclose(x.var(0), [expected_var] * 2, rtol=4 * np.sqrt(2 / chains))


@pytest.mark.parametrize('temperature, jump_prob, local_beta', [
    (1.0, 1.0, 1.0), (0.5, 1.0, 1.0),  # independence MH: every step a fresh z
    (0.5, 0.3, 0.2),                   # mostly local moves, which must keep the target too
    (0.5, 0.0, 0.5),                   # local moves alone (preconditioned Crank-Nicolson)
])
def test_prior_chain_samples_a_tilted_prior(temperature, jump_prob, local_beta):
  """N(0, I) exp(-V(z) / T) with V(z) = z_1 / 2 is N((-1 / (2 T), 0), I): only V is
  tempered, the prior stays N(0, I) (its terms cancel from the acceptance ratio only
  because each proposal keeps it), and the chains forget their start."""
  chains = 4000
  potential = lambda z: 0.5 * z[:, 0]
  rng = tf.random.Generator.from_seed(2)
  z_init = np.full((chains, 2), 3.0, np.float32)
  run = tf.function(lambda z: langevin.prior_chain(potential, z, rng, 150, temperature,
                                                   jump_prob, local_beta))
  z = run(tf.constant(z_init)).numpy()
  np.testing.assert_allclose(z.mean(0), [-0.5 / temperature, 0.0], atol=5 / np.sqrt(chains))
  np.testing.assert_allclose(z.var(0), [1.0, 1.0], rtol=5 * np.sqrt(2 / chains))


def test_prior_step_local_moves_stay_close():
  """beta < 1 proposes sqrt(1 - beta^2) z + beta eps: with a flat potential every proposal
  is taken, and a step moves z by about beta |eps| rather than to a fresh draw."""
  z = tf.fill([1000, 4], 2.0)
  noise = tf.random.stateless_normal([1000, 4], [0, 1])
  flat = lambda v: tf.zeros([tf.shape(v)[0]])
  moved, _, accepted = langevin.prior_step(flat, z, flat(z), noise, tf.fill([1000], 0.5), 1.0,
                                           0.1)
  assert bool(tf.reduce_all(accepted))
  np.testing.assert_allclose(moved.numpy(), np.sqrt(1 - 0.01) * 2.0 + 0.1 * noise.numpy(),
                             rtol=1e-6)
  jumped = langevin.prior_step(flat, z, flat(z), noise, tf.fill([1000], 0.5), 1.0, 1.0)[0]
  np.testing.assert_allclose(jumped.numpy(), noise.numpy(), rtol=1e-6)


def test_langevin_is_reproducible_from_seed():
  x_init = np.zeros((16, 2), np.float32)
  energy = _gaussian_energy(0.0, 1.0)
  first = _run(energy, x_init, 20, 0.01, 0.1, seed=3).numpy()
  second = _run(energy, x_init, 20, 0.01, 0.1, seed=3).numpy()
  other = _run(energy, x_init, 20, 0.01, 0.1, seed=4).numpy()
  np.testing.assert_array_equal(first, second)
  assert not np.allclose(first, other)


def test_gradient_clip_bounds_each_samples_step():
  # E = 50 |x|^2 has gradient 100 x: unclipped, one step of eta=0.1 would move 10 |x|.
  x_init = np.array([[0.5, 0.0], [0.0, -0.3], [0.001, 0.0]], np.float32)
  x = _run(lambda x: 50 * tf.reduce_sum(x * x, 1), x_init, 1, 0.1, 0.0, grad_clip=0.5).numpy()
  moved = np.linalg.norm(x - x_init, axis=1)
  np.testing.assert_allclose(moved[:2], [0.05, 0.05], rtol=1e-5)   # clipped to eta * 0.5
  np.testing.assert_allclose(moved[2], 0.1 * 100 * 0.001, rtol=1e-4)  # small gradient untouched


def test_langevin_keeps_chains_in_data_range():
  # A linear energy pushes every chain towards +inf; the clip holds them at 1.
  x = _run(lambda x: -tf.reduce_sum(x, 1), np.zeros((8, 2), np.float32), 50, 0.1, 0.05).numpy()
  assert x.max() <= 1.0 and x.min() >= -1.0
  np.testing.assert_allclose(x.mean(), 1.0, atol=0.05)


def test_trajectory_records_every_kth_state():
  x_init = np.random.default_rng(0).uniform(-1, 1, (8, 2)).astype(np.float32)
  energy = _gaussian_energy(0.0, 0.5)
  x, trajectory = _run(energy, x_init, 50, 0.01, 0.1, record_every=10)
  assert trajectory.shape == (6, 8, 2)
  np.testing.assert_array_equal(trajectory[0], x_init)
  np.testing.assert_array_equal(trajectory[-1], x)
  x_10 = _run(energy, x_init, 10, 0.01, 0.1)
  np.testing.assert_allclose(trajectory[1], x_10, atol=1e-6)  # same seed, same first 10 steps


def test_metropolis_adjusted_langevin_is_exact_at_a_large_step():
  # eta = 0.5 on E = |x|^2 / 2: unadjusted Langevin would have variance 1 / (1 - eta / 2) = 4/3;
  # the Metropolis correction removes that bias (and rejects proposals outside the range).
  chains, step_size = 4000, 0.5
  x = _run(_gaussian_energy(0.0, 1.0), np.full((chains, 2), 2.0, np.float32), 400, step_size,
           np.sqrt(2 * step_size), low=-10.0, high=10.0, metropolis=True).numpy()
  np.testing.assert_allclose(x.mean(0), [0, 0], atol=4 / np.sqrt(chains))
  np.testing.assert_allclose(x.var(0), [1, 1], rtol=4 * np.sqrt(2 / chains))


def test_metropolis_chain_samples_a_cold_narrow_well_inside_the_range():
  # T = noise^2 / (2 eta) = 0.25 on E = |x - 0.5|^2 / (2 * 0.2^2): target std 0.2 * sqrt(T) = 0.1.
  step_size, noise = 0.02, 0.1
  x, trajectory = _run(_gaussian_energy(0.5, 0.2), np.full((4000, 2), -0.9, np.float32), 600,
                       step_size, noise, metropolis=True, record_every=100)
  x = x.numpy()
  assert trajectory.shape == (7, 4000, 2)
  assert np.abs(x).max() <= 1.0
  np.testing.assert_allclose(x.mean(0), [0.5, 0.5], atol=0.01)
  np.testing.assert_allclose(x.std(0), [0.1, 0.1], rtol=0.05)


@pytest.mark.parametrize('jump_prob', [1.0, 0.4])  # jumps only; jumps and local moves
def test_a_prior_chain_in_segments_is_one_chain(jump_prob):
  """NoiseStream(seed, first_step) for the prior proposals too: 3 steps and then 4 more
  draw what 7 steps draw (the quality curves read latent chains at several lengths). Fails
  if a segment restarted the stream (its second part would repeat the first's draws)."""
  potential = lambda z: 0.5 * tf.reduce_sum(tf.square(z - 1.0), 1)
  z = tf.constant(np.random.default_rng(2).standard_normal((64, 3)), tf.float32)
  run = lambda z, first, steps: langevin.prior_chain(
      potential, z, langevin.NoiseStream(tf.constant([8, 9], tf.int64), first), steps, 0.5,
      jump_prob, local_beta=0.3)
  whole = run(z, 0, 7)
  assert not np.allclose(whole, z)
  np.testing.assert_allclose(run(run(z, 0, 3), 3, 4), whole, atol=1e-6)
  assert not np.allclose(run(run(z, 0, 3), 0, 4), whole, atol=1e-3)


@pytest.mark.parametrize('xla', [False, True])
@pytest.mark.parametrize('chain', ['langevin', 'prior'])
def test_a_chain_on_a_generator_draws_one_seed_from_it(chain, xla):
  """Given a tf.random.Generator, a chain draws one seed from it (`NoiseStream.of`), in graph
  mode and under XLA: it is the chain of NoiseStream(that seed), and the generator moves on
  by that one draw, so the next chain (the next training step, the next batch of an
  evaluation) has noise of its own and a seeded run or a resume draws the same. Fails if a
  chain took a fixed seed or did not advance the generator (every step's chains would share
  their noise), or drew more than one seed from it (the streams after it would shift)."""
  energy_fn = _gaussian_energy(0.2, 0.3)
  x = tf.constant(np.random.default_rng(1).uniform(-1, 1, (16, 2)), tf.float32)
  if chain == 'langevin':
    run = lambda x, draws: langevin.langevin(energy_fn, x, draws, 5, 0.01, 0.1)
  else:
    run = lambda x, draws: langevin.prior_chain(energy_fn, x, draws, 5, 0.5, 0.5)
  run = tf.function(run, jit_compile=xla)
  rng = tf.random.Generator.from_seed(7, alg='philox')
  copy = tf.random.Generator.from_state(rng.state.numpy(), rng.algorithm)
  first = run(x, rng)
  np.testing.assert_allclose(first, run(x, langevin.NoiseStream(copy.make_seeds(1)[:, 0])),
                             atol=1e-6)
  np.testing.assert_array_equal(rng.state, copy.state)
  second = run(x, rng)
  assert not np.allclose(first, second, atol=1e-3)
  np.testing.assert_allclose(second, run(x, langevin.NoiseStream(copy.make_seeds(1)[:, 0])),
                             atol=1e-6)


@pytest.mark.parametrize('shape', [(64, 28, 28, 1), (7, 3), (1,)])
@pytest.mark.parametrize('xla', [False, True])
def test_standard_normal_is_standard_normal_in_any_shape(shape, xla):
  """In graph mode and under XLA: the shape asked for (odd sizes too), mean 0, variance 1,
  a normal's tails, no two steps alike, the same draw from the same seed."""
  like = tf.zeros(shape)
  compiled = tf.function(lambda step: langevin.standard_normal(like, tf.stack([3, step])),
                         jit_compile=xla)
  draw = lambda step: compiled(tf.constant(step))  # one trace
  draws = np.concatenate([draw(i).numpy().ravel()
                          for i in range(2000 // int(np.prod(shape)) + 40)])
  assert draw(0).shape == shape
  assert abs(draws.mean()) < 5 / np.sqrt(draws.size)
  assert abs(draws.var() - 1) < 5 * np.sqrt(2 / draws.size)
  assert abs(np.mean(np.abs(draws) > 1.96) - 0.05) < 5 * np.sqrt(0.05 * 0.95 / draws.size)
  np.testing.assert_array_equal(draw(1), draw(1))
  assert not np.allclose(draw(1), draw(2))


@pytest.mark.parametrize('metropolis', [False, True])
def test_a_chain_in_segments_is_one_chain(metropolis):
  """NoiseStream(seed, first_step): 3 steps and then 4 more draw what 7 steps draw."""
  energy_fn = _gaussian_energy(0.2, 0.3)
  x = tf.constant(np.random.default_rng(1).uniform(-1, 1, (16, 2)), tf.float32)
  run = lambda x, first, steps: langevin.langevin(
      energy_fn, x, langevin.NoiseStream(tf.constant([4, 5], tf.int64), first), steps, 0.01,
      0.1, metropolis=metropolis)
  whole = run(x, 0, 7)
  np.testing.assert_allclose(run(run(x, 0, 3), 3, 4), whole, atol=1e-6)
  assert not np.allclose(run(run(x, 0, 3), 0, 4), whole, atol=1e-3)
