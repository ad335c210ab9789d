"""``python -m grid.synth``: the same as ``depth-grid synth``."""

import sys

from grid.cli import main

sys.exit(main(["synth", *sys.argv[1:]]))
