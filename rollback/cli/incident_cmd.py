"""``rollback incident list | show | note | close``."""

from __future__ import annotations

from typing import Any

import click

from rollback.cli.output import print_table, say
from rollback.cli.support import AppContext, common_options, emit, pass_app
from rollback.safetext import printable


@click.group()
def incident() -> None:
    """Read and close incidents (.rollback/incidents/*.jsonl): timeline, decision, runs, verifications."""


@incident.command("list")
@click.option("--all-envs", is_flag=True, help="Incidents of every environment, not only the selected one.")
@click.option("--open", "only_open", is_flag=True, help="Only open incidents.")
@common_options()
@pass_app
def list_command(app: AppContext, all_envs: bool, only_open: bool) -> None:
    """List incidents, newest first.

    \b
    Example:
      rollback incident list --open
    """
    from rollback.commands import incident as commands
    from rollback.model.decide import order_layers

    config = app.config()
    rows = commands.list_(config, all_envs=all_envs, include_closed=not only_open)

    def human() -> None:
        if not rows:
            scope = "all environments" if all_envs else f"env {config.env_name}"
            say(f"no open incidents ({scope}; {commands.directory(config)})" if only_open else
                f"no incidents ({scope}; {commands.directory(config)})")
            return
        print_table(["incident", "env", "status", "severity", "layers", "detected", "verified", "runs"],
                    [(r["id"], r["env"], r["status"] + (" (drill)" if r["drill"] else ""), r["severity"],
                      ",".join(n for n in order_layers(r["layers"]) if n not in ("core", "verify")), r["detected"],
                      r["verified"], r["runs"]) for r in rows])

    emit(app, {"dir": str(commands.directory(config)), "incidents": rows}, human)


def _show(record: dict[str, Any]) -> None:
    """The incident for people: the words and durations ``rollback run`` and the report use
    (``1 min 4 s``, ``met``), the reasons as sentences, the notes."""
    from rollback.model.decide import order_layers
    from rollback.model.report import metric_lines, metric_rows, reason_sentence, timeline_lines, timeline_rows

    out = click.echo
    drill = " (drill)" if record["drill"] else ""
    layers = ", ".join(n for n in order_layers(record["layers"]) if n not in ("core", "verify")) or "none recorded"
    out(printable(f"incident {record['id']}{drill}: env {record['env']}, {record['status']}, severity "
                  f"{record['severity'] or 'not given'}, layers {layers}"))
    if record["command"]:
        out(f"command: {printable(record['command'])}")
    if record["reasons"]:
        out("reasons:")
        for reason in record["reasons"]:
            severity = f"{reason.get('severity')}  " if reason.get("severity") else ""
            out(printable(f"  {severity}{reason_sentence(reason)}"))
    out("")
    out("timeline (UTC)")
    for line in timeline_lines(timeline_rows(record)):
        out(printable(line))
    out("")
    out("rollback metrics against the targets")
    for line in metric_lines(metric_rows(record)):
        out(printable(line))
    for page in record.get("needs_person") or []:
        command = page.get("command") or "(see the reasons)"
        out(printable(f"a person must act: {command} ({page.get('why')})"))
    if record["runs"]:
        out("")
        out("runs: " + ", ".join(record["runs"]))
    for document in record["verifications"]:
        if isinstance(document, dict):
            items = document.get("items", [])
            failed = sum(1 for i in items if i.get("status") == "fail")
            unmeasured = sum(1 for i in items if i.get("status") == "not measured")
            verdict = "passed" if document.get("ok") else "FAILED"
            out(f"verification at {document.get('checked_at')}: {verdict} ({len(items) - failed - unmeasured} passed, "
                f"{failed} failed, {unmeasured} not measured)")
    notes = [e for e in record.get("events") or [] if e.get("event") == "note" and e.get("message")]
    if notes:
        out("")
        out("notes")
        for note in notes:
            out(printable(f"  {_clock(note.get('ts'))}  {note.get('message')}"))
    closed = next((e for e in record.get("events") or [] if e.get("event") == "closed"), None)
    if closed is not None:
        out("")
        out(printable(f"closed at {_clock(closed.get('ts'))} by {closed.get('by') or 'someone'}: "
                      f"{closed.get('resolution') or '(no resolution given)'}"))


def _clock(stamp: Any) -> str:
    from rollback.model.report import parse_time

    moment = parse_time(stamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "?"


@incident.command("show")
@click.argument("incident_ref", metavar="[ID]", default="last")
@common_options()
@pass_app
def show_command(app: AppContext, incident_ref: str) -> None:
    """Show one incident (an id, a unique prefix, 'open' or 'last'): timeline, decision, metrics vs targets.

    \b
    Example:
      rollback incident show open --json
    """
    from rollback.commands import incident as commands

    record = commands.show(app.config(), incident_ref)
    emit(app, record, lambda: _show(record))


@incident.command("note")
@click.argument("message")
@click.option("--incident", "incident_ref", metavar="ID", default="open", show_default=True)
@common_options()
@pass_app
def note_command(app: AppContext, message: str, incident_ref: str) -> None:
    """Add a note to an incident's timeline.

    \b
    Example:
      rollback incident note "status page updated"
    """
    from rollback.commands import incident as commands

    record = commands.note(app.config(), incident_ref, message)
    emit(app, record, lambda: say(f"noted on {record['id']}", err=False))


@incident.command("close")
@click.argument("incident_ref", metavar="[ID]", default="open")
@click.option("--resolution", required=True, help="What resolved it (one line).")
@click.option("--by", metavar="NAME", help="Who closes it (default: your user name).")
@common_options()
@pass_app
def close_command(app: AppContext, incident_ref: str, resolution: str, by: str | None) -> None:
    """Close an incident (default: the environment's open one).

    \b
    Example:
      rollback incident close --resolution "rolled back app to dpl_123; fix in #482"
    """
    from rollback.commands import incident as commands
    from rollback.context import Services

    config = app.config()
    record = commands.close(config, incident_ref, resolution=resolution, by=by, services=Services(config))
    emit(app, record, lambda: _show(record))
