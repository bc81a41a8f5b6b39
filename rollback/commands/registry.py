"""Which handlers run which actions: the handlers of any plan, from any mix of layers.

Each action is declared once, at its handler (:func:`rollback.actions.action` on a method of a
:class:`~rollback.actions.StepHandlers` class); this module imports every layer's handler classes and
derives from those declarations what the rest of the package asks: the layer of an action
(:func:`family_of`: an action's family is its layer), the actions of each layer (:data:`FAMILIES`), the
ones that only read (:func:`is_read_only`). :func:`handlers_for` builds only the classes a plan's actions
need, each with the one :class:`~rollback.context.Services` of the run, so that a cross-layer run, a plan
read back from ``--dry-run --json`` or a journal, and ``resume`` all get the same handlers the single
commands use, on one database target and one boto3 session.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from rollback.actions import DECLARED, StepHandlers
from rollback.commands.app.handlers import AppHandlers
from rollback.commands.app.health import HealthHandlers
from rollback.commands.app.rolling import RollingHandlers
from rollback.commands.db.handlers import DbHandlers
from rollback.commands.infra.assets import AssetsHandlers
from rollback.commands.infra.cdn import CdnHandlers
from rollback.commands.infra.edge import EdgeHandlers
from rollback.commands.infra.invalidate import InvalidateHandlers
from rollback.commands.infra.stack_handlers import StackHandlers
from rollback.commands.run.world import SwitchHandlers, WorldHandlers
from rollback.commands.verify import VerifyHandlers
from rollback.context import Services
from rollback.errors import BadInput

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.runner import StepHandler

# Imported for their declarations: defining a handler class registers its actions.
LAYER_HANDLERS: tuple[type[StepHandlers], ...] = (
    AppHandlers, RollingHandlers, SwitchHandlers, HealthHandlers, VerifyHandlers, WorldHandlers, EdgeHandlers,
    CdnHandlers, InvalidateHandlers, AssetsHandlers, StackHandlers, DbHandlers)

__all__ = ["FAMILIES", "LAYER_HANDLERS", "family_of", "handler_objects", "handlers_for", "is_read_only"]


class _Families(Mapping[str, tuple[str, ...]]):
    """layer -> the actions declared in it, read from the declarations each time (a handler class defined
    later, in a plug-in or a test, is known as soon as it is defined)."""

    def _table(self) -> dict[str, tuple[str, ...]]:
        table: dict[str, list[str]] = {}
        for name, declared in DECLARED.items():
            table.setdefault(declared.layer, []).append(name)
        return {layer: tuple(names) for layer, names in table.items()}

    def __getitem__(self, layer: str) -> tuple[str, ...]:
        return self._table()[layer]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


FAMILIES: Mapping[str, tuple[str, ...]] = _Families()


def family_of(action: str) -> str | None:
    """The layer that runs ``action`` (``None`` when no layer declares it)."""
    declared = DECLARED.get(action)
    return declared.layer if declared is not None else None


def is_read_only(action: str) -> bool:
    """Whether ``action`` only reads or waits (declared ``read_only``): a run has not *initiated* its change
    before a step that is not."""
    declared = DECLARED.get(action)
    return declared is not None and declared.read_only


def _builder(owner: type[StepHandlers]) -> type[StepHandlers]:
    """The class that runs the actions ``owner`` declares: a class that combines ``owner`` (``DbHandlers``
    and the db jobs' mixins), else ``owner`` itself."""
    pending, seen = [StepHandlers], set()
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                pending.append(sub)
    combining = [cls for cls in seen if cls.combines and issubclass(cls, owner)]
    return combining[0] if combining else owner


def handler_objects(actions: Iterable[str], services: Services) -> dict[str, StepHandlers]:
    """The handler class instance that runs each of ``actions``: each class built once, with ``services``.
    An action no layer declares is bad input (exit 2): a plan from a newer version, or edited by hand."""
    wanted = list(dict.fromkeys(actions))
    unknown = [action for action in wanted if action not in DECLARED]
    if unknown:
        raise BadInput(f"no step handler for action(s) {', '.join(unknown)}",
                       f"known actions: {', '.join(sorted(DECLARED))}")
    built: dict[type[StepHandlers], StepHandlers] = {}
    for action in wanted:
        cls = _builder(DECLARED[action].owner)
        if cls not in built:
            built[cls] = cls(services)
    return {action: built[_builder(DECLARED[action].owner)] for action in wanted}


def handlers_for(config: Config, actions: Iterable[str], services: Services) -> dict[str, StepHandler]:
    """The handlers of ``actions`` (any mix of layers), keyed by action.

    Only the classes the actions are declared in are built, each once, all with ``services`` (the run's,
    whose ``config`` is ``config``): one Vercel client, one boto3 session, one database target for the
    whole plan.
    """
    objects = handler_objects(actions, services)
    bound: dict[int, dict[str, StepHandler]] = {}
    for obj in objects.values():
        bound.setdefault(id(obj), obj.handlers())
    return {action: bound[id(obj)][action] for action, obj in objects.items()}
