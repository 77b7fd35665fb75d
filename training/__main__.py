"""``python -m training train|evaluate …``: the offline commands without the ``antiphon`` script."""

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
