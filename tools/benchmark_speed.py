"""Training and Langevin speed: XLA vs graph vs eager, against the PyTorch peer, and memory.

  python tools/benchmark_speed.py [--dataset moons|swissroll|mnist] [--data_dir DIR]
      [--peer path/to/seed_torch.py [--peer_python PY]] [--batch_size B]
  python tools/benchmark_speed.py --summary --peer ../shared/peers/seed_torch.py \
      --peer_python .venv-torch/bin/python --data_dir ../shared/data/mnist [--memory]

Everything is measured in this one invocation on the same machine, so the ratios it
prints compare like with like; run it on an idle machine. The peer (eager PyTorch,
the report's algorithm) is timed with its own code, in its own interpreter
(`--peer_python`, default this one; it needs torch), at 1 and 2 threads.

`--summary` measures moons (batch 128, K = 60, the peer's E sizes) and MNIST (batch
64, K = 60, the report's networks), ours and the peer's at 2 threads, and the
float32 matmul peak of TF on this machine (2048 x 2048), and ends with one line:

  moons_vs_peer=R1 mnist_vs_peer=R2 mnist_langevin_peak_frac=F

R: training steps/s, our fastest mode over the peer at 2 threads. F: FLOP/s of the
MNIST chain at batch 64 (E's forward and input gradient per step, counted from the
layers) over the matmul peak. `--memory` also runs whole training runs of
configs/moons.cfg and configs/mnist.cfg (at `--memory_train_steps`, with their full
evaluations) and the peer's, each in its own process, and prints their peak
resident memory.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# TensorFlow's C++ start-up chatter would come before our one-line errors.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import tensorflow as tf

from tfganebm import chain_energy
from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import langevin
from tfganebm import model as model_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in the peer's interpreter: argv = [peer file, JSON of its arguments, threads].
_PEER_DRIVER = r'''
import argparse, contextlib, importlib.util, io, json, os, sys
import numpy as np, torch
spec = importlib.util.spec_from_file_location('seed_torch', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
args = argparse.Namespace(**json.loads(sys.argv[2]))
torch.set_num_threads(int(sys.argv[3]))
torch.manual_seed(0)
if args.dataset == 'mnist':
  x_train = module.load_mnist()
else:
  x_train = module.make_2d(args.dataset, 15000, 0)[0]
with contextlib.redirect_stdout(io.StringIO()):
  generator, _, energy, times, _ = module.train(args, x_train)
warm = min(max(5, args.iters // 10), 50)
langevin_rate = module.langevin_speed(energy, generator, args)[0]
print(json.dumps([1.0 / float(np.median(times[warm:])), langevin_rate]))
'''


def _median_rate(run_block, block, repeats):
  """Median of `block / seconds` over `repeats` timed calls, after one untimed call."""
  run_block()
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    run_block()
    rates.append(block / (time.perf_counter() - start))
  return statistics.median(rates)


def chain_flops_per_sample(energy):
  """FLOPs of one Langevin step per sample: E's forward and its gradient with respect to x.

  Counted from E's Conv2D and Dense layers (2 FLOPs per multiply-add); backpropagating to
  the input through a layer costs as much as its forward, so a step is twice the forward.
  Elementwise work (activations, clipping, noise) is left out.
  """
  forward = 0
  for layer in energy.layers:
    layer = getattr(layer, 'layer', layer)  # inside SpectralNormalization
    if isinstance(layer, tf.keras.layers.Conv2D):
      _, height, width, channels = layer.output.shape
      kernel = layer.kernel.shape  # [kh, kw, in, out]
      forward += 2 * height * width * channels * kernel[0] * kernel[1] * kernel[2]
    elif isinstance(layer, tf.keras.layers.Dense):
      forward += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
  return 2 * forward


def matmul_peak(n=2048, repeats=10):
  """FLOP/s of TF's float32 n x n matmul on this machine (median)."""
  a = tf.random.normal([n, n])
  multiply = tf.function(lambda a: tf.matmul(a, a))
  return 2.0 * n**3 * _median_rate(lambda: multiply(a).numpy(), 1, repeats)


def ours(config, modes=('xla', 'graph', 'eager'), steps_per_block=20, repeats=15):
  """({mode: (train steps/s, Langevin steps/s)}, chain FLOPs per sample).

  'graph' runs the chains in one group (`--chain_groups=1`), with this process's threads;
  'groups' is the graph step as a CPU run makes it by default: the chains in one group
  per core, with TF's intra-op threads set to 1 (`chain_energy`), measured in a child
  process, whose threads can still be set.
  """
  loaded = data.load(config.override(download=False).data, config.run.seed)
  x_real = tf.constant(data.to_unit_range(loaded.train_array(config.train.batch_size)))
  results = {}
  flops = None
  for mode in modes:
    if mode == 'groups':
      results[mode] = _ours_in_child(config, chain_energy.resolve_groups(config, False),
                                     repeats)
      continue
    model = model_lib.build(config.override(jit_compile=mode == 'xla',
                                            chain_groups=config.run.chain_groups or 1),
                            loaded.shape)
    flops = chain_flops_per_sample(model.energy)
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
      compiled = tf.function(lambda y: langevin.langevin(model.chain_energy, y, model.rng,
                                                         **kwargs, metropolis=metropolis),
                             jit_compile=mode == 'xla')
      chain = lambda: compiled(x).numpy()
      train_step = tf.function(model.train_step, jit_compile=mode == 'xla')

      def train_block(n=10):
        for _ in range(n):
          logs = train_step(x_real)
        float(logs['d_loss'])
      train_rate = _median_rate(train_block, 10, repeats)
    results[mode] = (train_rate, _median_rate(chain, steps_per_block, repeats))
  return results, flops


def _ours_in_child(config, groups, repeats):
  """(train steps/s, Langevin steps/s) of the graph step with `groups` chain groups, in a
  child process that sets TF's threads for them before its first op."""
  result = subprocess.run(
      [sys.executable, os.path.abspath(__file__), '--child_groups', str(groups),
       '--child_config', json.dumps(config.to_dict()), '--child_repeats', str(repeats)],
      capture_output=True, text=True, check=False)
  if result.returncode != 0:
    last = (result.stderr.strip().splitlines() or ['no output'])[-1]
    sys.exit(f'error: the {groups}-group measurement failed: {last}')
  return tuple(json.loads(result.stdout.strip().splitlines()[-1]))


def _child(args):
  if not chain_energy.configure_threads(args.child_groups):
    sys.exit('error: TensorFlow ran before the threads were set')
  config = config_lib.Config.from_dict(json.loads(args.child_config))
  results, _ = ours(config.override(chain_groups=args.child_groups), modes=('graph',),
                    repeats=args.child_repeats)
  print(json.dumps(results['graph']))


def peer(path, python, config, threads, iters=200):
  """(train it/s, Langevin steps/s) of the PyTorch peer's own code in `python`."""
  image = data.is_image(config.data)
  args = dict(dataset=config.data.dataset, batch=config.train.batch_size,
              steps_cnt=config.train_sampler.steps, step_size=2.0 if image else 3.0,
              noise=0.005, grad_clip=0.05, lr_gd=2e-3, lr_e=1e-4,
              iters=iters // 5 if image else iters, log_every=10**9)
  env = dict(os.environ)
  if config.data.data_dir:
    env['MNIST_DIR'] = os.path.abspath(config.data.data_dir)
  result = subprocess.run([python, '-c', _PEER_DRIVER, path, json.dumps(args), str(threads)],
                          capture_output=True, text=True, env=env, check=False)
  if result.returncode != 0:
    last = (result.stderr.strip().splitlines() or ['no output'])[-1]
    sys.exit(f'error: the peer failed in {python}: {last} (--peer_python names an '
             'interpreter with torch)')
  return tuple(json.loads(result.stdout.strip().splitlines()[-1]))


def make_config(dataset, data_dir='', batch_size=None, energy_units=None, metropolis=False):
  """The benchmark's settings: the peer's network sizes (2D) or the report's (MNIST)."""
  image = data.is_image(dataset)
  # MNIST: the report's networks and the image settings of configs/mnist.cfg, as the peer's.
  sizes = (dict(generator_units=(128, 256, 512, 1024), discriminator_units=(512, 256),
                energy_units=(16, 32, 64, 64), train_langevin_step_size=10.0,
                train_langevin_noise=0.005, train_langevin_grad_clip=1.0) if image else {})
  if energy_units:
    sizes['energy_units'] = tuple(int(u) for u in energy_units.split(','))
  return config_lib.Config.from_flat(dict(
      dataset=dataset, data_dir=data_dir, batch_size=batch_size or (64 if image else 128),
      train_langevin_metropolis=metropolis, **sizes))


# Forks the command from a small process and prints its peak resident memory in KiB. Linux
# carries a process's high-water mark across fork and exec, so a command forked straight
# from this process (which holds TensorFlow) would report at least this process's size.
_MEASURE = r'''
import os, sys
pid = os.fork()
if pid == 0:
  os.execvpe(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
'''


def _peak_rss_mib(command, env=None):
  """Runs `command`; (peak resident memory in MiB, exit status, last line of its stderr)."""
  with tempfile.TemporaryFile('w+') as errors:
    result = subprocess.run([sys.executable, '-c', _MEASURE, *command], stdout=subprocess.PIPE,
                            stderr=errors, env=env, text=True, check=False)
    errors.seek(0)
    last = (errors.read().strip().splitlines() or [''])[-1]
  kib, status = (int(v) for v in result.stdout.split()[-2:])
  return kib / 1024, status, last


def memory(args):
  """Peak resident memory of whole runs: ours (moons, MNIST) and the peer's."""
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name in ('moons', 'mnist'):
      command = [sys.executable, '-m', 'tfganebm.train', '--flagfile',
                 os.path.join(ROOT, 'configs', f'{name}.cfg'), '--workdir',
                 os.path.join(tmp, name), f'--train_steps={args.memory_train_steps}']
      if name == 'mnist':
        command.append(f'--data_dir={args.data_dir}')
      start = time.perf_counter()
      measured = _peak_rss_mib(command)
      rows.append((f'tfganebm {name}.cfg', time.perf_counter() - start, *measured))
    if args.peer:
      env = dict(os.environ, MNIST_DIR=os.path.abspath(args.data_dir or '.'))
      for name, extra in (('moons', ['--batch', '128', '--step_size', '3']),
                          ('mnist', ['--batch', '64', '--step_size', '2'])):
        command = [args.peer_python, args.peer, '--dataset', name, '--iters',
                   str(args.memory_train_steps), '--steps_cnt', '60', '--noise', '0.005',
                   '--out', os.path.join(tmp, 'peer_' + name), *extra]
        start = time.perf_counter()
        measured = _peak_rss_mib(command, env)
        rows.append((f'peer {name}', time.perf_counter() - start, *measured))
  print(f'peak resident memory of whole runs ({args.memory_train_steps} training steps, '
        'then each run\'s own evaluation):')
  for name, seconds, mib, status, last in rows:
    note = '' if status == 0 else f'  (failed, exit status {status}: {last})'
    print(f'  {name:26s}{mib:8.0f} MiB{seconds:8.0f} s{note}')


def _print_rows(rows):
  print(f'{"":34s}{"train steps/s":>15s}{"Langevin steps/s":>18s}')
  for name, (train_rate, langevin_rate) in rows.items():
    train_text = 'skipped' if np.isnan(train_rate) else f'{train_rate:.1f}'
    print(f'{name:34s}{train_text:>15s}{langevin_rate:18.0f}')


def _best(rows):
  """Our fastest compiled mode by training speed: XLA for the 2D MLPs; on CPU, TF's oneDNN
  graph kernels beat XLA's for the conv E of images."""
  return max((name for name in rows
              if name in ('tfganebm xla', 'tfganebm graph', 'tfganebm groups')),
             key=lambda name: rows[name][0])


def _modes(config, modes):
  """`modes`, and 'groups' where a graph-mode run of `config` would group its chains."""
  return modes + (('groups',) if chain_energy.resolve_groups(config, False) > 1 else ())


def benchmark(config, args, modes=('xla', 'graph', 'eager'), peer_threads=(1, 2)):
  """Measures and prints one setting; returns (rows, chain FLOPs per sample)."""
  print(f'{config.data.dataset}, batch {config.train.batch_size}, K={config.train_sampler.steps} '
        f'training {"MALA" if config.train_sampler.metropolis else "Langevin"} steps, E units '
        f'{config.networks.energy_units}; load average {os.getloadavg()[0]:.2f}', flush=True)
  results, flops = ours(config, modes)
  rows = {f'tfganebm {mode}': rates for mode, rates in results.items()}
  if args.peer:
    for threads in peer_threads:
      rows[f'peer torch eager, {threads} thread(s)'] = peer(args.peer, args.peer_python, config,
                                                            threads)
  _print_rows(rows)
  best = _best(rows)
  best_train, best_langevin = rows[best]
  print(f'ratios ({best} / other):')
  for name, (train_rate, langevin_rate) in rows.items():
    if name != best:
      train_ratio = 'n/a' if np.isnan(train_rate) else f'x{best_train / train_rate:.2f}'
      print(f'  vs {name:30s} train {train_ratio:>7s}   Langevin x{best_langevin / langevin_rate:.2f}')
  print(flush=True)
  return rows, flops


def summary(args):
  peak = matmul_peak()
  print(f'float32 matmul 2048 x 2048: {peak / 1e9:.0f} GFLOP/s\n', flush=True)
  moons, _ = benchmark(make_config('moons', energy_units='16,32,64,64,64'), args,
                       modes=('xla', 'graph'), peer_threads=(2,))
  config = make_config('mnist', data_dir=args.data_dir)
  mnist, flops = benchmark(config, args, modes=_modes(config, ('xla', 'graph')),
                           peer_threads=(2,))
  peer_name = 'peer torch eager, 2 thread(s)'
  ratio = lambda rows: rows[_best(rows)][0] / rows[peer_name][0]
  chain_rate = mnist[_best(mnist)][1]
  achieved = chain_rate * 64 * flops
  print(f'MNIST chain: {flops / 1e6:.2f} MFLOP per sample and step x 64 x {chain_rate:.0f} '
        f'steps/s = {achieved / 1e9:.1f} GFLOP/s')
  if args.memory:
    memory(args)
  print(f'load average at the end {os.getloadavg()[0]:.2f}')
  print(f'moons_vs_peer={ratio(moons):.2f} mnist_vs_peer={ratio(mnist):.2f} '
        f'mnist_langevin_peak_frac={achieved / peak:.2f}')


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--peer', default=None, help="path of the peer's seed_torch.py")
  parser.add_argument('--peer_python', default=sys.executable,
                      help='the interpreter, with torch, that runs the peer (default: this one)')
  parser.add_argument('--batch_size', type=int, default=None, help='default 128, MNIST 64')
  parser.add_argument('--dataset', default='moons', choices=['moons', 'swissroll', 'mnist'])
  parser.add_argument('--data_dir', default='', help='MNIST IDX files (also given to the peer)')
  parser.add_argument('--energy_units', default=None,
                      help="E's widths (default 64,64,64,64,64; MNIST: the report's conv "
                      "16,32,64,64); the peer's 2D E is 16,32,64,64,64")
  parser.add_argument('--metropolis', action='store_true', help='MALA chains in our runs')
  parser.add_argument('--summary', action='store_true',
                      help='moons, MNIST and the matmul peak; ends with the one-line summary')
  parser.add_argument('--memory', action='store_true',
                      help='also the peak resident memory of whole moons and MNIST runs')
  parser.add_argument('--memory_train_steps', type=int, default=1000,
                      help='training steps of the --memory runs (default 1000)')
  parser.add_argument('--child_groups', type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument('--child_config', default='', help=argparse.SUPPRESS)
  parser.add_argument('--child_repeats', type=int, default=15, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child_groups:
    _child(args)
    return
  if args.peer and not os.path.isfile(args.peer):
    sys.exit(f'error: --peer {args.peer} is not a file; give the path of seed_torch.py')
  if args.summary and not args.peer:
    sys.exit('error: --summary compares with the peer: give --peer path/to/seed_torch.py '
             '(and --peer_python, an interpreter with torch)')
  if (args.summary or args.memory or args.dataset == 'mnist') and not args.data_dir:
    sys.exit('error: MNIST needs --data_dir, a folder with the MNIST IDX files')
  if args.summary:
    summary(args)
  else:
    config = make_config(args.dataset, args.data_dir, args.batch_size, args.energy_units,
                         args.metropolis)
    benchmark(config, args, modes=_modes(config, ('xla', 'graph', 'eager')))
    if args.memory:
      memory(args)
    print(f'load average at the end {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  main()
