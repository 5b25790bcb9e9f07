"""Typed settings: dataclass fields that carry their help text and their checks.

The sections of `config.Config` and `sampler.SamplerConfig` declare each setting
once, with `setting(...)`. The absl flags (`cli.define_config_flags`), the
validation and `config.json` are all derived from these declarations, so a new
setting is one field.
"""

import dataclasses
import math
from typing import Optional

_KINDS = {bool: 'bool', int: 'int', float: 'float', Optional[float]: 'optional float',
          str: 'str', tuple[int, ...]: 'ints', tuple[float, ...]: 'floats'}
_TYPE_NAMES = {'bool': 'true or false', 'int': 'an integer', 'float': 'a number',
               'optional float': 'a number or null', 'str': 'a string',
               'ints': 'a list of integers', 'floats': 'a list of numbers'}


class ConfigError(ValueError):
  """A value a setting cannot take; the message names the flag(s) and the rule.

  `template` refers to the settings as {0}, {1}, ... so that a section's error can
  be renamed with the flag prefix of where the section sits (`prefixed`).
  """

  def __init__(self, template, names=()):
    self.template, self.names = template, tuple(names)
    super().__init__(template.format(*(f'--{name}' for name in self.names)) if names
                     else template)

  def prefixed(self, prefix):
    return ConfigError(self.template, [prefix + name for name in self.names])


def setting(default, help, *, low=None, above=None, high=None, below=None,  # pylint: disable=redefined-builtin
            choices=None, fixed=False, why='', check=None, empty=False, tensor=False):
  """A dataclass field with its help text and checks.

  Args:
    default: the value when not given.
    help: the flag's help text.
    low, high: inclusive bounds; above, below: exclusive ones.
    choices: the allowed values, or a function returning them (for registries).
    fixed: the checkpoint fixes it (variable shapes, the random stream, the data): a
      resume may not change it.
    why: appended to a bound's error message.
    check: for a list of numbers or a string, value -> None or the phrase that says what
      is wrong.
    empty: a list that may be empty (its automatic value); lists whose default is empty may.
    tensor: a sampler's setting that a compiled chain takes as a tensor, so one trace serves
      all its values; every other sampler setting shapes the chain's graph (a new one is in
      the compile cache's key by default).
  """
  return dataclasses.field(default=default, metadata=dict(
      help=help, low=low, above=above, high=high, below=below, choices=choices, fixed=fixed,
      why=why, check=check, empty=empty or default == (), tensor=tensor))


def kind(field):
  """'bool', 'int', 'float', 'optional float', 'str', 'ints' or 'floats' (tuples)."""
  return _KINDS[field.type]


def type_name(field):
  """'an integer', 'a list of numbers', ...: what a value of `field` must be."""
  return _TYPE_NAMES[kind(field)]


def choices(field):
  found = field.metadata.get('choices')
  return tuple(found() if callable(found) else found) if found else None


def _bounds_problem(meta, value):
  low, above, high, below = (meta[k] for k in ('low', 'above', 'high', 'below'))
  if low is not None and below is not None and not low <= value < below:
    return f'must be in [{low:g}, {below:g})'
  if low is not None and high is not None and not low <= value <= high:
    return f'must be in [{low:g}, {high:g}]'
  for bound, ok, sign in ((low, lambda b: value >= b, '>='), (above, lambda b: value > b, '>'),
                          (high, lambda b: value <= b, '<='), (below, lambda b: value < b, '<')):
    if bound is not None and not ok(bound):
      return f'must be {sign} {bound:g}'
  return None


def problem(field, value):
  """Why `value` cannot be the setting `field` (a phrase after its flag name), or None."""
  what = kind(field)
  if value is None:
    return None if what == 'optional float' else 'must be given'
  if not value and what in ('ints', 'floats') and field.metadata.get('empty'):
    return None  # empty: the setting's automatic value
  if what == 'ints':
    return (None if value and all(v > 0 for v in value)
            else 'must be a comma-separated list of positive integers')
  if what == 'floats':
    if not value or not all(math.isfinite(v) for v in value):
      return 'must be a comma-separated list of finite numbers'
    check = field.metadata.get('check')
    return check(value) if check else None
  if what in ('float', 'optional float') and not math.isfinite(value):
    return 'must be a finite number'
  if what == 'str' and field.metadata.get('check'):
    return field.metadata['check'](value)
  allowed = choices(field)
  if allowed is not None and value not in allowed:
    return f'must be one of {", ".join(map(str, allowed))}, not {value!r}'
  found = None if what in ('bool', 'str') else _bounds_problem(field.metadata, value)
  return found and (f'{found} ({field.metadata["why"]})' if field.metadata['why'] else found)


def coerce(field, value):
  """`value` (from JSON, a flag or a caller) as the field's type.

  Raises:
    ConfigError: a value of another type (a bool for an int, a string for a number...).
  """
  what = kind(field)
  fail = ConfigError('{0} ' + f'must be {_TYPE_NAMES[what]}, not {value!r}', [field.name])
  if value is None and what == 'optional float':
    return None
  if what == 'bool':
    if not isinstance(value, bool):
      raise fail
    return value
  if what == 'ints':
    if (not isinstance(value, (list, tuple)) or
        any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
      raise fail
    return tuple(value)
  if what == 'floats':
    if (not isinstance(value, (list, tuple)) or
        any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
      raise fail
    return tuple(float(v) for v in value)
  if what == 'str':
    if not isinstance(value, str):
      raise fail
    return value
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise fail
  if what == 'int':
    if isinstance(value, float) and not value.is_integer():
      raise fail
    return int(value)
  return float(value)


class Section:
  """Base of a settings dataclass: checks every field, then the section's `RELATIONS`.

  RELATIONS: (names, predicate(*values), template) triples; the template names the
  settings as {0}, {1}, ... in the order of `names`.
  """
  RELATIONS = ()

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if isinstance(getattr(self, field.name), Section):
        continue
      object.__setattr__(self, field.name, coerce(field, getattr(self, field.name)))
      found = problem(field, getattr(self, field.name))
      if found:
        raise ConfigError('{0} ' + found, [field.name])
    for names, predicate, template in self.RELATIONS:
      if not predicate(*(getattr(self, name) for name in names)):
        raise ConfigError(template, names)


def flag_line(name, field, value):
  """The flagfile line that sets `field` (named `name`) to `value`: `--name=value`, a bool
  as `--name` / `--noname`, a float exactly (repr)."""
  what = kind(field)
  if what == 'bool':
    return f'--{name}' if value else f'--no{name}'
  if what in ('ints', 'floats'):
    return f'--{name}={",".join(map(repr, value))}'
  return f'--{name}={value!r}' if what == 'float' else f'--{name}={value}'


def parse_text(field, text):
  """One value of `field` from its text (a flag's list item, a CSV cell).

  Raises:
    ValueError: text that is not such a value.
  """
  what = kind(field)
  if what == 'bool':
    lowered = text.strip().lower()
    if lowered not in ('true', 'false'):
      raise ValueError(f'{text!r} is not true or false')
    return lowered == 'true'
  if what == 'int':
    number = float(text)
    if number != int(number):
      raise ValueError(f'{text!r} is not an integer')
    return int(number)
  if what in ('float', 'optional float'):
    return float(text)
  if what == 'str':
    return text.strip()
  raise ValueError(f'a {what} setting is not read from one text')

