"""The command-line contract: flags, one-line errors, files written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import TINY_FLAGS, run_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = TINY_FLAGS
_run = run_module


def _error_lines(result):
  return [line for line in result.stderr.splitlines() if line.strip()]


def test_missing_flagfile_fails_before_writing(tmp_path):
  workdir = tmp_path / 'run'
  result = _run('tfganebm.train', f'--flagfile={tmp_path}/nope.cfg', f'--workdir={workdir}')
  assert result.returncode != 0
  assert _error_lines(result) == [_error_lines(result)[-1]]
  assert 'nope.cfg' in result.stderr
  assert not workdir.exists()


@pytest.mark.parametrize('flag, name', [('--batch_size=-3', 'batch_size'),
                                        ('--dataset=mnits', 'dataset'),
                                        ('--energy_units=64,x', 'energy_units'),
                                        ('--buffer_capacity=10', 'buffer_capacity'),
                                        ('--langevin_metropolis --langevin_noise=0',
                                         'langevin_noise'),
                                        ('--model=gan --gd_updates=2', 'gd_updates')])
def test_bad_flag_fails_in_one_line_before_writing(tmp_path, flag, name):
  workdir = tmp_path / 'run'
  result = _run('tfganebm.train', f'--workdir={workdir}', *flag.split())
  assert result.returncode != 0
  lines = _error_lines(result)
  assert len(lines) == 1 and name in lines[0], result.stderr
  assert not workdir.exists()


def test_sample_refuses_a_directory_that_is_not_a_run(tmp_path):
  result = _run('tfganebm.sample', f'--workdir={tmp_path}', f'--out={tmp_path}/out')
  assert result.returncode != 0
  assert 'flags.txt' in _error_lines(result)[-1]
  assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_train_then_sample(tmp_path):
  flagfile = tmp_path / 'tiny.cfg'
  flagfile.write_text('# a tiny run\n--dataset=25gaussians\n--train_steps=4\n' + '\n'.join(TINY))
  workdir, out = tmp_path / 'run', tmp_path / 'samples'
  result = _run('tfganebm.train', f'--flagfile={flagfile}', f'--workdir={workdir}',
                '--train_steps=6')  # flags after the flagfile override it
  assert result.returncode == 0, result.stderr
  assert '--train_steps=6' in (workdir / 'flags.txt').read_text()

  # Samples, with quality against chain length, in z, with a baseline G (here the run's own).
  # (Chains in data space, the default: tests/test_refine.py's and tests/test_matrix.py's.)
  result = _run('tfganebm.sample', f'--workdir={workdir}', '--num_samples=50', f'--out={out}',
                '--langevin_steps=7,0,3', '--langevin_space=latent', '--langevin_step_size=0.05',
                '--langevin_noise=0.3', '--langevin_metropolis', f'--baseline={workdir}')
  assert result.returncode == 0, result.stderr
  x_gen = np.load(out / 'samples_generator.npy')
  x_langevin = np.load(out / 'samples_langevin.npy')  # G of the 7-step chains in z
  assert x_gen.shape == x_langevin.shape == (50, 2)
  assert np.abs(x_langevin).max() <= 1.0 and not np.array_equal(x_gen, x_langevin)
  assert (out / 'metrics.json').exists() and (out / 'samples.png').exists()
  table = json.loads((out / 'quality_vs_steps.json').read_text())
  assert [row['steps'] for row in table['rows']] == [0, 3, 7]
  assert table['sampler']['space'] == 'latent' and 'in z' in table['label']
  final = json.loads((out / 'metrics.json').read_text())
  assert final['langevin']['steps'] == 7
  # The table's rows are the run's G and its one chain as it passes 3 and 7 steps.
  assert table['rows'][0]['sliced_wasserstein'] == final['generator']['sliced_wasserstein']
  assert table['rows'][2]['mode_kl'] == final['generator_langevin']['mode_kl']
  assert table['baseline']['sliced_wasserstein'] == final['generator']['sliced_wasserstein']
  header = (out / 'quality_vs_steps.csv').read_text().splitlines()[0].split(',')
  assert header[0] == 'steps' and 'mode_kl' in header and 'mode_fractions' not in header
  assert (out / 'quality_vs_steps.png').stat().st_size > 0


@pytest.mark.parametrize('steps', ['3,x', '-1', '5,-2'])
def test_sample_rejects_bad_chain_lengths_in_one_line(tmp_path, steps):
  result = _run('tfganebm.sample', f'--workdir={tmp_path}', f'--out={tmp_path}/out',
                f'--langevin_steps={steps}')
  assert result.returncode != 0
  lines = _error_lines(result)
  assert len(lines) == 1 and '--langevin_steps' in lines[0] and '0,5,10' in lines[0]
  assert not (tmp_path / 'out').exists()


def _run_noting_tensorflow(module, *args):
  """`python -m module args`, its stderr ending with whether TensorFlow was imported."""
  code = ('import atexit, runpy, sys\n'
          'atexit.register(lambda: print("tensorflow imported:", "tensorflow" in sys.modules, '
          'file=sys.stderr))\n'
          f'sys.argv = [{module!r}, *{list(args)!r}]\n'
          f'runpy.run_module({module!r}, run_name="__main__", alter_sys=True)\n')
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                        timeout=600, check=False)


@pytest.mark.parametrize('module, args, says', [
    ('tfganebm.sample', ['--workdir={d}/missing', '--out={d}/out'], 'flags.txt'),
    ('tfganebm.sample', ['--workdir={d}/run', '--out={d}/run'], 'write over the run'),
    ('tfganebm.sample', ['--workdir={d}/run', '--out={d}/out', '--langevin_steps=3'],
     'no checkpoint'),
    ('tfganebm.export', ['--workdir={d}/run', '--out={d}/run/flags.txt'], 'existing file'),
    ('tfganebm.export', ['--workdir={d}/missing', '--out={d}/out'], 'flags.txt'),
    ('tfganebm.train', ['--workdir={d}/run/flags.txt'], 'is a file'),
    ('tfganebm.train', ['--workdir={d}/locked'], 'in use'),
])
def test_a_bad_workdir_or_out_is_refused_before_tensorflow_loads(tmp_path, module, args, says):
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  run = tmp_path / 'run'  # a run's config without a checkpoint
  run.mkdir()
  workdir_lib.write_config(str(run), config_lib.Config())
  (run / 'flags.txt').write_text('--dataset=moons\n')
  (tmp_path / 'locked').mkdir()
  with workdir_lib.Lock(str(tmp_path / 'locked')):
    result = _run_noting_tensorflow(module, *(a.format(d=tmp_path) for a in args))
  lines = _error_lines(result)
  assert result.returncode != 0 and lines[-1] == 'tensorflow imported: False', result.stderr
  assert lines[-2].startswith('error:') and says in lines[-2], lines
  assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('value, says', [('int4', 'takes none'),
                                         ('float16', 'not offered'),
                                         ('none,dynamic_range', 'not offered')])
def test_export_rejects_a_quantization_it_does_not_offer(tmp_path, value, says):
  result = _run('tfganebm.export', f'--workdir={tmp_path}', f'--out={tmp_path}/out',
                f'--quantize={value}')
  assert result.returncode != 0 and len(_error_lines(result)) == 1
  assert 'quantize' in _error_lines(result)[0] and says in _error_lines(result)[0]
  assert not (tmp_path / 'out').exists()


def test_missing_image_data_is_one_line_and_writes_nothing(tmp_path):
  workdir = tmp_path / 'run'
  result = _run('tfganebm.train', '--dataset=mnist', f'--data_dir={tmp_path}/empty',
                '--nodownload', f'--workdir={workdir}')
  assert result.returncode != 0
  last = _error_lines(result)[-1]
  assert last.startswith('error: no mnist train data') and '--data_dir' in last
  assert 'IDX' in last and 'TFDS' in last
  assert not workdir.exists() and not (tmp_path / 'empty').exists()


def test_every_config_parses_and_passes_the_flag_checks():
  script = '''
import glob
from absl import flags
from tfganebm import cli
cli.define_config_flags(required=("workdir",))
for path in sorted(glob.glob("configs/*.cfg")):
  flags.FLAGS.unparse_flags()  # back to the defaults: each config alone
  yours = "--dataset=" not in open(path).read()  # recipes for a user's data
  flags.FLAGS(["train", "--flagfile=" + path, "--workdir=unused"]
              + (["--dataset=npy:mine.npz"] if yours else []))
  parsed = cli.config_from_flags()
  assert parsed.data.dataset == "npy:mine.npz" if yours else path.endswith(
      parsed.data.dataset + ".cfg"), path
  print(path, parsed.data.dataset, parsed.networks.model, parsed.run.jit_compile)
'''
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  printed = result.stdout.split('\n')
  assert any('configs/mnist.cfg mnist gan_ebm False' == line for line in printed)  # --nojit_compile
  assert any(line.startswith('configs/gan_mnist.cfg mnist gan ') for line in printed)
  assert any(line.startswith('configs/cifar10.cfg cifar10 gan_ebm ') for line in printed)
