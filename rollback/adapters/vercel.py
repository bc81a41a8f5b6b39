"""Vercel's REST API, over an injected ``httpx.Client``.

The client is built by the caller (:func:`make_http_client` builds the usual
one: base URL from ``VERCEL_API_URL``, ``Authorization: Bearer $VERCEL_TOKEN``)
so tests can point it at the emulator. Methods return our dataclasses
(:class:`Deployment`, :class:`Project`, :class:`AliasRequest`, :class:`AliasStatus`),
never raw JSON.

Errors: Vercel answers ``{"error": {"code", "message"}}``; :func:`_api_error`
maps that (and transport failures) to :class:`~rollback.errors.VercelError`
with the message kept and ``.status``/``.code`` set. Reads are retried with
backoff on 429/500/502/503/504 and transport errors, honouring ``Retry-After``
(seconds or an HTTP date), within a total deadline. A rollback or promote POST
is never re-sent blindly: after a failed or timed-out POST we read the
project's ``lastAliasRequest`` (for a grace period, when the request may have
reached Vercel) and re-send only if the request did not take; only a failure
to connect at all is re-sent without looking, and when the look itself fails
the outcome is reported as unknown rather than guessed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rollback.adapters.http import DEFAULT_MAX_BODY, AnswerTooLarge, AnswerTooSlow, fetch
from rollback.errors import BadInput, VercelError
from rollback.redact import redact_text

if TYPE_CHECKING:
    import httpx

__all__ = [
    "RETRY_STATUSES",
    "TERMINAL_JOB_STATUSES",
    "AliasChange",
    "AliasRequest",
    "AliasStatus",
    "Deployment",
    "EnvVar",
    "Project",
    "RollingRelease",
    "RollingStage",
    "VercelClient",
    "is_transient",
    "make_http_client",
    "parse_retry_after",
    "request_took",
]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TERMINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "skipped"})


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Deployment:
    """One deployment. ``target`` is ``"production"`` or ``None`` (a preview)."""

    id: str
    url: str
    name: str = ""
    project_id: str | None = None
    target: str | None = None
    state: str = "UNKNOWN"
    created_at: int = 0
    ready_at: int | None = None
    commit_sha: str | None = None
    commit_message: str | None = None
    commit_ref: str | None = None
    is_rollback_candidate: bool | None = None
    alias_assigned: bool = False
    aliases: tuple[str, ...] = ()
    team_id: str | None = None

    @property
    def is_production(self) -> bool:
        return self.target == "production"

    @property
    def is_ready(self) -> bool:
        return self.state == "READY"

    @property
    def created(self) -> str | None:
        return _iso(self.created_at)

    def label(self) -> str:
        return f"{self.url} ({self.id})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "url": self.url, "name": self.name, "project_id": self.project_id,
            "target": self.target or "preview", "state": self.state, "created": self.created,
            "created_at": self.created_at, "commit": self.commit_sha, "commit_message": self.commit_message,
            "branch": self.commit_ref, "rollback_candidate": self.is_rollback_candidate,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Deployment:
        """From any of Vercel's deployment shapes (v6 list item, v13, a project's target)."""
        meta = data.get("meta") if isinstance(data.get("meta"), Mapping) else {}
        assert isinstance(meta, Mapping)
        git_source = data.get("gitSource") if isinstance(data.get("gitSource"), Mapping) else {}
        assert isinstance(git_source, Mapping)
        team = data.get("team") if isinstance(data.get("team"), Mapping) else {}
        assert isinstance(team, Mapping)
        url = str(data.get("url") or "")
        sha = (meta.get("githubCommitSha") or meta.get("gitlabCommitSha") or meta.get("bitbucketCommitSha")
               or git_source.get("sha"))
        ref = meta.get("githubCommitRef") or meta.get("gitlabCommitRef") or meta.get("bitbucketCommitRef")
        message = (meta.get("githubCommitMessage") or meta.get("gitlabCommitMessage")
                   or meta.get("bitbucketCommitMessage"))
        assigned = data.get("aliasAssigned")
        candidate = data.get("isRollbackCandidate")
        return cls(
            id=str(data.get("uid") or data.get("id") or ""),
            url=url,
            name=str(data.get("name") or ""),
            project_id=data.get("projectId") if isinstance(data.get("projectId"), str) else None,
            target=data.get("target") if isinstance(data.get("target"), str) else None,
            state=str(data.get("readyState") or data.get("state") or data.get("status") or "UNKNOWN"),
            created_at=int(data.get("createdAt") or data.get("created") or 0),
            ready_at=int(data["ready"]) if isinstance(data.get("ready"), (int, float)) else (
                int(data["readyAt"]) if isinstance(data.get("readyAt"), (int, float)) else None),
            commit_sha=str(sha) if sha else None,
            commit_message=str(message).splitlines()[0] if message else None,
            commit_ref=str(ref) if ref else None,
            is_rollback_candidate=candidate if isinstance(candidate, bool) else None,
            alias_assigned=bool(assigned),
            aliases=tuple(str(a) for a in data.get("alias") or () if isinstance(a, str)),
            team_id=str(team["id"]) if team.get("id") else (
                str(data["teamId"]) if isinstance(data.get("teamId"), str) else None),
        )


@dataclass(frozen=True)
class AliasRequest:
    """A project's last rollback or promote request and its job's progress."""

    type: str  # rollback | promote
    job_status: str  # pending | in-progress | succeeded | failed | skipped
    to_deployment_id: str
    from_deployment_id: str | None
    requested_at: int
    from_rolling_release_id: str | None = None  # a rollback that ended a rolling release: its canary

    @property
    def is_terminal(self) -> bool:
        return self.job_status in TERMINAL_JOB_STATUSES

    @property
    def requested(self) -> str | None:
        return _iso(self.requested_at)

    def to_dict(self) -> dict[str, Any]:
        document = {"type": self.type, "job_status": self.job_status, "from_deployment_id": self.from_deployment_id,
                    "to_deployment_id": self.to_deployment_id, "requested_at": self.requested_at,
                    "requested": self.requested}
        if self.from_rolling_release_id:
            document["from_rolling_release_id"] = self.from_rolling_release_id
        return document

    @classmethod
    def from_dict(cls, raw: Any) -> AliasRequest | None:
        """The inverse of :meth:`to_dict` (a plan's ``before``, read back from a journal)."""
        if not isinstance(raw, Mapping):
            return None
        return cls(type=str(raw.get("type")), job_status=str(raw.get("job_status")),
                   to_deployment_id=str(raw.get("to_deployment_id")), from_deployment_id=raw.get("from_deployment_id"),
                   requested_at=int(raw.get("requested_at") or 0),
                   from_rolling_release_id=raw.get("from_rolling_release_id"))

    @classmethod
    def from_api(cls, data: Mapping[str, Any] | None) -> AliasRequest | None:
        if not isinstance(data, Mapping) or not data.get("toDeploymentId"):
            return None
        return cls(type=str(data.get("type") or ""), job_status=str(data.get("jobStatus") or ""),
                   to_deployment_id=str(data["toDeploymentId"]),
                   from_deployment_id=str(data["fromDeploymentId"]) if data.get("fromDeploymentId") else None,
                   requested_at=int(data.get("requestedAt") or 0),
                   from_rolling_release_id=str(data["fromRollingReleaseId"]) if data.get("fromRollingReleaseId")
                   else None)


@dataclass(frozen=True)
class Project:
    """A project, its current production deployment and its last alias request."""

    id: str
    name: str
    account_id: str
    production: Deployment | None = None
    last_alias_request: AliasRequest | None = None
    rollback_active: bool = False  # Vercel stops auto-assigning production domains until undone

    @property
    def production_deployment_id(self) -> str | None:
        return self.production.id if self.production else None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "account_id": self.account_id,
                "production": self.production.to_dict() if self.production else None,
                "last_alias_request": self.last_alias_request.to_dict() if self.last_alias_request else None,
                "rollback_active": self.rollback_active}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Project:
        targets = data.get("targets") if isinstance(data.get("targets"), Mapping) else {}
        assert isinstance(targets, Mapping)
        production = targets.get("production")
        return cls(
            id=str(data.get("id") or ""),
            name=str(data.get("name") or ""),
            account_id=str(data.get("accountId") or ""),
            production=Deployment.from_api(production) if isinstance(production, Mapping) else None,
            last_alias_request=AliasRequest.from_api(data.get("lastAliasRequest")),
            rollback_active=bool(data.get("lastRollbackTarget")),
        )


@dataclass(frozen=True)
class RollingStage:
    """One stage of a rolling release: the canary's share of production traffic, and how it advances."""

    index: int
    percentage: float
    require_approval: bool
    duration_seconds: float | None  # automatic advancement after this long (None: approval, or the last stage)
    is_final: bool

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "percentage": self.percentage, "require_approval": self.require_approval,
                "duration_seconds": self.duration_seconds, "final": self.is_final}

    @classmethod
    def from_api(cls, data: Any) -> RollingStage | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("targetPercentage"), (int, float)):
            return None
        duration = data.get("duration")
        return cls(index=int(data.get("index") or 0), percentage=float(data["targetPercentage"]),
                   require_approval=bool(data.get("requireApproval")),
                   duration_seconds=float(duration) if isinstance(duration, (int, float)) else None,
                   is_final=bool(data.get("isFinalStage")))


@dataclass(frozen=True)
class RollingRelease:
    """A project's rolling release (``GET /v1/projects/{idOrName}/rolling-release``), whatever its state:
    the canary takes ``percentage`` % of production traffic from the base while ``ACTIVE``; ``ABORTED``
    sent it all back to the base; ``COMPLETE`` gave it all to the canary."""

    state: str  # ACTIVE | COMPLETE | ABORTED
    canary: Deployment | None
    base: Deployment | None  # Vercel's currentDeployment: what serves the rest of the traffic
    advancement_type: str  # automatic | manual-approval
    stages: tuple[RollingStage, ...]
    active_stage: RollingStage | None  # null once aborted
    next_stage: RollingStage | None
    started_at: int = 0
    updated_at: int = 0

    @property
    def is_active(self) -> bool:
        return self.state == "ACTIVE"

    @property
    def percentage(self) -> float:
        """The canary's share of production traffic now, in percent (0 unless active)."""
        return self.active_stage.percentage if self.is_active and self.active_stage is not None else 0.0

    @property
    def canary_id(self) -> str | None:
        return self.canary.id if self.canary is not None else None

    @property
    def base_id(self) -> str | None:
        return self.base.id if self.base is not None else None

    def describe(self) -> str:
        """One line: ``ACTIVE: canary <url> (<id>) at 10 % (stage 1 of 3, manual-approval), base <url> (<id>)``."""
        canary = self.canary.label() if self.canary else "(unknown canary)"
        base = self.base.label() if self.base else "(unknown base)"
        if not self.is_active:
            return f"{self.state}: canary {canary}, base {base}"
        stage = (f" (stage {self.active_stage.index + 1} of {len(self.stages)}, {self.advancement_type})"
                 if self.active_stage is not None else "")
        return f"{self.state}: canary {canary} at {self.percentage:g} %{stage}, base {base}"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "canary": self.canary.to_dict() if self.canary else None,
                "base": self.base.to_dict() if self.base else None, "percentage": self.percentage,
                "stage": self.active_stage.index + 1 if self.active_stage is not None else None,
                "stages": [s.to_dict() for s in self.stages], "advancement_type": self.advancement_type,
                "next_percentage": self.next_stage.percentage if self.next_stage is not None else None,
                "started": _iso(self.started_at), "updated": _iso(self.updated_at),
                "started_at": self.started_at, "updated_at": self.updated_at}

    @classmethod
    def from_api(cls, data: Any) -> RollingRelease | None:
        if not isinstance(data, Mapping) or not data.get("state"):
            return None
        canary, base = data.get("canaryDeployment"), data.get("currentDeployment")
        stages = tuple(s for s in (RollingStage.from_api(item) for item in data.get("stages") or []) if s is not None)
        return cls(state=str(data["state"]).upper(),
                   canary=Deployment.from_api(canary) if isinstance(canary, Mapping) else None,
                   base=Deployment.from_api(base) if isinstance(base, Mapping) else None,
                   advancement_type=str(data.get("advancementType") or ""), stages=stages,
                   active_stage=RollingStage.from_api(data.get("activeStage")),
                   next_stage=RollingStage.from_api(data.get("nextStage")),
                   started_at=int(data.get("startedAt") or 0), updated_at=int(data.get("updatedAt") or 0))


@dataclass(frozen=True)
class AliasStatus:
    """One alias of a rollback or promote job and how it fared."""

    alias: str
    status: str
    deployment_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "status": self.status, "deployment_id": self.deployment_id}


@dataclass(frozen=True)
class AliasChange:
    """The outcome of a rollback or promote request: how many POSTs were sent,
    and how we know it took (``response`` or ``lastAliasRequest``)."""

    kind: str
    project_id: str
    deployment_id: str
    sends: int
    confirmed_by: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "project_id": self.project_id, "deployment_id": self.deployment_id,
                "sends": self.sends, "confirmed_by": self.confirmed_by}


@dataclass(frozen=True)
class EnvVar:
    """A project environment variable, without its value: a value (often a secret, a database
    URL with its password) is read only when needed (:meth:`VercelClient.env_value`) and never
    kept, printed or journaled."""

    id: str
    key: str
    type: str
    target: tuple[str, ...]
    updated_at: int = 0
    git_branch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key, "type": self.type, "target": list(self.target),
                "updated": _iso(self.updated_at), "git_branch": self.git_branch}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> EnvVar:
        target = data.get("target")
        targets = tuple(str(t) for t in target) if isinstance(target, list) else (
            (str(target),) if isinstance(target, str) else ())
        return cls(id=str(data.get("id") or ""), key=str(data.get("key") or ""), type=str(data.get("type") or ""),
                   target=targets, updated_at=int(data.get("updatedAt") or 0),
                   git_branch=str(data["gitBranch"]) if data.get("gitBranch") else None)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def make_http_client(base_url: str, token: str | None, *, timeout: float = 15.0) -> httpx.Client:
    """The usual client: Vercel's base URL and the bearer token. Missing token: exit 2."""
    from rollback.adapters.http import import_httpx

    import_httpx()
    import httpx

    if not token:
        raise BadInput("VERCEL_TOKEN is not set", "export VERCEL_TOKEN=<a token from vercel.com/account/tokens>")
    # A plain-http base URL (the emulator) never does TLS: skip building an SSL context
    # (loading the CA bundle costs ~15 ms of a command benchmarked in milliseconds).
    # Redirects are not followed, so nothing can be sent over https without verification.
    plain_http = base_url.lower().startswith("http://")
    try:
        return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}",
                                                         "User-Agent": "rollback-cli"},
                            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)), verify=not plain_http,
                            follow_redirects=False)
    except httpx.InvalidURL as exc:
        raise BadInput(f"VERCEL_API_URL={redact_text(repr(base_url[:200]))} is not a usable URL "
                       f"({redact_text(str(exc))})", "set VERCEL_API_URL to a URL such as https://host:port, "
                       "or unset it") from None


@dataclass
class _Budget:
    """Attempts and a total deadline shared by one logical call."""

    deadline: float
    attempts: int
    clock: Callable[[], float]
    used: int = 0

    def remaining(self) -> float:
        return self.deadline - self.clock()


@dataclass
class VercelClient:
    """Vercel's API. ``team`` is a team id (``team_...``) or slug, sent on every call."""

    http: httpx.Client
    team: str | None = None
    deadline: float = 30.0  # seconds, total, for one call including its retries
    max_attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0
    in_flight_grace: float = 5.0  # after a POST that may have reached Vercel, how long to look for it landing
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    # Wall-clock seconds since the epoch: a Retry-After given as an HTTP date is counted from it.
    wall_clock: Callable[[], float] = time.time
    on_retry: Callable[[str], None] = field(default=lambda message: None)
    max_body: int = DEFAULT_MAX_BODY  # bytes of one answer read at most ([http] max_body_bytes)

    # ------------------------------------------------------------ plumbing
    def _params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        out = {k: v for k, v in (params or {}).items() if v is not None}
        if self.team:
            out["teamId" if self.team.startswith("team_") else "slug"] = self.team
        return out

    def _budget(self) -> _Budget:
        return _Budget(deadline=self.clock() + self.deadline, attempts=self.max_attempts, clock=self.clock)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return float(min(self.max_backoff, self.backoff * (2 ** (attempt - 1))))

    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, budget: _Budget | None = None) -> httpx.Response:
        """One HTTP exchange, its answer read through :func:`~rollback.adapters.http.fetch` (at most
        :attr:`max_body` bytes, within the client's read timeout in all, and within ``budget``);
        transport failures become VercelError (``transient``)."""
        import httpx

        limit = float(self.http.timeout.read or 15.0)
        if budget is not None:
            limit = min(limit, max(1.0, budget.remaining()))
        try:
            return fetch(self.http, method, path, params=self._params(params), json=json, max_body=self.max_body,
                         deadline=limit)
        except AnswerTooSlow as exc:
            raise VercelError(f"Vercel API {method} {_path_only(path)} timed out: {exc.reason}",
                              "check connectivity to the Vercel API, then retry", code="timeout", status=None,
                              transient=True, retry_after=None, sent=True) from exc
        except AnswerTooLarge as exc:
            raise VercelError(f"Vercel API {method} {_path_only(path)} answered {exc.status}, but {exc.reason}",
                              "check VERCEL_API_URL (a proxy or captive portal?), or raise [http] max_body_bytes",
                              code="too_large", status=exc.status, transient=False, retry_after=None,
                              sent=True) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # No connection, so no byte of the request left: the only failure safe to re-send blindly.
            raise VercelError(f"cannot reach the Vercel API ({redact_text(type(exc).__name__)}: "
                              f"{redact_text(str(exc))[:200]})", "check VERCEL_API_URL and your network",
                              code="connect", status=None, transient=True, retry_after=None, sent=False) from exc
        except httpx.TimeoutException as exc:
            raise VercelError(f"Vercel API {method} {_path_only(path)} timed out",
                              "check connectivity to the Vercel API, then retry", code="timeout", status=None,
                              transient=True, retry_after=None, sent=True) from exc
        except httpx.HTTPError as exc:
            raise VercelError(f"cannot reach the Vercel API ({redact_text(type(exc).__name__)}: "
                              f"{redact_text(str(exc))[:200]})", "check VERCEL_API_URL and your network",
                              code="network", status=None, transient=True, retry_after=None, sent=True) from exc

    def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                 budget: _Budget | None = None) -> httpx.Response:
        """A read (or idempotent call), retried on transient failures within the budget."""
        budget = budget or self._budget()
        while True:
            budget.used += 1
            try:
                response = self._send(method, path, params=params, json=json, budget=budget)
                if response.status_code < 400:
                    return response
                error = _api_error(response, method, path, now=self.wall_clock())
            except VercelError as exc:
                error = exc
            if not error.transient:
                raise error
            delay = self._delay(budget.used, error.retry_after)
            if budget.used >= budget.attempts or delay > budget.remaining():
                raise error
            self.on_retry(f"{error.message}; retrying in {delay:.1f} s ({budget.used}/{budget.attempts})")
            self.sleep(delay)

    def _json(self, response: httpx.Response) -> Any:
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise VercelError(f"Vercel API answered {response.status_code} with a body that is not JSON",
                              code="bad_response", status=response.status_code) from exc

    # -------------------------------------------------------------- reads
    def get_project(self, id_or_name: str, *, deadline: float | None = None) -> Project:
        """``GET /v9/projects/{idOrName}``: the project, its production deployment and ``lastAliasRequest``.

        ``deadline`` (a :attr:`clock` reading) caps the call and its retries instead of :attr:`deadline`."""
        budget = None if deadline is None else _Budget(deadline=deadline, attempts=self.max_attempts,
                                                       clock=self.clock)
        data = self._json(self._request("GET", f"/v9/projects/{quote(id_or_name, safe='')}", budget=budget))
        return Project.from_api(data)

    def get_rolling_release(self, project: str) -> RollingRelease | None:
        """``GET /v1/projects/{idOrName}/rolling-release``: the project's rolling release, active, aborted or
        complete; ``None`` when it never had one, or when the team's plan has none (402 or 404: Rolling
        Releases are a Pro and Enterprise feature). A 403 is raised: a token that may not read it must not
        be taken for "no canary"."""
        path = f"/v1/projects/{quote(project, safe='')}/rolling-release"
        try:
            data = self._json(self._request("GET", path))
        except VercelError as exc:
            if exc.status in (402, 404):
                return None
            raise
        return RollingRelease.from_api(data.get("rollingRelease") if isinstance(data, Mapping) else None)

    def get_deployment(self, id_or_url: str) -> Deployment:
        """``GET /v13/deployments/{idOrUrl}`` (an id, or a URL / hostname)."""
        host = id_or_url.split("://", 1)[-1].split("/", 1)[0] if "." in id_or_url else id_or_url
        data = self._json(self._request("GET", f"/v13/deployments/{quote(host, safe='')}"))
        return Deployment.from_api(data)

    def iter_deployments(self, project_id: str, *, target: str | None = "production",
                         states: tuple[str, ...] = (), page_size: int = 20, sha: str | None = None,
                         max_pages: int = 50) -> Iterator[Deployment]:
        """``GET /v6/deployments``, newest first, following ``pagination.next`` as ``until``.

        At most ``max_pages`` pages, all within one :attr:`deadline`: a cursor that never
        ends (or a very long history) must not keep a command paging forever."""
        until: int | None = None
        deadline = self.clock() + self.deadline
        for _ in range(max_pages):
            if self.clock() >= deadline:
                raise VercelError(f"listing deployments took longer than {self.deadline:.0f} s",
                                  "check connectivity to the Vercel API, then retry", code="deadline",
                                  status=None, transient=True, retry_after=None)
            params = {"projectId": project_id, "target": target, "limit": page_size, "until": until,
                      "state": ",".join(states) if states else None, "sha": sha}
            budget = _Budget(deadline=deadline, attempts=self.max_attempts, clock=self.clock)
            data = self._json(self._request("GET", "/v6/deployments", params=params, budget=budget))
            for item in data.get("deployments") or []:
                if isinstance(item, Mapping):
                    yield Deployment.from_api(item)
            following = (data.get("pagination") or {}).get("next")
            if not following or following == until:
                return
            until = int(following)

    def list_deployments(self, project_id: str, *, limit: int = 20, target: str | None = "production",
                         states: tuple[str, ...] = (), sha: str | None = None,
                         where: Callable[[Deployment], bool] | None = None) -> list[Deployment]:
        """Up to ``limit`` deployments (matching ``where``), paging as needed."""
        found: list[Deployment] = []
        for deployment in self.iter_deployments(project_id, target=target, states=states,
                                                page_size=min(max(limit, 20), 100), sha=sha):
            if where is None or where(deployment):
                found.append(deployment)
                if len(found) >= limit:
                    break
        return found

    def list_job_aliases(self, project_id: str, kind: str, *, failed_only: bool = True) -> list[AliasStatus]:
        """The aliases of the last rollback/promote job (``failedOnly``), following pagination.

        Promote uses the published ``/v1/projects/{id}/promote/aliases``; rollback
        the route Vercel's own CLI reads, ``/v9/projects/{id}/rollback/aliases``.
        """
        path = (f"/v1/projects/{quote(project_id, safe='')}/promote/aliases" if kind == "promote"
                else f"/v9/projects/{quote(project_id, safe='')}/rollback/aliases")
        out: list[AliasStatus] = []
        until: int | None = None
        for _ in range(50):
            data = self._json(self._request("GET", path, params={
                "failedOnly": "true" if failed_only else None, "limit": 100, "until": until}))
            for item in data.get("aliases") or []:
                if not isinstance(item, Mapping):
                    continue
                alias = item.get("alias")
                if isinstance(alias, Mapping):  # the CLI's /v9 shape
                    out.append(AliasStatus(str(alias.get("alias") or ""), str(item.get("status") or ""),
                                           alias.get("deploymentId")))
                else:
                    out.append(AliasStatus(str(alias or ""), str(item.get("status") or ""), None))
            following = (data.get("pagination") or {}).get("next")
            if not following or following == until:
                break
            until = int(following)
        return out

    # -------------------------------------------------- environment variables
    # GET /v10/projects/{idOrName}/env, GET /v1/projects/{idOrName}/env/{id} and
    # PATCH /v9/projects/{idOrName}/env/{id}, as Vercel's REST API reference documents them (the
    # OpenAPI subset in /work/shared/fixtures/vercel/openapi-subset.json does not include them).
    def list_env(self, project: str) -> list[EnvVar]:
        """``GET /v10/projects/{idOrName}/env``: the project's variables (values left out)."""
        data = self._json(self._request("GET", f"/v10/projects/{quote(project, safe='')}/env"))
        # Vercel answers {"envs": [...], "pagination": ...}, a list, or a single variable.
        items = data.get("envs") if isinstance(data, Mapping) and "envs" in data else data
        if isinstance(items, Mapping):
            items = [items]
        return [EnvVar.from_api(item) for item in items or [] if isinstance(item, Mapping)]

    def env_value(self, project: str, env_id: str) -> str | None:
        """``GET /v1/projects/{idOrName}/env/{id}``: the decrypted value (``None`` when Vercel will not
        decrypt it: a ``sensitive`` variable). The caller uses it at once and never keeps it."""
        data = self._json(self._request("GET", f"/v1/projects/{quote(project, safe='')}/env/{quote(env_id, safe='')}"))
        if not isinstance(data, Mapping) or data.get("decrypted") is False:
            return None
        value = data.get("value")
        return value if isinstance(value, str) else None

    def edit_env(self, project: str, env_id: str, *, value: str) -> EnvVar:
        """``PATCH /v9/projects/{idOrName}/env/{id}`` with a new ``value`` (setting a value twice is harmless,
        so the call is retried like a read). Takes effect for deployments built after it."""
        path = f"/v9/projects/{quote(project, safe='')}/env/{quote(env_id, safe='')}"
        return EnvVar.from_api(self._json(self._request("PATCH", path, json={"value": value})))

    def redeploy(self, project_name: str, deployment_id: str, *, target: str | None = "production") -> Deployment:
        """``POST /v13/deployments`` with ``deploymentId``: a new build of that deployment's source, with the
        project's variables as they are now. Sent once (a new deployment is not idempotent): only a
        failure to connect at all is re-sent."""
        body: dict[str, Any] = {"name": project_name, "deploymentId": deployment_id}
        if target:
            body["target"] = target
        budget = self._budget()
        while True:
            budget.used += 1
            try:
                response = self._send("POST", "/v13/deployments", json=body, budget=budget)
            except VercelError as exc:
                if exc.sent or budget.used >= budget.attempts:
                    raise
                self.sleep(self._delay(budget.used, None))
                continue
            if response.status_code >= 400:
                raise _api_error(response, "POST", "/v13/deployments")
            return Deployment.from_api(self._json(response))

    # ------------------------------------------------------------- writes
    def request_rollback(self, project_id: str, deployment_id: str, *, description: str | None = None,
                         before: AliasRequest | None = None) -> AliasChange:
        """``POST /v1/projects/{projectId}/rollback/{deploymentId}?description=...``, once per intent."""
        path = f"/v1/projects/{quote(project_id, safe='')}/rollback/{quote(deployment_id, safe='')}"
        return self._alias_change("rollback", path, project_id, deployment_id, before,
                                  params={"description": description or None})

    def abort_rolling_release(self, project_id: str, canary_id: str, base_id: str, *,
                              before: AliasRequest | None = None) -> AliasChange:
        """Abort the project's active rolling release as ``vercel rolling-release abort --dpl <canary>``
        sends it: ``POST /v9/projects/{projectId}/rollback/{canaryId}`` with an empty JSON body. Vercel
        answers with a rollback job that points production at the release's base (``lastAliasRequest``:
        ``toDeploymentId`` the base, ``fromRollingReleaseId`` the canary), which is how a request that may
        or may not have landed is recognised. Once per intent, as :meth:`request_rollback`."""
        path = f"/v9/projects/{quote(project_id, safe='')}/rollback/{quote(canary_id, safe='')}"
        return self._alias_change("rollback", path, project_id, base_id, before, params=None)

    def request_promote(self, project_id: str, deployment_id: str, *,
                        before: AliasRequest | None = None) -> AliasChange:
        """``POST /v10/projects/{projectId}/promote/{deploymentId}``, once per intent."""
        path = f"/v10/projects/{quote(project_id, safe='')}/promote/{quote(deployment_id, safe='')}"
        return self._alias_change("promote", path, project_id, deployment_id, before, params=None)

    def _alias_change(self, kind: str, path: str, project_id: str, deployment_id: str,
                      before: AliasRequest | None, params: Mapping[str, Any] | None) -> AliasChange:
        """Send the POST; after a transient failure, re-send only if ``lastAliasRequest`` shows it did not take."""
        budget = self._budget()
        sends = 0
        while True:
            sends += 1
            budget.used += 1
            try:
                response = self._send("POST", path, params=params, json={}, budget=budget)
                if response.status_code < 400:
                    return AliasChange(kind, project_id, deployment_id, sends, "response")
                error = _api_error(response, "POST", path, now=self.wall_clock())
            except VercelError as exc:
                error = exc
            if not is_transient(error):
                raise error
            if error.sent:
                landed = self._await_landing(kind, project_id, deployment_id, before, error, budget)
                if landed is not None:
                    return AliasChange(kind, project_id, deployment_id, sends, "lastAliasRequest")
            delay = self._delay(budget.used, error.retry_after)
            if budget.used >= budget.attempts or delay > budget.remaining():
                raise error
            self.on_retry(f"{error.message}; the {kind} did not take, re-sending in {delay:.1f} s")
            self.sleep(delay)

    def _await_landing(self, kind: str, project_id: str, deployment_id: str, before: AliasRequest | None,
                       error: VercelError, budget: _Budget) -> AliasRequest | None:
        """After a failed POST that may have reached Vercel: did it take? ``None`` only when we know it did not.

        A timeout, a dropped connection or a 5xx may hide a request that Vercel acted on (or
        is still acting on), so keep looking for a grace period; a 429 was turned away, so one
        look is enough. If we cannot look at all, the outcome is unknown and re-sending could
        stack a second rollback: stop and say so.
        """
        status = error.status
        may_have_landed = status is None or status >= 500
        grace = min(self.in_flight_grace, max(0.0, budget.remaining())) if may_have_landed else 0.0
        grace_end = self.clock() + grace
        interval = 0.1
        while True:
            try:
                current = self.get_project(project_id, deadline=budget.deadline).last_alias_request
            except VercelError as exc:
                raise VercelError(
                    f"the {kind} request to {deployment_id} failed ({error.message}) and whether it took "
                    f"could not be read ({exc.message})",
                    "outcome unknown: check 'rollback app status' before re-running",
                    code="outcome_unknown", status=None, transient=False) from exc
            if _took(current, before, kind, deployment_id):
                return current
            if self.clock() >= grace_end:
                return None
            self.sleep(min(interval, max(0.0, grace_end - self.clock())))
            interval = min(interval * 1.5, 1.0)


def is_transient(error: BaseException) -> bool:
    """Whether a :class:`VercelError` is worth retrying (a timeout, a dropped connection, 429, 5xx)."""
    return isinstance(error, VercelError) and error.transient


def request_took(current: AliasRequest | None, before: AliasRequest | None, kind: str, deployment_id: str) -> bool:
    """Did our request land? A ``lastAliasRequest`` of our kind, to our deployment, newer than ``before``
    (the one seen before sending)."""
    if current is None or current.type != kind or current.to_deployment_id != deployment_id:
        return False
    return before is None or current.requested_at != before.requested_at


_took = request_took


def _path_only(path: str) -> str:
    return path.split("?", 1)[0]


def _api_error(response: httpx.Response, method: str, path: str, *, now: float | None = None) -> VercelError:
    """Map an error response (``{"error": {"code", "message"}}``) to :class:`VercelError`."""
    status = response.status_code
    code: str | None = None
    message: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        code = str(body["error"].get("code") or "") or None
        message = str(body["error"].get("message") or "") or None
    text = redact_text(message or response.reason_phrase or "error")
    hint: str | None = None
    if status in (401, 403):
        hint = "check VERCEL_TOKEN, and the team in rollback.toml ([env.<name>.vercel] team)"
    elif status == 404:
        hint = "check the project and deployment ids"
    elif status == 429:
        hint = "Vercel is rate limiting; wait and retry"
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
    return VercelError(
        f"Vercel API {method} {_path_only(path)}: {text} (HTTP {status}{', ' + code if code else ''})",
        hint, code=code, status=status, transient=status in RETRY_STATUSES, retry_after=retry_after,
    )
