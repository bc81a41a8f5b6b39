"""The app layer's step handlers: the Vercel alias job (rollback, promote, undo), git revert and push,
the deploy watch; and :func:`apply`, which runs an app plan with them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.actions import StepHandlers, action
from rollback.adapters.git import GitRepo
from rollback.adapters.vercel import AliasRequest, is_transient, request_took
from rollback.commands.app.health import HealthHandlers
from rollback.commands.app.rolling import RollingHandlers
from rollback.context import Services
from rollback.errors import (
    BadInput,
    OperationFailed,
    VercelError,
)
from rollback.plan import Step
from rollback.runner import Check, ExecutionResult, Prepared, StepContext, StepHandler, as_observer
from rollback.units import format_duration

if TYPE_CHECKING:
    from rollback.adapters.vercel import Project, VercelClient
    from rollback.commands.app.plan import AppFacts
    from rollback.journal import Journal


__all__ = [
    "POLL_INTERVAL",
    "POLL_MAX_INTERVAL",
    "POLL_STEADY_SECONDS",
    "WAIT_NOTE_SECONDS",
    "AppHandlers",
    "apply",
    "handlers",
    "next_poll_gap",
    "result_document",
]


# ------------------------------------------------------------ the handlers
def _is_transient(exc: VercelError) -> bool:
    return is_transient(exc)


def _before(step: Step) -> AliasRequest | None:
    return AliasRequest.from_dict(step.params.get("before"))


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
class AppHandlers(StepHandlers):
    """The app layer's step handlers (Vercel alias jobs, git revert and push, the deploy watch)
    and the adapters they use. The Vercel client is built on first use, so a git-only plan never
    needs a Vercel token. Each handler reads only its step's params and earlier results."""

    layer = "app"

    _repo: GitRepo | None = field(default=None, init=False, repr=False)

    def client(self) -> VercelClient:
        return self.services.vercel()

    def git(self, step: Step) -> GitRepo:
        """The injected repository (``Services(git=...)``), else the one the step names (``params["repo"]``)."""
        if self._repo is None:
            self._repo = self.services.existing("git")
        if self._repo is None:
            if not step.params.get("repo"):
                raise BadInput(f"step {step.id} does not name its git work tree", "plan it again")
            self._repo = GitRepo(Path(str(step.params["repo"])))
        return self._repo


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
            if step.id in ctx.earlier and not serves:
                # A later step of the same run may have moved production on (--switch-database
                # redeploys what this step rolled back to, and promotes the new build).
                serves = _moved_on_by_run(project.production_deployment_id, step, ctx)
            if _ours(project.last_alias_request, step, kind) or (step.id in ctx.earlier and serves):
                return Check(True, {**base, "kind": kind, "deployment_id": p["to_deployment_id"], "sends": 0,
                                    "confirmed_by": "lastAliasRequest"})
        # In a fresh run the planning read the project a moment ago and refused an alias job in flight.
        return Check(False, {**base, "would_send": f"POST {path}"}, f"POST {path}")

    @action("vercel.rollback", check="check_request")
    @action("vercel.promote", check="check_request")
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

    @action("vercel.wait_alias_job", check="check_alias_job", read_only=True)
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

    @action("git.revert", check="check_revert")
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

    @action("git.push", check="check_push")
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

    @action("vercel.wait_deploy", check="check_deploy", read_only=True)
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


def _moved_on_by_run(production: str | None, step: Step, ctx: StepContext) -> bool:
    """Whether ``production`` is a deployment that a step after ``step``, finished by the run being
    resumed, put there (a redeploy's ``deployment``, a later promote's ``to_deployment_id``)."""
    if not production:
        return False
    ids = [s.id for s in ctx.plan.steps]
    later = ids[ids.index(step.id) + 1:] if step.id in ids else []
    return any(production in (result.get("deployment"), result.get("to_deployment_id"))
               for sid in later if (result := ctx.earlier.get(sid)) is not None)


def _revert_head(step: Step, ctx: StepContext) -> str | None:
    result = ctx.results.get(step.sibling("git-revert")) or {}
    head = result.get("head")
    return str(head) if head else None



def handlers(services: Services) -> dict[str, StepHandler]:
    """This layer's step handlers and the health check's (see :class:`AppHandlers`)."""
    return {**AppHandlers(services).handlers(), **RollingHandlers(services).handlers(),
            **HealthHandlers(services).handlers()}


def result_document(planned: Prepared[AppFacts], outcome: ExecutionResult) -> dict[str, Any]:
    """The document an app command prints: the plan's context plus every step's result."""
    document = planned.to_dict()
    document.update({"ok": True, "dry_run": outcome.dry_run, "run": outcome.run_id,
                     "seconds": round(outcome.seconds, 3), "steps": [s.to_dict() for s in outcome.steps]})
    for item in outcome.steps:
        if item.step.action in ("vercel.wait_alias_job", "vercel.wait_abort"):
            document["job_status"] = item.result.get("job_status")
        if item.step.action == "vercel.wait_abort" and not item.dry_run:
            document["rolling_release_state"] = item.result.get("state")
        if item.step.action == "health.check" and not item.dry_run:
            document["health"] = list(item.result.get("checks") or [])
    return document


def apply(planned: Prepared[AppFacts], step_handlers: Mapping[str, StepHandler], *, journal: Journal | None = None,
          dry_run: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Execute a planned change and return the result document."""
    outcome = planned.with_handlers(step_handlers).run(journal=journal, dry_run=dry_run,
                                                       observers=(as_observer(progress),)).go()
    return result_document(planned, outcome)
