"""``rollback infra history | diff | preview | restore | config-restore``: stack-state rollback.

Pulumi has no rollback command: rolling infrastructure back is *selecting a
prior stack state*. These verbs list the stack's updates, diff any two, pin an
earlier update's config and preview it (saving the update plan), then apply
exactly that plan.

History comes from one of two sources behind :class:`HistorySource`:

- :class:`BackendSource`: a self-managed backend (``file://``, ``s3://``) read
  directly, no CLI needed; checkpoints are read only for resource diffs;
- :class:`CliSource`: the Automation API (``pulumi stack history`` with a page
  size large enough for the whole history), when the CLI is installed.

Preview, restore and config-restore are plans executed by
:func:`rollback.runner.execute` with :class:`StackHandlers`, so they are
journaled and have a dry run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rollback.errors import (
    BadInput,
    LockHeld,
    OperationFailed,
    PulumiError,
    RollbackError,
    UnsafePrecondition,
)
from rollback.plan import Plan, Step
from rollback.runner import Check, handler, read_only
from rollback.stackdiff import (
    ConfigValue,
    StackState,
    StackVersion,
    changed_config_keys,
    config_value_from_history,
    diff_config,
    diff_states,
    shorten,
)

if TYPE_CHECKING:
    from rollback.adapters.pulumi import PulumiStack
    from rollback.adapters.pulumi_backend import DiyBackend
    from rollback.config import Config
    from rollback.runner import StepContext, StepHandler

__all__ = [
    "BackendSource",
    "CliSource",
    "HistorySource",
    "PreviewOptions",
    "StackHandlers",
    "check_config_backup",
    "config_restore",
    "config_restore_plan",
    "diff",
    "history",
    "preview_plan",
    "restore_plan",
    "stack_outputs",
]

NUMBERING_NOTE = ("this backend records version 0 for every update: versions here are numbered by rollback, "
                  "oldest = 1, in update order")
SIDECAR_SUFFIX = ".rollback.json"


# --------------------------------------------------------------------------- sources


class HistorySource(Protocol):
    """Where a stack's versions come from."""

    kind: str

    def history(self) -> list[StackVersion]:
        """Every update, oldest first."""

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

    def history(self) -> list[StackVersion]:
        return self.backend.history(self.project, self.stack)

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

    def history(self) -> list[StackVersion]:
        if self._history is None:
            self._history = self.stack.history()
        return self._history

    def find(self, number: int) -> StackVersion:
        return _find(self.history(), number)

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
    return config.resolve_path(config.require_pulumi().project_dir)


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


def _backend_source(config: Config) -> BackendSource | None:
    from rollback.adapters.pulumi_backend import is_diy_url, open_backend

    settings = config.require_pulumi()
    url = backend_url(config) or config.environ.get("PULUMI_BACKEND_URL")
    if not url or not is_diy_url(url):
        return None
    backend = open_backend(url, base_dir=config.root, region=config.env.aws.region)
    return BackendSource(backend, settings.project, settings.stack)


def _cli_stack(config: Config) -> PulumiStack:
    from rollback.adapters.pulumi import select_stack

    settings = config.require_pulumi()
    return select_stack(settings.stack, project_dir(config), backend_url=backend_url(config))


def open_source(config: Config, via: str = "auto") -> HistorySource:
    """``backend`` (self-managed backend read directly), ``cli`` (Automation API), or
    ``auto``: the backend when it is self-managed, else the CLI."""
    from rollback.adapters.pulumi import cli_available

    if via not in ("auto", "backend", "cli"):
        raise BadInput(f"unknown history source {via!r}", "use auto, backend or cli")
    backend = _backend_source(config) if via in ("auto", "backend") else None
    if via == "backend" and backend is None:
        raise BadInput("no self-managed backend configured",
                       "set pulumi.backend_url to file://... or s3://... in rollback.toml")
    if backend is not None and via != "cli":
        return backend
    if not cli_available():
        raise PulumiError("the Pulumi CLI is not installed and no self-managed backend is configured",
                          "install the Pulumi CLI, or set pulumi.backend_url to the file:// or s3:// backend")
    try:
        checkpoints = _backend_source(config)
    except BadInput:
        checkpoints = None
    return CliSource(_cli_stack(config), checkpoints)


def _find(versions: list[StackVersion], number: int) -> StackVersion:
    for version in versions:
        if version.version == number:
            return version
    known = f"{versions[0].version}..{versions[-1].version}" if versions else "none"
    raise BadInput(f"no version {number} in the stack history (versions: {known})",
                   "list them with 'rollback infra history'")


# --------------------------------------------------------------------------- history / diff


def history(config: Config, *, limit: int | None = None, via: str = "auto") -> dict[str, Any]:
    """Every update (oldest first; ``limit`` keeps the newest N) with the config keys each changed."""
    source = open_source(config, via)
    versions = source.history()
    rows: list[dict[str, Any]] = []
    previous: Mapping[str, ConfigValue] | None = None
    for version in versions:
        row = version.to_dict()
        del row["config"]
        row["config_changed"] = changed_config_keys(previous, version.config)
        previous = version.config
        rows.append(row)
    if limit:
        rows = rows[-limit:]
    numbered_locally = any(v.numbered_locally for v in versions)
    return {
        "stack": config.require_pulumi().stack,
        "source": source.describe(),
        "count": len(versions),
        "numbered_locally": numbered_locally,
        "notes": [NUMBERING_NOTE] if numbered_locally else [],
        "versions": rows,
    }


def diff(config: Config, from_version: int, to_version: int | None = None, *, via: str = "auto") -> dict[str, Any]:
    """Config and resource differences between two versions (``to_version`` None = current state)."""
    source = open_source(config, via)
    latest = source.latest()
    if latest is None:
        raise BadInput("the stack has no history yet", "run 'pulumi up' once first")
    older = source.find(from_version)
    notes: list[str] = []
    if to_version is None:
        newer_config = latest.config
        newer_state: StackState | None = source.current()
        notes.append(f"'current' = the current checkpoint, with the config of the last update "
                     f"(version {latest.version})")
    else:
        newer = source.find(to_version)
        newer_config = newer.config
        newer_state = source.state_of(newer)
    older_state = source.state_of(older)
    if older_state is None or newer_state is None:
        notes.append("resource differences need the old checkpoints: configure a self-managed backend "
                     "(pulumi.backend_url) or use Pulumi Cloud's 'pulumi stack export --version N'")
    if latest.numbered_locally:
        notes.append(NUMBERING_NOTE)
    result = diff_states(from_version, to_version, older.config, newer_config, older_state, newer_state, notes)
    document = result.to_dict()
    document["stack"] = config.require_pulumi().stack
    document["source"] = source.describe()
    return document


# --------------------------------------------------------------------------- stack config file


def stack_config_file(config: Config) -> Path:
    from rollback.adapters.stack_config import stack_config_path

    return stack_config_path(project_dir(config), config.require_pulumi().stack)


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    except OSError as exc:
        raise OperationFailed(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from exc


def file_config(path: Path) -> dict[str, ConfigValue]:
    """The ``config:`` of ``Pulumi.<stack>.yaml`` as ConfigValues (secrets as ciphertext)."""
    from rollback.adapters.stack_config import read_stack_config

    return {key: config_value_from_history(value) for key, value in read_stack_config(path).items()}


def _write_file_config(path: Path, target: Mapping[str, ConfigValue], current: Mapping[str, ConfigValue],
                       project: str) -> list[str]:
    """Make the file's config equal ``target``, touching only the keys that differ
    (so comments and order of everything else survive). Returns the keys written."""
    from rollback.adapters.stack_config import write_stack_config

    changed = [c.key for c in diff_config(current, target)]
    if not changed:
        return []
    values: dict[str, Any] = {}
    for key in changed:
        value = target.get(key)
        if value is None:
            values[key] = None
        elif value.secret:
            if value.ciphertext is None:
                raise PulumiError(f"cannot write secret {key}: only its plaintext is known",
                                  "pin it through the Pulumi CLI (rollback infra preview without --offline)")
            values[key] = {"secure": value.ciphertext}
        else:
            text = value.value or ""
            parsed = None
            if text[:1] in ("[", "{"):
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
            structured = isinstance(parsed, (list, dict)) and not (current.get(key) and current[key].value == text)
            values[key] = parsed if structured else text
    write_stack_config(path, values, project=project)
    return changed


def _backup_dir(config: Config) -> Path:
    return config.resolve_path(".rollback/stack-config")


def backup_stack_config(config: Config, path: Path | None = None) -> Path:
    """Copy ``Pulumi.<stack>.yaml`` (or ``path``) byte for byte before it is rewritten; returns the backup."""
    from rollback.adapters.stack_config import atomic_write

    path = path or stack_config_file(config)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory = _backup_dir(config)
    backup = directory / f"{config.require_pulumi().stack}-{stamp}.yaml"
    existed = path.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if existed:
            shutil.copy2(path, backup)
        else:
            backup.write_text("", encoding="utf-8")
    except OSError as exc:
        raise OperationFailed(f"cannot save a backup of {path.name} to {directory}: {exc.strerror}",
                              "check that directory's permissions; nothing was changed") from exc
    meta = {"stack": config.require_pulumi().stack, "path": str(path), "existed": existed,
            "sha256": _file_digest(path), "saved_at": stamp}
    atomic_write(backup.with_suffix(".json"), json.dumps(meta, indent=2))
    return backup


def check_config_backup(config: Config, backup: Path) -> dict[str, Any]:
    """The metadata ``preview`` saved with a stack config backup; BadInput when ``backup`` is not one."""
    stack = config.require_pulumi().stack
    meta_path = backup.with_suffix(".json")
    pick = f"pick one from {_backup_dir(config)}"
    if not backup.is_file() or not meta_path.is_file():
        raise BadInput(f"{backup} is not a stack config backup made by 'rollback infra preview'", pick)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"cannot read {meta_path}, the metadata of backup {backup.name}: {exc.strerror}", pick) from exc
    except ValueError as exc:
        raise BadInput(f"{meta_path}, the metadata of backup {backup.name}, is not valid JSON", pick) from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("path"), str) or not meta["path"]:
        raise BadInput(f"{meta_path}, the metadata of backup {backup.name}, does not name the file it saved", pick)
    if meta.get("stack") != stack:
        raise BadInput(f"{backup} belongs to stack {meta.get('stack')!r}, not {stack!r}",
                       "pass --env for that stack's environment")
    return meta


def config_restore(config: Config, backup: Path) -> dict[str, Any]:
    """Put back the stack config file saved by ``preview`` (undo an abandoned preview).

    The file it overwrites is saved first, so that this restore can be undone in turn.
    """
    from rollback.adapters.stack_config import atomic_write

    meta = check_config_backup(config, backup)
    target = Path(meta["path"])
    text = None
    if meta.get("existed"):
        try:
            text = backup.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise BadInput(f"cannot read backup {backup}: {reason}", f"pick another from {_backup_dir(config)}") \
                from exc
    saved = backup_stack_config(config, target)
    if text is not None:
        atomic_write(target, text)
    else:
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise OperationFailed(f"cannot remove {target}: {exc.strerror}", "check the directory's permissions") \
                from exc
    return {"stack": meta["stack"], "restored": str(target), "from": str(backup), "existed": meta.get("existed"),
            "backup": str(saved), "undo": f"rollback infra config-restore {shlex.quote(str(saved))}"}


# --------------------------------------------------------------------------- preview


@dataclass(frozen=True)
class PreviewOptions:
    to_version: int
    plan_file: Path
    offline: bool = False
    message: str | None = None


def default_plan_file(config: Config, version: int) -> Path:
    return config.resolve_path(f".rollback/plans/{config.require_pulumi().stack}-v{version}.plan.json")


def _preview_command(config: Config, plan_file: Path) -> str:
    settings = config.require_pulumi()
    parts = ["pulumi", "preview", "--diff", "--stack", settings.stack, "--save-plan", str(plan_file),
             "--cwd", str(project_dir(config))]
    command = " ".join(shlex.quote(p) for p in parts)
    url = backend_url(config)
    if url:
        command = f"PULUMI_BACKEND_URL={shlex.quote(url)} {command}"
    return command


def _up_command(config: Config, plan_file: Path) -> str:
    settings = config.require_pulumi()
    parts = ["pulumi", "up", "--plan", str(plan_file), "--stack", settings.stack, "--cwd", str(project_dir(config))]
    command = " ".join(shlex.quote(p) for p in parts)
    url = backend_url(config)
    return f"PULUMI_BACKEND_URL={shlex.quote(url)} {command}" if url else command


def preview_plan(config: Config, options: PreviewOptions) -> tuple[Plan, dict[str, Any]]:
    """Read-only: find the version and what its config changes; return the plan and a context."""
    from rollback.adapters.pulumi import cli_available

    settings = config.require_pulumi()
    offline = options.offline or not cli_available()
    # Online, the config must come from the CLI (secrets decrypted, to be set back through it);
    # offline, from the self-managed backend (secrets as ciphertext, written back as 'secure:').
    source = _offline_source(config) if offline else open_source(config, "cli")
    target = source.find(options.to_version)
    latest = source.latest()
    path = stack_config_file(config)
    if offline:
        current = file_config(path)
    else:
        assert isinstance(source, CliSource)
        current = source.stack.get_config()
    changes = diff_config(current, target.config)
    mode = "offline" if offline else "cli"
    common = {"version": target.version, "mode": mode, "path": str(path), "plan_file": str(options.plan_file)}
    backup_step = Step("backup-config", "infra.backup-config", f"save {path.name} to {_backup_dir(config)}",
                       target=f"stack {settings.stack}", params={"path": str(path)})
    write_step = Step("write-config", "infra.write-config",
                      f"write version {target.version}'s config ({len(changes)} key(s) differ)"
                      + ("" if offline else " through the Automation API"),
                      target=f"stack {settings.stack}",
                      params={**common, "keys": [c.key for c in changes]},
                      destructive=bool(changes))
    if offline:
        # The program runs under mocks first: a pin it rejects stops the preview before any file changes.
        steps = [Step("desired-state", "infra.desired-state",
                      "run the program under Pulumi's mocks with the current and the pinned config",
                      target=f"stack {settings.stack}", params=common), backup_step, write_step]
    else:
        steps = [backup_step, write_step,
                 Step("preview", "infra.preview", f"pulumi preview --diff --save-plan {options.plan_file}",
                      target=f"stack {settings.stack}",
                      params={**common, "message": options.message})]
    notes = [f"config changes: {c.describe()}" for c in changes]
    if target.numbered_locally:
        notes.append(NUMBERING_NOTE)
    plan = Plan.of(f"preview stack {settings.stack} at version {target.version}", config.env_name, steps, notes)
    context = {"mode": mode, "source": source, "target": target, "current": current, "changes": changes,
               "path": path, "options": options, "latest": latest.version if latest else None}
    return plan, context


def _offline_source(config: Config) -> HistorySource:
    source = _backend_source(config)
    if source is None:
        raise PulumiError("offline preview needs the stack history: the Pulumi CLI is not installed and no "
                          "self-managed backend is configured",
                          "set pulumi.backend_url to the file:// or s3:// backend, or install the Pulumi CLI")
    return source


def _mock_config(values: Mapping[str, ConfigValue]) -> tuple[dict[str, object], list[str]]:
    """Config for the mocks runner: secrets get one placeholder (their values are not known offline)."""
    plain: dict[str, object] = {}
    secrets: list[str] = []
    for key, value in values.items():
        if value.secret:
            plain[key] = "rollback-offline-secret-placeholder"
            secrets.append(key)
        else:
            text = value.value or ""
            try:
                plain[key] = json.loads(text) if text[:1] in ("[", "{") else text
            except ValueError:
                plain[key] = text
    return plain, secrets


def desired_state_diff(config: Config, before: Mapping[str, ConfigValue],
                       after: Mapping[str, ConfigValue]) -> list[dict[str, Any]]:
    """Declared inputs that differ between the program run with ``before`` and with ``after``."""
    from rollback.adapters.pulumi_mocks import diff_declared_inputs, run_program_under_mocks

    settings = config.require_pulumi()
    program = _program_dir(config)
    runs = []
    for values in (before, after):
        plain, secrets = _mock_config(values)
        try:
            runs.append(run_program_under_mocks(program, plain, project=settings.project, stack=settings.stack,
                                                secret_keys=secrets))
        except Exception as exc:  # the program's own error, e.g. a pin it rejects
            message = str(getattr(exc, "message", None) or exc)
            raise PulumiError(f"the Pulumi program failed under mocks: {shorten(message, 300)}",
                              "fix the pinned config, or preview with the Pulumi CLI") from exc
    changes = diff_declared_inputs(runs[0], runs[1])
    rows: list[dict[str, Any]] = []
    for name, items in changes.items():
        kind = runs[1].get(name, runs[0].get(name, {})).get("type")
        for path, old, new in items:
            rows.append({"resource": name, "type": kind, "path": path, "old": old, "new": new})
    return rows


def _program_dir(config: Config) -> Path:
    directory = project_dir(config)
    main = "."
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        project_file = directory / name
        if project_file.is_file():
            from ruamel.yaml import YAML

            document = YAML(typ="safe").load(project_file.read_text(encoding="utf-8")) or {}
            main = str(document.get("main") or ".")
            break
    return directory / main


def _write_sidecar(config: Config, plan_file: Path, target: StackVersion, mode: str,
                   summary: Mapping[str, Any] | None) -> Path:
    """Record what the plan at ``plan_file`` was previewed for, next to it.

    In ``cli`` mode the plan exists and its digest is recorded, so that restore applies exactly
    that file. Offline, the plan is made later by the user's ``pulumi preview --save-plan``: a plan
    left at that path by an earlier preview (perhaps already applied) is removed, so that whatever
    plan restore finds there was made after this preview.
    """
    from rollback.adapters.stack_config import atomic_write

    sidecar = Path(str(plan_file) + SIDECAR_SUFFIX)
    if mode == "offline":
        try:
            plan_file.unlink(missing_ok=True)
        except OSError as exc:
            raise OperationFailed(f"cannot remove the earlier plan file {plan_file}: {exc.strerror}",
                                  "remove it by hand, then preview again") from exc
        plan_digest = None
    else:
        plan_digest = _file_digest(plan_file)
    atomic_write(sidecar, json.dumps({
        "stack": config.require_pulumi().stack,
        "env": config.env_name,
        "version": target.version,
        "mode": mode,
        "plan_sha256": plan_digest,
        "config_sha256": _file_digest(stack_config_file(config)),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "change_summary": dict(summary or {}),
    }, indent=2))
    return sidecar


def _undo_hint(exc: RollbackError, step: Step, ctx: StepContext) -> None:
    """Once the config file may have changed, every failure names the command that puts it back."""
    backup = (ctx.results.get(step.sibling("backup-config")) or {}).get("backup")
    if backup:
        exc.hint = f"{exc.hint}; to put the previous stack config back: " \
                   f"rollback infra config-restore {shlex.quote(str(backup))}"


@dataclass
class StackHandlers:
    """The Pulumi stack layer's handlers: save the stack config, pin an old version's config, preview
    (or, offline, diff the desired state under mocks), apply a saved plan, put a saved config back.

    ``source`` is the history source the plan was read from (opened from the config when not given:
    the Automation API for ``cli`` steps, the self-managed backend for ``offline`` ones)."""

    config: Config
    source: HistorySource | None = None

    def handlers(self) -> dict[str, StepHandler]:
        return {
            "infra.backup-config": handler(self.backup_config, self.check_backup_config),
            "infra.desired-state": read_only(self.desired_state),
            "infra.write-config": handler(self.write_config, self.check_write_config),
            "infra.preview": handler(self.preview, self.check_preview),
            "infra.check": read_only(self.check_restore),
            "infra.up": handler(self.up, self.check_up),
            "stack.config_restore": handler(self.config_restore, self.check_config_restore),
        }

    def _source(self, mode: str) -> HistorySource:
        if self.source is None or (mode == "cli") != isinstance(self.source, CliSource):
            self.source = _offline_source(self.config) if mode == "offline" else open_source(self.config, "cli")
        return self.source

    def _stack(self) -> PulumiStack:
        source = self._source("cli")
        assert isinstance(source, CliSource)
        return source.stack

    def _target(self, step: Step) -> Mapping[str, ConfigValue]:
        """The config of the planned version."""
        return self._source(str(step.params["mode"])).find(int(step.params["version"])).config

    def _current(self, step: Step) -> dict[str, ConfigValue]:
        """The stack's config now: the file offline, else through the Automation API."""
        if step.params["mode"] == "offline":
            return file_config(Path(step.params["path"]))
        return dict(self._stack().get_config())

    def _configs(self, step: Step) -> tuple[dict[str, ConfigValue], Mapping[str, ConfigValue]]:
        return self._current(step), self._target(step)

    # ------------------------------------------------------------ preview
    def check_backup_config(self, step: Step, ctx: StepContext) -> Check:
        earlier = ctx.earlier.get(step.id)
        would = f"save {step.params['path']} to {_backup_dir(self.config)}"
        if earlier is not None and earlier.get("backup") and Path(str(earlier["backup"])).exists():
            return Check(True, dict(earlier), would)
        return Check(False, {"would_save": str(step.params["path"])}, would)

    def backup_config(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return {"backup": str(backup_stack_config(self.config))}

    def desired_state(self, step: Step, ctx: StepContext) -> Check:
        current, target = self._configs(step)
        rows = desired_state_diff(self.config, current, target)
        return Check(False, {"changed_inputs": len(rows), "rows": rows},
                     f"{len(rows)} declared input(s) differ under mocks")

    def check_write_config(self, step: Step, ctx: StepContext) -> Check:
        mode, keys = str(step.params["mode"]), [str(k) for k in step.params["keys"]]
        would = f"write {', '.join(keys) or 'no key'} into {step.params['path']}" + (
            " through the Automation API" if mode == "cli" else "")
        if mode == "cli" and not ctx.resuming:
            # The planning read the config through the CLI a moment ago; nothing has written it since.
            return Check(False, {"would_write": keys}, would)
        current, target = self._configs(step)
        differ = [c.key for c in diff_config(current, target)]
        if sorted(differ) not in (sorted(keys), []):
            raise UnsafePrecondition(
                f"the stack config changed since the plan: keys {', '.join(sorted(differ))} differ from version "
                f"{step.params['version']}'s, the plan expected {', '.join(sorted(keys)) or 'none'}",
                "nothing was written; preview again")
        if not differ and (mode == "cli" or self._sidecar_written(step)):
            return Check(True, {"written": [], "file": str(step.params["path"]), "already": True}, would)
        return Check(False, {"would_write": keys}, would)

    def _sidecar_written(self, step: Step) -> bool:
        """Offline, the step also records (next to the plan file) what the user's preview will run with."""
        plan_file = Path(str(step.params["plan_file"]))
        try:
            meta = json.loads(Path(str(plan_file) + SIDECAR_SUFFIX).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (isinstance(meta, dict) and meta.get("version") == step.params["version"]
                and meta.get("mode") == "offline" and not meta.get("applied")
                and meta.get("config_sha256") == _file_digest(Path(step.params["path"])))

    def write_config(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        mode, keys = str(step.params["mode"]), [str(k) for k in step.params["keys"]]
        path = Path(step.params["path"])
        try:
            target = self._target(step)
            if mode == "cli":
                values = {key: target[key] for key in keys if key in target}
                remove = [key for key in keys if key not in target]
                self._stack().set_config(values, remove=remove)
                return {"written": keys, "file": str(path)}
            _write_file_config(path, target, self._current(step), self.config.require_pulumi().project)
            # No plan exists yet offline: the sidecar records the version and the config the user's
            # 'pulumi preview --save-plan' will run with, so that restore can check both.
            version = self._source(mode).find(int(step.params["version"]))
            sidecar = _write_sidecar(self.config, Path(str(step.params["plan_file"])), version, "offline", None)
            return {"written": keys, "file": str(path), "sidecar": str(sidecar)}
        except RollbackError as exc:
            _undo_hint(exc, step, ctx)
            raise

    def check_preview(self, step: Step, ctx: StepContext) -> Check:
        would = f"pulumi preview --diff --save-plan {step.params['plan_file']}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and Path(str(step.params["plan_file"])).is_file():
            return Check(True, dict(earlier), would)
        return Check(False, {"would_run": would}, would)

    def preview(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        plan_file = Path(str(step.params["plan_file"]))
        version = int(step.params["version"])
        try:
            stack = self._stack()
            try:
                plan_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OperationFailed(f"cannot create {plan_file.parent}: {exc.strerror}",
                                      "pass --plan-file in a writable directory") from exc
            result = stack.preview(plan_file, message=step.params.get("message")
                                   or f"rollback: preview of version {version}")
            sidecar = _write_sidecar(self.config, plan_file, self._source("cli").find(version), "cli",
                                     result.change_summary)
        except RollbackError as exc:
            _undo_hint(exc, step, ctx)
            raise
        return {**result.to_dict(), "sidecar": str(sidecar)}

    # ------------------------------------------------------------ restore
    def check_restore(self, step: Step, ctx: StepContext) -> Check:
        version, plan_file = int(step.params["version"]), Path(step.params["plan_file"])
        found = check_restore(self.config, version, plan_file)
        return Check(False, found, f"checked: not locked, no pending operations, plan matches version {version}")

    def check_up(self, step: Step, ctx: StepContext) -> Check:
        from rollback.adapters.pulumi import cli_available

        plan_file = Path(step.params["plan_file"])
        would = _up_command(self.config, plan_file)
        applied = _read_sidecar(plan_file).get("applied") if plan_file.is_file() else None
        if isinstance(applied, Mapping) and (step.id in ctx.earlier or ctx.resuming):
            return Check(True, {**dict(ctx.earlier.get(step.id) or {}), "applied": dict(applied)}, would)
        if not cli_available():
            raise PulumiError("the Pulumi CLI is not installed: a saved plan can only be applied by it",
                              f"run '{would}' where it is installed")
        return Check(False, {"would_run": would}, would)

    def up(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        plan_file = Path(step.params["plan_file"])
        stack = _cli_stack(self.config)
        result = stack.up(plan_file, message=f"rollback: restore version {step.params['version']}")
        # A plan is applied once: mark it so that a second restore asks for a new preview.
        applied = {"run": ctx.run_id, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                   "result": result.result}
        document = result.to_dict()
        try:
            _mark_applied(plan_file, applied)
        except RollbackError as exc:
            # The update succeeded: failing to record that must not turn it into a failed step.
            warning = (f"the stack was updated, but marking {plan_file.name} as applied failed: {exc.message}; "
                       f"do not apply this plan again (delete {plan_file} and its {SIDECAR_SUFFIX} file)")
            ctx.note(f"warning: {warning}", level="warning")
            document["warning"] = warning
        return document

    # ------------------------------------------------------------ config-restore
    def check_config_restore(self, step: Step, ctx: StepContext) -> Check:
        backup = Path(str(step.params["backup"]))
        meta = check_config_backup(self.config, backup)
        would = f"put back {meta['path']} from {backup}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:
            target = Path(str(meta["path"]))
            same = (target.read_bytes() == backup.read_bytes()) if meta.get("existed") and target.exists() \
                else (not meta.get("existed") and not target.exists())
            if same:
                return Check(True, dict(earlier), would)
        return Check(False, {"would_restore": meta["path"], "from": str(backup)}, would)

    def config_restore(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return config_restore(self.config, Path(str(step.params["backup"])))


def config_restore_plan(config: Config, backup: Path) -> Plan:
    """The one-step plan of ``config-restore`` (the backup is checked first: BadInput when it is not one)."""
    check_config_backup(config, backup)
    step = Step("restore", "stack.config_restore", f"put back the stack config saved in {backup.name}",
                target=f"stack {config.require_pulumi().stack}", params={"backup": str(backup)}, destructive=True)
    return Plan.of("restore stack config", config.env_name, [step])


def preview_report(config: Config, context: dict[str, Any], outcome: Mapping[str, Any],
                   results: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The document ``preview`` prints (``results``: the steps' results, by step id)."""
    options: PreviewOptions = context["options"]
    target: StackVersion = context["target"]
    results = results or {}
    backup = (results.get("backup-config") or {}).get("backup")
    report: dict[str, Any] = {
        "stack": config.require_pulumi().stack,
        "version": target.version,
        "latest_version": context["latest"],
        "mode": context["mode"],
        "config_file": str(context["path"]),
        "config_changes": [c.to_dict() for c in context["changes"]],
        "plan_file": str(options.plan_file),
        "undo": f"rollback infra config-restore {shlex.quote(str(backup))}" if backup else None,
        **outcome,
    }
    if context["mode"] == "cli":
        preview = results.get("preview") or {}
        report["change_summary"] = preview.get("change_summary")
        report["next"] = (f"rollback infra restore --to {target.version} "
                          f"--plan-file {shlex.quote(str(options.plan_file))}")
    else:
        report["desired_state_diff"] = list((results.get("desired-state") or {}).get("rows") or [])
        report["label"] = ("desired-state diff: the program's declared inputs with the current vs the pinned "
                           "config, run under Pulumi's mocks; NOT a diff against the cloud")
        report["run_where_cli_is_installed"] = _preview_command(config, options.plan_file)
        report["next"] = (f"then rollback infra restore --to {target.version} "
                          f"--plan-file {shlex.quote(str(options.plan_file))}")
    return report


# --------------------------------------------------------------------------- restore


def _read_sidecar(plan_file: Path) -> dict[str, Any]:
    sidecar = Path(str(plan_file) + SIDECAR_SUFFIX)
    if not plan_file.is_file():
        raise UnsafePrecondition(f"plan file {plan_file} does not exist",
                                 "run 'rollback infra preview --to VERSION --plan-file FILE' first")
    if not sidecar.is_file():
        raise UnsafePrecondition(f"plan file {plan_file} was not saved by 'rollback infra preview' "
                                 f"({sidecar.name} is missing)",
                                 "run 'rollback infra preview --to VERSION --plan-file FILE' first")
    again = "run 'rollback infra preview --to VERSION --plan-file FILE' again"
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"cannot read {sidecar}: {exc.strerror}", again) from exc
    except ValueError as exc:
        raise BadInput(f"{sidecar} is not valid JSON", again) from exc
    if not isinstance(data, dict):
        raise BadInput(f"{sidecar} is not a preview record (a JSON object)", again)
    return data


def check_restore(config: Config, version: int, plan_file: Path, *,
                  source: HistorySource | None = None) -> dict[str, Any]:
    """Every precondition of ``restore``; raises Refused subclasses naming the way out."""
    settings = config.require_pulumi()
    meta = _read_sidecar(plan_file)
    if meta.get("stack") != settings.stack:
        raise UnsafePrecondition(f"plan file {plan_file} is for stack {meta.get('stack')!r}, not {settings.stack!r}",
                                 "pass the plan file of this stack, or --env for the other one")
    if meta.get("version") != version:
        raise UnsafePrecondition(f"plan file {plan_file} was previewed for version {meta.get('version')}, "
                                 f"not {version}",
                                 f"run 'rollback infra preview --to {version} --plan-file {plan_file}' first")
    if meta.get("applied"):
        applied = meta["applied"] if isinstance(meta["applied"], dict) else {}
        raise UnsafePrecondition(f"plan file {plan_file} was already applied (run {applied.get('run')} at "
                                 f"{applied.get('at')})",
                                 f"run 'rollback infra preview --to {version} --plan-file {plan_file}' for a new plan")
    preview_again = f"run 'rollback infra preview --to {version} --plan-file {plan_file}' again"
    # Offline, no plan exists at preview time (any earlier one at that path was removed then), so
    # only an offline sidecar may lack the digest; any other without one predates it: preview again.
    offline = meta.get("mode") == "offline" and "plan_sha256" in meta
    recorded = meta.get("plan_sha256")
    if recorded is None and not offline:
        raise UnsafePrecondition(f"plan file {plan_file} has no recorded digest, so it cannot be tied to a preview",
                                 preview_again)
    if recorded is not None and recorded != _file_digest(plan_file):
        raise UnsafePrecondition(f"the plan file {plan_file.name} changed since the preview", preview_again)
    digest = _file_digest(stack_config_file(config))
    if meta.get("config_sha256") != digest:
        raise UnsafePrecondition(f"the stack config changed since the preview ({stack_config_file(config).name})",
                                 preview_again)
    backend = _backend_source(config)
    if backend is not None:
        locks = backend.locks()
        if locks:
            raise LockHeld(f"stack {settings.stack} is locked: {'; '.join(locks)}",
                           f"wait for that update to finish; if it is stale (its process is gone), run "
                           f"'pulumi cancel --stack {settings.stack}' or delete the lock file, then retry",
                           holder=locks[0])
        state = backend.current()
    elif source is not None:
        state = source.current()
    else:
        state = _cli_stack(config).export()
    if state.pending_operations:
        kinds = ", ".join(sorted({str(op.get("type", "?")) for op in state.pending_operations}))
        raise UnsafePrecondition(
            f"stack {settings.stack} has {len(state.pending_operations)} pending operation(s) ({kinds}) from an "
            "interrupted update",
            f"check them against the cloud, then 'pulumi refresh --clear-pending-creates --stack {settings.stack}', "
            f"or 'pulumi stack export --file state.json', remove pending_operations, "
            f"'pulumi stack import --file state.json'; then retry")
    return {"plan_file": str(plan_file), "version": version, "locks": 0, "pending_operations": 0,
            "previewed_at": meta.get("created_at")}


def restore_plan(config: Config, version: int, plan_file: Path) -> Plan:
    settings = config.require_pulumi()
    steps = [
        Step("check", "infra.check", f"not locked, no pending operations, plan matches version {version}",
             target=f"stack {settings.stack}", params={"plan_file": str(plan_file), "version": version}),
        Step("up", "infra.up", f"pulumi up --plan {plan_file} (restore version {version})",
             target=f"stack {settings.stack}", params={"plan_file": str(plan_file), "version": version},
             destructive=True),
    ]
    return Plan.of(f"restore stack {settings.stack} to version {version}", config.env_name, steps,
                   [f"applies exactly the plan saved by the preview: {plan_file}"])


def _mark_applied(plan_file: Path, applied: Mapping[str, Any]) -> None:
    from rollback.adapters.stack_config import atomic_write

    meta = _read_sidecar(plan_file)
    meta["applied"] = dict(applied)
    atomic_write(Path(str(plan_file) + SIDECAR_SUFFIX), json.dumps(meta, indent=2))


# --------------------------------------------------------------------------- outputs


def stack_outputs(config: Config) -> dict[str, Any]:
    """Current stack outputs (distributionId, assetsBucket, edgeFunctionName, ...).

    From the self-managed backend's current checkpoint when one is configured
    (no CLI needed), else through the Automation API. Secret outputs come back
    as ``"[secret]"``.
    """
    from rollback.stackdiff import SECRET_MASK, is_secret_value

    backend = _backend_source(config)
    if backend is not None:
        outputs = backend.current().outputs
        return {k: (SECRET_MASK if is_secret_value(v) else v) for k, v in outputs.items()}
    from rollback.adapters.pulumi import cli_available

    if not cli_available():
        raise PulumiError("cannot read the stack outputs: no Pulumi CLI and no self-managed backend configured",
                          "set pulumi.backend_url, or set the resources under [env.<name>.aws] in rollback.toml")
    return _cli_stack(config).outputs()
