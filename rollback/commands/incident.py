"""Incidents as verbs: open or attach, record, list, show, close.

The record itself (file format, read model) is :mod:`rollback.model.incident`; this
module wires it to the config: where the files live, which incident a command
attaches to, when detection happened, and the copy to the team's S3 prefix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.errors import BadInput, RollbackError
from rollback.lock import TeamLock
from rollback.model.incident import (
    IncidentLog,
    IncidentRecord,
    find_incident,
    incidents_dir,
    iso,
    list_incidents,
    open_incident_of,
    parse_ts,
    read_incident,
)
from rollback.units import parse_time

if TYPE_CHECKING:
    from rollback.adapters.cloudwatch import AlarmState
    from rollback.config import Config
    from rollback.context import Services
    from rollback.model.decide import Decision

__all__ = [
    "Detection",
    "attach",
    "close",
    "detect",
    "directory",
    "ensure",
    "list_",
    "note",
    "record_decision",
    "show",
    "superseded",
    "targets_seconds",
]


def directory(config: Config) -> Path:
    return incidents_dir(config.journal_dir)


def targets_seconds(config: Config) -> dict[str, float]:
    targets = config.env.targets
    return {"detect": targets.detect * 60, "decide": targets.decide * 60, "rollback": targets.rollback * 60,
            "verify": targets.verify * 60, "total": targets.total * 60}


class _Mirrored(IncidentLog):
    """An incident log whose file is copied to the team prefix after each event (best effort)."""

    def __init__(self, path: Path, config: Config) -> None:
        super().__init__(path)
        self.config = config
        self.mirror_error: str | None = None

    def _written(self) -> None:
        self.copy()

    def copy(self) -> None:
        lock = self.config.lock_settings
        if lock.url and self.mirror_error is None:
            try:
                TeamLock(lock.url, lock.ttl).copy("incidents", self.path)
            except (RollbackError, OSError) as exc:
                # The local record is the one that counts; say once that the team copy failed.
                self.mirror_error = exc.message if isinstance(exc, RollbackError) else str(exc)


def _log(config: Config, path: Path) -> IncidentLog:
    return _Mirrored(path, config)


@dataclass(frozen=True)
class Detection:
    at: dt.datetime
    source: str  # flag | alarm | now
    detail: str


def detect(flag: str | None, alarms: Sequence[AlarmState] | None, *, now: dt.datetime | None = None) -> Detection:
    """``detected_at``: ``--detected-at``, else the earliest state change of a rollback alarm now in ALARM, else now."""
    current = now or dt.datetime.now(dt.UTC)
    if flag:
        return Detection(parse_time(flag, option="--detected-at", now=current), "flag", f"--detected-at {flag}")
    firing = [a for a in alarms or () if a.state == "ALARM" and a.updated_at is not None]
    if firing:
        first = min(firing, key=lambda a: a.updated_at or current)
        assert first.updated_at is not None
        return Detection(first.updated_at.astimezone(dt.UTC), "alarm", f"alarm {first.name} in ALARM since then")
    return Detection(current, "now", "no --detected-at and no rollback alarm in ALARM")


def superseded(record: IncidentRecord, deployment_initiated_at: dt.datetime | None) -> str | None:
    """Why the open incident ``record`` is not the one of a bad deploy initiated at
    ``deployment_initiated_at``; ``None`` when it may well be. Once an incident is restored, a bad deploy
    that began after the restore, or after the deploy the incident was opened for, is a new incident
    (``rollback sandbox reset`` deploys the bad release again: a new deployment, started later)."""
    timeline = record.timeline()
    restored = parse_ts(timeline.get("restored"))
    if deployment_initiated_at is None or restored is None:
        return None
    own = parse_ts(timeline.get("deployment_initiated"))
    if deployment_initiated_at > restored:
        why = f"before this bad deploy began ({iso(deployment_initiated_at)})"
    elif own is not None and deployment_initiated_at > own:
        why = (f"and this bad deploy ({iso(deployment_initiated_at)}) is newer than the one it was opened for "
               f"({iso(own)})")
    else:
        return None
    return (f"the open incident {record.id} was restored at {iso(restored)}, {why}: a new incident is opened "
            f"(close {record.id} with 'rollback incident close {record.id} --resolution ...', or pass "
            f"--incident {record.id} to add to it)")


def attach(config: Config, ref: str | None = None, *,
           deployment_initiated_at: dt.datetime | None = None) -> IncidentLog | None:
    """The incident a command attaches to: ``--incident ID``, else the environment's open one, else None.

    The open one is not attached to when it was restored before ``deployment_initiated_at`` (the bad
    deploy this command acts on, when known): see :func:`superseded`."""
    folder = directory(config)
    if ref:
        record = find_incident(folder, ref, env=config.env_name)
        if record.env != config.env_name:
            raise BadInput(f"incident {record.id} belongs to env {record.env!r}, not {config.env_name!r}",
                           f"pass --env {record.env}, or another --incident")
        if record.status == "closed":
            raise BadInput(f"incident {record.id} is closed", "open a new one with 'rollback decide'")
        return _log(config, record.path)
    record_open = open_incident_of(folder, config.env_name)
    if record_open is None or superseded(record_open, deployment_initiated_at):
        return None
    return _log(config, record_open.path)


def last_restored(config: Config) -> dt.datetime | None:
    """When the environment's newest incident, open or closed, last restored service (its last ``restored``
    event), or None. A ``rollback verify`` run after the incident was closed (say, right after a drill)
    judges the CloudFront rates since then, not over minutes that still hold the bad deploy's."""
    newest = next(iter(list_incidents(directory(config), env=config.env_name)), None)
    if newest is None:
        return None
    restored = [e for e in newest.events if e.get("event") == "restored" and e.get("ts")]
    return parse_ts(restored[-1]["ts"]) if restored else None


def ensure(config: Config, ref: str | None, *, detection: Detection, drill: bool = False,
           deployment: dict[str, Any] | None = None,
           deployment_initiated_at: dt.datetime | None = None) -> tuple[IncidentLog, bool]:
    """Attach to the incident (see :func:`attach`) or open a new one. Returns ``(log, opened)``."""
    found = attach(config, ref, deployment_initiated_at=deployment_initiated_at)
    if found is not None:
        return found, False
    log = IncidentLog.create(
        directory(config), config.env_name, drill=drill, detected_at=iso(detection.at),
        detected_from=detection.source, detected_detail=detection.detail,
        deployment_initiated_at=iso(deployment_initiated_at) if deployment_initiated_at else None,
        deployment=deployment)
    mirrored = _Mirrored(log.path, config)
    mirrored.copy()  # the opened event was written before the mirror existed
    return mirrored, True


def record_decision(log: IncidentLog, decision: Decision, seconds: float, **extra: Any) -> dict[str, Any]:
    """The ``decided`` event (``extra``: who decided, e.g. ``by="watch"`` and the watch's readings)."""
    document = decision.to_dict()
    return log.must_write("decided", severity=decision.severity, reasons=document["reasons"],
                          layers=document["layers"], options=document["options"], command=decision.command,
                          seconds=round(seconds, 3), signals=document["signals"], **extra)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def list_(config: Config, *, all_envs: bool = False, include_closed: bool = True) -> list[dict[str, Any]]:
    records = list_incidents(directory(config), env=None if all_envs else config.env_name)
    return [r.summary() for r in records if include_closed or r.status == "open"]


def _find(config: Config, ref: str) -> IncidentRecord:
    return find_incident(directory(config), ref, env=config.env_name)


def show(config: Config, ref: str = "last") -> dict[str, Any]:
    return _find(config, ref).to_dict(targets_seconds(config))


def note(config: Config, ref: str, message: str) -> dict[str, Any]:
    record = _find(config, ref)
    if record.status == "closed":
        raise BadInput(f"incident {record.id} is closed", "notes go on open incidents")
    _log(config, record.path).must_write("note", message=message)
    return read_incident(record.path).to_dict(targets_seconds(config))


def close(config: Config, ref: str, *, resolution: str, services: Services,
          by: str | None = None) -> dict[str, Any]:
    """Close the incident, storing the figures its report shows measured now, once (through ``services``'
    short-timeout profile): the impact over the incident window and the rows only in a database a swap
    kept aside (``closed`` event: ``impact``, ``rows_only_in_kept``, ``measured_at``)."""
    from rollback.commands.report import closing_figures

    record = _find(config, ref)
    if record.status == "closed":
        raise BadInput(f"incident {record.id} is already closed", "see 'rollback incident show'")
    figures = closing_figures(services, config.journal_dir, record.to_dict(targets_seconds(config)))
    _log(config, record.path).must_write("closed", by=by or _user(), resolution=resolution, **figures)
    with contextlib.suppress(BadInput):
        record = read_incident(record.path)
    return record.to_dict(targets_seconds(config))
