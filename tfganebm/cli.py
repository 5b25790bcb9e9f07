"""What the command-line entry points share: one-line errors for bad flags, common flags."""

import math
import os
import sys

from absl import app
from absl import flags


def define_average_checkpoints():
  """--average_checkpoints of the commands that load a run (sample, export)."""
  flags.DEFINE_integer('average_checkpoints', None,
                       "Use G's and E's weights averaged over the run's last N checkpoints "
                       "(1: the latest only; default: the run's --average_checkpoints).",
                       lower_bound=1)


def refuse_non_finite(names, flag_values=flags.FLAGS):
  """Makes NaN and +-infinity a one-line error for each float flag in `names`.

  absl's bounds compare with `<`, which NaN always passes, and a flag without an
  upper bound takes inf; either value would reach training as NaN weights. None
  (a flag not given, where that means "the run's value") stays allowed.
  Register this before a flag's other validators, so that its message wins.

  Args:
    names: names of float flags already defined in `flag_values`.
    flag_values: the `flags.FlagValues` holding them.
  """
  for name in names:
    flags.register_validator(name, lambda value: value is None or math.isfinite(value),
                             f'--{name} must be a finite number', flag_values=flag_values)


def _flagfile_argument(arg):
  """The file named by `--flagfile=F` or `-flagfile=F` (as absl reads it), else None."""
  for prefix in ('--flagfile=', '-flagfile='):
    if arg.startswith(prefix):
      return os.path.expanduser(arg[len(prefix):].strip())
  return None


def _check_flagfile_includes(path, including):
  """Follows the `--flagfile=` lines of `path`; exits with one line on an include cycle.

  absl only warns about a cycle and drops the repeated file, so the run would
  start with flags the user never meant. Files are compared by their real
  path; one that cannot be opened is left to absl's own error.

  Args:
    path: the flagfile, as written (relative to the working directory, like absl).
    including: the real paths of the flagfiles that include `path`, outermost first.
  """
  real = os.path.realpath(path)
  if real in including:
    chain = ' -> '.join([*including[including.index(real):], real])
    sys.exit(f'error: flagfile {path} includes itself: {chain}')
  try:
    with open(path) as f:
      lines = f.readlines()
  except OSError:
    return
  for line in lines:
    included = _flagfile_argument(line)
    if included:
      _check_flagfile_includes(included, [*including, real])


def _check_flagfiles(args):
  """Runs `_check_flagfile_includes` on each flagfile that `args` (no argv[0]) names."""
  args = iter(args)
  for arg in args:
    if arg == '--':
      break
    if arg in ('--flagfile', '-flagfile'):
      path = os.path.expanduser(next(args, ''))  # a missing value is absl's error
    else:
      path = _flagfile_argument(arg)
    if path:
      _check_flagfile_includes(path, [])


def _parse_flags(argv):
  _check_flagfiles(argv[1:])
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).removeprefix('ERROR:: ')
    hint = ' (see --helpfull)' if 'flagfile' not in message else ''
    sys.exit(f'error: {message}{hint}')


def run(main):
  """`absl.app.run(main)`, but a bad flag or flagfile ends with one line and exit code 1.

  A flagfile is bad when it cannot be opened or includes itself, directly or
  through others; the check runs before any of `main`.
  """
  app.run(main, flags_parser=_parse_flags)
