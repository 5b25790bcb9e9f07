"""The generated pages match the files they describe; the README stays a user's document."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_configs_and_tools_readmes_are_generated_from_their_files():
  result = subprocess.run([sys.executable, os.path.join('tools', 'make_readmes.py'), '--check'],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(ROOT, 'configs', 'README.md')) as f:
    page = f.read()
  for name in os.listdir(os.path.join(ROOT, 'configs')):
    if name.endswith('.cfg'):
      assert f'## {name}' in page, name


def test_readme_is_at_most_300_lines():
  with open(os.path.join(ROOT, 'README.md')) as f:
    assert len(f.read().splitlines()) <= 300


def test_ci_runs_exactly_the_readme_test_command():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  with open(os.path.join(ROOT, '.ci', 'run')) as f:
    ci = [line for line in f.read().splitlines() if ' -m pytest' in line]
  assert len(ci) == 1 and f'```bash\n{ci[0]}\n```' in readme, ci
