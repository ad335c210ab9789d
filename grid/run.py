"""``python -m grid.run``: the users' documented command, the same as ``depth-grid run``."""

import sys

from grid.experiment.run import main

if __name__ == "__main__":
    sys.exit(main())
