"""Chooses the number of inference Langevin steps of a trained run on its training data.

  python tools/tune_langevin.py --workdir runs/mnist [--max_steps 60 --every 5]

Runs chains from G(z) once with the run's inference settings (eta, sigma, clip;
--step_size etc. override them), scores the states after 0, every, 2 every, ...
max_steps steps against training data (images: classifier-FID to 5,000 training
images; 2D: sliced Wasserstein distance to training points) and prints them with
the best. The held-out split is not looked at, so the numbers that
`tfganebm.sample --langevin_steps BEST` reports on it stay honest. Short-run EBMs
trained with K-step chains usually peak at a few times K: longer chains
over-sharpen.
"""

import argparse
import os
import sys

# TensorFlow's C++ start-up chatter would come before our one-line errors.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from tfganebm import data
from tfganebm import evaluation
from tfganebm import workdir as workdir_lib


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='a tfganebm.train run with an energy')
  parser.add_argument('--max_steps', type=int, default=60, help='the longest chain scored')
  parser.add_argument('--every', type=int, default=5, help='steps between scored states')
  parser.add_argument('--num_samples', type=int, default=2000)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--step_size', type=float, default=None, help="default: the run's")
  parser.add_argument('--noise', type=float, default=None, help="default: the run's")
  parser.add_argument('--grad_clip', type=float, default=None, help="default: the run's")
  parser.add_argument('--average_checkpoints', type=int, default=None,
                      help="G and E averaged over the last N checkpoints; default: the run's")
  parser.add_argument('--data_dir', default=None, help="images: override the run's --data_dir")
  parser.add_argument('--classifier_dir', default=None)
  args = parser.parse_args()
  overrides = dict(langevin_steps=args.max_steps, langevin_step_size=args.step_size,
                   langevin_noise=args.noise, langevin_grad_clip=args.grad_clip,
                   average_checkpoints=args.average_checkpoints, data_dir=args.data_dir,
                   classifier_dir=args.classifier_dir)
  try:
    model, config = workdir_lib.load_run(
        args.workdir, {name: value for name, value in overrides.items() if value is not None})
  except workdir_lib.LoadError as e:
    sys.exit(f'error: {e}')
  settings = config.sampler
  try:
    dataset = data.load(config.data.dataset, config.data.num_examples, config.data.data_noise,
                        config.run.seed, data_dir=config.data.data_dir,
                        download=config.data.download)
    scores = evaluation.sweep_langevin_steps(model, config, dataset, settings, args.every,
                                             args.num_samples, args.seed)
  except ValueError as e:  # images.DataError included
    sys.exit(f'error: {e}')
  metric = 'classifier-FID' if data.is_image(config.data.dataset) else 'sliced W2'
  print(f'{"steps":>6}  {metric} to training data (eta={settings.step_size:g}, '
        f'sigma={settings.noise:g}, clip={settings.grad_clip:g})')
  best = min(scores, key=lambda pair: pair[1])
  for steps, score in scores:
    print(f'{steps:>6}  {score:.4g}{"  <- best" if (steps, score) == best else ""}')
  print(f'best: --langevin_steps={best[0]}')


if __name__ == '__main__':
  main()
