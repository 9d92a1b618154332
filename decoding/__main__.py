"""``python -m decoding``: the command line (`decoding.cli`)."""

import sys

from decoding.cli import main

if __name__ == "__main__":
    sys.exit(main())
