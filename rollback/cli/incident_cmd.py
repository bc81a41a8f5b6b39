"""``rollback incident list | show | note | close``."""

from __future__ import annotations

from typing import Any

import click

from rollback.cli.support import AppContext, common_options, emit, pass_app, print_table, printable, say


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

    config = app.config()
    rows = commands.list_(config, all_envs=all_envs, include_closed=not only_open)

    def human() -> None:
        if not rows:
            say(f"no incidents in {commands.directory(config)}")
            return
        print_table(["incident", "env", "status", "severity", "layers", "detected", "verified", "runs"],
                    [(r["id"], r["env"], r["status"] + (" (drill)" if r["drill"] else ""), r["severity"],
                      ",".join(r["layers"]), r["detected"], r["verified"], r["runs"]) for r in rows])

    emit(app, {"dir": str(commands.directory(config)), "incidents": rows}, human)


def _minutes(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds / 60:.1f} min"


def _show(record: dict[str, Any]) -> None:
    out = click.echo
    drill = " (drill)" if record["drill"] else ""
    out(f"incident {record['id']}{drill}: env {record['env']}, {record['status']}, severity "
        f"{record['severity'] or '-'}, layers {','.join(record['layers']) or '-'}")
    if record["command"]:
        out(f"command: {printable(record['command'])}")
    for reason in record["reasons"]:
        unit = f" {reason.get('unit')}" if reason.get("unit") else ""
        out(f"  reason: {printable(reason.get('signal'))} = {printable(reason.get('value'))}{unit} "
            f"(threshold {printable(reason.get('threshold'))}{unit if reason.get('unit') else ''})")
    timeline = record["timeline"]
    print_table(["moment", "at"], [(key.replace("_", " "), value or "-") for key, value in timeline.items()],
                title="timeline")
    metrics, targets = record["metrics"], record["targets"]
    rows = []
    for key in ("detect", "decide", "rollback", "verify", "total"):
        value = metrics[key]
        verdict = "-" if value is None else ("ok" if value <= targets[key] else "OVER")
        rows.append((key, _minutes(value), f"< {_minutes(targets[key])}", verdict))
    print_table(["metric", "took", "target", "verdict"], rows, title="recovery metrics")
    for page in record.get("needs_person") or []:
        command = printable(page.get("command") or "(see the reasons)")
        out(f"a person must act: {command} ({printable(page.get('why'))})")
    if record["runs"]:
        out("runs: " + ", ".join(record["runs"]))
    for document in record["verifications"]:
        if isinstance(document, dict):
            items = document.get("items", [])
            failed = sum(1 for i in items if i.get("status") == "fail")
            unmeasured = sum(1 for i in items if i.get("status") == "not measured")
            out(f"verification at {document.get('checked_at')}: {'ok' if document.get('ok') else 'FAILED'} "
                f"({len(items)} items, {failed} failed, {unmeasured} not measured)")


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

    record = commands.close(app.config(), incident_ref, resolution=resolution, by=by)
    emit(app, record, lambda: _show(record))
