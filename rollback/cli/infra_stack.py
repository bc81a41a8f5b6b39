"""Commands of `rollback infra` (see rollback/cli/infra.py)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
