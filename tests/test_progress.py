"""tfganebm.progress: a bar with the time left on a terminal, log lines elsewhere."""

import io

from tfganebm import progress


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_bar_on_a_terminal_shows_count_and_time_left():
  now = [0.0]
  stream = _Terminal()
  bar = progress.Progress(4, 'cells', stream=stream, clock=lambda: now[0])
  now[0] = 10.0
  bar.update(1, 'first')
  line = stream.getvalue().split('\r')[-1]
  assert '1/4' in line and '0:10 elapsed' in line and '0:30 left' in line and 'first' in line
  now[0] = 40.0
  bar.update(3)
  bar.close()
  assert '4/4' in stream.getvalue() and '0:00 left' in stream.getvalue()
  assert stream.getvalue().endswith('\n')


def test_without_a_terminal_it_logs_at_most_every_period(monkeypatch):
  now, logged = [0.0], []
  # absl's verbosity is process state other tests change: record the calls themselves.
  monkeypatch.setattr(progress.logging, 'info', lambda fmt, *args: logged.append(fmt % args))
  stream = io.StringIO()
  bar = progress.Progress(100, 'chains', stream=stream, log_every=30, clock=lambda: now[0])
  for _ in range(99):
    now[0] += 1.0
    bar.update(1)
  bar.update(1)  # the last one always logs
  bar.close()
  assert stream.getvalue() == ''  # nothing drawn on a log file
  lines = [line for line in logged if 'chains' in line]
  assert len(lines) == 4 and lines[-1].startswith('chains [' + '#' * progress.BAR_WIDTH)
