"""``python -m rollback``."""

from __future__ import annotations

import sys

from rollback.cli import main

if __name__ == "__main__":
    sys.exit(main())
