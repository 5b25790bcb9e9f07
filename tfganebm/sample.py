"""Draws samples from a trained run: G alone and G + Langevin, in data space.

  python -m tfganebm.sample --workdir runs/moons --num_samples 2000 --out runs/moons/samples

Writes OUT/samples_generator.npy and OUT/samples_langevin.npy ([N, *data_shape],
row i of the second is the refinement of row i of the first), samples.png,
langevin_progression.png and metrics.json. --langevin_steps 0 means G alone.
Langevin settings default to the run's own (its --langevin_* training flags).
Image runs read their held-out images and the cached metrics classifier from
the places in the run's flags.txt (--data_dir, --classifier_dir override them).
"""

import sys

from absl import flags
from absl import logging

from tfganebm import cli

FLAGS = flags.FLAGS
# The run's settings this command may override (default: the run's own).
OVERRIDES = ('langevin_steps', 'langevin_step_size', 'langevin_noise', 'langevin_grad_clip',
             'langevin_metropolis', 'data_dir', 'classifier_dir', 'average_checkpoints')


def define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a tfganebm.train run.')
  flags.DEFINE_string('out', None, 'Directory for the samples and figures.')
  flags.DEFINE_integer('num_samples', 2000, 'Number of samples.', lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Seed of z and of the Langevin noise.')
  cli.define_config_flags(OVERRIDES, optional=True)
  flags.mark_flags_as_required(['workdir', 'out'])


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import evaluation  # pylint: disable=g-import-not-at-top
  from tfganebm import images  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  try:
    result = evaluation.sample_run(FLAGS.workdir, FLAGS.out, FLAGS.num_samples, FLAGS.seed,
                                   cli.overrides(OVERRIDES))
  except (workdir.LoadError, images.DataError) as e:
    sys.exit(f'error: {e}')
  except evaluation.NonFiniteSamples as e:
    sys.exit(f'error: {e}; nothing was written to {FLAGS.out}')
  logging.info('wrote %d samples to %s; metrics: %s', FLAGS.num_samples, FLAGS.out,
               {k: v for k, v in result.items() if isinstance(v, dict)})


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
