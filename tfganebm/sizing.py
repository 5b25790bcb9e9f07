"""A run's config completed by its data: the example shape, a conditional run's number of
classes and the network widths left to the data, recorded in config.json with the run."""

from tfganebm import config as config_lib
from tfganebm import networks


def for_data(config, data_shape, num_classes=None):
  """`config` with the data's example shape (and, for a conditional run, its number of
  classes: `num_classes`, None when not known here) recorded and the network widths left
  empty (`--generator_units=` ...) set by `networks.scaled_units`, so that a workdir's
  config rebuilds the same networks.

  Raises:
    config.ConfigError: a recorded example shape that is not the data's; a conditional run
      on data without labels of two classes or more, or with another number of classes.
  """
  data_shape = tuple(int(d) for d in data_shape)
  recorded = config.data.example_shape
  if recorded and tuple(recorded) != data_shape:
    raise config_lib.ConfigError(f'--example_shape={",".join(map(str, recorded))} is not the '
                                 f'shape of the data, {data_shape}; leave it empty')
  config = config.override(example_shape=data_shape)
  if config.networks.conditional and num_classes is not None:
    if num_classes < 2:
      raise config_lib.ConfigError(f'--conditional needs labelled data of at least 2 classes; '
                                   f'{config.data.dataset} has {num_classes or "no labels"} '
                                   '(give class subfolders, an .npz with y, or a TFDS label)')
    recorded = config.networks.num_classes
    if recorded and recorded != num_classes:
      raise config_lib.ConfigError(f'--num_classes={recorded} but the data have {num_classes} '
                                   'classes; leave it 0')
    config = config.override(num_classes=num_classes)
  elif config.networks.conditional and not config.networks.num_classes:
    raise config_lib.ConfigError('a conditional run needs its --num_classes (set by training '
                                 'from the data)')
  names = dict(zip(('generator', 'discriminator', 'energy'), config.network_names()))
  units = {f'{role}_units': networks.scaled_units(names[role], role, data_shape)
           for role in names if not getattr(config.networks, f'{role}_units')}
  if 'dcgan' in names.values() and len(data_shape) == 3 and data_shape[0] % 2:
    raise config_lib.ConfigError(f'DCGAN networks upsample by 2: {data_shape[0]} px images do '
                                 'not halve; pass --image_size with an even size (e.g. '
                                 f'{data_shape[0] + 1})')
  return config.override(**units) if units else config
