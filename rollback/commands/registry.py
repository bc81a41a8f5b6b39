"""Which handlers run which actions: the handlers of any plan, from any mix of layers.

Each layer keeps its handlers in one class (:class:`~rollback.commands.app.AppHandlers`,
:class:`~rollback.commands.infra_breakglass.EdgeHandlers`, ...). :func:`handlers_for`
builds only the classes a plan's actions need, with adapters made from the config or
injected through ``services``, so that a cross-layer run, a plan read back from
``--dry-run --json`` or a journal, and ``resume`` all get the same handlers the single
commands use.

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

from rollback.errors import BadInput

if TYPE_CHECKING:
    from rollback.adapters.aws import AwsClients
    from rollback.config import Config
    from rollback.runner import StepHandler

__all__ = ["FAMILIES", "family_of", "handlers_for"]

# family -> the actions its handler class runs
FAMILIES: dict[str, tuple[str, ...]] = {
    "app": ("vercel.rollback", "vercel.promote", "vercel.wait_alias_job", "git.revert", "git.push",
            "vercel.wait_deploy"),
    "verify": ("health.check", "verify.checklist"),
    "run": ("run.check_world",),
    "switch": ("vercel.switch_database", "vercel.redeploy"),
    "edge": ("edge.associate", "edge.wait", "edge.pin"),
    "invalidate": ("cloudfront.invalidate", "cloudfront.wait_invalidation"),
    "assets": ("s3.restore",),
    "stack": ("infra.backup-config", "infra.desired-state", "infra.write-config", "infra.preview", "infra.check",
              "infra.up", "stack.config_restore"),
    "db": ("db.backup", "db.skip_emergency_backup", "db.verify_backup", "db.check_rights", "db.restore_beside",
           "db.restore_in_place", "db.check_counts", "db.swap", "db.drop_set_aside", "db.resolve",
           "db.check_migration", "db.down", "rds.create_snapshot", "rds.restore"),
}
_FAMILY_OF = {action: family for family, actions in FAMILIES.items() for action in actions}


def family_of(action: str) -> str | None:
    """The handler family that runs ``action`` (``None`` when no layer knows it)."""
    return _FAMILY_OF.get(action)


class _Adapters:
    """Adapters built on first use, shared between the families of one plan."""

    def __init__(self, config: Config, services: Mapping[str, Any]) -> None:
        self.config = config
        self.services = services
        self._aws: AwsClients | None = services.get("aws")

    def aws(self) -> AwsClients:
        if self._aws is None:
            from rollback.commands.infra_breakglass import aws_clients

            self._aws = aws_clients(self.config)
        return self._aws

    def edge(self) -> Any:
        if self.services.get("edge") is None:
            from rollback.commands.infra_breakglass import edge_adapter

            return edge_adapter(self.aws())
        return self.services["edge"]


def _app(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.app import AppHandlers, make_client

    client = services.get("vercel")
    on_retry: Callable[[str], None] | None = services.get("on_retry")
    factory = (lambda: client) if client is not None else (lambda: make_client(config, on_retry=on_retry))
    return dict(AppHandlers(config=config, client_factory=factory, repo=services.get("git"),
                            sleep=services.get("sleep", time.sleep),
                            clock=services.get("clock", time.monotonic)).handlers())


def _verify(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.app import HealthHandlers
    from rollback.commands.verify import VerifyHandlers

    return {**HealthHandlers(sleep=services.get("sleep", time.sleep),
                             clock=services.get("clock", time.monotonic)).handlers(),
            **VerifyHandlers(config, sleep=services.get("sleep", time.sleep)).handlers()}


def _run(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.run import Services, WorldHandlers

    return dict(WorldHandlers(Services(config, services)).handlers())


def _switch(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.run import Services, SwitchHandlers

    return dict(SwitchHandlers(Services(config, services)).handlers())


def _edge(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.infra_breakglass import EdgeHandlers

    return dict(EdgeHandlers(adapters.edge(), interval=float(services.get("edge_interval", 15.0)),
                             ramp=bool(services.get("poll_ramp", False))).handlers())


def _invalidate(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.infra_breakglass import InvalidateHandlers

    return dict(InvalidateHandlers(adapters.edge(), interval=float(services.get("invalidate_interval", 10.0)),
                                   ramp=bool(services.get("poll_ramp", False))).handlers())


def _assets(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.infra_breakglass import AssetsHandlers, s3_versions

    store = services.get("s3") or s3_versions(adapters.aws())
    return dict(AssetsHandlers(store).handlers())


def _stack(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.infra_stack import StackHandlers

    return dict(StackHandlers(config, services.get("stack_source")).handlers())


def _db(config: Config, services: Mapping[str, Any], adapters: _Adapters) -> dict[str, Any]:
    from rollback.commands.db import DbHandlers

    chosen = services.get("db") or DbHandlers(config, rds=services.get("rds"))
    return dict(chosen.handlers())


_BUILDERS: dict[str, Callable[[Config, Mapping[str, Any], _Adapters], dict[str, Any]]] = {
    "app": _app, "verify": _verify, "edge": _edge, "invalidate": _invalidate, "assets": _assets,
    "stack": _stack, "db": _db, "run": _run, "switch": _switch,
}


def handlers_for(config: Config, actions: Iterable[str],
                 services: Mapping[str, Any] | None = None) -> dict[str, StepHandler]:
    """The handlers of ``actions`` (any mix of layers), keyed by action.

    Only the layers the actions belong to are built; their adapters come from ``services``
    when given, else from ``config`` (on first use). An action no layer knows is bad input
    (exit 2): a plan from a newer version, or edited by hand.
    """
    wanted = list(dict.fromkeys(actions))
    unknown = [action for action in wanted if family_of(action) is None]
    if unknown:
        raise BadInput(f"no step handler for action(s) {', '.join(unknown)}",
                       f"known actions: {', '.join(sorted(_FAMILY_OF))}")
    adapters = _Adapters(config, services or {})
    built: dict[str, Any] = {}
    for family in dict.fromkeys(str(family_of(action)) for action in wanted):
        built.update(_BUILDERS[family](config, services or {}, adapters))
    return {action: built[action] for action in wanted}
