"""One self-contained HTML page of results, like a paper's results section.

  python -m tfganebm.report runs/moons runs/gan_moons runs/mnist ... --out results.html

Per dataset: a table of the real-data floor, the plain GAN, G and G + each
sampler measured (the run's final evaluation and every `tfganebm.sample` output
in a folder of the run), the quality-against-steps plots, the sweep heat maps
and best cells, the figures, and the exact command that made each run. Images
are embedded (base64 PNG): the page is one file to mail or archive. Reads only
JSON, CSV and PNG files the runs wrote; runs nothing.
"""

import os
import sys

from absl import flags

from tfganebm import cli

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('out', 'results.html', 'The HTML file to write.')
  flags.DEFINE_string('title', 'tfganebm results', 'The page title.')


def main(argv):
  paths = argv[1:]
  if not paths:
    sys.exit('error: name at least one workdir: python -m tfganebm.report W [W2 ...] '
             '--out page.html')
  if os.path.isdir(FLAGS.out):
    sys.exit(f'error: --out {FLAGS.out} is a directory; name the HTML file to write')
  from tfganebm import reporting  # pylint: disable=g-import-not-at-top
  try:
    runs = reporting.write(paths, FLAGS.out, FLAGS.title)
  except reporting.ReportError as e:
    sys.exit(f'error: {e}')
  print(f'wrote {FLAGS.out}: {len(runs)} runs')


def run_main():
  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_main()
