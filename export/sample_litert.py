#!/usr/bin/env python3
"""On-device sampling from an exported tfganebm model: LiteRT interpreter and numpy only.

  python export/sample_litert.py DIR/model.tflite --num_samples 1000 --out OUT [--langevin_steps K --seed S]

Draws z ~ N(0, I), runs `generate`, then K Langevin steps with the `langevin_step`
signature (the loop runs here, as it would in an app), or with the fused `sample`
signature (--fused). Writes OUT/samples.npy (G + Langevin), OUT/samples_generator.npy
and, when matplotlib is installed, OUT/samples.png. Settings default to the
export.json beside the model. Needs: ai-edge-litert, numpy.
"""

import argparse
import json
import os
import sys

import numpy as np


def _interpreter(path):
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit('error: ai-edge-litert is not installed; pip install ai-edge-litert numpy')
  try:
    return Interpreter(model_path=path)
  except ValueError as e:
    sys.exit(f'error: {path} is not a readable .tflite model ({str(e).splitlines()[0]}); '
             'export one with python -m tfganebm.export')


def _read_export_info(model_path):
  path = os.path.join(os.path.dirname(os.path.abspath(model_path)), 'export.json')
  if not os.path.exists(path):
    sys.exit(f'error: {path} not found; keep export.json beside the .tflite file')
  with open(path) as f:
    return json.load(f)


def sample(interpreter, info, num_samples, steps, step_size, noise, seed, fused=False,
           metropolis=False, batch_size=256):
  """(x_gen, x) numpy arrays [num_samples, *data_shape]: G samples and their refinement.

  metropolis: accept or reject each step (MALA signatures) instead of plain Langevin steps.
  """
  rng = np.random.default_rng(seed)
  shape = tuple(info['data_shape'])
  generate = interpreter.get_signature_runner('generate')
  has_energy = 'langevin_step' in interpreter.get_signature_list()
  x_gen, x_out = [], []
  for start in range(0, num_samples, batch_size):
    batch = min(batch_size, num_samples - start)
    z = rng.standard_normal((batch, info['latent_dim'])).astype(np.float32)
    x = generate(z=z)['x']
    x_gen.append(x)
    if has_energy and steps > 0:
      noises = (noise * rng.standard_normal((steps, batch, *shape))).astype(np.float32)
      if metropolis:
        uniforms = rng.uniform(size=(steps, batch)).astype(np.float32)
        scalars = dict(step_size=np.float32(step_size), noise_std=np.float32(noise))
        if fused:
          x = interpreter.get_signature_runner('sample_metropolis')(
              z=z, noise=noises, uniform=uniforms, **scalars)['x']
        else:
          step = interpreter.get_signature_runner('metropolis_step')
          for k in range(steps):
            x = step(x=x, noise=noises[k], uniform=uniforms[k], **scalars)['x']
      elif fused:
        x = interpreter.get_signature_runner('sample')(
            z=z, noise=noises, step_size=np.float32(step_size))['x']
      else:
        step = interpreter.get_signature_runner('langevin_step')
        for k in range(steps):
          x = step(x=x, noise=noises[k], step_size=np.float32(step_size))['x']
    x_out.append(x)
  return np.concatenate(x_gen), np.concatenate(x_out)


def _picture(path, x_gen, x):
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  if x.ndim == 4:  # images [N, H, W, C] in [-1, 1]: a 10 x 10 grid of each
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    for ax, images, title in ((axes[0], x_gen, 'G(z)'), (axes[1], x, 'G + Langevin')):
      images = np.clip((images[:100] + 1) / 2, 0, 1)
      side = int(np.ceil(np.sqrt(len(images))))
      padded = np.ones((side * side, *images.shape[1:]), np.float32)
      padded[:len(images)] = images
      h, w, c = images.shape[1:]
      grid = padded.reshape(side, side, h, w, c).transpose(0, 2, 1, 3, 4).reshape(side * h,
                                                                                  side * w, c)
      ax.imshow(grid[..., 0] if c == 1 else grid, cmap='gray' if c == 1 else None)
      ax.set_title(title)
      ax.axis('off')
  elif x.ndim == 2 and x.shape[1] == 2:
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), sharex=True, sharey=True)
    for ax, points, title in ((axes[0], x_gen, 'G(z)'), (axes[1], x, 'G + Langevin')):
      ax.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.5, linewidths=0)
      ax.set_title(title)
      ax.set_aspect('equal')
  else:
    return False
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('model', help='model.tflite written by tfganebm.export')
  parser.add_argument('--num_samples', type=int, default=1000)
  parser.add_argument('--out', required=True)
  parser.add_argument('--langevin_steps', type=int, default=None)
  parser.add_argument('--langevin_step_size', type=float, default=None)
  parser.add_argument('--langevin_noise', type=float, default=None)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--fused', action='store_true', help='one call of the fused signature')
  parser.add_argument('--metropolis', action=argparse.BooleanOptionalAction, default=None,
                      help='MALA steps (default: as the run was configured, see export.json)')
  args = parser.parse_args(argv)
  if args.num_samples <= 0:
    parser.error('--num_samples must be positive')
  if not os.path.isfile(args.model):
    sys.exit(f'error: {args.model} not found')
  info = _read_export_info(args.model)
  defaults = info['langevin']
  steps = defaults['steps'] if args.langevin_steps is None else args.langevin_steps
  step_size = defaults['step_size'] if args.langevin_step_size is None else args.langevin_step_size
  noise = defaults['noise'] if args.langevin_noise is None else args.langevin_noise
  metropolis = defaults.get('metropolis', False) if args.metropolis is None else args.metropolis
  x_gen, x = sample(_interpreter(args.model), info, args.num_samples, steps, step_size, noise,
                    args.seed, args.fused, metropolis)
  os.makedirs(args.out, exist_ok=True)
  np.save(os.path.join(args.out, 'samples.npy'), x)
  np.save(os.path.join(args.out, 'samples_generator.npy'), x_gen)
  drew = _picture(os.path.join(args.out, 'samples.png'), x_gen, x)
  print(f'wrote {len(x)} samples ({steps} {"MALA" if metropolis else "Langevin"} steps) to {args.out}'
        + (' with samples.png' if drew else ''))


if __name__ == '__main__':
  main()
