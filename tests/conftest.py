"""Shared test helpers: small, fast configurations."""

import os

# Two pytest workers share two cores: one TensorFlow thread each instead of two pools of two
# fighting over them (about 10 % faster). Set before any test module imports TensorFlow, and
# inherited by the command-line runs the tests start.
os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')
os.environ.setdefault('TF_NUM_INTEROP_THREADS', '1')

import socket
import subprocess
import sys

import pytest

from tfganebm import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tiny_config's run as command-line flags.
TINY_FLAGS = ['--nojit_compile', '--num_examples=256', '--batch_size=32',
              '--generator_units=8,8', '--discriminator_units=8,8', '--energy_units=8,8',
              '--train_langevin_steps=3', '--langevin_steps=5', '--eval_num_samples=64',
              '--buffer_capacity=64', '--checkpoint_every=2', '--log_every=2']


def free_ports(count):
  """`count` TCP ports free on localhost now (for a local multi-worker cluster)."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def run_module(module, *args, cwd=ROOT):
  """`python -m module args...` from the repository root (or `cwd`), its output captured."""
  return subprocess.run([sys.executable, '-m', module, *map(str, args)], capture_output=True,
                        text=True, cwd=cwd, timeout=600, check=False)


def config_from_flags(tmp_path, *flags):
  """The Config `python -m tfganebm.train flags...` (or `tfganebm.refine`, whose main is
  train's) trains, read by the commands' own flag parser (the flags' file in `tmp_path`)."""
  from tfganebm import cli  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'args.cfg'
  path.write_text('\n'.join(flags) + '\n')
  return cli.read_flagfile(str(path))


def one_line_error(result, *words):
  """The one `error:` line of a failed command (a CompletedProcess) holding `words`; fails
  the test on a zero exit, a traceback, or more or fewer error lines."""
  assert result.returncode != 0, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1, result.stderr[-2000:]
  for word in words:
    assert word in errors[0], errors[0]
  return errors[0]


def tiny_config(workdir='', **overrides):
  """A run that takes seconds: a few steps, tiny networks, short chains, no XLA (its compile
  would cost more than the steps; XLA is covered by the matrix's default cells, with
  configs/moons.cfg, and by the exact-resume test)."""
  values = dict(workdir=str(workdir), dataset='moons', num_examples=256, batch_size=32,
                jit_compile=False,
                train_steps=4, checkpoint_every=2, log_every=2, generator_units=(8, 8),
                discriminator_units=(8, 8), energy_units=(8, 8), train_langevin_steps=3,
                langevin_steps=5, eval_num_samples=64, buffer_capacity=64)
  values.update(overrides)
  return config_lib.Config.from_flat(values)


@pytest.fixture
def tiny():
  return tiny_config


def replace(config, **changes):
  """`config` with settings changed by flag name."""
  return config.override(**changes)


def shared_directory(tmp_path_factory, name, make):
  """A directory that `make(path)` fills once for the whole test session, whichever pytest
  worker asks first (the others wait for it): a module fixture would run once per worker.
  A failed `make` leaves no directory, and the next worker to ask tries again."""
  import fcntl  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # shared by the workers of this session
  path, done = root / name, root / f'{name}.done'
  with open(root / f'{name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(path, ignore_errors=True)
      path.mkdir()
      try:
        make(path)
      except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
      done.touch()
  return path

