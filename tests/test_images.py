"""Image datasets from local files and TFDS, and the clear error when there are none."""

import dataclasses
import gzip
import pickle

import numpy as np
import pytest

from tfganebm import images
from tfganebm import runs
from tfganebm.sampler import SamplerConfig


def _write_idx(path, magic, array, compress=True):
  header = np.array([magic, *array.shape], dtype='>i4').tobytes()
  opener = gzip.open if compress else open
  with opener(str(path) + ('.gz' if compress else ''), 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize('compress', [True, False])
def test_mnist_from_idx_files(tmp_path, compress):
  pixels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
  _write_idx(tmp_path / 'train-images-idx3-ubyte', 2051, pixels, compress)
  _write_idx(tmp_path / 'train-labels-idx1-ubyte', 2049, np.array([7, 0, 3]), compress)
  x, y = images.load('mnist', str(tmp_path))
  assert x.shape == (3, 28, 28, 1) and x.dtype == np.uint8
  np.testing.assert_array_equal(x[..., 0], pixels)
  np.testing.assert_array_equal(y, [7, 0, 3])
  scaled = images.to_model_range(x)
  assert scaled.min() == -1.0 and scaled.max() == 1.0


def test_truncated_idx_file_names_the_problem(tmp_path):
  _write_idx(tmp_path / 'train-images-idx3-ubyte', 2051, np.zeros((3, 28, 28)))
  _write_idx(tmp_path / 'train-labels-idx1-ubyte', 2049, np.zeros(3))
  with gzip.open(tmp_path / 'train-images-idx3-ubyte.gz', 'rb') as f:
    content = f.read()
  with gzip.open(tmp_path / 'train-images-idx3-ubyte.gz', 'wb') as f:
    f.write(content[:-100])
  with pytest.raises(images.DataError, match='truncated'):
    images.load('mnist', str(tmp_path))


def test_cifar10_from_python_batches(tmp_path):
  folder = tmp_path / 'cifar-10-batches-py'
  folder.mkdir()
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, 256, (2, 3 * 32 * 32)) for _ in range(5)]
  for i, data in enumerate(batches, 1):
    with open(folder / f'data_batch_{i}', 'wb') as f:
      pickle.dump({b'data': data.astype(np.uint8), b'labels': [i, i]}, f)
  x, y = images.load('cifar10', str(tmp_path))
  assert x.shape == (10, 32, 32, 3)
  # CIFAR stores each image as 1024 red, then green, then blue values: NHWC puts them last.
  np.testing.assert_array_equal(x[0, :, :, 2].ravel(), batches[0][0, 2048:])
  np.testing.assert_array_equal(y, np.repeat(np.arange(1, 6), 2))


def test_missing_data_fails_fast_with_what_was_tried(tmp_path):
  with pytest.raises(images.DataError) as error:
    images.load('mnist', str(tmp_path / 'empty'))
  message = str(error.value)
  assert 'IDX files' in message and 'TFDS' in message and 'tfds build mnist' in message
  assert not (tmp_path / 'empty').exists()  # nothing written


def test_offline_download_fails_at_once_instead_of_retrying(tmp_path, monkeypatch):
  monkeypatch.setattr(images, 'DOWNLOAD_HOST', ('localhost', 9))  # nothing listens: refused
  with pytest.raises(images.DataError, match='did not answer'):
    images.load('mnist', str(tmp_path), download=True)


def test_tfds_is_used_when_no_local_files(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(images, '_online', lambda: True)  # mock_data stands in for the download
  _quick_classifier(monkeypatch)
  with tfds.testing.mock_data(num_examples=6):
    x, y = images.load('mnist', str(tmp_path), download=True)
  assert x.shape == (6, 28, 28, 1) and x.dtype == np.uint8 and y.shape == (6,)


def _mnist_data(folder, num_examples=0):
  """The data section of a run on the MNIST IDX files in `folder`."""
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.Config().override(dataset='mnist', data_dir=str(folder), batch_size=1,
                                      num_examples=num_examples).data


def write_mnist(folder, num_train=96, num_test=64, seed=0):
  """Tiny MNIST-like IDX files: class c is a bright bar at row 2c, so a classifier learns it."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for split, n in (('train', num_train), ('t10k', num_test)):
    labels = np.arange(n) % 10
    pixels = rng.integers(0, 40, (n, 28, 28))
    for i, label in enumerate(labels):
      pixels[i, 2 * label + 4:2 * label + 7, 4:24] = 255
    _write_idx(folder / f'{split}-images-idx3-ubyte', 2051, pixels)
    _write_idx(folder / f'{split}-labels-idx1-ubyte', 2049, labels)
  return folder


IMAGE_RUN = dict(batch_size=32, train_steps=4, checkpoint_every=2, log_every=2, latent_dim=8,
                 generator_units=(16, 32), discriminator_units=(16,), energy_units=(8, 8, 8, 8),
                 train_langevin_steps=3, train_langevin_step_size=1.0,
                 train_langevin_noise=0.005, langevin_steps=10, langevin_step_size=1.0,
                 langevin_noise=0.005, eval_num_samples=32, buffer_capacity=64,
                 jit_compile=False)


def _check_image_run(workdir, result, shape):
  for name in ('flags.txt', 'metrics.json', 'samples.png', 'langevin_progression.png'):
    assert (workdir / name).exists(), name
  for part in ('real_data', 'generator', 'generator_langevin'):
    measured = result[part]
    assert np.isfinite([measured['fid'], measured['kid']]).all(), part
    assert len(measured['class_histogram']) == 10
    assert sum(measured['class_histogram']) == pytest.approx(1.0)
  # Real images are closer to real images than 4-step G samples are.
  assert result['real_data']['fid'] < result['generator']['fid']
  assert result['classifier']['test_accuracy'] > 0.5
  model, _ = runs.load_run(str(workdir))
  assert model.data_shape == shape


def _quick_classifier(monkeypatch):
  """The metrics classifier in 40 steps instead of 200: enough for the bar images."""
  from tfganebm import classifier  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(classifier.RECIPE, 'min_steps', 40)


def test_mnist_run_from_idx_files_end_to_end(tiny, tmp_path, monkeypatch):
  from tfganebm import training  # pylint: disable=g-import-not-at-top
  _quick_classifier(monkeypatch)
  folder = write_mnist(tmp_path / 'mnist')
  workdir = tmp_path / 'run'
  config = tiny(workdir, dataset='mnist', data_dir=str(folder), download=False,
                classifier_dir=str(tmp_path / 'cache'), num_examples=0,
                **{**IMAGE_RUN, 'image_every': 4})
  result = training.train(config)
  _check_image_run(workdir, result, (28, 28, 1))
  # TensorBoard's Images tab: a grid of G and one of G + the chain, 8 x 8 images of 28 x 28.
  from tests.test_training import _pictures  # pylint: disable=g-import-not-at-top
  pictures = _pictures(workdir)
  assert set(pictures) == {'G', config.sampler.describe()}
  for (step, (width, height, _)), in pictures.values():
    assert step == 4 and (int(width), int(height)) == (8 * 29 - 1, 8 * 29 - 1)
  assert result['classifier']['num_train'] == 96
  cached = list((tmp_path / 'cache').glob('classifier-mnist-*.keras'))
  assert len(cached) == 1
  # The classifier is cached: a second evaluation reuses the file and gives the same features.
  from tfganebm import classifier, data  # pylint: disable=g-import-not-at-top
  loaded = data.load(_mnist_data(folder))
  again = classifier.load_or_train('mnist', loaded.train, loaded.train_labels, loaded.held_out,
                                   loaded.held_out_labels, str(tmp_path / 'cache'))
  assert again.info == result['classifier']
  assert list((tmp_path / 'cache').glob('classifier-mnist-*.keras')) == cached
  _check_langevin_sweep(workdir, loaded, tmp_path)


def _check_langevin_sweep(workdir, loaded, tmp_path):
  """tfganebm.sweep on images: the cell of k steps scores what `sample --langevin_steps k`
  draws, in classifier-FID against training images."""
  from tfganebm import chains, classifier, metrics  # pylint: disable=g-import-not-at-top
  from tfganebm import sweeping  # pylint: disable=g-import-not-at-top
  model, config = runs.load_run(str(workdir))
  settings = SamplerConfig(steps=6, step_size=1.0, noise=0.005)
  rows, best, _ = sweeping.run(str(workdir), str(tmp_path / 'sweep'),
                            dict(steps=[0, 3, 6], step_size=[1.0], noise=[0.005]),
                            num_samples=32, seed=1, num_reference=50)
  scores = {row['steps']: row['fid'] for row in rows}
  assert sorted(scores) == [0, 3, 6] and best['fid'] == min(scores.values())
  scorer = classifier.load_or_train('mnist', loaded.train, loaded.train_labels, loaded.held_out,
                                    loaded.held_out_labels, config.run.classifier_dir)
  order = np.random.default_rng(0).permutation(len(loaded.train))[:50]
  reference, _ = scorer.features_and_probabilities(images.to_model_range(loaded.train[order]))
  x_gen, x_three, _ = chains.draw_samples(model, 32, 1, dataclasses.replace(settings, steps=3))
  for x, steps in ((x_gen, 0), (x_three, 3)):
    assert metrics.frechet_distance(scorer.features_and_probabilities(x)[0],
                                    reference) == pytest.approx(scores[steps], rel=1e-4)
  assert scores[3] != scores[0]
  assert (tmp_path / 'sweep' / 'sweep_fid.png').exists()


def test_cifar10_run_on_tfds_mock_data_with_dcgan_networks(tiny, tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tfganebm import training  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(images, '_online', lambda: True)  # mock_data stands in for the download
  _quick_classifier(monkeypatch)
  workdir = tmp_path / 'run'
  config = tiny(workdir, dataset='cifar10', data_dir=str(tmp_path / 'tfds'),
                classifier_dir=str(tmp_path / 'cache'), num_examples=0,
                generator_network='dcgan', discriminator_network='dcgan',
                **{**IMAGE_RUN, 'generator_units': (16, 8), 'discriminator_units': (8, 16)})
  with tfds.testing.mock_data(num_examples=96):
    result = training.train(config)
  for part in ('real_data', 'generator', 'generator_langevin'):
    assert np.isfinite(result[part]['fid'])
  assert (workdir / 'samples.png').exists() and (workdir / 'langevin_progression.png').exists()


def test_training_data_scale_and_batches(tmp_path):
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  folder = write_mnist(tmp_path)
  loaded = data.load(_mnist_data(folder, 40))
  assert loaded.train.shape == (40, 28, 28, 1) and loaded.train.dtype == np.uint8
  assert loaded.held_out.shape == (64, 28, 28, 1) and loaded.held_out_labels.shape == (64,)
  batch = next(iter(data.batches(loaded.train, 8, seed=0)))
  assert batch.dtype == 'float32' and batch.shape == (8, 28, 28, 1)
  assert batch.numpy().min() >= -1.0 and batch.numpy().max() == 1.0
  with pytest.raises(ValueError, match='num_examples'):
    data.load(_mnist_data(folder, 500))
