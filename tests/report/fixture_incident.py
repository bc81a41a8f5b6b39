"""A realistic incident on disk, in the exact shapes of CONTRACTS.md: the incident record
(Contract B, ``.rollback/incidents/<id>.jsonl``), the journals of its two runs (the first
stopped by a failed step, the second resumed it: "already done" steps, a database
restore beside the live one, then the swap), and verify documents (Contract C).

The journals are written by the real :class:`rollback.journal.Journal` on a fake clock,
so they are byte for byte what a run writes; the record is written line by line as the
incident module appends it.

The story (UTC, 2026-11-28): a bad deploy at 09:12:00; the 5xx alarm fires, detected at
09:15:30 (detect 3 min 30 s, met); decided at 09:17:00 (1 min 30 s, met); the app is
restored at 09:21:40 (roll back 4 min 40 s, met); the first verify fails, the second
passes at 09:33:00 (verify 11 min 20 s, missed); total 17 min 30 s, missed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DAY = "2026-11-28"
INCIDENT = "INC-20261128T091530Z-production"
RUN1 = "20261128T091705.000000Z-aaaaaa"
RUN2 = "20261128T092000.000000Z-bbbbbb"
DISTRIBUTION = "E2QWRUHAPOMQZL"
HOSTILE_DETAIL = "alarm app-5xx in ALARM <script>document.title='pwned'</script>"
HOSTILE_PATH = "[/api/pay](http://evil.example) | *bold* <img src=x onerror=alert(1)>"

TIMES = {
    "deployment_initiated": f"{DAY}T09:12:00.000Z",
    "detected": f"{DAY}T09:15:30.000Z",
    "decided": f"{DAY}T09:17:00.000Z",
    "initiated": f"{DAY}T09:17:06.000Z",
    "restored": f"{DAY}T09:21:40.000Z",
    "verified": f"{DAY}T09:33:00.000Z",
}
EXPECTED_METRICS = {"detect": 210.0, "decide": 90.0, "rollback": 280.0, "verify": 680.0, "total": 1050.0}


def at(clock: str) -> str:
    return f"{DAY}T{clock}.000Z"


def verify_document(ok: bool, checked_at: str) -> dict[str, Any]:
    """Contract C."""
    status = "pass" if ok else "fail"
    return {
        "ok": ok, "strict": False, "env": "production", "checked_at": checked_at, "seconds": 2.4,
        "items": [
            {"id": "health./api/health", "group": "Service health", "name": "health check /api/health",
             "status": status, "value": "200" if ok else "500", "threshold": "== 200", "detail": ""},
            {"id": "flows./api/pay", "group": "Critical flows", "name": "critical flow [/api/pay]",
             "status": status, "value": "201" if ok else "502", "threshold": "== 201", "detail": HOSTILE_PATH},
            {"id": "data.orphans", "group": "Data integrity", "name": "orphaned Integration rows",
             "status": "pass", "value": "0", "threshold": "== 0", "detail": "Integration.userId -> User.id"},
            {"id": "perf.p95", "group": "Performance", "name": "API p95 latency", "status": status,
             "value": "212 ms" if ok else "5300 ms", "threshold": "< 500 ms", "detail": ""},
            {"id": "monitoring.alarms", "group": "Monitoring", "name": "CloudWatch alarms",
             "status": "not measured", "value": "", "threshold": "all OK", "detail": "no alarms named"},
        ],
    }


REASONS = [
    {"signal": "5xx error rate", "value": 12.5, "threshold": 5, "unit": "%", "detail": HOSTILE_DETAIL},
    {"signal": "health /api/health", "value": 500, "threshold": 200, "unit": "", "detail": HOSTILE_PATH},
]


@dataclass
class FakeClock:
    now: str = at("00:00:00")

    def __call__(self) -> str:
        return self.now


def _steps() -> list[dict[str, Any]]:
    """Contract A's step dicts (``layer`` included), as ``step_planned`` journals them."""
    def step(sid: str, layer: str, action: str, summary: str, params: dict[str, Any] | None = None,
             destructive: bool = False, target: str = "") -> dict[str, Any]:
        return {"id": sid, "action": action, "target": target, "summary": summary, "description": summary,
                "params": params or {}, "destructive": destructive, "layer": layer}

    return [
        step("app.rollback", "app", "vercel.rollback", "production: dpl_bad123 -> dpl_good456 (instant rollback)",
             {"to": "dpl_good456"}, True),
        step("app.wait", "app", "vercel.wait_alias", "wait until app.example.com serves dpl_good456"),
        step("edge.associate", "edge", "edge.associate", "edge function sec-headers: version 7 -> 6",
             {"distribution": DISTRIBUTION, "to_version": 6}, True),
        step("db.verify-backup", "db", "db.verify_backup", "verify backup app-20261128T080000Z",
             {"manifest": "backups/app-20261128T080000Z.manifest.json",
              "dump_dir": "backups/app-20261128T080000Z"}),
        step("db.emergency-backup", "db", "db.backup", "emergency backup of the live database into backups",
             {"out": "backups", "jobs": 2, "kind": "emergency"}),
        step("db.restore", "db", "db.restore_beside", "restore app-20261128T080000Z into a new database",
             {"manifest": "backups/app-20261128T080000Z.manifest.json", "dump_dir": "backups/app-20261128T080000Z",
              "database": "app_restore_20261128T092200", "jobs": 2, "like": "app"}),
        step("db.check-counts", "db", "db.check_counts", "check row counts of app_restore_20261128T092200"),
        step("db.swap", "db", "db.swap", "swap: app -> app_replaced_20261128T092200 (kept), "
             "app_restore_20261128T092200 -> app", {"restored": "app_restore_20261128T092200",
                                                     "aside": "app_replaced_20261128T092200"}, True),
    ]


@dataclass
class IncidentFixture:
    root: Path
    config: Path
    journal_dir: Path
    incidents_dir: Path
    incident: str = INCIDENT
    runs: list[str] = field(default_factory=lambda: [RUN1, RUN2])


def write_journals(journal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rollback import journal as journal_module
    from rollback.journal import Journal

    clock = FakeClock()
    monkeypatch.setattr(journal_module, "utc_now", clock)
    steps = {s["id"]: s for s in _steps()}

    def open_run(run_id: str, started: str, **details: Any) -> Journal:
        clock.now = at(started)
        journal = Journal(journal_dir / f"{run_id}.jsonl", run_id)
        journal.write("run_started", who="oncall", host="laptop", pid=4242,
                      command="rollback run --layers app,edge,db --yes", env="production", dry_run=False, **details)
        journal.write("step_planned", title="rollback app, edge, db on production", steps=list(steps.values()),
                      notes=[])
        return journal

    def started(journal: Journal, sid: str, clock_at: str) -> None:
        clock.now = at(clock_at)
        journal.write("step_started", step=sid, description=steps[sid]["description"])

    def finished(journal: Journal, sid: str, clock_at: str, result: dict[str, Any], **extra: Any) -> None:
        clock.now = at(clock_at)
        journal.write("step_finished", step=sid, description=steps[sid]["description"], result=result,
                      dry_run=False, **extra)

    journal_dir.mkdir(parents=True, exist_ok=True)
    one = open_run(RUN1, "09:17:05")
    started(one, "app.rollback", "09:17:06")
    finished(one, "app.rollback", "09:17:09", {"deployment": "dpl_good456", "previous": "dpl_bad123"})
    started(one, "app.wait", "09:17:09")
    finished(one, "app.wait", "09:18:00", {"alias": "app.example.com", "serves": "dpl_good456"})
    started(one, "edge.associate", "09:18:00")
    clock.now = at("09:19:00")
    one.write("step_failed", step="edge.associate", description=steps["edge.associate"]["description"],
              error="distribution E2QWRUHAPOMQZL changed since the plan (ETag stale)", error_type="AwsError",
              resume="rollback resume " + RUN1)
    one.finish("failed", 1, stopped_at="edge.associate")

    two = open_run(RUN2, "09:20:00", resumes=RUN1)
    started(two, "app.rollback", "09:20:00")
    finished(two, "app.rollback", "09:20:01", {"deployment": "dpl_good456", "already_done": True},
             already_done=True)
    started(two, "app.wait", "09:20:01")
    finished(two, "app.wait", "09:20:02", {"alias": "app.example.com", "serves": "dpl_good456"}, already_done=True)
    started(two, "edge.associate", "09:20:02")
    finished(two, "edge.associate", "09:21:30", {"distribution": DISTRIBUTION, "version": 6, "etag": "E3NEW"})
    started(two, "db.verify-backup", "09:21:40")
    finished(two, "db.verify-backup", "09:21:45", {"toc_entries": 42, "checksums": "match"})
    started(two, "db.emergency-backup", "09:21:45")
    finished(two, "db.emergency-backup", "09:22:00",
             {"name": "app-20261128T092145Z-emergency", "total_bytes": 81234, "total_rows": 1312, "tables": 4,
              "manifest": {"name": "app-20261128T092145Z-emergency", "tables": []}})
    started(two, "db.restore", "09:22:00")
    finished(two, "db.restore", "09:24:30", {"database": "app_restore_20261128T092200", "seconds": 150.0})
    started(two, "db.check-counts", "09:24:30")
    finished(two, "db.check-counts", "09:24:32", {"database": "app_restore_20261128T092200", "tables": 4,
                                                  "rows": 1290, "match": True})
    started(two, "db.swap", "09:24:32")
    finished(two, "db.swap", "09:24:33", {"live": "app", "restored": "app_restore_20261128T092200",
                                          "set_aside": "app_replaced_20261128T092200", "downtime_seconds": 0.41,
                                          "terminated_sessions": 3})
    clock.now = at("09:24:33")
    two.finish("succeeded", 0, seconds=273.0)


def incident_events(*, drill: bool = False, env: str = "production", incident: str = INCIDENT,
                    deployment_known: bool = True, restored: bool = True) -> Iterator[dict[str, Any]]:
    """Contract B's events, in the order the incident module appends them."""
    def event(name: str, ts: str, **fields: Any) -> dict[str, Any]:
        return {"ts": ts, "incident": incident, "event": name, **fields}

    yield event("opened", TIMES["detected"], env=env, drill=drill, detected_at=TIMES["detected"],
                detected_from="alarm", deployment_initiated_at=TIMES["deployment_initiated"] if deployment_known
                else None, deployment={"id": "dpl_bad123", "url": "app-bad123.vercel.app"} if deployment_known
                else None)
    yield event("decided", TIMES["decided"], severity="P1", reasons=REASONS, layers=["app", "edge", "db"],
                options={"app": "vercel-instant-rollback", "edge": "edge-version", "db": "restore-swap"},
                command="rollback run --layers app,edge,db --yes", seconds=90.0)
    yield event("run_started", at("09:17:05"), run=RUN1, layers=["app", "edge", "db"],
                plan_title="rollback app, edge, db on production")
    yield event("initiated", TIMES["initiated"], run=RUN1)
    yield event("run_finished", at("09:19:00"), run=RUN1, status="failed", exit_code=1)
    yield event("note", at("09:19:30"), message="edge update raced a manual console change; resuming")
    yield event("run_started", at("09:20:00"), run=RUN2, layers=["app", "edge", "db"],
                plan_title="rollback app, edge, db on production")
    if restored:
        yield event("restored", TIMES["restored"], run=RUN2, layer="app",
                    health=[{"path": "/api/health", "status": 200}])
        yield event("run_finished", at("09:24:33"), run=RUN2, status="succeeded", exit_code=0)
        yield event("verified", at("09:26:00"), ok=False, strict=False, document=verify_document(False, at("09:26:00")))
        yield event("verified", TIMES["verified"], ok=True, strict=False, document=verify_document(True,
                                                                                                   TIMES["verified"]))


def write_incident(root: Path, monkeypatch: pytest.MonkeyPatch, *, drill: bool = False,
                   deployment_known: bool = True, restored: bool = True, config_extra: str = "") -> IncidentFixture:
    journal_dir = root / ".rollback" / "runs"
    incidents_dir = root / ".rollback" / "incidents"
    incidents_dir.mkdir(parents=True, exist_ok=True)
    write_journals(journal_dir, monkeypatch)
    lines = [json.dumps(e) for e in incident_events(drill=drill, deployment_known=deployment_known,
                                                    restored=restored)]
    (incidents_dir / f"{INCIDENT}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = root / "rollback.toml"
    config.write_text(
        'default_env = "production"\n\n[env.production.aws]\nregion = "eu-west-1"\n'
        f'distribution_id = "{DISTRIBUTION}"\nfrom_stack_outputs = false\n\n'
        "[env.production.targets]\ndetect = 5\ndecide = 2\nrollback = 10\nverify = 5\ntotal = 15\n"
        + config_extra, encoding="utf-8")
    return IncidentFixture(root, config, journal_dir, incidents_dir)


def older_incident(incidents_dir: Path, env: str) -> str:
    """Another, older incident of ``env`` (to check that the default is the newest of the env)."""
    incident = f"INC-20261101T080000Z-{env}"
    opened = {"ts": "2026-11-01T08:00:00.000Z", "incident": incident, "event": "opened", "env": env, "drill": False,
              "detected_at": "2026-11-01T08:00:00.000Z", "detected_from": "now",
              "deployment_initiated_at": None, "deployment": None}
    (incidents_dir / f"{incident}.jsonl").write_text(json.dumps(opened) + "\n", encoding="utf-8")
    return incident


def iso_seconds(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
