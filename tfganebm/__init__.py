"""tfganebm: a GAN trained jointly with an energy-based model, Langevin refinement, export.

The public API, imported lazily so that the command-line tools parse their flags
before TensorFlow loads:

  Config                      the typed, nested run configuration (tfganebm.config)
  SamplerConfig               the settings of a Langevin sampler (tfganebm.sampler)
  load_data                   a dataset's training and held-out data (tfganebm.data.load)
  GanEbm, build_model         the Keras model of Algorithm 3 and its builder (tfganebm.model)
  ReplayBuffer                the replay buffer of Algorithm 2 (tfganebm.replay)
  train                       a whole run in its workdir (tfganebm.training)
  load_run                    a trained workdir's model and config (tfganebm.runs)
  export_model                SavedModel + TFLite export (tfganebm.exporting.export)

The sampler of Algorithm 1 is `tfganebm.sampler.run` (over `tfganebm.langevin`).
"""

import importlib

_EXPORTS = {
    'Config': ('config', 'Config'),
    'SamplerConfig': ('sampler', 'SamplerConfig'),
    'load_data': ('data', 'load'),
    'GanEbm': ('model', 'GanEbm'),
    'build_model': ('model', 'build'),
    'ReplayBuffer': ('replay', 'ReplayBuffer'),
    'train': ('training', 'train'),
    'load_run': ('runs', 'load_run'),
    'export_model': ('exporting', 'export'),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module, attribute = _EXPORTS[name]
  return getattr(importlib.import_module(f'{__name__}.{module}'), attribute)
