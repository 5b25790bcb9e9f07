"""The sampler's settings and its one entry point, for training and inference alike.

A run has two samplers of the same type: the training chains (flags
`--train_langevin_*`) and the sampler used after training (`--langevin_*`), whose
settings also travel with an export (`export.json`) to the device runner.
"""

import dataclasses

from tfganebm import fields
from tfganebm.fields import setting


@dataclasses.dataclass(frozen=True)
class SamplerConfig(fields.Section):
  """Short-run Langevin dynamics on E from G's samples (report, Algorithm 1)."""
  steps: int = setting(60, 'Langevin steps K (0: G alone).', low=0)
  step_size: float = setting(1e-3, 'Langevin step size eta.', low=0.0)
  noise: float = setting(0.0447, 'Langevin noise std sigma; sqrt(2 * eta) samples exp(-E).',
                         low=0.0)
  grad_clip: float = setting(0.0, 'Per-sample L2 clip of grad E (0: off).', low=0.0)
  metropolis: bool = setting(False, 'Metropolis-adjusted Langevin (MALA) steps.')

  RELATIONS = ((('metropolis', 'step_size', 'noise'),
                lambda metropolis, step_size, noise: not metropolis or min(step_size, noise) > 0,
                '{0} needs {1} > 0 and {2} > 0'),)

  def describe(self):
    """A short label, e.g. 'G + 60 Langevin steps (eta=0.001, sigma=0.0447)'."""
    return (f'G + {self.steps} {"MALA" if self.metropolis else "Langevin"} steps '
            f'(eta={self.step_size:g}, sigma={self.noise:g})')


def run(energy_fn, x_init, rng, sampler, record_every=0):
  """Refines chains `x_init` [B, ...] in [-1, 1] with `sampler` (a SamplerConfig) on
  `energy_fn` (x -> [B]); `rng` is a tf.random.Generator.

  Returns:
    x [B, ...]; with `record_every` > 0 also the states every `record_every` steps
    [steps // record_every + 1, B, ...], starting with x_init.
  """
  from tfganebm import langevin  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return langevin.langevin(energy_fn, x_init, rng, sampler.steps, sampler.step_size,
                           sampler.noise, sampler.grad_clip, record_every=record_every,
                           metropolis=sampler.metropolis)
