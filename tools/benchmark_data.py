"""The input pipeline alone: how fast a user's folder streams, beside the same images in memory.

  python tools/benchmark_data.py --dataset folder:DIR [--image_size S --batch_size 64 --steps 200]

Prints, in one run on this machine: the time to list and check the folder (`data.load`), the
time to the first batch, batches/s streamed from disk (decoded per batch, as training reads
them) and, for up to --in_memory images, batches/s of the same images as one uint8 array,
with their ratio; and the process's peak resident memory. Name the CPU beside the figures.
"""

import argparse
import resource
import time

from tfganebm import config as config_lib
from tfganebm import data
from tfganebm import sources


def _rate(batches, steps):
  iterator = iter(batches)
  start = time.perf_counter()
  next(iterator)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    next(iterator)
  return first, steps / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--dataset', required=True)
  parser.add_argument('--image_size', type=int, default=0)
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--steps', type=int, default=200)
  parser.add_argument('--in_memory', type=int, default=20000,
                      help='images read into memory for the comparison (0: none)')
  args = parser.parse_args()
  config = config_lib.Config().override(dataset=args.dataset, image_size=args.image_size,
                                        batch_size=args.batch_size, download=False)
  start = time.perf_counter()
  loaded = data.load(config.data)
  listed = time.perf_counter() - start
  print(f'{args.dataset}: {len(loaded.train)} training images {loaded.shape}, listed and checked '
        f'in {listed:.1f} s')
  first, streamed = _rate(data.batches(loaded.train, args.batch_size, 0), args.steps)
  print(f'streamed from disk: first batch after {first:.2f} s, {streamed:.1f} batches/s '
        f'({streamed * args.batch_size:.0f} images/s)')
  if args.in_memory and isinstance(loaded.train, sources.ImageFiles):
    array = loaded.train[:args.in_memory].read()
    _, in_memory = _rate(data.batches(array, args.batch_size, 0), args.steps)
    print(f'the first {len(array)} in memory: {in_memory:.1f} batches/s; streamed / in memory '
          f'= {streamed / in_memory:.2f}')
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(f'peak resident memory: {peak:.2f} GiB')


if __name__ == '__main__':
  main()
