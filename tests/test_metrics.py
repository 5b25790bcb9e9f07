"""Sample-quality metrics on samples with known answers."""

import numpy as np

from tfganebm import data
from tfganebm import metrics


def test_sliced_wasserstein_of_a_shift():
  x = np.random.default_rng(0).standard_normal((4000, 2))
  assert metrics.sliced_wasserstein(x, x) == 0.0
  # A shift by d along one axis moves each projection by d cos(theta): SW2 = d / sqrt(2).
  shifted = metrics.sliced_wasserstein(x, x + [0.5, 0.0], num_projections=4096)
  np.testing.assert_allclose(shifted, 0.5 / np.sqrt(2), rtol=0.03)


def test_mmd_separates_distributions():
  rng = np.random.default_rng(0)
  same = metrics.mmd2(rng.uniform(-1, 1, (1000, 2)), rng.uniform(-1, 1, (1000, 2)))
  other = metrics.mmd2(rng.uniform(-1, 1, (1000, 2)), rng.uniform(-0.5, 0.5, (1000, 2)))
  assert abs(same) < 0.01 and other > 0.1


def test_mode_metrics_count_recovered_modes():
  points, _ = data.load_points('25gaussians', 2500, None, 0)
  mixture = points.mixture
  exact = metrics.mode_metrics(points.x, mixture.centres, mixture.std)
  assert exact['modes_recovered'] == 25
  assert exact['high_quality_fraction'] > 0.98  # 3 std in 2D holds 98.9 % of a Gaussian
  np.testing.assert_allclose(exact['high_quality_std'], 0.01, rtol=0.05)
  collapsed = np.repeat(mixture.centres[:3], 800, axis=0)
  result = metrics.mode_metrics(collapsed, mixture.centres, mixture.std)
  assert result['modes_recovered'] == 3 and result['high_quality_fraction'] == 1.0
  between = mixture.centres[:5] + 0.2  # half-way between grid points
  assert metrics.mode_metrics(between, mixture.centres, mixture.std)['high_quality_fraction'] == 0


def test_grid_log_density_normalises_a_gaussian():
  axis = np.linspace(-1, 1, 401)
  xx, yy = np.meshgrid(axis, axis)
  energies = (xx**2 + yy**2) / (2 * 0.1**2)
  cell = (axis[1] - axis[0]) ** 2
  log_density, log_z = metrics.grid_log_density(energies, cell)
  np.testing.assert_allclose(np.exp(log_density).sum() * cell, 1.0, rtol=1e-9)
  np.testing.assert_allclose(log_z, np.log(2 * np.pi * 0.1**2), rtol=1e-3)


def test_sliced_wasserstein_compares_samples_of_different_sizes():
  rng = np.random.default_rng(1)
  x, y = rng.standard_normal((3000, 2)), rng.standard_normal((1000, 2))
  assert metrics.sliced_wasserstein(x, y) < 0.08
  np.testing.assert_allclose(metrics.sliced_wasserstein(x, y + [0.0, 1.0]), 1 / np.sqrt(2),
                             rtol=0.1)
