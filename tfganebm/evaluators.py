"""How samples are measured: scorers against reference data, and the evaluators of runs.

A scorer (`PointsScorer`, `ImageScorer`, `PyramidScorer`) holds reference data and
maps samples to a dict of metrics: `scorer(x, seed)`, its `headline` metrics and `info`
(the feature space). The evaluators score against the held-out split (metrics.json) and
draw the figures; the sweep scores against the training data (`training_scorer`).
"""

import os

from absl import logging
import numpy as np
import tensorflow as tf

from tfganebm import classifier
from tfganebm import data
from tfganebm import files
from tfganebm import metrics
from tfganebm import plots
from tfganebm import sources

GRID_RESOLUTION = 200  # cells per axis of the [-1, 1]^2 density grid
LABEL_NEIGHBOURS = 10  # held-out points that vote on the class of a sample point


def energy_density_grid(model, resolution=GRID_RESOLUTION):
  """exp(-E)/Z on the [-1, 1]^2 grid (log Z by quadrature): (log_density [res, res], log_z)."""
  axis = np.linspace(-1, 1, resolution, dtype=np.float32)
  xx, yy = np.meshgrid(axis, axis, indexing='xy')
  grid = np.stack([xx.ravel(), yy.ravel()], 1)
  energies = model.energy_of(tf.constant(grid), training=False).numpy().reshape(resolution,
                                                                                resolution)
  cell_area = (axis[1] - axis[0]) ** 2
  return metrics.grid_log_density(energies, cell_area)


def load_data(config, num_held_out=0):
  """The run's data (data.load of its data section and seed)."""
  return data.load(config.data, config.run.seed, num_held_out=num_held_out)


class PointsEvaluator:
  """Points of any dimension D: the sliced Wasserstein distance and MMD in D dimensions to
  held-out points (metrics.evaluate_points); 2D: also the energy's density and held-out
  NLL, and a scatter plot over the density map (D > 2: the first two coordinates).

  A 2D toy's held-out points are drawn afresh (twice the samples); a user's points are
  their held-out split, shuffled with a fixed seed and halved: one half the reference,
  the other the floor."""

  headline = ('sliced_wasserstein', 'mmd2')

  def __init__(self, config, num_samples, seed, dataset=None):
    del seed  # the distances need no seed
    if config.data.dataset in data.DATASETS or dataset is None:
      dataset = load_data(config, num_held_out=2 * num_samples)
    held_out, labels = dataset.held_out, dataset.held_out_labels
    if config.data.dataset in data.DATASETS:  # drawn afresh: the draw is already random
      self.real, self.floor = held_out[:num_samples], held_out[num_samples:2 * num_samples]
      real_labels = None if labels is None else labels[:num_samples]
      self.floor_labels = None if labels is None else labels[num_samples:2 * num_samples]
    else:
      order = np.random.default_rng(0).permutation(len(held_out))
      held_out = held_out[order]
      half = len(held_out) // 2
      self.real, self.floor = held_out[:half], held_out[half:][:num_samples]
      real_labels = None if labels is None else labels[order][:half]
      self.floor_labels = None if labels is None else labels[order][half:][:num_samples]
    self.neighbours = None  # the class of a point: its nearest held-out points' (labelled data)
    if real_labels is not None:
      from sklearn import neighbors  # pylint: disable=g-import-not-at-top
      self.neighbours = neighbors.KNeighborsClassifier(LABEL_NEIGHBOURS).fit(self.real,
                                                                              real_labels)
    self.scorer = PointsScorer(self.real, dataset.mixture)
    self.dimension = int(held_out.shape[1])
    self.info = dict(feature_space=f'points ({self.dimension}-D)',
                     held_out=dict(dataset.description or {}, num_reference=len(self.real)))
    self.trajectory_chains = None  # the progression figure shows every chain
    self.log_density = None  # of E on a grid, for the figure (energy_metrics)

  def __call__(self, x):
    return self.scorer(x)

  def label_accuracy(self, x, labels):
    """The fraction of points x whose class, by their nearest labelled held-out points,
    is the one asked (`labels`); None without labels."""
    if self.neighbours is None:
      return None
    return float(np.mean(self.neighbours.predict(x) == labels))

  def label_metrics(self, x, labels):
    """{label_accuracy} of points x asked as `labels` (as the image evaluator's)."""
    return dict(label_accuracy=self.label_accuracy(x, labels))

  def energy_metrics(self, model):
    if self.dimension != 2:
      return None  # a grid's quadrature only in 2D
    log_density, log_z = energy_density_grid(model)
    nll = float(np.mean(model.energy_of(tf.constant(self.real), training=False).numpy()) + log_z)
    self.log_density = log_density
    return dict(log_z=log_z, held_out_nll=nll)

  def figures(self, out_dir, x_gen, x_langevin, trajectory, record_every, title, label):
    if self.dimension < 2:
      logging.info('no scatter plots for 1-D points')
      return
    if self.dimension > 2:
      title += f' (coordinates 1 and 2 of {self.dimension})'
    two = lambda x: None if x is None else np.asarray(x)[..., :2]
    with files.atomic_path(os.path.join(out_dir, 'samples.png')) as path:
      plots.samples_2d(path, two(self.real), two(x_gen), two(x_langevin), self.log_density,
                       title, label)
    if trajectory is not None:
      with files.atomic_path(os.path.join(out_dir, 'langevin_progression.png')) as path:
        plots.langevin_progression(path, two(trajectory), record_every, title)


IMAGE_GRID = 100  # images per panel of samples.png
CHAIN_STRIP = 10  # chains shown in langevin_progression.png


class ImageEvaluator:
  """Images: against half of the held-out images (`image_scorer`: classifier-FID, KID and
  class coverage for labelled data, the Laplacian-pyramid SWD for unlabelled data); image
  grids and a strip of chains."""

  def __init__(self, config, num_samples, seed, dataset=None):
    if dataset is None:
      dataset = load_data(config)
    reference, self.floor = _halves(dataset.held_out, num_samples)
    self.scorer = image_scorer(config, dataset, data.to_unit_range(reference))
    # The reference images' labels, in `_halves`' order (per-class FID).
    self.reference_labels = self.floor_labels = None
    if dataset.held_out_labels is not None:  # split as the images are
      self.reference_labels, floor = _halves(dataset.held_out_labels, num_samples)
      self.floor_labels = floor.astype(np.int64)
    self.headline = self.scorer.headline
    self.info = dict(self.scorer.info, held_out=dataset.description,
                     num_reference=len(reference), num_real=len(self.floor))
    self.seed = seed
    self.trajectory_chains = CHAIN_STRIP  # the chains the progression figure shows

  def __call__(self, x):
    return self.scorer(x, self.seed)

  def label_accuracy(self, x, labels):
    """The fraction of images x that the metrics classifier reads as the class asked
    (`labels`); None for unlabelled images."""
    return self.label_metrics(x, labels).get('label_accuracy')

  def label_metrics(self, x, labels):
    """{label_accuracy, class_fid: [FID of the samples asked as class c against the
    reference images of class c, per class (None for a class with fewer than 2 of
    either)]}; {} for unlabelled images."""
    if not isinstance(self.scorer, ImageScorer):
      return {}
    features, probabilities = self.scorer.classifier.features_and_probabilities(x)
    result = dict(label_accuracy=float(np.mean(np.asarray(probabilities).argmax(1) == labels)))
    if self.reference_labels is not None:
      reference = self.scorer.reference_features
      result['class_fid'] = [
          metrics.frechet_distance(features[labels == c], reference[self.reference_labels == c])
          if min(np.sum(labels == c), np.sum(self.reference_labels == c)) >= 2 else None
          for c in range(int(max(labels.max(), self.reference_labels.max())) + 1)]
    return result

  def energy_metrics(self, model):
    del model
    return None

  def figures(self, out_dir, x_gen, x_langevin, trajectory, record_every, title, label):
    panels = [('held-out data', self.floor[:IMAGE_GRID]), ('G(z)', x_gen[:IMAGE_GRID])]
    if x_langevin is not None:
      panels.append((label, x_langevin[:IMAGE_GRID]))
    with files.atomic_path(os.path.join(out_dir, 'samples.png')) as path:
      plots.image_grids(path, panels, title)
    if trajectory is not None:
      with files.atomic_path(os.path.join(out_dir, 'langevin_progression.png')) as path:
        plots.chain_strip(path, trajectory, record_every, title)


# By data.kind(dataset): how samples of that kind are measured and drawn.
EVALUATORS = {'points': PointsEvaluator, 'images': ImageEvaluator}


def _classifier(config, dataset):
  """The cached metrics classifier of a run's labelled images (trained on first use)."""
  return classifier.load_or_train(config.data.dataset, dataset.train_array(classifier.MAX_TRAIN),
                                  dataset.train_labels[:classifier.MAX_TRAIN],
                                  dataset.held_out, dataset.held_out_labels,
                                  config.run.classifier_dir, num_classes=dataset.num_classes)


def _halves(held_out, num_real):
  """(reference, floor): a fixed shuffle of the held-out images (or of their labels, for
  the same split), halved; the floor at most `num_real` images, in [-1, 1]."""
  # A fixed shuffle first: MNIST's test split is ordered (its first 5,000 images come from
  # other writers than its last 5,000), so its halves would not be alike.
  held_out = held_out[np.random.default_rng(0).permutation(len(held_out))]
  half = len(held_out) // 2
  return held_out[:half], data.to_unit_range(held_out[half:][:num_real])


def image_scorer(config, dataset, reference):
  """The scorer of a run's images against `reference` [m, H, W, C] in [-1, 1]:
  `ImageScorer` (a classifier's features) when the held-out data have labels of at least
  two classes, else `PyramidScorer`."""
  if dataset.num_classes >= 2 and dataset.held_out_labels is not None:
    return ImageScorer(_classifier(config, dataset), reference)
  return PyramidScorer(reference)


def scoring_kind(config, dataset):
  """'points', 'images' (labelled: a classifier's metrics) or 'unlabelled' (images)."""
  if data.kind(config.data) == 'points':
    return 'points'
  return 'images' if dataset.num_classes >= 2 else 'unlabelled'


def training_scorer(config, num_reference, dataset=None):
  """A scorer against `num_reference` examples of the run's training data (never its
  held-out split), drawn with a fixed seed: for points, sliced Wasserstein, MMD² and the
  mode metrics, without the nearest-neighbour distances (quadratic in n, and not what a
  sampler is chosen by)."""
  dataset = dataset or data.load(config.data, config.run.seed)
  kind = scoring_kind(config, dataset)
  order = np.random.default_rng(0).permutation(len(dataset.train))[:num_reference]
  reference = data.to_unit_range(sources.as_array(dataset.train[order]))
  if kind == 'images':
    return ImageScorer(_classifier(config, dataset), reference)
  if kind == 'unlabelled':
    return PyramidScorer(reference)
  # The centres and std of a mixture are the same for every split.
  return PointsScorer(reference, dataset.mixture, nearest_neighbours=False)


def training_label_reader(config, dataset):
  """x -> the class each sample reads as, by the run's labelled training data (never its
  held-out split): the metrics classifier for images, the nearest of 10,000 training points
  (a fixed draw) for points; None without labels."""
  if dataset.train_labels is None:
    return None
  kind = scoring_kind(config, dataset)
  if kind == 'images':
    image_classifier = _classifier(config, dataset)
    return lambda x: np.asarray(image_classifier.features_and_probabilities(x)[1]).argmax(1)
  if kind != 'points':
    return None
  from sklearn import neighbors  # pylint: disable=g-import-not-at-top
  order = np.random.default_rng(0).permutation(len(dataset.train))[:10000]
  return neighbors.KNeighborsClassifier(LABEL_NEIGHBOURS).fit(
      np.asarray(dataset.train)[order], dataset.train_labels[order]).predict


class PointsScorer:
  """Scores points [n, D] against reference points [m, D]: sliced Wasserstein and MMD²,
  the nearest-neighbour distances (`nearest_neighbours`), and a mixture's mode metrics."""

  headline = ('sliced_wasserstein', 'mmd2')

  def __init__(self, reference, mixture=None, nearest_neighbours=True):
    self.reference, self.mixture = reference, mixture
    self.nearest_neighbours = nearest_neighbours

  def __call__(self, x, seed=0):
    del seed  # the points metrics project and sample with their own fixed seeds
    if self.nearest_neighbours:
      return metrics.evaluate_points(x, self.reference, self.mixture)
    result = dict(sliced_wasserstein=metrics.sliced_wasserstein(x, self.reference),
                  mmd2=metrics.mmd2(x, self.reference))
    if self.mixture is not None:
      result.update(metrics.mode_metrics(x, self.mixture.centres, self.mixture.std))
    return result


class ImageScorer:
  """Scores images in a classifier's feature space against reference images:
  classifier-FID, KID and class coverage (metrics.evaluate_images)."""

  headline = ('fid', 'kid')

  def __init__(self, image_classifier, reference):
    """`reference`: [m, H, W, C] in [-1, 1]."""
    self.classifier = image_classifier
    self.reference_features, _ = image_classifier.features_and_probabilities(reference)
    self.info = dict(feature_space='classifier', classifier=image_classifier.info)

  def __call__(self, x, seed=0):
    """metrics.evaluate_images of images x [n, H, W, C] in [-1, 1]."""
    return metrics.evaluate_images(*self.classifier.features_and_probabilities(x),
                                   self.reference_features, seed=seed)


class PyramidScorer:
  """Scores unlabelled images against reference images by ProGAN's sliced Wasserstein
  distance on Laplacian-pyramid patches (metrics.pyramid_sliced_wasserstein): no labels,
  no trained network."""

  headline = ('swd',)

  def __init__(self, reference):
    """`reference`: [m, H, W, C] in [-1, 1]."""
    self.reference = reference
    self.info = dict(feature_space='laplacian_pyramid_swd')

  def __call__(self, x, seed=0):
    return metrics.pyramid_sliced_wasserstein(x, self.reference, seed=seed)
