"""Draws samples from a trained run: G alone and G + its sampler, in data space.

  python -m tfganebm.sample --workdir runs/moons --num_samples 2000 --out runs/moons/samples

Writes OUT/samples_generator.npy and OUT/samples_langevin.npy ([N, *data_shape],
row i of the second is the refinement of row i of the first), samples.png,
langevin_progression.png and metrics.json. --langevin_steps 0 means G alone.
A conditional run draws the classes of --label (`--label 7`, `--label 3:0.8,7:0.2`;
default all classes in turn) and writes OUT/labels.npy, the class of each row.
Sampler settings default to the run's own (its --langevin_* training flags);
--langevin_space=latent runs the chains in z instead (see tfganebm.sampler).
Image runs read their held-out images and the cached metrics classifier from
the places in the run's flags.txt (--data_dir, --classifier_dir override them).

Quality against sampling cost: a comma list of chain lengths,

  python -m tfganebm.sample --workdir W --out O --langevin_steps 0,5,10,20,50,100 \
      [--baseline runs/gan_moons]

also writes O/quality_vs_steps.{json,csv,png}: the metrics of G + k steps for each
k (one set of chains, scored as it passes each k), with the real-data floor and
the plain GAN of --baseline; the samples and metrics.json are those of the
longest chain.
"""

import os
import sys

from absl import flags
from absl import logging

from tfganebm import cli
from tfganebm.sampler import SamplerConfig

FLAGS = flags.FLAGS
# The run's settings this command may override (default: the run's own).
# Every sampler setting but the chain length (a list here: --langevin_steps).
OVERRIDES = tuple(f'langevin_{name}' for name in SamplerConfig.names() if name != 'steps') + (
    'data_dir', 'classifier_dir', 'average_checkpoints')


def define_flags():
  flags.DEFINE_string('workdir', None, 'Workdir of a tfganebm.train run.')
  flags.DEFINE_string('out', None, 'Directory for the samples and figures.')
  flags.DEFINE_integer('num_samples', 2000, 'Number of samples.', lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Seed of z and of the Langevin noise.')
  flags.DEFINE_list('langevin_steps', None, "Chain length K, or a comma list of lengths for "
                    "the quality-against-steps table (default: the run's).")
  flags.register_validator('langevin_steps', _valid_steps,
                           '--langevin_steps must be integers >= 0, e.g. 0,5,10,20,50,100')
  flags.DEFINE_string('baseline', None, 'Workdir of a plain GAN run drawn as a line in '
                      'quality_vs_steps.png (with several --langevin_steps).')
  flags.DEFINE_string('label', None, 'A conditional run (--conditional): the class to draw, '
                      'e.g. 7; a list, 3,7 (equal shares); weighted shares, 3:0.8,7:0.2; or '
                      'all (the classes in turn: samples.png\'s grid of 10 x 10 shows one '
                      'class per column for 10 classes). Default: all.')
  flags.register_validator('label', lambda text: text is None or label_problem(text) is None,
                           '--label must be a class (7), a list (3,7), weighted classes '
                           '(3:0.8,7:0.2) or all')
  cli.define_config_flags(OVERRIDES, optional=True)
  flags.mark_flags_as_required(['workdir', 'out'])


def parse_label(text):
  """--label as [(class, weight)], or None for 'all'.

  Raises:
    ValueError: what is wrong with it.
  """
  if text.strip() == 'all':
    return None
  shares = []
  for part in text.split(','):
    name, _, weight = part.strip().partition(':')
    label, weight = int(name), float(weight) if weight else 1.0
    if label < 0 or not 0 < weight < float('inf'):
      raise ValueError(f'--label {text}: classes are 0 or more and weights positive numbers')
    shares.append((label, weight))
  return shares


def label_problem(text):
  try:
    parse_label(text)
    return None
  except ValueError as e:
    return str(e)


def labels_for(text, num_classes, num_samples, seed=0):
  """The class of each of `num_samples` samples that --label asks of a run with
  `num_classes` classes (0: unconditional), or None for the run's default.

  Raises:
    ValueError: a label for an unconditional run, or a class the run does not have.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  if text is None:
    return None
  if not num_classes:
    raise ValueError(f'--label {text}: the run is not conditional (trained without '
                     '--conditional); leave --label out')
  shares = parse_label(text)
  if shares is None:
    return (np.arange(num_samples) % num_classes).astype(np.int32)
  bad = sorted({label for label, _ in shares if label >= num_classes})
  if bad:
    raise ValueError(f'--label {text}: the run has classes 0..{num_classes - 1}, not '
                     f'{", ".join(map(str, bad))}')
  weights = np.array([w for _, w in shares]) / sum(w for _, w in shares)
  counts = np.floor(weights * num_samples).astype(int)
  counts[np.argsort(-(weights * num_samples - counts))[:num_samples - counts.sum()]] += 1
  labels = np.repeat([label for label, _ in shares], counts).astype(np.int32)
  return labels[np.random.default_rng(seed).permutation(num_samples)]


def _valid_steps(values):
  try:
    return values is None or (len(values) > 0 and all(int(v) >= 0 for v in values))
  except ValueError:
    return False


def sample_run(run_dir, out_dir, num_samples, seed=0, overrides=None, steps_list=None,
               baseline=None, label=None):
  """What `python -m tfganebm.sample` does: G and G + sampler samples of a trained run,
  as OUT/samples_generator.npy and OUT/samples_langevin.npy (row i of the second refines
  row i of the first; G alone for a plain GAN), with metrics.json and the figures.

  Args:
    run_dir: the run's workdir; out_dir: where to write (not the workdir itself).
    overrides: {flag name: value} for `runs.load_run` (the sampler, data folders...).
    steps_list: chain lengths k for `evaluation.quality_against_steps`
      (OUT/quality_vs_steps.*), if any.
    baseline: a plain GAN's workdir, the baseline line of that plot.
    label: --label's text (a conditional run: which classes to draw), or None.

  Returns:
    The metrics dict.

  Raises:
    workdir.LoadError, images.DataError, chains.NonFiniteSamples: nothing was written.
  """
  # Imported here: the command refuses what it can before TensorFlow loads (`main`).
  from tfganebm import data  # pylint: disable=g-import-not-at-top
  from tfganebm import evaluation  # pylint: disable=g-import-not-at-top
  from tfganebm import evaluators  # pylint: disable=g-import-not-at-top
  from tfganebm import files  # pylint: disable=g-import-not-at-top
  from tfganebm import runs  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.check_output(run_dir, out_dir)
  model, config = runs.load_run(run_dir, overrides)
  try:
    labels = labels_for(label, model.num_classes, num_samples, seed)
  except ValueError as e:
    raise workdir_lib.LoadError(str(e)) from None
  if steps_list and model.energy is None and max(steps_list) > 0:
    raise workdir_lib.LoadError(f'{run_dir} is a plain GAN: it has no energy to run chains on; '
                                'give it as --baseline of a gan_ebm run instead')
  baseline_model = None
  if baseline:
    baseline_model, baseline_config = runs.load_run(baseline, {})
    if (baseline_config.data.dataset != config.data.dataset):
      raise workdir_lib.LoadError(f'--baseline {baseline} was trained on '
                                  f'{baseline_config.data.dataset}, not {config.data.dataset}')
  dataset = None
  if config.data.dataset not in data.DATASETS:  # loaded once for both evaluations
    dataset = evaluators.load_data(config)
  # One evaluator and one draw for both: the curve takes G, G + K and the floor from the
  # evaluation, and runs its chains only to the longest shorter k.
  evaluator = evaluators.EVALUATORS[data.kind(config.data)](config, num_samples, seed, dataset)
  result, x_gen, x_langevin = evaluation.evaluate(model, config, out_dir, num_samples, seed,
                                                  dataset=dataset, refuse_non_finite=True,
                                                  evaluator=evaluator, labels=labels)
  if steps_list:
    evaluation.quality_against_steps(model, config, out_dir, steps_list, num_samples, seed,
                                     baseline=baseline_model, evaluator=evaluator,
                                     measured=result, labels=labels)
  files.write_npy(os.path.join(out_dir, 'samples_generator.npy'), x_gen)
  if x_langevin is None:
    if model.energy is None:
      logging.warning('%s is a plain GAN: samples_langevin.npy holds G alone', run_dir)
    x_langevin = x_gen
  files.write_npy(os.path.join(out_dir, 'samples_langevin.npy'), x_langevin)
  if model.num_classes:
    from tfganebm import chains  # pylint: disable=g-import-not-at-top
    files.write_npy(os.path.join(out_dir, 'labels.npy'),
                    chains.sample_labels(model, num_samples, labels))
  return result


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}; flags look like --name=value')
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  overrides = cli.overrides(OVERRIDES)
  steps = sorted({int(v) for v in FLAGS.langevin_steps or ()})
  if steps:
    overrides['langevin_steps'] = steps[-1]
  if FLAGS.baseline and len(steps) < 2:
    sys.exit('error: --baseline is drawn in the quality-against-steps plot; give it with a '
             'list of --langevin_steps, e.g. 0,5,10,20,50,100')
  try:  # what can be refused without TensorFlow, before its import
    config = workdir.preflight(FLAGS.workdir, overrides, out=FLAGS.out)
    classes = config.networks.num_classes if config.networks.conditional else 0
    labels_for(FLAGS.label, classes, FLAGS.num_samples, FLAGS.seed)
    if FLAGS.baseline:
      workdir.preflight(FLAGS.baseline)
  except (workdir.LoadError, ValueError) as e:
    sys.exit(f'error: {e}')
  from tfganebm import chains  # pylint: disable=g-import-not-at-top
  from tfganebm import images  # pylint: disable=g-import-not-at-top
  try:
    result = sample_run(FLAGS.workdir, FLAGS.out, FLAGS.num_samples, FLAGS.seed, overrides,
                        steps_list=steps if len(steps) > 1 else None, baseline=FLAGS.baseline,
                        label=FLAGS.label)
  except (workdir.LoadError, images.DataError) as e:
    sys.exit(f'error: {e}')
  except chains.NonFiniteSamples as e:
    sys.exit(f'error: {e}; nothing was written to {FLAGS.out}')
  logging.info('wrote %d samples to %s; metrics: %s', FLAGS.num_samples, FLAGS.out,
               {k: v for k, v in result.items() if isinstance(v, dict)})


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
