"""Class-conditional runs (--conditional): labels through training, the chains, the replay
buffer, sampling and the commands' errors."""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import config_from_flags
from tests.conftest import one_line_error
from tests.conftest import run_module
from tests.conftest import shared_directory
from tests.conftest import tiny_config
from tfganebm import conditioning
from tfganebm import config as config_lib
from tfganebm import replay
from tfganebm import sample


def _train_ring(root):
  from tfganebm import training  # pylint: disable=g-import-not-at-top
  training.train(config_from_flags(
      root, '--flagfile=configs/c8gaussians.cfg', f'--workdir={root}/run', '--train_steps=300',
      '--checkpoint_every=300', '--average_checkpoints=1', '--eval_num_samples=200',
      '--langevin_steps=30', '--classify_weight=1', '--log_every=300', '--image_every=0'))


@pytest.fixture(scope='module')
def ring(tmp_path_factory):
  """configs/c8gaussians.cfg cut to 300 steps, with JEM's classification loss, trained once
  for the session: (model, workdir, config)."""
  from tfganebm import runs  # pylint: disable=g-import-not-at-top
  root = shared_directory(tmp_path_factory, 'ring', _train_ring)
  model, config = runs.load_run(str(root / 'run'))
  return model, root / 'run', config


def _nearest_centre(x):
  angles = 2 * np.pi * np.arange(8) / 8
  centres = 0.8 * np.stack([np.cos(angles), np.sin(angles)], 1)
  return np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), 1)


@pytest.mark.parametrize('label', [3, 6])
def test_asking_for_a_class_puts_its_samples_in_that_mode(ring, label):
  from tfganebm import chains  # pylint: disable=g-import-not-at-top
  model, _, config = ring
  x_gen, x_chain, _ = chains.draw_samples(model, 400, seed=1, sampler=config.sampler,
                                          labels=np.full(400, label))
  for x in (x_gen, x_chain):
    assert np.mean(_nearest_centre(x) == label) >= 0.95
  # On the ring near its mode (std 0.008 at radius 0.8), not only on its side of the plane.
  assert np.mean(np.abs(np.linalg.norm(x_chain, axis=1) - 0.8) < 0.1) >= 0.9


def test_energy_classifies_held_out_points_and_its_marginal_is_low_on_every_mode(ring):
  model, _, _ = ring
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  _, held_out = data.load_points('8gaussians', 800, None, seed=5)
  class_energies = model.energy(tf.constant(held_out.x)).numpy()
  assert class_energies.shape == (800, 8)
  assert np.mean(class_energies.argmin(1) == held_out.labels) >= 0.95
  # E(x) = -logsumexp(-E(x, .)): lower on the data of any class than at the ring's centre.
  marginal = model.energy_of(tf.constant(held_out.x)).numpy()
  centre = model.energy_of(tf.zeros([1, 2])).numpy()[0]
  assert np.median(marginal) < centre


def test_run_records_its_classes_and_metrics_read_the_labels(ring):
  import json  # pylint: disable=g-import-not-at-top
  _, workdir, _ = ring
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['networks']['conditional'] and saved['networks']['num_classes'] == 8
  metrics = json.loads((workdir / 'metrics.json').read_text())
  assert metrics['labels']['asked'] == [25] * 8  # 200 samples, the classes in turn
  assert metrics['generator_langevin']['label_accuracy'] >= 0.95
  # The yardstick: held-out points of the floor, read by the same neighbours.
  assert metrics['real_data']['label_accuracy'] >= 0.99


def test_sample_label_out_of_range_is_one_line_and_writes_nothing(ring, tmp_path):
  _, workdir, _ = ring
  result = run_module('tfganebm.sample', '--workdir', workdir, '--out', tmp_path / 'out',
                      '--label', '8', '--num_samples', '10')
  one_line_error(result, 'classes 0..7', '8')
  assert not (tmp_path / 'out').exists()


def test_labels_for_shares_and_refusals():
  labels = sample.labels_for('3:0.75,7:0.25', 10, 1000, seed=0)
  assert np.bincount(labels, minlength=10)[[3, 7]].tolist() == [750, 250]
  assert sample.labels_for('all', 4, 10).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
  assert sample.labels_for(None, 4, 10) is None
  with pytest.raises(ValueError, match='not conditional'):
    sample.labels_for('3', 0, 10)
  with pytest.raises(ValueError, match='classes 0..9, not 12'):
    sample.labels_for('1,12', 10, 10)
  for bad in ('-1', 'x', '3:0', '3:-1', '3:inf', '3:nan'):
    assert sample.label_problem(bad) is not None


def test_labelled_buffer_gives_each_reused_chain_its_own_label():
  buffer = replay.ReplayBuffer(100, (2,), reuse_prob=0.5, labelled=True)
  x = tf.tile(tf.range(100.0)[:, None], [1, 2])
  buffer.push_(x, tf.range(100) % 7)
  x_init, y_init, reused = buffer.initial_chains(-tf.ones([2000, 2]),
                                                 tf.random.Generator.from_seed(0),
                                                 tf.fill([2000], 9))
  x_init, y_init, reused = x_init.numpy(), y_init.numpy(), reused.numpy()
  assert reused.any() and not reused.all()
  np.testing.assert_array_equal(y_init[reused], x_init[reused, 0].astype(int) % 7)
  assert (y_init[~reused] == 9).all()
  drawn, labels = buffer.sample(500, tf.random.Generator.from_seed(1), labelled=True)
  np.testing.assert_array_equal(labels.numpy(), drawn.numpy()[:, 0].astype(int) % 7)


def test_class_energy_selection_and_marginal():
  energies = tf.constant([[1.0, 2.0, 3.0], [0.5, 0.5, 9.0]])
  np.testing.assert_allclose(conditioning.select(energies, [2, 0]).numpy(), [3.0, 0.5])
  expected = -np.log(np.exp(-1.0) + np.exp(-2.0) + np.exp(-3.0))
  np.testing.assert_allclose(conditioning.marginal(energies).numpy()[0], expected, rtol=1e-6)
  # An unconditional E's [B, 1] is E(x), labels or not.
  np.testing.assert_allclose(conditioning.energy(tf.constant([[4.0]]), [0]).numpy(), [4.0])


def test_conditional_needs_labels_and_its_options_their_flags(tmp_path):
  from tfganebm import sizing  # pylint: disable=g-import-not-at-top
  config = tiny_config(tmp_path, dataset='swissroll', conditional=True)
  with pytest.raises(config_lib.ConfigError, match='labelled data'):
    sizing.for_data(config, (2,), 0)
  with pytest.raises(config_lib.ConfigError, match='--classify_weight > 0'):
    tiny_config(tmp_path, classify_weight=1.0)
  with pytest.raises(config_lib.ConfigError, match='--discriminator_pack=1'):
    tiny_config(tmp_path, conditional=True, discriminator_pack=4)


def test_conditional_swissroll_is_refused_before_the_workdir_is_made(tmp_path):
  # `python -m tfganebm.train --dataset=swissroll --conditional ...`, in this process: the
  # command prints the RunError's line (tests/test_one_line_errors.py covers that path).
  from tfganebm import training  # pylint: disable=g-import-not-at-top
  with pytest.raises(training.RunError, match='--conditional needs labelled data'):
    training.train(tiny_config(tmp_path / 'run', dataset='swissroll', conditional=True))
  assert not (tmp_path / 'run').exists()


@pytest.fixture(scope='module')
def ring_export(ring, tmp_path_factory):
  """The ring run exported (once for the session): (model, export directory)."""
  from tfganebm import exporting  # pylint: disable=g-import-not-at-top
  model, workdir, _ = ring
  make = lambda path: exporting.export_run(str(workdir), str(path / 'export'))
  return model, shared_directory(tmp_path_factory, 'ring_export', make) / 'export'


def test_litert_signatures_take_a_label_and_match_tensorflow(ring_export):
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top
  model, out = ring_export
  interpreter = Interpreter(model_path=str(out / 'model.tflite'))
  rng = np.random.default_rng(4)
  z = rng.standard_normal((16, model.latent_dim)).astype(np.float32)
  labels = (np.arange(16) % 8).astype(np.int32)
  x = interpreter.get_signature_runner('generate')(z=z, label=labels)['x']
  np.testing.assert_allclose(x, model.inference_generator(z, labels), atol=1e-4)
  e = interpreter.get_signature_runner('energy')(x=x, label=labels)['e']
  np.testing.assert_allclose(e, model.energy_of(tf.constant(x), labels=labels), atol=1e-4)
  # One prior-proposal step in z: E(G(z, y), y) accepts or rejects it, as TF's does.
  noise = rng.standard_normal(z.shape).astype(np.float32)
  uniform, beta = rng.uniform(size=16).astype(np.float32), np.full(16, 0.5, np.float32)
  step = interpreter.get_signature_runner('latent_prior_step')
  z_next = step(z=z, noise=noise, uniform=uniform, beta=beta, temperature=np.float32(1.0),
                label=labels)['z']
  energy_fn, generator_fn = model.bound(tf.constant(labels))
  potential = lambda v: energy_fn(generator_fn(v))
  expected, _, accepted = langevin.prior_step(potential, tf.constant(z), potential(z), noise,
                                              uniform, 1.0, beta)
  assert 0 < np.mean(accepted) < 1  # both branches
  np.testing.assert_allclose(z_next, expected, atol=1e-4)


def test_device_runner_draws_the_label_asked(ring_export, tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  _, out = ring_export
  runner = [sys.executable, 'export/sample_litert.py', str(out / 'model.tflite'),
            '--num_samples', '1000', '--out', str(tmp_path / 'seven')]
  result = subprocess.run(runner + ['--label', '5'], capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr
  samples = np.load(tmp_path / 'seven' / 'samples.npy')
  assert np.mean(_nearest_centre(samples) == 5) >= 0.95
  assert (np.load(tmp_path / 'seven' / 'labels.npy') == 5).all()
  result = subprocess.run(runner + ['--label', '8'], capture_output=True, text=True, timeout=300,
                          check=False)
  one_line_error(result, '--label 8', 'classes 0..7')


def test_image_label_metrics_read_the_classifier_and_compare_each_class_with_its_own():
  from tfganebm import evaluators  # pylint: disable=g-import-not-at-top

  class Classifier:  # features: the mean brightness and its square; class: bright or dark
    info = {}

    def features_and_probabilities(self, x):
      mean = np.asarray(x).reshape(len(x), -1).mean(1)
      return np.stack([mean, mean**2], 1), np.stack([mean < 0, mean >= 0], 1).astype(float)

  rng = np.random.default_rng(0)
  dark = -0.5 + 0.1 * rng.standard_normal((400, 1, 1, 1))
  bright = 0.5 + 0.1 * rng.standard_normal((400, 1, 1, 1))
  evaluator = evaluators.ImageEvaluator.__new__(evaluators.ImageEvaluator)
  evaluator.scorer = evaluators.ImageScorer(Classifier(), np.concatenate([dark, bright]))
  evaluator.reference_labels = np.repeat([0, 1], 400)
  # Samples asked as 0 that are dark, asked as 1 that are dark too (wrong).
  samples = np.concatenate([dark[:200] + 0.01, dark[200:] - 0.01])
  found = evaluator.label_metrics(samples, np.repeat([0, 1], 200))
  assert found['label_accuracy'] == 0.5
  right, wrong = found['class_fid']
  assert right < 0.01 < 0.5 < wrong


def _conditional_generator(path, latent=4, classes=8):
  import keras  # pylint: disable=g-import-not-at-top
  z = keras.Input((latent,))
  y = keras.Input((), dtype='int32')
  h = keras.layers.Concatenate()([z, keras.layers.Embedding(classes, latent)(y)])
  x = keras.layers.Dense(2, activation='tanh')(keras.layers.Dense(16, activation='relu')(h))
  keras.Model([z, y], x).save(path)
  return path


def test_refine_takes_a_users_conditional_generator_and_samples_its_labels(tmp_path):
  from tfganebm import chains  # pylint: disable=g-import-not-at-top
  from tfganebm import pretrained  # pylint: disable=g-import-not-at-top
  from tfganebm import runs  # pylint: disable=g-import-not-at-top
  from tfganebm import training  # pylint: disable=g-import-not-at-top
  path = _conditional_generator(str(tmp_path / 'g.keras'))
  # `python -m tfganebm.refine --generator g.keras --conditional --dataset 8gaussians ...`
  training.train(config_from_flags(tmp_path, f'--generator={path}', '--conditional',
                                   '--dataset=8gaussians', f'--workdir={tmp_path / "run"}',
                                   '--train_steps=2', '--nojit_compile', '--batch_size=32',
                                   '--energy_units=8,8', '--train_langevin_steps=2',
                                   '--langevin_steps=2', '--eval_num_samples=32',
                                   '--checkpoint_every=2', '--buffer_capacity=64'))
  model, config = runs.load_run(str(tmp_path / 'run'))
  assert config.networks.num_classes == 8 and config.networks.latent_dim == 4
  # G is the user's, frozen: its samples for label 5 are the file's own for label 5.
  z = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
  import keras  # pylint: disable=g-import-not-at-top
  users = keras.models.load_model(path)
  np.testing.assert_allclose(chains.generate(model, z, np.full(16, 5, np.int32)),
                             users([z, np.full(16, 5, np.int32)]), atol=1e-5)
  # A conditional generator needs --conditional; an unconditional one refuses it.
  with pytest.raises(pretrained.GeneratorError, match='add --conditional'):
    pretrained.load(path, (2,))
  with pytest.raises(pretrained.GeneratorError, match='labels 0..11'):
    pretrained.load(path, (2,), num_classes=12)


class _RingModel:
  """A stand-in conditional model: E(x, y) = |x - c_y|^2 / (2 s^2), c_y the ring's mode y, as
  a Keras network with one energy per class; G puts every sample at the origin; the chains
  run in 2 groups (chain_energy), each with its own labels."""

  num_classes, latent_dim, data_shape, averaged_steps = 8, 2, (2,), None

  def __init__(self):
    import keras  # pylint: disable=g-import-not-at-top
    from tfganebm import chain_energy  # pylint: disable=g-import-not-at-top
    angles = 2 * np.pi * np.arange(8) / 8
    centres = tf.constant(0.8 * np.stack([np.cos(angles), np.sin(angles)], 1), tf.float32)

    class ClassEnergies(keras.layers.Layer):
      def call(self, x):
        return tf.reduce_sum(tf.square(x[:, None] - centres[None]), -1) / (2 * 0.05**2)

    self.energy = keras.Sequential([keras.Input((2,)), ClassEnergies()])
    self.chain_energy = chain_energy.ChainEnergy(self.energy, groups=2)

  def energy_of(self, x, training=False, labels=None):
    return conditioning.energy(self.energy(x, training=training), labels)

  def inference_generator(self, z, labels=None):
    del labels
    return 0.0 * z

  def bound(self, labels):
    return (lambda x: self.energy_of(x, labels=labels),
            lambda z: self.inference_generator(z, labels))


def test_data_space_chains_in_groups_move_each_sample_to_the_class_asked():
  from tfganebm import chains  # pylint: disable=g-import-not-at-top
  from tfganebm.sampler import SamplerConfig  # pylint: disable=g-import-not-at-top
  model = _RingModel()
  labels = np.random.default_rng(0).integers(8, size=301).astype(np.int32)
  sampler = SamplerConfig(steps=200, step_size=2e-4, noise=0.02)
  x_gen, x_chain, _ = chains.draw_samples(model, 301, seed=0, sampler=sampler, labels=labels)
  assert np.abs(x_gen).max() == 0  # every chain starts at the origin, equally far from all
  assert np.mean(_nearest_centre(x_chain) == labels) >= 0.99


def test_sample_label_on_an_unconditional_run_is_refused_before_loading_it(ring, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  _, workdir, _ = ring
  run = tmp_path / 'run'  # the ring's run, its config.json saying: not conditional
  shutil.copytree(workdir, run)
  saved = json.loads((run / 'config.json').read_text())
  saved['networks'].update(conditional=False, num_classes=0)
  saved['train'].update(classify_weight=0.0)
  (run / 'config.json').write_text(json.dumps(saved))
  result = run_module('tfganebm.sample', '--workdir', run, '--out', tmp_path / 'out',
                      '--label', '3', '--num_samples', '10')
  one_line_error(result, 'not conditional', '--label')
  assert not (tmp_path / 'out').exists()


def test_a_conditional_run_records_its_labels_and_an_unconditional_one_does_not():
  # resume.check_resume refuses a resume whose recorded digests differ from the data's now.
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  from tfganebm import resume  # pylint: disable=g-import-not-at-top
  x = np.zeros((6, 2), np.float32)
  one = data.Data('npy:a.npz', x, x, train_labels=np.array([0, 1, 0, 1, 0, 1]))
  other = data.Data('npy:a.npz', x, x, train_labels=np.array([1, 0, 1, 0, 1, 0]))
  assert resume.TRAINING_LABELS not in resume.data_record(one)
  assert (resume.data_record(one, labels=True)[resume.TRAINING_LABELS]
          != resume.data_record(other, labels=True)[resume.TRAINING_LABELS])
  assert (resume.data_record(one, labels=True)[resume.TRAINING_DIGEST]
          == resume.data_record(other, labels=True)[resume.TRAINING_DIGEST])


def test_quality_curve_gives_the_label_accuracy_of_each_chain_length(ring, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from tfganebm import evaluation  # pylint: disable=g-import-not-at-top
  model, _, config = ring
  evaluation.quality_against_steps(model, config, str(tmp_path), [0, 10, 30], 200,
                                   labels=np.full(200, 2, np.int32))
  rows = json.loads((tmp_path / 'quality_vs_steps.json').read_text())['rows']
  assert [row['steps'] for row in rows] == [0, 10, 30]
  assert all(row['label_accuracy'] >= 0.95 for row in rows)
  assert 'label_accuracy' in (tmp_path / 'quality_vs_steps.csv').read_text().splitlines()[0]


def test_a_sweep_of_a_conditional_run_reads_each_cell_as_the_classes_asked(ring, tmp_path):
  import csv  # pylint: disable=g-import-not-at-top
  from tfganebm import sweeping  # pylint: disable=g-import-not-at-top
  _, workdir, _ = ring
  sweeping.run(str(workdir), str(tmp_path / 'sweep'), dict(steps=[0, 10]), num_samples=400)
  with open(tmp_path / 'sweep' / 'sweep.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert sorted(int(row['steps']) for row in rows) == [0, 10]
  assert all(float(row['label_accuracy']) >= 0.95 for row in rows)
