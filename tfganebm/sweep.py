"""Chooses a trained run's sampler by measurement: an inference-time grid, no retraining.

  python -m tfganebm.sweep --workdir runs/moons --langevin_steps 0,10,60,200 \
      --langevin_step_size 1e-3,1e-2 [--langevin_noise ... | --langevin_temperature 1,0.5] \
      [--langevin_grad_clip ...] [--langevin_metropolis true,false] [--langevin_space data,latent]

Each sampler flag takes a comma list; the grid is their product, and a flag not
given keeps the run's value. Every cell is scored against the *training* data
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

import csv
import dataclasses
import io
import itertools
import math
import os
import sys

from absl import flags
from absl import logging

from tfganebm import cli

FLAGS = flags.FLAGS
SWEEP_CSV, SWEEP_JSON, BEST_CFG = 'sweep.csv', 'sweep.json', 'best.cfg'
# The sampler's settings, in the order of a cell's key and of sweep.csv's first columns.
SETTINGS = ('steps', 'step_size', 'noise', 'grad_clip', 'metropolis', 'space')
# The metric a cell is chosen by, and the heat maps drawn, by data kind.
# 'unlabelled': images without labels, scored by the Laplacian-pyramid SWD.
PRIMARY = {'points': 'sliced_wasserstein', 'images': 'fid', 'unlabelled': 'swd'}
HEAT_MAPS = {'points': ('sliced_wasserstein', 'mmd2'), 'images': ('fid', 'kid'),
             'unlabelled': ('swd',)}
MODE_HEAT_MAPS = ('high_quality_fraction', 'mode_kl')


class SweepError(ValueError):
  """A sweep that cannot run as asked, with the reason and the fix."""


def grid(config, **values):
  """The cells of a grid: SamplerConfigs, `config.sampler` with each setting of `values` (a
  setting name -> list of values; absent or empty keeps the run's) taken from the product.

  `temperature` (a list) sets noise = sqrt(2 T step_size) per cell instead of `noise`.

  Raises:
    SweepError: a value the sampler refuses, or both noise and temperature.
  """
  temperatures = values.pop('temperature', None)
  if temperatures and values.get('noise'):
    raise SweepError('give --langevin_noise or --langevin_temperature, not both')
  names = [name for name in SETTINGS if values.get(name)]
  axes = [list(dict.fromkeys(values[name])) for name in names]
  if temperatures:
    names.append('temperature')
    axes.append(list(dict.fromkeys(temperatures)))
  cells = []
  for combination in itertools.product(*axes):
    changes = dict(zip(names, combination))
    temperature = changes.pop('temperature', None)
    try:
      if temperature is not None:
        if temperature <= 0:
          raise ValueError(f'--langevin_temperature must be > 0, not {temperature}')
        step_size = changes.get('step_size', config.sampler.step_size)
        changes['noise'] = math.sqrt(2 * temperature * step_size)
      # Through the run's Config, so that a refusal names the flag (--langevin_space ...).
      cell = config.override(**{f'langevin_{k}': v for k, v in changes.items()}).sampler
    except ValueError as e:  # fields.ConfigError
      raise SweepError(f'the grid holds a sampler the run cannot use: {e}') from None
    if cell not in cells:
      cells.append(cell)
  return cells


def key(cell):
  """A cell's settings as a tuple, in SETTINGS order."""
  return tuple(getattr(cell, name) for name in SETTINGS)


def _chain_key(cell):
  return key(cell)[1:]  # all but the length: one set of chains


def read_rows(path):
  """sweep.csv's rows as dicts of numbers (settings typed as the sampler's), or []."""
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  typed = []
  for row in rows:
    try:
      entry = {name: _number(value) for name, value in row.items()}
      entry['steps'] = int(entry['steps'])
      entry['metropolis'] = row['metropolis'] == 'True'
      entry['space'] = row['space']
    except (KeyError, TypeError, ValueError) as e:
      raise SweepError(f'{path} is not a sweep.csv written by tfganebm.sweep ({e}); give '
                       'another --out') from None
    typed.append(entry)
  return typed


def _number(text):
  if text in ('', None):
    return None
  try:
    return float(text)
  except ValueError:
    return text


def _write_rows(path, rows):
  from tfganebm import files  # pylint: disable=g-import-not-at-top
  names = list(SETTINGS) + sorted({n for row in rows for n in row} - set(SETTINGS))
  text = io.StringIO()
  writer = csv.DictWriter(text, names, lineterminator='\n')
  writer.writeheader()
  for row in rows:
    writer.writerow({n: ('' if row.get(n) is None else repr(row[n])
                         if isinstance(row.get(n), float) else row.get(n)) for n in names})
  files.write_text(path, text.getvalue())


def _row_key(row):
  return tuple(row[name] for name in SETTINGS)


def _same(key_a, key_b):
  """Whether two cells' settings agree, floats to 3 digits (a flagfile's 0.0447 is the
  temperature-1 noise sqrt(2e-3) = 0.044721...)."""
  return all(math.isclose(a, b, rel_tol=1e-3) if isinstance(a, float) else a == b
             for a, b in zip(key_a, key_b))


def scoring_kind(config, dataset):
  """'points', 'images' (labelled: a classifier's metrics) or 'unlabelled' (images)."""
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  if data.kind(config.data) == 'points':
    return 'points'
  return 'images' if dataset.num_classes >= 2 else 'unlabelled'


class TrainingScorer:
  """Scores samples against the run's training data (never its held-out split)."""

  def __init__(self, config, num_reference, seed, dataset=None):
    import numpy as np  # pylint: disable=g-import-not-at-top
    from tfganebm import data  # pylint: disable=g-import-not-at-top
    dataset = dataset or data.load(config.data, config.run.seed)
    self.kind = scoring_kind(config, dataset)
    order = np.random.default_rng(0).permutation(len(dataset.train))[:num_reference]
    from tfganebm import sources  # pylint: disable=g-import-not-at-top
    self.reference = data.to_unit_range(sources.as_array(dataset.train[order]))
    self.seed = seed
    if self.kind == 'images':
      from tfganebm import evaluation  # pylint: disable=g-import-not-at-top
      self.classifier = evaluation._classifier(config, dataset)  # pylint: disable=protected-access
      self.reference_features, _ = self.classifier.features_and_probabilities(self.reference)
    else:
      self.mixture = dataset.mixture  # the centres and std, the same for every split

  def __call__(self, x):
    import numpy as np  # pylint: disable=g-import-not-at-top
    from tfganebm import metrics  # pylint: disable=g-import-not-at-top
    if not np.isfinite(x).all():  # a diverged chain: no score, never the best
      return {name: None for name in HEAT_MAPS[self.kind]}
    if self.kind == 'images':
      return metrics.evaluate_images(*self.classifier.features_and_probabilities(x),
                                     self.reference_features, seed=self.seed)
    if self.kind == 'unlabelled':
      return metrics.pyramid_sliced_wasserstein(x, self.reference, seed=self.seed)
    # The points metrics but the nearest-neighbour distances (quadratic in n, and not
    # what a sampler is chosen by).
    result = dict(sliced_wasserstein=metrics.sliced_wasserstein(x, self.reference),
                  mmd2=metrics.mmd2(x, self.reference))
    if self.mixture is not None:
      result.update(metrics.mode_metrics(x, self.mixture.centres, self.mixture.std))
    return result


def run(workdir, out, values, num_samples=None, seed=0, num_reference=None, overrides=None,
        after_cell=None):
  """Runs (or resumes) the sweep of `workdir` over the grid `values` into `out`.

  Args:
    values: {setting: list of values} for `grid` (steps, step_size, noise, temperature,
      grad_clip, metropolis, space).
    num_samples: samples per cell (default: 10,000 for 2D, where the sliced Wasserstein
      distance of 2,000 points varies by more than the cells differ; 2,000 for images).
    num_reference: training examples scored against (default: num_samples for 2D,
      10,000 for images).
    overrides: {flag name: value} for `workdir.load_run` (data folders, averaging).
    after_cell: called with each newly scored row (tests interrupt a sweep with it).

  Returns:
    (rows, best row, default row or None): the row of every cell in `out` (this grid's
    and those of earlier sweeps into it); the best by the primary metric; the row of the
    run's own sampler, if scored.

  Raises:
    workdir.LoadError, SweepError, images.DataError: nothing was written.
  """
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  from tfganebm import evaluation  # pylint: disable=g-import-not-at-top
  from tfganebm import files  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.check_output(workdir, out)
  model, config = workdir_lib.load_run(workdir, overrides)
  if model.energy is None:
    raise SweepError(f'{workdir} is a plain GAN: it has no energy to sweep a sampler over')
  cells = grid(config, **values)
  dataset = data.load(config.data, config.run.seed)
  kind = scoring_kind(config, dataset)
  num_samples = num_samples or (2000 if kind != 'points' else 10000)
  num_reference = num_reference or (10000 if kind != 'points' else num_samples)
  about = dict(workdir=os.path.abspath(workdir), step=int(model.step.numpy()),
               **model.averaging(),
               dataset=config.data.dataset,
               num_samples=num_samples, seed=seed, num_reference=num_reference,
               scored_against='training data', primary=PRIMARY[kind],
               proposal=config.sampler.proposal, jump_prob=config.sampler.jump_prob,
               local_beta=config.sampler.local_beta)
  json_path, csv_path = os.path.join(out, SWEEP_JSON), os.path.join(out, SWEEP_CSV)
  if os.path.exists(json_path):
    import json  # pylint: disable=g-import-not-at-top
    try:
      with open(json_path) as f:
        earlier = json.load(f)
    except (OSError, ValueError) as e:
      raise SweepError(f'{json_path} is not readable ({e}); give another --out') from None
    if earlier != about:  # `about` holds JSON values only, as read back
      changed = sorted(k for k in about if not isinstance(earlier, dict)
                       or earlier.get(k) != about[k])
      raise SweepError(f'{out} holds a sweep with other {", ".join(changed)}; its cells would not '
                       'compare: give another --out (or the same settings to resume it)')
  rows = read_rows(csv_path)
  done = {_row_key(row) for row in rows}
  scorer = TrainingScorer(config, num_reference, seed, dataset)
  os.makedirs(out, exist_ok=True)
  files.write_json(json_path, about)

  groups = {}
  for cell in cells:
    groups.setdefault(_chain_key(cell), []).append(cell)
  todo = [cell for cell in cells if key(cell) not in done]
  logging.info('sweep of %s: %d cells, %d already scored in %s', workdir, len(cells),
               len(cells) - len(todo), csv_path)
  from tfganebm import progress  # pylint: disable=g-import-not-at-top
  bar = progress.Progress(len(todo), 'sweep cells')
  for group in groups.values():
    missing = [cell for cell in group if key(cell) not in done]
    if not missing:
      continue
    longest = max(missing, key=lambda c: c.steps)
    wanted = {cell.steps for cell in missing}
    for steps, x in evaluation.chains_at(model, num_samples, seed, longest, sorted(wanted)):
      cell = dataclasses.replace(longest, steps=steps)
      row = dict(zip(SETTINGS, key(cell)), **{k: v for k, v in scorer(x).items()
                                              if not isinstance(v, list)})
      rows.append(row)
      done.add(key(cell))
      _write_rows(csv_path, rows)  # after every cell: a kill loses at most the one running
      value = row.get(PRIMARY[kind])
      bar.update(1, f'{cell.describe()}: {PRIMARY[kind]}='
                    + ('not finite' if value is None else f'{value:.4g}'))
      if after_cell is not None:
        after_cell(row)
  bar.close()

  # `rows` holds every cell scored into `out`, this grid's and earlier ones' (the same run,
  # samples and seed, so they compare): a second grid (e.g. the latent space, in its own
  # step sizes) adds to the first.
  primary = PRIMARY[kind]
  scored = [row for row in rows
            if row.get(primary) is not None and math.isfinite(row[primary])]
  if not scored:
    raise SweepError('no cell of the grid gave finite samples; try smaller step sizes')
  best = min(scored, key=lambda row: row[primary])
  default = next((row for row in rows if _same(_row_key(row), key(config.sampler))), None)
  _write_best(os.path.join(out, BEST_CFG), best, primary, workdir, default)
  heat = HEAT_MAPS[kind] + (MODE_HEAT_MAPS if 'mode_kl' in best else ())
  from tfganebm import plots  # pylint: disable=g-import-not-at-top
  for metric in heat:
    with files.atomic_path(os.path.join(out, f'sweep_{metric}.png')) as png:
      plots.sweep_heat_map(png, rows, metric, SETTINGS,
                           title=f'{config.data.dataset}: {metric} on training data')
  return rows, best, default


def best_flags(row):
  """The flag lines of a cell, as `sample` and `export` read them."""
  return [f'--langevin_steps={row["steps"]}', f'--langevin_step_size={row["step_size"]!r}',
          f'--langevin_noise={row["noise"]!r}', f'--langevin_grad_clip={row["grad_clip"]!r}',
          '--langevin_metropolis' if row['metropolis'] else '--nolangevin_metropolis',
          f'--langevin_space={row["space"]}']


def _write_best(path, best, primary, workdir, default):
  from tfganebm import files  # pylint: disable=g-import-not-at-top
  lines = [f'# The best sampler of a sweep over {os.path.basename(os.path.abspath(workdir))}: '
           f'{primary} {best[primary]:.4g} on training data'
           + (f' (the run\'s own: {default[primary]:.4g})' if default and default.get(primary)
              is not None else '') + '.',
           '# python -m tfganebm.sample --workdir W --flagfile best.cfg --out OUT',
           '# python -m tfganebm.export --workdir W --flagfile best.cfg --out OUT']
  files.write_text(path, '\n'.join(lines + best_flags(best)) + '\n')


# --- the command line ---

# Flag name -> (setting of `grid`, parser of one value).
GRID_FLAGS = dict(
    langevin_steps=('steps', int), langevin_step_size=('step_size', float),
    langevin_noise=('noise', float), langevin_temperature=('temperature', float),
    langevin_grad_clip=('grad_clip', float),
    langevin_metropolis=('metropolis', lambda v: {'true': True, 'false': False}[v.lower()]),
    langevin_space=('space', str))


def define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a tfganebm.train run with an energy.')
  flags.DEFINE_string('out', None, 'Directory of the sweep (default: WORKDIR/sweep).')
  flags.DEFINE_integer('num_samples', None, 'Samples per cell (default: 10,000 for 2D, 2,000 '
                       'for images).', lower_bound=2)
  flags.DEFINE_integer('num_reference', None, 'Training examples scored against (default: '
                       'num_samples for 2D, 10,000 for images).', lower_bound=2)
  flags.DEFINE_integer('seed', 0, 'Seed of z and of the chains (the same for every cell).')
  for name, (setting, _) in GRID_FLAGS.items():
    flags.DEFINE_list(name, None, f'Comma list of the sampler\'s {setting} (default: the run\'s).')
  cli.define_config_flags(('data_dir', 'classifier_dir', 'average_checkpoints'), optional=True)
  flags.mark_flags_as_required(['workdir'])


def _grid_values():
  values = {}
  for name, (setting, parse) in GRID_FLAGS.items():
    raw = FLAGS[name].value
    if raw is None:
      continue
    try:
      values[setting] = [parse(v.strip()) for v in raw]
    except (ValueError, KeyError):
      sys.exit(f'error: --{name}={",".join(raw)} is not a comma list of '
               f'{"true/false" if setting == "metropolis" else parse.__name__} values')
  return values


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import images  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  out = FLAGS.out or os.path.join(FLAGS.workdir, 'sweep')
  try:
    rows, best, default = run(FLAGS.workdir, out, _grid_values(), FLAGS.num_samples, FLAGS.seed,
                              FLAGS.num_reference,
                              cli.overrides(('data_dir', 'classifier_dir', 'average_checkpoints')))
  except (workdir.LoadError, SweepError, images.DataError) as e:
    sys.exit(f'error: {e}')
  primary = next(m for m in PRIMARY.values() if m in best)
  print(f'{len(rows)} cells in {os.path.join(out, SWEEP_CSV)}; best {primary} '
        f'{best[primary]:.4g} on training data: {" ".join(best_flags(best))}')
  if default is not None:
    print(f"the run's own sampler: {primary} {default[primary]:.4g}")
  print(f'use it: python -m tfganebm.sample --workdir {FLAGS.workdir} '
        f'--flagfile {os.path.join(out, BEST_CFG)} --out OUT')


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
