"""Exports a trained run's generator and energy as a SavedModel and TFLite files.

  python -m tfganebm.export --workdir runs/moons --out exports/moons
      [--langevin_steps K --langevin_space latent ...: the device's default sampler]

Writes OUT/saved_model/, OUT/model.tflite (float32) and OUT/export.json; see
`tfganebm.signatures` for the signatures. The output directory appears whole or not
at all. Quantized TFLite files are not offered: measured with
tools/benchmark_export.py, neither float16 nor dynamic-range weights ran faster than
float32 under LiteRT's CPU kernels at batch 1 and 64 alike (`_NOT_OFFERED` below;
tools/benchmark_export.py measures them).
"""

import sys

from absl import flags
from absl import logging

from tfganebm import cli
from tfganebm.sampler import SamplerConfig

FLAGS = flags.FLAGS
QUANTIZATIONS = ('none',)
# Measured on 2 cores, MNIST's DCGAN G and conv E, LiteRT at 2 threads (tools/benchmark_export.py).
_NOT_OFFERED = {
    'float16': 'its file ran slower than float32 (batch 64: generate 41 ms against 27 ms, '
               'G + 20 steps 228 ms against 163 ms): LiteRT computes in float32 anyway',
    'dynamic_range': 'its generate ran slower than float32 at batch 64 (29 ms against 27 ms) '
                     'and its samples differ from TF by up to 0.26',
}
# The run's settings this command may override: the sampler written to export.json as
# the device's defaults (its grad clip is built into the graphs), and the averaging.
OVERRIDES = tuple(f'langevin_{name}' for name in SamplerConfig.names()) + (
    'average_checkpoints',)


def define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a tfganebm.train run.')
  flags.DEFINE_string('out', None, 'Output directory (must not exist unless --overwrite).')
  flags.DEFINE_list('quantize', ['none'], 'TFLite files: none (float32 model.tflite, the only '
                    'one offered; quantized files were measured slower on the CPU).')
  flags.DEFINE_boolean('overwrite', False, 'Replace an existing --out (an earlier export).')
  cli.define_config_flags(OVERRIDES, optional=True)
  flags.mark_flags_as_required(['workdir', 'out'])
  flags.register_validator('quantize', _check_quantize)


def _check_quantize(values):
  for value in values:
    if value in _NOT_OFFERED:
      raise flags.ValidationError(f'--quantize={value} is not offered: {_NOT_OFFERED[value]}; '
                                  'ship model.tflite (float32)')
    if value not in QUANTIZATIONS:
      raise flags.ValidationError(f'--quantize takes none, not {value!r}')
  return True


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import exporting  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  overrides = cli.overrides(OVERRIDES)
  try:
    exporting.preflight(FLAGS.workdir, FLAGS.out, FLAGS.overwrite, overrides)
    info = exporting.export_run(FLAGS.workdir, FLAGS.out, FLAGS.quantize, FLAGS.overwrite,
                                overrides)
  except (workdir.LoadError, exporting.ExportError) as e:
    sys.exit(f'error: {e}')
  logging.info('exported %s to %s: %s', FLAGS.workdir, FLAGS.out, info['tflite_bytes'])


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
