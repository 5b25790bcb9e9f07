"""The metrics classifier's cache: trained once per set of training images, found again under
any dataset name, retrained when its entry cannot be read, and one error when it cannot be
written."""

import json
import os

import numpy as np
import pytest

from tfganebm import classifier


@pytest.fixture(autouse=True)
def one_step_recipe(monkeypatch):
  """One training step of batch 16 instead of the recipe's minutes (the recipe is part of
  the cache digest, so these entries are these tests' own)."""
  for name, value in dict(epochs=1, min_steps=1, batch_size=16).items():
    monkeypatch.setitem(classifier.RECIPE, name, value)


def _images(seed, count=16):
  """`count` random 8 x 8 grey images (uint8) and their labels, 0 and 1 in turn."""
  images = np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 1), dtype=np.uint8)
  return images, np.arange(count) % 2


def _load_or_train(folder, name='toy', seed=0):
  images, labels = _images(seed)
  return classifier.load_or_train(name, images, labels, images, labels, str(folder),
                                  num_classes=2)


def _no_training(monkeypatch):
  """Makes any training fail the test: a cache hit builds no network."""
  def build(*args, **kwargs):
    raise AssertionError('the classifier was trained again')
  monkeypatch.setattr(classifier, 'build', build)


def _features(scorer):
  x = np.linspace(-1, 1, 4 * 64, dtype=np.float32).reshape(4, 8, 8, 1)
  return scorer.features_and_probabilities(x)


def test_a_cached_classifier_is_loaded_under_any_name_of_the_same_images(tmp_path,
                                                                           monkeypatch):
  """The second call, and a call naming the same images another way (a folder instead of an
  array: `_cached`'s fallback), load the first call's file and give its features. Fails if
  the digest is not a function of the images and the recipe alone (a cache that never hits:
  `build` is called again), or if the file saved is not the network trained."""
  trained = _load_or_train(tmp_path)
  files = sorted(os.listdir(tmp_path))
  assert files == [trained.info['file'][:-len('.keras')] + '.json', trained.info['file']]
  assert trained.info['file'].startswith('classifier-toy-')
  _no_training(monkeypatch)
  for name in ('toy', 'folder:/data/toy'):
    loaded = _load_or_train(tmp_path, name)
    assert loaded.info == trained.info
    for got, want in zip(_features(loaded), _features(trained)):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert sorted(os.listdir(tmp_path)) == files


def test_other_images_get_a_classifier_of_their_own(tmp_path):
  """Fails if the digest ignored the pixels (images of the same shape and labels would then
  be scored by a classifier trained on other data)."""
  first = _load_or_train(tmp_path, seed=0)
  second = _load_or_train(tmp_path, seed=1)
  assert first.info['file'] != second.info['file']
  assert len(os.listdir(tmp_path)) == 4


@pytest.mark.parametrize('damage', ['garbage network', 'truncated network', 'garbage info'])
def test_a_cache_entry_that_cannot_be_read_is_trained_again_and_rewritten(tmp_path, monkeypatch,
                                                                          damage):
  """A damaged file (a disk error, a copy cut short) costs a retraining, with a warning,
  never the evaluation; the rewritten entry then loads. Fails if a reading error of either
  file escapes `load_or_train`, or if the entry is not written again (the third call would
  train)."""
  trained = _load_or_train(tmp_path)
  network = tmp_path / trained.info['file']
  info = network.with_suffix('.json')
  if damage == 'garbage network':
    network.write_bytes(b'not a zip file')
  elif damage == 'truncated network':
    network.write_bytes(network.read_bytes()[:network.stat().st_size // 2])
  else:
    info.write_text('{"test_accuracy": ')
  warnings = []
  monkeypatch.setattr(classifier.logging, 'warning', lambda *args: warnings.append(args))
  retrained = _load_or_train(tmp_path)
  assert len(warnings) == 1 and 'cannot read' in warnings[0][0]
  assert retrained.info == trained.info  # the recipe is seeded: the same network again
  assert json.loads(info.read_text()) == trained.info
  _no_training(monkeypatch)
  for got, want in zip(_features(_load_or_train(tmp_path)), _features(retrained)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_a_cache_that_cannot_be_written_warns_and_returns_the_trained_network(tmp_path,
                                                                             caplog):
  """Where the cache file cannot be written (here a folder stands where the file goes) the
  trained classifier is still returned (the run's evaluation goes on), with one warning
  naming the file, and no temporary is left behind."""
  first = _load_or_train(tmp_path / 'first')
  name = first.info['file']
  cache = tmp_path / 'cache'
  (cache / name).mkdir(parents=True)
  with caplog.at_level('WARNING'):
    trained = _load_or_train(cache)
  assert trained.info == first.info
  for got, want in zip(_features(trained), _features(first)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert any('not cached' in r.getMessage() and name in r.getMessage() for r in caplog.records)
  assert os.listdir(cache) == [name]
