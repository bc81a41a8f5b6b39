"""Which handlers run which actions: the handlers of any plan, from any mix of layers.

Each layer keeps its handlers in one class (:class:`~rollback.commands.app.AppHandlers`,
:class:`~rollback.commands.infra_breakglass.EdgeHandlers`, ...). :func:`handlers_for`
builds only the classes a plan's actions need, with adapters from one
:class:`~rollback.context.Services` (built from the config on first use, or injected), so
that a cross-layer run, a plan read back from ``--dry-run --json`` or a journal, and
``resume`` all get the same handlers the single commands use.

``services`` (all optional):

=====================  ============================================================
``vercel``             a :class:`~rollback.adapters.vercel.VercelClient`
``on_retry``           ``Callable[[str], None]`` told about Vercel retries
``git``                a :class:`~rollback.adapters.git.GitRepo`
``aws``                an :class:`~rollback.adapters.aws.AwsClients`
``edge``               an :class:`~rollback.adapters.cloudfront.EdgeAdapter`
``s3``                 an :class:`~rollback.adapters.s3_versions.S3Versions`
``stack_source``       a :class:`~rollback.commands.infra_stack.HistorySource`
``rds``                an :class:`~rollback.adapters.rds.RdsAdapter`
``db``                 a :class:`~rollback.commands.db.DbHandlers` (its database, tools, seams)
``edge_interval``      seconds between CloudFront deploy polls (default 15)
``invalidate_interval`` seconds between invalidation polls (default 10)
``poll_ramp``          poll CloudFront often at first, then every interval (``run``)
``sleep`` / ``clock``  for the app layer's watches (tests)
=====================  ============================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rollback.commands.app import AppHandlers, HealthHandlers
from rollback.commands.db import DbHandlers
from rollback.commands.infra_breakglass import AssetsHandlers, EdgeHandlers, InvalidateHandlers
from rollback.commands.infra_cdn import CdnHandlers
from rollback.commands.infra_stack import StackHandlers
from rollback.commands.run import SwitchHandlers, WorldHandlers
from rollback.commands.verify import VerifyHandlers
from rollback.context import Services
from rollback.errors import BadInput
from rollback.lock import pause

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.runner import StepHandler

__all__ = ["FAMILIES", "family_of", "handlers_for"]

# family -> the actions its handler class runs
FAMILIES: dict[str, tuple[str, ...]] = {
    "app": ("vercel.rollback", "vercel.promote", "vercel.wait_alias_job", "git.revert", "git.push",
            "vercel.wait_deploy", "vercel.abort_rolling_release", "vercel.wait_abort"),
    "verify": ("health.check", "verify.checklist"),
    "run": ("run.check_world",),
    "switch": ("vercel.switch_database", "vercel.redeploy"),
    "edge": ("edge.associate", "edge.wait", "edge.pin"),
    "cdn": ("cdn.snapshot", "cdn.update", "cdn.wait", "cdn.pin"),
    "invalidate": ("cloudfront.invalidate", "cloudfront.wait_invalidation"),
    "assets": ("s3.restore",),
    "stack": ("infra.program_env", "infra.backup_config", "infra.desired_state", "infra.write_config",
              "infra.preview", "infra.check", "infra.up", "infra.invalidate_release", "stack.config_restore"),
    "db": ("db.backup", "db.skip_emergency_backup", "db.verify_backup", "db.check_rights", "db.restore_beside",
           "db.restore_in_place", "db.check_counts", "db.swap", "db.drop_set_aside", "db.resolve",
           "db.check_migration", "db.down", "rds.create_snapshot", "rds.restore", "rds.apply_settings",
           "db.remove_incomplete_backup",
           "db.stage", "db.check_standby", "db.clone_standby", "db.salvage_compare", "db.salvage_apply",
           "db.guard_migrations", "db.guard_run", "db.guard_record", "db.guard_outcome", "db.backup_replaced"),
}
_FAMILY_OF = {action: family for family, actions in FAMILIES.items() for action in actions}


def family_of(action: str) -> str | None:
    """The handler family that runs ``action`` (``None`` when no layer knows it)."""
    return _FAMILY_OF.get(action)


def _app(services: Services) -> dict[str, Any]:
    return dict(AppHandlers(config=services.config, client_factory=services.vercel, repo=services.setting("git"),
                            sleep=services.setting("sleep", pause),
                            clock=services.setting("clock", time.monotonic)).handlers())


def _verify(services: Services) -> dict[str, Any]:
    return {**HealthHandlers(sleep=services.setting("sleep", pause),
                             clock=services.setting("clock", time.monotonic)).handlers(),
            **VerifyHandlers(services.config, sleep=services.setting("sleep", pause)).handlers()}


def _run(services: Services) -> dict[str, Any]:
    return dict(WorldHandlers(services).handlers())


def _switch(services: Services) -> dict[str, Any]:
    return dict(SwitchHandlers(services).handlers())


def _edge(services: Services) -> dict[str, Any]:
    return dict(EdgeHandlers(services.edge(), interval=float(services.setting("edge_interval", 15.0)),
                             ramp=bool(services.setting("poll_ramp", False))).handlers())


def _cdn(services: Services) -> dict[str, Any]:
    return dict(CdnHandlers(services.edge(), interval=float(services.setting("edge_interval", 15.0)),
                            shared=services.cdn_snapshots()).handlers())


def _invalidate(services: Services) -> dict[str, Any]:
    return dict(InvalidateHandlers(services.edge(), interval=float(services.setting("invalidate_interval", 10.0)),
                                   ramp=bool(services.setting("poll_ramp", False))).handlers())


def _assets(services: Services) -> dict[str, Any]:
    return dict(AssetsHandlers(services.s3()).handlers())


def _stack(services: Services) -> dict[str, Any]:
    return dict(StackHandlers(services.config, services.setting("stack_source")).handlers())


def _db(services: Services) -> dict[str, Any]:
    chosen = services.setting("db") or DbHandlers(services.config, rds=services.setting("rds"))
    return dict(chosen.handlers())


_BUILDERS: dict[str, Callable[[Services], dict[str, Any]]] = {
    "app": _app, "verify": _verify, "edge": _edge, "cdn": _cdn, "invalidate": _invalidate, "assets": _assets,
    "stack": _stack, "db": _db, "run": _run, "switch": _switch,
}


def handlers_for(config: Config, actions: Iterable[str],
                 services: Services | Mapping[str, Any] | None = None) -> dict[str, StepHandler]:
    """The handlers of ``actions`` (any mix of layers), keyed by action.

    Only the layers the actions belong to are built; their adapters come from ``services``
    (a :class:`~rollback.context.Services`, or a mapping of injected names it is built with),
    else from ``config`` (on first use). An action no layer knows is bad input (exit 2): a plan
    from a newer version, or edited by hand.
    """
    wanted = list(dict.fromkeys(actions))
    unknown = [action for action in wanted if family_of(action) is None]
    if unknown:
        raise BadInput(f"no step handler for action(s) {', '.join(unknown)}",
                       f"known actions: {', '.join(sorted(_FAMILY_OF))}")
    context = services if isinstance(services, Services) else Services(config, services)
    built: dict[str, Any] = {}
    for family in dict.fromkeys(str(family_of(action)) for action in wanted):
        built.update(_BUILDERS[family](context))
    return {action: built[action] for action in wanted}
