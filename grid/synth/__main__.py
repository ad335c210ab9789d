"""``python -m grid.synth``: see ``grid.synth.main``."""

import sys

from grid.synth import main

sys.exit(main())
