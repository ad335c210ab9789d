"""``python -m grid.cli``: the same as ``depth-grid``."""

import sys

from grid.cli import main

sys.exit(main())
