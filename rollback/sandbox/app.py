"""The sandbox's app server: the application a rollback must bring back, and its monitor.

It answers the paths the runbook checks from whichever deployment the Vercel
emulator serves in production (asked on each request, cached for 0.1 s), so
a rollback changes what it answers. During a Vercel rolling release the canary
answers its share of the requests (10 % of them at a 10 % stage, spread evenly per
path: :class:`~rollback.sandbox.vercel_rolling.TrafficSplit`) and the base the rest,
so a bad canary at 10 % shows as a 10 % error rate, on ``/api/health`` and in the
monitor's datapoints; an abort sends every request back to the base at once.

- ``GET /``: the home page (200), naming the deployment and its commit;
- ``GET /api/health``: 200 ``{"status": "ok"}``, or 500 from a bad deployment;
- every path: 500 from a deployment that crashes (the sandbox's ``--rolling`` canary);
- ``GET /api/version``: ``{"commit", "deploymentId", "url", "message"}``;
- ``/api/auth/login`` (200; 500 from a bad deployment), ``/api/auth/register``
  (201 for POST, 200 otherwise), ``/api/integrations``, ``/api/stats`` (200);
- every other ``/api/*`` path of a bad deployment answers only after
  ``--bad-latency`` seconds (1.5 s by default);
- ``GET /_sandbox/monitor``: the monitor's last measurement (not counted);
- ``POST /_sandbox/hooks/<token>``: the sandbox's incident channel, a Slack-compatible
  incoming webhook (``{"text": ...}``; the token, from ``$SANDBOX_HOOK_TOKEN``, makes
  the URL a secret as a real webhook's is); ``GET /_sandbox/channel`` lists what was
  posted (newest last), so a drill's notifications can be read back.

**The monitor** plays CloudWatch's part, which moto does not (moto stores
datapoints but never evaluates an alarm). Every ``--interval`` seconds it
sends a few synthetic requests to the app itself, measures the error rate and
p95 latency of every request to the app that started within a ``--window``
seconds long window (ending once the slowest could have finished), looks at
the edge and assets layers, publishes the datapoints the rollback alarms watch
(``AWS/CloudFront`` ``5xxErrorRate``, ``OriginLatency``, ``CacheHitRate``,
``Requests``, ``LambdaExecutionError``, ``LambdaValidationError``; ``AWS/RDS``
``DatabaseConnections``, ``FreeStorageSpace``) and sets each alarm to ALARM or OK from them, so alarms
clear within seconds of a rollback. Each layer is observable:

- app: the bad deployment's 500s and slow answers -> ``5xxErrorRate``/``OriginLatency``;
- edge: the distribution's viewer-response association names a bad Lambda@Edge
  version -> ``LambdaExecutionError`` > 0;
- assets: an object of the served release differs from the good release (ETag) or
  is missing -> ``CacheHitRate`` drops (a broken release misses the cache).

What is good and bad comes from ``world.json``, written by the sandbox's
supervisor after seeding (re-read when it changes, e.g. after a reseed).

Run by the supervisor::

    python -m rollback.sandbox.app --port 8080 --vercel-url URL --project demo --world DIR/world.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import logging
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rollback.sandbox.serving import QuietDisconnects
from rollback.sandbox.vercel_rolling import TrafficSplit

__all__ = ["AppServer", "Measurement", "Monitor", "main"]

log = logging.getLogger("rollback.sandbox.app")

PROBE_PATHS = ("/", "/api/health", "/api/version", "/api/auth/login", "/api/integrations")
CACHE_SECONDS = 0.1


def _nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = math.ceil(pct / 100 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


@dataclass
class Measurement:
    """What the app answered over the last window."""

    requests: int
    errors_5xx: int
    errors_4xx: int
    p95_ms: float | None
    latencies_ms: list[float]

    @property
    def error_rate(self) -> float:
        return 100.0 * self.errors_5xx / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors_5xx": self.errors_5xx, "errors_4xx": self.errors_4xx,
                "error_rate_percent": round(self.error_rate, 2),
                "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 1)}


@dataclass
class Production:
    id: str
    sha: str
    url: str
    message: str
    healthy: bool
    crashes: bool = False

    @classmethod
    def of(cls, dep: Any) -> Production | None:
        if not isinstance(dep, dict):
            return None
        return cls(str(dep["id"]), str(dep["sha"]), str(dep["url"]), str(dep.get("message", "")),
                   bool(dep.get("healthy", True)), bool(dep.get("crashes", False)))


@dataclass
class Serving:
    """What production serves: the deployment, and during a rolling release the canary and its share."""

    production: Production | None
    canary: Production | None = None
    share: float = 0.0


class AppServer:
    """The app's state: where production is asked for, and what it answered (for the monitor)."""

    def __init__(self, vercel_url: str, project: str, *, bad_latency: float = 1.5) -> None:
        self.vercel_url = vercel_url.rstrip("/")
        self.project = project
        self.bad_latency = bad_latency
        self._lock = threading.Lock()
        self._cached: tuple[float, Serving] | None = None
        self.split = TrafficSplit(spread=PROBE_PATHS)
        self.answered: collections.deque[tuple[float, int, float]] = collections.deque(maxlen=20000)
        self.monitor: Monitor | None = None
        self.hook_token: str | None = None
        self.channel: collections.deque[dict[str, Any]] = collections.deque(maxlen=2000)

    def receive_post(self, token: str, raw: bytes) -> tuple[int, str, bytes]:
        """The incident channel: a post to ``/_sandbox/hooks/<token>`` (Slack's answers: ``ok``,
        404 for an unknown hook, 400 for a body without ``text``)."""
        import hmac

        if not self.hook_token or not hmac.compare_digest(token, self.hook_token):
            return 404, "text/plain; charset=utf-8", b"no_service"
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return 400, "text/plain; charset=utf-8", b"invalid_payload"
        self.channel.append({"at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"), "text": body["text"]})
        return 200, "text/plain; charset=utf-8", b"ok"

    def serving(self) -> Serving:
        """What production serves (and the canary of a rolling release); raises OSError when the
        emulator cannot be reached."""
        now = time.monotonic()
        with self._lock:
            if self._cached is not None and now - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
        with urllib.request.urlopen(f"{self.vercel_url}/_admin/production/{self.project}", timeout=5) as response:
            body = json.loads(response.read())
        canary = body.get("canary") if isinstance(body.get("canary"), dict) else {}
        found = Serving(Production.of(body.get("deployment")), Production.of(canary.get("deployment")),
                        float(canary.get("share") or 0.0))
        with self._lock:
            self._cached = (time.monotonic(), found)
        return found

    def production(self, path: str = "/") -> Production | None:
        """The deployment that answers a request to ``path`` now (None when production has none): the
        canary for its share of the requests during a rolling release, else production's."""
        serving = self.serving()
        if serving.canary is not None and self.split.to_canary(path, serving.share):
            return serving.canary
        return serving.production

    def record(self, started: float, status: int, seconds: float) -> None:
        self.answered.append((started, status, seconds))

    def measure(self, window: float, *, settle: float = 0.0, since: float = 0.0) -> Measurement:
        """The requests that *started* in the ``window`` seconds before ``settle`` seconds ago (and not
        before ``since``): a slow request is counted with the fast ones sent at the same time, once it
        has had ``settle`` seconds to finish."""
        end = time.monotonic() - settle
        begin = max(since, end - window)
        recent = [item for item in list(self.answered) if begin <= item[0] < end]
        latencies = [seconds * 1000 for _, _, seconds in recent]
        return Measurement(
            requests=len(recent),
            errors_5xx=sum(1 for _, status, _ in recent if status >= 500),
            errors_4xx=sum(1 for _, status, _ in recent if 400 <= status < 500),
            p95_ms=_nearest_rank(latencies, 95) if latencies else None,
            latencies_ms=latencies,
        )

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a request to the app."""
        try:
            dep = self.production(path)
        except (OSError, ValueError) as exc:
            return _json(502, {"error": "bad gateway", "detail": f"the deployment platform did not answer: {exc}"})
        if dep is None:
            return _json(502, {"error": "bad gateway", "detail": "no production deployment"})
        if dep.crashes:
            return _json(500, {"error": "FUNCTION_INVOCATION_FAILED", "detail": "the deployment crashed",
                               "deploymentId": dep.id, "commit": dep.sha})
        if path.startswith("/api/") and path != "/api/health" and not dep.healthy:
            time.sleep(self.bad_latency)  # its health check fails fast; the rest of its API is slow
        info = {"deploymentId": dep.id, "commit": dep.sha}
        if path in ("/", "/index.html"):
            page = (f"<!doctype html><html><head><title>demo</title></head><body><h1>demo</h1>"
                    f"<p>deployment {dep.id} ({dep.sha[:7]}): {_escape(dep.message)}</p>"
                    f"<p>stats: 120 users, 180 integrations</p></body></html>")
            return 200, "text/html; charset=utf-8", page.encode()
        if path == "/api/health":
            return _json(200, {"status": "ok", **info}) if dep.healthy else _json(
                500, {"status": "error", "error": "TypeError: cannot read properties of undefined", **info})
        if path == "/api/version":
            return _json(200, {**info, "url": dep.url, "message": dep.message})
        if path == "/api/auth/login":
            return _json(200, {"ok": True, "session": "sandbox-session", **info}) if dep.healthy else _json(
                500, {"ok": False, "error": "session store unavailable", **info})
        if path == "/api/auth/register":
            return _json(201 if method == "POST" else 200, {"ok": True, "user": "new-user", **info})
        if path == "/api/integrations":
            return _json(200, {"integrations": [{"provider": "github", "status": "connected"},
                                                {"provider": "google", "status": "connected"}], **info})
        if path == "/api/stats":
            return _json(200, {"users": 120, "integrations": 180, **info})
        return _json(404, {"error": "not found", "path": path})


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json(status: int, body: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 20)) if length else b""
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path == "/_sandbox/monitor":
            monitor = app.monitor
            status, kind, body = _json(200, monitor.last if monitor is not None else {})
        elif path.startswith("/_sandbox/hooks/") and method == "POST":
            status, kind, body = app.receive_post(path.removeprefix("/_sandbox/hooks/"), raw)
        elif path == "/_sandbox/channel":
            status, kind, body = _json(200, {"posts": list(app.channel)})
        else:
            try:
                status, kind, body = app.answer(method, path)
            except Exception as exc:  # the app's own bug: a 500, as a real app would answer
                log.exception("answering %s", path)
                status, kind, body = _json(500, {"error": type(exc).__name__})
            app.record(started, status, time.monotonic() - started)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if method != "HEAD":
            with contextlib.suppress(OSError):
                self.wfile.write(body)


class _Server(QuietDisconnects, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: AppServer) -> None:
        super().__init__(address, _Handler)
        self.app = app


# ----------------------------------------------------------------------------------- the monitor


_COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


@dataclass
class Monitor:
    """Measures the app and the edge every ``interval`` seconds, publishes datapoints, sets alarms."""

    app: AppServer
    base_url: str
    world_path: Path
    interval: float = 1.0
    window: float = 2.0  # short: an alarm clears (and a datapoint turns good) seconds after the fix
    min_samples: int = 5
    last: dict[str, Any] = field(default_factory=dict)
    _world: dict[str, Any] | None = None
    _world_mtime: float = 0.0
    _clients: dict[str, Any] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    _since: float = 0.0
    _rds_published: float = -1e9

    @property
    def settle(self) -> float:
        """How long a probe may take and still be counted with the others sent with it."""
        return self.app.bad_latency + 0.5

    def world(self) -> dict[str, Any] | None:
        try:
            mtime = self.world_path.stat().st_mtime
        except OSError:
            self._world = None
            return None
        if self._world is None or mtime != self._world_mtime:
            try:
                self._world = json.loads(self.world_path.read_text(encoding="utf-8"))
                self._world_mtime = mtime
            except (OSError, ValueError):
                return None
            # A new world (up, reset): answers about the previous one must not decide its alarms.
            self._since = time.monotonic()
        return self._world

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=10)
            self._clients[service] = boto3.client(service, region_name="us-east-1", config=config)  # type: ignore[call-overload]
        return self._clients[service]

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            world = self.world()
            if world is None or not world.get("aws"):
                continue
            try:
                self.cycle(world)
            except Exception as exc:  # moto restarting, a reseed in progress: try again next cycle
                log.warning("monitor cycle failed: %s: %s", type(exc).__name__, exc)

    def probe(self) -> None:
        """Synthetic traffic: one request per probe path, each in its own thread (a slow one does not hold
        up the others); the app records each answer when it is sent."""
        for path in PROBE_PATHS:
            threading.Thread(target=self._get, args=(path,), daemon=True).start()

    def _get(self, path: str) -> None:
        with contextlib.suppress(OSError, urllib.error.URLError), \
                urllib.request.urlopen(self.base_url + path, timeout=10) as response:
            response.read()

    def inspect(self, world: dict[str, Any]) -> dict[str, Any]:
        """The edge version the distribution uses and whether the served assets are the good release."""
        aws = world["aws"]
        config = self.client("cloudfront").get_distribution_config(Id=aws["distribution_id"])["DistributionConfig"]
        items = config["DefaultCacheBehavior"].get("LambdaFunctionAssociations", {}).get("Items") or []
        versions = sorted({str(item["LambdaFunctionARN"]).rsplit(":", 1)[-1] for item in items})
        edge_bad = any(v in aws["edge_bad_versions"] for v in versions)
        listed = self.client("s3").list_object_versions(Bucket=aws["assets_bucket"], Prefix=aws["assets_prefix"])
        current = {v["Key"]: v["ETag"] for v in listed.get("Versions", []) if v.get("IsLatest")}
        # A key whose newest version is a delete marker is missing: it is not in `current`.
        changed = sorted(key for key, etag in aws["assets_good_etags"].items() if current.get(key) != etag)
        return {"edge_versions": versions, "edge_bad": edge_bad, "assets_changed": changed,
                "assets_bad": bool(changed)}

    def measure_window(self) -> float:
        """Seconds of answers a measurement covers: ``window``, or during a rolling release long enough for
        the canary to have answered each probe path at least once (10 rounds at a 10 % stage), so that a
        bad canary at 10 % reads as a steady 10 % error rate, as CloudFront's per-minute average would."""
        try:
            share = self.app.serving().share
        except (OSError, ValueError):
            share = 0.0
        if share <= 0:
            return self.window
        return max(self.window, self.interval / share + self.interval)

    def cycle(self, world: dict[str, Any]) -> dict[str, Any]:
        self.probe()
        measured = self.app.measure(self.measure_window(), settle=self.settle, since=self._since)
        if measured.requests < self.min_samples:
            # Too few answers yet (just started, or a new world): no verdict, as CloudWatch's
            # "insufficient data" leaves an alarm where it is.
            self.last = {"at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                         "measurement": measured.to_dict(), "note": "too few requests measured yet"}
            return self.last
        layers = self.inspect(world)
        values = {
            "5xxErrorRate": measured.error_rate,
            "OriginLatency": measured.p95_ms or 0.0,
            "CacheHitRate": 38.0 if layers["assets_bad"] else 92.0,
            "edgeErrors": 12.0 if layers["edge_bad"] else 0.0,
            "DatabaseConnections": 7.0,
            "FreeStorageSpace": 18.0 * 1024**3,
        }
        self.publish(world, measured, values)
        states = self.set_alarms(world, values)
        self.last = {"at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                     "measurement": measured.to_dict(), "layers": layers,
                     "values": {k: round(v, 2) for k, v in values.items()}, "alarms": states}
        return self.last

    def publish(self, world: dict[str, Any], measured: Measurement, values: dict[str, float]) -> None:
        aws = world["aws"]
        # As CloudFront does, a datapoint carries the start of the period its requests were sent in (the
        # measurement covers requests that started window + settle seconds ago and later), never the
        # moment it is published: a window of datapoints from a time on holds no request made before it.
        now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.window + self.settle)
        cdn = [{"Name": "DistributionId", "Value": aws["distribution_id"]}, {"Name": "Region", "Value": "Global"}]
        latencies = measured.latencies_ms[-150:] or [values["OriginLatency"]]
        data: list[dict[str, Any]] = [
            {"MetricName": "Requests", "Dimensions": cdn, "Timestamp": now, "Value": float(measured.requests),
             "Unit": "None"},
            {"MetricName": "5xxErrorRate", "Dimensions": cdn, "Timestamp": now, "Value": values["5xxErrorRate"],
             "Unit": "Percent"},
            {"MetricName": "4xxErrorRate", "Dimensions": cdn, "Timestamp": now, "Unit": "Percent",
             "Value": 100.0 * measured.errors_4xx / measured.requests if measured.requests else 0.0},
            {"MetricName": "OriginLatency", "Dimensions": cdn, "Timestamp": now, "Unit": "Milliseconds",
             "Values": [round(v, 1) for v in latencies]},
            {"MetricName": "CacheHitRate", "Dimensions": cdn, "Timestamp": now, "Value": values["CacheHitRate"],
             "Unit": "Percent"},
            {"MetricName": "LambdaExecutionError", "Dimensions": cdn, "Timestamp": now, "Value": values["edgeErrors"],
             "Unit": "None"},
            {"MetricName": "LambdaValidationError", "Dimensions": cdn, "Timestamp": now, "Value": 0.0, "Unit": "None"},
        ]
        cloudwatch = self.client("cloudwatch")
        cloudwatch.put_metric_data(Namespace="AWS/CloudFront", MetricData=data)
        if time.monotonic() - self._rds_published < 30:  # RDS publishes every minute; these never change
            return
        self._rds_published = time.monotonic()
        rds = [{"Name": "DBInstanceIdentifier", "Value": aws["db_instance"]}]
        cloudwatch.put_metric_data(Namespace="AWS/RDS", MetricData=[
            {"MetricName": "DatabaseConnections", "Dimensions": rds, "Timestamp": now,
             "Value": values["DatabaseConnections"], "Unit": "Count"},
            {"MetricName": "FreeStorageSpace", "Dimensions": rds, "Timestamp": now,
             "Value": values["FreeStorageSpace"], "Unit": "Bytes"}])

    def set_alarms(self, world: dict[str, Any], values: dict[str, float]) -> dict[str, str]:
        """Evaluate each rollback alarm from this cycle's values; change only the ones whose state differs."""
        alarms = world["aws"]["alarms"]
        desired: dict[str, tuple[str, float, dict[str, Any]]] = {}
        for alarm in alarms:
            value = values[alarm["value"]]
            breached = _COMPARE[alarm["comparison"]](value, float(alarm["threshold"]))
            desired[alarm["name"]] = ("ALARM" if breached else "OK", value, alarm)
        composite = world["aws"].get("composite_alarm")
        cloudwatch = self.client("cloudwatch")
        names = [*desired, *([composite] if composite else [])]
        found = cloudwatch.describe_alarms(AlarmNames=names, AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        current = {a["AlarmName"]: a["StateValue"] for a in found["MetricAlarms"] + found["CompositeAlarms"]}
        states: dict[str, str] = {}
        stamp = dt.datetime.now(dt.UTC).strftime("%d/%m/%y %H:%M:%S")
        for name, (state, value, alarm) in desired.items():
            states[name] = state
            if current.get(name) == state:
                continue
            relation = {"GreaterThanThreshold": "greater than", "LessThanThreshold": "less than"}.get(
                alarm["comparison"], alarm["comparison"])
            verdict = relation if state == "ALARM" else f"not {relation}"
            reason = (f"Threshold Crossed: 1 datapoint [{value:.2f} ({stamp})] was {verdict} the threshold "
                      f"({float(alarm['threshold']):g}).")
            data = {"version": "1.0", "queryDate": stamp, "recentDatapoints": [round(value, 2)],
                    "threshold": float(alarm["threshold"])}
            cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason,
                                       StateReasonData=json.dumps(data))
        if composite:
            firing = sorted(n for n, s in states.items() if s == "ALARM")
            state = "ALARM" if firing else "OK"
            states[composite] = state
            if current.get(composite) != state:
                reason = (f"arn:aws:cloudwatch alarm(s) in ALARM: {', '.join(firing)}" if firing
                          else "no rollback criterion alarm is in ALARM")
                cloudwatch.set_alarm_state(AlarmName=composite, StateValue=state, StateReason=reason)
        return states


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollback.sandbox.app", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--vercel-url", required=True, help="the Vercel emulator (its /_admin/production)")
    parser.add_argument("--project", default="demo", help="the Vercel project whose production this app is")
    parser.add_argument("--world", type=Path, help="world.json written by the supervisor (enables the monitor)")
    parser.add_argument("--bad-latency", type=float, default=1.5, help="seconds a bad deployment takes on /api/*")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between monitor cycles")
    parser.add_argument("--window", type=float, default=2.0, help="seconds of answers each measurement covers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s app: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    app = AppServer(args.vercel_url, args.project, bad_latency=args.bad_latency)
    app.hook_token = os.environ.get("SANDBOX_HOOK_TOKEN") or None  # not an argument: ps would show it
    server = _Server(("127.0.0.1", args.port), app)
    if args.world is not None:
        app.monitor = Monitor(app, f"http://127.0.0.1:{args.port}", args.world, interval=args.interval,
                              window=args.window)
        threading.Thread(target=app.monitor.run, name="monitor", daemon=True).start()
    log.info("serving on http://127.0.0.1:%d for project %s", args.port, args.project)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if app.monitor is not None:
            app.monitor.stopping.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
