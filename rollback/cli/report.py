"""``rollback report``: the incident report (Markdown, HTML, JSON), the email and the banner."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rollback.cli.output import say
from rollback.cli.support import AppContext, common_options, pass_app
from rollback.errors import BadInput
from rollback.safetext import dumps

if TYPE_CHECKING:
    from rollback.config import Config


def _config_or_none(app: AppContext) -> Config | None:
    """The config, or ``None`` when there is no file at all (a report needs only the journals)."""
    from rollback.config import find_config_file

    if app.config_path or os.environ.get("ROLLBACK_CONFIG") or find_config_file() is not None:
        return app.config()
    return None


@click.command("report")
@click.argument("incident", required=False)
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default=None,
              help="Markdown (default), JSON, or one self-contained HTML page.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write to FILE instead of stdout.")
@click.option("--email", "as_email", is_flag=True, help="Render the '[RESOLVED]' email for users instead.")
@click.option("--banner", "feature", metavar="FEATURE", help="Render the in-app banner about FEATURE instead.")
@common_options()
@pass_app
def report(app: AppContext, incident: str | None, fmt: str | None, out: Path | None, as_email: bool,
           feature: str | None) -> None:
    """Write the incident report: summary, timeline, every action with its result,
    verification, data loss and the metrics against the targets.

    INCIDENT is an incident id, a unique prefix of one, or 'last' (default: the
    newest incident of the environment). Root cause, prevention and lessons
    are left as headed blanks for people. Templates can be overridden in
    .rollback/templates/ beside rollback.toml (or templates_dir).

    \b
    Examples:
      rollback report > incident.md
      rollback report INC-20261128T094500Z-production --format html --out incident.html
      rollback report --email
      rollback report --banner "the integrations page"
    """
    from rollback.commands import report as commands
    from rollback.templating import Templates

    if app.json:
        if fmt not in (None, "json"):
            raise BadInput(f"--json and --format {fmt} disagree", "pass one of them")
        fmt = "json"
    fmt = fmt or "md"
    if as_email and feature is not None:
        raise BadInput("--email and --banner exclude each other", "render one, then the other")
    if (as_email or feature is not None) and fmt == "html":
        raise BadInput("the email and the banner are plain text", "use --format md (text) or --format json")
    config = _config_or_none(app)
    journal_dir = config.journal_dir if config is not None else app.journal_dir()
    env = config.env_name if config is not None else (app.env_name or os.environ.get("ROLLBACK_ENV"))
    templates = Templates.for_config(config)
    from rollback.context import Services

    data = commands.build(Services(config) if config is not None else None, journal_dir, incident, env=env,
                          measure=not (as_email or feature is not None))
    if as_email:
        message = commands.email(data, templates)
        text = (dumps(message) + "\n" if fmt == "json"
                else f"Subject: {message['subject']}\n\n{message['body']}")
    elif feature is not None:
        body = commands.banner(data, feature, templates)
        text = dumps({"banner": body}) + "\n" if fmt == "json" else body
    else:
        text = commands.render(data, fmt, templates)
    if data.get("drill"):
        say(f"note: {data['incident']} was a drill; the output is marked as such")
    if out is not None:
        written = commands.write_output(text, out)
        say(f"wrote {written}")
    else:
        click.echo(text, nl=not text.endswith("\n"))
