"""The Vercel API emulator's state: teams, projects, deployments, aliases, alias jobs, faults.

Pure Python, no I/O: :mod:`rollback.sandbox.vercel` serves it over HTTP. Every
public method takes the lock, so the threaded server can call it from any
request thread.

Alias jobs (what an instant rollback or a promote starts) are advanced lazily
from the wall clock whenever state is read: ``pending`` for the first third of
``job_seconds``, then ``in-progress``, then ``succeeded`` (or ``failed`` when
some alias was configured to fail). With ``job_seconds = 0`` a job completes
on the first read after the request. Setting ``job_seconds`` applies to the jobs
still running too (measured from each one's start), so a test can hold a job
for as long as it needs and then let it finish, whatever the machine's load.

Rolling releases (:mod:`rollback.sandbox.vercel_rolling`) advance the same way, on the emulator's
own clock (:meth:`EmulatorState.clock`, which :meth:`EmulatorState.advance_clock` moves forward).
During an active rolling release, an instant rollback request (``POST /v9/projects/{projectId}/
rollback/{deploymentId}``, what ``vercel rolling-release abort --dpl <canary>`` sends) ends it:

- naming the canary (or the base): the release is **aborted**, all traffic goes back to its base, and
  the rollback job points production at the base. Vercel documents that "at any point, you can use
  Instant Rollback to revert from the current release candidate", that the rest of the traffic is routed
  to "your previous production deployment" (the base), that ``activeStage`` is "null if the rollout is
  aborted", and that after "rolling back from a rolling release, fromDeploymentId captures the 'base' of
  that rolling release, and fromRollingReleaseId captures the 'target'" (``lastAliasRequest``);
- naming an older deployment: an instant rollback *past* the base, and the release is aborted too.

Like every instant rollback it pauses the automatic assignment of production domains. A production
deployment that finishes building while rolling releases are enabled starts a release as its canary
instead of taking the domains (Vercel: "new deployments won't be immediately served to 100% of traffic").
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rollback.sandbox.vercel_rolling import (
    ConfigProblem,
    RollingConfig,
    SimRollingRelease,
    SimStage,
    TrafficSplit,
    parse_config,
)

__all__ = [
    "DEMO_DATABASE_URL",
    "AliasJob",
    "ApiFailure",
    "DemoIds",
    "EmulatorState",
    "FaultRule",
    "SimDeployment",
    "SimEnv",
    "SimProject",
]


def now_ms() -> int:
    return int(time.time() * 1000)


def fake_id(prefix: str, seed: str, length: int = 24) -> str:
    """A stable Vercel-looking id (``dpl_`` + base62) derived from ``seed``."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return f"{prefix}_{''.join(chars)}"


def fake_sha(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


class ApiFailure(Exception):
    """An API error response: ``{"error": {"code", "message"}}`` with a status."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


@dataclass
class SimDeployment:
    id: str
    project_id: str
    name: str
    url: str
    target: str | None
    state: str
    created_at: int
    sha: str
    message: str
    ref: str = "main"
    ready_at: int | None = None
    served: bool = False
    alias_assigned_at: int | None = None
    healthy: bool = True
    ready_after: float = 0.0  # seconds after creation when a BUILDING deployment becomes READY
    created_mono: float = field(default_factory=time.monotonic)
    env: dict[str, str] = field(default_factory=dict)  # the production variables it was built with
    redeploy_of: str | None = None
    crashes: bool = False  # answers 500 to every request (the sandbox app's worst kind of bad deployment)


@dataclass
class SimProject:
    id: str
    name: str
    account_id: str
    domains: list[str]
    production_id: str | None = None
    auto_assign_paused: bool = False
    created_at: int = field(default_factory=now_ms)
    last_alias_request: dict[str, Any] | None = None
    envs: list[SimEnv] = field(default_factory=list)
    rolling_config: RollingConfig | None = None
    rolling_release: SimRollingRelease | None = None


@dataclass
class SimEnv:
    """A project environment variable (``GET /v10/projects/{idOrName}/env``)."""

    id: str
    key: str
    value: str
    type: str  # plain | encrypted | sensitive | secret | system
    target: list[str]
    created_at: int = field(default_factory=now_ms)
    updated_at: int = field(default_factory=now_ms)
    git_branch: str | None = None


@dataclass
class AliasJob:
    project_id: str
    type: str  # rollback | promote
    from_id: str | None
    to_id: str
    requested_at: int
    started: float
    seconds: float
    fail_aliases: frozenset[str]
    status: str = "pending"
    alias_statuses: dict[str, str] = field(default_factory=dict)
    from_rolling_release: str | None = None  # the canary of the rolling release this rollback ended


@dataclass
class SimAlias:
    uid: str
    alias: str
    deployment_id: str
    project_id: str
    created_at: int
    updated_at: int


@dataclass
class FaultRule:
    """An injected fault. Matches a request by method and a regex on the path.

    ``status`` answers with that status (and ``Retry-After`` when given);
    ``latency`` delays the answer; ``after`` applies the operation first and
    then answers with the error (a gateway failing after the origin acted);
    ``times`` limits how often it fires (``None``: always).
    """

    method: str | None = None
    path: str | None = None
    status: int | None = None
    retry_after: str | None = None
    latency: float = 0.0
    times: int | None = 1
    after: bool = False
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return not (self.path and not re.search(self.path, path))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "status": self.status, "retry_after": self.retry_after,
                "latency": self.latency, "times": self.times, "after": self.after, "fired": self.fired}


@dataclass(frozen=True)
class DemoIds:
    """The ids of the ``demo`` seed, for tests and the README."""

    team_id: str = "team_demo0000000000000000"
    team_slug: str = "demo-team"
    user_id: str = "user_demo0000000000000000"
    project_id: str = "prj_demo0000000000000000"
    project_name: str = "demo"
    current: str = fake_id("dpl", "demo-5")
    previous: str = fake_id("dpl", "demo-4")
    errored: str = fake_id("dpl", "demo-3")
    older: str = fake_id("dpl", "demo-2")
    preview: str = fake_id("dpl", "demo-preview")
    oldest: str = fake_id("dpl", "demo-1")
    domains: tuple[str, ...] = ("demo.example.com", "www.demo.example.com")


DEMO = DemoIds()
# The demo project's DATABASE_URL on Vercel (a throwaway value: the emulator serves no database).
DEMO_DATABASE_URL = "postgresql://app:demo-password@demo-db.cluster.internal:5432/app"


class EmulatorState:
    """Everything the emulator knows. Thread-safe."""

    def __init__(self, *, token: str = "test-token", seed: str | None = "demo", job_seconds: float = 0.0) -> None:
        self.lock = threading.RLock()
        self.token = token
        self.job_seconds = job_seconds
        # What the emulator was started with (``--job-seconds``): a reset and DELETE /_admin/faults
        # put it back, since a slower job is one of the faults a drill injects.
        self.default_job_seconds = job_seconds
        self.fail_aliases: set[str] = set()
        self.faults: list[FaultRule] = []
        self.requests: list[dict[str, Any]] = []
        self.alias_history: list[dict[str, Any]] = []
        # When a list, every API response is appended as (method, path, status, body): the tests
        # validate each one against the published schema of its operation.
        self.captured: list[tuple[str, str, int, Any]] | None = None
        self.clock_skew = 0.0  # seconds the emulator's clock runs ahead of the monotonic clock
        self.clock_frozen: float | None = None  # the monotonic moment it stands still at, when frozen
        self.split = TrafficSplit()  # which requests to the app stand-in the canary answers
        self.seed_name = seed
        self.reset(seed)

    def clock(self) -> float:
        """The emulator's own clock (monotonic seconds, moved forward by :meth:`advance_clock`, stopped by
        :meth:`freeze_clock`): what rolling-release stages advance on."""
        return (self.clock_frozen if self.clock_frozen is not None else time.monotonic()) + self.clock_skew

    def freeze_clock(self, frozen: bool) -> None:
        """Stop the emulator's clock where it is (``POST /_admin/clock {"freeze": true}``), so that only
        :meth:`advance_clock` moves it: a test then knows the exact moment a stage ends, however slowly
        it runs. Thawed, it goes on from where it stood."""
        with self.lock:
            now = time.monotonic()
            if frozen and self.clock_frozen is None:
                self.clock_frozen = now
            elif not frozen and self.clock_frozen is not None:
                self.clock_skew += self.clock_frozen - now
                self.clock_frozen = None

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward (``POST /_admin/clock``): due stages advance on the next read."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("the clock only moves forward: give a number of seconds >= 0")
        with self.lock:
            self.clock_skew += seconds
            self._advance()

    # ---------------------------------------------------------------- seeding
    def reset(self, seed: str | None = None) -> None:
        with self.lock:
            self.user = {"id": DEMO.user_id, "username": "demo", "email": "demo@example.com", "name": "Demo User"}
            self.teams: dict[str, dict[str, Any]] = {}
            self.projects: dict[str, SimProject] = {}
            self.deployments: dict[str, SimDeployment] = {}
            self.aliases: dict[str, SimAlias] = {}
            self.jobs: dict[str, AliasJob] = {}
            self.faults = []
            self.requests = []
            self.alias_history = []
            if self.clock_frozen is not None:  # a reset starts the clock again (from where it stood)
                self.clock_skew += self.clock_frozen - time.monotonic()
                self.clock_frozen = None
            self.fail_aliases = set()
            self.job_seconds = self.default_job_seconds
            chosen = seed if seed is not None else self.seed_name
            if chosen in ("demo", "demo-rolling"):
                self._seed_demo()
                if chosen == "demo-rolling":
                    self._seed_rolling()
            elif chosen not in (None, "", "empty"):
                raise ValueError(f"unknown seed {chosen!r} (use 'demo', 'demo-rolling' or 'empty')")

    def _seed_demo(self) -> None:
        self.teams[DEMO.team_id] = {"id": DEMO.team_id, "slug": DEMO.team_slug, "name": "Demo Team",
                                    "createdAt": now_ms() - 90 * 86400_000}
        project = SimProject(id=DEMO.project_id, name=DEMO.project_name, account_id=DEMO.team_id,
                             domains=list(DEMO.domains), created_at=now_ms() - 30 * 86400_000)
        self.projects[project.id] = project
        hour = 3600_000
        base = now_ms()
        rows = [  # (id, seed, target, state, hours ago, served, message)
            (DEMO.oldest, "demo-1", "production", "READY", 50, True, "Initial release"),
            (DEMO.preview, "demo-preview", None, "READY", 30, False, "Try a new header (preview)"),
            (DEMO.older, "demo-2", "production", "READY", 26, True, "Fix bug in auth"),
            (DEMO.errored, "demo-3", "production", "ERROR", 5, False, "Update dependencies"),
            (DEMO.previous, "demo-4", "production", "READY", 2, True, "Add stats cache"),
            (DEMO.current, "demo-5", "production", "READY", 0.05, True, "Add new feature"),
        ]
        for dep_id, seed, target, state, hours_ago, served, message in rows:
            created = base - int(hours_ago * hour)
            self.deployments[dep_id] = SimDeployment(
                id=dep_id, project_id=project.id, name=project.name,
                url=f"{project.name}-{dep_id[4:13].lower()}-{DEMO.team_slug}.vercel.app",
                target=target, state=state, created_at=created, sha=fake_sha(seed), message=message,
                ref="main" if target else "feature/header",
                ready_at=created + 60_000 if state == "READY" else None, served=served,
                alias_assigned_at=created + 61_000 if served else None,
            )
        project.production_id = DEMO.current
        self._point_domains(project, DEMO.current)
        project.envs.append(SimEnv(id=fake_id("env", "demo-database-url", 16), key="DATABASE_URL",
                                   value=DEMO_DATABASE_URL, type="encrypted", target=["production", "preview"],
                                   created_at=base - 30 * 86400_000, updated_at=base - 30 * 86400_000))
        for dep in self.deployments.values():
            dep.env = {"DATABASE_URL": DEMO_DATABASE_URL}

    def _seed_rolling(self) -> None:
        """``demo-rolling``: rolling releases enabled (manual approval, 10 % then 50 % then 100 %); the
        newest deployment is the canary of an active release at 10 %, started when it was built; the one
        before it (its base) serves production and owns the domains."""
        project = self.projects[DEMO.project_id]
        canary, base = self.deployments[DEMO.current], self.deployments[DEMO.previous]
        project.rolling_config = RollingConfig("manual-approval", (SimStage(10.0, True, None),
                                                                    SimStage(50.0, True, None),
                                                                    SimStage(100.0, False, None)))
        canary.served, canary.alias_assigned_at = False, None
        project.production_id = base.id
        self._point_domains(project, base.id)
        started = (canary.ready_at or canary.created_at) + 1000
        project.rolling_release = SimRollingRelease(
            project_id=project.id, canary_id=canary.id, base_id=base.id, config=project.rolling_config,
            started_at=started, updated_at=started, stage_started=self.clock() - (now_ms() - started) / 1000)

    def _point_domains(self, project: SimProject, deployment_id: str, only: Iterable[str] | None = None) -> None:
        stamp = now_ms()
        for domain in only if only is not None else project.domains:
            existing = self.aliases.get(domain)
            if existing is None:
                self.aliases[domain] = SimAlias(uid=fake_id("alias", domain), alias=domain,
                                                deployment_id=deployment_id, project_id=project.id,
                                                created_at=stamp, updated_at=stamp)
            else:
                existing.deployment_id = deployment_id
                existing.updated_at = stamp

    # ------------------------------------------------------------- admin knobs
    def configure(self, *, job_seconds: float | None = None, fail_aliases: Iterable[str] | None = None,
                  unhealthy: Iterable[str] | None = None, crashing: Iterable[str] | None = None) -> None:
        """``unhealthy``: deployments whose health check fails (500 on ``/api/health``, slow ``/api/*``);
        ``crashing``: deployments that answer 500 to every request."""
        with self.lock:
            if job_seconds is not None:
                self.job_seconds = float(job_seconds)
                for job in self.jobs.values():
                    if job.status not in ("succeeded", "failed", "skipped"):
                        job.seconds = self.job_seconds
            if fail_aliases is not None:
                self.fail_aliases = set(fail_aliases)
            if unhealthy is not None:
                bad = set(unhealthy)
                for dep in self.deployments.values():
                    dep.healthy = dep.id not in bad
            if crashing is not None:
                down = set(crashing)
                for dep in self.deployments.values():
                    dep.crashes = dep.id in down

    def add_fault(self, rule: FaultRule) -> None:
        with self.lock:
            self.faults.append(rule)

    def clear_faults(self) -> None:
        """Every injected fault gone: the fault rules, the aliases set to fail, and slow alias jobs (back to
        the job time the emulator was started with, running jobs included). The seeded world stays: the
        unhealthy and crashing deployments are the bad deploy, not a fault of the API."""
        with self.lock:
            self.faults = []
            self.fail_aliases = set()
            self.job_seconds = self.default_job_seconds
            for job in self.jobs.values():
                if job.status not in ("succeeded", "failed", "skipped"):
                    job.seconds = self.job_seconds
                    job.fail_aliases = frozenset()

    def take_fault(self, method: str, path: str) -> FaultRule | None:
        with self.lock:
            for rule in self.faults:
                if rule.matches(method, path):
                    rule.fired += 1
                    return rule
            return None

    def log_request(self, method: str, path: str, query: str, status: int) -> None:
        with self.lock:
            self.requests.append({"method": method, "path": path, "query": query, "status": status,
                                  "at": now_ms()})

    # --------------------------------------------------------------- lookups
    def check_team(self, team: str | None) -> None:
        """403 when a request is scoped to a team the token does not belong to."""
        if team and not any(team in (t["id"], t["slug"]) for t in self.teams.values()):
            raise ApiFailure(403, "forbidden", "You don't have permission to access this team")

    def team(self, id_or_slug: str) -> dict[str, Any]:
        with self.lock:
            for team in self.teams.values():
                if id_or_slug in (team["id"], team["slug"]):
                    return dict(team)
        raise ApiFailure(404, "not_found", "Team not found")

    def project(self, id_or_name: str) -> SimProject:
        with self.lock:
            self._advance()
            for project in self.projects.values():
                if id_or_name in (project.id, project.name):
                    return project
        raise ApiFailure(404, "not_found", "Project not found")

    def deployment(self, id_or_url: str) -> SimDeployment:
        with self.lock:
            self._advance()
            host = re.sub(r"^(?:.*?//)?([^/]+).*$", r"\1", id_or_url)
            for dep in self.deployments.values():
                if id_or_url == dep.id or host == dep.url:
                    return dep
            alias = self.aliases.get(host)
            if alias is not None:
                return self.deployments[alias.deployment_id]
        raise ApiFailure(404, "not_found", f"Deployment {id_or_url!r} not found", deploymentId=id_or_url)

    def list_deployments(self, *, project: str | None = None, target: str | None = None,
                         states: set[str] | None = None, until: int | None = None, since: int | None = None,
                         sha: str | None = None, rollback_candidate: bool | None = None,
                         ) -> list[SimDeployment]:
        with self.lock:
            self._advance()
            project_id = self.project(project).id if project else None
            found = []
            for dep in self.deployments.values():
                if project_id and dep.project_id != project_id:
                    continue
                if target and (dep.target or "preview") != target:
                    continue
                if states and dep.state not in states:
                    continue
                if until is not None and dep.created_at >= until:
                    continue
                if since is not None and dep.created_at <= since:
                    continue
                if sha and not dep.sha.startswith(sha):
                    continue
                if rollback_candidate is not None and self.is_rollback_candidate(dep) != rollback_candidate:
                    continue
                found.append(dep)
            return sorted(found, key=lambda d: d.created_at, reverse=True)

    def is_rollback_candidate(self, dep: SimDeployment) -> bool:
        project = self.projects.get(dep.project_id)
        return (dep.target == "production" and dep.state == "READY" and dep.served
                and project is not None and project.production_id != dep.id)

    def aliases_of(self, *, project_id: str | None = None, deployment_id: str | None = None) -> list[SimAlias]:
        with self.lock:
            self._advance()
            return [a for a in self.aliases.values()
                    if (project_id is None or a.project_id == project_id)
                    and (deployment_id is None or a.deployment_id == deployment_id)]

    # ------------------------------------------------------------ alias jobs
    def request_alias_job(self, project_ref: str, deployment_ref: str, kind: str) -> AliasJob:
        """Start a rollback or promote job. Validates like Vercel does."""
        with self.lock:
            project = self.project(project_ref)
            dep = self.deployment(deployment_ref)
            if dep.project_id != project.id:
                raise ApiFailure(400, "bad_request", "The deployment does not belong to this project")
            if dep.state != "READY":
                raise ApiFailure(400, "deployment_not_ready",
                                 f"Deployment {dep.id} is not ready (state {dep.state})")
            if kind == "rollback" and dep.target != "production":
                raise ApiFailure(400, "invalid_deployment",
                                 "Only production deployments can be used for an instant rollback")
            release = project.rolling_release
            ending = release if kind == "rollback" and release is not None and release.is_active else None
            to_id = dep.id
            if ending is not None and dep.id in (ending.canary_id, ending.base_id):
                to_id = ending.base_id  # the abort: all traffic back to the release's base
            job = AliasJob(project_id=project.id, type=kind, from_id=project.production_id, to_id=to_id,
                           requested_at=now_ms(), started=time.monotonic(), seconds=self.job_seconds,
                           fail_aliases=frozenset(self.fail_aliases))
            if ending is not None:
                ending.state, ending.updated_at = "ABORTED", job.requested_at
                ending.history.append({"state": "ABORTED", "by": "rollback", "to": to_id, "at": job.requested_at})
                job.from_id, job.from_rolling_release = ending.base_id, ending.canary_id
            elif project.production_id == dep.id and kind == "rollback":
                job.status = "skipped"
            self.jobs[project.id] = job
            self.alias_history.append({"type": kind, "project": project.id, "from": job.from_id,
                                       "to": to_id, "requestedAt": job.requested_at,
                                       "fromRollingRelease": job.from_rolling_release})
            self._publish(project, job)
            return job

    def _publish(self, project: SimProject, job: AliasJob) -> None:
        project.last_alias_request = {
            "fromDeploymentId": job.from_id or "",
            "toDeploymentId": job.to_id,
            "jobStatus": job.status,
            "requestedAt": job.requested_at,
            "type": job.type,
        }
        if job.from_rolling_release:
            project.last_alias_request["fromRollingReleaseId"] = job.from_rolling_release

    def _advance(self) -> None:
        """Move time forward for jobs and builds (called under the lock on every read)."""
        mono = time.monotonic()
        for dep in self.deployments.values():
            if dep.state == "BUILDING" and mono - dep.created_mono >= dep.ready_after:
                dep.state = "READY"
                dep.ready_at = now_ms()
                project = self.projects.get(dep.project_id)
                if dep.target == "production" and project is not None and not project.auto_assign_paused:
                    if project.rolling_config is not None and project.production_id not in (None, dep.id):
                        self._canary_built(project, dep)
                        continue
                    project.production_id = dep.id
                    dep.served = True
                    dep.alias_assigned_at = now_ms()
                    self._point_domains(project, dep.id)
        clock = self.clock()
        for project in self.projects.values():
            release = project.rolling_release
            while release is not None and release.due(clock):
                release.advance(clock, now_ms(), by="clock")
                if release.stage_index == len(release.stages) - 1:
                    self._complete_release(project, release)
        for job in self.jobs.values():
            if job.status in ("succeeded", "failed", "skipped"):
                continue
            elapsed = mono - job.started
            if job.seconds <= 0 or elapsed >= job.seconds:
                self._complete(job)
            elif elapsed >= job.seconds / 3:
                job.status = "in-progress"
            project = self.projects[job.project_id]
            self._publish(project, job)

    def _complete(self, job: AliasJob) -> None:
        project = self.projects[job.project_id]
        moved = [d for d in project.domains if d not in job.fail_aliases]
        for domain in project.domains:
            job.alias_statuses[domain] = "failed" if domain in job.fail_aliases else "completed"
        self._point_domains(project, job.to_id, only=moved)
        if len(moved) == len(project.domains):
            job.status = "succeeded"
            project.production_id = job.to_id
            dep = self.deployments[job.to_id]
            dep.served = True
            dep.alias_assigned_at = now_ms()
            project.auto_assign_paused = job.type == "rollback"
        else:
            job.status = "failed"

    def job_aliases(self, project_ref: str, *, failed_only: bool = False) -> list[tuple[str, str, str]]:
        """``(alias, status, deployment id)`` of the project's last alias job."""
        with self.lock:
            project = self.project(project_ref)
            job = self.jobs.get(project.id)
            if job is None:
                return []
            rows = []
            for domain in project.domains:
                status = job.alias_statuses.get(domain, "pending" if job.status == "pending" else "in-progress")
                if job.status == "skipped":
                    status = "skipped"
                if failed_only and status != "failed":
                    continue
                alias = self.aliases.get(domain)
                rows.append((domain, status, alias.deployment_id if alias else job.to_id))
            return rows

    # ------------------------------------------------------ rolling releases
    def rolling_config(self, project_ref: str) -> RollingConfig | None:
        with self.lock:
            return self.project(project_ref).rolling_config

    def set_rolling_config(self, project_ref: str, body: Any) -> RollingConfig | None:
        """``PATCH .../rolling-release/config`` (``enabled: false`` or ``DELETE``: disabled). An active
        release keeps the stages it started with: the config is the template of the next one."""
        with self.lock:
            project = self.project(project_ref)
            try:
                project.rolling_config = parse_config(body)
            except ConfigProblem as exc:
                raise ApiFailure(400, "bad_request", str(exc)) from None
            return project.rolling_config

    def rolling_release(self, project_ref: str, *, state: str | None = None) -> SimRollingRelease | None:
        """The project's latest rolling release (whatever its state; ``state`` filters), else None."""
        with self.lock:
            release = self.project(project_ref).rolling_release
            if release is None or (state and release.state != state.upper()):
                return None
            return release

    def _release_for(self, project: SimProject, canary_id: Any) -> SimRollingRelease:
        release = project.rolling_release
        if release is None or not release.is_active:
            raise ApiFailure(400, "no_active_rolling_release", f"No active rolling release for project {project.name}")
        if not isinstance(canary_id, str) or canary_id != release.canary_id:
            raise ApiFailure(400, "bad_request", f"The active rolling release's canary is {release.canary_id}, not "
                             f"{canary_id}")
        return release

    def start_rolling_release(self, project_ref: str, canary_ref: Any) -> SimRollingRelease:
        """``POST .../rolling-release/start`` ``{canaryDeploymentId}``: "If a rolling release is already
        active for the same canary deployment, returns the current state without side effects"."""
        with self.lock:
            project = self.project(project_ref)
            if not isinstance(canary_ref, str) or not canary_ref:
                raise ApiFailure(400, "bad_request", "Invalid request: missing required property `canaryDeploymentId`")
            if project.rolling_config is None:
                raise ApiFailure(400, "rolling_releases_disabled",
                                 f"Rolling releases are not enabled for project {project.name}")
            dep = self.deployment(canary_ref)
            if dep.project_id != project.id:
                raise ApiFailure(400, "bad_request", "The deployment does not belong to this project")
            if dep.state != "READY" or dep.target != "production":
                raise ApiFailure(400, "invalid_deployment",
                                 f"Deployment {dep.id} is not a READY production deployment")
            release = project.rolling_release
            if release is not None and release.is_active:
                if release.canary_id == dep.id:
                    return release
                raise ApiFailure(409, "conflict", f"A rolling release of {release.canary_id} is already active")
            if project.production_id in (None, dep.id):
                raise ApiFailure(400, "bad_request", f"Deployment {dep.id} already serves production")
            return self._start_release(project, dep)

    def _start_release(self, project: SimProject, canary: SimDeployment) -> SimRollingRelease:
        assert project.rolling_config is not None and project.production_id is not None
        stamp = now_ms()
        release = SimRollingRelease(project_id=project.id, canary_id=canary.id, base_id=project.production_id,
                                    config=project.rolling_config, started_at=stamp, updated_at=stamp,
                                    stage_started=self.clock())
        project.rolling_release = release
        return release

    def _canary_built(self, project: SimProject, dep: SimDeployment) -> None:
        """A production deployment finished building while rolling releases are enabled: it starts a
        release as the canary (or waits as the queued one while another release is active)."""
        release = project.rolling_release
        if release is not None and release.is_active:
            release.queued_id = dep.id
            return
        self._start_release(project, dep)

    def approve_rolling_stage(self, project_ref: str, body: Any) -> SimRollingRelease:
        """``POST .../rolling-release/approve-stage`` ``{nextStageIndex, canaryDeploymentId}``."""
        with self.lock:
            project = self.project(project_ref)
            data = body if isinstance(body, dict) else {}
            release = self._release_for(project, data.get("canaryDeploymentId"))
            wanted = data.get("nextStageIndex")
            if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted != release.stage_index + 1:
                raise ApiFailure(400, "bad_request", f"The rolling release is at stage {release.stage_index}: the "
                                 f"next stage is {release.stage_index + 1}, not {wanted}")
            release.advance(self.clock(), now_ms(), by="approval")
            if release.stage_index == len(release.stages) - 1:
                self._complete_release(project, release)
            return release

    def complete_rolling_release(self, project_ref: str, canary_ref: Any) -> SimRollingRelease:
        """``POST .../rolling-release/complete`` ``{canaryDeploymentId}``: "Force-complete a Rolling
        Release. The canary deployment will begin serving 100% of the traffic"."""
        with self.lock:
            project = self.project(project_ref)
            release = self._release_for(project, canary_ref)
            if release.stage_index < len(release.stages) - 1:
                release.stage_index = len(release.stages) - 1
            self._complete_release(project, release)
            return release

    def _complete_release(self, project: SimProject, release: SimRollingRelease) -> None:
        stamp = now_ms()
        release.state, release.updated_at = "COMPLETE", stamp
        release.history.append({"state": "COMPLETE", "at": stamp})
        canary = self.deployments[release.canary_id]
        project.production_id = canary.id
        canary.served, canary.alias_assigned_at = True, stamp
        self._point_domains(project, canary.id)
        queued = self.deployments.get(release.queued_id or "")
        if queued is not None and queued.state == "READY" and project.rolling_config is not None:
            self._start_release(project, queued)

    # ------------------------------------------------------ environment variables
    def envs_of(self, project_ref: str) -> list[SimEnv]:
        with self.lock:
            return list(self.project(project_ref).envs)

    def env(self, project_ref: str, env_id: str) -> SimEnv:
        with self.lock:
            for env in self.project(project_ref).envs:
                if env.id == env_id:
                    return env
            raise ApiFailure(404, "not_found", "Environment Variable was not found")

    def edit_env(self, project_ref: str, env_id: str, changes: dict[str, Any]) -> SimEnv:
        """``PATCH /v9/projects/{idOrName}/env/{id}``: change the given fields."""
        with self.lock:
            env = self.env(project_ref, env_id)
            if "key" in changes and changes["key"] is not None:
                env.key = str(changes["key"])
            if "value" in changes and changes["value"] is not None:
                env.value = str(changes["value"])
            if "type" in changes and changes["type"] is not None:
                env.type = str(changes["type"])
            if "target" in changes and changes["target"] is not None:
                env.target = [str(t) for t in changes["target"]]
            env.updated_at = now_ms()
            return env

    def create_env(self, project_ref: str, item: dict[str, Any], *, upsert: bool) -> SimEnv:
        """``POST /v10/projects/{idOrName}/env``: one variable (an existing key and target with ``upsert``)."""
        with self.lock:
            project = self.project(project_ref)
            key, value = item.get("key"), item.get("value")
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise ApiFailure(400, "bad_request", "Invalid request: `key` and `value` are required")
            target = [str(t) for t in item.get("target") or ["production", "preview", "development"]]
            for env in project.envs:
                if env.key == key and set(env.target) & set(target):
                    if not upsert:
                        raise ApiFailure(400, "ENV_ALREADY_EXISTS",
                                         f"A variable with the name `{key}` already exists for the target")
                    env.value, env.target, env.updated_at = value, target, now_ms()
                    env.type = str(item.get("type") or env.type)
                    return env
            env = SimEnv(id=fake_id("env", f"{project.id}-{key}-{now_ms()}", 16), key=key, value=value,
                         type=str(item.get("type") or "encrypted"), target=target)
            project.envs.append(env)
            return env

    def redeploy(self, name: str, deployment_ref: str, *, target: str | None,
                 ready_after: float = 0.5) -> SimDeployment:
        """``POST /v13/deployments`` with ``deploymentId``: a new build of that deployment's source, with
        the project's variables as they are now."""
        with self.lock:
            source = self.deployment(deployment_ref)
            project = self.projects[source.project_id]
            if name not in (project.name, project.id):
                raise ApiFailure(400, "bad_request", f"The deployment {source.id} belongs to project "
                                 f"{project.name}, not {name}")
            dep = self.create_deployment(project.id, sha=source.sha, message=source.message, ref=source.ref,
                                         target=target, ready_after=ready_after, healthy=source.healthy)
            dep.redeploy_of = source.id
            return dep

    # ------------------------------------------------------ git-push deploys
    def create_deployment(self, project_ref: str, *, sha: str, message: str = "", ref: str = "main",
                          target: str | None = "production", ready_after: float = 0.0,
                          state: str = "BUILDING", healthy: bool = True) -> SimDeployment:
        """What a git push does on Vercel: a new deployment that builds, then (for
        production, unless a rollback paused it) takes the production domains."""
        with self.lock:
            project = self.project(project_ref)
            created = now_ms()
            dep_id = fake_id("dpl", f"{project.id}-{sha}-{created}-{len(self.deployments)}")
            dep = SimDeployment(id=dep_id, project_id=project.id, name=project.name,
                                url=f"{project.name}-{dep_id[4:13].lower()}-{DEMO.team_slug}.vercel.app",
                                target=target, state=state, created_at=created, sha=sha, message=message,
                                ref=ref, ready_after=ready_after, healthy=healthy,
                                env={e.key: e.value for e in project.envs if (target or "preview") in e.target})
            self.deployments[dep.id] = dep
            self._advance()
            return dep
