"""What the command-line entry points share: one-line errors for bad flags, common flags."""

import sys

from absl import app
from absl import flags


def define_average_checkpoints():
  """--average_checkpoints of the commands that load a run (sample, export)."""
  flags.DEFINE_integer('average_checkpoints', None,
                       "Use G's and E's weights averaged over the run's last N checkpoints "
                       "(1: the latest only; default: the run's --average_checkpoints).",
                       lower_bound=1)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).removeprefix('ERROR:: ')
    hint = ' (see --helpfull)' if 'flagfile' not in message else ''
    sys.exit(f'error: {message}{hint}')


def run(main):
  """`absl.app.run(main)`, but a bad flag or flagfile ends with one line and exit code 1."""
  app.run(main, flags_parser=_parse_flags)
