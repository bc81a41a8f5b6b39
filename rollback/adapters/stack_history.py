"""Where a Pulumi stack's history comes from: :class:`HistorySource` and its two implementations.

- :class:`BackendSource`: a self-managed backend (``file://``, ``s3://``) read
  directly, no CLI needed; checkpoints are read only for resource diffs;
- :class:`CliSource`: the Automation API (``pulumi stack history`` with a page
  size large enough for the whole history), when the CLI is installed.

The builders from config (:func:`backend_source`, :func:`cli_stack`, :func:`open_source`) are what
:class:`rollback.context.Services` calls; commands ask the Services, tests inject a source there.
Nothing heavy is imported at module level: the Automation API is imported by
:mod:`rollback.adapters.pulumi` when a stack is selected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rollback.adapters.pulumi import cli_available, select_stack
from rollback.adapters.pulumi_backend import is_diy_url, open_backend
from rollback.adapters.pulumi_project import DIY_ORGANIZATION, resolve_stack
from rollback.errors import BadInput, PulumiError
from rollback.model.stackdiff import SECRET_MASK, StackState, StackVersion, is_secret_value

if TYPE_CHECKING:
    from rollback.adapters.pulumi import PulumiStack
    from rollback.adapters.pulumi_backend import DiyBackend
    from rollback.adapters.pulumi_project import StackRef
    from rollback.config import Config

__all__ = [
    "BackendSource",
    "CliSource",
    "HistorySource",
    "backend_source",
    "backend_url",
    "cli_stack",
    "find_version",
    "open_source",
    "project_dir",
    "read_outputs",
    "select_source",
    "stack_ref",
]


class HistorySource(Protocol):
    """Where a stack's versions come from."""

    kind: str

    def history(self, newest: int | None = None) -> list[StackVersion]:
        """Every update (or the ``newest`` N), oldest first."""

    def total(self) -> int:
        """How many updates the stack has."""

    def find(self, number: int) -> StackVersion:
        """One update by version number (BadInput naming the known range when absent)."""

    def latest(self) -> StackVersion | None:
        """The newest update, or None before the first."""

    def state_of(self, version: StackVersion) -> StackState | None:
        """That update's checkpoint, or ``None`` when this source cannot read old checkpoints."""

    def current(self) -> StackState:
        """The current checkpoint."""

    def describe(self) -> dict[str, Any]:
        """What the source is, and what it read, for the output."""


@dataclass
class BackendSource:
    """A self-managed backend read directly (no CLI)."""

    backend: DiyBackend
    project: str
    stack: str
    kind: str = "backend"

    def history(self, newest: int | None = None) -> list[StackVersion]:
        return self.backend.history(self.project, self.stack, newest=newest)

    def total(self) -> int:
        return self.backend.count(self.project, self.stack)

    def find(self, number: int) -> StackVersion:
        # Reads that update's history file only: numbering needs just the directory listing.
        found = self.backend.version(self.project, self.stack, number)
        if found is None:
            count = self.backend.count(self.project, self.stack)
            known = f"1..{count}" if count else "none"
            raise BadInput(f"no version {number} in the stack history (versions: {known})",
                           "list them with 'rollback infra history'")
        return found

    def latest(self) -> StackVersion | None:
        count = self.backend.count(self.project, self.stack)
        return self.backend.version(self.project, self.stack, count) if count else None

    def state_of(self, version: StackVersion) -> StackState | None:
        return self.backend.state(version)

    def current(self) -> StackState:
        return self.backend.current(self.project, self.stack)

    def locks(self) -> list[str]:
        return [lock.describe() for lock in self.backend.locks(self.project, self.stack)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.backend.url,
                "layout": "project" if self.backend.project_layout else "legacy",
                **self.backend.counters.to_dict()}


@dataclass
class CliSource:
    """The Automation API. Old checkpoints are read from a self-managed backend when
    one is configured (``pulumi stack export --version`` exists only on Pulumi Cloud)."""

    stack: PulumiStack
    backend: BackendSource | None = None
    kind: str = "cli"
    _history: list[StackVersion] | None = field(default=None, repr=False)

    def history(self, newest: int | None = None) -> list[StackVersion]:
        if self._history is not None:
            return self._history[-newest:] if newest else self._history
        if newest:
            # One page of the newest N. Self-managed backends report version 0 for every update,
            # and numbering them needs the whole history: then read it all.
            page = self.stack.history(newest=newest)
            if not any(v.numbered_locally for v in page):
                return page
        self._history = self.stack.history()
        return self._history[-newest:] if newest else self._history

    def total(self) -> int:
        if self._history is None:
            page = self.stack.history(newest=1)
            if page and not page[-1].numbered_locally:
                return page[-1].version
        return len(self.history())

    def find(self, number: int) -> StackVersion:
        return find_version(self.history(), number)

    def latest(self) -> StackVersion | None:
        versions = self.history()
        return versions[-1] if versions else None

    def state_of(self, version: StackVersion) -> StackState | None:
        if self.backend is None:
            return None
        try:
            candidate: StackVersion | None = self.backend.find(version.version)
        except BadInput:
            candidate = None
        if candidate is not None and candidate.start_time == version.start_time:
            return self.backend.state_of(candidate)
        for candidate in self.backend.history():
            if candidate.version == version.version and candidate.start_time == version.start_time:
                return self.backend.state_of(candidate)
        return None

    def current(self) -> StackState:
        return self.stack.export()

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"kind": self.kind, "stack": self.stack.name}
        if self.backend is not None:
            described["checkpoints_from"] = self.backend.describe()
        return described


def project_dir(config: Config) -> Path:
    """The Pulumi project directory (``pulumi.project_dir``, relative to rollback.toml)."""
    return config.resolve_path(config.require_pulumi().project_dir)


def stack_ref(config: Config) -> StackRef:
    """The configured stack as Pulumi spells it, its project from Pulumi.yaml unless pulumi.project says."""
    settings = config.require_pulumi()
    return resolve_stack(settings.stack, project_dir(config), project=settings.project)


def backend_url(config: Config) -> str | None:
    """``pulumi.backend_url`` with a relative ``file://`` path made absolute (against rollback.toml's
    directory), so the CLI, run from the project directory, finds the same backend."""
    url = config.require_pulumi().backend_url
    if url and url.startswith("file://"):
        raw = url[len("file://"):]
        path = Path(raw).expanduser()
        if not path.is_absolute():
            return f"file://{(config.root / path).resolve()}"
    return url


def backend_source(config: Config) -> BackendSource | None:
    """The self-managed backend read directly, or ``None`` when the backend is not ``file://``/``s3://``."""
    url = backend_url(config) or config.environ.get("PULUMI_BACKEND_URL")
    if not url or not is_diy_url(url):
        return None
    ref = stack_ref(config)
    if ref.organization not in (None, DIY_ORGANIZATION):
        raise BadInput(f"stack {ref.given!r}: a self-managed backend has the one organization "
                       f"{DIY_ORGANIZATION!r}, not {ref.organization!r}",
                       f'write pulumi.stack as "{DIY_ORGANIZATION}/{ref.project}/{ref.name}" or "{ref.name}"')
    backend = open_backend(url, base_dir=config.root, region=config.env.aws.region)
    return BackendSource(backend, ref.project, ref.name)


def cli_stack(config: Config, directory: Path | None = None) -> PulumiStack:
    """The configured stack through the Automation API, run in ``directory`` (default: the project)."""
    settings = config.require_pulumi()
    return select_stack(settings.stack, directory or project_dir(config), backend_url=backend_url(config))


def select_source(via: str, *, backend: Callable[[], BackendSource | None],
                  stack: Callable[[], PulumiStack]) -> HistorySource:
    """``backend`` (self-managed backend read directly), ``cli`` (Automation API), or
    ``auto``: the backend when it is self-managed, else the CLI."""
    if via not in ("auto", "backend", "cli"):
        raise BadInput(f"unknown history source {via!r}", "use auto, backend or cli")
    found = backend() if via in ("auto", "backend") else None
    if via == "backend" and found is None:
        raise BadInput("no self-managed backend configured",
                       "set pulumi.backend_url to file://... or s3://... in rollback.toml")
    if found is not None and via != "cli":
        return found
    if not cli_available():
        raise PulumiError("the Pulumi CLI is not installed and no self-managed backend is configured",
                          "install the Pulumi CLI, or set pulumi.backend_url to the file:// or s3:// backend")
    try:
        checkpoints = backend()
    except BadInput:
        checkpoints = None
    return CliSource(stack(), checkpoints)


def open_source(config: Config, via: str = "auto") -> HistorySource:
    """:func:`select_source` over the stack of ``config``."""
    return select_source(via, backend=lambda: backend_source(config), stack=lambda: cli_stack(config))


def read_outputs(backend: BackendSource | None, stack: Callable[[], PulumiStack]) -> dict[str, Any]:
    """Current stack outputs: from the self-managed backend's current checkpoint when there is one
    (no CLI needed; secret outputs as ``"[secret]"``), else through the Automation API."""
    if backend is not None:
        outputs = backend.current().outputs
        return {k: (SECRET_MASK if is_secret_value(v) else v) for k, v in outputs.items()}
    if not cli_available():
        raise PulumiError("cannot read the stack outputs: no Pulumi CLI and no self-managed backend configured",
                          "set pulumi.backend_url, or set the resources under [env.<name>.aws] in rollback.toml")
    return stack().outputs()


def find_version(versions: list[StackVersion], number: int) -> StackVersion:
    """``number`` among ``versions`` (BadInput naming the known range when absent)."""
    for version in versions:
        if version.version == number:
            return version
    known = f"{versions[0].version}..{versions[-1].version}" if versions else "none"
    raise BadInput(f"no version {number} in the stack history (versions: {known})",
                   "list them with 'rollback infra history'")
