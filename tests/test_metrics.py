"""Sample-quality metrics on samples with known answers."""

import numpy as np
import pytest

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


def test_mode_balance_is_the_kl_of_per_mode_counts_to_uniform():
  points, _ = data.load_points('25gaussians', 10000, None, 0)
  mixture = points.mixture
  balanced = metrics.mode_metrics(points.x, mixture.centres, mixture.std)
  assert balanced['mode_kl'] < 0.01  # sampling noise only
  assert len(balanced['mode_fractions']) == 25
  np.testing.assert_allclose(sum(balanced['mode_fractions']), balanced['high_quality_fraction'])
  one_mode = metrics.mode_metrics(np.repeat(mixture.centres[:1], 100, 0), mixture.centres,
                                  mixture.std)
  np.testing.assert_allclose(one_mode['mode_kl'], np.log(25))
  # Two modes at 3:1 hold all samples: KL = sum p log(25 p).
  skewed = np.concatenate([np.repeat(mixture.centres[:1], 300, 0),
                           np.repeat(mixture.centres[1:2], 100, 0)])
  result = metrics.mode_metrics(skewed, mixture.centres, mixture.std)
  np.testing.assert_allclose(result['mode_kl'], 0.75 * np.log(25 * 0.75) + 0.25 * np.log(25 * 0.25))
  assert result['mode_fractions'][:2] == [0.75, 0.25]
  assert metrics.mode_metrics(mixture.centres[:5] + 0.2, mixture.centres, mixture.std)['mode_kl'] is None


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


def test_frechet_distance_of_gaussians_matches_the_closed_form():
  # N(0, I) vs N(m, s^2 I) in d dims: |m|^2 + d (1 - s)^2.
  rng = np.random.default_rng(0)
  d, n, shift, scale = 8, 200000, 0.5, 2.0
  a = rng.standard_normal((n, d))
  b = shift + scale * rng.standard_normal((n, d))
  expected = d * shift ** 2 + d * (1 - scale) ** 2
  assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
  assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
  # A correlated covariance: sqrt(C_a C_b) must be the matrix root, not an elementwise one.
  mix = rng.standard_normal((d, d))
  c = a @ mix
  cov = mix.T @ mix
  values = np.linalg.eigvalsh(cov)
  expected = np.trace(np.eye(d)) + np.trace(cov) - 2 * np.sqrt(values).sum()
  assert metrics.frechet_distance(a, c) == pytest.approx(expected, rel=0.03)


def test_kid_is_unbiased_near_zero_and_grows_with_a_shift():
  rng = np.random.default_rng(1)
  a, b = rng.standard_normal((3000, 16)), rng.standard_normal((3000, 16))
  same, _ = metrics.kernel_inception_distance(a, b)
  shifted, _ = metrics.kernel_inception_distance(a, b + 0.5)
  assert abs(same) < 0.01 and shifted > 0.05


def test_class_coverage_extremes():
  uniform = np.eye(10)[np.arange(1000) % 10]
  even = metrics.class_coverage(uniform)
  assert even['class_kl'] == pytest.approx(0.0) and even['classes_covered'] == 10
  one = metrics.class_coverage(np.eye(10)[np.full(100, 3)])
  assert one['class_kl'] == pytest.approx(np.log(10)) and one['classes_covered'] == 1
  assert one['class_histogram'][3] == 1.0
  unsure = metrics.class_coverage(np.full((5, 10), 0.1))
  assert unsure['confidence'] == pytest.approx(0.1)


def test_laplacian_pyramid_adds_back_to_the_image():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
  levels = metrics._pyramid_levels(x)  # pylint: disable=protected-access
  assert [level.shape[1] for level in levels] == [64, 32, 16]
  image = levels[-1]
  for detail in reversed(levels[:-1]):  # expand and add, the inverse of the pyramid
    up = np.zeros_like(detail)
    up[:, ::2, ::2] = image
    image = detail + 4 * metrics._blur(up)  # pylint: disable=protected-access
  np.testing.assert_allclose(image, x, atol=1e-5)


def test_pyramid_swd_is_near_zero_for_one_distribution_and_grows_with_blur():
  rng = np.random.default_rng(1)
  smooth = lambda n: metrics._blur(rng.uniform(-1, 1, (n, 32, 32, 1)).astype(np.float32))  # pylint: disable=protected-access
  a, b = smooth(300), smooth(300)
  same = metrics.pyramid_sliced_wasserstein(a, b)
  blurred = metrics.pyramid_sliced_wasserstein(a, metrics._blur(b))  # pylint: disable=protected-access
  assert same['swd_level_sizes'] == [32, 16] and len(same['swd_levels']) == 2
  assert same['swd'] < 0.4 * blurred['swd']
  # The finest level sees the lost detail most; the descriptors are normalised per set, so
  # a change of contrast alone is not a difference.
  assert blurred['swd_levels'][0] > blurred['swd_levels'][1]
  contrast = metrics.pyramid_sliced_wasserstein(a, 0.5 * b)
  assert contrast['swd'] == pytest.approx(same['swd'], rel=0.05)
