"""SIGTERM and SIGINT for the commands: a stop the trainer defers to a checkpoint, and that
every other command turns into one line.

Schedulers (SLURM, Kubernetes, preemptible VMs) stop a job with SIGTERM and a grace period
before SIGKILL; a shell that starts a job in the background has it ignore SIGINT. A
command's main installs `Stopper` for both, so Ctrl-C and a scheduler's stop act alike,
wherever the command was started. Only a command's main changes the process's handlers:
the library takes a `Stopper` (or nothing) as an argument.

`tf.distribute.experimental.PreemptionCheckpointHandler` covers the train loop only, exits
with `sys.exit(42)` from inside it, and probes a cloud metadata server at construction, so
the trainer uses this instead.
"""

import contextlib
import os
import signal
import threading
import time

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
  """A stop signal, raised where the command stood (a KeyboardInterrupt, so that `except
  Exception` clauses let it through)."""

  def __init__(self, signum):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum

  @property
  def exit_code(self):
    return exit_code(self.signum)


def name(signum):
  return signal.Signals(signum).name


def exit_code(signum):
  """The shell's convention: 143 for SIGTERM, 130 for SIGINT."""
  return 128 + signum


class Stopper:
  """Turns SIGTERM and SIGINT into `Stopped`, or, inside `deferred()`, into a request that
  the code polls (`requested`) at a point where it can save.

  While a request is deferred, a watchdog gives the code `grace` seconds; when they pass
  first, the process ends with `expired_line` on stderr (the scheduler would SIGKILL it
  soon after). A second signal while one is deferred stops at once (one within a second of
  the first is the same stop: GNU `timeout` signals the process, then its group).
  """

  def __init__(self, grace=30.0):
    self.grace = grace
    self.requested = None  # the signal number of a deferred stop
    self._deferring = False
    self._timer = None
    self._since = 0.0
    self.expired_line = ('error: stopped by {signal}: no checkpoint could be written within '
                         'the grace period of {grace:g} s; run the same command again to '
                         'resume from the latest checkpoint on disk')

  def install(self):
    """Handles both signals in this process (call from a command's main, main thread)."""
    for signum in SIGNALS:
      signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, unused_frame):
    if self.requested is not None and time.monotonic() - self._since < 1.0:
      return  # the same stop twice (GNU timeout signals the process and then its group)
    if not self._deferring or self.requested is not None:
      raise Stopped(signum)
    self.requested, self._since = signum, time.monotonic()
    # os.write: a handler that printed to sys.stderr while the main thread was writing it
    # would meet a reentrant call of the buffered stream.
    os.write(2, (f'{name(signum)}: stopping at the end of the current steps and saving a '
                 f'checkpoint (grace period {self.grace:g} s)\n').encode())
    self._timer = threading.Timer(self.grace, self._expire, args=(signum,))
    self._timer.daemon = True
    self._timer.start()

  def _expire(self, signum):
    os.write(2, (self.expired_line.format(signal=name(signum), grace=self.grace) + '\n').encode())
    os._exit(exit_code(signum))  # pylint: disable=protected-access  (from a timer thread)

  @contextlib.contextmanager
  def deferred(self):
    """Within the block, a signal sets `requested` instead of raising; the watchdog ends
    with the block, however it ends (the save at the stop is inside it)."""
    self._deferring = True
    try:
      yield self
    finally:
      self._deferring = False
      if self._timer is not None:
        self._timer.cancel()
        self._timer = None
