"""tfganebm.runs: a trained run opened for inference, or for a resume."""

import random

import numpy as np

import tfganebm
from tfganebm import runs
from tfganebm import sample
from tfganebm import training


def test_load_run_and_sample_leave_numpy_and_python_random_state_as_they_were(tiny, tmp_path):
  """A library call must not reseed a user's streams: building the model seeds Keras with
  the run's seed, which (through keras.utils.set_random_seed) would reset NumPy's and
  Python's global generators to the same state at every load."""
  workdir = tmp_path / 'run'
  training.train(tiny(workdir, train_steps=2, eval_num_samples=16))
  random.seed(1234)
  np.random.seed(1234)
  python_before, numpy_before = random.getstate(), np.random.get_state()
  tfganebm.load_run(str(workdir))
  tfganebm.load_run(str(workdir), {'langevin_steps': 2})
  sample.sample_run(str(workdir), str(tmp_path / 'samples'), 16, seed=3)
  assert random.getstate() == python_before
  numpy_after = np.random.get_state()
  assert numpy_after[0] == numpy_before[0] and numpy_after[2:] == numpy_before[2:]
  np.testing.assert_array_equal(numpy_after[1], numpy_before[1])
  # ... and the weights are still a function of the run's seed alone.
  first, _ = runs.load_run(str(workdir))
  random.seed(99)
  np.random.seed(99)
  second, _ = runs.load_run(str(workdir))
  for a, b in zip(first.generator.get_weights(), second.generator.get_weights()):
    np.testing.assert_array_equal(a, b)
