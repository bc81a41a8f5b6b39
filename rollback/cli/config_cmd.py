"""``rollback config check`` and ``rollback config init``."""

from __future__ import annotations

import click

from rollback.cli.output import print_table, say
from rollback.cli.support import AppContext, common_options, emit, pass_app


@click.group()
def config() -> None:
    """Write, validate and show the configuration (rollback.toml)."""


@config.command()
@common_options()
@pass_app
def check(app: AppContext) -> None:
    """Validate rollback.toml and print the resolved settings, secrets masked.

    \b
    Example:
      rollback config check --env staging
    """
    from rollback.commands import config as commands

    result = commands.check(app.config())

    def human() -> None:
        say(f"ok: {result['config_file']} is valid (env {result['env']})")
        rows: list[tuple[str, str]] = []

        def walk(prefix: str, value: object) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), item)
            else:
                rows.append((prefix, "(not set)" if value is None else str(value)))

        walk("", result["settings"])
        walk("http", result["http"])
        walk("secrets", result["secrets"])
        walk("endpoints", result["endpoints"])
        rows.append(("journal_dir", result["journal_dir"]))
        print_table(["setting", "value"], rows, title=f"environment {result['env']}")

    emit(app, result, human)


@config.command()
@click.option("--path", "path", type=click.Path(), default=".", show_default=True,
              help="File or directory to write rollback.toml to (a name ending in / is a directory, created "
                   "if missing).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, force: bool) -> None:
    """Write an annotated starter rollback.toml.

    \b
    Examples:
      rollback config init && $EDITOR rollback.toml
      rollback config init --path deploy/     # deploy/rollback.toml
    """
    from rollback.commands import config as commands

    target = commands.init(path, force=force)
    say(f"wrote {target}; edit it, then run 'rollback config check'")
