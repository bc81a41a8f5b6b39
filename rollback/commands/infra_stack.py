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
import json
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.adapters.stack_config import (
    atomic_write,
    backup_dir,
    backup_stack_config,
    check_config_backup,
    config_restore,
    file_config,
    file_digest,
    stack_config_file,
    write_file_config,
)
from rollback.adapters.stack_history import (
    BackendSource,
    CliSource,
    HistorySource,
    backend_source,
    backend_url,
    cli_stack,
    find_version,
    open_source,
    project_dir,
    select_source,
    stack_ref,
)
from rollback.context import Services
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
    diff_config,
    diff_states,
    shorten,
)

if TYPE_CHECKING:
    from rollback.adapters.pulumi import PlanViolated, PulumiStack, StepComparison
    from rollback.config import Config
    from rollback.runner import StepContext, StepHandler

__all__ = [
    "BackendSource",
    "CliSource",
    "HistorySource",
    "PreviewOptions",
    "StackHandlers",
    "backend_url",
    "check_config_backup",
    "config_restore",
    "config_restore_plan",
    "diff",
    "history",
    "open_source",
    "preview_plan",
    "project_dir",
    "restore_plan",
    "stack_outputs",
    "stack_ref",
]

NUMBERING_NOTE = ("this backend records version 0 for every update: versions here are numbered by rollback, "
                  "oldest = 1, in update order")
SIDECAR_SUFFIX = ".rollback.json"


# --------------------------------------------------------------------------- sources
# HistorySource and its implementations live in rollback.adapters.stack_history (re-exported here);
# commands get them from rollback.context.Services.

_backend_source = backend_source
_cli_stack = cli_stack
_find = find_version


# --------------------------------------------------------------------------- history / diff


def history(config: Config, *, limit: int | None = None, via: str = "auto",
            services: Services | None = None) -> dict[str, Any]:
    """Every update (oldest first) with the config keys each changed.

    ``limit`` keeps the newest N and reads only the newest N+1 updates: the extra one
    says what the oldest listed update changed.
    """
    source = (services or Services(config)).stack_source(via)
    versions = source.history(newest=limit + 1 if limit else None)
    rows: list[dict[str, Any]] = []
    previous: Mapping[str, ConfigValue] | None = None
    for index, version in enumerate(versions):
        row = version.to_dict()
        del row["config"]
        # The oldest update read has no predecessor here unless it is the first update.
        known = index > 0 or version.version == 1 or not limit
        row["config_changed"] = changed_config_keys(previous, version.config) if known else None
        previous = version.config
        rows.append(row)
    if limit:
        rows = rows[-limit:]
    numbered_locally = any(v.numbered_locally for v in versions)
    return {
        "stack": config.require_pulumi().stack,
        "source": source.describe(),
        "count": source.total(),
        "numbered_locally": numbered_locally,
        "notes": [NUMBERING_NOTE] if numbered_locally else [],
        "versions": rows,
    }


def diff(config: Config, from_version: int, to_version: int | None = None, *, via: str = "auto",
         services: Services | None = None) -> dict[str, Any]:
    """Config and resource differences between two versions (``to_version`` None = current state)."""
    source = (services or Services(config)).stack_source(via)
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
# Backup and restore of Pulumi.<stack>.yaml live in rollback.adapters.stack_config (re-exported here).

_file_digest = file_digest
_write_file_config = write_file_config
_backup_dir = backup_dir


# --------------------------------------------------------------------------- preview


@dataclass(frozen=True)
class PreviewOptions:
    to_version: int
    plan_file: Path
    offline: bool = False
    message: str | None = None
    config_only: bool = False
    """Preview version N's config with today's program (the old behaviour), not N's own program."""


# --------------------------------------------------------------------------- the program of version N


def program_for(config: Config, version: StackVersion, *, config_only: bool = False) -> dict[str, Any]:
    """Which program previews ``version``: its own (the commit it ran from) or today's.

    Returns the JSON-only description the steps carry: ``mode`` is ``"commit"`` (that commit's
    program differs from the work tree's: run it from a worktree), ``"same"`` (it does not) or
    ``"config-only"``. Refuses (UnsafePrecondition) a version whose program cannot be checked out:
    no commit recorded, run from a dirty tree, a commit this repository lacks, no git repository.
    """
    from rollback.adapters.git import GitRepo
    from rollback.adapters.program_checkout import program_changes, program_source, require_program

    source = program_source(version.version, version.environment)
    if config_only:
        return {"mode": "config-only", "commit": source.commit, "files": [], "dirty": source.dirty}
    repo = GitRepo(project_dir(config))
    if not repo.is_repository():
        raise UnsafePrecondition(
            f"the Pulumi project {project_dir(config)} is not in a git repository, so version {version.version}'s "
            "program cannot be checked out",
            "preview it with today's program: add --config-only")
    commit = require_program(repo, source)
    files = program_changes(repo, commit, project_dir(config))
    return {"mode": "commit" if files else "same", "commit": commit, "files": files, "dirty": False}


def describe_program(program: Mapping[str, Any], version: int) -> str:
    commit = str(program.get("commit") or "")[:12]
    if program.get("mode") == "commit":
        files = ", ".join(program.get("files") or [])
        return f"program: version {version}'s own, from commit {commit} (differs from the work tree in {files})"
    if program.get("mode") == "same":
        return f"program: today's, the same as version {version}'s commit {commit}"
    return "program: today's (--config-only): only the config goes back" + (
        f"; version {version} ran from commit {commit}" if commit else "")


@contextmanager
def program_project_dir(config: Config, program: Mapping[str, Any] | None) -> Iterator[Path]:
    """The project directory to run Pulumi in: a worktree of the program's commit (removed on exit) when
    it differs from the work tree's, else the project itself."""
    if not program or program.get("mode") != "commit":
        yield project_dir(config)
        return
    from rollback.adapters.git import GitRepo
    from rollback.adapters.program_checkout import checkout

    repo = GitRepo(project_dir(config))
    with checkout(repo, str(program["commit"]), project_dir=project_dir(config), root=config.root) as found:
        yield found.project_dir


def _program_stack(config: Config, directory: Path) -> PulumiStack:
    return cli_stack(config, directory)


def default_plan_file(config: Config, version: int) -> Path:
    return config.resolve_path(f".rollback/plans/{stack_ref(config).name}-v{version}.plan.json")


def _preview_command(config: Config, plan_file: Path, program: Mapping[str, Any] | None = None) -> str:
    settings = config.require_pulumi()
    return _in_program(config, program, ["pulumi", "preview", "--diff", "--stack", settings.stack,
                                         "--save-plan", str(plan_file)])


def _up_command(config: Config, plan_file: Path, program: Mapping[str, Any] | None = None) -> str:
    settings = config.require_pulumi()
    return _in_program(config, program, ["pulumi", "up", "--plan", str(plan_file), "--stack", settings.stack])


def _in_program(config: Config, program: Mapping[str, Any] | None, parts: list[str]) -> str:
    """``parts`` run in the project, or in a worktree of the program's commit (made, then removed)."""
    url = backend_url(config)
    env = f"PULUMI_BACKEND_URL={shlex.quote(url)} " if url else ""
    if not program or program.get("mode") != "commit":
        return env + " ".join(shlex.quote(p) for p in [*parts, "--cwd", str(project_dir(config))])
    from rollback.adapters.git import GitRepo
    from rollback.adapters.program_checkout import project_in_repo, worktree_path

    repo = GitRepo(project_dir(config))
    top = repo.toplevel()
    tree = worktree_path(str(program["commit"]), project_dir(config), config.root)
    inner = tree / project_in_repo(repo, project_dir(config))
    run = " ".join(shlex.quote(p) for p in [*parts, "--cwd", str(inner), "--config-file",
                                            str(stack_config_file(config))])
    git = f"git -C {shlex.quote(str(top))} worktree"
    return (f"{git} add --detach {shlex.quote(str(tree))} {program['commit']} && {env}{run}; "
            f"{git} remove --force {shlex.quote(str(tree))}")


def preview_plan(config: Config, options: PreviewOptions,
                 services: Services | None = None) -> tuple[Plan, dict[str, Any]]:
    """Read-only: find the version and what its config changes; return the plan and a context."""
    from rollback.adapters.pulumi import cli_available

    settings = config.require_pulumi()
    offline = options.offline or not cli_available()
    # Online, the config must come from the CLI (secrets decrypted, to be set back through it);
    # offline, from the self-managed backend (secrets as ciphertext, written back as 'secure:').
    services = services or Services(config)
    source = _offline_source(services) if offline else _cli_source(services)
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
    program = program_for(config, target, config_only=options.config_only)
    common = {"version": target.version, "mode": mode, "path": str(path), "plan_file": str(options.plan_file),
              "program": program}
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
        against = (f"the program of commit {str(program['commit'])[:12]} with version {target.version}'s config"
                   if program["mode"] == "commit" else "the pinned config")
        steps = [Step("desired-state", "infra.desired-state",
                      f"run the program under Pulumi's mocks: today's with the current config vs {against}",
                      target=f"stack {settings.stack}", params=common), backup_step, write_step]
    else:
        steps = [backup_step, write_step,
                 Step("preview", "infra.preview", f"pulumi preview --diff --save-plan {options.plan_file}",
                      target=f"stack {settings.stack}",
                      params={**common, "message": options.message})]
    notes = [describe_program(program, target.version)]
    if program["mode"] == "commit" and any(f.endswith("requirements.txt") for f in program["files"]):
        notes.append(f"commit {str(program['commit'])[:12]} pins other program dependencies "
                     "(infra/requirements.txt): the worktree uses the project's .venv; run 'pulumi install' in it "
                     "first for an exact preview")
    notes += [f"config changes: {c.describe()}" for c in changes]
    if target.numbered_locally:
        notes.append(NUMBERING_NOTE)
    plan = Plan.of(f"preview stack {settings.stack} at version {target.version}", config.env_name, steps, notes)
    context = {"mode": mode, "source": source, "target": target, "current": current, "changes": changes,
               "path": path, "options": options, "latest": latest.version if latest else None, "program": program}
    return plan, context


def _cli_source(services: Services) -> HistorySource:
    """The Automation API (checkpoints from the self-managed backend when there is one)."""
    return select_source("cli", backend=services.stack_backend, stack=services.pulumi_stack)


def _offline_source(services: Services) -> HistorySource:
    source = services.stack_backend()
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
                       after: Mapping[str, ConfigValue], *, after_label: str = "the pinned version's config",
                       after_project_dir: Path | None = None) -> list[dict[str, Any]]:
    """Declared inputs that differ between the program run with ``before`` (the stack's current
    config) and with ``after``; a run the program refuses names which config it was and why.

    ``after_project_dir`` runs the ``after`` side with the program of another checkout (the
    project directory of a worktree of an earlier commit): program@HEAD + current config against
    program@commit + that version's config.
    """
    from rollback.adapters.pulumi_mocks import diff_declared_inputs, run_program_under_mocks

    ref = stack_ref(config)
    program = _program_dir(config)
    stack_file = stack_config_file(config)
    runs = []
    for values, label in ((before, f"the current stack config ({_display(config, stack_file)})"),
                          (after, after_label)):
        if values is after and after_project_dir is not None:
            program = _program_dir_in(after_project_dir)
        plain, secrets = _mock_config(values)
        try:
            runs.append(run_program_under_mocks(program, plain, project=ref.project, stack=ref.name,
                                                secret_keys=secrets))
        except Exception as exc:  # the program's own error, e.g. a key it requires or a pin it rejects
            raise _program_failure(exc, label, is_current=values is before, stack_file=stack_file,
                                   program=program) from exc
    changes = diff_declared_inputs(runs[0], runs[1])
    rows: list[dict[str, Any]] = []
    for name, items in changes.items():
        kind = runs[1].get(name, runs[0].get(name, {})).get("type")
        for path, old, new in items:
            rows.append({"resource": name, "type": kind, "path": path, "old": old, "new": new})
    refuse_replacements(rows, after_label)
    return rows


# Resources whose replacement a rollback must never trigger: inputs that force one (and a changed
# logical name, which is a delete plus a create). The program retains the edge function and protects
# the bucket, but by then CloudFront would already point at the new (empty or not yet replicated) one.
NEVER_REPLACED: dict[str, tuple[str, tuple[str, ...]]] = {
    "aws:s3/bucket:Bucket": ("the assets bucket", ("bucket", "bucketPrefix")),
    "aws:lambda/function:Function": ("the Lambda@Edge function", ("name",)),
}


def _program_rows(config: Config, values: Mapping[str, ConfigValue], directory: Path) -> set[tuple[str, str]]:
    """(resource, path) of the declared inputs today's program and the one in ``directory`` give for the
    same config: the program change itself. Empty when the other program refuses that config."""
    try:
        rows = desired_state_diff(config, values, dict(values), after_project_dir=directory,
                                  after_label="that program with today's config")
    except RollbackError:
        return set()
    return {(str(r["resource"]), str(r["path"])) for r in rows}


def refuse_replacements(rows: Sequence[Mapping[str, Any]], label: str) -> None:
    """Refuse a desired state that replaces the assets bucket or the edge function (UnsafePrecondition)."""
    for row in rows:
        what = NEVER_REPLACED.get(str(row.get("type")))
        if what is None:
            continue
        noun, forcing = what
        if row["path"] == "" or row["path"] in forcing:
            change = (f"{row['path']}: {shorten(row['old'], 80)} -> {shorten(row['new'], 80)}" if row["path"]
                      else "its logical name changed (a delete and a create)")
            raise UnsafePrecondition(
                f"{label} would replace {noun} {row['resource']} ({change}): CloudFront would be re-pointed at "
                "the new one before the old one could be removed (a Lambda@Edge function stays undeletable for "
                "hours; an emptied bucket serves nothing)",
                f"keep {noun}'s name as it is now: restore the other keys, or this version's program, by hand; "
                "a rename is a migration, not a rollback")


def refuse_replaced_resources(steps: Sequence[Mapping[str, Any]], label: str) -> None:
    """The same refusal for a real preview's steps (``pulumi preview``'s replace operations)."""
    for step in steps:
        what = NEVER_REPLACED.get(str(step.get("type")))
        if what is None or step.get("op") not in ("replace", "create-replacement", "delete-replaced"):
            continue
        noun, _ = what
        name = str(step.get("urn", "")).rsplit("::", 1)[-1]
        keys = ", ".join(step.get("keys") or []) or "its name"
        raise UnsafePrecondition(
            f"{label} would replace {noun} {name} (because of {keys}): CloudFront would be re-pointed at the new one "
            "before the old one could be removed (a Lambda@Edge function stays undeletable for hours; an emptied "
            "bucket serves nothing); the plan was not kept",
            f"keep {noun}'s name as it is now: restore the other keys, or this version's program, by hand; "
            "a rename is a migration, not a rollback")


def _display(config: Config, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(config.root.resolve()))
    except ValueError:
        return str(path)


def _program_failure(exc: BaseException, label: str, *, is_current: bool, stack_file: Path,
                     program: Path) -> PulumiError:
    """One line naming the config the program refused (the current one or the pinned one) and what to do."""
    message = shorten(str(getattr(exc, "message", None) or exc), 300)
    rejected = message.startswith("config ")  # infra.settings.ConfigError, as the program reports it
    if rejected and is_current:
        return PulumiError(f"the program rejects {label}: {message}",
                           f"fix {stack_file.name} first (nothing was changed); the message says how")
    if rejected:
        return PulumiError(f"the program rejects {label}: {message}",
                           "that version's config does not run with this program; pick another version, or "
                           "set the value the message asks for in the pinned config")
    which = "the current stack config" if is_current else label
    return PulumiError(f"the Pulumi program in {program} failed under mocks with {which}: "
                       f"{type(exc).__name__}: {message}",
                       "run 'pytest tests/infra -q' to see the program's error in full; nothing was changed")


def _program_dir(config: Config) -> Path:
    return _program_dir_in(project_dir(config))


def _program_dir_in(directory: Path) -> Path:
    """The program directory of the project in ``directory`` (Pulumi.yaml's ``main``)."""
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
                   summary: Mapping[str, Any] | None, program: Mapping[str, Any] | None = None) -> Path:
    """Record what the plan at ``plan_file`` was previewed for, next to it.

    In ``cli`` mode the plan exists and its digest is recorded, so that restore applies exactly
    that file. Offline, the plan is made later by the user's ``pulumi preview --save-plan``: a plan
    left at that path by an earlier preview (perhaps already applied) is removed, so that whatever
    plan restore finds there was made after this preview.
    """
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
    record: dict[str, Any] = {
        "stack": config.require_pulumi().stack,
        "env": config.env_name,
        "version": target.version,
        "mode": mode,
        "plan_sha256": plan_digest,
        "config_sha256": _file_digest(stack_config_file(config)),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "change_summary": dict(summary or {}),
        # The program the plan was (or, offline, must be) made with: restore applies it from the same commit.
        "program": dict(program or {"mode": "config-only"}),
    }
    if mode == "offline":
        # What restore names while the plan does not exist yet.
        record["preview_command"] = _preview_command(config, plan_file, program)
    atomic_write(sidecar, json.dumps(record, indent=2))
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
    services: Services | None = None

    def __post_init__(self) -> None:
        if self.services is None:
            self.services = Services(self.config)

    @property
    def _services(self) -> Services:
        assert self.services is not None
        return self.services

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
            self.source = _offline_source(self._services) if mode == "offline" else _cli_source(self._services)
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
        program = step.params.get("program") or {}
        version = int(step.params["version"])
        if program.get("mode") == "commit":
            commit = str(program["commit"])
            with program_project_dir(self.config, program) as directory:
                rows = desired_state_diff(self.config, current, target, after_project_dir=directory,
                                          after_label=f"version {version}'s program (commit {commit[:12]}) "
                                                      "with its config")
                # Which differences the program makes: today's config under that program.
                by_program = _program_rows(self.config, current, directory)
            for row in rows:
                row["cause"] = "program" if (row["resource"], row["path"]) in by_program else "config"
        else:
            rows = desired_state_diff(self.config, current, target)
            for row in rows:
                row["cause"] = "config"
        return Check(False, {"changed_inputs": len(rows), "rows": rows, "program": dict(program)},
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
            sidecar = _write_sidecar(self.config, Path(str(step.params["plan_file"])), version, "offline", None,
                                     step.params.get("program"))
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
        program = step.params.get("program") or {}
        try:
            try:
                plan_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OperationFailed(f"cannot create {plan_file.parent}: {exc.strerror}",
                                      "pass --plan-file in a writable directory") from exc
            message = step.params.get("message") or f"rollback: preview of version {version}"
            if program.get("mode") == "commit":
                # Version N's program, from a worktree of its commit, with version N's config (just written).
                with program_project_dir(self.config, program) as directory:
                    result = _program_stack(self.config, directory).preview(
                        plan_file, message=message, config_file=stack_config_file(self.config))
            else:
                result = self._stack().preview(plan_file, message=message)
            try:
                refuse_replaced_resources(result.steps, f"version {version}")
            except UnsafePrecondition:
                plan_file.unlink(missing_ok=True)  # a plan that must not be applied is not kept
                raise
            sidecar = _write_sidecar(self.config, plan_file, self._source("cli").find(version), "cli",
                                     result.change_summary, program)
        except RollbackError as exc:
            _undo_hint(exc, step, ctx)
            raise
        return {**result.to_dict(), "sidecar": str(sidecar), "program": dict(program)}

    # ------------------------------------------------------------ restore
    def check_restore(self, step: Step, ctx: StepContext) -> Check:
        version, plan_file = int(step.params["version"]), Path(step.params["plan_file"])
        found = check_restore(self.config, version, plan_file, services=self._services)
        return Check(False, found, f"checked: not locked, no pending operations, plan matches version {version}")

    def check_up(self, step: Step, ctx: StepContext) -> Check:
        from rollback.adapters.pulumi import cli_available

        plan_file = Path(step.params["plan_file"])
        meta = _read_sidecar(plan_file) if plan_file.is_file() else {}
        would = _up_command(self.config, plan_file, meta.get("program"))
        if step.params.get("without_plan"):
            would = ("pulumi preview --json, compared with the plan's steps, then pulumi up without the plan "
                     f"(the plan refused: {plan_file.name})")
        applied = meta.get("applied")
        if isinstance(applied, Mapping) and (step.id in ctx.earlier or ctx.resuming):
            return Check(True, {**dict(ctx.earlier.get(step.id) or {}), "applied": dict(applied)}, would)
        if not cli_available():
            raise PulumiError("the Pulumi CLI is not installed: a saved plan can only be applied by it",
                              f"run '{would}' where it is installed")
        return Check(False, {"would_run": would}, would)

    def up(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.adapters.pulumi import PlanViolated

        plan_file = Path(step.params["plan_file"])
        meta = _read_sidecar(plan_file)
        program = meta.get("program") or {}
        version = int(step.params["version"])
        message = f"rollback: restore version {version}"
        without_plan = bool(step.params.get("without_plan"))
        if without_plan and not isinstance(meta.get("refused"), Mapping):
            raise UnsafePrecondition(f"--without-plan is for a plan 'pulumi up --plan' refused, and {plan_file.name} "
                                     "never was", "apply it with the plan: drop --without-plan")
        config_file = stack_config_file(self.config) if program.get("mode") == "commit" else None
        extra: dict[str, Any] = {}
        # The same commit's program the plan was made with (a worktree, removed afterwards), or today's.
        with program_project_dir(self.config, program) as directory:
            stack = _program_stack(self.config, directory) if config_file else self._services.pulumi_stack()
            if without_plan:
                comparison = self._compare_with_plan(stack, plan_file, config_file, version)
                ctx.note(f"a fresh preview takes exactly the plan's steps ({comparison.describe()}); "
                         "applying them without the plan")
                result = stack.up(None, message=f"{message} (without the refused plan)", config_file=config_file)
                extra = {"without_plan": True, "comparison": comparison.to_dict()}
            else:
                try:
                    result = stack.up(plan_file, message=message, config_file=config_file)
                except PlanViolated as exc:
                    raise self._refused(exc, stack, plan_file, config_file, version, ctx) from exc
        # A plan is applied once: mark it so that a second restore asks for a new preview.
        applied = {"run": ctx.run_id, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                   "result": result.result, **({"without_plan": True} if without_plan else {})}
        document = {**result.to_dict(), **extra}
        try:
            _mark_applied(plan_file, applied)
        except RollbackError as exc:
            # The update succeeded: failing to record that must not turn it into a failed step.
            warning = (f"the stack was updated, but marking {plan_file.name} as applied failed: {exc.message}; "
                       f"do not apply this plan again (delete {plan_file} and its {SIDECAR_SUFFIX} file)")
            ctx.note(f"warning: {warning}", level="warning")
            document["warning"] = warning
        return document

    def _compare_with_plan(self, stack: PulumiStack, plan_file: Path, config_file: Path | None,
                           version: int) -> StepComparison:
        """A fresh ``preview --json`` against the saved plan; refuses (UnsafePrecondition) when they differ."""
        from rollback.adapters.pulumi import compare_steps, plan_file_steps

        comparison = compare_steps(plan_file_steps(plan_file),
                                   stack.preview_steps(message=f"rollback: check of version {version}'s plan",
                                                       config_file=config_file))
        if not comparison.approved:
            raise UnsafePrecondition(
                f"a fresh preview does not take the steps of {plan_file.name}: {comparison.describe()}; "
                "not applying anything without the plan",
                f"the stack or the program moved since the preview: run 'rollback infra preview --to {version} "
                f"--plan-file {plan_file}' again")
        return comparison

    def _refused(self, exc: PlanViolated, stack: PulumiStack, plan_file: Path, config_file: Path | None,
                 version: int, ctx: StepContext) -> RollbackError:
        """``up --plan`` refused the plan: compare a fresh preview with it and say what can be done."""
        violations = "; ".join(v.describe() for v in exc.violations)
        refusal: dict[str, Any] = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "run": ctx.run_id,
                                   "violations": [v.to_dict() for v in exc.violations]}
        try:
            comparison = self._compare_with_plan(stack, plan_file, config_file, version)
        except UnsafePrecondition as differs:
            refusal["fresh_preview"] = "differs"
            _record_refusal(plan_file, refusal)
            return UnsafePrecondition(f"pulumi up refused the saved plan ({violations}), and {differs.message}",
                                      differs.hint, violations=refusal["violations"])
        refusal["fresh_preview"] = comparison.to_dict()
        _record_refusal(plan_file, refusal)
        again = f"rollback infra restore --to {version} --plan-file {shlex.quote(str(plan_file))} --without-plan"
        return UnsafePrecondition(
            f"pulumi up refused the saved plan although nothing changed: {violations} (a known Pulumi update-plan "
            f"bug: {KNOWN_PLAN_BUGS}); a fresh preview from the same program and config takes exactly the plan's "
            f"steps ({comparison.describe()})",
            f"to apply those steps with a plain 'pulumi up' after checking them again: {again}",
            violations=refusal["violations"], fallback=again)

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
        "program": {**context["program"], "describe": describe_program(context["program"], target.version)},
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
        against = ("version's program (commit " + str(context["program"]["commit"])[:12] + ") and config"
                   if context["program"]["mode"] == "commit" else "pinned config")
        report["label"] = (f"desired-state diff: the program's declared inputs with the current config vs the "
                           f"{against}, run under Pulumi's mocks; NOT a diff against the cloud")
        report["run_where_cli_is_installed"] = _preview_command(config, options.plan_file, context["program"])
        report["next"] = (f"then rollback infra restore --to {target.version} "
                          f"--plan-file {shlex.quote(str(options.plan_file))}")
    return report


# --------------------------------------------------------------------------- restore


def _read_sidecar(plan_file: Path) -> dict[str, Any]:
    sidecar = Path(str(plan_file) + SIDECAR_SUFFIX)
    if not plan_file.is_file():
        waiting = _offline_waiting_for_plan(sidecar)
        if waiting is not None:
            raise UnsafePrecondition(
                f"plan file {plan_file} does not exist yet: the offline preview of version {waiting['version']} "
                "pinned its config but cannot save a plan without the Pulumi CLI",
                f"run where the Pulumi CLI is installed: {waiting['preview_command']} ; then run this restore again")
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


def _offline_waiting_for_plan(sidecar: Path) -> dict[str, Any] | None:
    """The offline preview's record when it waits for the user's ``pulumi preview --save-plan``."""
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("mode") == "offline" and data.get("preview_command"):
        return data
    return None


def check_restore(config: Config, version: int, plan_file: Path, *, source: HistorySource | None = None,
                  services: Services | None = None) -> dict[str, Any]:
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
    recorded_program = meta.get("program")
    program: dict[str, Any] = recorded_program if isinstance(recorded_program, dict) else {}
    if program.get("mode") == "commit":
        from rollback.adapters.git import GitRepo

        if not GitRepo(project_dir(config)).has_commit(str(program.get("commit"))):
            raise UnsafePrecondition(f"the plan was made with the program of commit {program.get('commit')}, "
                                     "which this repository no longer has", preview_again)
    digest = _file_digest(stack_config_file(config))
    if meta.get("config_sha256") != digest:
        raise UnsafePrecondition(f"the stack config changed since the preview ({stack_config_file(config).name})",
                                 preview_again)
    services = services or Services(config)
    backend = services.stack_backend()
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
        state = services.pulumi_stack().export()
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


def restore_plan(config: Config, version: int, plan_file: Path, *, without_plan: bool = False) -> Plan:
    """Check, then ``pulumi up --plan``; ``without_plan``: the guarded fallback for a plan the CLI refused."""
    settings = config.require_pulumi()
    params = {"plan_file": str(plan_file), "version": version}
    if without_plan:
        up = Step("up", "infra.up", f"pulumi up without the plan, only if a fresh preview takes exactly the steps "
                                    f"of {plan_file.name} (restore version {version})",
                  target=f"stack {settings.stack}", params={**params, "without_plan": True}, destructive=True)
        notes = [f"the guarded fallback for a plan 'pulumi up --plan' refused: {plan_file} names the steps allowed; "
                 "a fresh 'pulumi preview --json' from the same program and config must take exactly those"]
    else:
        up = Step("up", "infra.up", f"pulumi up --plan {plan_file} (restore version {version})",
                  target=f"stack {settings.stack}", params=params, destructive=True)
        notes = [f"applies exactly the plan saved by the preview: {plan_file}"]
    steps = [Step("check", "infra.check", f"not locked, no pending operations, plan matches version {version}",
                  target=f"stack {settings.stack}", params=params), up]
    return Plan.of(f"restore stack {settings.stack} to version {version}", config.env_name, steps, notes)


def _record_refusal(plan_file: Path, refusal: Mapping[str, Any]) -> None:
    """Note in the sidecar that ``pulumi up --plan`` refused this plan (what ``--without-plan`` requires)."""
    meta = _read_sidecar(plan_file)
    meta["refused"] = dict(refusal)
    atomic_write(Path(str(plan_file) + SIDECAR_SUFFIX), json.dumps(meta, indent=2))


KNOWN_PLAN_BUGS = ("pulumi/pulumi#11587 (a Lambda function whose code is an Archive), #16670 and #16681 "
                   "(stack outputs)")


def _mark_applied(plan_file: Path, applied: Mapping[str, Any]) -> None:
    meta = _read_sidecar(plan_file)
    meta["applied"] = dict(applied)
    atomic_write(Path(str(plan_file) + SIDECAR_SUFFIX), json.dumps(meta, indent=2))


# --------------------------------------------------------------------------- outputs


def stack_outputs(config: Config, services: Services | None = None) -> dict[str, Any]:
    """Current stack outputs (distributionId, assetsBucket, edgeFunctionName, ...).

    From the self-managed backend's current checkpoint when one is configured
    (no CLI needed), else through the Automation API. Secret outputs come back
    as ``"[secret]"``.
    """
    return (services or Services(config)).stack_outputs()
