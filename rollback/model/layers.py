"""The cross-layer run, as data: which layers, in which order, to which targets, and the hazards between them.

Pure (no I/O): ``rollback run`` reads the world, then asks this module what is
dangerous about the combination it was given.

Order (:data:`RUN_ORDER`): when ``db`` is included an emergency backup comes
first; then ``app`` (the fastest way to restore service), ``edge``, ``assets``
(plus an invalidation), ``infra`` (a pinned restore), the database restore
last and only when a backup is named (``--to db=BACKUP``), then verification.

Hazards:

- **schema skew**: the app's rollback target is older than migrations applied
  since (old code against a new schema). They are named, and the run needs
  ``--accept-schema-skew`` or the ``db`` layer with a restore;
- **assets vs app**: the config maps asset releases to app deployments and the
  release the assets go to does not belong to the deployment the app goes to;
- **database not switched**: a restored RDS instance the app's ``DATABASE_URL``
  does not point at (the change is printed; ``--switch-database`` makes it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollback.errors import BadInput
from rollback.plan import SERVICE_LAYERS as LAYERS

__all__ = [
    "LAYERS",
    "RUN_ORDER",
    "Hazard",
    "MigrationRow",
    "assets_mismatch",
    "database_switch",
    "order",
    "parse_layers",
    "parse_targets",
    "schema_skew",
]

RUN_ORDER = ("db-backup", "app", "edge", "assets", "infra", "db", "verify")


@dataclass(frozen=True)
class Hazard:
    """Something dangerous about the combination; ``blocking`` until ``override`` is given."""

    kind: str  # schema-skew | assets-mismatch | database-not-switched
    message: str
    blocking: bool
    override: str | None = None  # the flag that accepts it
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "blocking": self.blocking, "override": self.override,
                "details": dict(self.details)}


def parse_layers(values: Iterable[str]) -> tuple[str, ...]:
    """``["app,edge", "db"]`` -> ``("app", "edge", "db")`` in run order; unknown names are bad input."""
    chosen: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name not in LAYERS:
                raise BadInput(f"--layers: {name!r} is not a layer", f"use some of {', '.join(LAYERS)}")
            chosen.append(name)
    if not chosen:
        raise BadInput("--layers names no layer", f"use some of {', '.join(LAYERS)}, e.g. --layers app")
    return order(chosen)


def order(layers: Iterable[str]) -> tuple[str, ...]:
    wanted = set(layers)
    return tuple(layer for layer in LAYERS if layer in wanted)


def parse_targets(values: Iterable[str], layers: Sequence[str]) -> dict[str, str]:
    """``--to app=dpl_123 --to db=latest`` -> ``{"app": "dpl_123", "db": "latest"}``.

    Each layer at most once, only layers of the run, a non-empty target.
    """
    targets: dict[str, str] = {}
    for value in values:
        layer, sep, target = value.partition("=")
        layer, target = layer.strip().lower(), target.strip()
        if not sep or not target:
            raise BadInput(f"--to {value!r} is not LAYER=TARGET", "e.g. --to app=dpl_123 or --to db=latest")
        if layer not in LAYERS:
            raise BadInput(f"--to {value!r}: {layer!r} is not a layer", f"use one of {', '.join(LAYERS)}")
        if layer not in layers:
            raise BadInput(f"--to {value!r}: layer {layer!r} is not in --layers", f"add it: --layers "
                           f"{','.join(order([*layers, layer]))}")
        if layer in targets:
            raise BadInput(f"--to names layer {layer!r} twice", "give one target per layer")
        targets[layer] = target
    return targets


@dataclass(frozen=True)
class MigrationRow:
    name: str
    finished_at: dt.datetime | None
    status: str  # applied | failed | rolled back


def schema_skew(target_created: dt.datetime | None, migrations: Sequence[MigrationRow], *, restores_db: bool,
                accepted: bool) -> Hazard | None:
    """Migrations applied after the app's rollback target was built: that code never saw this schema."""
    if target_created is None:
        return None
    newer = [m for m in migrations if m.status == "applied" and m.finished_at is not None
             and m.finished_at > target_created]
    if not newer:
        return None
    names = [m.name for m in sorted(newer, key=lambda m: (m.finished_at or target_created, m.name))]
    message = (f"the app's rollback target was built {target_created.isoformat(timespec='seconds')}, before "
               f"{len(names)} migration(s) applied since: {', '.join(names)}; the old code will run against the "
               "new schema")
    if restores_db:
        return Hazard("schema-skew", message + " (the db layer restores a backup from before them)", False,
                      details={"migrations": names})
    return Hazard("schema-skew", message, not accepted, "--accept-schema-skew", {"migrations": names})


def assets_mismatch(app_deployment: str | None, assets_release: str | None,
                    releases: Mapping[str, str]) -> Hazard | None:
    """The config maps releases to deployments (``release -> deployment id or commit``): they must agree."""
    if not releases or app_deployment is None or assets_release is None:
        return None
    expected = releases.get(assets_release)
    if expected is None:
        return Hazard("assets-mismatch", f"asset release {assets_release!r} is not in the configured release map",
                      True, "--accept-mismatch", {"release": assets_release})
    if expected == app_deployment or (len(expected) >= 7 and app_deployment.startswith(expected)):
        return None
    return Hazard("assets-mismatch", f"asset release {assets_release!r} belongs to {expected}, but the app goes "
                  f"to {app_deployment}", True, "--accept-mismatch",
                  {"release": assets_release, "release_deployment": expected, "app_deployment": app_deployment})


def database_switch(current_host: str | None, restored_endpoint: str | None, *, url_env: str,
                    switching: bool) -> Hazard | None:
    """A restored RDS instance the app's database URL does not point at yet."""
    if not restored_endpoint or not current_host or current_host == restored_endpoint:
        return None
    message = (f"the app's {url_env} points at {current_host}, not at the restored instance {restored_endpoint}: "
               f"change the host in {url_env} to {restored_endpoint}")
    if switching:
        return Hazard("database-not-switched", message + " (--switch-database updates the Vercel project's "
                      "variable and redeploys)", False, details={"from": current_host, "to": restored_endpoint})
    return Hazard("database-not-switched", message, False, "--switch-database",
                  {"from": current_host, "to": restored_endpoint})
