"""Planning ``rollback infra preview | restore | config-restore``: read-only, returns a Plan.

``preview`` pins an earlier update's config (and, by default, its program) and previews it, saving
the update plan with a sidecar record (``<plan>.rollback.json``) of what it was previewed for;
``restore`` checks that record (stack, version, digests, locks, pending operations) before it
applies exactly that plan. The handlers that carry the plans out are in
:mod:`rollback.commands.infra.stack_handlers`.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.adapters.git import GitRepo
from rollback.adapters.pulumi import cli_available
from rollback.adapters.stack_config import (
    atomic_write,
    backup_dir,
    check_config_backup,
    file_config,
    file_digest,
    stack_config_file,
)
from rollback.adapters.stack_history import CliSource, HistorySource, project_dir, select_source, stack_ref
from rollback.commands.infra.program import (
    ALLOW_DB,
    RESTORE_KEYS,
    carry_restore_keys,
    db_steps_in_plan,
    describe_program,
    describe_program_env,
    preview_command,
    program_for,
    refuse_db_steps,
)
from rollback.config import Config
from rollback.context import Services
from rollback.errors import BadInput, LockHeld, OperationFailed, PulumiError, RollbackError, UnsafePrecondition
from rollback.model.stackdiff import ConfigValue, StackVersion, diff_config, provider_version
from rollback.plan import Plan, Step

__all__ = ["KNOWN_PLAN_BUGS", "NUMBERING_NOTE", "SIDECAR_SUFFIX", "PreviewOptions", "check_restore",
           "cli_source", "config_restore_plan", "default_plan_file", "mark_applied", "offline_source",
           "preview_plan", "preview_report", "read_sidecar", "record_refusal", "restore_key_values", "restore_plan",
           "target_config", "write_sidecar"]


NUMBERING_NOTE = ("this backend records version 0 for every update: versions here are numbered by rollback, "
                  "oldest = 1, in update order")
SIDECAR_SUFFIX = ".rollback.json"
RELEASE_KEY = "assetsRelease"


@dataclass(frozen=True)
class PreviewOptions:
    to_version: int
    plan_file: Path
    offline: bool = False
    message: str | None = None
    config_only: bool = False
    """Preview version N's config with today's program (the old behaviour), not N's own program."""
    allow_db_replacement: bool = False
    """Take version N's database restore keys too and allow a plan that replaces or creates the instance."""
    with_current_deps: bool = False
    """Run version N's program with today's .venv, not an environment built from its requirements.txt."""


def default_plan_file(config: Config, version: int) -> Path:
    return config.resolve_path(f".rollback/plans/{stack_ref(config).name}-v{version}.plan.json")


def preview_plan(config: Config, options: PreviewOptions,
                 services: Services) -> tuple[Plan, dict[str, Any]]:
    """Read-only: find the version and what its config changes; return the plan and a context."""
    settings = config.require_pulumi()
    offline = options.offline or not cli_available()
    # Online, the config must come from the CLI (secrets decrypted, to be set back through it);
    # offline, from the self-managed backend (secrets as ciphertext, written back as 'secure:').
    source = offline_source(services) if offline else cli_source(services)
    target = source.find(options.to_version)
    latest = source.latest()
    path = stack_config_file(config)
    if offline:
        current = file_config(path)
    else:
        assert isinstance(source, CliSource)
        current = source.stack.get_config()
    wanted, carried = target_config(config, target.config, current, allow_db_replacement=options.allow_db_replacement)
    changes = diff_config(current, wanted)
    mode = "offline" if offline else "cli"
    program = program_for(config, target, config_only=options.config_only, current_deps=options.with_current_deps)
    release = next(({"key": c.key, "before": c.old, "after": c.new} for c in changes
                    if c.key.endswith(f":{RELEASE_KEY}") and not c.secret), None)
    common = {"version": target.version, "mode": mode, "path": str(path), "plan_file": str(options.plan_file),
              "program": program, "carry_db_keys": not options.allow_db_replacement, "release": release,
              "db_keys": restore_key_values(config, current)}
    backup_step = Step("backup-config", "infra.backup_config", f"save {path.name} to {backup_dir(config)}",
                       target=f"stack {settings.stack}", params={"path": str(path)})
    write_step = Step("write-config", "infra.write_config",
                      f"write version {target.version}'s config ({len(changes)} key(s) differ)"
                      + ("" if offline else " through the Automation API"),
                      target=f"stack {settings.stack}",
                      params={**common, "keys": [c.key for c in changes]},
                      destructive=bool(changes))
    if offline:
        # The program runs under mocks first: a pin it rejects stops the preview before any file changes.
        against = (f"the program of commit {str(program['commit'])[:12]} with version {target.version}'s config"
                   if program["mode"] == "commit" else "the pinned config")
        steps = [Step("desired-state", "infra.desired_state",
                      f"run the program under Pulumi's mocks: today's with the current config vs {against}",
                      target=f"stack {settings.stack}", params=common), backup_step, write_step]
    else:
        steps = [*_program_env_steps(config, program, target.version), backup_step, write_step,
                 Step("preview", "infra.preview", f"pulumi preview --diff --save-plan {options.plan_file}",
                      target=f"stack {settings.stack}",
                      params={**common, "message": options.message})]
    checkpoint_aws = _checkpoint_aws(source) if program["mode"] == "commit" else None
    notes = [describe_program(program, target.version),
             *describe_program_env(program, target.version, checkpoint_aws)]
    if offline and program["mode"] == "commit":
        notes.append("offline, the program runs under Pulumi's mocks in this process, with today's packages; "
                     "the printed 'pulumi preview' runs it with its own")
    if carried:
        notes.append(f"the database restore keys stay as they are today ({', '.join(carried)}): version "
                     f"{target.version}'s would replace or create the database instance; {ALLOW_DB} takes them too")
    elif options.allow_db_replacement:
        notes.append(f"{ALLOW_DB}: a plan that replaces or creates the database instance is allowed")
    notes += [f"config changes: {c.describe()}" for c in changes]
    if target.numbered_locally:
        notes.append(NUMBERING_NOTE)
    plan = Plan.of(f"preview stack {settings.stack} at version {target.version}", config.env_name, steps, notes)
    context = {"mode": mode, "source": source, "target": target, "current": current, "changes": changes,
               "path": path, "options": options, "latest": latest.version if latest else None, "program": program,
               "carried": carried, "release": release, "checkpoint_aws": checkpoint_aws}
    return plan, context


def restore_key_values(config: Config, current: Mapping[str, ConfigValue]) -> dict[str, str | None] | None:
    """Today's database restore keys as the plan carries them (``None`` when one is a secret: then the
    handler reads them again rather than journal a secret)."""
    project = stack_ref(config).project
    found: dict[str, str | None] = {}
    for name in RESTORE_KEYS:
        value = current.get(f"{project}:{name}")
        if value is not None and value.secret:
            return None
        found[f"{project}:{name}"] = None if value is None else value.value
    return found


def target_config(config: Config, target: Mapping[str, ConfigValue], current: Mapping[str, ConfigValue], *,
                  allow_db_replacement: bool) -> tuple[dict[str, ConfigValue], list[str]]:
    """The config the preview writes: version N's, with today's database restore keys unless
    ``allow_db_replacement``; and the keys carried forward that way."""
    if allow_db_replacement:
        return dict(target), []
    return carry_restore_keys(target, current, stack_ref(config).project)


def _program_env_steps(config: Config, program: Mapping[str, Any], version: int) -> list[Step]:
    """Build (or find) the environment version N's program runs in, before anything is written."""
    requirements = program.get("requirements") or {}
    if program.get("mode") != "commit" or requirements.get("deps") != "commit" or not requirements.get("sha256"):
        return []
    return [Step("program-env", "infra.program_env",
                 f"version {version}'s program environment from {requirements['path']} at commit "
                 f"{str(program['commit'])[:12]} (built once, then reused)",
                 target=f"stack {config.require_pulumi().stack}", params={"program": dict(program),
                                                                          "version": version})]


def _checkpoint_aws(source: HistorySource) -> str | None:
    """The pulumi-aws version the current checkpoint was written with (``None`` when it cannot be read)."""
    try:
        state = source.current()
    except RollbackError:
        return None
    return provider_version(state) if state is not None else None


def cli_source(services: Services) -> HistorySource:
    """The Automation API (checkpoints from the self-managed backend when there is one)."""
    return select_source("cli", backend=services.stack_backend, stack=services.pulumi_stack)


def offline_source(services: Services) -> HistorySource:
    source = services.stack_backend()
    if source is None:
        raise PulumiError("offline preview needs the stack history: the Pulumi CLI is not installed and no "
                          "self-managed backend is configured",
                          "set pulumi.backend_url to the file:// or s3:// backend, or install the Pulumi CLI")
    return source


def write_sidecar(config: Config, plan_file: Path, target: StackVersion, mode: str,
                  summary: Mapping[str, Any] | None, program: Mapping[str, Any] | None = None, *,
                  extra: Mapping[str, Any] | None = None) -> Path:
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
        plan_digest = file_digest(plan_file)
    record: dict[str, Any] = {
        "stack": config.require_pulumi().stack,
        "env": config.env_name,
        "version": target.version,
        "mode": mode,
        "plan_sha256": plan_digest,
        "config_sha256": file_digest(stack_config_file(config)),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "change_summary": dict(summary or {}),
        # The program the plan was (or, offline, must be) made with: restore applies it from the same commit.
        "program": dict(program or {"mode": "config-only"}),
        **dict(extra or {}),
    }
    if mode == "offline":
        # What restore names while the plan does not exist yet.
        record["preview_command"] = preview_command(config, plan_file, program)
    atomic_write(sidecar, json.dumps(record, indent=2))
    return sidecar


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
        "carried_forward": list(context.get("carried") or []),
        "plan_file": str(options.plan_file),
        "program": {**context["program"], "describe": describe_program(context["program"], target.version),
                    "environment": describe_program_env(context["program"], target.version,
                                                        context.get("checkpoint_aws")),
                    "built": (results.get("program-env") or {}).get("path"),
                    "installed_pulumi_aws": (results.get("program-env") or {}).get("pulumi_aws")},
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
        report["run_where_cli_is_installed"] = preview_command(config, options.plan_file, context["program"])
        report["next"] = (f"then rollback infra restore --to {target.version} "
                          f"--plan-file {shlex.quote(str(options.plan_file))}")
    return report


# --------------------------------------------------------------------------- restore


def read_sidecar(plan_file: Path) -> dict[str, Any]:
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
                  services: Services, allow_db_replacement: bool = False) -> dict[str, Any]:
    """Every precondition of ``restore``; raises Refused subclasses naming the way out. A plan that replaces
    or creates the database instance is refused unless ``allow_db_replacement`` (also one the user saved
    with ``pulumi preview --save-plan`` after an offline preview)."""
    settings = config.require_pulumi()
    meta = read_sidecar(plan_file)
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
    if recorded is not None and recorded != file_digest(plan_file):
        raise UnsafePrecondition(f"the plan file {plan_file.name} changed since the preview", preview_again)
    refuse_db_steps(db_steps_in_plan(plan_file), f"the plan {plan_file.name}",
                    allow_db_replacement=allow_db_replacement)
    recorded_program = meta.get("program")
    program: dict[str, Any] = recorded_program if isinstance(recorded_program, dict) else {}
    commit = str(program.get("commit"))
    if program.get("mode") == "commit" and not GitRepo(project_dir(config)).has_commit(commit):
        raise UnsafePrecondition(f"the plan was made with the program of commit {program.get('commit')}, "
                                 "which this repository no longer has", preview_again)
    digest = file_digest(stack_config_file(config))
    if meta.get("config_sha256") != digest:
        raise UnsafePrecondition(f"the stack config changed since the preview ({stack_config_file(config).name})",
                                 preview_again)
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


def restore_plan(config: Config, version: int, plan_file: Path, *, without_plan: bool = False,
                 allow_db_replacement: bool = False, services: Services,
                 release: Mapping[str, Any] | None = None) -> Plan:
    """Check, then ``pulumi up --plan``; ``without_plan``: the guarded fallback for a plan the CLI refused.
    When the preview changed ``assetsRelease``, an invalidation follows (whether or not that version's
    program has the release invalidation resource: the cache key does not include the origin path);
    ``release`` is that change when the preview has not run yet (``rollback run`` plans both at once),
    else it is read from the preview's record."""
    settings = config.require_pulumi()
    params: dict[str, Any] = {"plan_file": str(plan_file), "version": version,
                              "allow_db_replacement": allow_db_replacement}
    if without_plan:
        up = Step("up", "infra.up", f"pulumi up without the plan, only if a fresh preview takes exactly the steps "
                                    f"of {plan_file.name}, and only those (--target) (restore version {version})",
                  target=f"stack {settings.stack}", params={**params, "without_plan": True}, destructive=True)
        notes = [f"the guarded fallback for a plan 'pulumi up --plan' refused: {plan_file} names the steps allowed; "
                 "a fresh 'pulumi preview --json' from the same program and config must take exactly those, with "
                 "the same new inputs, and only the planned resources are updated"]
    else:
        up = Step("up", "infra.up", f"pulumi up --plan {plan_file} (restore version {version})",
                  target=f"stack {settings.stack}", params=params, destructive=True)
        notes = [f"applies exactly the plan saved by the preview: {plan_file}"]
    if allow_db_replacement:
        notes.append(f"{ALLOW_DB}: the plan may replace or create the database instance")
    steps = [Step("check", "infra.check", f"not locked, no pending operations, plan matches version {version}",
                  target=f"stack {settings.stack}", params=params), up]
    invalidate, note = _release_invalidation(config, plan_file, services, release)
    steps += invalidate
    notes += note
    return Plan.of(f"restore stack {settings.stack} to version {version}", config.env_name, steps, notes)


def _release_invalidation(config: Config, plan_file: Path, services: Services,
                          release: Mapping[str, Any] | None) -> tuple[list[Step], list[str]]:
    """The invalidation after an update that changes ``assetsRelease`` (else read from the preview's record)."""
    import uuid

    from rollback.commands.infra.resources import resolve_resources

    if release is None:
        try:
            release = json.loads(Path(str(plan_file) + SIDECAR_SUFFIX).read_text(encoding="utf-8")).get("release")
        except (OSError, ValueError, AttributeError):
            return [], []  # the check step refuses such a plan with the reason
    if not isinstance(release, dict) or not release.get("after"):
        return [], []
    change = f"{release.get('before') or '(unset)'} -> {release['after']}"
    try:
        distribution = resolve_resources(config, need=("distribution",), services=services).distribution
    except RollbackError as exc:
        return [], [f"assetsRelease changes ({change}) but no distribution is known to invalidate ({exc.message}): "
                    "CloudFront keeps serving the other release's cached objects until they expire; run "
                    "'rollback infra invalidate --paths \"/*\" --distribution ID' after the restore"]
    step = Step("invalidate", "infra.invalidate_release",
                f"invalidate what the assets origin serves (assetsRelease {change}): the cache key does not include "
                "the origin path", target=f"distribution {distribution}",
                params={"distribution": distribution, "release": dict(release),
                        "caller_reference": f"rollback-{uuid.uuid4().hex}"}, layer="edge")
    return [step], [f"assetsRelease changes ({change}): the paths the assets origin serves are invalidated after "
                    "the update, whether or not that version's program invalidates them itself"]


def record_refusal(plan_file: Path, refusal: Mapping[str, Any]) -> None:
    """Note in the sidecar that ``pulumi up --plan`` refused this plan (what ``--without-plan`` requires)."""
    meta = read_sidecar(plan_file)
    meta["refused"] = dict(refusal)
    atomic_write(Path(str(plan_file) + SIDECAR_SUFFIX), json.dumps(meta, indent=2))


KNOWN_PLAN_BUGS = ("pulumi/pulumi#11587 (a Lambda function whose code is an Archive), #16670 and #16681 "
                   "(stack outputs)")


def mark_applied(plan_file: Path, applied: Mapping[str, Any]) -> None:
    meta = read_sidecar(plan_file)
    meta["applied"] = dict(applied)
    atomic_write(Path(str(plan_file) + SIDECAR_SUFFIX), json.dumps(meta, indent=2))
