#!/usr/bin/env python3
"""On-device sampling from an exported tfganebm model: LiteRT interpreter and numpy only.

  python export/sample_litert.py DIR/model.tflite --num_samples 1000 --out OUT [--langevin_steps K --seed S]

Draws z ~ N(0, I), runs `generate`, then K Langevin steps with the `langevin_step`
signature (the loop runs here, as it would in an app), or with the fused `sample`
signature (--fused). A latent-space sampler (export.json's langevin.space, or
--langevin_space latent) moves z on E(G(z)) + |z|^2/2 with `latent_step` and then
runs `generate` (fused: `sample_latent`); with export.json's langevin.proposal `prior` (or
--langevin_proposal prior) each latent step is Metropolis-Hastings with a proposal that
keeps N(0, I): a fresh z' ~ N(0, I) with probability langevin.jump_prob, else the local
move z' = sqrt(1 - b^2) z + b eps, b = langevin.local_beta (`latent_prior_step`, fused
`sample_latent_prior`). Writes OUT/samples.npy (G + Langevin), OUT/samples_generator.npy
and, when matplotlib is installed, OUT/samples.png. Settings default to the
export.json beside the model. A conditional export (export.json's num_classes > 0) takes
--label N (every sample of class N) or draws the classes in turn, and writes OUT/labels.npy.
Needs: ai-edge-litert, numpy.
"""

import argparse
import json
import math
import os
import signal
import sys

import numpy as np


def _interpreter(path, threads=None):
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit('error: ai-edge-litert is not installed; pip install ai-edge-litert numpy')
  try:
    # LiteRT's CPU kernels (XNNPACK) use one thread unless told: a 64-sample batch then runs
    # at half the speed of TF on two cores.
    return Interpreter(model_path=path, num_threads=threads or _cores())
  except (ValueError, RuntimeError, OSError) as e:
    sys.exit(f'error: {path} is not a readable .tflite model ({_first_line(e)}); '
             'export one with python -m tfganebm.export')


def _cores():
  """The cores this process may run on (its affinity mask where the OS has one)."""
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0)) or 1
  return os.cpu_count() or 1


def _first_line(e):
  return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _is_count(value):
  return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _export_info_problem(info):
  """What export.json lacks for sampling, or None."""
  if not isinstance(info, dict):
    return 'is not a JSON object'
  if not _is_count(info.get('latent_dim')):
    return 'has no positive integer latent_dim'
  shape = info.get('data_shape')
  if not (isinstance(shape, list) and shape and all(_is_count(n) for n in shape)):
    return 'has no data_shape (a list of positive integers)'
  if not isinstance(info.get('langevin', {}), dict):
    return 'has a langevin entry that is not an object'
  return None


def _read_export_info(model_path):
  path = os.path.join(os.path.dirname(os.path.abspath(model_path)), 'export.json')
  if not os.path.isfile(path):
    sys.exit(f'error: {path} not found; keep export.json beside the .tflite file')
  try:
    with open(path, encoding='utf-8') as f:
      info = json.load(f)
  except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, not UTF-8
    sys.exit(f'error: {path} is not readable JSON ({_first_line(e)}); copy export.json again '
             'from the export, or re-export with python -m tfganebm.export')
  problem = _export_info_problem(info)
  if problem:
    sys.exit(f'error: {path} {problem}; copy export.json again from the export, or re-export '
             'with python -m tfganebm.export')
  return info


def _langevin_settings(args, info):
  """(steps, step_size, noise, metropolis): the flags, else export.json's defaults; checked."""
  defaults = info.get('langevin', {})
  values = {}
  for key, flag, kind in (('steps', '--langevin_steps', int),
                          ('step_size', '--langevin_step_size', float),
                          ('noise', '--langevin_noise', float)):
    given = getattr(args, f'langevin_{key}')
    value = defaults.get(key) if given is None else given
    source = flag if given is not None else f"export.json's langevin.{key}"
    numeric = (isinstance(value, int) if kind is int else isinstance(value, (int, float)))
    if value is None or isinstance(value, bool) or not numeric:
      sys.exit(f'error: export.json has no {"integer" if kind is int else "number"} '
               f'langevin.{key}; pass {flag}')
    if not math.isfinite(value) or value < 0:
      sys.exit(f'error: {source} is {value}; it must be a finite number >= 0'
               + ('' if given is not None else f': pass {flag}'))
    values[key] = value
  metropolis = defaults.get('metropolis', False) if args.metropolis is None else args.metropolis
  space = defaults.get('space', 'data') if args.langevin_space is None else args.langevin_space
  if space not in ('data', 'latent'):
    sys.exit(f"error: export.json's langevin.space is {space!r}, not data or latent; pass "
             '--langevin_space')
  if metropolis and values['steps'] and (values['step_size'] <= 0 or values['noise'] <= 0):
    sys.exit('error: MALA steps (--metropolis) need a step size and noise above 0 (got '
             f'{values["step_size"]} and {values["noise"]}); pass --langevin_step_size and '
             '--langevin_noise')
  return values['steps'], values['step_size'], values['noise'], bool(metropolis), space


# The signature each sampler uses: [space][metropolis][fused].
_SIGNATURES = {'data': {False: {False: 'langevin_step', True: 'sample'},
                        True: {False: 'metropolis_step', True: 'sample_metropolis'}},
               'latent': {False: {False: 'latent_step', True: 'sample_latent'},
                          True: {False: 'latent_metropolis_step', True: 'sample_latent_metropolis'}}}


def _proposal(args, info, space, step_size, noise):
  """The latent chain's proposal (langevin or prior) and the prior proposal's jump_prob and
  local_beta, from the flags or export.json; checked."""
  settings = info.get('langevin', {})
  proposal = args.langevin_proposal or settings.get('proposal', 'langevin')
  if proposal not in ('langevin', 'prior'):
    sys.exit(f"error: export.json's langevin.proposal is {proposal!r}, not langevin or prior; "
             'pass --langevin_proposal')
  if proposal == 'prior' and space != 'latent':
    sys.exit('error: --langevin_proposal prior proposes latents z ~ N(0, I): it needs '
             '--langevin_space latent')
  if proposal == 'prior' and (step_size <= 0 or noise <= 0):
    sys.exit('error: --langevin_proposal prior runs at temperature noise^2 / (2 step_size): it '
             f'needs both above 0 (got {step_size} and {noise}); pass --langevin_step_size and '
             '--langevin_noise')
  # (name, default, its range, the check): the prior proposal's mix, as SamplerConfig's.
  mix = [('jump_prob', 1.0, '[0, 1]', lambda v: 0 <= v <= 1),
         ('local_beta', 0.1, '(0, 1]', lambda v: 0 < v <= 1)]
  values = []
  for name, default, bounds, valid in mix:
    given = getattr(args, f'langevin_{name}')
    if proposal != 'prior':
      if given is not None:
        sys.exit(f'error: --langevin_{name} sets the prior proposal\'s moves; it needs '
                 '--langevin_proposal prior')
      values.append(default)
      continue
    value = settings.get(name, default) if given is None else given
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not valid(value):
      where = f"export.json's langevin.{name}" if given is None else f'--langevin_{name}'
      sys.exit(f'error: {where} is {value!r}; it must be in {bounds}: pass --langevin_{name}')
    values.append(float(value))
  return (proposal, *values)


def _signature_name(space, metropolis, fused, proposal='langevin'):
  if proposal == 'prior':
    return 'sample_latent_prior' if fused else 'latent_prior_step'
  return _SIGNATURES[space][metropolis][fused]


def _check_model(interpreter, info, model_path, steps, fused, metropolis, space='data',
                 proposal='langevin'):
  """Exits unless the .tflite has the signatures needed, shaped as its export.json says."""
  signatures = interpreter.get_signature_list()
  generate = signatures.get('generate')
  inputs = ['label', 'z'] if info.get('num_classes') else ['z']  # as the list sorts them
  if (not generate or sorted(generate.get('inputs', [])) != inputs
      or 'x' not in generate.get('outputs', [])):
    sys.exit(f'error: {model_path} has no generate({", ".join(reversed(inputs))}) -> x '
             f'signature, as its export.json says (it has '
             f'{", ".join(sorted(signatures)) or "none"}); pass a .tflite written by '
             'python -m tfganebm.export')
  runner = interpreter.get_signature_runner('generate')
  z_shape = [int(n) for n in runner.get_input_details()['z']['shape_signature']]
  x_shape = [int(n) for n in runner.get_output_details()['x']['shape_signature']]
  if z_shape[1:] != [info['latent_dim']] or x_shape[1:] != list(info['data_shape']):
    sys.exit(f'error: {model_path} maps z {z_shape[1:]} to x {x_shape[1:]}, but the export.json '
             f'beside it says latent_dim {info["latent_dim"]} and data_shape {info["data_shape"]}: '
             'the .tflite belongs to another export; keep each .tflite with its own export.json')
  if steps > 0 and 'langevin_step' in signatures:
    needed = _signature_name(space, metropolis, fused, proposal)
    if needed not in signatures:
      sys.exit(f'error: {model_path} has no {needed} signature, which these flags need; '
               're-export it with python -m tfganebm.export')


def _free_memory():
  """Bytes of memory free for this process (Linux's MemAvailable), or None where unknown."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (ValueError, OSError, AttributeError):
    return None


def _memory_needed(info, num_samples, steps, batch_size=256):
  """(bytes, what) of the largest arrays `sample` holds at once: both outputs (the batches
  and their concatenation), and one batch's noise for all steps (drawn in float64)."""
  dim = math.prod(info['data_shape'])
  outputs = 4 * 4 * num_samples * dim
  batch = min(batch_size, num_samples)
  chain = 12 * steps * batch * max(dim, info['latent_dim'])
  return outputs + chain, ('the samples' if outputs >= chain else
                           f'the noise of {steps} steps for a batch of {batch}')


def _check_memory(info, num_samples, steps):
  """Exits with one line when sampling would need more memory than is free."""
  need, what = _memory_needed(info, num_samples, steps)
  free = _free_memory()
  if free is not None and need > 0.8 * free:
    fix = ('fewer --num_samples (several runs with other --seed give more)'
           if what == 'the samples' else 'fewer --langevin_steps')
    sys.exit(f'error: sampling would need {need / 2**30:.1f} GiB of memory (mostly {what}) but '
             f'{free / 2**30:.1f} GiB are free; use {fix}')


def _non_finite(x):
  """How many samples of x [N, ...] hold a NaN or an infinity."""
  return int(np.sum(~np.all(np.isfinite(x.reshape(len(x), -1)), axis=1)))


def _save_atomically(path, write):
  """Calls write(partial_path), then renames the finished file to `path`."""
  partial = f'{path}.partial-{os.getpid()}'
  try:
    written = write(partial)
    if written is not False:
      os.replace(partial, path)
    return written
  finally:
    if os.path.exists(partial):
      os.remove(partial)


class _Labelled:
  """An interpreter whose signature runners all get `label` (a conditional export's class
  of each chain) with their other inputs."""

  def __init__(self, interpreter, labels):
    self.interpreter, self.labels = interpreter, labels

  def get_signature_list(self):
    return self.interpreter.get_signature_list()

  def get_signature_runner(self, name):
    runner = self.interpreter.get_signature_runner(name)
    return lambda **inputs: runner(label=self.labels, **inputs)


def labels_for(info, num_samples, label=None):
  """Each sample's class [num_samples] int32 for a conditional export (`label`, or the
  classes in turn), None for an unconditional one.

  Raises:
    ValueError: a label for an unconditional export, or one out of its classes.
  """
  classes = info.get('num_classes') or 0
  if not classes:
    if label is not None:
      raise ValueError('--label: this export is not conditional (export.json has no '
                       'num_classes); leave --label out')
    return None
  if label is None:
    return (np.arange(num_samples) % classes).astype(np.int32)
  if not 0 <= label < classes:
    raise ValueError(f'--label {label}: the export has classes 0..{classes - 1}')
  return np.full(num_samples, label, np.int32)


def sample(interpreter, info, num_samples, steps, step_size, noise, seed, fused=False,
           metropolis=False, batch_size=256, space='data', proposal='langevin', jump_prob=1.0,
           local_beta=0.1, labels=None):
  """(x_gen, x) numpy arrays [num_samples, *data_shape]: G samples and their refinement.

  metropolis: accept or reject each step (MALA signatures) instead of plain Langevin steps.
  space: 'latent' runs the chains on z (the latent_* signatures), then G.
  proposal: 'prior' (latent space): Metropolis-Hastings steps for N(0, I) exp(-E(G(z)) / T),
    T = noise^2 / (2 step_size); each proposes a fresh z ~ N(0, I) with probability
    `jump_prob`, else z' = sqrt(1 - b^2) z + b eps with b = `local_beta`.
  labels: a conditional export's class of each sample [num_samples] int32 (`labels_for`).
  """
  rng = np.random.default_rng(seed)
  shape = tuple(info['data_shape'])
  has_energy = 'langevin_step' in interpreter.get_signature_list()
  model = interpreter
  x_gen, x_out = [], []
  for start in range(0, num_samples, batch_size):
    batch = min(batch_size, num_samples - start)
    if labels is not None:
      interpreter = _Labelled(model, labels[start:start + batch])
    z = rng.standard_normal((batch, info['latent_dim'])).astype(np.float32)
    x = interpreter.get_signature_runner('generate')(z=z)['x']
    x_gen.append(x)
    if has_energy and steps > 0 and proposal == 'prior':
      x = _prior_chain(interpreter, z, rng, steps, noise**2 / (2 * step_size), fused,
                       jump_prob, local_beta)
    elif has_energy and steps > 0 and space == 'latent':
      x = _latent_chain(interpreter, z, rng, steps, step_size, noise, fused, metropolis)
    elif has_energy and steps > 0:
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


def _latent_chain(interpreter, z, rng, steps, step_size, noise, fused, metropolis):
  """x = G(z) after `steps` latent-space steps from z, the noise drawn here."""
  noises = (noise * rng.standard_normal((steps, *z.shape))).astype(np.float32)
  scalars = dict(step_size=np.float32(step_size))
  if metropolis:
    scalars['noise_std'] = np.float32(noise)
    uniforms = rng.uniform(size=(steps, len(z))).astype(np.float32)
  name = _SIGNATURES['latent'][metropolis][fused]
  runner = interpreter.get_signature_runner(name)
  if fused:
    extra = dict(uniform=uniforms) if metropolis else {}
    return runner(z=z, noise=noises, **extra, **scalars)['x']
  for k in range(steps):
    extra = dict(uniform=uniforms[k]) if metropolis else {}
    z = runner(z=z, noise=noises[k], **extra, **scalars)['z']
  return interpreter.get_signature_runner('generate')(z=z)['x']


def _prior_chain(interpreter, z, rng, steps, temperature, fused, jump_prob, local_beta):
  """x = G(z) after `steps` prior-proposal Metropolis-Hastings steps in z, noise drawn here:
  each chain jumps (beta 1) with probability `jump_prob` at each step, else moves locally."""
  noises = rng.standard_normal((steps, *z.shape)).astype(np.float32)
  uniforms = rng.uniform(size=(steps, len(z))).astype(np.float32)
  betas = np.where(rng.uniform(size=(steps, len(z))) < jump_prob, 1.0, local_beta)
  betas, temperature = betas.astype(np.float32), np.float32(temperature)
  if fused:
    return interpreter.get_signature_runner('sample_latent_prior')(
        z=z, noise=noises, uniform=uniforms, beta=betas, temperature=temperature)['x']
  step = interpreter.get_signature_runner('latent_prior_step')
  for k in range(steps):
    z = step(z=z, noise=noises[k], uniform=uniforms[k], beta=betas[k],
             temperature=temperature)['z']
  return interpreter.get_signature_runner('generate')(z=z)['x']


def _save_npy(path, array):
  with open(path, 'wb') as f:  # a file object: np.save would append .npy to the name
    np.save(f, array)


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
  fig.savefig(path, dpi=90, format='png')
  plt.close(fig)
  return True


def _stopped(signum, unused_frame):
  sys.stderr.write(f'error: stopped by {signal.Signals(signum).name}; nothing half-written was '
                   'left\n')
  sys.exit(128 + signum)


class _Parser(argparse.ArgumentParser):
  """Reports a bad command line as one `error:` line, like every other error here."""

  def error(self, message):
    sys.exit(f'error: {message}; see {self.prog} --help')


def main(argv=None):
  parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('model', help='model.tflite written by tfganebm.export')
  parser.add_argument('--num_samples', type=int, default=1000)
  parser.add_argument('--out', required=True)
  parser.add_argument('--langevin_steps', type=int, default=None)
  parser.add_argument('--langevin_step_size', type=float, default=None)
  parser.add_argument('--langevin_noise', type=float, default=None)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--fused', action='store_true', help='one call of the fused signature')
  parser.add_argument('--threads', type=int, default=None,
                      help="LiteRT's CPU threads (default: every core this process may use)")
  parser.add_argument('--metropolis', action=argparse.BooleanOptionalAction, default=None,
                      help='MALA steps (default: as the run was configured, see export.json)')
  parser.add_argument('--langevin_space', choices=('data', 'latent'), default=None,
                      help="where the chains run (default: export.json's langevin.space)")
  parser.add_argument('--langevin_proposal', choices=('langevin', 'prior'), default=None,
                      help="latent steps: langevin, or prior (Metropolis-Hastings with "
                      "proposals that keep N(0, I)); default: export.json's langevin.proposal")
  parser.add_argument('--langevin_jump_prob', type=float, default=None,
                      help="prior proposal: the chance of a fresh z per step (default: "
                      "export.json's langevin.jump_prob)")
  parser.add_argument('--langevin_local_beta', type=float, default=None,
                      help="prior proposal: b of the local moves z' = sqrt(1 - b^2) z + b eps "
                      "(default: export.json's langevin.local_beta)")
  parser.add_argument('--label', type=int, default=None,
                      help='A conditional export: draw class N (default: the classes in turn)')
  args = parser.parse_args(argv)
  if args.num_samples <= 0:
    parser.error(f'--num_samples must be positive (got {args.num_samples})')
  if args.threads is not None and args.threads <= 0:
    parser.error(f'--threads must be positive (got {args.threads})')
  if os.path.isdir(args.model):
    sys.exit(f'error: {args.model} is a directory; pass the .tflite file in it, e.g. '
             f'{os.path.join(args.model, "model.tflite")}')
  if not os.path.isfile(args.model):
    sys.exit(f'error: {args.model} not found')
  if os.path.lexists(args.out) and not os.path.isdir(args.out):
    sys.exit(f'error: --out {args.out} is an existing file; --out names a directory for '
             'samples.npy: choose another')
  info = _read_export_info(args.model)
  try:
    labels = labels_for(info, args.num_samples, args.label)
  except ValueError as e:
    sys.exit(f'error: {e}')
  steps, step_size, noise, metropolis, space = _langevin_settings(args, info)
  proposal, jump_prob, local_beta = _proposal(args, info, space, step_size, noise)
  _check_memory(info, args.num_samples, steps)
  interpreter = _interpreter(args.model, args.threads)
  _check_model(interpreter, info, args.model, steps, args.fused, metropolis, space, proposal)
  signal.signal(signal.SIGTERM, _stopped)
  signal.signal(signal.SIGINT, _stopped)
  try:
    x_gen, x = sample(interpreter, info, args.num_samples, steps, step_size, noise, args.seed,
                      args.fused, metropolis, space=space, proposal=proposal,
                      jump_prob=jump_prob, local_beta=local_beta, labels=labels)
  except (ValueError, RuntimeError) as e:
    sys.exit(f'error: LiteRT failed running {args.model} ({_first_line(e)}); re-export it with '
             'python -m tfganebm.export')
  if _non_finite(x_gen):
    sys.exit(f'error: G gave {_non_finite(x_gen)} of {len(x_gen)} samples that are non-finite '
             '(NaN or inf): check the export (re-export from a checkpoint with finite weights); '
             'nothing was written')
  if _non_finite(x):
    sys.exit(f'error: {_non_finite(x)} of {len(x)} samples are non-finite (NaN or inf) after '
             f'{steps} steps: check the export, or use fewer --langevin_steps or a smaller '
             '--langevin_step_size; nothing was written')
  try:
    os.makedirs(args.out, exist_ok=True)
    _save_atomically(os.path.join(args.out, 'samples.npy'), lambda path: _save_npy(path, x))
    _save_atomically(os.path.join(args.out, 'samples_generator.npy'),
                     lambda path: _save_npy(path, x_gen))
    if labels is not None:
      _save_atomically(os.path.join(args.out, 'labels.npy'), lambda path: _save_npy(path, labels))
    drew = _save_atomically(os.path.join(args.out, 'samples.png'),
                            lambda path: _picture(path, x_gen, x))
  except OSError as e:
    sys.exit(f'error: cannot write to --out {args.out} ({e.strerror or e}); choose a writable '
             'directory')
  where = ' in z' if space == 'latent' else ''
  kind = (('independence MH' if jump_prob >= 1 else 'prior MH') if proposal == 'prior'
          else 'MALA' if metropolis else 'Langevin')
  print(f'wrote {len(x)} samples ({steps} {kind} steps{where}) '
        f'to {args.out}'
        + (' with samples.png' if drew else ''))

if __name__ == '__main__':
  main()
