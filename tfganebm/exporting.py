"""A trained model's generator and energy as a SavedModel and TFLite files.

`export(model, config, data_shape, out)` writes OUT/saved_model/, OUT/model.tflite
(float32; plus model_<q>.tflite per quantization asked for) and OUT/export.json, with
the signatures of `tfganebm.signatures` in both formats.

The batch dimension is dynamic. Weights are frozen into the graphs as
constants, so the .tflite holds them and runs on a stock LiteRT runtime with
builtin ops only (no Flex delegate). The output directory appears whole or not
at all (`files.StagedReplace`), and replaces only an earlier export.
"""

import dataclasses
import json
import os
import shutil

from absl import logging

from tfganebm import files

# The SavedModel in the XNNPACK form that the .tflite files are converted from, inside the
# staging directory and removed before it is moved into place.
LITERT_SOURCE = 'saved_model_for_litert'


class ExportError(ValueError):
  """A run that cannot be exported, with the reason and the fix."""


def tflite_name(quantize):
  return 'model.tflite' if quantize == 'none' else f'model_{quantize}.tflite'


def _is_export(directory):
  """Whether `directory` has the export.json of a tfganebm export (a JSON object with
  `signatures` and `latent_dim`)."""
  try:
    with open(os.path.join(directory, 'export.json')) as f:
      info = json.load(f)
  except (OSError, ValueError):
    return False
  return isinstance(info, dict) and {'signatures', 'latent_dim'} <= info.keys()


def _written_by_export(directory, entry):
  """Whether `directory/entry` is a name an export writes (saved_model/, model*.tflite,
  export.json), as the kind of file it writes there."""
  path = os.path.join(directory, entry)
  if os.path.islink(path):
    return False
  if entry in ('saved_model', LITERT_SOURCE):
    return os.path.isdir(path)
  return os.path.isfile(path) and (
      entry == 'export.json' or (entry.startswith('model') and entry.endswith('.tflite')))


# Staging directories `.export-<name of out>-<pid>-<random>` beside --out.
_STAGED = files.StagedReplace('export', _is_export, _written_by_export)

_KEEP = 'nothing was written; choose another --out'
# Why --out is refused, by files.Refusal reason.
_REFUSALS = {
    'link': '--out {out} is a symbolic link; pass the directory it points to ({detail}) or '
            'another --out',
    'file': '--out {out} is an existing file, not an export directory; {keep}',
    'root_or_home': '--out {out} is the file system root or holds your home directory; {keep}',
    'current_directory': '--out {out} is the current directory or one of its parents; {keep}',
    'protected': '--out {out} holds the training run --workdir {detail}; {keep}',
    'unreadable': 'cannot read --out {out} ({detail}); choose another --out',
    'not_earlier': '--out {out} exists and is not an earlier export (it has no export.json of '
                   'tfganebm); --overwrite only replaces an export: {keep}',
    'foreign': '--out {out} holds files that an export does not write ({detail}); --overwrite '
               'only replaces saved_model/, model*.tflite and export.json: move them away or '
               'choose another --out',
    'exists': '{out} exists; pass --overwrite to replace it or choose another --out',
}


def _check_out(out, overwrite, workdir):
  """Raises ExportError unless writing `out` can replace nothing but an earlier export.

  Without `overwrite`, any existing `out` is refused; with it, only an earlier
  export (or an empty directory) that holds neither the run, the current
  directory nor the home directory.
  """
  refusal = _STAGED.refusal(out, overwrite, protected=(workdir,))
  if refusal is None:
    return
  detail, cause = refusal.detail, None
  if refusal.reason == 'foreign':
    detail = ', '.join(detail[:5]) + (', ...' if len(detail) > 5 else '')
  elif refusal.reason == 'unreadable':
    detail, cause = detail.strerror or detail, detail
  raise ExportError(_REFUSALS[refusal.reason].format(out=out, detail=detail, keep=_KEEP)) from cause


def _check_finite(model):
  """Raises ExportError when G or E (if any) has a NaN or infinite weight."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  for label, network in (('G', model.generator), ('E', model.energy)):
    if network is None:
      continue
    bad = [getattr(w, 'path', w.name) for w in network.weights
           if not np.all(np.isfinite(np.asarray(w.numpy())))]
    if bad:
      raise ExportError(f'{label} has non-finite weights (NaN or inf in {", ".join(bad[:3])}): '
                        'the run diverged; retrain with lower learning rates or resume from an '
                        'earlier checkpoint, then export')



def _clean_leftovers(out):
  """Removes what an interrupted export of `out` left beside it (`.export-*`, `.replaced-*`
  of dead processes), restoring an old export that such a kill had moved away."""
  try:
    _STAGED.clean_leftovers(out)
  except files.LeftoverError as e:
    raise ExportError(f'cannot clean up {e.path}, left by an interrupted export of {out}: '
                      f'{e.error.strerror or e.error}; move it away by hand') from e.error


def _signature_names(model, config):
  """The signatures this run exports, in the table's order.

  Raises:
    ExportError: E has batch norm; or the run samples with latent Langevin steps and
      G's input gradient has no builtin TFLite ops.
  """
  from tfganebm import signatures  # pylint: disable=g-import-not-at-top  (TensorFlow)
  if config.use_energy and config.networks.energy_batch_norm:
    raise ExportError('E has BatchNorm (--energy_batch_norm), whose input gradient needs the '
                      'Flex delegate; retrain without it to export')
  if not config.use_energy:
    return signatures.names(with_energy=False, with_latent_gradient=True)
  problem = signatures.latent_gradient_problem(model.generator)
  if config.networks.conditional:
    problem = 'a label input'
  if problem is not None:
    if config.sampler.space == 'latent' and config.sampler.proposal == 'langevin':
      raise ExportError(f'the latent sampler (--langevin_space=latent) cannot be exported for '
                        f'this G: it has {problem}, whose input gradient has no builtin TFLite '
                        'ops; export with --langevin_space=data')
    logging.warning('no latent-space signatures: G has %s (an MLP G of Dense, BatchNorm and '
                    'LeakyReLU layers has them)', problem)
  return signatures.names(with_energy=True, with_latent_gradient=problem is None)


def _traced(model, config, data_shape, names):
  """(frozen signatures for the SavedModel, those for LiteRT or None when the same)."""
  from tfganebm import signatures  # pylint: disable=g-import-not-at-top  (TensorFlow)
  from tfganebm import xnnpack_form  # pylint: disable=g-import-not-at-top  (TensorFlow)
  trace = lambda: signatures.frozen(model, data_shape, config.sampler.grad_clip, names)
  frozen = trace()
  # TensorFlow runs its own convolution kernels fastest; LiteRT gets the XNNPACK form.
  networks = [model.generator] + ([model.energy] if model.energy is not None else [])
  with xnnpack_form.convolutions(networks) as rewritten:
    return frozen, (trace() if rewritten else None)


def _save(frozen, path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.saved_model.save(tf.Module(), path, signatures=frozen,
                      options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))


def _convert(saved_model, names, quantize):
  """The .tflite bytes of the `names` signatures of `saved_model`, builtin ops only."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=list(names))
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantize != 'none':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  try:
    return converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    raise ExportError(f'TFLite conversion ({quantize}) failed: {str(e).splitlines()[0]}') from e


def _write_graphs(staging, frozen, frozen_for_litert, names, quantize, out):
  """Writes saved_model/ and the .tflite files into `staging`; returns {file name: bytes}."""
  from tfganebm import progress  # pylint: disable=g-import-not-at-top
  conversions = list(dict.fromkeys(['none', *quantize]))
  bar = progress.Progress(1 + len(conversions), f'export to {out}')
  saved_model = os.path.join(staging, 'saved_model')
  _save(frozen, saved_model)
  bar.update(1, 'SavedModel written')
  litert_source = saved_model
  if frozen_for_litert is not None:  # converted from, then removed
    litert_source = os.path.join(staging, LITERT_SOURCE)
    _save(frozen_for_litert, litert_source)
  sizes = {}
  for q in conversions:
    content = _convert(litert_source, names, q)
    with open(os.path.join(staging, tflite_name(q)), 'wb') as f:
      f.write(content)
    sizes[tflite_name(q)] = len(content)
    bar.update(1, f'{tflite_name(q)} converted')
  if litert_source != saved_model:
    shutil.rmtree(litert_source)
  bar.close()
  return sizes


_NOTES = ('batch dimension is dynamic; every noise input is already multiplied by sigma: '
          'x <- clip(x - step_size * grad E(x) + noise, -1, 1); the metropolis signatures '
          'also take uniform [0, 1) draws and sigma itself (noise_std) and accept or '
          'reject each proposal for exp(-E / T), T = noise_std^2 / (2 step_size); the '
          'latent prior signatures take standard normal noise and beta (1: a fresh z, < 1: '
          'z <- sqrt(1 - beta^2) z + beta noise) and accept on exp(-E(G(z)) / T)')


def _info(model, config, data_shape, names, sizes, step):
  """What export.json holds: the run, the shapes, the sampler's defaults, the signatures."""
  from tfganebm import signatures  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return dict(
      dataset=config.data.dataset, model=config.networks.model, step=step,
      **model.averaging(), latent_dim=config.networks.latent_dim,
      data_shape=list(data_shape), data_range=[-1.0, 1.0],
      num_classes=config.networks.num_classes if config.networks.conditional else 0,
      langevin=dataclasses.asdict(config.sampler),
      signatures=signatures.described(names, labelled=config.networks.conditional),
      notes=_NOTES, tflite_bytes=sizes)


def _staging(out):
  try:
    return _STAGED.make_staging(out)
  except OSError as e:
    raise ExportError(f'cannot create a directory beside --out {out}: {e.strerror or e}; '
                      'choose a writable place') from e


def export(model, config, data_shape, out, quantize=('none',), overwrite=False, step=None,
           workdir=None):
  """Writes saved_model/, the .tflite files and export.json into `out`, atomically.

  Before anything is written, removes what an interrupted export of `out` left
  beside it (`.export-*`, `.replaced-*` of dead processes), restoring an old
  export that such a kill had moved away.

  Args:
    model: the GanEbm to export; its G and E weights must be finite.
    config: the run's Config.
    data_shape: the shape of one example, e.g. (2,) or (28, 28, 1).
    out: the directory to create.
    quantize: extra TFLite files: any of 'none', 'float16', 'dynamic_range'.
    overwrite: replace `out` when it is an earlier export (or an empty directory).
    step: the training step, recorded in export.json.
    workdir: the run's directory; an `out` that holds it is refused.

  Returns:
    The dict written to export.json.

  Raises:
    ExportError: `out` exists without `overwrite`; `out` is a file, a link, a
      directory that is not an earlier export, or holds the workdir, the current
      directory or the home directory; G or E has non-finite weights; the model
      holds what the export cannot express with builtin TFLite ops; or writing failed.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  _clean_leftovers(out)
  _check_out(out, overwrite, workdir)
  _check_finite(model)
  names = _signature_names(model, config)
  frozen, frozen_for_litert = _traced(model, config, data_shape, names)
  staging = _staging(out)
  try:
    sizes = _write_graphs(staging, frozen, frozen_for_litert, names, quantize, out)
    info = _info(model, config, data_shape, names, sizes, step)
    with open(os.path.join(staging, 'export.json'), 'w') as f:
      json.dump(info, f, indent=2)
    _check_out(out, overwrite, workdir)  # again: `out` may have appeared during the export
    _STAGED.move_into_place(staging, out)
  except (OSError, tf.errors.OpError) as e:
    message = (getattr(e, 'strerror', None) or str(e)).splitlines()[0]
    raise ExportError(f'writing {out} failed: {message}; check the free space and permissions '
                      f'of {os.path.dirname(os.path.abspath(out))}') from e
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)
  return info


def preflight(run_dir, out, overwrite=False, overrides=None):
  """The checks of `export_run` that need no TensorFlow (the workdir's config and
  checkpoint files, --out), in its order: the command refuses a bad --workdir or --out
  before importing TensorFlow. `export_run` makes them all again.

  Raises:
    workdir.LoadError, ExportError.
  """
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  workdir.preflight(run_dir, overrides, out=out)
  _check_out(out, overwrite, run_dir)


def export_run(run_dir, out, quantize=('none',), overwrite=False, overrides=None):
  """What `python -m tfganebm.export` does: exports the trained run in `run_dir` (G and E,
  averaged as its config or `overrides` say) to `out`; see `export`.

  Raises:
    workdir.LoadError, ExportError: with nothing written.
  """
  from tfganebm import runs  # pylint: disable=g-import-not-at-top
  from tfganebm import workdir  # pylint: disable=g-import-not-at-top
  workdir.check_output(run_dir, out)
  model, config = runs.load_run(run_dir, overrides)
  return export(model, config, model.data_shape, out, quantize, overwrite,
                step=int(model.step.numpy()), workdir=run_dir)
