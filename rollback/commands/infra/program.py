"""The program a stack version is previewed and restored with: version N's own (the commit its
update ran from, checked out in a temporary git worktree) or today's; and, offline, the
desired-state diff of the program run under Pulumi's mocks, with the refusal of anything that would
replace the assets bucket or the edge function, or replace or create the database instance
(unless ``--allow-db-replacement``): a whole-config rollback across a restore of the database
(``dbRestoreFromSnapshot`` / ``dbRestoreToTime``) would plan a new instance, which either fails half-way
(``DBInstanceAlreadyExists``, after CloudFront was already changed) or makes an empty instance the
stack's ``dbAddress``. By default today's restore keys are carried forward (:func:`carry_restore_keys`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rollback.adapters.git import GitRepo
from rollback.adapters.program_checkout import (
    checkout,
    program_changes,
    program_source,
    project_in_repo,
    require_program,
    worktree_path,
)
from rollback.adapters.program_venv import (
    VENVS,
    ProgramVenv,
    ensure_venv,
    pinned_version,
    requirements_sha,
    shared_venvs,
)
from rollback.adapters.pulumi import PulumiStack
from rollback.adapters.pulumi_mocks import diff_declared_inputs, run_program_under_mocks
from rollback.adapters.stack_config import stack_config_file
from rollback.adapters.stack_history import backend_url, cli_stack, project_dir, stack_ref
from rollback.config import Config
from rollback.errors import PulumiError, RollbackError, UnsafePrecondition
from rollback.model.stackdiff import ConfigValue, StackVersion, shorten

__all__ = [
    "DB_INSTANCE_TYPE",
    "NEVER_REPLACED",
    "RESTORE_KEYS",
    "carry_restore_keys",
    "db_steps_in_plan",
    "describe_program",
    "describe_program_env",
    "desired_state_diff",
    "preview_command",
    "program_for",
    "program_project_dir",
    "program_requirements",
    "program_rows",
    "program_stack",
    "program_venv",
    "refuse_db_steps",
    "refuse_replaced_resources",
    "refuse_replacements",
    "up_command",
]


def program_for(config: Config, version: StackVersion, *, config_only: bool = False,
                current_deps: bool = False) -> dict[str, Any]:
    """Which program previews ``version``: its own (the commit it ran from) or today's.

    Returns the JSON-only description the steps carry: ``mode`` is ``"commit"`` (that commit's
    program differs from the work tree's: run it from a worktree), ``"same"`` (it does not) or
    ``"config-only"``. Refuses (UnsafePrecondition) a version whose program cannot be checked out:
    no commit recorded, run from a dirty tree, a commit this repository lacks, no git repository.
    A ``"commit"`` program carries its ``requirements``: the file, its sha256 (the environment it runs in,
    :func:`program_venv`) and ``deps`` (``"commit"``, or ``"current"`` with ``current_deps``: today's .venv).
    """
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
    found: dict[str, Any] = {"mode": "commit" if files else "same", "commit": commit, "files": files, "dirty": False}
    if files:
        path, text = program_requirements(repo, commit, project_dir(config))
        found["requirements"] = {"path": path, "sha256": requirements_sha(text) if text is not None else None,
                                 "deps": "current" if current_deps else "commit",
                                 "pulumi_aws": pinned_version(text.decode("utf-8", "replace")) if text else None}
    return found


def program_requirements(repo: GitRepo, commit: str, project: Path) -> tuple[str, bytes | None]:
    """(path in the repository, content) of the program's ``requirements.txt`` at ``commit``: in the
    program directory that commit's ``Pulumi.yaml`` names (``main``)."""
    import posixpath

    relative = project_in_repo(repo, project).as_posix()
    base = "" if relative == "." else relative
    main = "."
    text = repo.show_file(commit, posixpath.join(base, "Pulumi.yaml") if base else "Pulumi.yaml")
    if text:
        from ruamel.yaml import YAML  # lazily: not needed by 'rollback --help'

        document = YAML(typ="safe").load(text.decode("utf-8", "replace")) or {}
        main = str(document.get("main") or ".") if isinstance(document, dict) else "."
    path = posixpath.normpath(posixpath.join(base or ".", main, "requirements.txt"))
    return path, repo.show_file(commit, path)


def program_venv(config: Config, program: Mapping[str, Any], *, version: int | None = None) -> ProgramVenv | None:
    """The environment a ``"commit"`` program runs in: built (or reused) from that commit's requirements;
    ``None`` for today's .venv (not a commit program, no requirements file, or ``--with-current-deps``)."""
    requirements = program.get("requirements") or {}
    if program.get("mode") != "commit" or requirements.get("deps") != "commit" or not requirements.get("sha256"):
        return None
    repo = GitRepo(project_dir(config))
    commit = str(program["commit"])
    text = repo.show_file(commit, str(requirements["path"]))
    if text is None or requirements_sha(text) != requirements["sha256"]:
        raise UnsafePrecondition(f"{requirements['path']} at commit {commit[:12]} is not what the preview read",
                                 "preview again")
    which = f"version {version}'s " if version is not None else ""
    return ensure_venv(config.root, text, label=f"{which}{requirements['path']} at commit {commit[:12]}")


def describe_program_env(program: Mapping[str, Any], version: int, checkpoint_aws: str | None) -> list[str]:
    """What the plan says about the environment the program runs in, and the pulumi-aws versions."""
    requirements = program.get("requirements") or {}
    if program.get("mode") != "commit":
        return []
    pinned = requirements.get("pulumi_aws")
    versions = (f"pulumi-aws: {checkpoint_aws or 'unknown'} in the stack's checkpoint, {pinned or 'not pinned'} "
                f"in version {version}'s {requirements.get('path') or 'requirements'}")
    if _major(checkpoint_aws) and _major(pinned) and _major(checkpoint_aws) != _major(pinned):
        versions += (f" (another major: the state was last written by pulumi-aws {_major(checkpoint_aws)}; "
                     "preview carefully)")
    if not requirements.get("sha256"):
        return [f"program environment: today's .venv (version {version}'s commit has no "
                f"{requirements.get('path') or 'requirements.txt'})", versions]
    if requirements.get("deps") == "current":
        return [f"program environment: today's .venv (--with-current-deps), not the dependencies version {version} "
                f"pinned in {requirements['path']}", versions]
    kept = shared_venvs() or VENVS
    return [f"program environment: version {version}'s own dependencies ({requirements['path']} at commit "
            f"{str(program['commit'])[:12]}), in {kept}/{str(requirements['sha256'])[:12]}...; today's .venv is "
            "not touched", versions]


def _major(version: str | None) -> str | None:
    return version.split(".", 1)[0] if version else None


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
    repo = GitRepo(project_dir(config))
    with checkout(repo, str(program["commit"]), project_dir=project_dir(config), root=config.root,
                  virtualenv=lambda _inner: _venv_dir(config, program)) as found:
        yield found.project_dir


def _venv_dir(config: Config, program: Mapping[str, Any]) -> Path | None:
    venv = program_venv(config, program)
    return venv.path if venv is not None else None


def program_stack(config: Config, directory: Path) -> PulumiStack:
    return cli_stack(config, directory)


def preview_command(config: Config, plan_file: Path, program: Mapping[str, Any] | None = None) -> str:
    settings = config.require_pulumi()
    return _in_program(config, program, ["pulumi", "preview", "--diff", "--stack", settings.stack,
                                         "--save-plan", str(plan_file)])


def up_command(config: Config, plan_file: Path, program: Mapping[str, Any] | None = None) -> str:
    settings = config.require_pulumi()
    return _in_program(config, program, ["pulumi", "up", "--plan", str(plan_file), "--stack", settings.stack])


def _in_program(config: Config, program: Mapping[str, Any] | None, parts: list[str]) -> str:
    """``parts`` run in the project, or in a worktree of the program's commit (made, then removed)."""
    url = backend_url(config)
    env = f"PULUMI_BACKEND_URL={shlex.quote(url)} " if url else ""
    if not program or program.get("mode") != "commit":
        return env + " ".join(shlex.quote(p) for p in [*parts, "--cwd", str(project_dir(config))])
    repo = GitRepo(project_dir(config))
    top = repo.toplevel()
    tree = worktree_path(str(program["commit"]), project_dir(config), config.root)
    inner = tree / project_in_repo(repo, project_dir(config))
    run = " ".join(shlex.quote(p) for p in [*parts, "--cwd", str(inner), "--config-file",
                                            str(stack_config_file(config))])
    git = f"git -C {shlex.quote(str(top))} worktree"
    return (f"{git} add --detach {shlex.quote(str(tree))} {program['commit']} && {env}{run}; "
            f"{git} remove --force {shlex.quote(str(tree))}")


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
                       after_project_dir: Path | None = None,
                       allow_db_replacement: bool = False) -> list[dict[str, Any]]:
    """Declared inputs that differ between the program run with ``before`` (the stack's current
    config) and with ``after``; a run the program refuses names which config it was and why.

    ``after_project_dir`` runs the ``after`` side with the program of another checkout (the
    project directory of a worktree of an earlier commit): program@HEAD + current config against
    program@commit + that version's config.
    """
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
    refuse_replacements(rows, after_label, allow_db_replacement=allow_db_replacement)
    return rows


# Resources whose replacement a rollback must never trigger: inputs that force one (and a changed
# logical name, which is a delete plus a create). The program retains the edge function and protects
# the bucket, but by then CloudFront would already point at the new (empty or not yet replicated) one.
NEVER_REPLACED: dict[str, tuple[str, tuple[str, ...]]] = {
    "aws:s3/bucket:Bucket": ("the assets bucket", ("bucket", "bucketPrefix")),
    "aws:lambda/function:Function": ("the Lambda@Edge function", ("name",)),
}


# The database instance: never replaced nor created by a rollback unless --allow-db-replacement. The inputs
# that force a new RDS instance (pulumi-aws / the Terraform provider mark them ForceNew), and a changed
# logical name (a delete and a create).
DB_INSTANCE_TYPE = "aws:rds/instance:Instance"
DB_FORCING = ("identifier", "identifierPrefix", "snapshotIdentifier", "restoreToPointInTime", "s3Import", "engine",
              "dbName", "username", "storageEncrypted", "kmsKeyId", "availabilityZone", "characterSetName",
              "ncharCharacterSetName", "timezone", "customIamInstanceProfile")
# The config keys that declare a restore of the database (each gives the instance a new identifier).
RESTORE_KEYS = ("dbRestoreFromSnapshot", "dbRestoreToTime", "dbRestoreGeneration")
ALLOW_DB = "--allow-db-replacement"


def carry_restore_keys(target: Mapping[str, ConfigValue], current: Mapping[str, ConfigValue],
                       project: str) -> tuple[dict[str, ConfigValue], list[str]]:
    """``target`` with today's database restore keys (set or unset as ``current`` has them), and the keys
    that this changed: a rollback of the other keys leaves the database instance as it is."""
    carried = dict(target)
    changed: list[str] = []
    for name in RESTORE_KEYS:
        key = f"{project}:{name}"
        if key in current:
            carried[key] = current[key]
        else:
            carried.pop(key, None)
        if (target.get(key) is None) != (current.get(key) is None) or (
                target.get(key) is not None and current.get(key) is not None
                and target[key].token != current[key].token):
            changed.append(key)
    return carried, changed


def _db_refusal(label: str, verb: str, name: str, detail: str = "") -> UnsafePrecondition:
    return UnsafePrecondition(
        f"{label} would {verb} the database instance {name}{detail}: the new one would be empty or not yet "
        "restored when the "
        "stack's dbAddress points at it, or the update would fail half-way (DBInstanceAlreadyExists) after "
        "CloudFront was already changed; nothing was kept",
        "restore the database with 'rollback db rds-restore' and keep today's restore keys (the default), or, "
        f"if a new instance is really meant, add {ALLOW_DB}")


def program_rows(config: Config, values: Mapping[str, ConfigValue], directory: Path) -> set[tuple[str, str]]:
    """(resource, path) of the declared inputs today's program and the one in ``directory`` give for the
    same config: the program change itself. Empty when the other program refuses that config."""
    try:
        rows = desired_state_diff(config, values, dict(values), after_project_dir=directory,
                                  after_label="that program with today's config", allow_db_replacement=True)
    except RollbackError:
        return set()
    return {(str(r["resource"]), str(r["path"])) for r in rows}


def refuse_replacements(rows: Sequence[Mapping[str, Any]], label: str, *, allow_db_replacement: bool = False) -> None:
    """Refuse a desired state that replaces the assets bucket or the edge function, or replaces or creates
    the database instance unless ``allow_db_replacement`` (UnsafePrecondition)."""
    for row in rows:
        if str(row.get("type")) == DB_INSTANCE_TYPE and not allow_db_replacement:
            if row["path"] == "" and row.get("old") is None:
                raise _db_refusal(label, "create", str(row["resource"]))
            if row["path"] == "" or row["path"] in DB_FORCING:
                change = (f"{row['path']}: {shorten(row['old'], 80)} -> {shorten(row['new'], 80)}" if row["path"]
                          else "its logical name changed")
                raise _db_refusal(label, "replace", str(row["resource"]), f" ({change})")
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


def refuse_db_steps(steps: Mapping[str, Sequence[str]], label: str, *, allow_db_replacement: bool = False) -> None:
    """Refuse steps (URN -> operations) that create or replace the database instance."""
    if allow_db_replacement:
        return
    for urn, ops in steps.items():
        if not _is_db_urn(urn):
            continue
        name = urn.rsplit("::", 1)[-1]
        if any(op in ("replace", "create-replacement", "delete-replaced") for op in ops):
            raise _db_refusal(label, "replace", name)
        if "create" in ops:
            raise _db_refusal(label, "create", name)


def _is_db_urn(urn: str) -> bool:
    """``urn:pulumi:<stack>::<project>::<parent types$>aws:rds/instance:Instance::<name>``."""
    parts = urn.split("::")
    return len(parts) >= 4 and parts[-2].rsplit("$", 1)[-1] == DB_INSTANCE_TYPE


def db_steps_in_plan(plan_file: Path) -> dict[str, tuple[str, ...]]:
    """The database instance's steps in a saved update plan (``resourcePlans``), by URN."""
    from rollback.adapters.pulumi import plan_file_steps

    return {urn: step.ops for urn, step in plan_file_steps(plan_file).items() if _is_db_urn(urn)}


def refuse_replaced_resources(steps: Sequence[Mapping[str, Any]], label: str, *,
                              allow_db_replacement: bool = False) -> None:
    """The same refusal for a real preview's steps (``pulumi preview``'s replace and create operations)."""
    by_urn: dict[str, list[str]] = {}
    for step in steps:
        if str(step.get("type")) == DB_INSTANCE_TYPE:
            by_urn.setdefault(str(step.get("urn", "")), []).append(str(step.get("op")))
    refuse_db_steps(by_urn, label, allow_db_replacement=allow_db_replacement)
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
                       "run 'pytest tests/infra_program -q' to see the program's error in full; nothing was changed")


def _program_dir(config: Config) -> Path:
    return _program_dir_in(project_dir(config))


def _program_dir_in(directory: Path) -> Path:
    """The program directory of the project in ``directory`` (Pulumi.yaml's ``main``)."""
    main = "."
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        project_file = directory / name
        if project_file.is_file():
            from ruamel.yaml import YAML  # lazily: not needed by 'rollback --help'

            document = YAML(typ="safe").load(project_file.read_text(encoding="utf-8")) or {}
            main = str(document.get("main") or ".")
            break
    return directory / main
