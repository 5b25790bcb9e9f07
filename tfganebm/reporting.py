"""One self-contained HTML page of results, like a paper's results section.

`write(paths, out)` reads the workdirs at `paths` (`read_run`) and writes the page
(`render`). Per dataset: a table of the real-data floor, the plain GAN, G and G + each
sampler measured (the run's final evaluation and every `tfganebm.sample` output in a
folder of the run), the quality-against-steps plots, the sweep heat maps and best cells,
the figures, and the exact command that made each run (`command`). Images are embedded
(base64 PNG): the page is one file to mail or archive. Reads only JSON, CSV and PNG files
the runs wrote; runs nothing. `python -m tfganebm.report` is its command.
"""

import base64
import dataclasses
import datetime
import html
import json
import os

# Columns of the metric tables, by data kind: (metrics.json key, header, format).
COLUMNS = {
    'points': (('sliced_wasserstein', 'sliced W', '.4f'), ('mmd2', 'MMD²', '.4f'),
               ('modes_recovered', 'modes', 'd'), ('high_quality_fraction', 'high quality',
                                                     '.1%'),
               ('mode_kl', 'mode KL', '.3f'), ('label_accuracy', 'label acc.', '.1%')),
    'images': (('fid', 'classifier-FID', '.2f'), ('kid', 'KID', '.4f'),
               ('classes_covered', 'classes', 'd'), ('class_kl', 'class KL', '.3f'),
               ('swd', 'pyramid SWD (x1e3)', '.2f'), ('label_accuracy', 'label acc.', '.1%')),
}
FIGURES = ('samples.png', 'langevin_progression.png')
GENERATOR = 'tfganebm.report'  # in the page's <meta name="generator">: a page it may replace
STYLE = '''
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.floor td { color: #666; font-style: italic; } tr.ours td { font-weight: 600; }
figure { margin: .8em 0; } figcaption { color: #555; font-size: .9em; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: .6em; white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85em; }
'''
# The page checks itself when opened: how many of its images decoded (for a browser test).
SELF_CHECK = '''
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images', images.length);
  document.body.setAttribute('data-images-loaded', loaded.length);
});
'''


class ReportError(ValueError):
  """A folder that is not a run, with the fix."""


@dataclasses.dataclass
class Run:
  """What the page shows of one workdir."""
  path: str
  config: object
  metrics: dict
  samples: list  # [(folder name, metrics dict)] of tfganebm.sample outputs
  curves: list   # [(folder, quality_vs_steps dict, png path)]
  sweeps: list   # [(folder, rows, best row, [png paths])]

  @property
  def name(self):
    return os.path.basename(os.path.normpath(self.path))


def _read_json(path):
  """A JSON object (dict) from `path`, or None (missing, unreadable, or not an object)."""
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except (OSError, ValueError, RecursionError):
    return None
  return value if isinstance(value, dict) else None


def read_run(path):
  """A `Run` of the workdir `path`, its sample, curve and sweep folders one level down.

  Raises:
    ReportError: not a tfganebm workdir.
  """
  from tfganebm import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  try:
    config = workdir_lib.read_config(path)
  except ValueError as e:
    raise ReportError(f'{path}: {e}') from None
  if config is None:
    raise ReportError(f'{path} is not a tfganebm.train workdir (no config.json or flags.txt)')
  run = Run(path, config, _read_json(os.path.join(path, workdir_lib.METRICS_FILE)) or {}, [],
            [], [])
  for entry in sorted(os.listdir(path)):
    folder = os.path.join(path, entry)
    if not os.path.isdir(folder) or entry.startswith('.') or entry in ('checkpoints',
                                                                        'tensorboard'):
      continue
    found = _read_json(os.path.join(folder, workdir_lib.METRICS_FILE))
    if isinstance(found, dict) and 'generator' in found:
      run.samples.append((entry, found))
    curve = _read_json(os.path.join(folder, 'quality_vs_steps.json'))
    if isinstance(curve, dict) and curve.get('rows'):
      run.curves.append((entry, curve, os.path.join(folder, 'quality_vs_steps.png')))
    if os.path.exists(os.path.join(folder, 'sweep.csv')):
      from tfganebm import sweeping  # pylint: disable=g-import-not-at-top
      try:
        rows = sweeping.read_rows(os.path.join(folder, 'sweep.csv'), config.sampler)
      except sweeping.SweepError:
        rows = []
      about = _read_json(os.path.join(folder, 'sweep.json')) or {}
      primary = about.get('primary')
      scored = [r for r in rows if primary and r.get(primary) is not None]
      best = min(scored, key=lambda r: r[primary]) if scored else None
      pngs = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                    if f.startswith('sweep_') and f.endswith('.png'))
      run.sweeps.append((entry, rows, best, pngs, primary))
  return run


def _image(path, caption):
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError:
    return ''
  if not data.startswith(b'\x89PNG'):
    return ''
  encoded = base64.b64encode(data).decode('ascii')
  return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
          f'<figcaption>{html.escape(caption)}</figcaption></figure>')


def _cell(value, fmt):
  if value is None or isinstance(value, (list, dict)):
    return '<td>–</td>'
  try:
    return f'<td>{format(value, fmt)}</td>'
  except (TypeError, ValueError):
    return f'<td>{html.escape(str(value))}</td>'


def _row(label, metrics, columns, kind='', num=None):
  cells = ''.join(_cell(metrics.get(key), fmt) for key, _, fmt in columns)
  count = '' if num is False else f'<td>{html.escape(str(num)) if num is not None else "–"}</td>'
  return f'<tr class="{kind}"><td>{html.escape(label)}</td>{count}{cells}</tr>'


def _sampler_label(langevin):
  from tfganebm import sampler as sampler_lib  # pylint: disable=g-import-not-at-top
  try:
    return sampler_lib.SamplerConfig(**langevin).describe()
  except (TypeError, ValueError):
    return 'G + chain'


def command(config):
  """The command that makes this run: tfganebm.train with every setting that is not the
  default."""
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  defaults = config_lib.Config().flat()
  parts = ['python -m tfganebm.train']
  for name, value in config.flat().items():
    if value == defaults.get(name) or name == 'workdir':
      continue
    if isinstance(value, bool):
      parts.append(f'--{name}' if value else f'--no{name}')
    else:
      text = ','.join(map(str, value)) if isinstance(value, tuple) else value
      parts.append(f'--{name}={text}')
  parts.append(f'--workdir={config.run.workdir or "W"}')
  return ' '.join(parts)


def _table(runs, kind):
  """The metric table of one dataset: floor, plain GANs, then per GAN + EBM run G and
  G + each sampler measured."""
  columns = [c for c in COLUMNS[kind]
             if any(c[0] in (r.metrics.get('generator') or {}) for r in runs)
             or any(c[0] in m.get('generator', {}) for r in runs for _, m in r.samples)]
  head = ''.join(f'<th>{html.escape(title)}</th>' for _, title, _ in columns)
  lines = [f'<table><tr><th>samples</th><th>n</th>{head}</tr>']
  with_floor = next((r.metrics for r in runs if r.metrics.get('real_data')), None)
  if with_floor:
    lines.append(_row('held-out data (floor)', with_floor['real_data'], columns, 'floor',
                      with_floor.get('num_samples')))
  for run in runs:
    if not run.config.use_energy and run.metrics.get('generator'):
      lines.append(_row(f'plain GAN ({run.name})', run.metrics['generator'], columns,
                        num=run.metrics.get('num_samples')))
  for run in runs:
    if not run.config.use_energy:
      continue
    measured = ([('final evaluation', run.metrics)] if run.metrics.get('generator') else [])
    measured += run.samples
    if measured:
      lines.append(_row(f'G alone ({run.name})', measured[0][1]['generator'], columns,
                        num=measured[0][1].get('num_samples')))
    for folder, result in measured:
      if result.get('generator_langevin'):
        label = f'{_sampler_label(result.get("langevin", {}))} ({run.name}, {folder})'
        lines.append(_row(label, result['generator_langevin'], columns, 'ours',
                          result.get('num_samples')))
  lines.append('</table>')
  note = ('<p>Lower is better, but for modes, high quality and classes. n: the samples of '
          'each row (the metrics of small samples read worse); the floor is a second '
          'held-out sample, the best a model can score at that n.</p>')
  return '\n'.join(lines) + note


def _curve_table(curve, kind):
  columns = [c for c in COLUMNS[kind] if c[0] in curve['rows'][0]]
  head = ''.join(f'<th>{html.escape(title)}</th>' for _, title, _ in columns)
  lines = [f'<table><tr><th>chain steps k</th>{head}</tr>']
  for row in curve['rows']:
    lines.append(_row(str(row['steps']), row, columns, num=False))
  if curve.get('baseline'):
    lines.append(_row('plain GAN', curve['baseline'], columns, num=False))
  if curve.get('floor'):
    lines.append(_row('held-out data (floor)', curve['floor'], columns, 'floor', num=False))
  lines.append('</table>')
  return '\n'.join(lines)


def _sweep_section(run, folder, rows, best, pngs, primary):
  parts = [f'<h4>Sweep {html.escape(folder)} of {html.escape(run.name)}: {len(rows)} cells, '
           'scored on training data</h4>']
  if best is not None:
    from tfganebm import sweeping  # pylint: disable=g-import-not-at-top
    parts.append(f'<p>Best by {html.escape(primary)} ({best[primary]:.4g}): '
                 f'<code>{html.escape(" ".join(sweeping.best_flags(best)))}</code></p>')
  parts += [_image(p, f'{run.name}/{folder}: {os.path.basename(p)[6:-4]} per cell')
            for p in pngs]
  return '\n'.join(parts)


def render(runs, title='tfganebm results'):
  """The page's HTML for `runs` (a list of `Run`)."""
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  by_dataset = {}
  for run in runs:
    by_dataset.setdefault(run.config.data.dataset, []).append(run)
  out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
         f'<meta name="generator" content="{GENERATOR}">',
         f'<title>{html.escape(title)}</title><style>{STYLE}</style>',
         f'<script>{SELF_CHECK}</script></head><body>',
         f'<h1>{html.escape(title)}</h1>',
         f'<p>{len(runs)} runs on {len(by_dataset)} datasets; made '
         f'{datetime.date.today().isoformat()} by <code>python -m tfganebm.report</code>.</p>']
  for dataset, group in by_dataset.items():
    kind = data.kind(group[0].config.data)
    out.append(f'<h2 id="{html.escape(dataset)}">{html.escape(dataset)}</h2>')
    out.append('<h3>Sample quality</h3>')
    out.append(_table(group, kind))
    for run in group:
      for folder, curve, png in run.curves:
        out.append(f'<h3>Quality against chain length: {html.escape(run.name)}/'
                   f'{html.escape(folder)}</h3>')
        out.append(f'<p>{html.escape(str(curve.get("label", "")))}, '
                   f'{html.escape(str(curve.get("num_samples")))} samples against held-out '
                   'data.</p>')
        out.append(_curve_table(curve, kind))
        out.append(_image(png, f'{run.name}/{folder}: metrics against chain steps k'))
      for folder, rows, best, pngs, primary in run.sweeps:
        out.append(_sweep_section(run, folder, rows, best, pngs, primary))
    out.append('<h3>Figures</h3>')
    for run in group:
      for name in FIGURES:
        out.append(_image(os.path.join(run.path, name), f'{run.name}: {name[:-4]}'))
      for folder, _ in run.samples:
        out.append(_image(os.path.join(run.path, folder, 'samples.png'),
                          f'{run.name}/{folder}: samples'))
    out.append('<h3>Commands</h3>')
    for run in group:
      out.append(f'<p>{html.escape(run.name)} (step {html.escape(str(run.metrics.get("step", "?")))}):</p>'
                 f'<pre>{html.escape(command(run.config))}</pre>')
  out.append('</body></html>')
  return '\n'.join(out)


def write(paths, out, title='tfganebm results'):
  """Reads the runs at `paths` and writes the page to `out` (atomically), replacing only
  an earlier page of this command.

  Raises:
    ReportError: a path that is not a run, or an `out` that is another file; nothing was
      written.
  """
  from tfganebm import files  # pylint: disable=g-import-not-at-top
  if os.path.lexists(out):
    try:
      with open(out, encoding='utf-8', errors='replace') as f:
        ours = f'<meta name="generator" content="{GENERATOR}">' in f.read(4096)
    except OSError:
      ours = False
    if not ours:
      raise ReportError(f'--out {out} exists and is not a page written by tfganebm.report; '
                        'name a new file')
  runs = [read_run(path) for path in paths]
  page = render(runs, title)
  # A new folder for the page is made, as `sample --out` and `export --out` make theirs; an
  # unwritable place is the command's one line about the OSError (cli.run).
  try:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  except (NotADirectoryError, FileNotFoundError, FileExistsError) as e:
    raise ReportError(f'cannot make the folder of --out {out}: {e.strerror or e}; name a page '
                      'in a folder') from None
  files.write_text(out, page)
  return runs
