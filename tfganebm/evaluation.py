"""Measures a trained model's samples (G alone, G + its sampler) into a directory.

`evaluate` writes metrics.json and the figures (at the end of training and for
`tfganebm.sample`); `quality_against_steps` the metrics against chain length
(quality_vs_steps.json, .csv and .png). The chains are `tfganebm.chains`'s, the scorers
`tfganebm.evaluators`'s.
"""

import dataclasses
import os

import numpy as np

from tfganebm import chains
from tfganebm import data
from tfganebm import evaluators
from tfganebm import files
from tfganebm import plots
from tfganebm import progress

PROGRESSION_FRAMES = 6  # panels of the Langevin progression figure


def evaluate(model, config, out_dir, num_samples, seed, step=None, dataset=None,
             refuse_non_finite=False, evaluator=None, labels=None):
  """Samples of G and of G + `config.sampler`, their metrics.json and figures in `out_dir`.

  Args:
    model: a `GanEbm`.
    config: the run's `Config`; its `sampler` refines G's samples.
    num_samples: samples to draw; seed: seed of this draw.
    step: the training step, recorded (default: the model's).
    dataset: the run's `data.Data` if at hand (images: saves loading them again).
    refuse_non_finite: raise NonFiniteSamples, before writing anything, when a sample is
      not finite; otherwise metrics.json counts them in `non_finite_samples`.
    evaluator: an `evaluators.EVALUATORS` instance for these samples, if at hand (shared
      with a quality curve of the same draw).
    labels: a conditional model's class of each sample (default: the classes in turn,
      `chains.sample_labels`); metrics.json then has each section's `label_accuracy`.

  Returns:
    (metrics dict, x_gen, x_langevin).
  """
  sampler = config.sampler
  step = int(model.step.numpy()) if step is None else step
  evaluator = evaluator or evaluators.EVALUATORS[data.kind(config.data)](
      config, num_samples, seed, dataset)
  frames = PROGRESSION_FRAMES - 1
  record_every = sampler.steps // frames if sampler.steps >= frames else 0
  bar = progress.Progress(5, f'evaluation of {num_samples} samples')
  labels = chains.sample_labels(model, num_samples, labels)
  x_gen, x_langevin, trajectory = chains.draw_samples(model, num_samples, seed, sampler,
                                                      record_every, evaluator.trajectory_chains,
                                                      labels)
  bar.update(1, f'drew G and {sampler.describe()}')
  non_finite = chains.count_non_finite(x_gen, x_langevin, refuse_non_finite, sampler)
  result = dict(dataset=config.data.dataset, model=config.networks.model, step=step,
                **model.averaging(), seed=seed, num_samples=num_samples,
                langevin=dataclasses.asdict(sampler), **evaluator.info,
                real_data=evaluator(evaluator.floor))
  bar.update(1, 'scored the real-data floor')
  result['generator'] = evaluator(x_gen)
  bar.update(1, 'scored G')
  if getattr(model, 'sampler_tuning', None):
    result['sampler_tuning'] = model.sampler_tuning
  if non_finite:
    result['non_finite_samples'] = non_finite
  if x_langevin is not None:
    result['generator_langevin'] = evaluator(x_langevin)
  if labels is not None:
    result['labels'] = dict(asked=np.bincount(labels, minlength=model.num_classes).tolist())
    if getattr(evaluator, 'floor_labels', None) is not None:  # the yardstick: real data's
      result['real_data']['label_accuracy'] = evaluator.label_accuracy(evaluator.floor,
                                                                       evaluator.floor_labels)
    for name, x in (('generator', x_gen), ('generator_langevin', x_langevin)):
      if x is not None:
        result[name].update(evaluator.label_metrics(x, labels))
  bar.update(1, 'scored G + chain')
  if model.energy is not None:
    energy = evaluator.energy_metrics(model)
    if energy is not None:
      result['energy'] = energy

  os.makedirs(out_dir, exist_ok=True)
  files.write_json(os.path.join(out_dir, 'metrics.json'), result)
  title = f'{config.data.dataset}, {config.networks.model}, step {step}'
  if model.averaged_steps:
    title += f' (mean of {len(model.averaged_steps)} checkpoints)'
  if model.averages:
    title += f" ({' and '.join(model.averages)}: moving averages)"
  evaluator.figures(out_dir, x_gen, x_langevin, trajectory, record_every, title,
                    sampler.describe())
  bar.update(1, 'figures written')
  bar.close()
  return result, x_gen, x_langevin


# The metrics drawn against chain length are the evaluator's `headline`; mixtures add these.
MODE_CURVE_METRICS = ('modes_recovered', 'high_quality_fraction', 'mode_kl')
QUALITY_FILE = 'quality_vs_steps'  # .json, .csv and .png


def quality_against_steps(model, config, out_dir, steps_list, num_samples, seed=0,
                          baseline=None, dataset=None, evaluator=None, measured=None,
                          labels=None):
  """Quality against sampling cost: the metrics of G + k steps of `config.sampler`, for
  each k of `steps_list`, against the held-out data, beside the real-data floor and
  (with `baseline`, a plain GAN's model) the plain GAN's G at the same sample size.

  Writes OUT/quality_vs_steps.json (every metric), .csv (one row per k) and .png
  (the headline metrics against k, the floor and the plain GAN as lines).

  `evaluator` and `measured` (the dict `evaluate` returned for the same model, draw and
  sampler) let a caller that has just evaluated share that work: their G, G + K and
  floor metrics are taken, not scored again, and the chains stop at the longest k left.
  `labels`: a conditional model's classes, as for `evaluate` (each row then has the
  `label_accuracy` of G + k steps).

  Returns:
    the JSON dict: sampler, rows [{steps, metrics...}], floor, baseline.
  """
  sampler = config.sampler
  kind = data.kind(config.data)
  evaluator = evaluator or evaluators.EVALUATORS[kind](config, num_samples, seed, dataset)
  known = {}
  if measured is not None:
    known = {0: measured['generator'], sampler.steps: measured.get('generator_langevin')}
    known = {k: v for k, v in known.items() if v is not None}
  by_steps = {k: known[k] for k in set(steps_list) & set(known)}
  todo = sorted(set(steps_list) - set(by_steps))
  bar = progress.Progress(len(todo), 'quality against chain length')
  labels = chains.sample_labels(model, num_samples, labels)
  for k, x in chains.chains_at(model, num_samples, seed, sampler, todo, labels) if todo else ():
    chains.count_non_finite(x, None, True, dataclasses.replace(sampler, steps=k))
    by_steps[k] = evaluator(x)
    if labels is not None:
      by_steps[k].update(evaluator.label_metrics(x, labels))
    bar.update(1, f'{dataclasses.replace(sampler, steps=k).describe()}: '
                  f'{_headline(by_steps[k], evaluator.headline)}')
  bar.close()
  rows = [dict(steps=k, **by_steps[k]) for k in sorted(by_steps)]
  result = dict(dataset=config.data.dataset, sampler=dataclasses.asdict(sampler),
                label=sampler.describe().replace(f'G + {sampler.steps} ', 'G + k '),
                num_samples=num_samples, seed=seed, rows=rows,
                floor=measured['real_data'] if measured else evaluator(evaluator.floor))
  if baseline is not None:
    x_base, _, _ = chains.draw_samples(baseline, num_samples, seed,  # its G alone
                                       dataclasses.replace(sampler, steps=0),
                                       labels=labels if baseline.num_classes else None)
    result['baseline'] = evaluator(x_base)
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, QUALITY_FILE)
  files.write_json(path + '.json', result)
  names = [name for name in rows[0] if not isinstance(rows[0][name], list)]
  lines = [','.join(names)] + [','.join('' if row.get(n) is None else f'{row[n]:.6g}'
                                       for n in names) for row in rows]
  files.write_text(path + '.csv', '\n'.join(lines) + '\n')
  curves = evaluator.headline + (MODE_CURVE_METRICS if 'mode_kl' in rows[0] else ())
  with files.atomic_path(path + '.png') as png:
    plots.quality_against_steps(png, result, curves,
                                title=f'{config.data.dataset}: quality against chain length')
  return result


def _headline(metrics_row, headline):
  keys = headline + MODE_CURVE_METRICS
  return ' '.join(f'{k}={metrics_row[k]:.4g}' for k in keys
                  if isinstance(metrics_row.get(k), (int, float)))

