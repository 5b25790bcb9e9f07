"""Draws samples from a trained run: G alone and G + its sampler, in data space.

  python -m tfganebm.sample --workdir runs/moons --num_samples 2000 --out runs/moons/samples

Writes OUT/samples_generator.npy and OUT/samples_langevin.npy ([N, *data_shape],
row i of the second is the refinement of row i of the first), samples.png,
langevin_progression.png and metrics.json. --langevin_steps 0 means G alone.
Sampler settings default to the run's own (its --langevin_* training flags);
--langevin_space=latent runs the chains in z instead (see tfganebm.sampler).
Image runs read their held-out images and the cached metrics classifier from
the places in the run's flags.txt (--data_dir, --classifier_dir override them).

Quality against sampling cost: a comma list of chain lengths,

  python -m tfganebm.sample --workdir W --out O --langevin_steps 0,5,10,20,50,100 \
      [--baseline runs/gan_moons]

also writes O/quality_vs_steps.{json,csv,png}: the metrics of G + k steps for each
k (one set of chains, scored as it passes each k), with the real-data floor and
the plain GAN of --baseline; the samples and metrics.json are those of the
longest chain.
"""

import sys

from absl import flags
from absl import logging

from tfganebm import cli

FLAGS = flags.FLAGS
# The run's settings this command may override (default: the run's own).
OVERRIDES = ('langevin_step_size', 'langevin_noise', 'langevin_grad_clip',
             'langevin_metropolis', 'langevin_space', 'langevin_proposal',
             'langevin_jump_prob', 'langevin_local_beta', 'data_dir', 'classifier_dir',
             'average_checkpoints')


def define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a tfganebm.train run.')
  flags.DEFINE_string('out', None, 'Directory for the samples and figures.')
  flags.DEFINE_integer('num_samples', 2000, 'Number of samples.', lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Seed of z and of the Langevin noise.')
  flags.DEFINE_list('langevin_steps', None, "Chain length K, or a comma list of lengths for "
                    "the quality-against-steps table (default: the run's).")
  flags.register_validator('langevin_steps', _valid_steps,
                           '--langevin_steps must be integers >= 0, e.g. 0,5,10,20,50,100')
  flags.DEFINE_string('baseline', None, 'Workdir of a plain GAN run drawn as a line in '
                      'quality_vs_steps.png (with several --langevin_steps).')
  cli.define_config_flags(OVERRIDES, optional=True)
  flags.mark_flags_as_required(['workdir', 'out'])


def _valid_steps(values):
  try:
    return values is None or (len(values) > 0 and all(int(v) >= 0 for v in values))
  except ValueError:
    return False


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  overrides = cli.overrides(OVERRIDES)
  steps = sorted({int(v) for v in FLAGS.langevin_steps or ()})
  if steps:
    overrides['langevin_steps'] = steps[-1]
  if FLAGS.baseline and len(steps) < 2:
    sys.exit('error: --baseline is drawn in the quality-against-steps plot; give it with a '
             'list of --langevin_steps, e.g. 0,5,10,20,50,100')
  try:  # what can be refused without TensorFlow, before its import
    workdir.preflight(FLAGS.workdir, overrides, out=FLAGS.out)
    if FLAGS.baseline:
      workdir.preflight(FLAGS.baseline)
  except workdir.LoadError as e:
    sys.exit(f'error: {e}')
  from tfganebm import evaluation  # pylint: disable=g-import-not-at-top
  from tfganebm import images  # pylint: disable=g-import-not-at-top
  try:
    result = evaluation.sample_run(FLAGS.workdir, FLAGS.out, FLAGS.num_samples, FLAGS.seed,
                                   overrides, steps_list=steps if len(steps) > 1 else None,
                                   baseline=FLAGS.baseline)
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
