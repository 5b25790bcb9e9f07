"""Matplotlib figures of a run: samples, the learned density, the Langevin progression.

2D runs get scatter plots and a density map; image runs get image grids and a
strip of chains through the Langevin steps.
"""

from matplotlib import figure
from matplotlib import patches
from matplotlib import ticker
import numpy as np

_LIMITS = (-1.1, 1.1)


def _scatter(ax, x, title, color):
  ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.5, color=color, linewidths=0)
  ax.set_title(title, fontsize=10)
  ax.set_xlim(*_LIMITS)
  ax.set_ylim(*_LIMITS)
  ax.set_aspect('equal')


def _save(fig, path, rect=(0, 0, 1, 1)):
  """Saves to a path or a binary file object, as PNG; the panels laid out inside `rect`."""
  fig.tight_layout(rect=rect)
  fig.savefig(path, dpi=90, format='png')


def samples_2d(path, real, x_gen, x_langevin=None, log_density=None, title='',
               langevin_label='G + Langevin'):
  """Data | G | G + Langevin | learned density exp(-E)/Z, side by side.

  Args:
    path: PNG to write.
    real, x_gen, x_langevin: [n, 2] arrays; x_langevin may be None (plain GAN).
    log_density: [res, res] log p on the [-1, 1]^2 grid (rows: y), or None.
  """
  panels = 2 + (x_langevin is not None) + (log_density is not None)
  fig = figure.Figure(figsize=(4 * panels, 4.2))
  axes = fig.subplots(1, panels, sharex=True, sharey=True)
  _scatter(axes[0], real, 'held-out data', 'tab:gray')
  _scatter(axes[1], x_gen, 'G(z)', 'tab:blue')
  if x_langevin is not None:
    _scatter(axes[2], x_langevin, langevin_label, 'tab:red')
  if log_density is not None:
    axes[-1].imshow(np.exp(log_density), origin='lower', extent=(-1, 1, -1, 1), cmap='magma')
    axes[-1].set_title('learned density exp(-E)/Z', fontsize=10)
    axes[-1].set_aspect('equal')
  fig.suptitle(title, fontsize=11)
  _save(fig, path)


def langevin_progression(path, trajectory, record_every, title=''):
  """The report's Figure 2 layout: the same chains after 0, k, 2k, ... Langevin steps.

  Args:
    trajectory: [num_records, n, 2], record i after i * record_every steps.
  """
  num = len(trajectory)
  fig = figure.Figure(figsize=(3 * num, 3.3))
  axes = fig.subplots(1, num, sharex=True, sharey=True)
  for i, (ax, x) in enumerate(zip(np.atleast_1d(axes), trajectory)):
    _scatter(ax, x, f'{i * record_every} steps', 'tab:red' if i else 'tab:blue')
  fig.suptitle(title, fontsize=11)
  _save(fig, path)


def _tile(images, columns):
  """[n, H, W, C] in [-1, 1] -> one [rows * H, columns * W, C] image in [0, 1], 1-pixel gaps."""
  images = np.clip((np.asarray(images, np.float32) + 1) / 2, 0, 1)
  n, height, width, channels = images.shape
  rows = -(-n // columns)
  canvas = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1, channels), np.float32)
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    canvas[r * (height + 1):r * (height + 1) + height,
           c * (width + 1):c * (width + 1) + width] = image
  return canvas


def _show(ax, canvas, title):
  if canvas.shape[-1] == 1:
    ax.imshow(canvas[..., 0], cmap='gray', vmin=0, vmax=1, interpolation='nearest')
  else:
    ax.imshow(canvas, interpolation='nearest')
  ax.set_title(title, fontsize=10)
  ax.axis('off')


def image_grids(path, panels, title=''):
  """Image grids side by side (e.g. held-out data | G | G + Langevin).

  Args:
    panels: [(title, images [n, H, W, C] in [-1, 1])], n a square number for a square grid.
  """
  fig = figure.Figure(figsize=(4.2 * len(panels), 4.6))
  axes = fig.subplots(1, len(panels))
  for ax, (name, images) in zip(np.atleast_1d(axes), panels):
    _show(ax, _tile(images, int(np.ceil(np.sqrt(len(images))))), name)
  fig.suptitle(title, fontsize=11)
  _save(fig, path)


def chain_strip(path, trajectory, record_every, title=''):
  """One row per chain, one column per record: the chain after 0, k, 2k, ... steps.

  Args:
    trajectory: [num_records, num_chains, H, W, C] in [-1, 1].
  """
  num_records, num_chains = trajectory.shape[:2]
  by_chain = np.swapaxes(np.asarray(trajectory), 0, 1).reshape(-1, *trajectory.shape[2:])
  fig = figure.Figure(figsize=(1.1 * num_records + 0.5, 1.1 * num_chains + 0.8))
  ax = fig.subplots(1, 1)
  _show(ax, _tile(by_chain, num_records),
        'Langevin steps: ' + ', '.join(str(i * record_every) for i in range(num_records)))
  fig.suptitle(title, fontsize=11)
  _save(fig, path)


CURVE_LABELS = dict(sliced_wasserstein='sliced Wasserstein', mmd2='MMD^2', fid='classifier-FID',
                    kid='KID', modes_recovered='modes recovered',
                    high_quality_fraction='high-quality fraction', mode_kl='mode KL to uniform')


def quality_against_steps(path, result, metric_names, title=''):
  """One panel per metric: the metric of G + k steps against k, with the real-data floor
  and the plain GAN (if measured) as horizontal lines.

  Args:
    result: `evaluation.quality_against_steps`'s dict (rows, floor, optional baseline, label).
  """
  fig = figure.Figure(figsize=(4.2 * len(metric_names), 3.9))
  axes = np.atleast_1d(fig.subplots(1, len(metric_names)))
  steps = [row['steps'] for row in result['rows']]
  # k = 0 on a log axis: drawn at half the first positive k, labelled 0.
  positive = [k for k in steps if k > 0]
  zero_at = min(positive) / 2 if positive else 1
  where = [k if k > 0 else zero_at for k in steps]
  for ax, name in zip(axes, metric_names):
    values = [row.get(name) for row in result['rows']]
    values = [np.nan if v is None else v for v in values]
    ax.plot(where, values, 'o-', color='tab:red', label=result.get('label', 'G + k steps'))
    for key, style, label in (('floor', ('tab:gray', '--'), 'held-out data'),
                              ('baseline', ('tab:blue', ':'), 'plain GAN')):
      value = (result.get(key) or {}).get(name)
      if value is not None:
        ax.axhline(value, color=style[0], linestyle=style[1], label=label)
    if positive:
      ax.set_xscale('log')
      ax.xaxis.set_minor_locator(ticker.NullLocator())  # only the measured k are labelled
      ax.set_xticks(where)
      ax.set_xticklabels([str(k) for k in steps], fontsize=8)
    ax.set_xlabel('chain steps k')
    ax.set_title(CURVE_LABELS.get(name, name), fontsize=10)
    if name in ('sliced_wasserstein', 'mmd2', 'fid', 'kid') and np.nanmin(values) > 0:
      ax.set_yscale('log')
  # One legend under the panels, where it covers no curve.
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='lower center', ncol=len(labels), fontsize=8, frameon=False)
  fig.suptitle(title, fontsize=11)
  _save(fig, path, rect=(0, 0.08, 1, 1))  # the bottom strip holds the legend


def _setting_label(row, names):
  parts = []
  for name in names:
    value = row[name]
    if name == 'metropolis':
      parts.append('MALA' if value else 'ULA')
    elif name == 'space':
      parts.append('in z' if value == 'latent' else 'in x')
    else:
      short = dict(step_size='eta', noise='sigma', grad_clip='clip').get(name, name)
      parts.append(f'{short}={value:g}' if isinstance(value, (int, float))
                   and not isinstance(value, bool) else f'{short}={value}')
  return ' '.join(parts)


def sweep_heat_map(path, rows, metric, settings, title=''):
  """The sweep's `metric` per cell: chain length (rows) against every other setting that
  varies (columns), each value written in its cell; the best cell framed.

  Args:
    rows: sweep rows (dicts with the `settings` and the metrics).
  """
  varying = [n for n in settings if n != 'steps' and len({row[n] for row in rows}) > 1]
  steps = sorted({row['steps'] for row in rows})
  columns = sorted({tuple(row[n] for n in varying) for row in rows}, key=str)
  table = np.full((len(steps), len(columns)), np.nan)
  for row in rows:
    value = row.get(metric)
    if value is not None:
      table[steps.index(row['steps']), columns.index(tuple(row[n] for n in varying))] = value
  fig = figure.Figure(figsize=(max(4.0, 1.3 * len(columns) + 2), max(2.5, 0.45 * len(steps) + 1.6)))
  ax = fig.subplots()
  higher_is_better = metric in ('high_quality_fraction', 'modes_recovered', 'coverage')
  image = ax.imshow(table, cmap='viridis' if higher_is_better else 'viridis_r', aspect='auto')
  fig.colorbar(image, ax=ax)
  ax.set_yticks(range(len(steps)))
  ax.set_yticklabels([str(k) for k in steps])
  ax.set_ylabel('chain steps k')
  labels = [_setting_label(dict(zip(varying, c)), varying) or 'run\'s sampler' for c in columns]
  ax.set_xticks(range(len(columns)))
  ax.set_xticklabels(labels, rotation=30, ha='right', fontsize=8)
  if np.isfinite(table).any():
    best = np.nanargmax(table) if higher_is_better else np.nanargmin(table)
    i, j = np.unravel_index(best, table.shape)
    ax.add_patch(patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor='red',
                                   linewidth=2))
  low, high = np.nanmin(table), np.nanmax(table)
  for (i, j), value in np.ndenumerate(table):
    if np.isfinite(value):
      # viridis is bright at its good end: dark text there, white on the dark end.
      good = (value - low) / (high - low) if high > low else 1.0
      bright = good > 0.6 if higher_is_better else good < 0.4
      ax.text(j, i, f'{value:.3g}', ha='center', va='center', fontsize=7,
              color='black' if bright else 'white')
  ax.set_title(title, fontsize=10)
  _save(fig, path)
