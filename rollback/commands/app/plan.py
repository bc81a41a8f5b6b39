"""``rollback app``: the app layer on Vercel (runbook options 1 and 2).

The verbs, as plain functions taking the config (and the adapters) first:

- :func:`status`: production now, the last alias request, recent production deployments;
- :func:`plan_rollback` / :func:`plan_promote` / :func:`plan_undo`: read-only
  planning of an instant rollback, a promote, or the undo of a rollback;
- :func:`plan_revert`: ``git revert`` a commit or range, push, wait for the
  deploy, check health;
- :class:`AppHandlers` (in :mod:`rollback.commands.app.handlers`; and
  :class:`HealthHandlers` for the closing health and version check, in
  :mod:`rollback.commands.app.health`): the step handlers, each a read-only
  *check* and an *act*, run by :func:`rollback.runner.execute` (a dry run stops
  after the checks);
- :func:`apply`: run a plan with those handlers and return the result document.

This module holds status and planning; the handlers are in :mod:`rollback.commands.app.handlers`, the
health checks in :mod:`rollback.commands.app.health`, the rolling release's canary in
:mod:`rollback.commands.app.rolling`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rollback.adapters.git import GitRepo
from rollback.commands.app.health import health_step
from rollback.commands.app.rolling import (
    ABORT_NOTE,
    PAST_FLAG,
    abort_steps,
    past_note,
    refuse_past,
    rolling_release_of,
    rolling_status,
)
from rollback.errors import (
    BadInput,
    UnsafePrecondition,
    VercelError,
)
from rollback.journal import list_runs
from rollback.plan import Plan, Step
from rollback.redact import redact_text
from rollback.runner import Prepared
from rollback.units import format_duration

if TYPE_CHECKING:
    from rollback.adapters.vercel import Deployment, Project, RollingRelease, VercelClient
    from rollback.config import Config


__all__ = [
    "AUTO_ASSIGN_NOTE",
    "AppFacts",
    "DatabaseSwitch",
    "database_switches",
    "pick_rollback_target",
    "plan_promote",
    "plan_revert",
    "plan_rollback",
    "plan_undo",
    "project_of",
    "status",
]

AUTO_ASSIGN_NOTE = (
    "Vercel no longer assigns the production domains to new production deployments of this project "
    "until the rollback is undone: new pushes will build but not go live. Undo it with 'rollback app undo' "
    "(promotes back the deployment that was live before), or promote a fixed deployment with "
    "'rollback app promote DEPLOYMENT'."
)


# ------------------------------------------------------------------ status
def _is_candidate(deployment: Deployment, current: Deployment | None) -> bool:
    if not (deployment.is_production and deployment.is_ready):
        return False
    if current is not None and (deployment.id == current.id or deployment.created_at >= current.created_at):
        return False
    return deployment.is_rollback_candidate is not False


def status(config: Config, client: VercelClient, *, limit: int = 10) -> dict[str, Any]:
    """Production now, the last alias request (and its job status), the rolling release (active, aborted or
    complete; ``None`` without one), recent production deployments."""
    settings = config.require_vercel()
    rolling = _in_background(lambda: rolling_status(config, client))
    project = _project(client, settings.project)
    current = project.production
    recent = client.list_deployments(project.id, limit=limit, target="production")
    release = rolling()
    canary = (release.get("canary") or {}).get("id") if release and release.get("state") == "ACTIVE" else None
    rows = []
    for deployment in recent:
        row = deployment.to_dict()
        row["current"] = current is not None and deployment.id == current.id
        row["rollback_candidate"] = _is_candidate(deployment, current)
        row["canary"] = deployment.id == canary
        rows.append(row)
    last = project.last_alias_request
    failed = ([a.to_dict() for a in client.list_job_aliases(project.id, last.type, failed_only=True)]
              if last is not None and last.job_status == "failed" else [])
    return {
        "env": config.env_name,
        "project": {"id": project.id, "name": project.name},
        "failed_aliases": failed,
        "current": current.to_dict() if current else None,
        "last_alias_request": project.last_alias_request.to_dict() if project.last_alias_request else None,
        "rollback_active": project.rollback_active,
        "rolling_release": release,
        "deployments": rows,
    }


def project_of(config: Config, client: VercelClient) -> Project:
    """The configured project (BadInput when it does not exist in the configured team)."""
    return _project(client, config.require_vercel().project)


def _project(client: VercelClient, ref: str) -> Project:
    try:
        return client.get_project(ref)
    except VercelError as exc:
        if exc.status == 404:
            raise BadInput(f"no Vercel project {ref!r} (in the configured team)",
                           "check [env.<name>.vercel] project and team in rollback.toml") from exc
        raise


def _deployment(client: VercelClient, ref: str) -> Deployment:
    try:
        return client.get_deployment(ref)
    except VercelError as exc:
        if exc.status in (400, 404):
            raise BadInput(f"no deployment {ref!r}", "see 'rollback app status' for deployment ids") from exc
        raise


# --------------------------------------------------------------- planning
@dataclass(frozen=True)
class AppFacts:
    """What a rollback / promote / revert was planned from (the facts of its :class:`~rollback.runner.Prepared`)."""

    project: Project | None = None
    current: Deployment | None = None
    target: Deployment | None = None
    noop: str | None = None  # why there is nothing to do
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": {"id": self.project.id, "name": self.project.name} if self.project else None,
            "from": self.current.to_dict() if self.current else None,
            "to": self.target.to_dict() if self.target else None,
            "noop": self.noop,
            **dict(self.extra),
        }


def pick_rollback_target(client: VercelClient, project: Project) -> Deployment:
    """The previous stable production deployment: READY, served production, older than the current one."""
    current = project.production
    found = client.list_deployments(project.id, limit=1, target="production", states=("READY",),
                                    where=lambda d: _is_candidate(d, current))
    if not found:
        raise UnsafePrecondition(f"project {project.name} has no earlier READY production deployment to roll back to",
                                 "see 'rollback app status'; nothing was changed")
    return found[0]


def _validate_target(project: Project, target: Deployment, *, kind: str) -> None:
    if target.project_id and target.project_id != project.id:
        raise BadInput(f"deployment {target.label()} belongs to another project, not {project.name}",
                       "give a deployment of the configured project")
    if not target.is_production:
        raise BadInput(f"deployment {target.label()} is a preview deployment, not a production one",
                       f"{kind} needs a production deployment; see 'rollback app status'")
    if not target.is_ready:
        raise BadInput(f"deployment {target.label()} is {target.state}, not READY",
                       "pick a READY production deployment; see 'rollback app status'")


def _alias_steps(kind: str, project: Project, current: Deployment | None, target: Deployment, *, timeout: float,
                 reason: str | None = None, undo_of: str | None = None) -> list[Step]:
    before = project.last_alias_request.to_dict() if project.last_alias_request else None
    frm = current.url if current else "(none)"
    verb = "instant rollback" if kind == "rollback" else "promote"
    params: dict[str, Any] = {
        "project_id": project.id,
        "project": project.name,
        "from_deployment_id": current.id if current else None,
        "from_url": current.url if current else None,
        "to_deployment_id": target.id,
        "to_url": target.url,
        "to_commit": target.commit_sha,
        "before": before,
    }
    if reason:
        # Free text, sent to Vercel and journaled: a secret quoted in it goes to neither.
        params["reason"] = redact_text(reason)
    if undo_of:
        params["undo_of"] = undo_of
    return [
        Step(id=f"vercel-{kind}", action=f"vercel.{kind}", target=f"{project.name} production",
             summary=f"{verb}: {frm} -> {target.url}", params=params, destructive=True),
        Step(id=f"wait-{kind}", action="vercel.wait_alias_job", target=f"{project.name} production",
             summary=f"wait for the {kind} job to finish (up to {format_duration(timeout)})",
             params={"project_id": project.id, "kind": kind, "to_deployment_id": target.id, "timeout": timeout,
                     "before": before}),
    ]


IN_FLIGHT_WINDOW = 15 * 60  # seconds: an older pending job is considered stuck, not in flight


def _refuse_in_flight(project: Project) -> None:
    """One alias job at a time: a re-run after a timeout must not stack a second rollback."""
    last = project.last_alias_request
    if last is None or last.is_terminal:
        return
    if time.time() * 1000 - last.requested_at > IN_FLIGHT_WINDOW * 1000:
        return
    raise UnsafePrecondition(
        f"a {last.type} of {project.name} to {last.to_deployment_id} is still {last.job_status} "
        f"(requested {last.requested})",
        "wait for it: 'rollback app status' shows its progress; nothing was changed")


def _refuse_stepping_further(project: Project, current: Deployment) -> None:
    """A re-run of a rollback that (late) succeeded must not roll back one more step."""
    last = project.last_alias_request
    if last is None or last.type != "rollback" or last.to_deployment_id != current.id:
        return
    if time.time() * 1000 - last.requested_at > IN_FLIGHT_WINDOW * 1000:
        return
    raise UnsafePrecondition(
        f"production was just rolled back to {current.label()} (requested {last.requested})",
        "pass --to to go further back, or 'rollback app undo'; nothing was changed")


T = TypeVar("T")


def _in_background(read: Callable[[], T]) -> Callable[[], T]:
    """Start an independent read now; the returned function waits for it (and re-raises its error).

    Planning reads the project and a deployment (or the first page of deployments) at once:
    one round trip instead of two. httpx clients are safe to share between threads."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = read()
        except BaseException as exc:  # handed to the caller, in its thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="rollback-read", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if "error" in box:
            raise box["error"]
        return cast(T, box["value"])

    return result


def _verify_steps(config: Config, target: Deployment, *, verify: bool, after: str) -> tuple[list[Step], list[str]]:
    if not verify:
        return [], []
    step = health_step(config, expected_version=target.commit_sha, after=after)
    if step is None:
        return [], [f"no health check at the end: [env.{config.env_name}.health] base_url is not set"]
    return [step], []


@dataclass(frozen=True)
class DatabaseSwitch:
    """A journaled ``run --switch-database``: when the app's database variables were pointed elsewhere."""

    at: dt.datetime
    run_id: str
    variables: tuple[str, ...]
    from_host: str | None
    to_host: str | None


def _finished_steps(journal_dir: Path, name: str) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """``(run id, entry, result)`` of every journaled step ``name`` that finished for real (not a dry run),
    whichever command ran it (``vercel-rollback`` of 'rollback app rollback', ``app.vercel-rollback`` of
    'rollback run')."""
    for run in list_runs(journal_dir):
        if run.started.get("dry_run"):
            continue
        for entry in run.entries:
            if (entry.get("event") == "step_finished" and not entry.get("dry_run")
                    and str(entry.get("step") or "").rpartition(".")[2] == name):
                yield run.run_id, entry, entry.get("result") or {}


def database_switches(journal_dir: Path, project: Project) -> list[DatabaseSwitch]:
    """The journaled, finished database switches of ``project``, newest first."""
    found = []
    for run_id, entry, result in _finished_steps(journal_dir, "switch-database"):
        if entry.get("already_done") or result.get("project") not in (project.id, project.name) \
                or not result.get("to_host"):
            continue
        stamp = str(result.get("switched_at") or entry.get("ts") or "")
        try:
            at = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            continue
        found.append(DatabaseSwitch(at if at.tzinfo else at.replace(tzinfo=dt.UTC), run_id,
                                    tuple(str(v) for v in result.get("variables") or ()),
                                    result.get("from_host"), result.get("to_host")))
    return sorted(found, key=lambda s: s.at, reverse=True)


def _switch_in_effect(client: VercelClient, project: Project, switch: DatabaseSwitch) -> bool:
    """Whether the project's variables still point where ``switch`` pointed them (a value Vercel will not
    show counts as yes: the journal is all there is to go by)."""
    from urllib.parse import urlsplit

    from rollback.dburl import register_conninfo_secrets

    envs = {env.key: env for env in client.list_env(project.id) if "production" in env.target}
    for key in switch.variables[:1]:
        env = envs.get(key)
        if env is None:
            return False
        value = client.env_value(project.id, env.id)
        if value is None:
            return True
        register_conninfo_secrets(value)
        return urlsplit(value).hostname == switch.to_host
    return True


def _old_database(config: Config, client: VercelClient, project: Project, target: Deployment,
                  accepted: bool) -> list[str]:
    """Refuse (unless ``accepted``) a target built before the newest recorded database switch that is still
    in effect: Vercel bakes environment variables into each deployment, so it would connect to the database
    of before."""
    switches = database_switches(config.journal_dir, project)
    if not switches or not target.created_at:
        return []
    newest = switches[0]
    built = dt.datetime.fromtimestamp(target.created_at / 1000, dt.UTC)
    if built >= newest.at or not _switch_in_effect(client, project, newest):
        return []
    variables = ", ".join(newest.variables) or "the database URL"
    message = (f"deployment {target.label()} was built before the database switch of "
               f"{newest.at.isoformat(timespec='seconds')} (run {newest.run_id}: {variables} {newest.from_host} -> "
               f"{newest.to_host}); Vercel bakes environment variables into each deployment, so it would connect "
               f"to {newest.from_host}")
    if not accepted:
        raise UnsafePrecondition(message, "pass --yes-old-database to roll back to it anyway, or redeploy it with "
                                          "today's variables; nothing was changed")
    return [f"warning: {message}"]


def plan_rollback(config: Config, client: VercelClient, *, to: str | None = None, reason: str | None = None,
                  timeout: float = 180.0, verify: bool = True, past_rolling_release: bool = False,
                  yes_old_database: bool = False) -> Prepared[AppFacts]:
    """Resolve the current production deployment and the target, validate, and plan the rollback
    (and, with ``verify``, the health and version checks that end it).

    While a rolling release is active the plan is its abort (all traffic back to its base,
    :mod:`rollback.commands.app.rolling`): ``to`` may only name the base, unless
    ``past_rolling_release``, which aborts first and then rolls back to ``to`` (default: the deployment
    before the base). A target built before a journaled database switch (``run --switch-database``) is
    refused unless ``yes_old_database``; the base of an aborted rolling release included."""
    settings = config.require_vercel()
    rolling = _in_background(lambda: rolling_release_of(client, settings.project))
    if to:
        wanted = _in_background(lambda: _deployment(client, to))
    else:
        # Vercel's projectId filter takes an id or a name: list while the project is read.
        first_page = _in_background(lambda: client.list_deployments(
            settings.project, limit=20, target="production", states=("READY",)))
    project = _project(client, settings.project)
    _refuse_in_flight(project)
    current = project.production
    if current is None:
        raise UnsafePrecondition(f"project {project.name} has no production deployment", "nothing to roll back")
    release = rolling()
    active = release if release is not None and release.is_active else None
    if active is not None and (active.canary is None or active.base is None):
        raise UnsafePrecondition(f"a rolling release of {project.name} is active, but Vercel does not name its canary "
                                 "and base", "abort it with 'vercel rolling-release abort --dpl <canary>'; nothing "
                                 "was changed")
    notes: list[str] = []
    if past_rolling_release and active is None:
        notes.append(f"no rolling release is active: {PAST_FLAG} changes nothing")
    if to:
        target = wanted()
        if active is not None and target.id != active.base_id and not past_rolling_release:
            raise refuse_past(active, target)
        if active is not None and target.id == active.canary_id:
            raise refuse_past(active, target)
        _validate_target(project, target, kind="an instant rollback")
        if target.id == current.id and active is None:
            raise BadInput(f"deployment {target.label()} already serves production", "pick an earlier deployment")
    else:
        if active is None:
            _refuse_stepping_further(project, current)
        try:
            listed = first_page()
        except VercelError:
            listed = []  # read again, the usual way, below
        candidates = [d for d in listed if _is_candidate(d, current)]
        if active is not None and active.base is not None and not past_rolling_release:
            target = active.base
        else:
            target = candidates[0] if candidates else pick_rollback_target(client, project)
    warnings = _old_database(config, client, project, target, yes_old_database)
    if active is not None:
        return _plan_abort(config, project, active, target, timeout=timeout, reason=reason, verify=verify,
                           warnings=warnings)
    steps = _alias_steps("rollback", project, current, target, timeout=timeout, reason=reason)
    checks, verify_notes = _verify_steps(config, target, verify=verify, after="the rollback is done and journaled")
    plan = Plan.of(f"instant rollback of {project.name}", config.env_name, [*steps, *checks],
                   notes=[*warnings, AUTO_ASSIGN_NOTE, *notes, *verify_notes])
    return Prepared(plan, AppFacts(project, current, target))


def _plan_abort(config: Config, project: Project, release: RollingRelease, target: Deployment, *, timeout: float,
                reason: str | None, verify: bool, warnings: list[str]) -> Prepared[AppFacts]:
    """Abort the active ``release`` (all traffic to its base); when ``target`` is older than the base
    (``--past-rolling-release``), then roll production back to it."""
    assert release.canary is not None and release.base is not None
    steps = abort_steps(project, release, timeout=timeout, reason=reason)
    notes = [f"a rolling release is active: canary {release.canary.label()} serves {release.percentage:g} % of "
             f"production, its base {release.base.label()} the rest", ABORT_NOTE]
    title = f"abort the rolling release of {project.name}"
    if target.id != release.base_id:
        steps += _alias_steps("rollback", project, release.base, target, timeout=timeout, reason=reason)
        notes += [past_note(release, target), AUTO_ASSIGN_NOTE]
        title += f", then instant rollback to {target.url}"
    after = "the abort is done and journaled" if target.id == release.base_id else "the rollback is done and journaled"
    checks, verify_notes = _verify_steps(config, target, verify=verify, after=after)
    plan = Plan.of(title, config.env_name, [*steps, *checks], notes=[*warnings, *notes, *verify_notes])
    return Prepared(plan, AppFacts(project, release.canary, target,
                                   extra={"option": "abort-rolling-release", "rolling_release": release.to_dict(),
                                          "past_rolling_release": target.id != release.base_id}))


def plan_promote(config: Config, client: VercelClient, deployment: str, *, timeout: float = 180.0,
                 undo_of: str | None = None, verify: bool = True, project: Project | None = None) -> Prepared[AppFacts]:
    """Plan a promote of ``deployment`` (and, with ``verify``, the closing health checks).
    ``project``: the configured project, when the caller has just read it."""
    settings = config.require_vercel()
    wanted = _in_background(lambda: _deployment(client, deployment))
    project = project or _project(client, settings.project)
    _refuse_in_flight(project)
    target = wanted()
    _validate_target(project, target, kind="promote")
    current = project.production
    if current is not None and current.id == target.id and not project.rollback_active:
        return Prepared(Plan.of(f"promote {target.url}", config.env_name, []),
                        AppFacts(project, current, target, noop=f"{target.label()} already serves production"))
    steps = _alias_steps("promote", project, current, target, timeout=timeout, undo_of=undo_of)
    after = "the undo is done and journaled" if undo_of else "the promote is done and journaled"
    checks, notes = _verify_steps(config, target, verify=verify, after=after)
    return Prepared(Plan.of(f"promote {target.url} to production", config.env_name, [*steps, *checks], notes),
                    AppFacts(project, current, target))


def _journaled_rollbacks(journal_dir: Path, project_id: str) -> list[tuple[str, str, str]]:
    """``(from, to, run id)`` of journaled, completed rollbacks of the project, newest first."""
    return [(str(result["from_deployment_id"]), str(result["to_deployment_id"]), run_id)
            for run_id, _entry, result in _finished_steps(journal_dir, "vercel-rollback")
            if result.get("project_id") == project_id and result.get("from_deployment_id")
            and result.get("to_deployment_id")]


def plan_undo(config: Config, client: VercelClient, *, timeout: float = 180.0,
              verify: bool = True) -> Prepared[AppFacts]:
    """Promote back the deployment that was live before the last rollback (journal, else ``lastAliasRequest``)."""
    settings = config.require_vercel()
    project = _project(client, settings.project)
    current_id = project.production_deployment_id
    sources: list[tuple[str, str, str]] = _journaled_rollbacks(config.journal_dir, project.id)
    last = project.last_alias_request
    if last is not None and last.type == "rollback" and last.from_deployment_id:
        sources.append((last.from_deployment_id, last.to_deployment_id, "lastAliasRequest"))
    if not sources:
        raise BadInput(f"no rollback of {project.name} to undo (none journaled, and the last alias request "
                       "is not a rollback)", "promote a deployment explicitly: rollback app promote DEPLOYMENT")
    # Only a rollback whose target still serves production can be undone: promoting the
    # "before" of an older rollback could put the bad deployment back.
    chosen = next((s for s in sources if current_id is not None and s[1] == current_id), None)
    if chosen is None and current_id is not None and sources[0][0] == current_id:
        chosen = sources[0]  # already undone (a re-run): promoting what serves is a no-op
    if chosen is None:
        raise UnsafePrecondition(f"production of {project.name} ({current_id or 'none'}) is not the target of a "
                                 "rollback; nothing to undo",
                                 "see 'rollback app status'; promote a deployment explicitly with "
                                 "'rollback app promote DEPLOYMENT'")
    before_id, _rolled_to, source = chosen
    planned = plan_promote(config, client, before_id, timeout=timeout, undo_of=source, verify=verify,
                           project=project)
    return Prepared(planned.plan, replace(planned.facts, extra={"source": source}))


def _refuse_revert_under_rollback(project: Project) -> None:
    """While a rollback is in effect Vercel does not put new production deployments live:
    the revert would build and never serve, so refuse before any git step."""
    last = project.last_alias_request
    before = (f" (promotes back {last.from_deployment_id})"
              if last is not None and last.type == "rollback" and last.from_deployment_id else "")
    raise UnsafePrecondition(
        f"a rollback of {project.name} is in effect: a pushed revert would build but not go live",
        f"undo it first with 'rollback app undo'{before}, or promote a fixed deployment with "
        "'rollback app promote DEPLOYMENT'; nothing was changed")


def plan_revert(config: Config, repo: GitRepo, spec: str, *, push: bool = False, remote: str = "origin",
                branch: str | None = None, wait: bool = False, timeout: float = 600.0,
                project: Project | None = None) -> Prepared[AppFacts]:
    """Plan ``git revert --no-edit SPEC`` (+ push, + wait for the production deploy, + health checks)."""
    repo.check_repository()
    commits = repo.commits_in(spec)
    repo.require_clean()
    if wait and not push:
        raise BadInput("--wait needs --push: only a pushed revert gets deployed", "add --push")
    if wait and project is not None and project.rollback_active:
        _refuse_revert_under_rollback(project)
    chosen_branch = branch or repo.current_branch()
    if push and not chosen_branch:
        raise BadInput("HEAD is detached: cannot tell which branch to push", "pass --branch")
    if push and remote not in repo.remotes():
        raise BadInput(f"no git remote {remote!r}", f"use one of: {', '.join(repo.remotes()) or 'none'}")
    shown = ", ".join(c[:9] for c in commits[:5]) + (f" and {len(commits) - 5} more" if len(commits) > 5 else "")
    steps = [Step(id="git-revert", action="git.revert", target=str(repo.path),
                  summary=f"git revert --no-edit {spec} ({len(commits)} commit(s): {shown})",
                  params={"spec": spec, "commits": commits, "repo": str(repo.path)}, destructive=False)]
    if push:
        steps.append(Step(id="git-push", action="git.push", target=f"{remote}/{chosen_branch}",
                          summary=f"git push {remote} HEAD:{chosen_branch}",
                          params={"remote": remote, "branch": chosen_branch, "repo": str(repo.path)}))
    if wait:
        settings = config.require_vercel()
        steps.append(Step(id="wait-deploy", action="vercel.wait_deploy", target=f"{settings.project} production",
                          summary=f"wait for a READY production deployment of the revert commit to go live "
                                  f"(up to {format_duration(timeout)})",
                          params={"project": project.id if project else settings.project, "timeout": timeout}))
        check = health_step(config, expected_from="git-revert", after="the revert is deployed")
        if check is not None:
            steps.append(check)
    return Prepared(Plan.of(f"git revert {spec}", config.env_name, steps),
                    AppFacts(project, extra={"commits": commits}))
