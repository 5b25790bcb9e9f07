"""A small CNN classifier per image dataset: the feature space of the image metrics.

Inception weights cannot be downloaded offline, so the image metrics measure
samples in the 128-d penultimate layer of a CNN trained here on the dataset's
training split. It is trained once per dataset (about a minute for MNIST on 2
CPU cores) and cached as `classifier-{dataset}-{digest}.keras` under
`--classifier_dir`, `$TFGANEBM_CACHE` or `~/.cache/tfganebm`; the digest covers
the training images and the recipe below, so other data never reuse it.
"""

import hashlib
import json
import os

from absl import logging
import keras
import numpy as np

from tfganebm import files
from tfganebm import progress
from tfganebm import seeding

RECIPE = dict(version=2, epochs=5, min_steps=200, batch_size=128, learning_rate=1e-3, seed=0)
FEATURES_LAYER = 'features'
NUM_FEATURES = 128
NUM_CLASSES = 10  # MNIST's and CIFAR-10's; a user's data bring their own number
MAX_TRAIN = 60000  # training images a classifier learns from (the first ones)


def cache_dir(directory=''):
  """`directory`, else $TFGANEBM_CACHE, else ~/.cache/tfganebm."""
  return (directory or os.environ.get('TFGANEBM_CACHE')
          or os.path.join(os.path.expanduser('~'), '.cache', 'tfganebm'))


def build(shape, num_classes=NUM_CLASSES):
  """x [B, H, W, C] in [-1, 1] -> logits [B, num_classes]; `features` is the 128-d layer."""
  return keras.Sequential([
      keras.Input(shape),
      keras.layers.Conv2D(32, 3, padding='same', activation='relu'),
      keras.layers.Conv2D(64, 3, strides=2, padding='same', activation='relu'),
      keras.layers.Conv2D(64, 3, strides=2, padding='same', activation='relu'),
      keras.layers.Flatten(),
      keras.layers.Dense(NUM_FEATURES, activation='relu', name=FEATURES_LAYER),
      keras.layers.Dropout(0.3),
      keras.layers.Dense(num_classes),
  ], name='classifier')


def _digest(images, labels):
  digest = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode())
  digest.update(str(images.shape).encode())
  digest.update(np.ascontiguousarray(images).tobytes())
  digest.update(np.ascontiguousarray(labels, np.int64).tobytes())
  return digest.hexdigest()[:16]


class Classifier:
  """A trained classifier: `features_and_probabilities(x)` gives [n, 128] and [n, classes]."""

  def __init__(self, model, info):
    self.model, self.info = model, info
    # One forward pass gives both outputs (Dropout is the identity at inference).
    self._features_and_logits = keras.Model(
        model.inputs, [model.get_layer(FEATURES_LAYER).output, model.outputs[0]])

  def features_and_probabilities(self, x, batch_size=500):
    """x [n, H, W, C] float32 in [-1, 1] -> (features [n, 128], probabilities [n, classes])."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    features, probabilities = [], []
    for start in range(0, len(x), batch_size):
      batch = tf.constant(x[start:start + batch_size], tf.float32)
      batch_features, logits = self._features_and_logits(batch, training=False)
      features.append(batch_features.numpy())
      probabilities.append(tf.nn.softmax(logits).numpy())
    return np.concatenate(features), np.concatenate(probabilities)


def _slug(name):
  """A dataset name as part of a file name: 'folder:/data/cats' -> 'folder-data-cats'."""
  import re  # pylint: disable=g-import-not-at-top
  return re.sub(r'[^A-Za-z0-9_.]+', '-', name).strip('-.')[:60] or 'data'


def _cached(folder, name, digest):
  """The cached classifier file of this digest: under this name, else under any name (the
  same images read from a folder or an array are the same data)."""
  import glob  # pylint: disable=g-import-not-at-top
  path = os.path.join(folder, f'classifier-{_slug(name)}-{digest}.keras')
  if os.path.exists(path):
    return path
  others = sorted(glob.glob(os.path.join(glob.escape(folder), f'classifier-*-{digest}.keras')))
  return others[0] if others else path


def _fit(train_images, train_labels, num_classes, name):
  """The classifier of RECIPE trained on the images (uint8) and their labels."""
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  model = build(train_images.shape[1:], num_classes)
  model.compile(keras.optimizers.Adam(RECIPE['learning_rate']),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=['accuracy'])
  x_train = data.to_unit_range(train_images)
  rng = np.random.default_rng(RECIPE['seed'])
  batch_size = min(RECIPE['batch_size'], len(x_train))
  steps_per_epoch = len(x_train) // batch_size
  epochs = max(RECIPE['epochs'], -(-RECIPE['min_steps'] // steps_per_epoch))  # small datasets
  bar = progress.keras_callback(epochs * steps_per_epoch, f'{name} metrics classifier')
  if epochs == RECIPE['epochs']:
    order = rng.permutation(len(x_train))
    model.fit(x_train[order], np.asarray(train_labels)[order], batch_size=batch_size,
              epochs=epochs, shuffle=True, verbose=0, callbacks=[bar])
  else:  # a small dataset: its many passes as one shuffled sequence, one Keras epoch (each
    # epoch costs a fixed setup time, more than its few steps)
    order = np.concatenate([rng.permutation(len(x_train)) for _ in range(epochs)])
    order = order[:len(order) // batch_size * batch_size]
    model.fit(x_train[order], np.asarray(train_labels)[order], batch_size=batch_size,
              epochs=1, shuffle=False, verbose=0, callbacks=[bar])
  return model


def load_or_train(name, train_images, train_labels, test_images, test_labels, directory='',
                  num_classes=NUM_CLASSES):
  """The cached classifier of `name` for these training images, trained and cached if missing.

  Args:
    name: dataset name (part of the file name).
    train_images, test_images: uint8 [n, H, W, C]; train_labels, test_labels: int [n].
    directory: the cache folder (see `cache_dir`).
    num_classes: classes of the labels (0..num_classes - 1).

  Returns:
    A `Classifier`; `info` holds its test accuracy and file.
  """
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  folder = cache_dir(directory)
  path = _cached(folder, name, _digest(train_images, train_labels))
  info_path = path[:-len('.keras')] + '.json'
  if os.path.exists(path) and os.path.exists(info_path):
    try:
      with open(info_path) as f:
        info = json.load(f)
      return Classifier(keras.models.load_model(path, compile=False), info)
    except (OSError, ValueError) as e:  # a damaged cache entry: train it again
      logging.warning('retraining the classifier: cannot read %s (%s)', path, e)

  logging.info('training the %s classifier of the image metrics (cached in %s)', name, folder)
  with seeding.seeded(RECIPE['seed']):
    model = _fit(train_images, train_labels, num_classes, name)
  _, accuracy = model.evaluate(data.to_unit_range(test_images), np.asarray(test_labels),
                               batch_size=500, verbose=0)
  info = dict(test_accuracy=float(accuracy), file=os.path.basename(path),
              num_train=int(len(train_images)), **RECIPE)
  logging.info('%s classifier: test accuracy %.4f', name, accuracy)
  try:
    os.makedirs(folder, exist_ok=True)
    with files.atomic_path(path) as temporary:
      model.save(temporary)
    files.write_json(info_path, info)
  except OSError as e:  # a read-only or full cache: the metrics use the network in memory
    logging.warning('the classifier is not cached (%s); the next evaluation trains it again',
                    f'{e.strerror or e}: {e.filename}' if e.filename else e)
  return Classifier(model, info)
