"""Writes datasets in the forms `--dataset` reads a user's data from, for tests and demos.

  python tools/make_datasets.py mnist_folder --data_dir MNIST_IDX_DIR --out DIR
      MNIST as DIR/train/<class>/<index>.png and DIR/test/<class>/<index>.png; the folder
      reader lists files by name, so DIR loads as the same arrays as --dataset=mnist.
  python tools/make_datasets.py digits --out digits.npz
      scikit-learn's 1,797 real 8x8 digits as uint8 images (0..16 scaled to 0..255) with
      their labels, a seeded 20 % as x_test / y_test.
  python tools/make_datasets.py photo_patches --out DIR [--size 64 --count 4000]
      random size x size RGB patches of the two photographs scikit-learn ships
      (load_sample_images), as DIR/<index>.png: colour images without labels.
  python tools/make_datasets.py mixture --out points.npz [--dim 5 --count 20000]
      points of a Gaussian mixture in D dimensions (8 modes on random unit vectors,
      std 0.1), with a held-out draw.
  python tools/make_datasets.py many_pngs --out DIR [--count 200000 --size 64]
      synthetic RGB PNGs (smooth random colour fields) in subfolders of 1,000, for the
      streaming benchmark.
"""

import argparse
import os

import numpy as np


def _save_png(path, image):
  from PIL import Image  # pylint: disable=g-import-not-at-top  (matplotlib's dependency)
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


def mnist_folder(args):
  from tfganebm import images  # pylint: disable=g-import-not-at-top
  for split in ('train', 'test'):
    x, y = images.load('mnist', args.data_dir, split, download=False)
    for label in np.unique(y):
      os.makedirs(os.path.join(args.out, split, str(label)), exist_ok=True)
    width = len(str(len(x)))
    for i, (image, label) in enumerate(zip(x, y)):
      _save_png(os.path.join(args.out, split, str(label), f'{i:0{width}d}.png'), image)
    print(f'{split}: {len(x)} images')


def digits(args):
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  loaded = datasets.load_digits()
  x = np.round(loaded.images / 16.0 * 255).astype(np.uint8)
  y = loaded.target.astype(np.int64)
  test = np.zeros(len(x), bool)
  test[np.random.default_rng(0).permutation(len(x))[:len(x) // 5]] = True
  np.savez(args.out, x=x[~test], y=y[~test], x_test=x[test], y_test=y[test])
  print(f'{args.out}: {(~test).sum()} training and {test.sum()} held-out 8x8 digits')


def photo_patches(args):
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  photos = datasets.load_sample_images().images
  rng = np.random.default_rng(0)
  os.makedirs(args.out, exist_ok=True)
  for i in range(args.count):
    photo = photos[i % len(photos)]
    row = rng.integers(0, photo.shape[0] - args.size + 1)
    col = rng.integers(0, photo.shape[1] - args.size + 1)
    _save_png(os.path.join(args.out, f'{i:05d}.png'),
              photo[row:row + args.size, col:col + args.size])
  print(f'{args.out}: {args.count} {args.size}x{args.size} RGB patches')


def mixture(args):
  rng = np.random.default_rng(0)
  centres = rng.standard_normal((8, args.dim))
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  draw = lambda n: centres[rng.integers(8, size=n)] + 0.1 * rng.standard_normal((n, args.dim))
  np.savez(args.out, x=draw(args.count).astype(np.float32),
           x_test=draw(args.count // 2).astype(np.float32))
  print(f'{args.out}: {args.count} points of an 8-mode mixture in {args.dim}-D')


def many_pngs(args):
  rng = np.random.default_rng(0)
  coarse = 4
  for i in range(args.count):
    folder = os.path.join(args.out, f'{i // 1000:04d}')
    if i % 1000 == 0:
      os.makedirs(folder, exist_ok=True)
    small = rng.integers(0, 256, (coarse, coarse, 3)).astype(np.float32)
    image = np.kron(small, np.ones((args.size // coarse, args.size // coarse, 1)))
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    _save_png(os.path.join(folder, f'{i:06d}.png'), image)
  print(f'{args.out}: {args.count} {args.size}x{args.size} PNGs')


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('what', choices=('mnist_folder', 'digits', 'photo_patches', 'mixture',
                                       'many_pngs'))
  parser.add_argument('--out', required=True)
  parser.add_argument('--data_dir', default='', help='mnist_folder: the MNIST IDX files')
  parser.add_argument('--size', type=int, default=64)
  parser.add_argument('--count', type=int, default=0, help='0: the kind\'s default')
  parser.add_argument('--dim', type=int, default=5)
  args = parser.parse_args()
  args.count = args.count or {'photo_patches': 4000, 'mixture': 20000,
                              'many_pngs': 200000}.get(args.what, 0)
  globals()[args.what](args)


if __name__ == '__main__':
  main()
