"""Trains a GAN + EBM (or the plain GAN baseline) from flags.

  python -m tfganebm.train --flagfile configs/moons.cfg --workdir runs/moons

Flags after --flagfile override it. Re-running with the same --workdir resumes
from its last checkpoint. The workdir receives checkpoints/, tensorboard/,
flags.txt, metrics.json and figures.
"""

from absl import flags

from tfganebm import cli

FLAGS = flags.FLAGS


def define_flags():
  """One flag per setting of `config.Config`; --workdir is required."""
  cli.define_config_flags(required=('workdir',))


main = cli.train_main


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
