"""Chooses a trained run's sampler by measurement: an inference-time grid, no retraining.

  python -m tfganebm.sweep --workdir runs/moons --langevin_steps 0,10,60,200 \
      --langevin_step_size 1e-3,1e-2 [--langevin_noise ... | --langevin_temperature 1,0.5] \
      [--langevin_grad_clip ...] [--langevin_metropolis true,false] [--langevin_space data,latent]
      [--langevin_proposal langevin,prior] [--langevin_jump_prob 0.5,1] [--langevin_local_beta ...]

Each sampler flag (every SamplerConfig setting) takes a comma list; the grid is their
product, less the combinations the sampler refuses (proposal=prior in data space: skipped
with a warning), and a flag not given keeps the run's value, as do the settings a cell's
proposal ignores. Every cell is scored against the *training* data
(2D: sliced Wasserstein, MMD² and the mode metrics against as many training points
as samples, 10,000 by default; images: classifier-FID, KID and coverage of 2,000
samples against 10,000 training images), so the held-out split stays for the numbers
reported with the choice (`tfganebm.sample`). Cells that differ only in their
chain length share one set of chains, scored as it passes each length.

Writes into --out (default WORKDIR/sweep):
  sweep.csv        one row per cell: its settings and every metric
  sweep.json       what the sweep measured (the run's step, samples, seed, split)
  sweep_<m>.png    a heat map per headline metric: chain length against the rest
  best.cfg         the best cell's flags, a flagfile fragment for sample and export:
                     python -m tfganebm.sample --workdir W --flagfile OUT/best.cfg --out S
Resumable: a rerun with the same --out scores only the cells sweep.csv lacks; a
sweep over another grid into the same --out adds its cells (best.cfg and the heat
maps cover them all).
"""

import os
import sys

from absl import flags

from tfganebm import cli
from tfganebm import fields
from tfganebm.sampler import SamplerConfig

FLAGS = flags.FLAGS
# Flag name -> the setting of `grid` it lists: every sampler setting, and the temperature
# (noise = sqrt(2 T step_size) per cell).
GRID_FLAGS = {**{f'langevin_{name}': name for name in SamplerConfig.names()},
              'langevin_temperature': 'temperature'}


def define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a tfganebm.train run with an energy.')
  flags.DEFINE_string('out', None, 'Directory of the sweep (default: WORKDIR/sweep).')
  flags.DEFINE_integer('num_samples', None, 'Samples per cell (default: 10,000 for 2D, 2,000 '
                       'for images).', lower_bound=2)
  flags.DEFINE_integer('num_reference', None, 'Training examples scored against (default: '
                       'num_samples for 2D, 10,000 for images).', lower_bound=2)
  flags.DEFINE_integer('seed', 0, 'Seed of z and of the chains (the same for every cell).')
  for name, setting in GRID_FLAGS.items():
    flags.DEFINE_list(name, None, f'Comma list of the sampler\'s {setting} (default: the run\'s).')
  cli.define_config_flags(('data_dir', 'classifier_dir', 'average_checkpoints'), optional=True)
  flags.mark_flags_as_required(['workdir'])


def _grid_values():
  values = {}
  for name, setting in GRID_FLAGS.items():
    raw = FLAGS[name].value
    if raw is None:
      continue
    field = SamplerConfig.field_of('noise' if setting == 'temperature' else setting)
    try:
      values[setting] = [fields.parse_text(field, v) for v in raw]
    except ValueError:
      sys.exit(f'error: --{name}={",".join(raw)} is not a comma list of '
               f'{fields.type_name(field).removeprefix("a ").removeprefix("an ")} values')
  return values


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import images  # pylint: disable=g-import-not-at-top
  from tfganebm import sweeping  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  out = FLAGS.out or os.path.join(FLAGS.workdir, 'sweep')
  try:
    rows, best, default = sweeping.run(
        FLAGS.workdir, out, _grid_values(), FLAGS.num_samples, FLAGS.seed, FLAGS.num_reference,
        cli.overrides(('data_dir', 'classifier_dir', 'average_checkpoints')))
  except (workdir.LoadError, sweeping.SweepError, images.DataError) as e:
    sys.exit(f'error: {e}')
  primary = next(m for m in sweeping.PRIMARY.values() if m in best)
  print(f'{len(rows)} cells in {os.path.join(out, sweeping.SWEEP_CSV)}; best {primary} '
        f'{best[primary]:.4g} on training data: {" ".join(sweeping.best_flags(best))}')
  if default is not None:
    print(f"the run's own sampler: {primary} {default[primary]:.4g}")
  print(f'use it: python -m tfganebm.sample --workdir {FLAGS.workdir} '
        f'--flagfile {os.path.join(out, sweeping.BEST_CFG)} --out OUT')


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
