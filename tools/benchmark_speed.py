"""Training and Langevin speed: XLA vs graph vs eager, and against the PyTorch peer.

  python tools/benchmark_speed.py [--peer path/to/seed_torch.py] [--batch_size 128]
  python tools/benchmark_speed.py --dataset mnist --data_dir DIR [--peer ...]  # batch 64

Everything is measured in this one process on the same machine, so the ratios it
prints compare like with like; run it on an idle machine. The peer (eager
PyTorch, the report's algorithm) is timed with its own code when its file and
torch are available, at 1 thread (its fastest setting for 2D) and 2 threads.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time

# TensorFlow's C++ start-up chatter would come before our one-line errors.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import tensorflow as tf

from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import langevin
from tfganebm import model as model_lib


def _median_rate(run_block, block, repeats):
  """Median of `block / seconds` over `repeats` timed calls, after one untimed call."""
  run_block()
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    run_block()
    rates.append(block / (time.perf_counter() - start))
  return statistics.median(rates)


def ours(config, steps_per_block=20, repeats=15):
  """{mode: (train steps/s, Langevin steps/s)} for mode in xla, graph, eager."""
  loaded = data.load(config.data.dataset, config.data.num_examples, None, config.run.seed, config.data.data_dir,
                     download=False)
  x_real = tf.constant(data.to_unit_range(loaded.train[:config.train.batch_size]))
  results = {}
  for mode in ('xla', 'graph', 'eager'):
    model = model_lib.build(config.override(jit_compile=mode == 'xla'), loaded.shape)
    x = model.generator(tf.random.normal([config.train.batch_size, config.networks.latent_dim]))
    kwargs = dict(steps=steps_per_block, step_size=config.train_sampler.step_size,
                  noise=config.train_sampler.noise, grad_clip=config.train_sampler.grad_clip)
    metropolis = config.train_sampler.metropolis
    if mode == 'eager':
      def chain():
        y = x
        for _ in range(steps_per_block):
          eps = model.rng.normal(tf.shape(y))
          y = langevin.langevin_step(model.energy_of, y, eps, kwargs['step_size'],
                                     kwargs['noise'], kwargs['grad_clip'])
        return y.numpy()
      train_rate = float('nan')  # an eager train step runs 60 chained eager gradients: skipped
    else:
      compiled = tf.function(lambda y: langevin.langevin(model.energy_of, y, model.rng, **kwargs,
                                                         metropolis=metropolis),
                             jit_compile=mode == 'xla')
      chain = lambda: compiled(x).numpy()
      train_step = tf.function(model.train_step, jit_compile=mode == 'xla')

      def train_block(n=10):
        for _ in range(n):
          logs = train_step(x_real)
        float(logs['d_loss'])
      train_rate = _median_rate(train_block, 10, repeats)
    results[mode] = (train_rate, _median_rate(chain, steps_per_block, repeats))
  return results


def peer(path, config, threads, iters=200):
  """(train it/s, Langevin steps/s) of the PyTorch peer's own code, or None."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  spec = importlib.util.spec_from_file_location('seed_torch', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  image = data.is_image(config.data.dataset)
  args = argparse.Namespace(dataset=config.data.dataset, batch=config.train.batch_size,
                            steps_cnt=config.train_sampler.steps, step_size=2.0 if image else 3.0,
                            noise=0.005, grad_clip=0.05, lr_gd=2e-3, lr_e=1e-4,
                            iters=iters // 5 if image else iters, log_every=10**9)
  x_train = module.load_mnist() if image else module.make_2d(config.data.dataset, 15000, 0)[0]
  stdout, sys.stdout = sys.stdout, open(os.devnull, 'w')
  try:
    generator, _, energy, times, _ = module.train(args, x_train)
  finally:
    sys.stdout = stdout
  warm = min(max(5, args.iters // 10), 50)
  langevin_rate, _, _ = module.langevin_speed(energy, generator, args)
  return 1.0 / float(np.median(times[warm:])), langevin_rate


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--peer', default=None, help="path of the peer's seed_torch.py")
  parser.add_argument('--batch_size', type=int, default=None, help='default 128, MNIST 64')
  parser.add_argument('--dataset', default='moons', choices=['moons', 'swissroll', 'mnist'])
  parser.add_argument('--data_dir', default='', help='MNIST IDX files (the peer reads its own)')
  parser.add_argument('--energy_units', default=None,
                      help="E's widths (default 64,64,64,64,64; MNIST: the report's conv "
                      "16,32,64,64); the peer's 2D E is 16,32,64,64,64")
  parser.add_argument('--metropolis', action='store_true', help='MALA chains in our runs')
  args = parser.parse_args()
  image = data.is_image(args.dataset)
  # MNIST: the report's networks and the image settings of configs/mnist.cfg, as the peer's.
  sizes = (dict(generator_units=(128, 256, 512, 1024), discriminator_units=(512, 256),
                energy_units=(16, 32, 64, 64), train_langevin_step_size=10.0,
                train_langevin_noise=0.005, train_langevin_grad_clip=1.0) if image else {})
  if args.energy_units:
    sizes['energy_units'] = tuple(int(u) for u in args.energy_units.split(','))
  config = config_lib.Config.from_flat(dict(
      dataset=args.dataset, data_dir=args.data_dir,
      batch_size=args.batch_size or (64 if image else 128),
      train_langevin_metropolis=args.metropolis, **sizes))
  print(f'{args.dataset}, batch {config.train.batch_size}, K={config.train_sampler.steps} '
        f'training {"MALA" if args.metropolis else "Langevin"} steps, E units '
        f'{config.networks.energy_units}; load average {os.getloadavg()[0]:.2f}')
  rows = {f'tfganebm {mode}': rates for mode, rates in ours(config).items()}
  if args.peer:
    for threads in (1, 2):
      rates = peer(args.peer, config, threads)
      if rates is None:
        print('peer skipped: torch is not installed')
        break
      rows[f'peer torch eager, {threads} thread(s)'] = rates
  print(f'{"":34s}{"train steps/s":>15s}{"Langevin steps/s":>18s}')
  for name, (train_rate, langevin_rate) in rows.items():
    train_text = 'skipped' if np.isnan(train_rate) else f'{train_rate:.1f}'
    print(f'{name:34s}{train_text:>15s}{langevin_rate:18.0f}')
  # The reference is our fastest compiled mode: XLA for the 2D MLPs; on CPU, TF's oneDNN
  # graph kernels beat XLA's for the conv E of images.
  best = max(('tfganebm xla', 'tfganebm graph'), key=lambda name: rows[name][0])
  best_train, best_langevin = rows[best]
  print(f'ratios ({best} / other):')
  for name, (train_rate, langevin_rate) in rows.items():
    if name != best:
      train_ratio = 'n/a' if np.isnan(train_rate) else f'x{best_train / train_rate:.2f}'
      print(f'  vs {name:30s} train {train_ratio:>7s}   Langevin x{best_langevin / langevin_rate:.2f}')
  print(f'load average at the end {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  main()
