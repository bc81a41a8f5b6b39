"""``rollback app``: the app layer on Vercel (runbook options 1 and 2).

The verbs, as plain functions taking the config (and the adapters) first:

- :func:`status`: production now, the last alias request, recent production deployments;
- :func:`plan_rollback` / :func:`plan_promote` / :func:`plan_undo`: read-only
  planning of an instant rollback, a promote, or the undo of a rollback;
- :func:`plan_revert`: ``git revert`` a commit or range, push, wait for the
  deploy, check health;
- :class:`AppHandlers` (and :class:`HealthHandlers` for the closing health and
  version check): the step handlers, each a read-only *check* and an *act*, run
  by :func:`rollback.runner.execute` (a dry run stops after the checks);
- :func:`apply`: run a plan with those handlers and return the result document.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rollback.adapters.git import GitRepo
from rollback.adapters.health import HealthChecker, make_health_client
from rollback.adapters.vercel import AliasRequest, is_transient, request_took
from rollback.config import HealthSettings
from rollback.context import Services
from rollback.errors import (
    BadInput,
    ChecksFailed,
    OperationFailed,
    UnsafePrecondition,
    VercelError,
)
from rollback.journal import list_runs
from rollback.plan import Plan, Step
from rollback.redact import redact_text
from rollback.runner import Check, ExecutionResult, StepContext, StepHandler, execute, handler
from rollback.units import format_duration

if TYPE_CHECKING:
    from rollback.adapters.health import CheckResult
    from rollback.adapters.vercel import Deployment, Project, VercelClient
    from rollback.config import Config
    from rollback.journal import Journal

__all__ = [
    "AUTO_ASSIGN_NOTE",
    "AppHandlers",
    "AppPlan",
    "HealthHandlers",
    "apply",
    "check_health",
    "handlers",
    "health_step",
    "pick_rollback_target",
    "plan_promote",
    "plan_revert",
    "plan_rollback",
    "plan_undo",
    "project_of",
    "result_document",
    "run_health_checks",
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
    """Production now, the last alias request (and its job status), recent production deployments."""
    settings = config.require_vercel()
    project = _project(client, settings.project)
    current = project.production
    recent = client.list_deployments(project.id, limit=limit, target="production")
    rows = []
    for deployment in recent:
        row = deployment.to_dict()
        row["current"] = current is not None and deployment.id == current.id
        row["rollback_candidate"] = _is_candidate(deployment, current)
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
class AppPlan:
    """A planned rollback / promote / revert: the plan, plus what it was planned from."""

    plan: Plan
    project: Project | None = None
    current: Deployment | None = None
    target: Deployment | None = None
    noop: str | None = None  # why there is nothing to do
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
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


def plan_rollback(config: Config, client: VercelClient, *, to: str | None = None, reason: str | None = None,
                  timeout: float = 180.0, verify: bool = True) -> AppPlan:
    """Resolve the current production deployment and the target, validate, and plan the rollback
    (and, with ``verify``, the health and version checks that end it)."""
    settings = config.require_vercel()
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
    if to:
        target = wanted()
        _validate_target(project, target, kind="an instant rollback")
        if target.id == current.id:
            raise BadInput(f"deployment {target.label()} already serves production", "pick an earlier deployment")
    else:
        _refuse_stepping_further(project, current)
        try:
            listed = first_page()
        except VercelError:
            listed = []  # read again, the usual way, below
        candidates = [d for d in listed if _is_candidate(d, current)]
        target = candidates[0] if candidates else pick_rollback_target(client, project)
    steps = _alias_steps("rollback", project, current, target, timeout=timeout, reason=reason)
    checks, notes = _verify_steps(config, target, verify=verify, after="the rollback is done and journaled")
    plan = Plan.of(f"instant rollback of {project.name}", config.env_name, [*steps, *checks],
                   notes=[AUTO_ASSIGN_NOTE, *notes])
    return AppPlan(plan, project, current, target)


def plan_promote(config: Config, client: VercelClient, deployment: str, *, timeout: float = 180.0,
                 undo_of: str | None = None, verify: bool = True, project: Project | None = None) -> AppPlan:
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
        return AppPlan(Plan.of(f"promote {target.url}", config.env_name, []), project, current, target,
                       noop=f"{target.label()} already serves production")
    steps = _alias_steps("promote", project, current, target, timeout=timeout, undo_of=undo_of)
    after = "the undo is done and journaled" if undo_of else "the promote is done and journaled"
    checks, notes = _verify_steps(config, target, verify=verify, after=after)
    return AppPlan(Plan.of(f"promote {target.url} to production", config.env_name, [*steps, *checks], notes),
                   project, current, target)


def _journaled_rollbacks(journal_dir: Path, project_id: str) -> list[tuple[str, str, str]]:
    """``(from, to, run id)`` of journaled, completed rollbacks of the project, newest first."""
    found = []
    for run in list_runs(journal_dir):
        if run.started.get("dry_run"):
            continue
        for entry in run.entries:
            result = entry.get("result") or {}
            step_id = str(entry.get("step") or "")
            # "vercel-rollback" of 'rollback app rollback', "app.vercel-rollback" of 'rollback run'
            if (entry.get("event") == "step_finished" and step_id.rpartition(".")[2] == "vercel-rollback"
                    and not entry.get("dry_run") and result.get("project_id") == project_id
                    and result.get("from_deployment_id") and result.get("to_deployment_id")):
                found.append((str(result["from_deployment_id"]), str(result["to_deployment_id"]), run.run_id))
    return found


def plan_undo(config: Config, client: VercelClient, *, timeout: float = 180.0, verify: bool = True) -> AppPlan:
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
    return AppPlan(planned.plan, planned.project, planned.current, planned.target, planned.noop,
                   {"source": source})


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
                project: Project | None = None) -> AppPlan:
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
    return AppPlan(Plan.of(f"git revert {spec}", config.env_name, steps), project, extra={"commits": commits})


# ------------------------------------------------------------ the handlers
def _is_transient(exc: VercelError) -> bool:
    return is_transient(exc)


def _before(step: Step) -> AliasRequest | None:
    raw = step.params.get("before")
    if not isinstance(raw, Mapping):
        return None
    return AliasRequest(type=str(raw.get("type")), job_status=str(raw.get("job_status")),
                        to_deployment_id=str(raw.get("to_deployment_id")),
                        from_deployment_id=raw.get("from_deployment_id"),
                        requested_at=int(raw.get("requested_at") or 0))


def _ours(request: AliasRequest | None, step: Step, kind: str) -> bool:
    """Is ``request`` the alias request this plan sent (newer than the one seen when planning)?"""
    return request_took(request, _before(step), kind, str(step.params["to_deployment_id"]))


# The alias-job watch: a job usually ends within a few seconds, so look often at first
# (a 0.5 s job is noticed within one interval), then back off to spare the API.
POLL_INTERVAL = 0.1
POLL_STEADY_SECONDS = 3.0
POLL_MAX_INTERVAL = 1.0
WAIT_NOTE_SECONDS = 10.0  # while a pushed revert builds: a "still waiting" line at least this often


def next_poll_gap(elapsed: float, previous: float) -> float:
    """The gap before the next look at an alias job, ``elapsed`` seconds into the watch."""
    if elapsed < POLL_STEADY_SECONDS:
        return POLL_INTERVAL
    return min(max(previous, POLL_INTERVAL) * 1.6, POLL_MAX_INTERVAL)


@dataclass
class AppHandlers:
    """The app layer's step handlers (Vercel alias jobs, git revert and push, the deploy watch)
    and the adapters they use. ``client`` is a factory called on first use, so a git-only plan
    never needs a Vercel token. Each handler reads only its step's params and earlier results."""

    config: Config | None = None
    client_factory: Callable[[], VercelClient] | None = None
    repo: GitRepo | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _client: VercelClient | None = field(default=None, init=False, repr=False)

    def client(self) -> VercelClient:
        if self._client is None:
            if self.client_factory is not None:
                self._client = self.client_factory()
            else:
                assert self.config is not None, "AppHandlers needs a config or a client factory"
                self._client = Services(self.config).vercel()
        return self._client

    def git(self, step: Step) -> GitRepo:
        """The injected repository, else the one the step names (``params["repo"]``)."""
        if self.repo is None:
            if not step.params.get("repo"):
                raise BadInput(f"step {step.id} does not name its git work tree", "plan it again")
            self.repo = GitRepo(Path(str(step.params["repo"])))
        return self.repo

    def handlers(self) -> dict[str, StepHandler]:
        return {
            "vercel.rollback": handler(self.request, self.check_request),
            "vercel.promote": handler(self.request, self.check_request),
            "vercel.wait_alias_job": handler(self.wait_alias_job, self.check_alias_job),
            "git.revert": handler(self.revert, self.check_revert),
            "git.push": handler(self.push, self.check_push),
            "vercel.wait_deploy": handler(self.wait_deploy, self.check_deploy),
        }

    # ---------------------------------------------------------- rollback / promote
    @staticmethod
    def _base(step: Step) -> dict[str, Any]:
        p = step.params
        base = {"project_id": p["project_id"], "from_deployment_id": p.get("from_deployment_id"),
                "to_deployment_id": p["to_deployment_id"], "to_url": p.get("to_url"), "from_url": p.get("from_url")}
        if p.get("undo_of"):
            base["undo_of"] = p["undo_of"]
        return base

    def check_request(self, step: Step, ctx: StepContext) -> Check:
        p = step.params
        kind = step.action.split(".", 1)[1]
        path = (f"/v1/projects/{p['project_id']}/rollback/{p['to_deployment_id']}" if kind == "rollback"
                else f"/v10/projects/{p['project_id']}/promote/{p['to_deployment_id']}")
        base = self._base(step)
        if ctx.resuming:
            # An earlier run may have sent it (perhaps killed before it could journal that).
            project = self.client().get_project(str(p["project_id"]))
            serves = project.production_deployment_id == p["to_deployment_id"]
            if _ours(project.last_alias_request, step, kind) or (step.id in ctx.earlier and serves):
                return Check(True, {**base, "kind": kind, "deployment_id": p["to_deployment_id"], "sends": 0,
                                    "confirmed_by": "lastAliasRequest"})
        # In a fresh run the planning read the project a moment ago and refused an alias job in flight.
        return Check(False, {**base, "would_send": f"POST {path}"}, f"POST {path}")

    def request(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        p = step.params
        kind = step.action.split(".", 1)[1]
        client = self.client()
        if kind == "rollback":
            change = client.request_rollback(p["project_id"], p["to_deployment_id"], description=p.get("reason"),
                                             before=_before(step))
        else:
            change = client.request_promote(p["project_id"], p["to_deployment_id"], before=_before(step))
        if change.sends > 1 or change.confirmed_by != "response":
            ctx.note(f"{kind} request confirmed by {change.confirmed_by} after {change.sends} send(s)")
        return {**self._base(step), **change.to_dict()}

    def check_alias_job(self, step: Step, ctx: StepContext) -> Check:
        p = step.params
        would = f"GET /v9/projects/{p['project_id']} (lastAliasRequest) until the job finishes"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:  # a job that succeeded stays succeeded; the request's check looks at production
            return Check(True, dict(earlier), would)
        if ctx.resuming:
            request = self.client().get_project(str(p["project_id"])).last_alias_request
            if request is not None and _ours(request, step, str(p["kind"])) and request.job_status in (
                    "succeeded", "skipped"):
                return Check(True, {"job_status": request.job_status, "seconds": 0.0}, would)
        return Check(False, {"would_poll": would}, would)

    def _send_again(self, step: Step, ctx: StepContext) -> AliasRequest | None:
        """Resuming after the job failed (aliases not moved: a fault that has cleared since), send the
        request once more; returns the failed request (the new one must be newer), else ``None``."""
        p = step.params
        kind, project_id, to_id = str(p["kind"]), str(p["project_id"]), str(p["to_deployment_id"])
        client = self.client()
        project = client.get_project(project_id)
        failed = project.last_alias_request
        if (failed is None or not _ours(failed, step, kind) or failed.job_status != "failed"
                or project.production_deployment_id == to_id):
            return None
        ctx.note(f"the {kind} job of the stopped run failed (requested {failed.requested}); sending the {kind} "
                 "request again", resent=True)
        if kind == "rollback":
            client.request_rollback(project_id, to_id, before=failed)
        else:
            client.request_promote(project_id, to_id, before=failed)
        return failed

    def wait_alias_job(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Poll ``lastAliasRequest`` until the job of the request this plan sent ends. Resumed after
        that job failed, the request is sent once more (its step finished: the POST went out), and
        the new job is the one waited for."""
        p = step.params
        kind, project_id, to_id, timeout = p["kind"], p["project_id"], p["to_deployment_id"], float(p["timeout"])
        client = self.client()
        before = _before(step)
        if ctx.resuming:
            before = self._send_again(step, ctx) or before
        started = self.clock()
        deadline = started + timeout
        interval = POLL_INTERVAL
        last_status: str | None = None
        while True:
            try:
                request = client.get_project(project_id).last_alias_request
            except VercelError as exc:
                # The POST already went out: a blip while watching must not abort the watch.
                if not _is_transient(exc) or self.clock() >= deadline:
                    raise
                ctx.note(f"reading the {kind} job's status failed ({exc.message}); still waiting")
                interval = next_poll_gap(self.clock() - started, interval)
                self.sleep(min(interval, max(0.0, deadline - self.clock())))
                continue
            changed = request is not None and (before is None or request.requested_at != before.requested_at)
            ours = changed and request is not None and request.type == kind and request.to_deployment_id == to_id
            if changed and not ours and request is not None:
                raise OperationFailed(
                    f"the {kind} was superseded: someone requested a {request.type} to "
                    f"{request.to_deployment_id} at {request.requested}",
                    "see 'rollback app status' before doing anything else")
            job_status = request.job_status if (ours and request is not None) else "pending"
            if job_status != last_status:
                ctx.note(f"{kind} job: {job_status} ({format_duration(self.clock() - started)})",
                         job_status=job_status)
                last_status = job_status
            if request is not None and ours and request.is_terminal and job_status != "failed":
                return {"job_status": job_status, "seconds": round(self.clock() - started, 3)}
            if job_status == "failed":
                failed = client.list_job_aliases(project_id, kind, failed_only=True)
                for alias in failed:
                    ctx.note(f"  alias {alias.alias}: {alias.status}", alias=alias.alias, status=alias.status)
                names = ", ".join(a.alias for a in failed) or "unknown aliases"
                raise VercelError(f"the {kind} job failed: {len(failed)} alias(es) not moved: {names}",
                                  "check those domains in the Vercel dashboard, then run the command again",
                                  code="job_failed", details={"failed_aliases": [a.to_dict() for a in failed]})
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise OperationFailed(
                    f"the {kind} was not confirmed within {format_duration(timeout)}: the job's last status "
                    f"is {job_status}",
                    "it may still finish: check 'rollback app status'", details={"job_status": job_status})
            interval = next_poll_gap(self.clock() - started, interval)
            self.sleep(min(interval, remaining))

    # ---------------------------------------------------------- git revert
    def check_revert(self, step: Step, ctx: StepContext) -> Check:
        would = f"git revert --no-edit {step.params['spec']}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and earlier.get("head") and self.git(step).head() == earlier["head"]:
            return Check(True, dict(earlier), would)
        return Check(False, {"would_run": would, "commits": step.params["commits"]}, would)

    def revert(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        repo = self.git(step)
        repo.require_clean()
        # Exactly the commits that were planned (and shown), not a fresh reading of the spec.
        result = repo.revert([str(c) for c in step.params["commits"]], spec=str(step.params["spec"]))
        ctx.note(f"reverted {len(result.reverted)} commit(s); HEAD is now {result.head[:12]}", head=result.head)
        return result.to_dict()

    def check_push(self, step: Step, ctx: StepContext) -> Check:
        remote, branch = str(step.params["remote"]), str(step.params["branch"])
        would = f"git push {remote} HEAD:{branch}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and earlier.get("head") and self.git(step).head() == earlier["head"]:
            return Check(True, dict(earlier), would)
        return Check(False, {"would_run": would}, would)

    def push(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        remote, branch = str(step.params["remote"]), str(step.params["branch"])
        repo = self.git(step)
        previous = (ctx.results.get(step.sibling("git-revert")) or {}).get("previous_head")
        repo.push(remote, branch, previous_head=str(previous) if previous else None)
        return {"pushed": f"{remote}/{branch}", "head": repo.head()}

    # ---------------------------------------------------------- the deploy watch
    def check_deploy(self, step: Step, ctx: StepContext) -> Check:
        would = "wait for a READY production deployment of the revert commit to serve production"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:
            return Check(True, dict(earlier), would)
        return Check(False, {"would_wait": would}, would)

    def wait_deploy(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        timeout = float(step.params["timeout"])
        sha = _revert_head(step, ctx)
        if sha is None:
            return {"would_wait": "for a READY production deployment of the revert commit to serve production"}
        client = self.client()
        started = self.clock()
        deadline = started + timeout
        interval = 0.25
        seen: dict[str, str] = {}
        said = started  # a line at least every WAIT_NOTE_SECONDS: a long build is not a hung command
        project_ref = str(step.params["project"])
        project: Project | None = None
        while True:
            try:
                project = client.get_project(project_ref)
                project_ref = project.id
                current = project.production
                if current is not None and current.commit_sha and current.commit_sha == sha and current.is_ready:
                    ctx.note(f"{current.url} ({current.id}) serves production with {sha[:12]}")
                    return {"deployment_id": current.id, "url": current.url, "commit": sha,
                            "seconds": round(self.clock() - started, 3)}
                deployments = client.list_deployments(project.id, limit=5, target="production", sha=sha)
            except VercelError as exc:
                # The revert is pushed: a blip while watching must not abort the watch.
                if not _is_transient(exc) or self.clock() >= deadline:
                    raise
                ctx.note(f"reading the deployment's status failed ({exc.message}); still waiting")
                deployments = []
                project = None
            for deployment in deployments:
                if seen.get(deployment.id) != deployment.state:
                    seen[deployment.id] = deployment.state
                    ctx.note(f"deployment {deployment.url} for {sha[:12]}: {deployment.state}")
                if deployment.state in ("ERROR", "CANCELED"):
                    raise OperationFailed(f"the deployment of the revert ({deployment.label()}) is {deployment.state}",
                                          "see its build logs in the Vercel dashboard")
                if deployment.is_ready and project is not None and project.rollback_active:
                    # Planning refuses while a rollback is in effect; one that started since is a failure
                    # of this run (the revert is pushed), not a precondition the user could have met.
                    raise OperationFailed(
                        f"{deployment.label()} is READY but does not serve production: a rollback paused the "
                        "automatic assignment of production domains",
                        f"promote it: rollback app promote {deployment.id}")
            if self.clock() >= deadline:
                raise OperationFailed(f"no READY production deployment of {sha[:12]} went live within "
                                      f"{format_duration(timeout)}", "check the Vercel dashboard for the build")
            if self.clock() - said >= WAIT_NOTE_SECONDS:
                said = self.clock()
                building = ", ".join(f"{d}: {state}" for d, state in seen.items()) or "no deployment of it yet"
                ctx.note(f"still waiting for {sha[:12]} to serve production ({building}; "
                         f"{format_duration(said - started)} of {format_duration(timeout)})")
            self.sleep(min(interval, max(0.0, deadline - self.clock())))
            interval = min(interval * 1.5, 3.0)


def _revert_head(step: Step, ctx: StepContext) -> str | None:
    result = ctx.results.get(step.sibling("git-revert")) or {}
    head = result.get("head")
    return str(head) if head else None


# ------------------------------------------------------------ health and version (the "verify" layer)
def health_step(config: Config, *, expected_version: str | None = None, expected_from: str | None = None,
                after: str = "the change is done", step_id: str = "health") -> Step | None:
    """The configured health and version checks as a plan step (``None`` without ``health.base_url``).

    The expected version is ``expected_version``, or the ``head`` of step ``expected_from``'s
    result (a revert's commit); it is checked only when a ``version_path`` is configured."""
    settings = config.env.health
    if not settings.base_url:
        return None
    version_path = settings.version_path
    shown = [*settings.paths, *([version_path] if version_path else [])]
    expecting = ""
    if version_path and expected_version:
        expecting = f" (expecting {expected_version[:12]})"
    return Step(id=step_id, action="health.check", target=settings.base_url, layer="verify",
                summary="health and version checks: " + ", ".join(shown) + expecting,
                params={"base_url": settings.base_url, "paths": list(settings.paths), "version_path": version_path,
                        "expect_status": settings.expect_status, "timeout": settings.timeout,
                        "expected_version": expected_version if version_path else None,
                        "expected_from": expected_from, "after": after})


def _health_settings(params: Mapping[str, Any]) -> HealthSettings:
    return HealthSettings(base_url=str(params["base_url"]), paths=list(params.get("paths") or ["/"]),
                          version_path=params.get("version_path"), timeout=float(params.get("timeout") or 5.0),
                          expect_status=int(params.get("expect_status") or 200))


def _expected_version(step: Step, ctx: StepContext) -> str | None:
    if step.params.get("expected_version"):
        return str(step.params["expected_version"])
    source = step.params.get("expected_from")
    if source:
        head = (ctx.results.get(step.sibling(str(source))) or {}).get("head")
        return str(head) if head else None
    return None


@dataclass
class HealthHandlers:
    """The ``health.check`` step: GET the configured paths (and the version endpoint), retried for a
    short settle window; a failed check fails the step with exit 3, listing every check."""

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def handlers(self) -> dict[str, StepHandler]:
        return {"health.check": handler(self.run, self.check)}

    def check(self, step: Step, ctx: StepContext) -> Check:
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:  # passed in the run resumed: the steps after it were built on that
            return Check(True, dict(earlier), f"check {step.params['base_url']}")
        return Check(False, {"would_check": step.params["base_url"]}, f"check {step.params['base_url']}")

    def run(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        results = check_health(_health_settings(step.params), expected_version=_expected_version(step, ctx),
                               sleep=self.sleep, clock=self.clock)
        for result in results:
            ctx.note(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}")
        failed = [r for r in results if not r.ok]
        if failed:
            after = str(step.params.get("after") or "the change is done")
            raise ChecksFailed(f"{len(failed)} of {len(results)} health check(s) failed: "
                               + "; ".join(f"{r.name} {r.detail}" for r in failed),
                               f"{after}; investigate the app", checks=[r.to_dict() for r in results])
        return {"checks": [r.to_dict() for r in results]}


def check_health(settings: HealthSettings, *, expected_version: str | None = None, settle: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> list[CheckResult]:
    """The health and version checks of ``settings``, retried for a short settle window until all pass."""
    window = settings.timeout if settle is None else settle
    with make_health_client(settings) as http:
        checker = HealthChecker(http, settings)
        deadline = clock() + window
        while True:
            results = checker.run(expected_version)
            if all(r.ok for r in results) or clock() >= deadline:
                return results
            sleep(0.25)


def run_health_checks(config: Config, *, expected_version: str | None = None, settle: float | None = None,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> list[CheckResult]:
    """The configured health and version checks, retried for a short settle window until all pass."""
    return check_health(config.env.health, expected_version=expected_version, settle=settle, sleep=sleep,
                        clock=clock)


def handlers(*, config: Config | None = None, client: Callable[[], VercelClient] | None = None,
             repo: GitRepo | None = None, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> dict[str, StepHandler]:
    """This layer's step handlers and the health check's (see :class:`AppHandlers`)."""
    app = AppHandlers(config=config, client_factory=client, repo=repo, sleep=sleep, clock=clock)
    return {**app.handlers(), **HealthHandlers(sleep=sleep, clock=clock).handlers()}


def result_document(planned: AppPlan, outcome: ExecutionResult) -> dict[str, Any]:
    """The document an app command prints: the plan's context plus every step's result."""
    document = planned.to_dict()
    document.update({"ok": True, "dry_run": outcome.dry_run, "run": outcome.run_id,
                     "seconds": round(outcome.seconds, 3), "steps": [s.to_dict() for s in outcome.steps]})
    for item in outcome.steps:
        if item.step.action == "vercel.wait_alias_job":
            document["job_status"] = item.result.get("job_status")
        if item.step.action == "health.check" and not item.dry_run:
            document["health"] = list(item.result.get("checks") or [])
    return document


def apply(planned: AppPlan, step_handlers: Mapping[str, StepHandler], *, journal: Journal | None = None,
          dry_run: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Execute a planned change and return the result document."""
    outcome = execute(planned.plan, step_handlers, journal=journal, dry_run=dry_run, progress=progress)
    return result_document(planned, outcome)
