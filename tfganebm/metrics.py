"""Sample-quality metrics, numpy only; lower distances are better.

For 2D data: sliced Wasserstein distance and MMD to held-out real data, the
nearest-neighbour distances between samples and data, and for Gaussian
mixtures the mode-collapse metrics of the literature (modes recovered,
fraction of high-quality samples and their std).

For images: the Frechet distance and KID in the feature space of a classifier
(`classifier.py`; Inception weights cannot be downloaded offline, so the
numbers are "classifier-FID/KID": comparable between runs on one dataset, not
with published Inception FIDs), and class coverage, the histogram of predicted
classes and its KL divergence to uniform.
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


def mmd2(x, y, bandwidths=MMD_BANDWIDTHS, chunk=1024):
  """Unbiased MMD^2 between samples [n, d] and [m, d], sum of Gaussian kernels of `bandwidths`.

  0 in expectation when both come from one distribution; it can be slightly negative.
  """
  x, y = _flat(x), _flat(y)
  total = 0.0
  for a, b in ((x, x), (y, y), (x, y)):
    # By blocks of rows: the n x m kernel matrix is never held whole (10,000 points: 3x faster).
    k_sum = 0.0
    scales = [np.float32(-1.0 / (2 * h * h)) for h in bandwidths]
    for i in range(0, len(a), chunk):
      if a.shape[1] <= 4:  # points: differences in float32 (exact enough, 4x faster exps)
        diff = a[i:i + chunk, None, :].astype(np.float32) - b[None, :, :].astype(np.float32)
        d2 = np.einsum('ijk,ijk->ij', diff, diff)
      else:
        d2 = _squared_distances(a[i:i + chunk], b)
      k_sum += sum(float(np.exp(d2 * scale).sum(dtype=np.float64)) for scale in scales)
    if a is b:  # unbiased: without the diagonal, where each kernel is exp(0) = 1
      total += (k_sum - len(a) * len(bandwidths)) / (len(a) * (len(a) - 1))
    else:
      total -= 2 * k_sum / (len(a) * len(b))
  return float(total)


def nearest_neighbour_distance(x, y):
  """Mean Euclidean distance from each row of x to its nearest row of y."""
  from sklearn import neighbors  # pylint: disable=g-import-not-at-top
  distances, _ = neighbors.NearestNeighbors(n_neighbors=1).fit(_flat(y)).kneighbors(_flat(x))
  return float(distances.mean())


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
    the data's own is `std`), mode_fractions (the fraction of all samples that are
    high quality at each mode; 1 / k each for the data) and mode_kl, the KL
    divergence of the high-quality samples' per-mode counts to uniform (0 when
    the modes are evenly filled, log k when one holds them all; None without any).
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
              high_quality_fraction=float(high_quality.mean()), high_quality_std=hq_std,
              mode_fractions=[float(c) for c in counts / len(x)],
              mode_kl=kl_to_uniform(counts))


def kl_to_uniform(counts):
  """KL(p || uniform) of the distribution p proportional to `counts` [k] (None if all 0)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  counts = np.asarray(counts, np.float64)
  if counts.sum() <= 0:
    return None
  return float(stats.entropy(counts, np.ones_like(counts)))


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


def frechet_distance(features_a, features_b):
  """||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)) of two feature samples [n, d].

  The matrix square root is taken as (C_a^(1/2) C_b C_a^(1/2))^(1/2), which has the
  same trace and is symmetric, so eigh gives it stably.
  """
  a, b = _flat(features_a), _flat(features_b)
  mean_a, mean_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  values, vectors = np.linalg.eigh(cov_a)
  root_a = (vectors * np.sqrt(np.maximum(values, 0))) @ vectors.T
  middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
  trace_root = np.sqrt(np.maximum(middle, 0)).sum()
  return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
               - 2 * trace_root)


def kernel_inception_distance(features_a, features_b, num_subsets=10, subset_size=1000, seed=0):
  """KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel (a.b / d + 1)^3.

  Averaged over `num_subsets` random subsets of min(subset_size, n, m) rows of each.

  Returns:
    (mean, std) over the subsets.
  """
  from sklearn.metrics import pairwise  # pylint: disable=g-import-not-at-top
  a, b = _flat(features_a), _flat(features_b)
  size = min(subset_size, len(a), len(b))
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    x = a[rng.choice(len(a), size, replace=False)]
    y = b[rng.choice(len(b), size, replace=False)]
    kernel = lambda u, v: pairwise.polynomial_kernel(u, v, degree=3, gamma=1 / a.shape[1],
                                                     coef0=1)
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_diagonal = lambda k: (k.sum() - np.trace(k)) / (size * (size - 1))
    values.append(off_diagonal(k_xx) + off_diagonal(k_yy) - 2 * k_xy.mean())
  return float(np.mean(values)), float(np.std(values))


def class_coverage(probabilities, min_share=0.2):
  """How evenly samples spread over a classifier's classes.

  Args:
    probabilities: [n, num_classes] class probabilities of the samples.
    min_share: a class is covered when it gets at least this fraction of its uniform share.

  Returns:
    dict: class_histogram (fractions of argmax), class_kl (KL(histogram || uniform), 0 when
    even, log(num_classes) when all samples are one class), classes_covered, and
    confidence (mean max probability: low for samples that look like no class).
  """
  probabilities = np.asarray(probabilities, np.float64)
  num_classes = probabilities.shape[1]
  histogram = np.bincount(probabilities.argmax(1), minlength=num_classes) / len(probabilities)
  return dict(class_histogram=[float(h) for h in histogram],
              class_kl=kl_to_uniform(histogram),
              classes_covered=int((histogram >= min_share / num_classes).sum()),
              confidence=float(probabilities.max(1).mean()))


def evaluate_images(features, probabilities, reference_features, seed=0):
  """classifier-FID and KID of samples against real reference images, and class coverage."""
  kid, kid_std = kernel_inception_distance(features, reference_features, seed=seed)
  return dict(fid=frechet_distance(features, reference_features), kid=kid, kid_std=kid_std,
              **class_coverage(probabilities))


# ProGAN's sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018,
# tkarras/progressive_growing_of_gans, metrics/sliced_wasserstein.py): a feature space that
# needs no labels and no trained network.
PYRAMID_PATCH = 7  # side of a descriptor patch
PYRAMID_PATCHES_PER_IMAGE = 128
PYRAMID_MIN_SIZE = 16  # the coarsest level (it stays Gaussian)
PYRAMID_REPEATS = 4
PYRAMID_DIRECTIONS = 128
# Descriptors per level and set: 128 patches per image up to 1,024 images, fewer per image
# beyond (ProGAN: 16,384 images x 128 on a GPU; sorting that many projections here takes
# minutes). So these figures are not comparable to the paper's, only between runs.
PYRAMID_MAX_DESCRIPTORS = 131072


def _blur(images):
  """The 5x5 binomial filter with mirror padding, per channel: [n, H, W, C] -> same."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  (scikit-learn's dependency)
  kernel = np.array([1, 4, 6, 4, 1], np.float32) / 16  # separable: outer(kernel, kernel)
  rows = ndimage.convolve1d(images, kernel, axis=1, mode='mirror')
  return ndimage.convolve1d(rows, kernel, axis=2, mode='mirror')


def _pyramid_levels(images):
  """Laplacian pyramid of [n, H, W, C]: the finest level first; levels down to 16 px, the
  coarsest one Gaussian. Odd sides are cropped by one pixel before a halving."""
  levels, current = [], images
  while min(current.shape[1:3]) // 2 >= PYRAMID_MIN_SIZE:
    current = current[:, :current.shape[1] // 2 * 2, :current.shape[2] // 2 * 2]
    down = _blur(current)[:, ::2, ::2]
    up = np.zeros_like(current)
    up[:, ::2, ::2] = down
    levels.append(current - _blur(up) * 4)
    current = down
  levels.append(current)
  return levels


def _descriptors(level, rng):
  """Random 7x7 patches, PYRAMID_PATCHES_PER_IMAGE per image or fewer (at most
  PYRAMID_MAX_DESCRIPTORS in all), flattened: [n * count, 49 C]."""
  n, height, width, channels = level.shape
  size = PYRAMID_PATCH
  count = max(1, min(PYRAMID_PATCHES_PER_IMAGE, PYRAMID_MAX_DESCRIPTORS // n))
  rows = rng.integers(0, height - size + 1, (n, count))
  cols = rng.integers(0, width - size + 1, (n, count))
  offsets = np.arange(size)
  index_rows = rows[:, :, None, None] + offsets[None, None, :, None]  # [n, count, size, 1]
  index_cols = cols[:, :, None, None] + offsets[None, None, None, :]  # [n, count, 1, size]
  patches = level[np.arange(n)[:, None, None, None], index_rows, index_cols]
  return patches.reshape(n * count, size * size * channels).astype(np.float32)


def _normalise(descriptors, channels):
  """Per channel, zero mean and unit std over all descriptors of one set."""
  shaped = descriptors.reshape(len(descriptors), -1, channels)
  mean = shaped.mean((0, 1), keepdims=True)
  std = shaped.std((0, 1), keepdims=True)
  return ((shaped - mean) / np.maximum(std, 1e-8)).reshape(len(descriptors), -1)


def _sliced_distance(a, b, rng):
  """Mean over repeats of the mean |sorted a.d - sorted b.d| over random unit directions d."""
  values = []
  for _ in range(PYRAMID_REPEATS):
    directions = rng.standard_normal((a.shape[1], PYRAMID_DIRECTIONS)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    # [directions, descriptors]: each row sorted in contiguous memory.
    project = lambda d: np.sort(directions.T @ d.T, axis=1)
    values.append(np.mean(np.abs(project(a) - project(b))))
  return float(np.mean(values))


def pyramid_sliced_wasserstein(x, y, seed=0):
  """ProGAN's SWD between image sets x [n, H, W, C] and y [m, H, W, C] in [-1, 1].

  Per pyramid level (full size down to 16 px) 128 random 7x7 patches per image (fewer
  beyond 1,024 images: PYRAMID_MAX_DESCRIPTORS),
  normalised per channel within each set, compared by the sliced distance over 4 x 128
  random directions; min(n, m) images of each. Reported x 1e3 per level (finest first)
  and their mean; lower is better, 0 for identical sets.

  Returns:
    dict: swd (the mean), swd_levels [L], swd_level_sizes [L] (pixels of each level).
  """
  count = min(len(x), len(y))
  x = np.asarray(x[:count], np.float32)
  y = np.asarray(y[:count], np.float32)
  rng = np.random.default_rng(seed)
  channels = x.shape[-1]
  per_level, sizes = [], []
  for level_x, level_y in zip(_pyramid_levels(x), _pyramid_levels(y)):
    a = _normalise(_descriptors(level_x, rng), channels)
    b = _normalise(_descriptors(level_y, rng), channels)
    per_level.append(1e3 * _sliced_distance(a, b, rng))
    sizes.append(int(level_x.shape[1]))
  return dict(swd=float(np.mean(per_level)), swd_levels=per_level, swd_level_sizes=sizes)
