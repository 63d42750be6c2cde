"""``python -m deqfast``: the command-line interface (see :mod:`deqfast.cli`)."""

from __future__ import annotations

import sys

from deqfast.cli import main

if __name__ == "__main__":
    sys.exit(main())
