"""Nothing the user gives is silently wrong: non-finite flags, flagfile cycles, strict JSON."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfganebm import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args):
  # A flag error needs no TensorFlow and takes about a second; the timeout ends the full
  # default run that an accepted bad value would start.
  return subprocess.run([sys.executable, '-m', module, *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=60, check=False)


def _error_lines(result):
  return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize('flag, name, requirement', [
    ('--train_langevin_step_size=nan', 'train_langevin_step_size', 'finite'),
    ('--langevin_noise=nan', 'langevin_noise', 'finite'),
    ('--buffer_reuse_prob=nan', 'buffer_reuse_prob', 'finite'),
    ('--gd_learning_rate=inf', 'gd_learning_rate', 'finite'),
    ('--energy_learning_rate=-inf', 'energy_learning_rate', 'finite'),
    ('--alpha=inf', 'alpha', 'finite'),
    ('--energy_beta1=1.0', 'energy_beta1', '[0, 1)'),
    ('--gd_learning_rate=0', 'gd_learning_rate', '> 0'),
])
def test_train_refuses_a_value_that_makes_nan_weights(tmp_path, flag, name, requirement):
  workdir = tmp_path / 'run'
  result = _run('tfganebm.train', f'--workdir={workdir}', flag)
  assert result.returncode != 0
  lines = _error_lines(result)
  assert len(lines) == 1 and name in lines[0] and requirement in lines[0], result.stderr
  assert not workdir.exists()


def test_energy_beta1_is_in_the_half_open_unit_interval():
  script = '''
from absl import flags
from tfganebm import cli
cli.define_config_flags(required=("workdir",))
for value in ("0", "0.999", "1.0"):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["train", "--workdir=unused", "--energy_beta1=" + value])
    print(value, "accepted", cli.config_from_flags().train.energy_beta1)
  except flags.IllegalFlagValueError:
    print(value, "refused")
'''
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.splitlines() == ['0 accepted 0.0', '0.999 accepted 0.999', '1.0 refused']


@pytest.mark.parametrize('flag', ['--langevin_step_size=nan', '--langevin_noise=inf'])
def test_sample_refuses_a_non_finite_langevin_flag(tmp_path, flag):
  out = tmp_path / 'out'
  result = _run('tfganebm.sample', f'--workdir={tmp_path}', f'--out={out}', flag)
  assert result.returncode != 0
  lines = _error_lines(result)
  name = flag[2:].split('=')[0]
  assert len(lines) == 1 and name in lines[0] and 'finite' in lines[0], result.stderr
  assert not out.exists()


def _assert_flagfile_cycle_refused(result, workdir):
  assert result.returncode != 0
  lines = _error_lines(result)
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('error: flagfile') and 'includes itself' in lines[0]
  assert not workdir.exists()


def test_a_flagfile_that_includes_itself_is_refused(tmp_path):
  flagfile = tmp_path / 'self.cfg'
  flagfile.write_text(f'--train_steps=2\n--flagfile={flagfile}\n')
  workdir = tmp_path / 'run'
  result = _run('tfganebm.train', f'--flagfile={flagfile}', f'--workdir={workdir}')
  _assert_flagfile_cycle_refused(result, workdir)
  assert 'self.cfg' in result.stderr


def test_flagfiles_that_include_each_other_are_refused(tmp_path):
  first, second = tmp_path / 'first.cfg', tmp_path / 'second.cfg'
  first.write_text(f'--train_steps=2\n--flagfile={second}\n')
  # Spelled differently from the command line, so only the real path shows the cycle.
  second.write_text(f'--batch_size=32\n--flagfile={tmp_path}/./first.cfg\n')
  workdir = tmp_path / 'run'
  result = _run('tfganebm.train', '--flagfile', str(first), f'--workdir={workdir}')
  _assert_flagfile_cycle_refused(result, workdir)
  assert 'first.cfg' in result.stderr and 'second.cfg' in result.stderr


def test_write_json_writes_non_finite_floats_as_null(tmp_path):
  path = tmp_path / 'metrics.json'
  files.write_json(path, {'a': float('nan'), 'b': [np.float32('inf'), 1.5], 'c': np.int64(3),
                          'd': np.array([[0.5, -np.inf]]), 'e': (np.float64(2.5), np.nan)})

  def refuse(constant):
    raise ValueError(f'{constant} is not JSON')

  value = json.loads(path.read_text(), parse_constant=refuse)
  assert value == {'a': None, 'b': [None, 1.5], 'c': 3, 'd': [[0.5, None]], 'e': [2.5, None]}
  assert type(value['c']) is int  # pylint: disable=unidiomatic-typecheck

