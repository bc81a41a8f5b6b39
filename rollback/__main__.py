"""``python -m rollback``."""

from __future__ import annotations

from rollback.cli import run

if __name__ == "__main__":
    run()
