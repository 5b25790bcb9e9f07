"""tfganebm.report: one self-contained results page, checked as HTML and in a real browser."""

import base64
import html.parser
import shutil
import subprocess

import pytest

from tests.conftest import run_module, tiny_config
from tfganebm import reporting
from tfganebm import sample
from tfganebm import sweeping
from tfganebm import training
from tfganebm import workdir as workdir_lib


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """A tiny GAN + EBM run with a quality curve and a sweep, and a tiny plain GAN."""
  root = tmp_path_factory.mktemp('report')
  ebm, gan = root / 'moons', root / 'gan_moons'
  training.train(tiny_config(ebm, train_steps=4))
  training.train(tiny_config(gan, train_steps=4, model='gan'))
  sample.sample_run(str(ebm), str(ebm / 'curve'), 64, overrides={'langevin_steps': 4},
                    steps_list=[0, 2, 4], baseline=str(gan))
  sweeping.run(str(ebm), str(ebm / 'sweep'), dict(steps=[0, 3], space=['data', 'latent']),
               num_samples=64)
  return ebm, gan


class _Page(html.parser.HTMLParser):
  """The page's tables (rows of cell texts) and image sources."""

  def __init__(self):
    super().__init__()
    self.tables, self.images, self.pre, self._cell, self._in_pre = [], [], [], None, False

  def handle_starttag(self, tag, attrs):
    if tag == 'table':
      self.tables.append([])
    elif tag == 'tr':
      self.tables[-1].append([])
    elif tag in ('td', 'th'):
      self._cell = ''
    elif tag == 'img':
      self.images.append(dict(attrs)['src'])
    elif tag == 'pre':
      self._in_pre = True
      self.pre.append('')

  def handle_endtag(self, tag):
    if tag in ('td', 'th'):
      self.tables[-1][-1].append(self._cell.strip())
      self._cell = None
    elif tag == 'pre':
      self._in_pre = False

  def handle_data(self, data):
    if self._cell is not None:
      self._cell += data
    if self._in_pre:
      self.pre[-1] += data


def test_report_page_holds_every_table_image_and_command(runs, tmp_path):
  ebm, gan = runs
  out = tmp_path / 'page.html'
  reporting.write([str(ebm), str(gan)], str(out))
  page = _Page()
  page.feed(out.read_text())
  labels = [row[0] for row in page.tables[0][1:]]
  assert labels[0] == 'held-out data (floor)' and labels[1] == 'plain GAN (gan_moons)'
  assert 'G alone (moons)' in labels
  assert any(label.startswith('G + 5 Langevin steps') for label in labels)  # final evaluation
  assert any(label.startswith('G + 4 Langevin steps') for label in labels)  # the curve folder
  curve = page.tables[1]
  assert [row[0] for row in curve[1:]] == ['0', '2', '4', 'plain GAN', 'held-out data (floor)']
  # Every image is an embedded PNG: the page is one file.
  expected = {'samples', 'langevin_progression', 'quality_vs_steps', 'sweep_sliced_wasserstein',
              'sweep_mmd2'}
  assert len(page.images) >= len(expected) + 2
  for src in page.images:
    assert src.startswith('data:image/png;base64,')
    assert base64.b64decode(src.split(',', 1)[1])[:4] == b'\x89PNG'
  # The command that made each run, which the flags parse back to its config.
  assert len(page.pre) == 2 and page.pre[1].startswith('python -m tfganebm.train')
  assert '--model=gan' in page.pre[1] and '--train_steps=4' in page.pre[1]
  config = workdir_lib.read_config(str(ebm))
  assert reporting.command(config) == page.pre[0]


def test_report_replaces_its_own_page_but_never_another_file(runs, tmp_path):
  ebm, _ = runs
  page = tmp_path / 'page.html'
  reporting.write([str(ebm)], str(page))
  reporting.write([str(ebm)], str(page))  # an earlier page of the report: replaced
  other = tmp_path / 'notes.html'
  other.write_text('<html>my notes</html>')
  with pytest.raises(reporting.ReportError, match='not a page written by tfganebm.report'):
    reporting.write([str(ebm)], str(other))
  assert other.read_text() == '<html>my notes</html>'


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path):
  result = run_module('tfganebm.report', str(tmp_path), f'--out={tmp_path}/page.html')
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith('error:')
  assert 'workdir' in result.stderr.strip().splitlines()[-1]
  assert not (tmp_path / 'page.html').exists()


CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


@pytest.mark.skipif(CHROMIUM is None, reason='no Chromium installed (apt-get install chromium)')
def test_report_page_renders_in_chromium_with_every_image_loaded(runs, tmp_path):
  ebm, gan = runs
  out = tmp_path / 'page.html'
  reporting.write([str(ebm), str(gan)], str(out))
  browser = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
             f'--user-data-dir={tmp_path / "profile"}']
  dom = subprocess.run(browser + ['--virtual-time-budget=10000', '--dump-dom', out.as_uri()],
                       capture_output=True, text=True, timeout=180, check=True).stdout
  page = _Page()
  page.feed(dom)
  # The page's own load handler counted the images the browser decoded.
  body = dom[dom.index('<body'):dom.index('>', dom.index('<body'))]
  total = int(body.split('data-images="')[1].split('"')[0])
  loaded = int(body.split('data-images-loaded="')[1].split('"')[0])
  assert total == len(page.images) > 0 and loaded == total
  assert all(len(table) > 1 for table in page.tables)  # every table has its rows
  screenshot = tmp_path / 'page.png'
  subprocess.run(browser + ['--window-size=1280,2000', f'--screenshot={screenshot}',
                            out.as_uri()], capture_output=True, timeout=180, check=True)
  assert screenshot.read_bytes()[:4] == b'\x89PNG' and screenshot.stat().st_size > 20000


def test_a_page_in_a_new_folder_is_written_and_an_unwritable_place_is_one_error(runs, tmp_path):
  ebm, _ = runs
  out = tmp_path / 'new' / 'folder' / 'page.html'
  reporting.write([str(ebm)], str(out))
  assert out.exists()
  blocker = tmp_path / 'file'
  blocker.write_text('mine')
  with pytest.raises(reporting.ReportError, match='cannot make the folder'):
    reporting.write([str(ebm)], str(blocker / 'page.html'))
  assert blocker.read_text() == 'mine'
