"""A Vercel API emulator: real HTTP on loopback, for the sandbox, the tests and drills.

It holds teams, projects, deployments, aliases, alias jobs (instant
rollback and promote) and rolling releases, answers in the shapes of Vercel's published API, and is
faithful enough for Vercel's own CLI (``vercel ls``, ``inspect``, ``rollback``,
``promote``, ``rolling-release configure|start|approve|fetch|abort|complete`` with
``--api URL --token T --scope demo-team``).

Run it standalone::

    python -m rollback.sandbox.vercel --port 8765 --token T --seed demo

From Python (what the tests do)::

    emulator = start_emulator(token="T")      # serves in a thread
    emulator.url                                # http://127.0.0.1:<port>
    emulator.state.configure(job_seconds=2, fail_aliases=["www.demo.example.com"])
    emulator.stop()

Auth: ``Authorization: Bearer <token>``; 401 without it or with a wrong one,
403 for a ``teamId`` the token does not belong to.

Admin endpoints (no auth, loopback only; not part of Vercel's API):

- ``GET  /_admin/state``       projects, deployments, aliases, alias jobs
- ``POST /_admin/reset``       ``{"seed": "demo"}``: back to the seed
- ``POST /_admin/config``      ``{"job_seconds": 2, "fail_aliases": [...], "unhealthy": [deployment ids],
  "crashing": [deployment ids that answer 500 to every request]}``
- ``POST /_admin/clock``       ``{"advance": 300}``: move the emulator's clock (rolling-release stages) forward;
  ``{"freeze": true}`` stops it (only ``advance`` moves it then), ``{"freeze": false}`` lets it run again
- ``POST /_admin/faults``      ``{"method": "POST", "path": "/rollback/", "status": 429, "retry_after": "1",
  "latency": 0.5, "times": 1, "after": false}``; ``DELETE /_admin/faults`` clears every injected fault: these
  rules, ``fail_aliases``, and ``job_seconds`` back to what the emulator was started with
- ``GET  /_admin/requests``    every API request served (method, path, query, status)
- ``GET  /_admin/production/<project>`` the deployment production serves now, with its health, and during a
  rolling release the canary and its share of the requests (what the
  sandbox's app server answers from)
- ``POST /_admin/deployments`` ``{"project": "demo", "sha": "...", "ready_after": 1, "healthy": true}``: what a
  git push does (a production deployment that builds, then takes the domains unless a rollback paused that)

Rolling releases (:mod:`rollback.sandbox.vercel_rolling`; the OpenAPI subset below does not include them,
so their shapes follow Vercel's REST reference and its SDK's models): ``GET /v1/projects/{idOrName}/rolling-release``,
``GET|PATCH|DELETE .../rolling-release/config``, ``POST .../rolling-release/start`` ``{canaryDeploymentId}``,
``.../approve-stage`` ``{nextStageIndex, canaryDeploymentId}`` and ``.../complete`` ``{canaryDeploymentId}``;
the abort is an instant rollback request during the release (see :mod:`rollback.sandbox.vercel_state`).
Seed ``demo-rolling`` is ``demo`` with the newest deployment as the canary of an active release at 10 %.

Environment variables and redeploys, as Vercel documents them (the OpenAPI subset in
``/work/shared/fixtures/vercel/openapi-subset.json`` does not include these operations, so their
shapes follow Vercel's REST API reference): ``GET /v10/projects/{idOrName}/env`` (values shown
only with ``decrypt=true``, never for ``sensitive`` ones), ``GET /v1/projects/{idOrName}/env/{id}``
(the decrypted value), ``POST /v10/projects/{idOrName}/env`` (``upsert=true`` replaces),
``PATCH /v9/projects/{idOrName}/env/{id}``, and ``POST /v13/deployments`` with ``name`` and
``deploymentId`` (a redeploy: a new deployment of the same source, built with the variables as they
are now; it builds for half a second, then takes the production domains unless a rollback paused that).

A stand-in for the app itself is served at ``/_app/<project>/``: ``/``,
``/api/health`` and ``/api/version`` answer for the deployment currently
serving production (``/api/version`` gives its commit sha); during a rolling release the canary answers
its share of the requests (``EmulatorState.split``), and a crashing
deployment answers 500 to all of them.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rollback.sandbox import vercel_shapes as shapes
from rollback.sandbox.serving import QuietDisconnects
from rollback.sandbox.vercel_state import DEMO, ApiFailure, EmulatorState, FaultRule, fake_id

__all__ = ["DEMO", "EmulatorState", "FaultRule", "VercelEmulator", "main", "start_emulator"]

Query = dict[str, str]
Response = tuple[int, Any]
Route = Callable[[EmulatorState, re.Match[str], Query, Any], Response]

_ROUTES: list[tuple[str, re.Pattern[str], Route]] = []


def route(method: str, pattern: str) -> Callable[[Route], Route]:
    def register(func: Route) -> Route:
        _ROUTES.append((method, re.compile(f"^{pattern}$"), func))
        return func

    return register


def _int(query: Query, key: str) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return None
    try:
        return int(float(str(value)))
    except ValueError:
        raise ApiFailure(400, "bad_request", f"Invalid request: `{key}` should be a number") from None


# ------------------------------------------------------------------ identity
@route("GET", r"/v2/user|/www/user")
def _user(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    return 200, shapes.user_body(state)


@route("GET", r"/(?:v1/|v2/)?teams/(?P<team>[^/]+)")
def _team(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    return 200, shapes.team_body(state.team(match["team"]))


@route("GET", r"/(?:v1/|v2/)?teams")
def _teams(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    teams = [shapes.team_body(t) for t in state.teams.values()]
    return 200, {"teams": teams, "pagination": {"count": len(teams), "next": None, "prev": None}}


@route("GET", r"/v[0-9]+/projects/(?P<project>[^/]+)")
def _project(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    with state.lock:
        return 200, shapes.project_v9(state, state.project(match["project"]))


@route("GET", r"/v[0-9]+/projects")
def _projects(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    with state.lock:
        projects = [shapes.project_v9(state, p) for p in state.projects.values()]
    return 200, {"projects": projects, "pagination": {"count": len(projects), "next": None, "prev": None}}


# --------------------------------------------------------------- deployments
@route("GET", r"/v(?:6|7)/deployments")
def _deployments(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    limit = max(1, min(_int(query, "limit") or 20, 100))
    states = {s.strip().upper() for s in query.get("state", "").split(",") if s.strip()} or None
    candidate = query.get("rollbackCandidate")
    with state.lock:
        found = state.list_deployments(
            project=query.get("projectId") or query.get("app") or None,
            target=query.get("target") or None,
            states=states,
            until=_int(query, "until") or _int(query, "to"),
            since=_int(query, "since") or _int(query, "from"),
            sha=query.get("sha") or None,
            rollback_candidate=None if candidate is None else candidate.lower() == "true",
        )
        page = found[:limit]
        items = [shapes.deployment_v6(state, d) for d in page]
    return 200, {"pagination": shapes.pagination([d.created_at for d in page], len(found) > limit),
                 "deployments": items}


@route("GET", r"/v[0-9]+/deployments/(?P<dep>[^/]+)/aliases")
def _deployment_aliases(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    with state.lock:
        dep = state.deployment(match["dep"])
        aliases = [{"uid": a.uid, "alias": a.alias, "created": shapes.iso(a.created_at), "redirect": None}
                   for a in state.aliases_of(deployment_id=dep.id)]
    return 200, {"aliases": aliases}


@route("GET", r"/v[0-9]+/deployments/(?P<dep>[^/]+)/builds")
def _deployment_builds(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    with state.lock:
        dep = state.deployment(match["dep"])
        return 200, {"builds": [{"id": f"bld_{dep.id[4:]}", "use": "@vercel/next", "entrypoint": "package.json",
                                 "readyState": dep.state, "readyStateAt": dep.ready_at, "output": [],
                                 "createdAt": dep.created_at, "deploymentId": dep.id, "config": {}}]}


@route("GET", r"/v[0-9]+/deployments/(?P<dep>[^/]+)")
def _deployment(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    with state.lock:
        return 200, shapes.deployment_v13(state, state.deployment(match["dep"]))


@route("GET", r"/v[0-9]+/aliases")
def _aliases(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    with state.lock:
        project_id = state.project(query["projectId"]).id if query.get("projectId") else None
        aliases = state.aliases_of(project_id=project_id)
        if query.get("domain"):
            aliases = [a for a in aliases if a.alias.endswith(query["domain"])]
        if query.get("rollbackDeploymentId"):
            aliases = [a for a in aliases if a.deployment_id == query["rollbackDeploymentId"]]
        items = [shapes.alias_v4(state, a) for a in sorted(aliases, key=lambda a: -a.created_at)]
    return 200, {"aliases": items, "pagination": shapes.pagination([i["createdAt"] for i in items], False)}


# ---------------------------------------------------- rollback and promote
@route("POST", r"/v(?P<version>[0-9]+)/projects/(?P<project>[^/]+)/(?P<kind>rollback|promote)/(?P<dep>[^/]+)")
def _request_alias_job(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    state.request_alias_job(match["project"], match["dep"], match["kind"])
    if match["kind"] == "rollback" and match["version"] != "1":
        return 201, {}  # the CLI's /v9 route, called with a JSON body
    return 201, None  # 201 with no body, as documented


@route("GET", r"/v(?P<version>[0-9]+)/projects/(?P<project>[^/]+)/(?:rollback|promote)/aliases")
def _job_aliases(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    failed_only = query.get("failedOnly", "").lower() == "true"
    rows = state.job_aliases(match["project"], failed_only=failed_only)
    limit = max(1, min(_int(query, "limit") or 20, 100))
    rows = rows[:limit]
    if match["version"] == "1":  # the published shape: alias is the hostname
        aliases: list[dict[str, Any]] = [{"status": status, "alias": alias, "id": fake_id("alias", alias)}
                                         for alias, status, _dep in rows]
    else:  # the shape Vercel's CLI reads from /v9: alias is an object
        aliases = [{"status": status, "alias": {"alias": alias, "deploymentId": dep}} for alias, status, dep in rows]
    return 200, {"aliases": aliases, "pagination": {"count": len(aliases), "next": None, "prev": None}}


# ------------------------------------------------------- rolling releases
_RR = r"/v1/projects/(?P<project>[^/]+)/rolling-release"


@route("GET", _RR)
def _get_rolling_release(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    wanted = query.get("state") or None
    if wanted is not None and wanted.upper() not in ("ACTIVE", "COMPLETE", "ABORTED"):
        raise ApiFailure(400, "bad_request", "Invalid request: `state` should be one of ACTIVE, COMPLETE, ABORTED")
    with state.lock:
        return 200, shapes.rolling_release_v1(state, state.rolling_release(match["project"], state=wanted))


@route("GET", _RR + "/config")
def _get_rolling_config(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    config = state.rolling_config(match["project"])
    return 200, {"rollingRelease": config.public() if config is not None else None}


@route("PATCH", _RR + "/config")
def _set_rolling_config(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    config = state.set_rolling_config(match["project"], body)
    return 200, {"rollingRelease": config.public() if config is not None else None}


@route("DELETE", _RR + "/config")
def _delete_rolling_config(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    state.set_rolling_config(match["project"], {"enabled": False})
    return 200, {"rollingRelease": None}


@route("POST", _RR + "/(?P<verb>start|approve-stage|complete)")
def _change_rolling_release(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    """``start`` and ``complete`` take ``{canaryDeploymentId}``; ``approve-stage`` also ``nextStageIndex``."""
    data = body if isinstance(body, dict) else {}
    if match["verb"] == "start":
        release = state.start_rolling_release(match["project"], data.get("canaryDeploymentId"))
    elif match["verb"] == "complete":
        release = state.complete_rolling_release(match["project"], data.get("canaryDeploymentId"))
    else:
        release = state.approve_rolling_stage(match["project"], data)
    with state.lock:
        return 200, shapes.rolling_release_v1(state, release)


# ------------------------------------------------------- environment variables
def _env_body(env: Any, *, decrypt: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"type": env.type, "key": env.key, "target": list(env.target), "id": env.id,
                            "createdAt": env.created_at, "updatedAt": env.updated_at, "configurationId": None,
                            "gitBranch": env.git_branch}
    readable = env.type != "sensitive"
    if decrypt and readable:
        body.update(value=env.value, decrypted=True)
    elif env.type == "plain":
        body["value"] = env.value
    else:
        body.update(value="" if env.type == "sensitive" else "encrypted:" + fake_id("enc", env.value, 32),
                    decrypted=False)
    return body


@route("GET", r"/v10/projects/(?P<project>[^/]+)/env")
def _list_env(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    decrypt = query.get("decrypt", "").lower() == "true"
    envs = [_env_body(e, decrypt=decrypt) for e in state.envs_of(match["project"])]
    return 200, {"envs": envs, "pagination": {"count": len(envs), "next": None, "prev": None}}


@route("GET", r"/v1/projects/(?P<project>[^/]+)/env/(?P<env>[^/]+)")
def _get_env(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    return 200, _env_body(state.env(match["project"], match["env"]), decrypt=True)


@route("POST", r"/v10/projects/(?P<project>[^/]+)/env")
def _create_env(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    items = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    if not items:
        raise ApiFailure(400, "bad_request", "Invalid request: the body must be a variable or a list of them")
    upsert = query.get("upsert", "").lower() == "true"
    created = [_env_body(state.create_env(match["project"], dict(item), upsert=upsert), decrypt=False)
               for item in items if isinstance(item, dict)]
    return 201, {"created": created[0] if len(created) == 1 else created, "failed": []}


@route("PATCH", r"/v9/projects/(?P<project>[^/]+)/env/(?P<env>[^/]+)")
def _edit_env(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    if not isinstance(body, dict):
        raise ApiFailure(400, "bad_request", "Invalid request: the body must be an object")
    return 200, _env_body(state.edit_env(match["project"], match["env"], body), decrypt=False)


@route("POST", r"/v13/deployments")
def _create_deployment(state: EmulatorState, match: re.Match[str], query: Query, body: Any) -> Response:
    data = body if isinstance(body, dict) else {}
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ApiFailure(400, "bad_request", "Invalid request: missing required property `name`")
    if not isinstance(data.get("deploymentId"), str):
        # Only redeploys: a file or git-source deployment needs uploads the emulator does not take.
        raise ApiFailure(400, "bad_request", "Invalid request: the emulator only redeploys (pass `deploymentId`)")
    target = data.get("target")
    dep = state.redeploy(data["name"], data["deploymentId"],
                         target=str(target) if target in ("production", "staging") else None)
    with state.lock:
        return 200, shapes.deployment_v13(state, dep)


# ---------------------------------------------------------------- the app
def _app(state: EmulatorState, project_ref: str, path: str) -> Response:
    with state.lock:
        project = state.project(project_ref)
        dep = state.deployments.get(project.production_id or "")
        release = project.rolling_release
        if release is not None and release.is_active and state.split.to_canary(f"{project.id}{path}",
                                                                               release.canary_share):
            dep = state.deployments.get(release.canary_id, dep)
        if dep is None:
            return 404, {"error": {"code": "not_found", "message": "no production deployment"}}
        if dep.crashes:
            return 500, {"status": "error", "error": "the deployment crashed", "deploymentId": dep.id}
        if path in ("/api/version", "/version"):
            return 200, {"commit": dep.sha, "deploymentId": dep.id, "url": dep.url}
        if not dep.healthy:
            return 500, {"status": "error", "deploymentId": dep.id}
        if path in ("/api/health", "/health"):
            return 200, {"status": "ok", "deploymentId": dep.id}
        return 200, {"app": project.name, "deploymentId": dep.id}


# ------------------------------------------------------------------ server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the
    # client's delayed ACK would add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write("emulator: " + (format % args) + "\n")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _handle(self, method: str) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        path = re.sub(r"/{2,}", "/", parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._read_body()
        if path.startswith("/_admin/"):
            status, payload = self._admin(method, path, body)
            self._send(status, payload)
            return
        if path.startswith("/_app/"):
            _, _, rest = path.partition("/_app/")
            project, _, sub = rest.partition("/")
            try:
                status, payload = _app(state, project, "/" + sub)
            except ApiFailure as failure:
                status, payload = failure.status, failure.body()
            self._send(status, payload)
            return
        status, payload, headers = self._api(method, path, query, body)
        state.log_request(method, path, parts.query, status)
        captured = state.captured
        if captured is not None:
            captured.append((method, path, status, payload))
        self._send(status, payload, headers)

    def _api(self, method: str, path: str, query: Query, body: Any) -> tuple[int, Any, dict[str, str]]:
        state = self.server.state
        auth = self.headers.get("Authorization") or ""
        if not auth:
            return 401, {"error": {"code": "forbidden", "message": "The request is missing an authentication token",
                                   "missingToken": True}}, {}
        if auth != f"Bearer {state.token}":
            return 401, {"error": {"code": "forbidden", "message": "Not authorized", "invalidToken": True}}, {}
        fault = state.take_fault(method, path)
        if fault is not None and fault.latency:
            time.sleep(fault.latency)
        if fault is not None and fault.status and not fault.after:
            return fault.status, *self._fault_body(fault)
        try:
            state.check_team(query.get("teamId") or query.get("slug"))
            for verb, pattern, handler in _ROUTES:
                match = pattern.match(path)
                if match and verb == method:
                    status, payload = handler(state, match, query, body)
                    break
            else:
                return 404, {"error": {"code": "not_found", "message": f"The requested path {path} was not found"}}, {}
        except ApiFailure as failure:
            return failure.status, failure.body(), {}
        if fault is not None and fault.status and fault.after:
            return fault.status, *self._fault_body(fault)
        return status, payload, {}

    @staticmethod
    def _fault_body(fault: FaultRule) -> tuple[Any, dict[str, str]]:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        assert fault.status is not None
        if fault.status == 429:
            return {"error": {"code": "rate_limited", "message": "Rate limit exceeded",
                              "limit": {"remaining": 0, "reset": int(time.time()) + 1, "total": 100}}}, headers
        return {"error": {"code": "internal_server_error", "message": f"Injected fault ({fault.status})"}}, headers

    def _admin(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        state = self.server.state
        data = body if isinstance(body, dict) else {}
        try:
            if path == "/_admin/state" and method == "GET":
                return 200, _snapshot(state)
            if path == "/_admin/reset" and method == "POST":
                state.reset(data.get("seed"))
                return 200, {"ok": True}
            if path == "/_admin/config" and method == "POST":
                state.configure(job_seconds=data.get("job_seconds"), fail_aliases=data.get("fail_aliases"),
                                unhealthy=data.get("unhealthy"), crashing=data.get("crashing"))
                return 200, {"ok": True}
            if path == "/_admin/clock" and method == "POST":
                if "freeze" in data:
                    state.freeze_clock(bool(data["freeze"]))
                if "advance" in data:
                    state.advance_clock(float(data["advance"]))
                return 200, {"ok": True, "skew": state.clock_skew, "frozen": state.clock_frozen is not None}
            if path == "/_admin/faults" and method == "POST":
                allowed = {"method", "path", "status", "retry_after", "latency", "times", "after"}
                rule = FaultRule(**{k: v for k, v in data.items() if k in allowed})
                if rule.retry_after is not None:
                    rule.retry_after = str(rule.retry_after)
                state.add_fault(rule)
                return 200, {"ok": True, "fault": rule.to_dict()}
            if path == "/_admin/faults" and method == "DELETE":
                state.clear_faults()
                return 200, {"ok": True}
            if path == "/_admin/faults" and method == "GET":
                return 200, {"faults": [f.to_dict() for f in state.faults]}
            if path == "/_admin/requests" and method == "GET":
                return 200, {"requests": list(state.requests)}
            if path.startswith("/_admin/production/") and method == "GET":
                return 200, _production(state, path[len("/_admin/production/"):])
            if path == "/_admin/deployments" and method == "POST":
                dep = state.create_deployment(str(data.get("project", DEMO.project_name)), sha=str(data["sha"]),
                                              message=str(data.get("message", "")), ref=str(data.get("ref", "main")),
                                              target=data.get("target", "production"),
                                              ready_after=float(data.get("ready_after", 0)),
                                              healthy=bool(data.get("healthy", True)))
                return 201, {"id": dep.id, "url": dep.url, "state": dep.state}
        except ApiFailure as failure:
            return failure.status, failure.body()
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {"error": {"code": "bad_request", "message": f"bad admin request: {exc}"}}
        return 404, {"error": {"code": "not_found", "message": f"no admin endpoint {method} {path}"}}


def _served(dep: Any) -> dict[str, Any] | None:
    return None if dep is None else {"id": dep.id, "url": dep.url, "sha": dep.sha, "message": dep.message,
                                     "healthy": dep.healthy, "crashes": dep.crashes, "createdAt": dep.created_at}


def _production(state: EmulatorState, project_ref: str) -> dict[str, Any]:
    """What production serves now: the deployment (or null) with its health, for the sandbox's app server;
    during a rolling release also the canary and the share of requests it serves (``canary.share``)."""
    with state.lock:
        project = state.project(project_ref)
        dep = state.deployments.get(project.production_id or "")
        release = project.rolling_release
        canary = None
        if release is not None and release.is_active:
            canary = {"deployment": _served(state.deployments.get(release.canary_id)), "share": release.canary_share,
                      "stage": release.stage_index}
        return {"project": project.id, "name": project.name, "deployment": _served(dep), "canary": canary}


def _host_of(value: str) -> str:
    """What the admin view shows of a variable: a URL's host (never its password), else ``***``."""
    parts = urlsplit(value)
    return parts.hostname or "***" if parts.scheme else "***"


def _snapshot(state: EmulatorState) -> dict[str, Any]:
    with state.lock:
        state.list_deployments()  # advance jobs and builds
        return {
            "projects": [{"id": p.id, "name": p.name, "production": p.production_id, "domains": p.domains,
                          "autoAssignPaused": p.auto_assign_paused, "lastAliasRequest": p.last_alias_request,
                          "envHosts": {e.key: _host_of(e.value) for e in p.envs}}
                         for p in state.projects.values()],
            "deployments": [{"id": d.id, "url": d.url, "target": d.target, "state": d.state, "sha": d.sha,
                             "createdAt": d.created_at, "healthy": d.healthy, "redeployOf": d.redeploy_of,
                             "envHosts": {k: _host_of(v) for k, v in d.env.items()}}
                            for d in state.deployments.values()],
            "aliases": {a.alias: a.deployment_id for a in state.aliases.values()},
            "aliasRequests": list(state.alias_history),
            "jobSeconds": state.job_seconds,
            "failAliases": sorted(state.fail_aliases),
            "rollingReleases": {p.id: {"state": r.state, "canary": r.canary_id, "base": r.base_id,
                                       "stage": r.stage_index, "share": r.canary_share, "history": list(r.history)}
                                for p in state.projects.values() if (r := p.rolling_release) is not None},
        }


class _Server(QuietDisconnects, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: EmulatorState, verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.verbose = verbose


@dataclass
class VercelEmulator:
    """A running emulator: its URL, its state (to inspect or steer from Python) and ``stop()``."""

    url: str
    state: EmulatorState
    server: _Server
    thread: threading.Thread

    @property
    def token(self) -> str:
        return self.state.token

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_emulator(*, token: str = "test-token", seed: str | None = "demo", job_seconds: float = 0.0,
                   host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> VercelEmulator:
    """Serve the emulator in a daemon thread; ``port=0`` picks a free port."""
    state = EmulatorState(token=token, seed=seed, job_seconds=job_seconds)
    server = _Server((host, port), state, verbose=verbose)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="vercel-emulator", daemon=True)
    thread.start()
    bound = server.server_address[1]
    return VercelEmulator(url=f"http://{host}:{bound}", state=state, server=server, thread=thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollback.sandbox.vercel",
                                     description="Serve the Vercel API emulator on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", required=True, help="the token clients must send as a Bearer token")
    parser.add_argument("--seed", default="demo", choices=["demo", "demo-rolling", "empty"])
    parser.add_argument("--job-seconds", type=float, default=2.0, help="how long an alias job takes")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    try:
        emulator = start_emulator(token=args.token, seed=args.seed, job_seconds=args.job_seconds, host=args.host,
                                  port=args.port, verbose=args.verbose)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(emulator.url, flush=True)
    print(f"project {DEMO.project_name} ({DEMO.project_id}) in team {DEMO.team_slug} ({DEMO.team_id}); "
          "Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())
