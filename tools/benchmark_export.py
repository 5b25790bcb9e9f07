"""Latency, parity and quality of an exported model: TF SavedModel vs LiteRT files.

  python tools/benchmark_export.py --workdir runs/mnist [--steps 20] [--threads 1,2]
      [--quantize float16,dynamic_range] [--num_samples 2000]

Exports the run into a temporary directory (float32, plus each --quantize file, which
`tfganebm.export` no longer offers but this tool still measures), then times per batch
(1, 16, 64) and per LiteRT thread count: `generate`, one `langevin_step` and a whole
`sample` (G + K steps, fused). It prints max |LiteRT - TF| for generate, energy and a
K-step chain fed the same noise, the file sizes, and the quality of each engine's
G + K samples (classifier-FID for images, sliced Wasserstein for 2D, against the
run's held-out data). Run it on an idle machine; all numbers come from one run.
"""

import argparse
import os
import statistics
import tempfile
import time

# TensorFlow's C++ start-up chatter would come before our one-line errors.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfganebm import data
from tfganebm import evaluators
from tfganebm import exporting
from tfganebm import runs



def _median_ms(call, repeats=20):
  call()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--steps', type=int, default=100, help='Langevin steps of `sample`')
  parser.add_argument('--threads', default='1,2', help="LiteRT's CPU thread counts to time")
  parser.add_argument('--quantize', default='float16,dynamic_range',
                      help='quantized files to measure beside float32 (comma list, or none)')
  parser.add_argument('--num_samples', type=int, default=2000,
                      help='samples per engine for the quality column (0: skip it)')
  args = parser.parse_args()
  threads = [int(t) for t in args.threads.split(',')]
  quantizations = ['none'] + [q for q in args.quantize.split(',') if q not in ('', 'none')]
  model, config = runs.load_run(args.workdir)
  data_shape = model.data_shape
  out = os.path.join(tempfile.mkdtemp(), 'export')
  info = exporting.export(model, config, data_shape, out, quantize=quantizations[1:],
                          step=int(model.step.numpy()))
  saved = tf.saved_model.load(os.path.join(out, 'saved_model')).signatures
  step_size = np.float32(config.sampler.step_size)
  rng = np.random.default_rng(0)

  metropolis = config.sampler.metropolis  # time and compare the sampler the run uses
  chain, one_step = ('sample_metropolis', 'metropolis_step') if metropolis else ('sample',
                                                                                 'langevin_step')

  def inputs(batch):
    z = rng.standard_normal((batch, config.networks.latent_dim)).astype(np.float32)
    noise = (config.sampler.noise * rng.standard_normal((args.steps, batch, *data_shape))
             ).astype(np.float32)
    extra = {}
    if metropolis:
      extra = dict(uniform=rng.uniform(size=(args.steps, batch)).astype(np.float32),
                   noise_std=np.float32(config.sampler.noise))
    return z, noise, extra

  def step_extra(extra):
    return {k: (v[0] if k == 'uniform' else v) for k, v in extra.items()}

  engines = {'tf saved_model': None}
  for q in quantizations:
    for n in threads:
      engines[f'litert {q}, {n} thread(s)'] = Interpreter(
          model_path=os.path.join(out, exporting.tflite_name(q)), num_threads=n)

  print(f'{args.workdir}: {config.data.dataset}, E units {config.networks.energy_units}, '
        f'sample = G + {args.steps} {"MALA" if metropolis else "Langevin"} steps ({chain}); '
        f'load average {os.getloadavg()[0]:.2f}')
  print(f'{"engine":34s}{"batch":>6s}{"generate ms":>13s}{"step ms":>10s}{"sample ms":>11s}')
  for batch in (1, 16, 64):
    z, noise, extra = inputs(batch)
    x = model.generator(z, training=False).numpy()
    one = dict(x=x, noise=noise[0], step_size=step_size, **step_extra(extra))
    whole = dict(z=z, noise=noise, step_size=step_size, **extra)
    for name, engine in engines.items():
      if engine is None:
        calls = (lambda: saved['generate'](z=tf.constant(z)),
                 lambda: saved[one_step](**{k: tf.constant(v) for k, v in one.items()}),
                 lambda: saved[chain](**{k: tf.constant(v) for k, v in whole.items()}))
      else:
        runners = [engine.get_signature_runner(n) for n in ('generate', one_step, chain)]
        calls = (lambda r=runners[0]: r(z=z),
                 lambda r=runners[1]: r(**one),
                 lambda r=runners[2]: r(**whole))
      times = [_median_ms(c, repeats=5 if i == 2 else 20) for i, c in enumerate(calls)]
      print(f'{name:34s}{batch:6d}' + ''.join(f'{t:{w}.3f}' for t, w in zip(times, (13, 10, 11))))

  z, noise, extra = inputs(64)
  x = model.generator(z, training=False).numpy()
  whole = dict(z=z, noise=noise, step_size=step_size, **extra)
  reference = dict(generate=x, energy=model.energy_of(tf.constant(x)).numpy(),
                   sample=saved[chain](**{k: tf.constant(v) for k, v in whole.items()})['x'].numpy())
  print(f'\nmax |LiteRT - TF| at batch 64 ({args.steps}-step chain with the same noise; a chain '
        'near a sharp well can take the other accept/reject branch or diverge):')
  for q in quantizations:
    engine = engines[f'litert {q}, {threads[-1]} thread(s)']
    got = dict(generate=engine.get_signature_runner('generate')(z=z)['x'],
               energy=engine.get_signature_runner('energy')(x=x)['e'],
               sample=engine.get_signature_runner(chain)(**whole)['x'])
    diffs = '  '.join(f'{k} {np.abs(got[k] - reference[k]).max():.2e}' for k in reference)
    rows = np.abs(got['sample'] - reference['sample']).reshape(len(z), -1).max(1)
    diffs += f'  (chains within 1e-4: {int((rows <= 1e-4).sum())}/{len(rows)})'
    size = os.path.getsize(os.path.join(out, exporting.tflite_name(q)))
    print(f'  {q:14s} {diffs}   file {size / 1024:.1f} KiB')
  sm_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in
                 os.walk(os.path.join(out, 'saved_model')) for f in fs)
  print(f'  saved_model    {sm_bytes / 1024:.1f} KiB; export.json step {info["step"]}')
  if args.num_samples > 0:
    _quality(args, config, saved, engines, quantizations, threads[-1], chain, inputs)


def _quality(args, config, saved, engines, quantizations, threads, chain, inputs):
  """Scores each engine's G + K samples, drawn with the same z and noise, at batch 64."""
  kind = data.kind(config.data)
  evaluator = evaluators.EVALUATORS[kind](config, args.num_samples, 0)
  metric = evaluator.headline[0]
  batches = [inputs(64) for _ in range(-(-args.num_samples // 64))]
  print(f'\nquality of G + {args.steps} steps, {args.num_samples} samples per engine ({metric} '
        'against held-out data; lower is better):')
  runs = {'tf saved_model': lambda whole: saved[chain](
      **{k: tf.constant(v) for k, v in whole.items()})['x'].numpy()}
  for q in quantizations:
    runner = engines[f'litert {q}, {threads} thread(s)'].get_signature_runner(chain)
    runs[f'litert {q}'] = lambda whole, r=runner: r(**whole)['x']
  for name, run in runs.items():
    x = np.concatenate([run(dict(z=z, noise=noise, step_size=np.float32(config.sampler.step_size),
                                 **extra)) for z, noise, extra in batches])[:args.num_samples]
    print(f'  {name:24s}{metric} {evaluator(x)[metric]:.4g}')


if __name__ == '__main__':
  main()
