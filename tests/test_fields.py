"""tfganebm.fields: a setting declared once, written as a flag and read back from text."""

import dataclasses

import pytest

from tfganebm import cli
from tfganebm import fields
from tfganebm import sweeping
from tfganebm.sampler import SamplerConfig

# Every kind of sampler setting away from its default: an int, floats (one that str() would
# round), a bool that is off by default, two strings.
CELL = SamplerConfig(steps=7, step_size=1 / 3, noise=0.125, grad_clip=2.5, metropolis=True,
                     space='latent', proposal='prior', jump_prob=0.3, local_beta=0.7)


def test_best_cfg_lines_read_back_as_the_same_sampler(tmp_path):
  """The lines a sweep writes to best.cfg, read by the flags as `sample` reads them: the same
  sampler, exactly (a float written with str() rounding, or a bool as --name=value, fails)."""
  row = dataclasses.asdict(CELL)
  path = tmp_path / 'best.cfg'
  path.write_text('\n'.join(sweeping.best_flags(row)) + '\n')
  assert cli.read_flagfile(str(path)).sampler == CELL
  assert sweeping.best_flags(row)[4] == '--langevin_metropolis'
  assert sweeping.best_flags(dataclasses.asdict(SamplerConfig()))[4] == '--nolangevin_metropolis'


@pytest.mark.parametrize('name', SamplerConfig.names())
def test_each_sampler_setting_reads_back_from_its_text(name):
  field = SamplerConfig.field_of(name)
  value = getattr(CELL, name)
  text = fields.flag_line(name, field, value).split('=', 1)[-1]
  if fields.kind(field) == 'bool':
    text = 'true' if value else 'false'
  assert fields.parse_text(field, text) == value


def test_parse_text_refuses_text_of_another_kind():
  with pytest.raises(ValueError):
    fields.parse_text(SamplerConfig.field_of('steps'), '2.5')
  with pytest.raises(ValueError):
    fields.parse_text(SamplerConfig.field_of('metropolis'), 'yes')
  with pytest.raises(ValueError):
    fields.parse_text(SamplerConfig.field_of('step_size'), 'fast')


def test_a_compiled_chain_takes_the_tensor_settings_and_holds_the_others():
  """The chain cache's key: the settings not declared `tensor=True`; a new setting is in the
  key unless declared otherwise, so a chain is never reused with a stale constant."""
  assert set(SamplerConfig.graph_names()) == set(SamplerConfig.names()) - {
      'steps', 'step_size', 'noise', 'grad_clip'}
  assert CELL.ignored() == ('tune_steps',)  # no tuning asked: its length is not read
  assert SamplerConfig().ignored() == ('tune_steps', 'jump_prob', 'local_beta')
  assert SamplerConfig(target_accept=0.57).ignored() == ('jump_prob', 'local_beta')
