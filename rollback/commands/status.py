"""``rollback status``: what is live in every layer, and whether it is healthy, on one screen.

In the spirit of ``kubectl argo rollouts status`` and ``vercel inspect``: one view an on-call engineer
reads first, and the first thing ``rollback decide --live`` and ``rollback drill`` show. Every source
is read concurrently, within a budget (:data:`STATUS_BUDGET`, 2.5 s; ``$ROLLBACK_DECIDE_BUDGET`` replaces it;
beside ``decide --live``, that command's),
with the readers of :mod:`rollback.commands.signals`; a source that is not configured, failed, or did
not answer in time is shown as *not read* with why, never as fine.

Sections (each ``ok``, ``bad``, ``info`` or ``not read``):

``app``       the Vercel production deployment (id, commit, age), whether an instant rollback paused the
              assignment of the production domains, the rolling release, and the health URLs;
``edge``      the Lambda@Edge version each behaviour of the distribution runs, its deploy status, and the
              Lambda@Edge errors alarm;
``assets``    the assets release the distribution serves, and the cache-hit-rate alarm (a broken release
              misses the cache);
``db``        the Prisma migration head, any failed migration, and grow-only tables with fewer rows than
              the newest backup;
``stack``     the stack's last update (version, time, result) and the pins (``edgeFunctionVersion``,
              ``assetsRelease``) that differ from the program's defaults or from what that update deployed;
``alarms``    every rollback alarm's state;
``incident``  the open incident, and the run in progress (the holder of the run lock or the team lease);
``backups``   the newest backup and its standby, the RDS recovery points, each against the RPO target.

The document (``--json``): ``{"env", "checked_at", "seconds", "budget", "ok", "unread", "exit_code",
"sections": [{"name", "status", "summary", "details", "problems"}]}``; ``ok`` is false when a section is
``bad``; ``unread`` lists the sources that timed out or failed (a source that is not configured is not
one of them), and the exit code is 3 for a BAD section, else 1 when a source could not be read (a status
that read nothing must not say healthy), else 0.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rollback.commands import signals as sources
from rollback.model.decide import CRITERION_LAYERS, alarm_criterion

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.context import Services

__all__ = ["BEYOND_DECIDE", "SECTIONS", "Section", "StatusReport", "from_decide", "read_status", "status_from",
           "status_lines", "status_readers"]

SECTIONS = ("app", "edge", "assets", "db", "stack", "alarms", "incident", "backups")
OK, BAD, INFO, NOT_READ = "ok", "bad", "info", "not read"
PINS = ("edgeFunctionVersion", "assetsRelease")
PREFIX = "status."  # the readers' names when they run beside decide's
# Seconds for every source together: the screen must print within 3 s, and it reads more than decide
# does (the recovery points); ``$ROLLBACK_DECIDE_BUDGET`` replaces it as it does decide's.
STATUS_BUDGET = 2.5


@dataclass
class Section:
    name: str
    status: str = INFO
    summary: str = ""
    details: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # sources not read, and why

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "details": list(self.details),
                "problems": list(self.problems)}


@dataclass
class StatusReport:
    env: str
    checked_at: str
    seconds: float
    budget: float
    sections: list[Section]

    @property
    def ok(self) -> bool:
        return not any(s.status == BAD for s in self.sections)

    @property
    def unread(self) -> list[str]:
        """The sources that could not be read (timed out, failed): not those that are not configured."""
        return [p for s in self.sections for p in s.problems if ": not configured: " not in p]

    @property
    def exit_code(self) -> int:
        """3 a section is BAD; else 1 a source could not be read (healthy cannot be said); else 0."""
        from rollback.errors import EXIT_CHECKS_FAILED, EXIT_FAILED, EXIT_OK

        return EXIT_CHECKS_FAILED if not self.ok else (EXIT_FAILED if self.unread else EXIT_OK)

    def section(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "checked_at": self.checked_at, "seconds": round(self.seconds, 3),
                "budget": self.budget, "ok": self.ok, "unread": self.unread, "exit_code": self.exit_code,
                "sections": [s.to_dict() for s in self.sections]}

    def lines(self) -> list[str]:
        return status_lines(self.to_dict())


def status_lines(document: Mapping[str, Any]) -> list[str]:
    """The screen, from the status document: one line per section (name, verdict, what is live), its
    details indented below."""
    verdicts = {OK: "ok", BAD: "BAD", INFO: "-", NOT_READ: "not read"}
    checked = str(document.get("checked_at") or "")
    out = [f"status of env {document.get('env')} at {checked[11:19]} UTC (read in "
           f"{float(document.get('seconds') or 0):.1f} s)"]
    for section in document.get("sections") or []:
        status = str(section.get("status"))
        out.append(f"  {section.get('name')!s:<9} {verdicts.get(status, status):<9} {section.get('summary')}")
        out += [f"  {'':<9} {'':<9}   {line}" for line in section.get("details") or []]
        out += [f"  {'':<9} {'':<9}   not read: {line}" for line in section.get("problems") or []]
    return out


# ------------------------------------------------------------------------------------------ readers


def _rolling(config: Config, timeout: float, services: Services) -> dict[str, Any] | None:
    from rollback.commands.app.rolling import rolling_status

    return rolling_status(config, sources.vercel_client(config, timeout=timeout, services=services))


@dataclass(frozen=True)
class StackState:
    stack: str
    latest: dict[str, Any] | None  # version, kind, result, at, message, git_head
    pins: list[dict[str, Any]]  # key, value (the stack file), deployed (the last update), default (the program's)
    file: str
    locks: list[str]


def _program_defaults(project_dir: Any) -> dict[str, Any]:
    """The ``config:`` defaults ``Pulumi.yaml`` declares (``edgeFunctionVersion: {default: ""}``)."""
    from ruamel.yaml import YAML

    for name in ("Pulumi.yaml", "Pulumi.yml"):
        path = project_dir / name
        if path.is_file():
            document = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
            declared = document.get("config") if isinstance(document, Mapping) else None
            return {str(k): v.get("default") for k, v in (declared or {}).items()
                    if isinstance(v, Mapping) and "default" in v}
    return {}


def stack_state(config: Config, *, timeout: float, services: Services) -> StackState:
    """The stack's last update and its pins, from its self-managed backend and ``Pulumi.<stack>.yaml``."""
    from rollback.adapters.pulumi_backend import is_diy_url, open_backend
    from rollback.adapters.pulumi_project import resolve_stack
    from rollback.adapters.stack_config import qualify_key, read_stack_config, stack_config_path

    settings = config.env.pulumi
    if settings is None:
        raise sources.NotConfigured(f"[env.{config.env_name}.pulumi] is not set")
    url = settings.backend_url or config.environ.get("PULUMI_BACKEND_URL")
    if not url or not is_diy_url(url):
        raise sources.NotConfigured("the stack is read only from a self-managed backend (pulumi.backend_url "
                                    "file:// or s3://) within the budget; 'rollback infra history' reads others")
    project_dir = config.resolve_path(settings.project_dir)
    ref = resolve_stack(settings.stack, project_dir, project=settings.project)
    s3_client = services.quick(timeout).aws_client("s3") if url.startswith("s3://") else None
    backend = open_backend(url, base_dir=config.root, s3_client=s3_client, region=config.env.aws.region)
    versions = backend.history(ref.project, ref.name, newest=1)
    last = versions[-1] if versions else None
    latest = None
    if last is not None:
        stamp = last.end_time or last.start_time
        latest = {"version": last.version, "kind": last.kind, "result": last.result, "message": last.message,
                  "at": dt.datetime.fromtimestamp(stamp, dt.UTC) if stamp else None, "git_head": last.git_head}
    path = stack_config_path(project_dir, ref.name)
    in_file = read_stack_config(path)
    defaults = _program_defaults(project_dir)
    pins = []
    for key in PINS:
        qualified = qualify_key(key, ref.project)
        deployed = last.config.get(qualified) if last is not None else None
        pins.append({"key": key, "value": in_file.get(qualified), "deployed": deployed.value if deployed else None,
                     "default": defaults.get(key), "declared": key in defaults})
    locks = [f"{lock.username or '?'}@{lock.hostname or '?'} (pid {lock.pid or '?'})"
             for lock in backend.locks(ref.project, ref.name)]
    return StackState(ref.name, latest, pins, str(path), locks)


@dataclass(frozen=True)
class IncidentState:
    incident: dict[str, Any] | None
    run: str | None  # who holds the run lock or the team lease, in words; None: no run in progress


def _local_holder(config: Config) -> str | None:
    """The holder of this environment's run lock on this machine, while its process lives."""
    from rollback.lock import describe_holder, lock_path

    path = lock_path(config.identity)
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return None  # no lock file: released (the holder removes it) or never taken
    if not isinstance(holder, dict):
        return None
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # left by a killed run: the kernel released its lock
        except PermissionError:
            pass  # alive, someone else's
    return describe_holder(holder)


def _team_holder(config: Config) -> str | None:
    from rollback.lock import TeamLock, describe_holder

    settings = config.lock_settings
    if not settings.url:
        return None
    team = TeamLock(settings.url, settings.ttl)
    found = team.store().read(team.key("locks", f"{config.env_name}.json"))
    if found is None:
        return None
    state = "expired: the next run takes it over" if found.expired(dt.datetime.now(dt.UTC)) else "held"
    return f"team lease {state}: {describe_holder(found.body)}"


def incident_state(config: Config) -> IncidentState:
    from rollback.commands.incident import directory
    from rollback.model.incident import open_incident_of

    record = open_incident_of(directory(config), config.env_name)
    holders = [h for h in (_local_holder(config), _team_holder(config)) if h]
    return IncidentState(record.summary() if record is not None else None, "; ".join(holders) or None)


def backup_state(config: Config, services: Services) -> dict[str, Any]:
    """The recovery points (``rollback db rpo``) and the newest backup's standby."""
    from rollback.commands.db.backup import standbys
    from rollback.commands.db.rpo import rpo

    if not config.database_url():
        raise sources.NotConfigured(f"{config.env.database.url_env} is not set")
    document = rpo(config, services=services)
    logical = next((p for p in document["points"] if p["kind"] == "logical backup"), None)
    standby = None
    if logical is not None and logical.get("name"):
        standby = standbys(config, connect_timeout=2, services=services).get(str(logical["name"]))
    return {**document, "standby": standby}


def status_readers(config: Config, *, timeout: float, services: Services,
                   only: tuple[str, ...] | None = None) -> dict[str, Callable[[], Any]]:
    """Every source of the status screen (or ``only`` those), by name (:data:`PREFIX` + source), for
    :func:`sources.gather`."""
    readers: dict[str, Callable[[], Any]] = {
        "vercel": lambda: sources.production_deployment(config, timeout=timeout, services=services),
        "rolling": lambda: _rolling(config, timeout, services),
        "health": lambda: sources.probe_health(config, timeout=timeout),
        "cdn": lambda: sources.distribution_state(config, timeout=timeout, services=services),
        "alarms": lambda: sources.read_alarms(config, timeout=timeout, services=services),
        "migrations": lambda: sources.migration_state(config, timeout=timeout, services=services),
        "data": lambda: sources.grow_only_losses(config, timeout=timeout, services=services),
        "stack": lambda: stack_state(config, timeout=timeout, services=services),
        "incident": lambda: incident_state(config),
        "backups": lambda: backup_state(config, services),
    }
    return {PREFIX + name: reader for name, reader in readers.items() if only is None or name in only}


# The sources ``decide --live`` does not read itself; the others' outcomes it shares (:func:`from_decide`).
BEYOND_DECIDE = ("stack", "incident", "backups")


def from_decide(outcomes: Mapping[str, sources.Outcome]) -> dict[str, sources.Outcome]:
    """The status screen's sources from ``decide --live``'s outcomes (the same readers, read once)."""
    shared = {"vercel": "vercel", "health": "health", "alarms": "alarms", "migrations": "migrations",
              "data": "data"}
    found = {PREFIX + mine: outcomes[theirs] for mine, theirs in shared.items() if theirs in outcomes}
    canary = outcomes.get("canary")
    if canary is not None:
        release = canary.value.release if canary.ok else None
        found[PREFIX + "rolling"] = sources.Outcome(
            value={**release.to_dict(), "line": release.describe()} if release is not None else None,
            problem=canary.problem, seconds=canary.seconds)
    cdn = outcomes.get("changes.cdn")
    if cdn is not None:
        state = cdn.value.state if cdn.ok else None
        found[PREFIX + "cdn"] = sources.Outcome(value=state, seconds=cdn.seconds,
                                                problem=cdn.problem if state is None else None)
    return found


# ------------------------------------------------------------------------------------------ sections


def _ago(moment: dt.datetime | None, now: dt.datetime) -> str:
    from rollback.model.report import format_seconds

    if moment is None:
        return "at an unknown time"
    seconds = (now - moment).total_seconds()
    return f"{format_seconds(abs(seconds))} {'ago' if seconds >= 0 else 'from now'}"


def _not_read(section: Section, source: str, outcome: sources.Outcome) -> None:
    problem = str(outcome.problem)
    section.problems.append(f"{source}: {problem}")


def _one_source(name: str, status: str, outcome: sources.Outcome, source: str, what: str) -> Section:
    """A section read from one source: ``status`` (to be refined) when it was read, else ``not read``."""
    section = Section(name, status)
    if not outcome.ok:
        _not_read(section, source, outcome)
        section.status, section.summary = NOT_READ, what
    return section


def _alarm_sections(outcome: sources.Outcome) -> dict[str, list[tuple[str, str]]]:
    """Section -> [(alarm name, state)] of the rollback alarms, each in the section of its layer."""
    out: dict[str, list[tuple[str, str]]] = {}
    if not outcome.ok:
        return out
    wanted, found = outcome.value
    for alarm in found:
        criterion = "composite" if alarm.composite else alarm_criterion(alarm.name, wanted.prefix)
        layers = CRITERION_LAYERS.get(criterion)
        if layers:
            out.setdefault(layers[0], []).append((alarm.name, alarm.state))
    return out


def _with_alarms(section: Section, alarms: list[tuple[str, str]]) -> None:
    for name, state in alarms:
        section.details.append(f"alarm {name}: {state}")
        if state == "ALARM":
            section.status = BAD


def _app(get: Callable[[str], sources.Outcome], now: dt.datetime, alarms: list[tuple[str, str]]) -> Section:
    section = Section("app", OK)
    vercel, rolling, health = get("vercel"), get("rolling"), get("health")
    if vercel.ok:
        production = vercel.value
        deployment = production.deployment or {}
        commit = str(deployment.get("commit") or "")[:12] or "no commit"
        message = f" {deployment.get('commit_message')!r}" if deployment.get("commit_message") else ""
        section.summary = (f"production {deployment.get('id') or 'none'}{message} (commit {commit}, "
                           f"deployed {_ago(production.created, now)})")
        if deployment.get("url"):
            section.details.append(f"url {deployment['url']}")
        section.details.append("production domains: auto-assignment paused by an instant rollback (new "
                               "deployments do not go live until 'rollback app undo' or a promote)"
                               if production.rollback_active else
                               "production domains: assigned to each new production deployment")
    else:
        _not_read(section, "Vercel", vercel)
    if rolling.ok and rolling.value:
        section.details.append(f"rolling release: {rolling.value.get('line')}")
    elif rolling.ok:
        section.details.append("rolling release: none")
    elif vercel.ok:
        _not_read(section, "rolling release", rolling)
    if health.ok:
        failing = [r for r in health.value if not r.ok]
        for result in health.value:
            section.details.append(f"health {result.name}: {result.detail}")
        if failing:
            section.status = BAD
    else:
        _not_read(section, "health", health)
    _with_alarms(section, alarms)
    if not vercel.ok and not health.ok:
        section.status = NOT_READ
        section.summary = section.summary or "production not read"
    return section


def _edge(get: Callable[[str], sources.Outcome], now: dt.datetime, alarms: list[tuple[str, str]]) -> Section:
    cdn = get("cdn")
    section = _one_source("edge", OK, cdn, "CloudFront", "distribution not read")
    if cdn.ok:
        state: sources.DistributionState = cdn.value
        served = ", ".join(state.served) or "no Lambda@Edge function"
        section.summary = f"distribution {state.id} ({state.status}) runs {served}"
        for behaviour, items in state.edge:
            section.details.append(f"behaviour {behaviour}: {', '.join(items) or 'no edge function'}")
        section.details.append(f"last modified {_ago(state.modified, now)}")
    _with_alarms(section, alarms)
    return section


def _assets(get: Callable[[str], sources.Outcome], alarms: list[tuple[str, str]]) -> Section:
    cdn = get("cdn")
    section = _one_source("assets", OK, cdn, "CloudFront", "served release not read")
    if cdn.ok:
        state: sources.DistributionState = cdn.value
        if state.assets_bucket is None:
            section.status, section.summary = INFO, "aws.assets_bucket is not set: the release served is not known"
        elif state.assets_prefix is None:
            section.summary = f"no origin of the distribution serves s3://{state.assets_bucket}"
        else:
            release = state.assets_prefix.rstrip("/").rsplit("/", 1)[-1] or "(the bucket's root)"
            section.summary = f"release {release}: s3://{state.assets_bucket}/{state.assets_prefix}"
    _with_alarms(section, alarms)
    return section


def _db(get: Callable[[str], sources.Outcome], alarms: list[tuple[str, str]]) -> Section:
    section = Section("db", OK)
    migrations, data = get("migrations"), get("data")
    if migrations.ok:
        state: sources.MigrationState = migrations.value
        if not state.managed:
            section.summary = "not managed by Prisma Migrate (no _prisma_migrations)"
        else:
            section.summary = f"Prisma head {state.head or 'none applied'}"
            if state.failed:
                section.status = BAD
                section.details.append(f"failed migration(s): {', '.join(state.failed)}")
            else:
                section.details.append("no failed migration")
    else:
        _not_read(section, "database", migrations)
        section.status, section.summary = NOT_READ, "database not read"
    if data.ok and data.value is not None:
        for loss in data.value:
            section.details.append(f"{loss.line()}{'' if loss.crosses else ' (below the data-loss threshold)'}")
            if loss.crosses:
                section.status = BAD
        if not data.value:
            section.details.append("no grow-only table lost rows since the newest backup")
    elif not data.ok and migrations.ok:
        _not_read(section, "row counts", data)
    _with_alarms(section, alarms)
    return section


def _stack(get: Callable[[str], sources.Outcome], now: dt.datetime) -> Section:
    found = get("stack")
    section = _one_source("stack", OK, found, "stack", "stack not read")
    if not found.ok:
        return section
    state: StackState = found.value
    latest = state.latest
    if latest is None:
        section.summary = f"stack {state.stack}: no update yet"
    else:
        section.summary = (f"stack {state.stack} v{latest['version']}: {latest['kind']} {latest['result']} "
                           f"{_ago(latest['at'], now)} ({latest['message'] or 'no message'!r})")
        if latest["result"] not in ("succeeded", "in-progress"):
            section.status = BAD
    for pin in state.pins:
        value, deployed, default = pin["value"], pin["deployed"], pin["default"]
        if value is None and deployed is None:
            continue
        default_text = ("the newest published version" if pin["key"] == "edgeFunctionVersion" else repr(default)) \
            if pin["declared"] else "none: required"
        shown = f"pin {pin['key']} = {value if value not in (None, '') else '(unset)'}"
        if pin["declared"] and str(value or "") == str(default or ""):
            continue  # the program's default: not a pin
        shown += f" (program default: {default_text})"
        if latest is not None and str(value or "") != str(deployed or ""):
            shown += (f"; not deployed yet: v{latest['version']} deployed {deployed or '(unset)'}, the next "
                      "pulumi up applies it")
        section.details.append(shown)
    section.details += [f"locked by {lock}: an update is running" for lock in state.locks]
    return section


def _alarms(get: Callable[[str], sources.Outcome]) -> Section:
    found = get("alarms")
    section = _one_source("alarms", OK, found, "CloudWatch", "rollback alarms not read")
    if not found.ok:
        return section
    wanted, alarms = found.value
    firing = [a.name for a in alarms if a.state == "ALARM"]
    section.summary = (f"{len(firing)} of {len(alarms)} rollback alarm(s) in ALARM" if firing else
                       f"all {len(alarms)} rollback alarm(s) OK" if alarms else
                       f"none of the rollback alarms ({wanted.origin}) exist")
    if firing:
        section.status = BAD
        section.details.append("in ALARM: " + ", ".join(firing))
    other = [f"{a.name} ({a.state})" for a in alarms if a.state not in ("OK", "ALARM")]
    if other:
        section.details.append("no verdict yet: " + ", ".join(other))
    return section


def _incident(get: Callable[[str], sources.Outcome], now: dt.datetime) -> Section:
    from rollback.model.report import parse_time

    found = get("incident")
    section = _one_source("incident", INFO, found, "incident record", "not read")
    if not found.ok:
        return section
    state: IncidentState = found.value
    incident = state.incident
    if incident is None:
        section.summary = "none open"
    else:
        drill = " (drill)" if incident.get("drill") else ""
        layers = ", ".join(incident.get("layers") or []) or "no layers decided"
        section.summary = (f"open: {incident['id']}{drill}, severity {incident.get('severity') or 'not given'}, "
                           f"{layers}, detected {_ago(parse_time(incident.get('detected')), now)}")
        if incident.get("verified"):
            section.details.append(f"verified at {incident['verified']}")
    section.details.append(f"run in progress: {state.run}" if state.run else "no run in progress")
    return section


def _backups(get: Callable[[str], sources.Outcome]) -> Section:
    from rollback.model.report import format_seconds

    found = get("backups")
    section = _one_source("backups", INFO, found, "backups", "not read")
    if not found.ok:
        return section
    document = found.value
    target = format_seconds(float(document["target_seconds"]))
    newest = document.get("newest")
    section.summary = (f"newest recovery point {newest['kind']} {newest.get('name') or ''}".rstrip() +
                       f", {format_seconds(newest['age_seconds'])} old (RPO target {target}: "
                       f"{'within' if document['ok'] else 'none within'})") if newest else \
        f"no recovery point (RPO target {target})"
    for point in document["points"]:
        age = f"{format_seconds(point['age_seconds'])} old" if point.get("age_seconds") is not None else \
            point.get("detail") or "none"
        name = f" {point['name']}" if point.get("name") else ""
        verdict = " (within the RPO)" if point.get("within_target") else ""
        section.details.append(f"{point['kind']}{name}: {age}{verdict}")
    standby = document.get("standby")
    if standby:
        section.details.append(f"standby {standby['standby']}: fresh" if standby.get("standby") and
                               not standby.get("reason") else f"standby: {standby.get('reason')}")
    elif any(p["kind"] == "logical backup" and p.get("name") for p in document["points"]):
        section.details.append("standby: none staged ('rollback db backup --stage')")
    return section


def status_from(config: Config, outcomes: Mapping[str, sources.Outcome], *, seconds: float, budget: float,
                now: dt.datetime | None = None) -> StatusReport:
    """The status screen from the readers' outcomes (named with :data:`PREFIX`)."""
    moment = now or dt.datetime.now(dt.UTC)

    def get(name: str) -> sources.Outcome:
        return outcomes.get(PREFIX + name) or sources.Outcome(problem="not read")

    alarms = _alarm_sections(get("alarms"))
    sections = [_app(get, moment, alarms.get("app", [])), _edge(get, moment, alarms.get("edge", [])),
                _assets(get, alarms.get("assets", [])), _db(get, alarms.get("db", [])), _stack(get, moment),
                _alarms(get), _incident(get, moment), _backups(get)]
    checked = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return StatusReport(config.env_name, checked, seconds, budget, sections)


def read_status(config: Config, *, budget: float | None = None, services: Services) -> StatusReport:
    """Read every source concurrently within ``budget`` seconds (default :data:`STATUS_BUDGET`, or
    ``$ROLLBACK_DECIDE_BUDGET``) and build the status screen."""
    from rollback.commands.budget import live_budget

    chosen = live_budget(budget, default=STATUS_BUDGET)
    started = time.monotonic()
    outcomes = sources.gather(status_readers(config, timeout=max(0.3, chosen - 0.2), services=services),
                              budget=chosen)
    return status_from(config, outcomes, seconds=time.monotonic() - started, budget=chosen)
