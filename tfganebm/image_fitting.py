"""A user's images made to one shape, by the same rule for every source.

Converted to the run's channels (grey <-> RGB, alpha dropped), centre-cropped to a
square, and resized (bilinear, antialiased) to `--image_size`; an image already of that
size passes unchanged, bit for bit.
"""

import numpy as np

from tfganebm.images import DataError

MIN_IMAGE_SIZE = 8  # the pyramid metric's 7x7 patches, one halving of the scaled networks


def fit_image(image, size, channels):
  """One decoded image uint8 [h, w, c] (c in 1..4) -> uint8 [size, size, channels] (tf).

  Grey to RGB by repeating, RGB to grey by tf.image.rgb_to_grayscale, alpha dropped;
  then, unless it is already size x size, a centre crop to a square and a bilinear,
  antialiased resize.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  grey = lambda: image[..., :1]
  if channels == 1:
    colour = lambda: tf.image.rgb_to_grayscale(image[..., :3])
  else:
    grey, colour = lambda: tf.tile(image[..., :1], [1, 1, 3]), lambda: image[..., :3]
  if image.shape[-1] is not None:  # an array's images: one branch, traced once
    image = grey() if image.shape[-1] < 3 else colour()
  else:  # a decoded file: 1 to 4 channels, known when it is read
    image = tf.cond(tf.shape(image)[-1] < 3, grey, colour)
  image = tf.ensure_shape(image, [None, None, channels])

  def resize():
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    square = tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2,
                                           side, side)
    resized = tf.image.resize(square, [size, size], method='bilinear', antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

  shape = tf.shape(image)
  same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
  image = tf.cond(same, lambda: image, resize)
  return tf.ensure_shape(image, [size, size, channels])


def fit_images(images, size, channels, batch=1024):
  """uint8 [N, H, W, C] -> uint8 [N, size, size, channels], by `fit_image` (numpy out)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if images.shape[1:] == (size, size, channels):
    return images
  fit = tf.function(lambda x: tf.map_fn(lambda i: fit_image(i, size, channels), x,
                                        fn_output_signature=tf.TensorSpec(
                                            [size, size, channels], tf.uint8)))
  return np.concatenate([fit(tf.constant(images[i:i + batch])).numpy()
                         for i in range(0, len(images), batch)]) if len(images) else \
      np.zeros((0, size, size, channels), np.uint8)


def image_shape(where, shape, config):
  """(size, channels) of the run for images of `shape` (H, W, C; None where they vary):
  the flags', else the images' own (square only)."""
  height, width, found = shape
  size = config.image_size
  if not size:
    if height is None or width is None or height != width:
      raise DataError(f'{where}: the images are {height or "any"}x{width or "any"}, not one '
                      'square size; pass --image_size=S to centre-crop and resize them to S x S')
    size = height
  _check_size(where, size)
  return size, config.channels or (1 if found == 1 else 3)


def _check_size(where, size):
  if size < MIN_IMAGE_SIZE:
    raise DataError(f'{where}: {size}x{size} images are too small for the networks and the '
                    f'metrics; pass --image_size={2 * MIN_IMAGE_SIZE} (or more) to resize them')
