"""The sampler sweep of a trained run: an inference-time grid, scored on training data.

`run(workdir, out, values)` scores every cell of `grid(config, **values)` (the run's
sampler with each setting taken from the product of `values`) against the run's
*training* data (`evaluators.training_scorer`), so the held-out split stays for the
numbers reported with the choice (`tfganebm.sample`). Cells that differ only in their
chain length share one set of chains, scored as it passes each length. It writes
OUT/sweep.csv (a row per cell, `read_rows`), OUT/sweep.json (what was measured),
OUT/sweep_<metric>.png (heat maps) and OUT/best.cfg (`best_flags` of the best cell), and
resumes: a rerun scores only the cells sweep.csv lacks. `python -m tfganebm.sweep` is its
command.
"""

import csv
import dataclasses
import io
import itertools
import json
import math
import os

from absl import logging
import numpy as np

from tfganebm import data
from tfganebm import fields
from tfganebm import files
from tfganebm import progress
from tfganebm import runs
from tfganebm import sampler as sampler_lib
from tfganebm import workdir as workdir_lib

SWEEP_CSV, SWEEP_JSON, BEST_CFG = 'sweep.csv', 'sweep.json', 'best.cfg'
# The sampler's settings, in the order of a cell's key and of sweep.csv's first columns:
# every one of them is an axis a grid may vary.
SETTINGS = sampler_lib.SamplerConfig.names()
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
  if not values.get('target_accept'):  # a tuned run's step, as a fixed sampler's
    config = as_fixed(config)
  temperatures = values.pop('temperature', None)
  if temperatures and values.get('noise'):
    raise SweepError('give --langevin_noise or --langevin_temperature, not both')
  names = [name for name in SETTINGS if values.get(name)]
  axes = [list(dict.fromkeys(values[name])) for name in names]
  for name, axis in zip(names, axes):  # a value no sampler can take: refused, not skipped
    for value in axis:
      found = fields.problem(sampler_lib.SamplerConfig.field_of(name), value)
      if found:
        raise SweepError(f'the grid holds a sampler the run cannot use: --langevin_{name} '
                         f'{found}')
  if temperatures:
    names.append('temperature')
    axes.append(list(dict.fromkeys(temperatures)))
  cells, refused = [], []
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
      refused.append(str(e))
      continue
    # Settings the cell's sampler ignores keep the run's values: one cell, one chain.
    cell = dataclasses.replace(cell, **{n: getattr(config.sampler, n) for n in cell.ignored()})
    if cell not in cells:
      cells.append(cell)
  if not cells:
    raise SweepError(f'the grid holds no sampler the run can use: {refused[0]}')
  if refused:  # combinations the sampler's rules exclude (e.g. proposal=prior in data space)
    logging.warning('the grid skips %d combination(s) the sampler refuses, e.g.: %s',
                    len(refused), refused[0])
  return cells


def as_fixed(config):
  """`config` with its sampler's tuning off: a run loaded with a tuned sampler holds the tuned
  step size and noise, which a grid varies as it would a set one (a grid tunes only when its
  `target_accept` axis asks)."""
  if config.sampler.target_accept == 0:
    return config
  return config.override(langevin_target_accept=0.0)


def key(cell):
  """A cell's settings as a tuple, in SETTINGS order."""
  return tuple(getattr(cell, name) for name in SETTINGS)


def _chain_key(cell):
  # All but the length: one set of chains.
  return tuple(value for name, value in zip(SETTINGS, key(cell)) if name != 'steps')


def read_rows(path, sampler=None):
  """sweep.csv's rows as dicts of numbers (settings typed as the sampler's), or [].

  A setting without a column (a sweep.csv written before the setting was an axis) takes
  `sampler`'s value (the run's: what every cell used), or the SamplerConfig default.
  """
  fallback = dataclasses.asdict(sampler or sampler_lib.SamplerConfig())
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  typed = []
  for row in rows:
    try:
      entry = {name: _number(value) for name, value in row.items()}
      entry.update({name: fields.parse_text(sampler_lib.SamplerConfig.field_of(name),
                                            row[name]) if name in row else fallback[name]
                    for name in SETTINGS})
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



def run(workdir, out, values, num_samples=None, seed=0, num_reference=None, overrides=None,
        after_cell=None):
  """Runs (or resumes) the sweep of `workdir` over the grid `values` into `out`.

  Args:
    values: {setting: list of values} for `grid`: any SamplerConfig setting, and
      temperature.
    num_samples: samples per cell (default: 10,000 for 2D, where the sliced Wasserstein
      distance of 2,000 points varies by more than the cells differ; 2,000 for images).
    num_reference: training examples scored against (default: num_samples for 2D,
      10,000 for images).
    overrides: {flag name: value} for `runs.load_run` (data folders, averaging).
    after_cell: called with each newly scored row (tests interrupt a sweep with it).

  Returns:
    (rows, best row, default row or None): the row of every cell in `out` (this grid's
    and those of earlier sweeps into it); the best by the primary metric; the row of the
    run's own sampler, if scored.

  Raises:
    workdir.LoadError, SweepError, images.DataError: nothing was written.
  """
  # TensorFlow (chains, evaluators) and matplotlib (plots) load only for a sweep that runs:
  # reporting reads sweep.csv without them.
  from tfganebm import chains as chains_lib  # pylint: disable=g-import-not-at-top
  from tfganebm import evaluators  # pylint: disable=g-import-not-at-top
  workdir_lib.check_output(workdir, out)
  model, config = runs.load_run(workdir, overrides)
  if model.energy is None:
    raise SweepError(f'{workdir} is a plain GAN: it has no energy to sweep a sampler over')
  cells = grid(config, **values)
  dataset = data.load(config.data, config.run.seed)
  kind = evaluators.scoring_kind(config, dataset)
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
  _check_earlier(json_path, about, out)
  rows = read_rows(csv_path, config.sampler)
  scorer = evaluators.training_scorer(config, num_reference, dataset)
  # A conditional run's cells also read as the classes their chains were asked (in turn).
  read = evaluators.training_label_reader(config, dataset) if model.num_classes else None
  asked = chains_lib.sample_labels(model, num_samples)
  os.makedirs(out, exist_ok=True)
  files.write_json(json_path, about)

  def score(x):
    if not np.isfinite(x).all():  # a diverged chain: no score, never the best
      return {name: None for name in HEAT_MAPS[kind] + (('label_accuracy',) if read else ())}
    result = scorer(x, seed)
    if read is not None:
      result['label_accuracy'] = float(np.mean(read(x) == asked))
    return result

  done = {_row_key(row) for row in rows}
  logging.info('sweep of %s: %d cells, %d already scored in %s', workdir, len(cells),
               sum(key(cell) in done for cell in cells), csv_path)
  _score_cells(model, cells, rows, done, score, num_samples, seed, csv_path, PRIMARY[kind],
               after_cell)
  # `rows` holds every cell scored into `out`, this grid's and earlier ones' (the same run,
  # samples and seed, so they compare): a second grid (e.g. the latent space, in its own
  # step sizes) adds to the first.
  best, default = _write_best_and_heat_maps(out, rows, config, kind, workdir)
  return rows, best, default


def _check_earlier(json_path, about, out):
  """Raises SweepError if `out` holds a sweep of other settings than `about`."""
  if not os.path.exists(json_path):
    return
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


def _score_cells(model, cells, rows, done, score, num_samples, seed, csv_path, primary,
                 after_cell):
  """Scores the cells not `done` (keys of `rows`) by `score`, adding their rows to `rows`
  and `done` and writing sweep.csv after each: the cells of one set of chains (all
  settings but the length) from one run of the chains, read at each length."""
  from tfganebm import chains  # pylint: disable=g-import-not-at-top
  groups = {}
  for cell in cells:
    groups.setdefault(_chain_key(cell), []).append(cell)
  bar = progress.Progress(sum(key(cell) not in done for cell in cells), 'sweep cells')
  for group in groups.values():
    missing = [cell for cell in group if key(cell) not in done]
    if not missing:
      continue
    longest = max(missing, key=lambda c: c.steps)
    wanted = {cell.steps for cell in missing}
    chain, tuned = _tuned(model, longest, seed)
    for steps, x in chains.chains_at(model, num_samples, seed, chain, sorted(wanted)):
      cell = dataclasses.replace(longest, steps=steps)
      row = dict(zip(SETTINGS, key(cell)), **tuned, **{k: v for k, v in score(x).items()
                                                       if not isinstance(v, list)})
      rows.append(row)
      done.add(key(cell))
      _write_rows(csv_path, rows)  # after every cell: a kill loses at most the one running
      value = row.get(primary)
      bar.update(1, f'{cell.describe()}: {primary}='
                    + ('not finite' if value is None else f'{value:.4g}'))
      if after_cell is not None:
        after_cell(row)
  bar.close()


def _tuned(model, cell, seed):
  """(the sampler the chains of `cell` run, sweep.csv's tuning columns): a cell with a
  `target_accept` tunes its step size first (`tuning.tune`, from its step_size, over the
  longest of its lengths), and its row records what tuning chose."""
  if cell.target_accept == 0 or cell.steps == 0:  # G alone: no step to tune
    return cell, {}
  from tfganebm import tuning  # pylint: disable=g-import-not-at-top
  tuned, diagnostics = tuning.tune(model, cell, seed)
  return tuned, dict(tuned_step_size=tuned.step_size, tuned_noise=tuned.noise,
                     tuned_acceptance=diagnostics['acceptance'])


def _write_best_and_heat_maps(out, rows, config, kind, workdir):
  """Writes best.cfg and the heat maps of `rows`; returns (best row, default row or None).

  Raises:
    SweepError: no row has a finite primary metric.
  """
  from tfganebm import plots  # pylint: disable=g-import-not-at-top
  primary = PRIMARY[kind]
  scored = [row for row in rows
            if row.get(primary) is not None and math.isfinite(row[primary])]
  if not scored:
    raise SweepError('no cell of the grid gave finite samples; try smaller step sizes')
  best = min(scored, key=lambda row: row[primary])
  own = as_fixed(config).sampler
  default = next((row for row in rows if _same(_row_key(row), key(own))), None)
  _write_best(os.path.join(out, BEST_CFG), best, primary, workdir, default)
  heat = HEAT_MAPS[kind] + (MODE_HEAT_MAPS if 'mode_kl' in best else ())
  for metric in heat:
    with files.atomic_path(os.path.join(out, f'sweep_{metric}.png')) as png:
      plots.sweep_heat_map(png, rows, metric, SETTINGS,
                           title=f'{config.data.dataset}: {metric} on training data')
  return best, default


def best_flags(row):
  """The flag lines of a cell, as `sample` and `export` read them."""
  return [fields.flag_line(f'langevin_{name}', sampler_lib.SamplerConfig.field_of(name),
                           row[name]) for name in SETTINGS]


def _write_best(path, best, primary, workdir, default):
  lines = [f'# The best sampler of a sweep over {os.path.basename(os.path.abspath(workdir))}: '
           f'{primary} {best[primary]:.4g} on training data'
           + (f' (the run\'s own: {default[primary]:.4g})' if default and default.get(primary)
              is not None else '') + '.',
           '# python -m tfganebm.sample --workdir W --flagfile best.cfg --out OUT',
           '# python -m tfganebm.export --workdir W --flagfile best.cfg --out OUT']
  files.write_text(path, '\n'.join(lines + best_flags(best)) + '\n')
