"""signals.Stopper: a stop that raises where the command stands, or that training defers."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import ROOT
from tfganebm import signals


@pytest.fixture
def stopper():
  previous = {signum: signal.getsignal(signum) for signum in signals.SIGNALS}
  yield signals.Stopper(grace=30).install()
  for signum, handler in previous.items():
    signal.signal(signum, handler)


def test_a_signal_outside_the_deferred_block_raises_where_the_code_stands(stopper):
  with pytest.raises(signals.Stopped) as raised:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10**6):  # the handler runs between two bytecodes of this thread
      pass
  assert raised.value.signum == signal.SIGTERM and raised.value.exit_code == 143
  assert isinstance(raised.value, KeyboardInterrupt)  # `except Exception` lets it through


def test_a_deferred_signal_is_a_request_and_a_second_one_stops_at_once(stopper):
  with stopper.deferred():
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(10**5):
      pass
    assert stopper.requested == signal.SIGINT
    os.kill(os.getpid(), signal.SIGTERM)  # within a second: the same stop, repeated
    for _ in range(10**5):
      pass
    time.sleep(1.0)
    with pytest.raises(signals.Stopped):
      os.kill(os.getpid(), signal.SIGTERM)
      for _ in range(10**6):
        pass
  assert stopper._timer is None  # pylint: disable=protected-access  (ended with the block)


def test_the_watchdog_ends_a_stop_that_overruns_its_grace_period():
  code = textwrap.dedent('''
      import os, signal, time
      from tfganebm import signals
      stopper = signals.Stopper(grace=0.5).install()
      with stopper.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # a save that does not finish in time
  ''')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
  assert result.returncode == 143
  lines = result.stderr.splitlines()
  assert lines[0].startswith('SIGTERM: stopping at the end of the current steps')
  assert lines[-1].startswith('error: stopped by SIGTERM: no checkpoint could be written '
                              'within the grace period of 0.5 s')


def test_sigint_from_a_script_that_ignores_it_stops_the_command():
  # A shell script's background job starts with SIGINT ignored; the commands handle it.
  code = textwrap.dedent('''
      import os, signal
      from tfganebm import signals
      signals.Stopper().install()
      try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10**7):
          pass
      except signals.Stopped as e:
        print('stopped', e.exit_code)
  ''')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
  assert result.stdout.strip() == 'stopped 130', result.stderr
