"""Matplotlib figures of a run: samples, the learned density, the Langevin progression."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

_LIMITS = (-1.1, 1.1)


def _scatter(ax, x, title, color):
  ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.5, color=color, linewidths=0)
  ax.set_title(title, fontsize=10)
  ax.set_xlim(*_LIMITS)
  ax.set_ylim(*_LIMITS)
  ax.set_aspect('equal')


def _save(fig, path):
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def samples_2d(path, real, x_gen, x_langevin=None, log_density=None, title='',
               langevin_label='G + Langevin'):
  """Data | G | G + Langevin | learned density exp(-E)/Z, side by side.

  Args:
    path: PNG to write.
    real, x_gen, x_langevin: [n, 2] arrays; x_langevin may be None (plain GAN).
    log_density: [res, res] log p on the [-1, 1]^2 grid (rows: y), or None.
  """
  panels = 2 + (x_langevin is not None) + (log_density is not None)
  fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4.2), sharex=True, sharey=True)
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
  fig, axes = plt.subplots(1, num, figsize=(3 * num, 3.3), sharex=True, sharey=True)
  for i, (ax, x) in enumerate(zip(np.atleast_1d(axes), trajectory)):
    _scatter(ax, x, f'{i * record_every} steps', 'tab:red' if i else 'tab:blue')
  fig.suptitle(title, fontsize=11)
  _save(fig, path)
