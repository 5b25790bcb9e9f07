"""Exports a trained run's generator and energy as a SavedModel and TFLite files.

  python -m tfganebm.export --workdir runs/moons --out exports/moons [--quantize float16,dynamic_range]
      [--langevin_steps K --langevin_space latent ...: the device's default sampler]

Writes OUT/saved_model/, OUT/model.tflite (float32; plus model_<q>.tflite per
quantization asked for) and OUT/export.json; see `tfganebm.exporting` for the
signatures. The output directory appears whole or not at all.
"""

import sys

from absl import flags
from absl import logging

from tfganebm import cli

FLAGS = flags.FLAGS
QUANTIZATIONS = ('none', 'float16', 'dynamic_range')
# The run's settings this command may override: the sampler written to export.json as
# the device's defaults (its grad clip is built into the graphs), and the averaging.
OVERRIDES = ('langevin_steps', 'langevin_step_size', 'langevin_noise', 'langevin_grad_clip',
             'langevin_metropolis', 'langevin_space', 'average_checkpoints')


def define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a tfganebm.train run.')
  flags.DEFINE_string('out', None, 'Output directory (must not exist unless --overwrite).')
  flags.DEFINE_list('quantize', ['none'], 'Extra TFLite files: ' + ', '.join(QUANTIZATIONS) + '.')
  flags.DEFINE_boolean('overwrite', False, 'Replace an existing --out (an earlier export).')
  cli.define_config_flags(OVERRIDES, optional=True)
  flags.mark_flags_as_required(['workdir', 'out'])
  flags.register_validator(
      'quantize', lambda v: set(v) <= set(QUANTIZATIONS),
      '--quantize takes a comma-separated subset of ' + ', '.join(QUANTIZATIONS))


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import exporting  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  try:
    info = exporting.export_run(FLAGS.workdir, FLAGS.out, FLAGS.quantize, FLAGS.overwrite,
                                cli.overrides(OVERRIDES))
  except (workdir.LoadError, exporting.ExportError) as e:
    sys.exit(f'error: {e}')
  logging.info('exported %s to %s: %s', FLAGS.workdir, FLAGS.out, info['tflite_bytes'])


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
