"""Progress of the long steps (evaluation, sampling, classifier training, the sweep, export).

On a terminal, one line redrawn in place with the time left; otherwise (a log
file, CI) a log line every `log_every` seconds and one at the end, as training
logs its steps.
"""

import sys
import time

from absl import logging

BAR_WIDTH = 24


def _clock(seconds):
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}' if hours else f'{rest // 60}:{rest % 60:02d}'


class Progress:
  """`total` units of work named `label`: `update(n, detail)` after each, `close()` at the end.

  Also a context manager (closes on exit).
  """

  def __init__(self, total, label, stream=None, log_every=30.0, clock=time.monotonic):
    self.total, self.label, self.done = max(int(total), 0), label, 0
    self.stream = stream or sys.stderr
    self.tty = bool(getattr(self.stream, 'isatty', lambda: False)())
    self.log_every, self.clock = log_every, clock
    self.start = self.last_log = clock()
    self.closed = False

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.close()

  def line(self, detail=''):
    """The text of the bar now: label, bar, count, elapsed and time left."""
    elapsed = self.clock() - self.start
    fraction = self.done / self.total if self.total else 1.0
    filled = int(BAR_WIDTH * fraction)
    left = (f'{_clock(elapsed / self.done * (self.total - self.done))} left' if self.done
            else 'time left unknown')
    text = (f'{self.label} [{"#" * filled}{"." * (BAR_WIDTH - filled)}] {self.done}/{self.total} '
            f'{_clock(elapsed)} elapsed, {left}')
    return f'{text}  {detail}' if detail else text

  def update(self, n=1, detail=''):
    self.done = min(self.done + n, self.total)
    if self.tty:
      self.stream.write('\r\033[K' + self.line(detail))
      self.stream.flush()
    elif self.done == self.total or self.clock() - self.last_log >= self.log_every:
      self.last_log = self.clock()
      logging.info('%s', self.line(detail))

  def close(self):
    if self.closed:
      return
    self.closed = True
    if self.tty and self.total:
      self.stream.write('\n')
      self.stream.flush()


def keras_callback(total_batches, label):
  """A Keras callback that drives a Progress bar over `total_batches` training batches."""
  import keras  # pylint: disable=g-import-not-at-top

  class _Callback(keras.callbacks.Callback):

    def on_train_begin(self, logs=None):
      self.bar = Progress(total_batches, label)

    def on_train_batch_end(self, batch, logs=None):
      loss = (logs or {}).get('loss')
      self.bar.update(1, f'loss {float(loss):.3f}' if loss is not None else '')

    def on_train_end(self, logs=None):
      self.bar.close()

  return _Callback()
