"""Trains a GAN + EBM (or the plain GAN baseline) from flags.

  python -m tfganebm.train --flagfile configs/moons.cfg --workdir runs/moons

Flags after --flagfile override it. Re-running with the same --workdir resumes
from its last checkpoint. The workdir receives checkpoints/, tensorboard/,
flags.txt, metrics.json and figures.
"""

import sys

from absl import flags

from tfganebm import cli
from tfganebm import signals

FLAGS = flags.FLAGS


def define_flags():
  """One flag per setting of `config.Config`; --workdir is required."""
  cli.define_config_flags(required=('workdir',))


def main(argv):
  """The main of `train` and `refine`: the Config of the flags, trained; one-line errors.

  A stop signal (SIGTERM from a scheduler, Ctrl-C) saves a checkpoint of the step training
  reached within --grace_period seconds and exits with 128 + the signal number; the same
  command resumes.
  """
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  import json  # pylint: disable=g-import-not-at-top
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from tfganebm import distribute  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config = cli.config_from_flags(FLAGS)
  STOPPER.grace = config.run.grace_period
  try:  # refused before TensorFlow's import; `training.train` checks both again
    workdir_lib.check_writable(config.run.workdir)
    # The other workers of a multi-worker run take no lock; its chief joins them to refuse.
    if distribute.is_chief() and not distribute.is_multi_worker(config.run.strategy):
      workdir_lib.check_free(config.run.workdir)
  except workdir_lib.WorkdirError as e:
    sys.exit(f'error: {e}')
  from tfganebm import training  # pylint: disable=g-import-not-at-top  (TF after these checks)
  # tf.distribute logs every collective it sets up at INFO; keep the progress lines readable.
  std_logging.getLogger('tensorflow').setLevel(std_logging.WARNING)
  try:
    result = training.train(config, STOPPER)
  except training.Interrupted as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(e.exit_code)
  except training.RunError as e:
    sys.exit(f'error: {e}')
  except signals.Stopped as e:  # before training's steps, or in the final evaluation
    print(f'error: stopped by {signals.name(e.signum)} outside the training steps; run the '
          'same command again to resume from the latest checkpoint', file=sys.stderr)
    sys.exit(e.exit_code)
  logging.info('metrics: %s', json.dumps(result, sort_keys=True))


STOPPER = signals.Stopper()


def run_main():
  define_flags()
  cli.run(main, STOPPER)


if __name__ == '__main__':
  run_main()
