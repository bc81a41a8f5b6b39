"""Each step's action, declared once, where its handler is written.

A layer's handler class derives from :class:`StepHandlers` (built with one
:class:`~rollback.context.Services`, its only required argument) and says which layer it is::

    @dataclass
    class RestoreSteps(DbSteps):          # DbSteps.layer = "db"
        @action("db.check_counts", check="check_check_counts")
        def check_counts(self, step, ctx): ...

        @action("db.verify_backup", read_only=True)
        def verify_backup(self, step, ctx) -> Check: ...   # read-only: the check does the work

Declaring is registering: the registry (:mod:`rollback.commands.registry`), the read-only set that
says when a run has *initiated* its change, the layer of each action and the steps that create a
database are all derived from :data:`DECLARED`, never kept by hand beside it. So adding a step
touches the module its handler lives in, and a step that forgets to say it is read-only cannot be
missing from a table.

Pure of I/O: nothing here imports an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rollback.plan import LAYERS
from rollback.runner import StepHandler, handler, read_only

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.context import Services

__all__ = ["DECLARED", "Action", "StepHandlers", "action", "actions_of", "read_only_actions"]

_MARK = "__rollback_actions__"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Action:
    """One action as its handler class declares it."""

    name: str
    layer: str
    read_only: bool
    creates_database: bool
    owner: type[StepHandlers]  # the class whose body declares it
    method: str  # the act; for a read-only action, the check that does the work
    check: str | None = None


DECLARED: dict[str, Action] = {}  # action name -> its declaration, filled as handler classes are defined


def action(name: str, *, check: str | None = None, read_only: bool = False,
           creates_database: bool = False) -> Callable[[F], F]:
    """Declare the decorated method as the handler of action ``name`` (one method may run several).

    ``check``: the name of the read-only check method (without one the step is never found done in a fresh
    run). ``read_only``: the step only reads or waits (a run has not *initiated* its change before it); with
    no ``check``, the decorated method is its check and does the work (:func:`rollback.runner.read_only`).
    ``creates_database``: the step makes a database beside the live one (a journal naming it is the proof
    rollback made it)."""

    def mark(function: F) -> F:
        function.__dict__.setdefault(_MARK, []).append((name, check, read_only, creates_database))
        return function

    return mark


@dataclass
class StepHandlers:
    """The base of every layer's handler class: built with the one :class:`~rollback.context.Services` of
    the run (other arguments are optional and keyword-only by convention), its actions declared with
    :func:`action` on its methods. ``layer`` is one of :data:`rollback.plan.LAYERS`.

    ``combines = True`` (a class keyword): the class gathers the actions of mixins it derives from, and the
    registry builds it, not each mixin, to run them (``DbHandlers`` combines the db jobs' steps)."""

    services: Services
    layer: ClassVar[str] = ""
    combines: ClassVar[bool] = False

    def __init_subclass__(cls, combines: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.combines = combines
        for attribute, value in list(vars(cls).items()):
            for name, check, only_reads, creates in getattr(value, _MARK, ()):
                if cls.layer not in LAYERS:
                    raise TypeError(f"{cls.__qualname__} declares {name} but its layer {cls.layer!r} is not one of "
                                    f"{', '.join(LAYERS)}")
                if check is not None and not callable(getattr(cls, check, None)):
                    raise TypeError(f"{cls.__qualname__}.{attribute}: check {check!r} is not a method of the class")
                earlier = DECLARED.get(name)
                if earlier is not None and earlier.owner.__qualname__ != cls.__qualname__:
                    raise TypeError(f"action {name} is declared twice: by {earlier.owner.__qualname__} and by "
                                    f"{cls.__qualname__}")
                DECLARED[name] = Action(name, cls.layer, only_reads, creates, cls, attribute, check)

    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def sleep(self) -> Callable[[float], None]:
        """Between two polls (:attr:`rollback.context.RunSettings.sleep`)."""
        return self.services.settings.sleep

    @property
    def clock(self) -> Callable[[], float]:
        return self.services.settings.clock

    def handlers(self) -> dict[str, StepHandler]:
        """Every action this class (and the mixins it derives from) declares, bound to this instance."""
        bound: dict[str, StepHandler] = {}
        for declared in actions_of(type(self)):
            method = getattr(self, declared.method)
            if declared.read_only and declared.check is None:
                bound[declared.name] = read_only(method)
            else:
                bound[declared.name] = handler(method, getattr(self, declared.check) if declared.check else None,
                                               creates_database=declared.creates_database)
        return bound


def actions_of(cls: type[StepHandlers]) -> list[Action]:
    """The actions ``cls`` runs: those declared by it and by the classes it derives from."""
    return [declared for declared in DECLARED.values() if issubclass(cls, declared.owner)]


def read_only_actions(names: Iterable[str] | None = None) -> frozenset[str]:
    """The declared actions that only read or wait (of ``names``, or all)."""
    chosen = DECLARED if names is None else {n: DECLARED[n] for n in names if n in DECLARED}
    return frozenset(name for name, declared in chosen.items() if declared.read_only)
