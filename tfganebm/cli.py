"""What the command-line entry points share: one-line errors for bad flags, common flags."""

import errno
import functools
import os
import sys

from absl import app
from absl import flags


def define_config_flags(names=None, optional=False, required=(), flag_values=flags.FLAGS):
  """Defines an absl flag per setting of `config.Config`, from its field: type, default,
  help text, and a validator that gives the field's own one-line message.

  Args:
    names: the flag names to define (default: every setting, with the cross-section checks).
    optional: every flag defaults to None, meaning "the run's value" (commands that load
      a run and override some of its settings).
    required: flags without a default that must be given (e.g. 'workdir').
    flag_values: where to define them.
  """
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfganebm import fields  # pylint: disable=g-import-not-at-top

  defaults = config_lib.Config().flat()
  chosen = set(defaults if names is None else names)
  for name, section, field in config_lib.flag_fields():
    if name not in chosen:
      continue
    when = config_lib.section_of(section).metadata['when']
    help_text = field.metadata['help'][:-1] + f' {when}.' if when else field.metadata['help']
    if optional:
      help_text += " Default: the run's."
    default = None if optional or name in required else defaults[name]
    kind = fields.kind(field)
    args = dict(name=name, default=default, help=help_text, flag_values=flag_values)
    if kind == 'bool':
      flags.DEFINE_boolean(**args)
    elif kind == 'int':
      flags.DEFINE_integer(**args)
    elif kind in ('float', 'optional float'):
      flags.DEFINE_float(**args)
    elif kind in ('ints', 'floats'):
      flags.DEFINE_list(**{**args, 'default': None if default is None
                                      else [str(v) for v in default]})
    elif fields.choices(field) is not None:
      flags.DEFINE_enum(**args, enum_values=list(fields.choices(field)))
    else:
      flags.DEFINE_string(**args)
    flags.register_validator(name, functools.partial(_check_flag, field, name),
                             flag_values=flag_values)
    if name in required:
      flags.mark_flag_as_required(name, flag_values=flag_values)
  if names is None:
    for names_, predicate, template in config_lib.relations():
      flags.register_multi_flags_validator(
          list(names_), functools.partial(_check_relation, names_, predicate, template),
          flag_values=flag_values)


def flag_value(field, value):
  """An absl flag's value as the setting's type (a list flag's strings become a tuple of
  the field's numbers; `field` None: integers)."""
  from tfganebm import fields  # pylint: disable=g-import-not-at-top
  if isinstance(value, list):
    number = float if field is not None and fields.kind(field) == 'floats' else int
    return tuple(number(v) for v in value)
  return value


def _fields():
  """{flag name: field} of every setting."""
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  return {flag: field for flag, _, field in config_lib.flag_fields()}


def _check_flag(field, name, value):
  from tfganebm import fields  # pylint: disable=g-import-not-at-top
  if value is None and fields.kind(field) != 'optional float':
    return True  # optional flags: the run's value
  try:
    found = fields.problem(field, flag_value(field, value))
  except ValueError:
    found = f'must be {fields.type_name(field)}, not {",".join(value)}'
  if found:
    raise flags.ValidationError(f'--{name} {found}')
  return True


def _check_relation(names, predicate, template, values):
  try:
    by_name = _fields()
    ok = predicate(*(flag_value(by_name[name], values[name]) for name in names))
  except (TypeError, ValueError):
    return True  # a value a field's own validator refuses
  if not ok:
    raise flags.ValidationError(template.format(*(f'--{name}' for name in names)))
  return True


def config_from_flags(flag_values=flags.FLAGS):
  """The Config of the parsed flags of `define_config_flags()`."""
  from tfganebm import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.Config.from_flat(overrides(config_lib.Config().flat(), flag_values))


def overrides(names, flag_values=flags.FLAGS):
  """{flag name: value} of the optional config flags `names` that were given."""
  by_name = _fields()
  return {name: flag_value(by_name[name], flag_values[name].value) for name in names
          if flag_values[name].value is not None}


def read_flagfile(path):
  """The Config of a run's `flags.txt` (or any flagfile of config flags), parsed by absl
  with the flags' own types, as on the command line.

  Raises:
    ValueError: naming the file and what it cannot read.
  """
  flag_values = flags.FlagValues()
  define_config_flags(flag_values=flag_values)
  try:
    flag_values(['flags.txt', f'--flagfile={path}'], known_only=False)
  except flags.Error as e:
    raise ValueError(f'cannot read {path}: {str(e).removeprefix("ERROR:: ")}; it is not a '
                     'flags.txt written by tfganebm.train') from None
  return config_from_flags(flag_values)


def _flagfile_argument(arg):
  """The file named by `--flagfile=F` or `-flagfile=F` (as absl reads it), else None."""
  for prefix in ('--flagfile=', '-flagfile='):
    if arg.startswith(prefix):
      return os.path.expanduser(arg[len(prefix):].strip())
  return None


def _check_flagfile_includes(path, including):
  """Follows the `--flagfile=` lines of `path`; exits with one line on an include cycle.

  absl only warns about a cycle and drops the repeated file, so the run would
  start with flags the user never meant. Files are compared by their real
  path; one that cannot be opened is left to absl's own error.

  Args:
    path: the flagfile, as written (relative to the working directory, like absl).
    including: the real paths of the flagfiles that include `path`, outermost first.
  """
  real = os.path.realpath(path)
  if real in including:
    chain = ' -> '.join([*including[including.index(real):], real])
    sys.exit(f'error: flagfile {path} includes itself: {chain}')
  try:
    with open(path, 'rb') as f:
      lines = f.read().decode('utf-8').splitlines()
  except OSError:
    return
  except UnicodeDecodeError:
    sys.exit(f'error: flagfile {path} is not a text file (not UTF-8); a flagfile holds one '
             '--name=value per line')
  for line in lines:
    included = _flagfile_argument(line)
    if included:
      _check_flagfile_includes(included, [*including, real])


def _check_flagfiles(args):
  """Runs `_check_flagfile_includes` on each flagfile that `args` (no argv[0]) names."""
  args = iter(args)
  for arg in args:
    if arg == '--':
      break
    if arg in ('--flagfile', '-flagfile'):
      path = os.path.expanduser(next(args, ''))  # a missing value is absl's error
    else:
      path = _flagfile_argument(arg)
    if path:
      _check_flagfile_includes(path, [])


def _parse_flags(argv):
  _check_flagfiles(argv[1:])
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).removeprefix('ERROR:: ')
    hint = ' (see --helpfull)' if 'flagfile' not in message else ''
    sys.exit(f'error: {message}{hint}')


def run(main, stopper=None):
  """`absl.app.run(main)`, but a bad flag or flagfile ends with one line and exit code 1, and
  a stop signal or a full disk with one line too.

  A flagfile is bad when it cannot be opened or includes itself, directly or through
  others; the check runs before any of `main`. SIGTERM and SIGINT (from any shell) raise
  `signals.Stopped` where the command stands, unless `main` defers them through `stopper`
  (the trainer); the command then ends with `error: stopped by SIGTERM ...` and exit code
  128 + the signal number. Files are written to temporary names and renamed when complete,
  so a stop or a write error leaves no half-written file.
  """
  from tfganebm import signals  # pylint: disable=g-import-not-at-top
  # TensorFlow's C++ start-up chatter hides our one-line errors; users can still set it.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  stopper = (stopper or signals.Stopper()).install()

  def guarded(argv):
    try:
      return main(argv)
    except KeyboardInterrupt as e:  # signals.Stopped included
      signum = getattr(e, 'signum', signals.signal.SIGINT)
      print(f'error: stopped by {signals.name(signum)}; nothing half-written was left',
            file=sys.stderr)
      sys.exit(signals.exit_code(signum))
    except OSError as e:
      if e.errno not in WRITE_ERRORS:
        raise
      sys.exit(f'error: {write_error(e)}')

  app.run(guarded, flags_parser=_parse_flags)


# Errors of writing a file that the user fixes outside the program.
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


def write_error(e):
  """One line for an OSError of writing: what, where, and the fix."""
  where = f' {e.filename}' if e.filename else ''
  fix = ('free space on that disk' if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
         else 'fix its permissions or choose another folder')
  return f'cannot write{where}: {e.strerror or e}; {fix}, then run the command again'
