"""Sample-quality metrics, numpy only; lower distances are better.

For 2D data: sliced Wasserstein distance and MMD to held-out real data, the
nearest-neighbour distances between samples and data, and for Gaussian
mixtures the mode-collapse metrics of the literature (modes recovered,
fraction of high-quality samples and their std).
"""

import numpy as np

# Kernel bandwidths of the MMD, in data units ([-1, 1]): from the width of a
# 25-Gaussians mode (0.01) to the size of a whole moon (0.3).
MMD_BANDWIDTHS = (0.01, 0.03, 0.1, 0.3)


def _flat(x):
  x = np.asarray(x, np.float64)
  return x.reshape(len(x), -1)


def sliced_wasserstein(x, y, num_projections=256, seed=0):
  """Sliced 2-Wasserstein distance between two samples [n, d] and [m, d].

  sqrt(mean over random unit directions of W2^2 between the 1D projections);
  different sizes are compared at min(n, m) common quantile levels.
  """
  x, y = _flat(x), _flat(y)
  directions = np.random.default_rng(seed).standard_normal((x.shape[1], num_projections))
  directions /= np.linalg.norm(directions, axis=0, keepdims=True)
  px, py = np.sort(x @ directions, axis=0), np.sort(y @ directions, axis=0)
  if len(px) != len(py):
    levels = (np.arange(min(len(x), len(y))) + 0.5) / min(len(x), len(y))
    px, py = (np.quantile(p, levels, axis=0, method='linear') for p in (px, py))
  return float(np.sqrt(np.mean((px - py) ** 2)))


def _squared_distances(a, b):
  return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def mmd2(x, y, bandwidths=MMD_BANDWIDTHS):
  """Unbiased MMD^2 between samples [n, d] and [m, d], sum of Gaussian kernels of `bandwidths`.

  0 in expectation when both come from one distribution; it can be slightly negative.
  """
  x, y = _flat(x), _flat(y)
  total = 0.0
  for pairs in ((x, x), (y, y), (x, y)):
    d2 = _squared_distances(*pairs)
    k = sum(np.exp(-d2 / (2 * h * h)) for h in bandwidths)
    if pairs[0] is pairs[1]:
      size = len(pairs[0])
      total += (k.sum() - np.trace(k)) / (size * (size - 1))
    else:
      total -= 2 * k.mean()
  return float(total)


def nearest_neighbour_distance(x, y, chunk=1024):
  """Mean Euclidean distance from each row of x to its nearest row of y."""
  x, y = _flat(x), _flat(y)
  nearest = [np.sqrt(_squared_distances(x[i:i + chunk], y).min(1)) for i in range(0, len(x), chunk)]
  return float(np.concatenate(nearest).mean())


def mode_metrics(x, centres, std, recovered_fraction=0.2):
  """Mode-collapse metrics for an equal-weight Gaussian mixture.

  A sample is high quality when it lies within 3 std (Euclidean) of its nearest
  centre. A mode is recovered when it holds at least `recovered_fraction` of
  its expected share of the samples (0.2: 20 of 2,500 samples for 25 modes, as
  in PacGAN).

  Args:
    x: [n, 2] samples; centres: [k, 2]; std: per-dimension std of each mode.

  Returns:
    dict: modes_recovered, num_modes, high_quality_fraction, high_quality_std
    (RMS per-dimension deviation of the high-quality samples from their centre;
    the data's own is `std`).
  """
  x, centres = _flat(x), np.asarray(centres, np.float64)
  d2 = _squared_distances(x, centres)
  nearest = d2.argmin(1)
  offset = x - centres[nearest]
  high_quality = np.sqrt(d2[np.arange(len(x)), nearest]) <= 3 * std
  counts = np.bincount(nearest[high_quality], minlength=len(centres))
  threshold = recovered_fraction * len(x) / len(centres)
  hq_std = float(np.sqrt(np.mean(offset[high_quality] ** 2))) if high_quality.any() else float('nan')
  return dict(modes_recovered=int((counts >= threshold).sum()), num_modes=len(centres),
              high_quality_fraction=float(high_quality.mean()), high_quality_std=hq_std)


def evaluate_points(samples, reference, mixture=None):
  """All 2D metrics of `samples` [n, 2] against held-out `reference` [m, 2] (a dict)."""
  result = dict(sliced_wasserstein=sliced_wasserstein(samples, reference),
                mmd2=mmd2(samples, reference),
                nn_sample_to_data=nearest_neighbour_distance(samples, reference),
                nn_data_to_sample=nearest_neighbour_distance(reference, samples))
  if mixture is not None:
    result.update(mode_metrics(samples, mixture.centres, mixture.std))
  return result


def grid_log_density(energies, cell_area):
  """Normalises exp(-E) on a grid by quadrature.

  Args:
    energies: E on a regular grid covering the data range, any shape.
    cell_area: area (volume) of one grid cell.

  Returns:
    (log_density, log_z): log p = -E - log Z with the grid's shape, and log Z.
  """
  negative = -np.asarray(energies, np.float64)
  top = negative.max()
  log_z = float(top + np.log(np.exp(negative - top).sum() * cell_area))
  return negative - log_z, log_z
