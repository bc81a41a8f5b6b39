"""``rollback verify``: the runbook's Post-Rollback Checklist, as measurements.

Every checklist item is an :class:`Item` with a measured value, a threshold
and a verdict (``pass``, ``fail``, or ``not measured`` with the reason when its
source is not configured: never a silent pass). Groups follow the runbook:

- **Service health**: each health URL answers ``expect_status``; the version
  endpoint reports what production should serve (``--expect-version``, else
  the commit of Vercel's production deployment); CloudFront 5xx rate < 1 %
  over the last 5 minutes.
- **Critical flows**: each ``[[env.<name>.verify.flows]]`` (method, path,
  status, body substring); the smoke command (``verify.smoke``, run without a
  shell), exit status 0.
- **Data integrity**: the database answers, no failed migration, row counts
  against ``--baseline``, no orphans (:func:`rollback.commands.db.migrations.verify`).
- **Performance**: API p95 < 500 ms over N concurrent requests; page load < 3 s;
  CloudFront cache hit rate > 70 % over the last 5 minutes.
- **Monitoring**: every rollback alarm OK; metrics still arriving (a
  CloudFront datapoint in the last 10 minutes).

When the app is served by Vercel directly (a Vercel project and no CloudFront
distribution), there are no CloudFront items: the document's ``notes`` say that
error rate and latency come from the health URLs, the flows and the API p95.

The CloudFront rates judge the minutes *since the service was restored*
when that time is known (``since``): a standalone ``rollback verify`` reads
it from the open incident's ``restored`` event (which ``rollback run``
writes), or, with no incident open, from the last ``restored`` event of the
environment's newest incident (a verify right after a drill, which closes
its incident); the checklist at the end of ``rollback run`` judges the time since
the run's last layer was rolled back (never before ``restored``). The window
is never longer than the last 5 minutes; when no datapoint has arrived in it
yet, the newest datapoint is judged. A plain 5-minute average would still
hold the bad minutes before the rollback, so a rollback could not verify
within minutes of its end.

Sources are measured concurrently. The document is Contract C (see
``rollback verify --json`` in the README).
"""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.actions import StepHandlers, action
from rollback.adapters import http as http_adapter
from rollback.adapters.health import extract_version, versions_match
from rollback.commands import incident as incidents
from rollback.commands import signals
from rollback.commands.db import handlers as db_commands
from rollback.commands.db import migrations as db_migrations
from rollback.errors import BadInput, ChecksFailed, RollbackError
from rollback.model.incident import iso, parse_ts, read_incident
from rollback.plan import Step
from rollback.redact import redact_text
from rollback.runner import Check

if TYPE_CHECKING:
    import httpx

    from rollback.config import Config
    from rollback.context import Services
    from rollback.runner import StepContext

__all__ = ["GROUPS", "Item", "VerifyHandlers", "VerifyResult", "checklist_step", "verify", "verify_once"]

GROUPS = ("Service health", "Critical flows", "Data integrity", "Performance", "Monitoring")
PASS, FAIL, UNMEASURED = "pass", "fail", "not measured"
AWS_TIMEOUT = 5.0
HTTP_BUDGET = 120.0  # every HTTP/AWS/DB source together; the smoke command has its own timeout


@dataclass(frozen=True)
class Item:
    id: str
    group: str
    name: str
    status: str  # pass | fail | not measured
    value: str = ""
    threshold: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "name": self.name, "status": self.status, "value": self.value,
                "threshold": self.threshold, "detail": self.detail}


def iso_seconds(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unmeasured(item_id: str, group: str, name: str, why: str, threshold: str = "") -> Item:
    return Item(item_id, group, name, UNMEASURED, "", threshold, f"not measured: {why}")


def _verdict(ok: bool) -> str:
    return PASS if ok else FAIL


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _clip(text: str, limit: int = 300) -> str:
    text = redact_text(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------ HTTP items


def _http(config: Config) -> httpx.Client:
    settings = config.env.health
    return http_adapter.make_client(settings.base_url or "", timeout=settings.timeout,
                                    concurrency=config.env.verify.concurrency, user_agent="rollback-verify")


def _request(config: Config, http: httpx.Client, method: str, path: str, *, content: str | None = None,
             content_type: str | None = None) -> tuple[int | None, str, float, str]:
    """(status, body, seconds, problem): a transport failure, or an answer longer than ``[http]
    max_body_bytes`` or slower than ``health.timeout`` in all, is a status of None and its reason."""
    answer = http_adapter.exchange(http, method, path, content=content, content_type=content_type,
                                   max_body=config.max_body, deadline=config.env.health.timeout)
    problem = ("" if answer.status is not None else "timed out" if answer.timed_out and not answer.refused
               else _clip(answer.error, 200))
    return answer.status, answer.body, answer.seconds, problem


def health_items(config: Config, expected: Sequence[str] | None, expected_problem: str | None) -> list[Item]:
    group = "Service health"
    settings = config.env.health
    if not settings.base_url:
        why = f"[env.{config.env_name}.health] base_url is not set"
        return [_unmeasured("health", group, "health checks", why, f"== {settings.expect_status}"),
                _unmeasured("version", group, "version endpoint", why)]
    items: list[Item] = []
    with _http(config) as http:
        for path in settings.paths:
            status, _, seconds, problem = _request(config, http, "GET", path)
            value = str(status) if status is not None else "no answer"
            items.append(Item(f"health.{path}", group, f"health check {path}",
                              _verdict(status == settings.expect_status), value, f"== {settings.expect_status}",
                              problem or f"{_ms(seconds)}"))
        version_path = settings.version_path
        if not version_path:
            items.append(_unmeasured("version", group, "version endpoint",
                                     f"[env.{config.env_name}.health] version_path is not set"))
        elif not expected:
            items.append(_unmeasured("version", group, f"version {version_path}",
                                     expected_problem or "no expected version"))
        else:
            started = time.monotonic()
            answer = http_adapter.exchange(http, "GET", version_path, max_body=config.max_body,
                                           deadline=settings.timeout)
            if answer.status is None:
                found, problem = None, _clip(answer.error, 200)
            else:
                found = extract_version(answer.body, answer.content_type) if answer.status == 200 else None
                problem = "" if answer.status == 200 else f"HTTP {answer.status}"
            ok = any(versions_match(found, candidate) for candidate in expected)
            items.append(Item("version", group, f"version {version_path}", _verdict(ok), found or "none",
                              "== " + " or ".join(expected),
                              problem or f"{_ms(time.monotonic() - started)}"))
    return items


def flow_items(config: Config) -> list[Item]:
    group = "Critical flows"
    flows = config.env.verify.flows
    if not flows:
        return [_unmeasured("flows", group, "critical flows",
                            f"no [[env.{config.env_name}.verify.flows]] configured (e.g. login, registration)")]
    if not config.env.health.base_url:
        return [_unmeasured(f"flow.{flow.name}", group, f"flow {flow.name}",
                            f"[env.{config.env_name}.health] base_url is not set") for flow in flows]
    items: list[Item] = []
    with _http(config) as http:
        for flow in flows:
            status, body, seconds, problem = _request(config, http, flow.method, flow.path, content=flow.body,
                                                      content_type=flow.content_type)
            ok = status == flow.status
            threshold = f"== {flow.status}"
            detail = problem or f"{flow.method} {flow.path} in {_ms(seconds)}"
            if flow.body_contains is not None:
                threshold += f", body contains {flow.body_contains!r}"
                has = flow.body_contains in body
                ok = ok and has
                if status is not None and not has:
                    detail += f"; body lacks {flow.body_contains!r}"
            value = str(status) if status is not None else "no answer"
            items.append(Item(f"flow.{flow.name}", group, f"flow {flow.name}", _verdict(ok), value, threshold,
                              detail))
    return items


def smoke_item(config: Config) -> Item:
    group = "Critical flows"
    command = config.env.verify.smoke
    if not command:
        return _unmeasured("smoke", group, "smoke tests", f"[env.{config.env_name}.verify] smoke is not set",
                           "exit 0")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return Item("smoke", group, "smoke tests", FAIL, "", "exit 0", f"cannot parse verify.smoke: {exc}")
    if not argv:
        return Item("smoke", group, "smoke tests", FAIL, "", "exit 0", "verify.smoke is empty")
    started = time.monotonic()
    timeout = config.env.verify.smoke_timeout
    try:
        # No shell: the command is split like a shell would, and run as is.
        done = subprocess.run(argv, cwd=config.root, capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return Item("smoke", group, f"smoke tests: {_clip(command, 80)}", FAIL, "not run", "exit 0",
                    f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Item("smoke", group, f"smoke tests: {_clip(command, 80)}", FAIL, "timed out", "exit 0",
                    f"still running after {timeout:g} s (verify.smoke_timeout)")
    except OSError as exc:
        return Item("smoke", group, f"smoke tests: {_clip(command, 80)}", FAIL, "not run", "exit 0",
                    _clip(str(exc)))
    tail = (done.stderr or done.stdout or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    detail = f"{time.monotonic() - started:.1f} s" + (f"; {_clip(tail[0], 200)}" if done.returncode else "")
    return Item("smoke", group, f"smoke tests: {_clip(command, 80)}", _verdict(done.returncode == 0),
                f"exit {done.returncode}", "exit 0", detail)


def performance_items(config: Config) -> list[Item]:
    group = "Performance"
    settings, verify_settings = config.env.health, config.env.verify
    threshold_api = f"< {verify_settings.api_p95_ms:g} ms"
    threshold_page = f"< {verify_settings.page_load_ms / 1000:g} s"
    if not settings.base_url:
        why = f"[env.{config.env_name}.health] base_url is not set"
        return [_unmeasured("api.p95", group, "API response time p95", why, threshold_api),
                _unmeasured("page.load", group, "page load time", why, threshold_page)]
    paths = verify_settings.api_paths or settings.paths
    count = verify_settings.requests
    targets = [paths[i % len(paths)] for i in range(count)]
    items: list[Item] = []
    with _http(config) as http:
        with ThreadPoolExecutor(max_workers=min(verify_settings.concurrency, count)) as pool:
            answers = list(pool.map(lambda path: _request(config, http, "GET", path), targets))
        times = sorted(seconds for _, _, seconds, _ in answers)
        failed = [problem or f"HTTP {status}" for status, _, _, problem in answers
                  if status is None or status >= 500]
        rank = max(1, -(-95 * len(times) // 100))
        p95 = times[rank - 1]
        ok = p95 * 1000 < verify_settings.api_p95_ms and not failed
        detail = f"{count} requests over {', '.join(paths)}, {verify_settings.concurrency} at a time"
        if failed:
            detail += f"; {len(failed)} failed ({failed[0]})"
        items.append(Item("api.p95", group, "API response time p95", _verdict(ok), _ms(p95), threshold_api, detail))
        for path in verify_settings.page_paths:
            status, body, seconds, problem = _request(config, http, "GET", path)
            ok = status is not None and status < 400 and seconds * 1000 < verify_settings.page_load_ms
            detail = problem or f"HTTP {status}, {len(body)} characters"
            items.append(Item(f"page.{path}", group, f"page load {path}", _verdict(ok), f"{seconds:.2f} s",
                              threshold_page, detail))
    return items


# ------------------------------------------------------------------------------------------ AWS items


def cloudfront_items(config: Config, services: Services, since: dt.datetime | None = None) -> list[Item]:
    """The CloudFront items; the rates over the last ``metrics_minutes``, or since ``since`` when later."""

    verify_settings = config.env.verify
    minutes = verify_settings.metrics_minutes
    if since is not None and since >= dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes):
        restored = since.astimezone(dt.UTC)
    else:
        restored = None  # restored longer ago than the window: the window is all after it
    span = f"since restored {restored.strftime('%H:%M:%S')}Z" if restored else f"{minutes} min"
    error_threshold = f"< {verify_settings.error_rate_percent:g} %"
    cache_threshold = f"> {verify_settings.cache_hit_percent:g} %"
    fresh_threshold = f"newest < {verify_settings.fresh_minutes} min old"
    try:
        distribution = signals.distribution_id(config, services)
    except signals.NotConfigured as exc:
        why = str(exc)
        return [_unmeasured("cdn.5xx-rate", "Service health", f"CloudFront 5xx error rate ({span})", why,
                            error_threshold),
                _unmeasured("cdn.cache-hit-rate", "Performance", f"CloudFront cache hit rate ({span})", why,
                            cache_threshold),
                _unmeasured("metrics.arriving", "Monitoring", "metrics being collected", why, fresh_threshold)]

    def rate(item_id: str, group: str, name: str, metric: str, threshold: str,
             good: Callable[[float], bool]) -> Item:
        try:
            window = signals.cloudfront_metric(config, metric, "Average", minutes=minutes, timeout=AWS_TIMEOUT,
                                               distribution=distribution, since=restored, services=services)
            detail = f"{metric} average over {window.datapoints} minute(s), distribution {distribution}"
            if restored is not None:
                detail = (f"{metric} average since the service was restored ({iso_seconds(restored)}), "
                          f"{window.datapoints} datapoint minute(s), distribution {distribution}")
                if window.value is None:
                    # Nothing since the restore yet: judge the newest datapoint (at least one).
                    window = signals.cloudfront_newest(config, metric, "Average", minutes=minutes,
                                                       timeout=AWS_TIMEOUT, distribution=distribution,
                                                       services=services)
                    detail = (f"no {metric} datapoint since the service was restored ({iso_seconds(restored)}) "
                              f"yet: the newest one"
                              + (f" ({iso_seconds(window.newest)})" if window.newest else "")
                              + f", distribution {distribution}")
        except RollbackError as exc:
            return Item(item_id, group, name, FAIL, "", threshold, _clip(exc.message))
        if window.value is None:
            return _unmeasured(item_id, group, name, f"no {metric} datapoints for {distribution} in the last "
                               f"{minutes} min", threshold)
        return Item(item_id, group, name, _verdict(good(window.value)), f"{window.value:.2f} %", threshold, detail)

    items = [
        rate("cdn.5xx-rate", "Service health", f"CloudFront 5xx error rate ({span})", "5xxErrorRate",
             error_threshold, lambda v: v < verify_settings.error_rate_percent),
        rate("cdn.cache-hit-rate", "Performance", f"CloudFront cache hit rate ({span})", "CacheHitRate",
             cache_threshold, lambda v: v > verify_settings.cache_hit_percent),
    ]
    fresh = verify_settings.fresh_minutes
    try:
        window = signals.cloudfront_metric(config, "Requests", "Sum", minutes=fresh, timeout=AWS_TIMEOUT,
                                           distribution=distribution, services=services)
        if window.newest is None:
            items.append(Item("metrics.arriving", "Monitoring", "metrics being collected", FAIL, "none",
                              fresh_threshold, f"no CloudFront Requests datapoint for {distribution} in the last "
                              f"{fresh} min"))
        else:
            age = (dt.datetime.now(dt.UTC) - window.newest).total_seconds()
            items.append(Item("metrics.arriving", "Monitoring", "metrics being collected",
                              _verdict(age < fresh * 60), f"newest {max(0, age) / 60:.1f} min old", fresh_threshold,
                              f"CloudFront Requests, {window.datapoints} datapoint minute(s)"))
    except RollbackError as exc:
        items.append(Item("metrics.arriving", "Monitoring", "metrics being collected", FAIL, "", fresh_threshold,
                          _clip(exc.message)))
    return items


def alarm_items(config: Config, services: Services) -> list[Item]:
    group = "Monitoring"
    try:
        wanted, found = signals.read_alarms(config, timeout=AWS_TIMEOUT, services=services)
    except signals.NotConfigured as exc:
        return [_unmeasured("alarms", group, "rollback alarms in OK state", str(exc), "== OK")]
    except RollbackError as exc:
        return [Item("alarms", group, "rollback alarms in OK state", FAIL, "", "== OK", _clip(exc.message))]
    if not found:
        return [Item("alarms", group, "rollback alarms in OK state", FAIL, "none found", "== OK",
                     f"none of the rollback alarms ({wanted.origin}) exist")]
    missing = [name for name in wanted.names if name not in {a.name for a in found}]
    items = [Item(f"alarm.{alarm.name}", group, f"alarm {alarm.name}", _verdict(alarm.state == "OK"), alarm.state,
                  "== OK", _clip(alarm.reason, 160) if alarm.state != "OK" else
                  (f"since {alarm.updated_at.isoformat(timespec='seconds')}" if alarm.updated_at else ""))
             for alarm in found]
    items += [Item(f"alarm.{name}", group, f"alarm {name}", FAIL, "missing", "== OK", "the alarm does not exist")
              for name in missing]
    return items


# ------------------------------------------------------------------------------------------ database items


def database_items(config: Config, services: Services, baseline: str | None) -> list[Item]:
    group = "Data integrity"
    if not config.database_url():
        why = f"{config.env.database.url_env} is not set"
        return [_unmeasured("db.connect", group, "database answers", why),
                _unmeasured("db.migrations", group, "no failed migrations", why, "== 0"),
                _unmeasured("db.rows", group, "row counts match the baseline", why),
                _unmeasured("db.orphans", group, "no orphaned records", why, "== 0")]

    try:
        report = db_migrations.verify(config, baseline=baseline, services=services)
    except BadInput:
        raise
    except RollbackError as exc:
        return [Item("db.connect", group, "database answers", FAIL, "no answer", "answers", _clip(exc.message))]
    items: list[Item] = []
    for check in report.get("checks", []):
        name = str(check.get("check"))
        value = check.get("value")
        expected = check.get("expected")
        detail = str(check.get("detail") or "")
        if name == "connect":
            items.append(Item("db.connect", group, "database answers", _verdict(bool(check["ok"])), str(value),
                              "answers", detail))
        elif name == "migrations.failed":
            items.append(Item("db.migrations", group, "no failed migrations", _verdict(bool(check["ok"])),
                              str(value), "== 0", detail))
        elif name.startswith("rows."):
            table = name[len("rows."):]
            if expected is None and check["ok"]:
                items.append(Item(f"db.rows.{table}", group, f"row count {table}", UNMEASURED, str(value), "",
                                  "not measured: no baseline to compare with (pass --baseline BACKUP)"))
            else:
                threshold = str(expected) if isinstance(expected, str) else f"== {expected}"
                items.append(Item(f"db.rows.{table}", group, f"row count {table}", _verdict(bool(check["ok"])),
                                  str(value) if value is not None else "", threshold, detail))
        elif name.startswith("orphans."):
            label = name[len("orphans."):]
            items.append(Item(f"db.orphans.{label}", group, f"no orphans {label}", _verdict(bool(check["ok"])),
                              str(value) if value is not None else "", "== 0", detail))
        else:
            items.append(Item(f"db.{name}", group, name, _verdict(bool(check["ok"])), str(value), str(expected),
                              detail))
    if not any(i.id.startswith("db.rows.") for i in items):
        items.append(_unmeasured("db.rows", group, "row counts match the baseline",
                                 "no tables to count (set database.tables, or pass --baseline)"))
    return items


# ------------------------------------------------------------------------------------------ scope


# The layers whose rollback can heal each checklist item, by item id prefix (first match); the first layer
# is the one the item is about. Items not named here (health, flows, the 5xx rate, latency, page load,
# smoke, metrics arriving) can be healed by any layer: a bad app, edge function, release or database all
# show there. Alarms go by their criterion (:data:`rollback.model.decide.CRITERION_LAYERS`); the composite alarm
# clears only when every alarm in it does.
ITEM_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("db.", ("db",)),
    ("version", ("app",)),
    ("cdn.cache-hit-rate", ("assets", "infra")),
)


def healers(item: Mapping[str, Any], prefix: str | None = None) -> tuple[str, ...] | None:
    """The layers whose rollback can heal ``item`` (the first is the one it is about); ``None``: any layer."""
    from rollback.model.decide import CRITERION_LAYERS, alarm_criterion

    item_id = str(item.get("id") or "")
    if item_id.startswith("alarm."):
        criterion = alarm_criterion(item_id[len("alarm."):], prefix)
        return CRITERION_LAYERS.get(criterion)
    return next((layers for start, layers in ITEM_LAYERS if item_id == start or item_id.startswith(start)), None)


def _failing(item: Mapping[str, Any], strict: bool) -> bool:
    return item.get("status") == FAIL or (strict and item.get("status") == UNMEASURED)


def not_healed(items: Sequence[Mapping[str, Any]], layers: Sequence[str], *, prefix: str | None = None,
               strict: bool = False) -> dict[str, tuple[str, ...]]:
    """The failing items no layer of ``layers`` can heal (item id -> the layers that can), so a run of
    those layers does not wait for them. The composite alarm is among them while another alarm is."""
    chosen = set(layers)
    found: dict[str, tuple[str, ...]] = {}
    composite: list[str] = []
    for item in items:
        if not _failing(item, strict):
            continue
        from rollback.model.decide import alarm_criterion

        item_id = str(item["id"])
        if item_id.startswith("alarm.") and alarm_criterion(item_id[len("alarm."):], prefix) == "composite":
            composite.append(item_id)
            continue
        can = healers(item, prefix)
        if can is not None and not chosen & set(can):
            found[item_id] = can
    if any(i.startswith("alarm.") for i in found):
        blockers = tuple(dict.fromkeys(layer for i, can in found.items() if i.startswith("alarm.") for layer in can))
        found.update({item_id: blockers for item_id in composite})
    return found


def heal_command(config: Config, left: Mapping[str, tuple[str, ...]],
                 items: Sequence[Mapping[str, Any]] = ()) -> str:
    """The ``rollback run`` that would heal the items ``left`` (the layer each is about); a failed migration
    alone asks for the migration repair."""
    from rollback.model.decide import order_layers

    layers = order_layers(can[0] for can in left.values() if can)
    command = f"rollback --env {config.env_name} run --layers {','.join(layers)}"
    db_items = [i for i in left if i.startswith("db.")]
    if db_items and db_items == ["db.migrations"]:
        command += " --to db=repair"
    return command


# ------------------------------------------------------------------------------------------ the run


def _expected_version(config: Config, expect_version: str | None, services: Services
                      ) -> tuple[list[str] | None, str | None]:
    if expect_version:
        return [expect_version], None

    try:
        production = signals.production_deployment(config, timeout=10.0, services=services)
    except signals.NotConfigured as exc:
        return None, f"no expected version: pass --expect-version ({exc})"
    except RollbackError as exc:
        return None, f"no expected version: Vercel did not say what production serves ({_clip(exc.message)})"
    deployment = production.deployment or {}
    candidates = [str(v) for v in (deployment.get("commit"), deployment.get("id")) if v]
    return (candidates or None), (None if candidates else "Vercel reports no production deployment")


@dataclass
class VerifyResult:
    document: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.document["ok"])


def verify_once(config: Config, *, services: Services, baseline: str | None = None,
                expect_version: str | None = None, strict: bool = False, since: dt.datetime | None = None,
                skip: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Measure every checklist item once; the Contract C document. ``since``: when the service was
    restored (the CloudFront rates judge the minutes after it). ``skip``: sources not checked here
    (``database``...) and why, each shown as one item *not measured* with that reason (``watch``
    leaves the data integrity to the person who runs the db layer)."""

    if baseline:
        db_commands.resolve_backup(config, baseline)  # an unknown baseline is bad input (exit 2), up front
    started = time.monotonic()
    checked_at = dt.datetime.now(dt.UTC)

    def service() -> list[Item]:
        expected, problem = _expected_version(config, expect_version, services)
        return health_items(config, expected, problem)

    readers: dict[str, Callable[[], list[Item]]] = {
        "service": service,
        "flows": lambda: flow_items(config),
        "smoke": lambda: [smoke_item(config)],
        "database": lambda: database_items(config, services, baseline),
        "performance": lambda: performance_items(config),
        "cloudfront": lambda: cloudfront_items(config, services, since),
        "alarms": lambda: alarm_items(config, services),
    }
    notes: list[str] = []
    for name, why in (skip or {}).items():
        if readers.pop(name, None) is not None:
            notes.append(f"{_GROUP_OF[name].lower()} not checked: {why}")
    direct = signals.served_by_vercel(config, services)
    if direct is not None:
        # No CloudFront in front of the app: its rates are not "not measured", they do not exist here.
        del readers["cloudfront"]
        notes.append(signals.vercel_direct_note(direct))
    if config.env.health.base_url:
        # Imported here, once, before the readers' threads (health, flows, performance): two of them
        # importing httpx at the same moment can get it half-initialised ("partially initialized module
        # 'httpx' has no attribute 'Client'").
        import httpx  # noqa: F401
    budget = HTTP_BUDGET + (config.env.verify.smoke_timeout if config.env.verify.smoke else 0)
    outcomes = signals.gather(readers, budget=budget)
    items: list[Item] = [_unmeasured(name, _GROUP_OF[name], name, why) for name, why in (skip or {}).items()
                         if name in _GROUP_OF]
    for name, outcome in outcomes.items():
        if outcome.ok:
            items.extend(outcome.value)
        elif outcome.problem and outcome.problem.startswith("not configured"):
            items.append(_unmeasured(name, _GROUP_OF[name], name, outcome.problem.removeprefix("not configured: ")))
        else:
            items.append(Item(name, _GROUP_OF[name], name, FAIL, "", "", f"could not measure: {outcome.problem}"))
    items.sort(key=lambda i: GROUPS.index(i.group))
    failed = [i for i in items if i.status == FAIL]
    unmeasured = [i for i in items if i.status == UNMEASURED]
    ok = not failed and not (strict and unmeasured)
    return {"ok": ok, "strict": strict, "env": config.env_name, "checked_at": iso(checked_at),
            "since": iso(since) if since is not None else None,
            "seconds": round(time.monotonic() - started, 3), "items": [i.to_dict() for i in items], "notes": notes,
            "summary": {"pass": sum(1 for i in items if i.status == PASS), "fail": len(failed),
                        "not_measured": len(unmeasured)}}


_GROUP_OF = {"service": "Service health", "flows": "Critical flows", "smoke": "Critical flows",
             "database": "Data integrity", "performance": "Performance", "cloudfront": "Performance",
             "alarms": "Monitoring"}


def verify(config: Config, *, services: Services, baseline: str | None = None, expect_version: str | None = None,
           strict: bool = False,
           wait: float = 0.0, interval: float = 10.0, progress: Callable[[str], None] | None = None,
           incident: str | None = None, record: bool = True, since: dt.datetime | None = None,
           sleep: Callable[[float], None] = time.sleep, skip: Mapping[str, str] | None = None,
           layers: Sequence[str] | None = None) -> VerifyResult:
    """Verify; with ``wait`` re-check until every item passes or the time is up. Records ``verified``
    on the environment's open incident (or ``incident``).

    ``layers`` (a ``run`` of those layers): re-check only for the items they can heal; a failing item no
    layer of them can heal (:func:`not_healed`) is reported at once as not healed by this run, with the
    command that would (``not_healed`` in the document), and is not waited for.

    ``since`` (when the service was restored) defaults to the incident's ``restored`` time (with none
    open, the newest closed incident's last one), so the CloudFront rates judge the minutes after the
    rollback (see the module's docstring)."""

    log = incidents.attach(config, incident) if (record or since is None) else None
    if since is None and log is not None:
        since = parse_ts(read_incident(log.path).timeline().get("restored"))
    if since is None and incident is None and log is None:
        since = incidents.last_restored(config)  # the incident is closed already: since its restore
    if not record:
        log = None
    deadline = time.monotonic() + max(0.0, wait)
    rounds = 0
    said: set[str] = set()
    prefix = config.env.alarms.prefix
    while True:
        rounds += 1
        document = verify_once(config, services=services, baseline=baseline, expect_version=expect_version,
                               strict=strict, since=since, skip=skip)
        outside = not_healed(document["items"], layers, prefix=prefix, strict=strict) if layers else {}
        if outside:
            command = heal_command(config, outside)
            for item in document["items"]:
                if item["id"] in outside:
                    item["not_healed_by_run"] = True
                    item["healed_by"] = list(outside[item["id"]])
            document["not_healed"] = {"layers": list(layers or ()), "items": list(outside), "command": command}
            if progress is not None and set(outside) - said:
                progress(f"not healed by this run (no layer of {', '.join(layers or ())} can fix them): "
                         f"{', '.join(outside)}; '{command}' would")
                said |= set(outside)
        failing = [i["id"] for i in document["items"] if _failing(i, strict) and i["id"] not in outside]
        left = deadline - time.monotonic()
        if document["ok"] or not failing or left <= 0:
            break
        pause = min(interval, left)
        if progress is not None:
            progress(f"{len(failing)} item(s) not passing yet ({', '.join(failing[:4])}"
                     f"{'...' if len(failing) > 4 else ''}); checking again in {pause:.0f} s "
                     f"({left:.0f} s left)")
        sleep(pause)
    document["rounds"] = rounds
    document["incident"] = log.id if log else None
    if log is not None:
        # A verification that left sources out (the watch's, without the database a person restores) is
        # recorded, but it is not the incident's "verified": that needs the whole checklist.
        log.write("verified", ok=document["ok"], strict=strict, document=document,
                  **({"skipped": sorted(skip)} if skip else {}))
    return VerifyResult(document)



# ------------------------------------------------------------------------------------------ as a plan step


def checklist_step(config: Config, *, step_id: str = "checklist", incident: str | None = None,
                   baseline: str | None = None, expect_version: str | None = None, wait: float | None = None,
                   interval: float = 3.0, strict: bool = False, skip: Mapping[str, str] | None = None,
                   layers: Sequence[str] | None = None) -> Step:
    """The post-rollback checklist as the last step of a plan (``rollback run``): re-checked until every
    item passes or ``wait`` (default: the environment's verify target) is up; a failure is exit 3.
    ``skip``: the sources left out, and why (see :func:`verify_once`). With ``layers`` (the run's), only
    the items those layers can heal are waited for."""
    budget = float(wait if wait is not None else config.env.targets.verify * 60)
    shown = f" (rows against {Path(baseline).name.removesuffix('.manifest.json')})" if baseline else ""
    if skip:
        shown += f" (without {', '.join(_GROUP_OF.get(name, name).lower() for name in skip)})"
    scope = (f"the items {', '.join(layers)} can heal" if layers else "every item")
    return Step(id=step_id, action="verify.checklist", target=f"env {config.env_name}", layer="verify",
                summary=f"post-rollback checklist{shown}, re-checked for up to {budget / 60:g} min until {scope} "
                        "pass" + ("" if layers else "es"),
                params={"incident": incident, "baseline": baseline, "expect_version": expect_version,
                        "wait": budget, "interval": interval, "strict": strict,
                        **({"skip": dict(skip)} if skip else {}), **({"layers": list(layers)} if layers else {})})


@dataclass
class VerifyHandlers(StepHandlers):
    """The ``verify.checklist`` step: :func:`verify` with the step's params; records ``verified`` on
    the incident. Its check never finds it done in a fresh run (a verification is a measurement
    of now); resumed, a checklist that passed in the stopped run is done."""

    layer = "verify"


    def check(self, step: Step, ctx: StepContext) -> Check:
        would = f"run the post-rollback checklist of env {self.config.env_name}"
        earlier = ctx.earlier.get(step.id)
        if earlier is not None and earlier.get("ok"):
            return Check(True, dict(earlier), would)
        return Check(False, {"would_check": self.config.env_name}, would)

    @action("verify.checklist", check="check", read_only=True)
    def run(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        p = step.params
        # The rates judge the time since every layer of the run was rolled back: this moment, which is
        # never before the incident's "restored" (the errors of a layer still rolling back after the app
        # came back were real, but they are over; a verification says what the service is like now).
        since = dt.datetime.now(dt.UTC)
        layers = [str(x) for x in p.get("layers") or []]
        result = verify(self.config, services=self.services, baseline=p.get("baseline"),
                        expect_version=p.get("expect_version"),
                        strict=bool(p.get("strict")), wait=float(p.get("wait") or 0.0),
                        interval=float(p.get("interval") or 3.0), progress=ctx.note, incident=p.get("incident"),
                        since=since, sleep=self.sleep, skip=p.get("skip"), layers=layers or None)
        document = result.document
        summary = document["summary"]
        items = [{"id": i["id"], "status": i["status"], "value": i["value"],
                  **({"not_healed_by_run": True} if i.get("not_healed_by_run") else {})} for i in document["items"]]
        outside = document.get("not_healed")
        compact = {"ok": result.ok, "summary": summary, "rounds": document.get("rounds"),
                   "checked_at": document["checked_at"], "since": document.get("since"),
                   "incident": document.get("incident"), "items": items,
                   **({"not_healed": outside} if outside else {})}
        if not result.ok:
            failing = [i for i in document["items"] if _failing(i, bool(document["strict"]))]
            mine = [i for i in failing if not i.get("not_healed_by_run")]
            if outside and not mine:
                names = "; ".join(f"{i['name']} = {i['value'] or i['detail']}" for i in failing[:5]) \
                    + ("; ..." if len(failing) > 5 else "")
                raise ChecksFailed(
                    f"verification: every checklist item the layers of this run ({', '.join(layers)}) can heal "
                    f"passes; {len(failing)} item(s) not healed by this run: {names}",
                    f"roll back what this run did not: '{outside['command']}'", checks=items, document=compact)
            raise ChecksFailed(
                f"verification failed: {len(mine)} checklist item(s) did not pass within "
                f"{float(p.get('wait') or 0):g} s: " + "; ".join(f"{i['name']} = {i['value'] or i['detail']}"
                                                                 for i in mine[:5])
                + (f" (and {len(failing) - len(mine)} not healed by this run: '{outside['command']}' would)"
                   if outside else ""),
                "see every item with 'rollback verify'; once they pass, it records that on the incident",
                checks=items, document=compact)
        return compact
