"""A CLI module that imports an extra's package at import time (used by test_missing_extras)."""

from __future__ import annotations

import click
import moto  # noqa: F401


@click.command("needs-moto")
def command() -> None:
    """Never runs: its module cannot be imported without moto."""
