"""Trains each shipped config on several seeds and writes configs/results.json, from which
tools/make_readmes.py writes the results table of configs/README.md.

  python tools/results.py [--configs moons,swissroll] [--seeds 0,1,2] [--runs runs/results]
                          [--data_dir ../shared/data/mnist] [--table]

Each config's command is the one its header gives (the `# python ...` lines), with
`--workdir` in `--runs/<config>/seed<N>`, `--seed N` added, a generated dataset file
(`digits.npz`) in `--runs/<config>/`, and `runs/<other config>` (refine_mnist.cfg's G) read
from the same seed's run of that config. A seed whose metrics.json exists is not trained
again, so the tool resumes where it stopped; one whose command fails is reported and left
out. Configs that need data this machine does not have (your own images or points,
CIFAR-10 without --cifar_dir) are listed as not run, with the reason.

configs/results.json holds, per config and seed, the headline metrics of metrics.json (G
alone and G + the config's sampler), the wall time of the commands (a seed stopped and run
again adds up its invocations: `<workdir>.wall.json`) and the CPU they ran on.
--table only rewrites it from the runs already finished (nothing is trained).
"""

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'configs', 'results.json')
# The metrics a table shows, per section of metrics.json, in this order (those present).
HEADLINE = ('fid', 'kid', 'swd', 'class_kl', 'classes_covered', 'sliced_wasserstein', 'mmd2',
            'modes_recovered', 'high_quality_fraction', 'mode_kl', 'label_accuracy')
SECTIONS = ('generator', 'generator_langevin')
# Data the configs need that a command cannot make: {config: (reason, flag that supplies it)}.
NEEDS = {'images.cfg': ('your own images (--dataset folder:DIR)', None),
         'points.cfg': ('your own points (--dataset npy:FILE)', None),
         'cifar10.cfg': ('CIFAR-10 (cifar-10-batches-py)', 'cifar_dir'),
         'gan_cifar10.cfg': ('CIFAR-10 (cifar-10-batches-py)', 'cifar_dir')}
MNIST = ('mnist.cfg', 'gan_mnist.cfg', 'refine_mnist.cfg', 'cmnist.cfg', 'gan_cmnist.cfg')


def cpu_name():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return f'{line.split(":", 1)[1].strip()}, {os.cpu_count()} cores'
  except OSError:
    pass
  return f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores'


def header_commands(name):
  """The `# python ...` command lines of a config's header, as argument lists."""
  commands, lines = [], []
  with open(os.path.join(ROOT, 'configs', name)) as f:
    for line in f:
      if not line.startswith('#'):
        break
      lines.append(line[1:].strip())
  for line in lines:
    if line.startswith('python '):
      commands.append(shlex.split(re.sub(r'\[[^\]]*\]', '', line)))
  return commands


def seed_commands(name, seed, runs, extra):
  """The commands that train seed `seed` of config `name`, rewritten for the results."""
  folder = os.path.join(runs, name[:-len('.cfg')])
  workdir = os.path.join(folder, f'seed{seed}')
  out = []
  for command in header_commands(name):
    args = []
    for arg in command:
      arg = re.sub(r'(?<![\w/])runs/(\w+)', lambda m: os.path.join(runs, m.group(1), f'seed{seed}')
                   if m.group(1) != name[:-4] else workdir, arg)
      arg = re.sub(r'^(npy:)?(\w+\.npz)$', lambda m: (m.group(1) or '') +
                   os.path.join(folder, m.group(2)), arg)
      args.append(arg)
    if args[0] == 'python':
      args[0] = sys.executable
    if '-m' in args:  # a tfganebm command: this seed, these data folders
      args += [f'--seed={seed}'] + extra
    out.append(args)
  return workdir, out


def invocations(workdir, log_path, now):
  """The seed's record of its invocations ([start, end] pairs, in `<workdir>.wall.json`) with
  one starting `now` added: an earlier one that never recorded its end (its process was
  stopped, and the command resumes its run) ends when its log was last written."""
  path = workdir + '.wall.json'
  spans = []
  if os.path.exists(path):
    with open(path) as f:
      spans = json.load(f)
  if spans and spans[-1][1] is None:
    spans[-1][1] = os.path.getmtime(log_path) if os.path.exists(log_path) else spans[-1][0]
  spans.append([now, None])
  with open(path, 'w') as f:
    json.dump(spans, f)
  return path, spans


def train_seed(name, seed, runs, extra, log):
  """Runs a seed's commands; returns (wall seconds, None) or (None, the failure). The wall
  time adds up every invocation of the seed, those stopped before it finished included."""
  workdir, commands = seed_commands(name, seed, runs, extra)
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  path, spans = invocations(workdir, log.name, time.time())
  for args in commands:
    print('$', ' '.join(shlex.quote(a) for a in args), file=log, flush=True)
    if subprocess.run(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode:
      what = args[2] if len(args) > 2 else os.path.basename(args[0])
      return None, f'{what} failed (see {log.name})'
  spans[-1][1] = time.time()
  with open(path, 'w') as f:
    json.dump(spans, f)
  return sum(end - start for start, end in spans), None


def headline(metrics):
  """{section: {metric: value}} of a run's metrics.json, the HEADLINE metrics only."""
  out = {}
  for section in SECTIONS:
    values = metrics.get(section) or {}
    picked = {k: values[k] for k in HEADLINE if isinstance(values.get(k), (int, float))}
    if picked:
      out[section] = picked
  sampler = metrics.get('langevin') or {}
  out['sampler'] = {k: sampler.get(k) for k in ('steps', 'step_size', 'noise', 'proposal', 'space')
                    if k in sampler}
  return out


def collect(names, seeds, runs, previous, missing):
  """configs/results.json's content from the finished runs (keeping earlier entries)."""
  results = dict(previous)
  for name in names:
    entry = dict(results.get(name, {}))
    seeds_done = dict(entry.get('seeds', {}))
    for seed in seeds:
      workdir = os.path.join(runs, name[:-4], f'seed{seed}')
      path = os.path.join(workdir, 'metrics.json')
      if not os.path.exists(path):
        continue
      with open(path) as f:
        record = headline(json.load(f))
      timing = os.path.join(workdir, 'results_wall.json')
      if os.path.exists(timing):
        with open(timing) as f:
          record.update(json.load(f))
      seeds_done[str(seed)] = record
    entry['seeds'] = dict(sorted(seeds_done.items(), key=lambda kv: int(kv[0])))
    if name in missing:
      entry['not_run'] = missing[name]
    results[name] = entry
  return dict(sorted(results.items()))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', default='', help='comma-separated names (default: all)')
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--runs', default=os.path.join('runs', 'results'))
  parser.add_argument('--data_dir', default='', help='the folder of the MNIST IDX files')
  parser.add_argument('--cifar_dir', default='', help='a folder holding cifar-10-batches-py/')
  parser.add_argument('--table', action='store_true', help='only rewrite configs/results.json')
  args = parser.parse_args()
  names = sorted(n for n in os.listdir(os.path.join(ROOT, 'configs')) if n.endswith('.cfg'))
  if args.configs:
    wanted = [c if c.endswith('.cfg') else c + '.cfg' for c in args.configs.split(',')]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
      sys.exit(f'error: no configs/{unknown[0]}; choose from {", ".join(names)}')
    names = wanted
  seeds = [int(s) for s in args.seeds.split(',')]
  runs = os.path.abspath(args.runs)
  supplied = set()  # configs whose data a flag supplied: run like the others
  if not args.table:
    os.makedirs(runs, exist_ok=True)
    for name in names:
      reason, flag = NEEDS.get(name, (None, None))
      if reason and not (flag and getattr(args, flag)):
        print(f'{name}: not run, it needs {reason}')
        continue
      extra = [f'--data_dir={os.path.abspath(args.data_dir)}'] if (
          args.data_dir and name in MNIST) else []
      if flag and getattr(args, flag):
        extra = [f'--data_dir={os.path.abspath(getattr(args, flag))}']
        supplied.add(name)
      for seed in seeds:
        workdir = os.path.join(runs, name[:-4], f'seed{seed}')
        if os.path.exists(os.path.join(workdir, 'metrics.json')):
          continue
        with open(os.path.join(runs, f'{name[:-4]}.seed{seed}.log'), 'a') as log:
          seconds, failure = train_seed(name, seed, runs, extra, log)
        if failure:
          print(f'{name} seed {seed}: {failure}')
          continue
        with open(os.path.join(workdir, 'results_wall.json'), 'w') as f:
          json.dump(dict(wall_seconds=round(seconds, 1), cpu=cpu_name()), f)
        print(f'{name} seed {seed}: {seconds / 60:.1f} min', flush=True)
  previous = {}
  if os.path.exists(RESULTS):
    with open(RESULTS) as f:
      previous = json.load(f)
  with open(RESULTS + '.tmp', 'w') as f:
    missing = {n: reason for n, (reason, _) in NEEDS.items() if n not in supplied}
    json.dump(collect(names, seeds, runs, previous, missing), f, indent=1, sort_keys=True)
    f.write('\n')
  os.replace(RESULTS + '.tmp', RESULTS)
  print(f'wrote {os.path.relpath(RESULTS, ROOT)}; python tools/make_readmes.py writes the table')


if __name__ == '__main__':
  main()
