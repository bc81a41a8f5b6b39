"""``rollback db guard -- COMMAND``: pair a migration with the backup that protects it.

For CI and deploy scripts (``rollback db guard -- npx prisma migrate deploy``): take a
verified backup (``--stage``: and stage it; ``--snapshot``: an RDS snapshot instead),
read ``_prisma_migrations``, run the command, read it again, and record which
migrations the command applied (or left failed) in the backup's manifest and in the
journal. ``rollback db restore --before-migration NAME`` later picks exactly the
backup taken before NAME. The command's exit status is passed through; when it
fails, the output names the backup to restore.

The command inherits the terminal. Ctrl-C reaches it as it reaches us (same process
group): we wait for it to end and still record what it applied; a second Ctrl-C
sends it SIGTERM, a third SIGKILL. SIGTERM and SIGHUP sent to rollback are passed on
to it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rollback.actions import action
from rollback.adapters.postgres import db_errors
from rollback.adapters.prisma import PrismaMigrations
from rollback.adapters.rds import resolve_instance
from rollback.backups import disk_errors, write_manifest
from rollback.commands.db.backup import plan_backup
from rollback.commands.db.common import DbSteps
from rollback.config import Config
from rollback.context import Services
from rollback.errors import BadInput, CommandFailed
from rollback.interrupts import handling
from rollback.plan import Plan, Step
from rollback.redact import redact_text
from rollback.runner import Check, StepContext

__all__ = ["GUARD_KEY", "GuardSteps", "backups_before_migration", "plan_guard", "record_in_manifest", "restore_hint"]

GUARD_KEY = "guard"


def plan_guard(config: Config, command: Sequence[str], *, snapshot: bool = False, stage: bool = False,
               instance: str | None = None, jobs: int | None = None, services: Services) -> Plan:
    """Backup (or snapshot), migrations before, the command, migrations after (recorded)."""
    if not command:
        raise BadInput("no command to guard", "rollback db guard -- npx prisma migrate deploy")
    if shutil.which(command[0]) is None:
        raise BadInput(f"cannot run {command[0]!r}: not found (or not executable)",
                       "give the command after '--' as you would run it; nothing was done")
    if snapshot and stage:
        raise BadInput("--snapshot and --stage exclude each other", "--stage stages a logical backup")
    shown = redact_text(" ".join(command))
    if snapshot:
        name = resolve_instance(config, instance)
        snapshot_id = f"{name}-guard-{dt.datetime.now(dt.UTC).strftime('%Y%m%d-%H%M%S')}"
        steps = [Step("snapshot", "rds.create_snapshot", f"create manual snapshot {snapshot_id} of {name} and wait "
                      "until it is available", target=f"rds {name}",
                      params={"instance": name, "snapshot": snapshot_id, "wait": True})]
    else:
        steps = list(plan_backup(config, jobs=jobs, stage=stage, kind="guard", services=services).steps)
    steps += [
        Step("migrations-before", "db.guard_migrations", "read _prisma_migrations before the command"),
        Step("command", "db.guard_run", f"run: {shown}", params={"command": list(command)}),
        Step("record", "db.guard_record", "read _prisma_migrations again; record what the command applied in the "
             + ("journal" if snapshot else "backup's manifest and the journal"),
             params={"backup_step": "snapshot" if snapshot else "backup"}),
        Step("outcome", "db.guard_outcome", "the command's exit status is the run's"),
    ]
    return Plan.of(f"db guard -- {shown}", config.env_name, steps)


def _migrations(handlers: DbSteps) -> list[dict[str, Any]]:
    with handlers.db.connect() as conn, db_errors("reading _prisma_migrations"):
        return [{"id": m.id, "name": m.name, "status": m.status} for m in PrismaMigrations(conn).all()]


def migrations_step(handlers: DbSteps, step: Step, ctx: StepContext) -> dict[str, Any]:
    return {"migrations": _migrations(handlers)}


@contextlib.contextmanager
def _forwarding(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """SIGTERM/SIGHUP to us go on to the command (main thread only; even when ignored here, as always)."""

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    with handling(forward, ("SIGTERM", "SIGHUP"), keep_ignored=False):
        yield


def run_step(handlers: DbSteps, step: Step, ctx: StepContext) -> dict[str, Any]:
    """Run the command; its exit status is the result (a failing command is not a failing step)."""
    command = [str(c) for c in step.params["command"]]
    started = time.monotonic()
    # With --json our stdout carries one JSON document: the command's output goes to stderr.
    stdout = 2 if handlers.guard_stdout_to_stderr else None  # file descriptor 2: our stderr
    proc = subprocess.Popen(command, stdout=stdout)
    interrupts = 0
    with _forwarding(proc):
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # the command got the same Ctrl-C: let it finish, then record
                interrupts += 1
                with contextlib.suppress(ProcessLookupError):
                    if interrupts == 2:
                        proc.send_signal(signal.SIGTERM)
                    elif interrupts >= 3:
                        proc.kill()
    ctx.note(f"the guarded command exited with {code}", exit_code=code)
    return {"exit_code": code, "seconds": round(time.monotonic() - started, 3), "interrupted": interrupts > 0}


def record_step(handlers: DbSteps, step: Step, ctx: StepContext) -> dict[str, Any]:
    """Migrations after vs before; written into the backup's manifest (a logical backup)."""
    earlier = ctx.results.get(step.sibling("migrations-before"), {})
    before = {m["id"]: m["status"] for m in earlier.get("migrations", [])}
    after = _migrations(handlers)
    applied = [m["name"] for m in after if m["status"] == "applied" and before.get(m["id"]) != "applied"]
    failed = [m["name"] for m in after if m["status"] == "failed" and before.get(m["id"]) != "failed"]
    command = ctx.results.get(step.sibling("command"), {})
    taken = dict(ctx.results.get(step.sibling(str(step.params["backup_step"]))) or {})
    argv = ctx.plan.step(step.sibling("command")).params["command"]
    record = {"command": redact_text(" ".join(str(c) for c in argv)),
              "run": ctx.run_id,
              "exit_code": command.get("exit_code"), "applied": applied, "failed": failed,
              "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    out: dict[str, Any] = {**record, "backup": taken.get("name"), "snapshot": taken.get("id")}
    if taken.get("manifest_path"):
        record_in_manifest(Path(str(taken["manifest_path"])), record)
        out["manifest_path"] = taken["manifest_path"]
    ctx.note("migrations applied by the guarded command: " + (", ".join(applied) or "none")
             + (f"; failed: {', '.join(failed)}" if failed else ""), applied=applied, failed=failed)
    return out


def record_in_manifest(path: Path, record: Mapping[str, Any]) -> None:
    """Add the guard record to a manifest (atomically: a temporary file, then a rename)."""
    with disk_errors(path.parent):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest[GUARD_KEY] = dict(record)
        write_manifest(path, manifest)


def backups_before_migration(backups: Sequence[Mapping[str, Any]], migration: str) -> list[Mapping[str, Any]]:
    """Complete backups (newest first) whose guarded command applied or attempted ``migration``."""
    out = []
    for item in backups:
        guard = item.get(GUARD_KEY)
        if item.get("status") != "ok" or not isinstance(guard, Mapping):
            continue
        names = [*(guard.get("applied") or []), *(guard.get("failed") or [])]
        if migration in names:
            out.append(item)
    return out


def restore_hint(record: Mapping[str, Any]) -> str:
    """How to go back to before the guarded command."""
    backup = record.get("backup")
    if not backup:
        return f"rollback db rds-restore --snapshot {record.get('snapshot')} --target NEW_ID"
    hint = f"rollback db restore {backup} --swap"
    first = [*(record.get("applied") or []), *(record.get("failed") or [])]
    return hint + (f" (or: rollback db restore --before-migration {first[0]} --swap)" if first else "")


def outcome_step(handlers: DbSteps, step: Step, ctx: StepContext) -> Check:
    """A failing command fails the run with its own exit status, naming what to restore."""
    code = int((ctx.results.get(step.sibling("command")) or {}).get("exit_code") or 0)
    record = dict(ctx.results.get(step.sibling("record")) or {})
    if "would" in (ctx.results.get(step.sibling("command")) or {}):  # a dry run: nothing ran
        return Check(False, {}, "pass the command's exit status through")
    if code != 0:
        what = f"backup {record.get('backup')}" if record.get("backup") else f"snapshot {record.get('snapshot')}"
        raise CommandFailed(f"the guarded command failed (exit {code}); the {what} was taken just before it",
                            f"to go back to before it: {restore_hint(record)}", exit_code=code, record=record)
    return Check(False, {"exit_code": 0}, "the command succeeded")


class GuardSteps(DbSteps):
    """Step handlers of ``db guard``: migrations before, the command, the record, the outcome."""

    def check_guard_migrations(self, step: Step, ctx: StepContext) -> Check:
        if step.id in ctx.earlier:  # resumed: the state before the command is the one read then
            return Check(True, dict(ctx.earlier[step.id]), "read _prisma_migrations")
        return Check(False, migrations_step(self, step, ctx), "read _prisma_migrations")

    @action("db.guard_migrations", check="check_guard_migrations")
    def guard_migrations(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return dict(ctx.checked.result) if ctx.checked is not None else {}

    def check_guard_run(self, step: Step, ctx: StepContext) -> Check:
        would = f"run {redact_text(' '.join(str(c) for c in step.params['command']))}"
        earlier = ctx.earlier.get(step.id)
        # Resumed after the command ran: never run a migration twice.
        return Check(True, dict(earlier), would) if earlier is not None else Check(False, {}, would)

    @action("db.guard_run", check="check_guard_run")
    def guard_run(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return run_step(self, step, ctx)

    def check_guard_record(self, step: Step, ctx: StepContext) -> Check:
        would = "compare _prisma_migrations with its state before the command and record the difference"
        earlier = ctx.earlier.get(step.id)
        return Check(True, dict(earlier), would) if earlier is not None else Check(False, {}, would)

    @action("db.guard_record", check="check_guard_record")
    def guard_record(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return record_step(self, step, ctx)

    @action("db.guard_outcome", read_only=True)
    def guard_outcome(self, step: Step, ctx: StepContext) -> Check:
        return outcome_step(self, step, ctx)
