"""The typed config: every setting written once, read back exactly, checked the same way
from flags, from config.json and from code; old workdirs (flags.txt only) still load."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

from absl import flags
import pytest

from tfganebm import cli
from tfganebm import config as config_lib
from tfganebm import fields
from tfganebm import runs
from tfganebm import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'workdir_v1')

# A value other than the default for each kind of field, to show it survives a round trip.
CHANGED = dict(dataset='mnist', download=False, num_examples=300, data_noise=0.07,
               energy_units=(7, 5), energy_spectral_norm=True, energy_fourier_scale=2.5,
               gd_updates=3, langevin_metropolis=True, train_langevin_noise=0.02, workdir='w',
               strategy='mirrored', cpu_replicas=2, generator_range=(0.0, 255.0))


def _kinds():
  return {fields.kind(field) for _, _, field in config_lib.flag_fields()}


def test_the_changed_values_cover_every_kind_of_field():
  kinds = {fields.kind(field) for name, _, field in config_lib.flag_fields() if name in CHANGED}
  assert kinds == _kinds() == {'bool', 'int', 'float', 'optional float', 'str', 'ints',
                               'floats'}


def test_config_json_round_trip_is_exact():
  config = config_lib.Config.from_flat(CHANGED)
  text = json.dumps(config.to_dict())
  back = config_lib.Config.from_dict(json.loads(text))
  assert back == config
  assert back.networks.energy_units == (7, 5) and back.data.data_noise == 0.07
  assert back.sampler.metropolis is True and back.train_sampler.metropolis is False


def test_flagfile_round_trip_is_exact(tmp_path):
  config = config_lib.Config.from_flat(CHANGED)
  path = tmp_path / 'flags.txt'
  path.write_text('# resumed at step 4 with --x=1 (was 2)\n' + config.to_flagfile())
  assert cli.read_flagfile(str(path)) == config


def test_flags_are_generated_from_the_fields_with_their_defaults_and_types():
  flag_values = flags.FlagValues()
  cli.define_config_flags(flag_values=flag_values)
  flag_values(['prog', '--langevin_steps=7', '--energy_units=3,4', '--nojit_compile',
               '--data_noise=0.5'])
  config = cli.config_from_flags(flag_values)
  assert config.sampler.steps == 7 and config.train_sampler.steps == 60
  assert config.networks.energy_units == (3, 4) and config.run.jit_compile is False
  assert config.data.data_noise == 0.5
  defaults = config_lib.Config()
  assert config == defaults.override(langevin_steps=7, energy_units=(3, 4), jit_compile=False,
                                     data_noise=0.5)
  assert 'after training' in flag_values['langevin_steps'].help
  assert 'in training' in flag_values['train_langevin_steps'].help


@pytest.mark.parametrize('changes, message', [
    (dict(energy_beta1=1.0), '--energy_beta1 must be in [0, 1)'),
    (dict(langevin_steps=-1), '--langevin_steps must be >= 0'),
    (dict(train_langevin_metropolis=True, train_langevin_noise=0.0),
     '--train_langevin_metropolis needs --train_langevin_step_size > 0'),
    (dict(buffer_capacity=16, batch_size=32), '--buffer_capacity must be at least --batch_size'),
    (dict(gd_updates=2, model='gan'), '--gd_updates > 1 needs --model=gan_ebm'),
    (dict(energy_units=(4, 0)), '--energy_units must be a comma-separated list'),
    (dict(alpha=float('nan')), '--alpha must be a finite number'),
    (dict(dataset='imagenet'), '--dataset must be one of'),
    (dict(latent_dim=2.5), '--latent_dim must be an integer'),
    (dict(jit_compile='yes'), '--jit_compile must be true or false'),
    (dict(langevin_stepz=3), 'unknown setting'),
    (dict(langevin_jump_prob=1.5), '--langevin_jump_prob must be in [0, 1]'),
    (dict(train_langevin_local_beta=0.0), '--train_langevin_local_beta must be > 0'),
])
def test_code_and_flags_refuse_the_same_values_with_the_same_message(changes, message):
  with pytest.raises(config_lib.ConfigError) as raised:
    config_lib.Config().override(**changes)
  assert str(raised.value).startswith(message)
  if {'latent_dim', 'jit_compile', 'dataset', 'langevin_stepz'} & set(changes):
    return  # absl's parser has its own words for a wrong type, an enum or an unknown flag
  flag_values = flags.FlagValues()
  cli.define_config_flags(flag_values=flag_values)
  argv = ['prog'] + [f'--{k}={",".join(map(str, v)) if isinstance(v, tuple) else v}'
                     for k, v in changes.items()]
  with pytest.raises(flags.IllegalFlagValueError, match=re.escape(message)):
    flag_values(argv)


def test_config_json_with_unknown_or_mistyped_settings_is_refused():
  good = config_lib.Config().to_dict()
  for bad, message in (({**good, 'extra': {}}, 'unknown section'),
                       ({**good, 'sampler': {**good['sampler'], 'stepz': 1}}, 'langevin_stepz'),
                       ({**good, 'train': {**good['train'], 'batch_size': '32'}},
                        '--batch_size must be an integer')):
    with pytest.raises(config_lib.ConfigError, match=message):
      config_lib.Config.from_dict(bad)


def test_a_config_json_missing_settings_takes_their_defaults():
  partial = {'sampler': {'steps': 9}, 'data': {'dataset': 'swissroll'}}
  config = config_lib.Config.from_dict(partial)
  assert config == config_lib.Config().override(langevin_steps=9, dataset='swissroll')


def test_fixed_settings_are_those_that_shape_the_checkpoint():
  fixed = set(config_lib.fixed_by_checkpoint())
  assert {'dataset', 'model', 'energy_units', 'buffer_capacity', 'seed', 'latent_dim'} <= fixed
  assert not fixed & {'langevin_steps', 'train_langevin_steps', 'gd_learning_rate',
                      'train_steps', 'workdir', 'strategy'}


def test_a_new_sampler_setting_is_one_field(monkeypatch):
  """The design's promise: a setting declared once in SamplerConfig becomes a flag of both
  samplers, a key of config.json and a check, with nothing else written."""

  @dataclasses.dataclass(frozen=True)
  class Tempered(config_lib.SamplerConfig):
    temperature: float = fields.setting(1.0, 'Temperature T of exp(-E / T).', above=0.0)

  def section(name, factory):  # the same section (flag prefix), made of the new type
    return dataclasses.field(default_factory=factory,
                             metadata=config_lib.section_of(name).metadata)

  @dataclasses.dataclass(frozen=True)
  class TemperedConfig(config_lib.Config):
    train_sampler: Tempered = section('train_sampler', Tempered)
    sampler: Tempered = section('sampler', lambda: Tempered(steps=1500))

  monkeypatch.setattr(config_lib, 'Config', TemperedConfig)

  flag_values = flags.FlagValues()
  cli.define_config_flags(flag_values=flag_values)
  flag_values(['prog', '--langevin_temperature=0.5'])
  config = cli.config_from_flags(flag_values)
  assert config.sampler.temperature == 0.5 and config.train_sampler.temperature == 1.0
  assert config.sampler.steps == 1500 and config.train_sampler.steps == 60
  assert TemperedConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
  with pytest.raises(flags.IllegalFlagValueError, match='--train_langevin_temperature must be > 0'):
    flag_values(['prog', '--train_langevin_temperature=0'])


def test_a_workdir_of_the_previous_version_loads_and_resumes(tmp_path):
  """tests/fixtures/workdir_v1: flags.txt (with a resume line) and ckpt-6, as written before
  config.json existed."""
  from tfganebm import training  # pylint: disable=g-import-not-at-top
  run = tmp_path / 'old'
  shutil.copytree(FIXTURE, run)
  assert not (run / 'config.json').exists()
  config = workdir_lib.read_config(str(run))
  assert config.data.data_noise == 0.07 and config.sampler.metropolis is True
  assert config.run.jit_compile is False and config.networks.energy_units == (8, 8)
  model, loaded = runs.load_run(str(run), {'langevin_steps': 2})
  assert int(model.step.numpy()) == 6 and loaded.sampler.steps == 2
  resumed = config.override(workdir=str(run), train_steps=8, eval_num_samples=32)
  result = training.train(resumed)
  assert result['step'] == 8
  # now from config.json, with the shape of the data recorded
  assert workdir_lib.read_config(str(run)) == resumed.override(example_shape=(2,))
  assert json.loads((run / 'config.json').read_text())['train']['train_steps'] == 8
  assert '# resumed at step 4' in (run / 'flags.txt').read_text()


def test_importing_any_module_defines_no_flag_and_changes_no_global_state():
  script = '''
import importlib, os, pkgutil
import tfganebm
names = sorted(m.name for m in pkgutil.iter_modules(tfganebm.__path__))
for name in names:
  importlib.import_module("tfganebm." + name)
from absl import flags
import keras, matplotlib
print("modules=%d" % len(names))
print("flags=%s" % [m for m in flags.FLAGS.flags_by_module_dict() if m.startswith("tfganebm")])
print("log_level=%s" % os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
print("backend=%s" % matplotlib.get_backend())
print("policy=%s" % keras.config.dtype_policy().name)
from tfganebm import config, model
model.build(config.Config().override(mixed_precision=True, energy_units=(4,)))
print("policy_after_mixed_build=%s" % keras.config.dtype_policy().name)
'''
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  env['MPLBACKEND'] = 'svg'  # a backend that a module's matplotlib.use() would replace
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = dict(line.split('=', 1) for line in result.stdout.splitlines() if '=' in line)
  assert int(lines['modules']) >= 20  # every module, entry points included
  assert lines['flags'] == '[]'
  assert lines['log_level'] == 'None'
  assert lines['backend'] == 'svg'
  assert lines['policy'] == lines['policy_after_mixed_build'] == 'float32'


def test_pack_and_gan_target_relations_name_their_flags():
  with pytest.raises(config_lib.ConfigError, match='--batch_size must be a multiple of '
                     '--discriminator_pack'):
    config_lib.Config.from_flat(dict(batch_size=130, discriminator_pack=4))
  with pytest.raises(config_lib.ConfigError, match='--gd_updates > 1 .* --gan_target=chains'):
    config_lib.Config.from_flat(dict(gd_updates=2, gan_target='data'))
  config_lib.Config.from_flat(dict(batch_size=128, discriminator_pack=4, gan_target='data'))
