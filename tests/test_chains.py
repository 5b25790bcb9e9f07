"""tfganebm.chains: chains in batches, the compiled-chain cache, chains_at."""

import numpy as np
import pytest
import tensorflow as tf

from tfganebm import chains
from tfganebm import langevin


@pytest.mark.parametrize('space, metropolis, batch, proposal, jump_prob', [
    ('data', False, None, 'langevin', 1.0), ('data', True, None, 'langevin', 1.0),
    ('latent', False, None, 'langevin', 1.0), ('latent', True, None, 'langevin', 1.0),
    ('data', False, 16, 'langevin', 1.0), ('latent', True, 16, 'langevin', 1.0),
    ('latent', False, None, 'prior', 1.0), ('latent', False, 16, 'prior', 1.0),
    ('latent', False, 16, 'prior', 0.4)])  # jumps and local moves mixed
def test_chains_scored_at_several_lengths_are_one_chain(space, metropolis, batch, proposal,
                                                        jump_prob, monkeypatch):
  """chains.chains_at runs one chain in segments: its state at k steps is the state of
  one k-step chain from the same seed (draw_samples), in either space, also when the
  chains run in batches (16 of 2 values: 4 batches of the 50 chains)."""
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top
  from tfganebm.sampler import SamplerConfig  # pylint: disable=g-import-not-at-top
  if batch:
    monkeypatch.setattr(chains, 'CHAIN_BATCH_VALUES', 2 * batch)
  model = model_lib.build(tiny_config(), (2,), inference=True)
  sampler = SamplerConfig(steps=7, step_size=0.02, noise=0.2, metropolis=metropolis,
                          space=space, proposal=proposal, jump_prob=jump_prob)
  scored = dict(chains.chains_at(model, 50, 3, sampler, [7, 0, 3]))
  assert sorted(scored) == [0, 3, 7]
  x_gen, x_7, trajectory = chains.draw_samples(model, 50, 3, sampler, record_every=7,
                                                   record_chains=20)
  np.testing.assert_allclose(scored[0], x_gen)
  np.testing.assert_allclose(scored[7], x_7, atol=1e-5)
  assert not np.allclose(scored[3], scored[7])
  assert trajectory.shape == (2, 20, 2)  # chains 0-19, across two batches of 16
  np.testing.assert_allclose(trajectory[-1], x_7[:20], atol=1e-5)


def test_each_batch_of_chains_has_its_own_noise_seed():
  rng = tf.random.Generator.from_seed(5)
  state = rng.state.numpy()
  one = chains._chain_seeds(rng, 10, 16)  # pylint: disable=protected-access
  rng.reset(state)  # one batch: the seed that one unbatched chain draws from the stream
  np.testing.assert_array_equal(one[0], langevin.NoiseStream.of(rng).seed)
  seeds = chains._chain_seeds(rng, 50, 16)  # pylint: disable=protected-access
  assert len({tuple(seed.numpy()) for seed in seeds}) == 4
