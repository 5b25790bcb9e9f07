"""Refines a generator the user already has with an energy, Langevin chains and the replay buffer.

  python -m tfganebm.refine --generator g.keras [--generator_range 0,1] --flagfile configs/moons.cfg --workdir runs/refine

Takes the flags of `tfganebm.train` (the flagfile's networks for D and E, its
optimisation, samplers and periods); G comes from --generator, a .keras file
(opened in Keras' safe mode) or a SavedModel directory, with z ~ N(0, I) of the
size its input says. By default G stays frozen and only E learns, from chains
started at G(z) and the replay buffer; --finetune_generator also trains D and G
(Algorithm 3) from the given weights. The workdir is a normal run: `sample`,
`export` and the device runner work on it, and the export holds the user's G.
"""


from absl import flags

from tfganebm import cli
# Not `from tfganebm import train`: the package's lazy `train` is the library function.
from tfganebm.train import STOPPER
from tfganebm.train import main as train_main


def define_flags():
  cli.define_config_flags(required=('workdir', 'generator'))
  flags.register_validator('generator', bool,
                           '--generator must name a .keras file or a SavedModel directory')


def run_main():
  define_flags()
  cli.run(train_main, STOPPER)


if __name__ == '__main__':
  run_main()
