"""Vercel Rolling Releases in the app layer: abort the canary first, and never roll back past it.

While a rolling release is active, the canary serves a share of production and the *base* (the
deployment that served production before it) the rest. The rollback that restores service is the
**abort**: all traffic back to the base. An instant rollback to "the previous production deployment"
would go further back than the base (the canary never became production), so planning refuses that
unless asked (``past_rolling_release``), and then aborts first.

- :func:`rolling_release_of`: the project's rolling release (what ``app status`` and ``rollback status``
  show; ``None`` when the project never had one or the plan has none);
- :func:`abort_steps`: the two steps of an abort, ``vercel.abort_rolling_release`` (the request, sent as
  ``vercel rolling-release abort --dpl <canary>`` sends it) and ``vercel.wait_abort`` (the check: the
  rolling release is aborted and all traffic is on the base), used by ``rollback app rollback`` and by
  ``rollback run``'s app layer (and, later, by ``watch``);
- :class:`RollingHandlers`: their handlers (:class:`~rollback.commands.app.handlers.AppHandlers` includes
  them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollback.actions import StepHandlers, action
from rollback.adapters.vercel import AliasRequest, RollingRelease, is_transient, request_took
from rollback.errors import BadInput, OperationFailed, VercelError
from rollback.plan import Step
from rollback.runner import Check, StepContext
from rollback.units import format_duration

if TYPE_CHECKING:
    from rollback.adapters.vercel import Deployment, Project, VercelClient
    from rollback.config import Config

__all__ = [
    "ABORT_NOTE",
    "PAST_FLAG",
    "RollingHandlers",
    "abort_steps",
    "past_note",
    "refuse_past",
    "rolling_release_of",
    "rolling_status",
]

PAST_FLAG = "--past-rolling-release"
ABORT_NOTE = (
    "the abort is sent as 'vercel rolling-release abort --dpl <canary>' sends it (an instant rollback request "
    "naming the canary): the rolling release ends ABORTED and its base serves all production traffic. Vercel "
    "treats it as an instant rollback, which can stop the production domains from following new production "
    "deployments until undone ('rollback app status' says whether it did; 'rollback app undo' or a promote "
    "ends that).")


def rolling_release_of(client: VercelClient, project: str) -> RollingRelease | None:
    """The project's rolling release, whatever its state (``None``: none, or no rolling releases on its plan)."""
    return client.get_rolling_release(project)


def rolling_status(config: Config, client: VercelClient) -> dict[str, Any] | None:
    """The configured project's rolling release as a document (for ``app status`` and ``rollback status``):
    ``state``, ``canary``, ``base``, ``percentage``, ``stage``, ``stages``, ``advancement_type``,
    ``next_percentage``, ``started``, ``updated`` and ``line`` (one line for people); ``None`` without one."""
    release = rolling_release_of(client, config.require_vercel().project)
    if release is None:
        return None
    return {**release.to_dict(), "line": release.describe()}


def refuse_past(release: RollingRelease, target: Deployment, *, command: str = "rollback app rollback") -> BadInput:
    """``--to`` names a deployment other than the active release's base: the refusal, naming the flag."""
    canary = release.canary.label() if release.canary else "(unknown)"
    base = release.base.label() if release.base else "(unknown)"
    if target.id == release.canary_id:
        return BadInput(f"{target.label()} is the canary of the active rolling release: it is what a rollback "
                        "takes traffic away from", f"omit --to to abort the rolling release (all traffic to its "
                        f"base {base})")
    return BadInput(f"a rolling release of canary {canary} is active (at {release.percentage:g} %): --to "
                    f"{target.label()} would roll production back past its base {base}",
                    f"omit --to (or give the base) to abort the rolling release; pass {PAST_FLAG} to "
                    f"'{command}' to abort it and then roll back further")


def past_note(release: RollingRelease, target: Deployment) -> str:
    """What ``--past-rolling-release`` means, said in the plan."""
    base = release.base.label() if release.base else "(unknown)"
    return (f"{PAST_FLAG}: the rolling release is aborted first (all traffic back to its base {base}), then "
            f"production is rolled back past the base to {target.label()}, an older deployment than the release "
            "started from: whatever the base changed is undone too")


def abort_steps(project: Project, release: RollingRelease, *, timeout: float, reason: str | None = None) -> list[Step]:
    """The abort of ``release`` (active) as two steps: the request, and the check that ends it."""
    assert release.canary is not None and release.base is not None
    canary, base = release.canary, release.base
    before = project.last_alias_request.to_dict() if project.last_alias_request else None
    params: dict[str, Any] = {
        "project_id": project.id, "project": project.name,
        "canary_deployment_id": canary.id, "canary_url": canary.url, "canary_commit": canary.commit_sha,
        "base_deployment_id": base.id, "base_url": base.url, "base_commit": base.commit_sha,
        "percentage": release.percentage, "stage": release.active_stage.index + 1 if release.active_stage else None,
        "advancement_type": release.advancement_type, "before": before,
    }
    if reason:
        from rollback.redact import redact_text

        params["reason"] = redact_text(reason)
    return [
        Step(id="vercel-abort", action="vercel.abort_rolling_release", target=f"{project.name} production",
             summary=f"abort the rolling release: canary {canary.url} ({release.percentage:g} % of traffic) "
                     f"-> all traffic to the base {base.url}", params=params, destructive=True),
        Step(id="wait-abort", action="vercel.wait_abort", target=f"{project.name} production",
             summary=f"check: the rolling release is aborted and all traffic is on the base {base.url} "
                     f"(up to {format_duration(timeout)})",
             params={"project_id": project.id, "canary_deployment_id": canary.id, "base_deployment_id": base.id,
                     "timeout": timeout, "before": before}),
    ]


# ------------------------------------------------------------------------------------------ handlers


def _before(step: Step) -> AliasRequest | None:
    return AliasRequest.from_dict(step.params.get("before"))


POLL_INTERVAL = 0.1
POLL_MAX_INTERVAL = 1.0


@dataclass
class RollingHandlers(StepHandlers):
    """``vercel.abort_rolling_release`` and ``vercel.wait_abort``. The Vercel client is built on first use."""

    layer = "app"

    def client(self) -> VercelClient:
        return self.services.vercel()


    @staticmethod
    def _base(step: Step) -> dict[str, Any]:
        p = step.params
        # from/to as the instant rollback's result names them: 'rollback app undo' and reports read these.
        return {"project_id": p["project_id"], "canary_deployment_id": p["canary_deployment_id"],
                "base_deployment_id": p["base_deployment_id"], "from_deployment_id": p["canary_deployment_id"],
                "to_deployment_id": p["base_deployment_id"], "to_url": p.get("base_url"),
                "from_url": p.get("canary_url"), "percentage": p.get("percentage")}

    def _aborted(self, step: Step) -> tuple[bool, RollingRelease | None, Project]:
        """Whether the planned release is aborted and the base serves production (read now)."""
        p = step.params
        client = self.client()
        project = client.get_project(str(p["project_id"]))
        release = client.get_rolling_release(str(p["project_id"]))
        done = (release is not None and release.canary_id == p["canary_deployment_id"]
                and release.state == "ABORTED" and project.production_deployment_id == p["base_deployment_id"])
        return done, release, project

    def check_abort(self, step: Step, ctx: StepContext) -> Check:
        p = step.params
        path = f"/v9/projects/{p['project_id']}/rollback/{p['canary_deployment_id']}"
        base = self._base(step)
        if ctx.resuming:
            # An earlier run may have sent it (perhaps killed before it could journal that).
            done, release, _project = self._aborted(step)
            if done:
                return Check(True, {**base, "kind": "abort", "sends": 0, "confirmed_by": "rolling-release"})
            earlier = ctx.earlier.get(step.id)
            if earlier is not None and release is not None and release.canary_id == p["canary_deployment_id"] \
                    and release.state == "ABORTED":
                # Finished by the run this one resumes, whose later steps may have moved production on
                # (--past-rolling-release rolls back past the base): the release staying aborted is its effect.
                return Check(True, dict(earlier))
            if release is not None and release.canary_id == p["canary_deployment_id"] and not release.is_active:
                raise OperationFailed(f"the rolling release of {p['canary_url']} is {release.state} now, not active: "
                                      "there is nothing left to abort",
                                      "see 'rollback app status' before doing anything else")
        # In a fresh run the planning read the release a moment ago: active, with this canary.
        return Check(False, {**base, "would_send": f"POST {path} {{}}"}, f"POST {path} {{}}")

    @action("vercel.abort_rolling_release", check="check_abort")
    def abort(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        p = step.params
        change = self.client().abort_rolling_release(str(p["project_id"]), str(p["canary_deployment_id"]),
                                                     str(p["base_deployment_id"]), before=_before(step))
        if change.sends > 1 or change.confirmed_by != "response":
            ctx.note(f"abort request confirmed by {change.confirmed_by} after {change.sends} send(s)")
        return {**self._base(step), "kind": "abort", "sends": change.sends, "confirmed_by": change.confirmed_by}

    def check_aborted(self, step: Step, ctx: StepContext) -> Check:
        would = (f"GET /v1/projects/{step.params['project_id']}/rolling-release and the project until the release "
                 "is ABORTED and the base serves production")
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:
            return Check(True, dict(earlier), would)
        if ctx.resuming:
            done, _release, project = self._aborted(step)
            last = project.last_alias_request
            if done and (last is None or last.is_terminal):
                return Check(True, {"state": "ABORTED", "job_status": last.job_status if last else None,
                                    "production": project.production_deployment_id, "seconds": 0.0}, would)
        return Check(False, {"would_poll": would}, would)

    @action("vercel.wait_abort", check="check_aborted", read_only=True)
    def wait_abort(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Poll until the release reads ABORTED, the base serves production and the rollback job Vercel
        started for the abort has ended; a job whose aliases failed, a release completed instead, or
        another request taking over fail the step."""
        p = step.params
        canary, base, timeout = str(p["canary_deployment_id"]), str(p["base_deployment_id"]), float(p["timeout"])
        before = _before(step)
        started = self.clock()
        deadline = started + timeout
        interval = POLL_INTERVAL
        said: str | None = None
        while True:
            interval = POLL_INTERVAL if self.clock() - started < 3.0 else min(interval * 1.6, POLL_MAX_INTERVAL)
            try:
                done, release, project = self._aborted(step)
            except VercelError as exc:
                # The abort went out: a blip while watching must not abort the watch.
                if not is_transient(exc) or self.clock() >= deadline:
                    raise
                ctx.note(f"reading the rolling release failed ({exc.message}); still waiting")
                self.sleep(min(interval, max(0.0, deadline - self.clock())))
                continue
            last = project.last_alias_request
            ours = request_took(last, before, "rollback", base)
            if last is not None and not ours and (before is None or last.requested_at != before.requested_at):
                raise OperationFailed(f"the abort was superseded: someone requested a {last.type} to "
                                      f"{last.to_deployment_id} at {last.requested}",
                                      "see 'rollback app status' before doing anything else")
            state = release.state if release is not None else "gone"
            job = last.job_status if ours and last is not None else "pending"
            seen = f"rolling release {state}, rollback job {job}"
            if seen != said:
                ctx.note(f"abort: {seen} ({format_duration(self.clock() - started)})", state=state, job_status=job)
                said = seen
            if release is not None and release.canary_id == canary and release.state == "COMPLETE":
                raise OperationFailed(f"the rolling release of {p.get('canary_url') or canary} completed instead "
                                      "of aborting: the canary serves all traffic",
                                      "roll back with 'rollback app rollback' (the canary is production now)")
            if job == "failed":
                failed = self.client().list_job_aliases(str(p["project_id"]), "rollback", failed_only=True)
                names = ", ".join(a.alias for a in failed) or "unknown aliases"
                raise VercelError(f"the abort's rollback job failed: {len(failed)} alias(es) not moved to the base: "
                                  f"{names}", "check those domains in the Vercel dashboard, then run the command "
                                  "again", code="job_failed", details={"failed_aliases": [a.to_dict() for a in failed]})
            if done and ours and last is not None and last.is_terminal:
                return {"state": "ABORTED", "job_status": job, "production": base, "canary": canary,
                        "seconds": round(self.clock() - started, 3)}
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise OperationFailed(f"the abort was not confirmed within {format_duration(timeout)} ({said})",
                                      "it may still finish: check 'rollback app status'")
            self.sleep(min(interval, remaining))
