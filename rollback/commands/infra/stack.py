"""``rollback infra history | diff | preview | restore | config-restore``: stack-state rollback.

Pulumi has no rollback command: rolling infrastructure back is *selecting a
prior stack state*. These verbs list the stack's updates, diff any two, pin an
earlier update's config and preview it (saving the update plan), then apply
exactly that plan.

History comes from a :class:`~rollback.adapters.stack_history.HistorySource`
(the self-managed backend read directly, or the Automation API), asked of
:class:`rollback.context.Services`.

Preview, restore and config-restore are plans (:mod:`rollback.commands.infra.stack_plan`)
executed by :func:`rollback.runner.execute` with :class:`StackHandlers`
(:mod:`rollback.commands.infra.stack_handlers`), so they are journaled and have a
dry run; the program a version runs with is :mod:`rollback.commands.infra.program`.
:func:`prepare_preview` / :func:`run_preview` and :func:`prepare_restore` /
:func:`run_restore` are what the CLI and library callers share.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollback.commands.infra.stack_handlers import StackHandlers
from rollback.commands.infra.stack_plan import (
    NUMBERING_NOTE,
    PreviewOptions,
    check_restore,
    preview_plan,
    preview_report,
    restore_plan,
)
from rollback.config import Config
from rollback.context import Services
from rollback.errors import BadInput
from rollback.journal import Journal
from rollback.model.stackdiff import ConfigValue, StackState, changed_config_keys, diff_states
from rollback.runner import ExecutionResult, Prepared

__all__ = [
    "diff",
    "history",
    "prepare_preview",
    "prepare_restore",
    "preview_document",
    "run_preview",
    "run_restore",
    "stack_outputs",
]

# --------------------------------------------------------------------------- history / diff


def history(config: Config, *, limit: int | None = None, via: str = "auto",
            services: Services) -> dict[str, Any]:
    """Every update (oldest first) with the config keys each changed.

    ``limit`` keeps the newest N and reads only the newest N+1 updates: the extra one
    says what the oldest listed update changed.
    """
    source = services.stack_source(via)
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
         services: Services) -> dict[str, Any]:
    """Config and resource differences between two versions (``to_version`` None = current state)."""
    source = services.stack_source(via)
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


# --------------------------------------------------------------------------- outputs


def stack_outputs(config: Config, services: Services) -> dict[str, Any]:
    """Current stack outputs (distributionId, assetsBucket, edgeFunctionName, ...).

    From the self-managed backend's current checkpoint when one is configured
    (no CLI needed), else through the Automation API. Secret outputs come back
    as ``"[secret]"``.
    """
    return services.stack_outputs()


# --------------------------------------------------------------------------- preview / restore without the CLI


def prepare_preview(config: Config, services: Services, options: PreviewOptions) -> Prepared[dict[str, Any]]:
    """Plan the preview (read-only) and build the handlers that carry it out; its facts are what the
    report needs (see :func:`preview_report`)."""
    plan, context = preview_plan(config, options, services)
    handlers = StackHandlers(services, source=context["source"]).handlers()
    return Prepared(plan, context, handlers)


def preview_document(config: Config, prepared: Prepared[dict[str, Any]], outcome: ExecutionResult) -> dict[str, Any]:
    """What ``infra preview`` prints: :func:`preview_report` of the run."""
    return preview_report(config, prepared.facts, {"dry_run": outcome.dry_run, "run": outcome.run_id,
                                                     "plan": prepared.plan.to_dict()},
                          {item.step.id: item.result for item in outcome.steps})


def run_preview(config: Config, services: Services, options: PreviewOptions, *, dry_run: bool = False,
                journal: Journal | None = None) -> dict[str, Any]:
    """``infra preview`` without the CLI: plan, execute exactly that plan, return the report."""
    prepared = prepare_preview(config, services, options)
    outcome = prepared.run(journal=journal, dry_run=dry_run).go()
    return preview_document(config, prepared, outcome)


def prepare_restore(config: Config, services: Services, version: int, plan_file: Path, *,
                    without_plan: bool = False, check: bool = True,
                    allow_db_replacement: bool = False) -> Prepared[None]:
    """Plan the restore and build its handlers; with ``check``, refuse (before anything is asked or
    journaled) what :func:`check_restore` refuses."""
    plan = restore_plan(config, version, plan_file, without_plan=without_plan,
                        allow_db_replacement=allow_db_replacement, services=services)
    if check:
        check_restore(config, version, plan_file, services=services, allow_db_replacement=allow_db_replacement)
    return Prepared(plan, None, StackHandlers(services).handlers())


def run_restore(config: Config, services: Services, version: int, plan_file: Path, *,
                without_plan: bool = False, dry_run: bool = False, journal: Journal | None = None,
                allow_db_replacement: bool = False) -> ExecutionResult:
    """``infra restore`` without the CLI: check, then apply exactly the saved plan (no confirmation asked)."""
    prepared = prepare_restore(config, services, version, plan_file, without_plan=without_plan, check=not dry_run,
                               allow_db_replacement=allow_db_replacement)
    return prepared.run(journal=journal, dry_run=dry_run).go()
