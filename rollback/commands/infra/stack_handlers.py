"""The Pulumi stack layer's step handlers (what :func:`rollback.runner.execute` runs for the plans
of :mod:`rollback.commands.infra.stack_plan`): save the stack config, pin an old version's config,
preview (or, offline, diff the desired state under mocks), apply a saved plan, put a saved config back.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.actions import StepHandlers, action
from rollback.adapters.pulumi import (
    PlanViolated,
    PulumiStack,
    StepComparison,
    UpSummary,
    cli_available,
    compare_steps,
    plan_file_steps,
)
from rollback.adapters.stack_config import (
    backup_dir,
    backup_stack_config,
    check_config_backup,
    config_restore,
    file_config,
    file_digest,
    stack_config_file,
    write_file_config,
)
from rollback.adapters.stack_history import CliSource, HistorySource
from rollback.commands.infra.program import (
    desired_state_diff,
    program_project_dir,
    program_rows,
    program_stack,
    program_venv,
    refuse_replaced_resources,
    up_command,
)
from rollback.commands.infra.stack_plan import (
    KNOWN_PLAN_BUGS,
    SIDECAR_SUFFIX,
    check_restore,
    cli_source,
    mark_applied,
    offline_source,
    read_sidecar,
    record_refusal,
    target_config,
    write_sidecar,
)
from rollback.errors import OperationFailed, PulumiError, RollbackError, UnsafePrecondition
from rollback.model.stackdiff import ConfigValue, diff_config
from rollback.plan import Step
from rollback.runner import Check, StepContext

__all__ = ["StackHandlers"]


def _undo_hint(exc: RollbackError, step: Step, ctx: StepContext) -> RollbackError:
    """Once the config file may have changed, every failure names the command that puts it back."""
    backup = (ctx.results.get(step.sibling("backup-config")) or {}).get("backup")
    if not backup:
        return exc
    return exc.with_hint(f"{exc.hint}; to put the previous stack config back: "
                         f"rollback infra config-restore {shlex.quote(str(backup))}")


@dataclass
class StackHandlers(StepHandlers):
    """The Pulumi stack layer's handlers: save the stack config, pin an old version's config, preview
    (or, offline, diff the desired state under mocks), apply a saved plan, put a saved config back.

    ``source`` is the history source the plan was read from (opened from the config when not given:
    the Automation API for ``cli`` steps, the self-managed backend for ``offline`` ones)."""

    layer = "infra"

    source: HistorySource | None = None

    def _source(self, mode: str) -> HistorySource:
        if self.source is None:
            self.source = self.services.existing("stack_source")  # the one injected, when it is of the mode
        if self.source is None or (mode == "cli") != isinstance(self.source, CliSource):
            self.source = offline_source(self.services) if mode == "offline" else cli_source(self.services)
        return self.source

    def _stack(self) -> PulumiStack:
        source = self._source("cli")
        assert isinstance(source, CliSource)
        return source.stack

    def _target(self, step: Step, current: Mapping[str, ConfigValue] | None = None) -> Mapping[str, ConfigValue]:
        """The config the plan writes: the planned version's, with today's database restore keys unless the
        plan allows replacing the database (``carry_db_keys``)."""
        version = self._source(str(step.params["mode"])).find(int(step.params["version"])).config
        if not step.params.get("carry_db_keys"):
            return version
        planned = step.params.get("db_keys")
        if current is None and isinstance(planned, Mapping):
            # Today's restore keys as the plan read them (no second read of the config through the CLI).
            current = {str(k): ConfigValue(str(v), False) for k, v in planned.items() if v is not None}
        wanted, _ = target_config(self.config, version, self._current(step) if current is None else current,
                                  allow_db_replacement=False)
        return wanted

    def _current(self, step: Step) -> dict[str, ConfigValue]:
        """The stack's config now: the file offline, else through the Automation API."""
        if step.params["mode"] == "offline":
            return file_config(Path(step.params["path"]))
        return dict(self._stack().get_config())

    def _configs(self, step: Step) -> tuple[dict[str, ConfigValue], Mapping[str, ConfigValue]]:
        current = self._current(step)
        return current, self._target(step, current)

    @staticmethod
    def _sidecar_extra(step: Step) -> dict[str, Any]:
        """What restore needs to know about the preview: whether it allowed a new database instance, and
        the release change it must invalidate after the update."""
        return {"allow_db_replacement": not step.params.get("carry_db_keys", True),
                "release": step.params.get("release")}

    # ------------------------------------------------------------ preview
    def check_program_env(self, step: Step, ctx: StepContext) -> Check:
        from rollback.adapters.program_venv import installed_version, is_complete, venv_path

        requirements = step.params["program"]["requirements"]
        sha256 = str(requirements["sha256"])
        path = venv_path(self.config.root, sha256)
        would = f"build the environment of {requirements['path']} in {path}"
        if is_complete(path, sha256):
            return Check(True, {"path": str(path), "built": False, "pulumi_aws": installed_version(path)}, would)
        return Check(False, {"would_build": str(path)}, would)

    @action("infra.program_env", check="check_program_env")
    def program_env(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        venv = program_venv(self.config, step.params["program"], version=int(step.params["version"]))
        assert venv is not None
        return venv.to_dict()

    def check_backup_config(self, step: Step, ctx: StepContext) -> Check:
        earlier = ctx.earlier.get(step.id)
        would = f"save {step.params['path']} to {backup_dir(self.config)}"
        if earlier is not None and earlier.get("backup") and Path(str(earlier["backup"])).exists():
            return Check(True, dict(earlier), would)
        return Check(False, {"would_save": str(step.params["path"])}, would)

    @action("infra.backup_config", check="check_backup_config")
    def backup_config(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return {"backup": str(backup_stack_config(self.config))}

    @action("infra.desired_state", read_only=True)
    def desired_state(self, step: Step, ctx: StepContext) -> Check:
        current, target = self._configs(step)
        program = step.params.get("program") or {}
        version = int(step.params["version"])
        allow_db = not step.params.get("carry_db_keys", True)
        if program.get("mode") == "commit":
            commit = str(program["commit"])
            with program_project_dir(self.config, program) as directory:
                rows = desired_state_diff(self.config, current, target, after_project_dir=directory,
                                          after_label=f"version {version}'s program (commit {commit[:12]}) "
                                                      "with its config", allow_db_replacement=allow_db)
                # Which differences the program makes: today's config under that program.
                by_program = program_rows(self.config, current, directory)
            for row in rows:
                row["cause"] = "program" if (row["resource"], row["path"]) in by_program else "config"
        else:
            rows = desired_state_diff(self.config, current, target, allow_db_replacement=allow_db)
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
                and meta.get("config_sha256") == file_digest(Path(step.params["path"])))

    @action("infra.write_config", check="check_write_config")
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
            write_file_config(path, target, self._current(step), self.config.require_pulumi().project)
            # No plan exists yet offline: the sidecar records the version and the config the user's
            # 'pulumi preview --save-plan' will run with, so that restore can check both.
            version = self._source(mode).find(int(step.params["version"]))
            sidecar = write_sidecar(self.config, Path(str(step.params["plan_file"])), version, "offline", None,
                                    step.params.get("program"), extra=self._sidecar_extra(step))
            return {"written": keys, "file": str(path), "sidecar": str(sidecar)}
        except RollbackError as exc:
            raise _undo_hint(exc, step, ctx) from exc

    def check_preview(self, step: Step, ctx: StepContext) -> Check:
        would = f"pulumi preview --diff --save-plan {step.params['plan_file']}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and Path(str(step.params["plan_file"])).is_file():
            return Check(True, dict(earlier), would)
        return Check(False, {"would_run": would}, would)

    @action("infra.preview", check="check_preview")
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
                    result = program_stack(self.config, directory).preview(
                        plan_file, message=message, config_file=stack_config_file(self.config))
            else:
                result = self._stack().preview(plan_file, message=message)
            try:
                refuse_replaced_resources(result.steps, f"version {version}",
                                          allow_db_replacement=not step.params.get("carry_db_keys", True))
            except UnsafePrecondition:
                plan_file.unlink(missing_ok=True)  # a plan that must not be applied is not kept
                raise
            sidecar = write_sidecar(self.config, plan_file, self._source("cli").find(version), "cli",
                                    result.change_summary, program, extra=self._sidecar_extra(step))
        except RollbackError as exc:
            raise _undo_hint(exc, step, ctx) from exc
        return {**result.to_dict(), "sidecar": str(sidecar), "program": dict(program)}

    # ------------------------------------------------------------ restore
    @action("infra.check", read_only=True)
    def check_restore(self, step: Step, ctx: StepContext) -> Check:
        version, plan_file = int(step.params["version"]), Path(step.params["plan_file"])
        found = check_restore(self.config, version, plan_file, services=self.services,
                              allow_db_replacement=bool(step.params.get("allow_db_replacement")))
        return Check(False, found, f"checked: not locked, no pending operations, plan matches version {version}")

    def check_up(self, step: Step, ctx: StepContext) -> Check:
        plan_file = Path(step.params["plan_file"])
        meta = read_sidecar(plan_file) if plan_file.is_file() else {}
        would = up_command(self.config, plan_file, meta.get("program"))
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

    @action("infra.up", check="check_up")
    def up(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        plan_file = Path(step.params["plan_file"])
        meta = read_sidecar(plan_file)
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
            stack = program_stack(self.config, directory) if config_file else self.services.pulumi_stack()
            if without_plan:
                comparison = self._compare_with_plan(stack, plan_file, config_file, version)
                ctx.note(f"a fresh preview takes exactly the plan's steps ({comparison.describe()}); "
                         f"applying them without the plan, to {len(comparison.to_apply)} resource(s) only (--target)")
                if comparison.to_apply:
                    result = stack.up(None, message=f"{message} (without the refused plan)",
                                      config_file=config_file, targets=list(comparison.to_apply))
                else:  # the refused update applied every step before it failed: an untargeted up would be all
                    result = UpSummary("succeeded", {}, {}, "")
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
            mark_applied(plan_file, applied)
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
            record_refusal(plan_file, refusal)
            return UnsafePrecondition(f"pulumi up refused the saved plan ({violations}), and {differs.message}",
                                      differs.hint, details={"violations": refusal["violations"]})
        refusal["fresh_preview"] = comparison.to_dict()
        record_refusal(plan_file, refusal)
        again = f"rollback infra restore --to {version} --plan-file {shlex.quote(str(plan_file))} --without-plan"
        return UnsafePrecondition(
            f"pulumi up refused the saved plan although nothing changed: {violations} (a known Pulumi update-plan "
            f"bug: {KNOWN_PLAN_BUGS}); a fresh preview from the same program and config takes exactly the plan's "
            f"steps ({comparison.describe()})",
            f"to apply those steps with a plain 'pulumi up' after checking them again: {again}",
            details={"violations": refusal["violations"], "fallback": again})

    # ------------------------------------------------------------ the release invalidation after restore
    def check_invalidate_release(self, step: Step, ctx: StepContext) -> Check:
        release = step.params["release"]
        would = f"invalidate what distribution {step.params['distribution']} serves from release {release['after']}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and earlier.get("id"):
            return Check(True, dict(earlier), would)
        return Check(False, {"would_invalidate_after": "the update"}, would)

    @action("infra.invalidate_release", check="check_invalidate_release")
    def invalidate_release(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        from rollback.commands.infra.cdn import release_invalidation_paths

        distribution, release = str(step.params["distribution"]), step.params["release"]
        edge = self.services.edge()
        try:
            live = edge.get_config(distribution)
            paths = release_invalidation_paths(live.raw, release.get("before"), str(release["after"]))
            made = edge.create_invalidation(distribution, paths, str(step.params["caller_reference"]))
        except RollbackError as exc:
            raise exc.with_hint(f"the stack was restored; invalidate by hand so that the release it serves is not "
                                f"the cached other one: rollback infra invalidate --paths \"/*\" --distribution "
                                f"{distribution} (or 'rollback resume' this run)") from exc
        return made.to_dict()

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

    @action("stack.config_restore", check="check_config_restore")
    def config_restore(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return config_restore(self.config, Path(str(step.params["backup"])))
