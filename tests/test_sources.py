"""A user's own data: folders of images, .npy/.npz arrays, TFDS names; their bad inputs."""

import os

import numpy as np
import pytest

from tests.conftest import TINY_FLAGS, run_module
from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import images
from tfganebm import sources


def _data_config(dataset, **settings):
  return config_lib.Config().override(dataset=dataset, batch_size=1, **settings).data


def _png(path, image):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


def _write_class_folder(root, x, y, split=''):
  """x [n, H, W, C] uint8 as root/split/<label>/<index>.png, the layout of make_datasets."""
  for i, (image, label) in enumerate(zip(x, y)):
    _png(os.path.join(root, split, str(label), f'{i:03d}.png'), image)


def _digits(n, size=12, channels=1, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, size, size, channels)).astype(np.uint8),
          rng.integers(0, 3, n).astype(np.int64))


def test_a_class_folder_with_splits_loads_as_the_arrays_it_was_written_from(tmp_path):
  """Files are listed by name, then path: <label>/<index>.png comes back in index order."""
  x, y = _digits(24)
  x_test, y_test = _digits(8, seed=1)
  _write_class_folder(tmp_path, x, y, 'train')
  _write_class_folder(tmp_path, x_test, y_test, 'test')
  loaded = data.load(_data_config(f'folder:{tmp_path}'))
  assert isinstance(loaded.train, sources.ImageFiles) and loaded.shape == (12, 12, 1)
  np.testing.assert_array_equal(loaded.train_array(), x)
  np.testing.assert_array_equal(loaded.train_labels, y)
  np.testing.assert_array_equal(loaded.held_out, x_test)
  np.testing.assert_array_equal(loaded.held_out_labels, y_test)
  assert loaded.class_names == ('0', '1', '2') and loaded.num_classes == 3
  assert loaded.description['held_out'] == 'test'
  unlabelled = data.load(_data_config(f'folder:{tmp_path}', folder_labels=False))
  assert unlabelled.train_labels is None and unlabelled.num_classes == 0
  np.testing.assert_array_equal(unlabelled.train_array(), x)
  # --num_examples takes the first images, as for an array.
  first = data.load(_data_config(f'folder:{tmp_path}', num_examples=5))
  np.testing.assert_array_equal(first.train_array(), x[:5])


def test_folder_batches_are_the_array_batches_and_resume_at_any_step(tmp_path):
  x, y = _digits(20)
  _write_class_folder(tmp_path, x, y)
  loaded = data.load(_data_config(f'folder:{tmp_path}'))
  files, array = loaded.train, loaded.train_array()
  whole = list(data.batches(files, 4, seed=3, num_steps=9).as_numpy_iterator())
  np.testing.assert_array_equal(np.stack(whole),
                                np.stack(list(data.batches(array, 4, 3, 0, 9).as_numpy_iterator())))
  resumed = list(data.batches(files, 4, seed=3, start_step=6, num_steps=3).as_numpy_iterator())
  np.testing.assert_array_equal(np.stack(resumed), np.stack(whole[6:]))


def test_a_flat_folder_has_no_labels_and_holds_out_a_seeded_fraction(tmp_path):
  x, _ = _digits(40)
  for i, image in enumerate(x):
    _png(str(tmp_path / 'a' / f'{i:03d}.png'), image)  # one subfolder: not classes
  loaded = data.load(_data_config(f'folder:{tmp_path}', held_out_fraction=0.25))
  assert loaded.train_labels is None and loaded.num_classes == 0
  assert len(loaded.train) == 30 and len(loaded.held_out) == 10
  train = loaded.train_array()
  rows = {image.tobytes() for image in x}
  assert {image.tobytes() for image in train} | {image.tobytes() for image in loaded.held_out} \
      == rows
  assert not {image.tobytes() for image in train} & {i.tobytes() for i in loaded.held_out}
  again = data.load(_data_config(f'folder:{tmp_path}', held_out_fraction=0.25))
  np.testing.assert_array_equal(again.held_out, loaded.held_out)  # the same for every run


def test_image_size_crops_the_centre_and_resizes(tmp_path):
  wide = np.zeros((20, 40, 3), np.uint8)
  wide[:, 10:30] = 200  # the centre square is all 200, the sides 0
  for i in range(8):
    _png(str(tmp_path / f'{i}.png'), wide)
  loaded = data.load(_data_config(f'folder:{tmp_path}', image_size=10, held_out_fraction=0.5))
  images_ = loaded.train_array()
  assert images_.shape == (4, 10, 10, 3)
  np.testing.assert_array_equal(images_, 200)  # the sides were cropped away, not squeezed in


def test_grey_and_colour_images_become_colour_and_say_so(tmp_path, caplog):
  grey = np.full((8, 8, 1), 90, np.uint8)
  colour = np.zeros((8, 8, 3), np.uint8)
  colour[..., 0] = 255
  for i in range(4):
    _png(str(tmp_path / f'g{i}.png'), grey)
    _png(str(tmp_path / f'c{i}.png'), colour)
  loaded = data.load(_data_config(f'folder:{tmp_path}', held_out_fraction=0.5))
  assert loaded.shape == (8, 8, 3)
  every = np.concatenate([loaded.train_array(), loaded.held_out])
  greys = every[every[..., 1].max((1, 2)) > 0]
  np.testing.assert_array_equal(greys, 90)  # grey repeated into R, G and B
  assert '4 grey and 4 colour images' in caplog.text
  as_grey = data.load(_data_config(f'folder:{tmp_path}', channels=1, held_out_fraction=0.5))
  assert as_grey.shape == (8, 8, 1)


def test_other_files_are_skipped_with_a_count(tmp_path, caplog):
  x, _ = _digits(8)
  for i, image in enumerate(x):
    _png(str(tmp_path / f'{i}.png'), image)
  (tmp_path / 'notes.txt').write_text('not an image')
  (tmp_path / 'labels.csv').write_text('0,1')
  loaded = data.load(_data_config(f'folder:{tmp_path}', held_out_fraction=0.5))
  assert len(loaded.train) + len(loaded.held_out) == 8
  assert 'skipped 2 file(s)' in caplog.text


def _refused(dataset, match, **settings):
  with pytest.raises(images.DataError) as error:
    data.load(_data_config(dataset, **settings))
  message = str(error.value)
  assert '\n' not in message and match in message, message
  return message


def test_bad_folders_get_one_line_naming_the_problem(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  _refused(f'folder:{empty}', 'no image files')
  _refused(f'folder:{tmp_path / "missing"}', 'no such folder')
  sizes = tmp_path / 'sizes'
  for i in range(4):
    _png(str(sizes / f'a{i}.png'), np.zeros((8, 8, 1), np.uint8))
    _png(str(sizes / f'b{i}.png'), np.zeros((16, 16, 1), np.uint8))
  _refused(f'folder:{sizes}', '--image_size=S')
  assert data.load(_data_config(f'folder:{sizes}', image_size=8, held_out_fraction=0.5)).shape \
      == (8, 8, 1)
  corrupt = tmp_path / 'corrupt'
  for i in range(8):
    _png(str(corrupt / f'{i}.png'), np.zeros((8, 8, 1), np.uint8))
  content = (corrupt / '2.png').read_bytes()
  (corrupt / '2.png').write_bytes(content[:len(content) // 2])  # truncated
  assert '2.png' in _refused(f'folder:{corrupt}', 'not a readable image')
  (corrupt / '2.png').write_bytes(b'\x89PNG\r\n\x1a\n' + os.urandom(40))  # garbage
  _refused(f'folder:{corrupt}', '2.png')
  _png(str(corrupt / '2.png'), np.zeros((8, 8, 1), np.uint8))
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(corrupt / '3.jpg')
  content = (corrupt / '3.jpg').read_bytes()
  (corrupt / '3.jpg').write_bytes(content[:len(content) // 2])  # a JPEG cut off: decoded
  assert '3.jpg' in _refused(f'folder:{corrupt}', 'not a readable image')
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(corrupt / '3.jpg', format='TIFF')
  _refused(f'folder:{corrupt}', 'TensorFlow does not decode')
  (corrupt / '3.jpg').unlink()
  tiny = tmp_path / 'tiny'
  for i in range(8):
    _png(str(tiny / f'{i}.png'), np.zeros((4, 4, 1), np.uint8))
  _refused(f'folder:{tiny}', '--image_size=16')


def test_split_folders_any_case_a_held_out_class_subset_and_a_link_loop(tmp_path):
  x, y = _digits(24)
  _write_class_folder(tmp_path, x, y, 'Train')
  _write_class_folder(tmp_path, x[:6], np.full(6, 2), 'Test')  # one class of training's
  (tmp_path / 'Train' / '0' / 'loop').symlink_to(tmp_path / 'Train')
  loaded = data.load(_data_config(f'folder:{tmp_path}'))
  assert len(loaded.train) == 24 and loaded.class_names == ('0', '1', '2')
  np.testing.assert_array_equal(loaded.held_out_labels, 2)


def test_npy_points_of_any_dimension_are_scaled_by_the_training_points(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 5)) * [1, 2, 3, 4, 5] + 7
  x_test = rng.normal(size=(50, 5)) * [1, 2, 3, 4, 5] + 7
  np.savez(tmp_path / 'p.npz', x=x, x_test=x_test)
  loaded = data.load(_data_config(f'npy:{tmp_path / "p.npz"}'))
  assert loaded.shape == (5,) and loaded.train.dtype == np.float32
  np.testing.assert_allclose(loaded.train.min(0), -1, atol=1e-6)
  np.testing.assert_allclose(loaded.train.max(0), 1, atol=1e-6)
  low, high = x.min(0), x.max(0)
  np.testing.assert_allclose(loaded.held_out, 2 * (x_test - low) / (high - low) - 1, rtol=1e-5)
  np.save(tmp_path / 'one.npy', x[:, :1])  # D = 1, a held-out fraction
  one = data.load(_data_config(f'npy:{tmp_path / "one.npy"}'))
  assert one.shape == (1,) and len(one.train) + len(one.held_out) == 200


def test_npy_images_uint8_or_with_a_stated_range(tmp_path):
  x, y = _digits(30, size=8)
  np.savez(tmp_path / 'u.npz', x=x[..., 0], y=y)  # [N, H, W]: grey
  loaded = data.load(_data_config(f'npy:{tmp_path / "u.npz"}', image_size=16))
  assert loaded.shape == (16, 16, 1) and loaded.num_classes == 3
  assert len(loaded.train_labels) == len(loaded.train)
  np.savez(tmp_path / 'sparse.npz', x=x[..., 0], y=y * 500)  # labels 0, 500, 1000: 3 classes
  sparse = data.load(_data_config(f'npy:{tmp_path / "sparse.npz"}'))
  assert sparse.num_classes == 3 and sparse.class_names == ('0', '500', '1000')
  np.testing.assert_array_equal(sparse.train_labels, loaded.train_labels)
  floats = x.astype(np.float32) / 255
  np.savez(tmp_path / 'f.npz', x=floats)
  _refused(f'npy:{tmp_path / "f.npz"}', '--value_range=low,high')
  scaled = data.load(_data_config(f'npy:{tmp_path / "f.npz"}', value_range=(0.0, 1.0)))
  every = np.concatenate([scaled.train, scaled.held_out])
  assert sorted(map(bytes, every)) == sorted(map(bytes, x))  # 0..1 back to the same bytes
  _refused(f'npy:{tmp_path / "f.npz"}', 'outside', value_range=(0.0, 0.5))


def test_bad_arrays_get_one_line(tmp_path):
  marker = tmp_path / 'MARKER'
  objects = np.empty(4, object)
  objects[:] = [os.system, f'touch {marker}', 1, 2]
  np.save(tmp_path / 'pickle.npy', objects, allow_pickle=True)
  _refused(f'npy:{tmp_path / "pickle.npy"}', 'Python objects (a pickle)')
  assert not marker.exists()
  nan = np.ones((10, 3))
  nan[4, 1] = np.nan
  np.save(tmp_path / 'nan.npy', nan)
  _refused(f'npy:{tmp_path / "nan.npy"}', 'NaN or infinite values (first in row 4)')
  np.save(tmp_path / 'five.npy', np.zeros((2, 3, 4, 5, 6)))
  _refused(f'npy:{tmp_path / "five.npy"}', 'shape [2, 3, 4, 5, 6]')
  np.savez(tmp_path / 'labels.npz', x=np.zeros((10, 2)), y=np.zeros(9, np.int64))
  _refused(f'npy:{tmp_path / "labels.npz"}', 'labels')
  np.savez(tmp_path / 'few.npz', x=np.arange(20.0).reshape(10, 2), x_test=np.ones((3, 2)))
  _refused(f'npy:{tmp_path / "few.npz"}', '3 held-out example(s)')
  np.save(tmp_path / 'eight.npy', np.arange(16.0).reshape(8, 2))
  _refused(f'npy:{tmp_path / "eight.npy"}', 'lower --held_out_fraction', held_out_fraction=0.9)
  (tmp_path / 'cut.npz').write_bytes((tmp_path / 'few.npz').read_bytes()[:100])
  _refused(f'npy:{tmp_path / "cut.npz"}', 'damaged or truncated')
  np.savez(tmp_path / 'nox.npz', z=np.zeros((10, 2)))
  _refused(f'npy:{tmp_path / "nox.npz"}', "no array named x")
  (tmp_path / 'text.npy').write_text('not numpy')
  _refused(f'npy:{tmp_path / "text.npy"}', 'not a NumPy')
  _refused(f'npy:{tmp_path / "missing.npz"}', 'no such file')


def test_tfds_image_datasets_through_mock_data():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  for name, shape in (('fashion_mnist', (28, 28, 1)), ('cifar10', (32, 32, 3))):
    with tfds.testing.mock_data(num_examples=20):
      loaded = data.load(_data_config(f'tfds:{name}', download=False))
    assert loaded.shape == shape and loaded.train.dtype == np.uint8
    assert loaded.num_classes == 10 and len(loaded.train) + len(loaded.held_out) == 20
  with tfds.testing.mock_data(num_examples=20):
    resized = data.load(_data_config('tfds:fashion_mnist', image_size=16, download=False))
    flowers = data.load(_data_config('tfds:tf_flowers', image_size=32, download=False))
    _refused('tfds:tf_flowers', 'not one square size', download=False)  # sizes vary
  assert resized.shape == (16, 16, 1) and flowers.shape == (32, 32, 3)


def test_tfds_prepared_offline_in_a_data_dir(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()
  loaded = data.load(_data_config('tfds:dummy_mnist', data_dir=str(tmp_path), download=False))
  assert loaded.shape == (28, 28, 1) and len(loaded.train) == 20 and len(loaded.held_out) == 20
  assert loaded.description['held_out'] == 'split test'


def test_bad_tfds_names_get_one_line():
  assert 'Did you mean' in _refused('tfds:fashion_mnistt', 'list_builders')
  _refused('tfds:wine_quality', 'no image feature')
  _refused('tfds:binarized_mnist', 'not prepared', download=False)


def test_a_bad_dataset_on_the_command_line_is_one_line_and_writes_nothing(tmp_path):
  # (An empty folder: test_bad_folders_get_one_line_naming_the_problem, through data.load.)
  np.save(tmp_path / 'nan.npy', np.full((64, 2), np.nan))
  for dataset, match in ((f'npy:{tmp_path / "nan.npy"}', 'NaN'),
                         ('tfds:no_such_thing', 'list_builders'),
                         ('folderr:x', 'must be one of')):
    workdir = tmp_path / 'run'
    result = run_module('tfganebm.train', *TINY_FLAGS, f'--dataset={dataset}',
                        f'--workdir={workdir}')
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and match in last, result.stderr[-1500:]
    assert not workdir.exists()
