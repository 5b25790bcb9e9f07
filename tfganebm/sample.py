"""Draws samples from a trained run: G alone and G + Langevin, in data space.

  python -m tfganebm.sample --workdir runs/moons --num_samples 2000 --out runs/moons/samples

Writes OUT/samples_generator.npy and OUT/samples_langevin.npy ([N, *data_shape],
row i of the second is the refinement of row i of the first), samples.png,
langevin_progression.png and metrics.json. --langevin_steps 0 means G alone.
Langevin settings default to the run's own (its --langevin_* training flags).
Image runs read their held-out images and the cached metrics classifier from
the places in the run's flags.txt (--data_dir, --classifier_dir override them).
"""

import os
import sys

from absl import flags
from absl import logging

from tfganebm import cli

flags.DEFINE_string('workdir', None, 'Workdir of a tfganebm.train run.')
flags.DEFINE_string('out', None, 'Directory for the samples and figures.')
flags.DEFINE_integer('num_samples', 2000, 'Number of samples.', lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Seed of z and of the Langevin noise.')
flags.DEFINE_integer('langevin_steps', None, 'Langevin steps (0: G alone).', lower_bound=0)
flags.DEFINE_float('langevin_step_size', None, 'Langevin step size eta.', lower_bound=0.0)
flags.DEFINE_float('langevin_noise', None, 'Langevin noise std sigma.', lower_bound=0.0)
flags.DEFINE_float('langevin_grad_clip', None, 'Per-sample L2 clip of grad E (0: off).',
                   lower_bound=0.0)
flags.DEFINE_boolean('langevin_metropolis', None, 'Metropolis-adjusted Langevin (MALA) steps.')
flags.DEFINE_string('data_dir', None, "Images: where the held-out images are (default: the run's).")
flags.DEFINE_string('classifier_dir', None,
                    "Images: the metrics classifiers' cache (default: the run's).")
cli.refuse_non_finite(['langevin_step_size', 'langevin_noise', 'langevin_grad_clip'])
cli.define_average_checkpoints()
flags.mark_flags_as_required(['workdir', 'out'])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import evaluation  # pylint: disable=g-import-not-at-top
  from tfganebm import files  # pylint: disable=g-import-not-at-top
  from tfganebm import images  # pylint: disable=g-import-not-at-top
  from tfganebm import runs  # pylint: disable=g-import-not-at-top

  try:
    runs.check_output(FLAGS.workdir, FLAGS.out)
    model, config, _ = runs.load(FLAGS.workdir, FLAGS.average_checkpoints, FLAGS.data_dir,
                                 FLAGS.classifier_dir)
  except runs.LoadError as e:
    sys.exit(f'error: {e}')
  settings = evaluation.LangevinSettings.inference(config)
  settings = evaluation.LangevinSettings(*(
      getattr(settings, name) if FLAGS[f'langevin_{name}'].value is None
      else FLAGS[f'langevin_{name}'].value for name in ('steps', 'step_size', 'noise', 'grad_clip', 'metropolis')))
  if settings.metropolis and min(settings.step_size, settings.noise) <= 0:
    sys.exit('error: Metropolis-adjusted Langevin needs --langevin_step_size > 0 and '
             '--langevin_noise > 0 (or --nolangevin_metropolis)')
  try:
    result, x_gen, x_langevin = evaluation.evaluate(
        model, config, FLAGS.out, FLAGS.num_samples, FLAGS.seed, settings,
        step=int(model.step.numpy()), refuse_non_finite=True)
  except images.DataError as e:  # the held-out images are not where the flags say
    sys.exit(f'error: {e}')
  except evaluation.NonFiniteSamples as e:
    sys.exit(f'error: {e}; nothing was written to {FLAGS.out}')
  files.write_npy(os.path.join(FLAGS.out, 'samples_generator.npy'), x_gen)
  if x_langevin is None:
    if model.energy is None:
      logging.warning('%s is a plain GAN: samples_langevin.npy holds G alone', FLAGS.workdir)
    x_langevin = x_gen
  files.write_npy(os.path.join(FLAGS.out, 'samples_langevin.npy'), x_langevin)
  logging.info('wrote %d samples to %s; metrics: %s', FLAGS.num_samples, FLAGS.out,
               {k: v for k, v in result.items() if isinstance(v, dict)})


def run_main():
  cli.run(main)


if __name__ == '__main__':
  run_main()
