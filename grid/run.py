"""``python -m grid.run``: the users' documented command, the same as ``depth-grid run``."""

import sys

from grid.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
