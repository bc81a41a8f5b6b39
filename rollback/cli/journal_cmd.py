"""``rollback journal list`` and ``rollback journal show``."""

from __future__ import annotations

import click

from rollback.cli.output import print_table, say
from rollback.cli.support import AppContext, common_options, emit, pass_app


@click.group()
def journal() -> None:
    """Read the run journals (.rollback/runs/*.jsonl)."""


@journal.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Newest N runs.")
@common_options()
@pass_app
def list_command(app: AppContext, limit: int) -> None:
    """List journaled runs, newest first.

    \b
    Example:
      rollback journal list --limit 5
    """
    from rollback.commands import journal as commands

    directory = app.journal_dir()
    skipped: list[str] = []
    runs = commands.list_(directory, limit=limit, skipped=skipped)
    for item in skipped:
        say(f"warning: skipped {item} (not a journal file)")

    def human() -> None:
        if not runs:
            say(f"no runs journaled in {directory}")
            return
        print_table(
            ["run", "status", "env", "command", "started", "last completed step", "failed step"],
            [(r["run"], r["status"], r["env"], r["command"], r["started_at"], r["last_completed_step"],
              r["failed_step"]) for r in runs],
        )

    emit(app, {"journal_dir": str(directory), "runs": runs, "skipped": skipped}, human)


@journal.command("show")
@click.argument("run")
@common_options()
@pass_app
def show_command(app: AppContext, run: str) -> None:
    """Show one run (an id, a unique prefix, or 'last'): every step and entry.

    \b
    Example:
      rollback journal show last
    """
    from rollback.commands import journal as commands

    record = commands.show(app.journal_dir(), run)

    def human() -> None:
        say(f"run {record['run']}: {record['status']} ({record['command']}, env {record['env']}, "
            f"by {record['who']}@{record['host']})", err=False)
        print_table(["step", "status", "description", "detail"],
                    [(s["id"], s["status"], s.get("description", ""), s.get("error") or s.get("resume") or "")
                     for s in record["steps"]])
        if record["status"] == "unfinished":
            last = record["last_completed_step"] or "none"
            say(f"the run ended without closing its journal (killed?); last completed step: {last}",
                err=False)
        if record["torn_lines"]:
            say(f"{record['torn_lines']} torn line(s) skipped (a write cut short by a crash)", err=False)

    emit(app, record, human)
