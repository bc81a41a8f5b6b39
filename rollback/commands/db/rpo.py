"""``rollback db rpo``: the recovery points available now, and their age against ``targets.rpo``.

The runbook's recovery point objective (RPO, default 5 minutes): after a restore,
at most that much of what users wrote may be missing. Each kind of recovery point
is looked up on its own and shown with its age:

- the newest verified logical backup of this database (``rollback db backup``);
- the newest RDS manual snapshot, the newest automated snapshot, and the
  instance's latest restorable time (point-in-time restore), when
  ``aws.db_instance`` is known.

A kind that cannot be read (no instance configured, AWS unreachable) is listed
with the reason and counts as not within the target.

RDS uploads an instance's transaction logs every five minutes, so its
``LatestRestorableTime`` is normally up to five minutes old ("typically within the
last five minutes", Amazon RDS User Guide, *Restoring a DB instance to a specified
time*). The point-in-time point is judged with that lag allowed
(:data:`RDS_LOG_LAG_SECONDS` on top of the target): it misses the target only when
it is older than that, i.e. when the log uploads themselves fall behind. :func:`rpo` returns the
document; ``ok`` is False (the CLI exits 3) when no point is within the target.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rollback.backups import list_backups
from rollback.commands.db.common import config_identity, live_identity
from rollback.config import Config
from rollback.context import Services
from rollback.errors import RollbackError

__all__ = ["RDS_LOG_LAG_SECONDS", "rpo"]

RDS_LOG_LAG_SECONDS = 300.0


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _point(kind: str, name: str | None, at: dt.datetime | None, now: dt.datetime, target: float,
           detail: str = "", allowance: float = 0.0) -> dict[str, Any]:
    age = None if at is None else max(0.0, round((now - at).total_seconds(), 1))
    return {"kind": kind, "name": name, "at": _iso(at) if at else None, "age_seconds": age,
            "within_target": age is not None and age <= target + allowance, "detail": detail}


def _logical(config: Config, services: Services, now: dt.datetime, target: float) -> dict[str, Any]:
    kind = "logical backup"
    try:
        try:
            identity = live_identity(services.database())
        except RollbackError:  # no connection: the URL's name, host and port still tell
            identity = config_identity(config, services)
        found = [b for b in list_backups(config.backups_dir, identity)
                 if b.get("status") == "ok" and b.get("this_database") and b.get("verified")]
    except RollbackError as exc:
        return _point(kind, None, None, now, target, f"cannot read: {exc.message}")
    if not found:
        return _point(kind, None, None, now, target, f"no verified backup of this database in {config.backups_dir}")
    newest = found[0]
    at = dt.datetime.fromisoformat(str(newest["created_at"]).replace("Z", "+00:00"))
    return _point(kind, str(newest["name"]), at, now, target, "verified")


def _rds(config: Config, services: Services, now: dt.datetime, target: float) -> list[dict[str, Any]]:
    kinds = ("RDS manual snapshot", "RDS automated snapshot", "RDS point-in-time restore")
    instance = config.env.aws.db_instance
    if not instance:
        return [_point(k, None, None, now, target, "aws.db_instance is not set") for k in kinds]
    try:
        rds = services.rds()
        inst = rds.instance(instance)
        snaps = [s for s in rds.snapshots(instance) if s.status == "available" and s.created]
    except RollbackError as exc:
        return [_point(k, None, None, now, target, f"cannot read: {exc.message}") for k in kinds]
    out = []
    for kind, wanted in zip(kinds[:2], ("manual", "automated"), strict=True):
        newest = next((s for s in snaps if s.type == wanted), None)
        out.append(_point(kind, newest.id if newest else None, newest.created if newest else None, now, target,
                          "" if newest else f"no available {wanted} snapshot of {instance}"))
    lag = f"latest restorable time (RDS ships its logs every 5 min: up to {RDS_LOG_LAG_SECONDS / 60:g} min of lag " \
          "is allowed on top of the target)"
    out.append(_point(kinds[2], instance, inst.latest_restorable, now, target,
                      lag if inst.latest_restorable else
                      f"{instance} has no point-in-time window (automated backups off?)",
                      allowance=RDS_LOG_LAG_SECONDS))
    return out


def rpo(config: Config, *, now: dt.datetime | None = None, services: Services) -> dict[str, Any]:
    """Recovery points of each kind with their age; ``ok`` when at least one is within ``targets.rpo``.

    ``points``: ``[{kind, name, at, age_seconds, within_target, detail}]`` (the
    shape ``rollback verify`` shows as one checklist item).
    """
    moment = now or dt.datetime.now(dt.UTC)
    target = float(config.env.targets.rpo) * 60
    chosen = services
    points = [_logical(config, chosen, moment, target), *_rds(config, chosen, moment, target)]
    best = min((p for p in points if p["age_seconds"] is not None), key=lambda p: p["age_seconds"], default=None)
    return {"env": config.env_name, "checked_at": _iso(moment), "target_seconds": target,
            "ok": any(p["within_target"] for p in points), "newest": best, "points": points}
