"""2D datasets and the resumable batch pipeline."""

import numpy as np
import pytest

from tfganebm import config as config_lib
from tfganebm import data


@pytest.mark.parametrize('name', ['moons', 'swissroll'])
def test_min_max_datasets_fill_minus_one_to_one(name):
  train, held_out = data.load_points(name, 2000, None, 0)
  np.testing.assert_allclose(train.x.min(0), [-1, -1], atol=1e-6)
  np.testing.assert_allclose(train.x.max(0), [1, 1], atol=1e-6)
  assert train.x.dtype == np.float32 and train.x.shape == (2000, 2)
  assert not np.array_equal(train.x, held_out.x)
  assert np.abs(held_out.x).max() < 1.2  # same scaling, a different draw


def test_25_gaussians_is_the_grid_with_std_one_percent():
  points, _ = data.load_points('25gaussians', 50000, None, 0)
  centres = points.mixture.centres
  np.testing.assert_allclose(sorted(set(np.round(centres[:, 0], 6))), [-0.8, -0.4, 0, 0.4, 0.8],
                             atol=1e-6)
  nearest = np.argmin(((points.x[:, None] - centres[None]) ** 2).sum(-1), 1)
  offsets = points.x - centres[nearest]
  np.testing.assert_allclose(offsets.std(0), [0.01, 0.01], rtol=0.03)
  assert points.mixture.std == pytest.approx(0.01)
  counts = np.bincount(nearest, minlength=25)
  assert counts.min() > 0.9 * 2000 and counts.max() < 1.1 * 2000


def test_8_gaussians_is_a_ring_of_radius_0_8():
  points, _ = data.load_points('8gaussians', 20000, None, 0)
  np.testing.assert_allclose(np.linalg.norm(points.mixture.centres, axis=1), 0.8, rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(points.x, axis=1).mean(), 0.8, atol=0.002)
  assert points.mixture.std == pytest.approx(0.008)


def test_batches_resume_at_any_step():
  x = np.arange(100, dtype=np.float32).reshape(50, 2)
  full = [b.numpy() for b in data.batches(x, 8, seed=3, num_steps=14)]
  resumed = [b.numpy() for b in data.batches(x, 8, seed=3, start_step=9, num_steps=5)]
  for a, b in zip(full[9:], resumed):
    np.testing.assert_array_equal(a, b)
  # One epoch (6 batches of 8 out of 50) holds no repeated example; the next is reshuffled.
  epoch = np.concatenate(full[:6])[:, 0]
  assert len(np.unique(epoch)) == 48
  assert not np.array_equal(full[0], full[6])


def test_batch_larger_than_dataset_is_refused():
  with pytest.raises(ValueError, match='batch size'):
    data.batches(np.zeros((10, 2), np.float32), 16, seed=0)


@pytest.mark.parametrize('name', ['moons', 'swissroll'])
def test_more_held_out_points_than_training_points_share_the_training_scaling(name):
  """The held-out points of a large evaluation (10,000 samples need 20,000) are mapped to
  [-1, 1] by the *training* points' min-max, not by a larger draw's: else they sit on a
  slightly stretched copy of the data, worse than the model's samples by the stretch."""
  from tfganebm import metrics  # pylint: disable=g-import-not-at-top
  data_config = config_lib.Config().override(dataset=name).data
  small = data.load(data_config, 0, num_held_out=4000)
  large = data.load(data_config, 0, num_held_out=20000)
  np.testing.assert_array_equal(small.train, large.train)
  gap = metrics.sliced_wasserstein(large.train[:10000], large.held_out[:10000])
  floor = metrics.sliced_wasserstein(large.held_out[:10000], large.held_out[10000:])
  assert gap < 1.5 * floor
