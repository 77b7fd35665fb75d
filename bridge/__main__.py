"""``python -m bridge [FLAGS]`` is ``antiphon bridge [FLAGS]``."""

import sys

from bridge.cli import main

if __name__ == "__main__":
    sys.exit(main(["bridge", *sys.argv[1:]]))
