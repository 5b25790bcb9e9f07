"""Training steps/s of a config under each strategy and host loop, measured in one run.

  python tools/benchmark_strategies.py --flagfile configs/moons.cfg
  python tools/benchmark_strategies.py --flagfile configs/mnist.cfg --data_dir DIR --steps 100

Modes (each in a fresh process, since a strategy's devices are fixed at TensorFlow's
start; the same data, networks and steps):
  keras_fit        the default strategy through Keras' `fit` (steps_per_execution as the
                   trainer used to set it): the path the trainer replaced
  default          the default strategy through tfganebm's multi-step host loop (XLA as
                   the config says)
  default_noxla    the same without XLA
  mirrored1        --strategy=mirrored on one device (a one-GPU machine's case), no XLA
  mirrored1_xla    the same with the train step XLA-compiled per replica (jit_compile)
  mirrored2        --strategy=mirrored --cpu_replicas=2 through the same loop, no XLA
  mirrored2_xla    the same with the train step XLA-compiled per replica
  mirrored2_1step  mirrored2 with one step per call (what a one-step-per-execution fix costs)
A mode that fails prints its error's last line instead of a rate. Ratios are against
`default`. Run it on an idle machine.

XLA under mirrored, measured with `--flagfile configs/moons.cfg --steps 1000` (moons.cfg as of
f2926b3: no packs, the chains' earlier noise) on 2 cores of an
AMD EPYC (one run): default 65.6 steps/s (XLA), default_noxla 24.6 (0.37x), mirrored1 30.0
(0.46x), mirrored1_xla 83.1 (1.27x), mirrored2 15.5 (0.24x), mirrored2_xla fails (the step
compiled once reads replica 1's RNG state from device 0: "Trying to access resource
StateVar/replica_1 ... located in device CPU:1 from device CPU:0"). On GPUs TF's mirrored
runner calls a compiled step outside the replica context, where the buffer's writes fail
(tests/test_distribute.py), so training keeps XLA off under mirrored and multi-worker;
tools/gpu_check.sh measures what one GPU would gain.
"""

import argparse
import json
import math
import subprocess
import sys
import time

MODES = ('keras_fit', 'default', 'default_noxla', 'mirrored1', 'mirrored1_xla', 'mirrored2',
         'mirrored2_xla', 'mirrored2_1step')


def _measure(flagfile, mode, steps, data_dir):
  """Steps/s of `steps` training steps after one untimed chunk (tracing, warm-up)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfganebm import cli  # pylint: disable=g-import-not-at-top
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  from tfganebm import distribute  # pylint: disable=g-import-not-at-top
  from tfganebm import loop  # pylint: disable=g-import-not-at-top
  from tfganebm import model as model_lib  # pylint: disable=g-import-not-at-top

  config = cli.read_flagfile(flagfile)
  if data_dir:
    config = config.override(data_dir=data_dir)
  mirrored = mode.startswith('mirrored')
  strategy = distribute.make_strategy('mirrored' if mirrored else 'default',
                                      cpu_replicas=2 if mode.startswith('mirrored2') else 1)
  jit_compile = (config.run.jit_compile and mode in ('keras_fit', 'default')
                 or mode.endswith('_xla'))
  config = config.override(jit_compile=jit_compile)
  loaded = data.load(config.override(download=False).data, config.run.seed)
  model = model_lib.build(config, loaded.shape, strategy)
  chunk = 1 if mode == 'mirrored2_1step' else config.run.log_every
  warmup = chunk if chunk > 1 else 10
  batches = data.batches(loaded.train, config.train.batch_size, config.run.seed, 0, warmup + steps)
  if mode == 'keras_fit':
    model.steps_per_execution = math.gcd(config.run.log_every, config.run.checkpoint_every, 25)
    model.fit(batches.take(warmup), epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(batches.skip(warmup), epochs=1, verbose=0, shuffle=False)
  else:
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    run = loop.make_multi_step(model, strategy, jit_compile)
    for _ in range(warmup // chunk):
      float(run(iterator, tf.constant(chunk, tf.int64))[0]['d_loss'])
    start = time.perf_counter()
    for _ in range(steps // chunk):
      logs, _ = run(iterator, tf.constant(chunk, tf.int64))
    float(logs['d_loss'])
  return steps / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--flagfile', required=True)
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--steps', type=int, default=1000,
                      help='timed steps per mode (a multiple of the config\'s --log_every)')
  parser.add_argument('--modes', default=','.join(MODES))
  parser.add_argument('--_mode', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._mode:  # pylint: disable=protected-access
    print(json.dumps(_measure(args.flagfile, args._mode, args.steps, args.data_dir)))  # pylint: disable=protected-access
    return
  rates = {}
  for mode in args.modes.split(','):
    result = subprocess.run([sys.executable, __file__, f'--flagfile={args.flagfile}',
                             f'--data_dir={args.data_dir}', f'--steps={args.steps}',
                             f'--_mode={mode}'], capture_output=True, text=True, check=False)
    if result.returncode:
      errors = [line for line in result.stderr.strip().splitlines() if 'Error' in line]
      rates[mode] = (errors or result.stderr.strip().splitlines() or ['?'])[-1][:150]
    else:
      rates[mode] = float(result.stdout.strip().splitlines()[-1])
  print(f'{args.flagfile}, {args.steps} timed steps per mode')
  print(f'{"mode":18s} {"steps/s":>9s} {"vs default":>11s}')
  for mode, rate in rates.items():
    if isinstance(rate, str):
      print(f'{mode:18s} failed: {rate}')
      continue
    ratio = rate / rates['default'] if isinstance(rates.get('default'), float) else float('nan')
    print(f'{mode:18s} {rate:9.1f} {ratio:10.2f}x')


if __name__ == '__main__':
  main()
