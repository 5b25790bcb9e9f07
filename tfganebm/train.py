"""Trains a GAN + EBM (or the plain GAN baseline) from flags.

  python -m tfganebm.train --flagfile configs/moons.cfg --workdir runs/moons

Flags after --flagfile override it. Re-running with the same --workdir resumes
from its last checkpoint. The workdir receives checkpoints/, tensorboard/,
flags.txt, metrics.json and figures.
"""

import json
import logging as std_logging
import sys

from absl import flags
from absl import logging

from tfganebm import cli

FLAGS = flags.FLAGS


def define_flags():
  """One flag per setting of `config.Config`; --workdir is required."""
  cli.define_config_flags(required=('workdir',))


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import training  # pylint: disable=g-import-not-at-top  (TF after flag checks)
  # tf.distribute logs every collective it sets up at INFO; keep the progress lines readable.
  std_logging.getLogger('tensorflow').setLevel(std_logging.WARNING)
  config = cli.config_from_flags(FLAGS)
  try:
    result = training.train(config)
  except training.Interrupted as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(130)
  except training.RunError as e:
    sys.exit(f'error: {e}')
  except KeyboardInterrupt:
    print('error: interrupted; run the same command again to resume from the latest '
          'checkpoint', file=sys.stderr)
    sys.exit(130)
  logging.info('metrics: %s', json.dumps(result, sort_keys=True))


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
