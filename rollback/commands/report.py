"""``rollback report``: the incident report, the "[RESOLVED]" email and the in-app banner.

The data comes from the incident record (``<root>/.rollback/incidents/<id>.jsonl``,
CONTRACTS.md "Contract B"), the journals of the incident's runs and, where the
config names a CloudFront distribution, CloudWatch's request and 5xx figures
for the incident window. :func:`rollback.model.report.build_report` turns them into
one document; the templates (:mod:`rollback.templating`) lay it out.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.adapters.cloudwatch import CloudFrontMetrics
from rollback.commands.db.salvage import salvage_report
from rollback.context import Services
from rollback.errors import BadInput, OperationFailed, Refused, RollbackError
from rollback.journal import RunRecord, find_run
from rollback.model.incident import read_incident
from rollback.model.report import (
    DEFAULT_TARGETS,
    DataLossFacts,
    Impact,
    build_report,
    data_loss_facts,
    impact_window,
    parse_time,
    reason_text,
    run_actions,
)
from rollback.redact import redact
from rollback.templating import Templates

if TYPE_CHECKING:
    from rollback.config import Config

__all__ = [
    "FORMATS",
    "banner",
    "build",
    "closing_figures",
    "count_rows_only_in_kept",
    "email",
    "find_incident",
    "incidents_dir",
    "load_incident",
    "measure_impact",
    "render",
    "write_output",
]

FORMATS = ("md", "json", "html")
REPORT_TIMEOUT = 5.0  # seconds: what the report measures comes from the short-timeout profile
TEMPLATE_OF = {"md": "report.md.j2", "html": "report.html.j2"}
SUFFIX = ".jsonl"


def incidents_dir(journal_dir: Path) -> Path:
    """``<journal dir>/../incidents``: ``.rollback/incidents`` beside ``.rollback/runs``."""
    return journal_dir.parent / "incidents"


# --------------------------------------------------------------------------- the incident record
# The record is rollback.model.incident's (Contract B); the report reads its read model only.


def _targets(config: Config | None) -> dict[str, float]:
    if config is None:
        return dict(DEFAULT_TARGETS)
    t = config.env.targets
    return {"detect": t.detect * 60, "decide": t.decide * 60, "rollback": t.rollback * 60,
            "verify": t.verify * 60, "total": t.total * 60}


def _opened_env(path: Path) -> str | None:
    try:
        return read_incident(path).env or None
    except BadInput:
        return None


def find_incident(directory: Path, ref: str | None = None, *, env: str | None = None) -> Path:
    """An incident's file by id, unique id prefix or ``last``; with no ``ref`` the newest of ``env``."""
    paths = sorted(directory.glob(f"INC-*{SUFFIX}")) if directory.is_dir() else []
    if not paths:
        raise BadInput(f"no incidents recorded in {directory}",
                       "an incident is opened by 'rollback decide' or 'rollback drill'")
    if ref in (None, "last", "latest"):
        candidates = [p for p in paths if env is None or _opened_env(p) == env] if ref is None else paths
        if not candidates:
            raise BadInput(f"no incident of environment {env!r} in {directory}",
                           "name one (see the files in that directory), or pass --env")
        return candidates[-1]
    exact = directory / f"{ref}{SUFFIX}"
    if exact.is_file():
        return exact
    matches = [p for p in paths if p.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise BadInput(f"no incident {ref!r} in {directory}", "give an incident id such as INC-20261128T094500Z-prod")
    raise BadInput(f"incident id {ref!r} is ambiguous ({len(matches)} incidents match)", "give more of the id")


def load_incident(path: Path, config: Config | None = None) -> dict[str, Any]:
    """The incident's read model (Contract B, :meth:`rollback.model.incident.IncidentRecord.to_dict`) from its file,
    with the environment's targets."""

    return read_incident(path).to_dict(_targets(config))


# --------------------------------------------------------------------------- measurements


def measure_impact(services: Services | None, record: Mapping[str, Any]) -> Impact:
    """CloudFront's requests and 5xx rate over the incident window, or why they were not measured: on the
    distribution ``rollback verify`` reads (``aws.distribution_id``, else the stack outputs), through the
    command's short-timeout profile (``services.quick``: a report must not wait on an unreachable
    CloudWatch). ``services`` is ``None`` where there is no rollback.toml.

    Never fails the report: an unreachable CloudWatch is a line in the report, not an error.
    """
    from rollback.commands.signals import NotConfigured, distribution_id

    window = impact_window(record)
    if window is None:
        return Impact.not_measured("the incident has no start and restore time yet")
    if services is None:
        return Impact.not_measured("no rollback.toml to name the distribution (measured when the incident closes)")
    quick = services.quick(REPORT_TIMEOUT)
    try:
        distribution = distribution_id(services.config, quick)
    except NotConfigured as exc:
        return Impact.not_measured(f"no CloudFront distribution: {exc}")
    try:
        # us-east-1, where CloudFront's metrics live
        return CloudFrontMetrics(quick.cloudwatch().client).impact(distribution, *window)
    except RollbackError as exc:
        return Impact.not_measured(f"CloudWatch: {exc.message}")


def count_rows_only_in_kept(services: Services | None, facts: DataLossFacts) -> Mapping[str, int] | None:
    """Rows (per table) that exist only in the database a swap kept aside (``facts.kept_database``,
    ``<db>_replaced_<time>``): written after the emergency backup and before the swap, and not salvaged
    since. Counted by ``rollback db salvage``'s comparison (primary keys only, no row is read out).
    ``None`` = not counted (no config, no kept database, or the database cannot be reached or the copy
    is gone): the report says so instead of failing."""
    if services is None or services.config.env.database is None or not facts.kept_database:
        return None
    try:
        db = services.quick(REPORT_TIMEOUT).database()
        if facts.live_database and db.target.dbname != facts.live_database:
            return None  # the config points at another database than the one this incident swapped
        found = salvage_report(db, facts.kept_database)
    except (RollbackError, OSError):
        return None
    return {str(t["table"]): int(t["only_in_kept"]) for t in found["tables"] if t.get("salvageable", True)}


# --------------------------------------------------------------------------- the document


def _finite(value: Any) -> Any:
    """Strict JSON: a non-finite float (which a journal could hold) becomes ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _runs_of(record: Mapping[str, Any], journal_dir: Path) -> tuple[list[RunRecord], list[str]]:
    """The journals of the incident's runs that could be read, and the ids of those that could not."""
    runs: list[RunRecord] = []
    missing: list[str] = []
    for run_id in record.get("runs") or []:
        try:
            runs.append(find_run(journal_dir, str(run_id)))
        except (BadInput, OSError):
            missing.append(str(run_id))
    return runs, missing


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def closing_figures(services: Services, journal_dir: Path, record: Mapping[str, Any], *,
                    count_rows: Callable[[Services | None, DataLossFacts], Mapping[str, int] | None] | None = None
                    ) -> dict[str, Any]:
    """What ``rollback incident close`` stores in the ``closed`` event, measured once, so that every later
    rendering of the report shows the same numbers: the impact over the incident window (CloudWatch) and
    the rows only in the database a swap kept aside. Never fails: what cannot be measured says why."""
    runs, _ = _runs_of(record, journal_dir)
    impact = measure_impact(services, record)
    facts = data_loss_facts([run_actions(run) for run in runs])
    counted = (count_rows or count_rows_only_in_kept)(services, facts) if facts.swapped else None
    return {"impact": impact.to_dict(), "rows_only_in_kept": dict(counted) if counted is not None else None,
            "measured_at": _now()}


def _stored_figures(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The figures the incident's ``closed`` event stored (``None`` for an open incident, or one closed
    before close measured them)."""
    closed = next((e for e in record.get("events") or [] if isinstance(e, Mapping) and e.get("event") == "closed"),
                  None)
    figures = closed.get("impact") if closed is not None else None
    return closed if isinstance(figures, Mapping) else None


def build(services: Services | None, journal_dir: Path, ref: str | None = None, *, env: str | None = None,
          measure: bool = True,
          count_rows: Callable[[Services | None, DataLossFacts], Mapping[str, int] | None] | None = None
          ) -> dict[str, Any]:
    """The report's data for incident ``ref`` (default: the newest of ``env``); ``services``: the
    command's (``None`` where there is no rollback.toml: the report is rendered from the journals alone).

    A closed incident's impact and its rows only in the kept database are the figures measured when it
    closed (:func:`closing_figures`), so re-rendering gives the same numbers; an open incident's are
    measured now. ``count_rows`` counts the rows only in a database a swap kept aside (default
    :func:`count_rows_only_in_kept`)."""
    path = find_incident(incidents_dir(journal_dir), ref, env=env)
    record = load_incident(path, services.config if services is not None else None)
    runs, missing = _runs_of(record, journal_dir)
    stored = _stored_figures(record)
    facts = data_loss_facts([run_actions(run) for run in runs])
    if stored is not None:
        impact = Impact.from_dict(stored["impact"])
        kept = stored.get("rows_only_in_kept")
        counted: Mapping[str, int] | None = {str(k): int(v) for k, v in kept.items()} \
            if isinstance(kept, Mapping) else None
    else:
        impact = measure_impact(services, record) if measure else Impact.not_measured("not asked")
        counted = (count_rows or count_rows_only_in_kept)(services, facts) if facts.swapped else None
    data = build_report(record, runs, impact=impact, rows_only_in_kept=counted, missing_runs=missing,
                        generated_at=_now())
    data["summary"]["impact"]["measured_at"] = stored.get("measured_at") if stored is not None else None
    return _finite(redact(data))  # type: ignore[no-any-return]


def render(data: Mapping[str, Any], fmt: str, templates: Templates) -> str:
    """The report as ``md``, ``html`` or ``json`` text."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt not in TEMPLATE_OF:
        raise BadInput(f"unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    return templates.render(TEMPLATE_OF[fmt], {"report": data})


def _clock(moment: dt.datetime, day: str) -> str:
    return moment.strftime("%H:%M") if moment.date().isoformat() == day else moment.strftime("%Y-%m-%d %H:%M")


# What each layer's fault looked like to the people using the service: the customer email speaks of
# these, never of alarms, backups or steps (the report holds the engineering details).
USER_EFFECTS = {
    "app": "some pages and actions of our service failed with an error or were slow",
    "edge": "some pages of our site were delivered incorrectly",
    "assets": "some pages of our site did not load completely or looked broken",
    "infra": "parts of our site were not delivered as they should have been",
    "db": "some of your recent data (such as your account, settings or statistics) was missing or out of date",
}
USER_PARTS = {"app": "the application", "edge": "our site's delivery network", "assets": "our site's files",
              "infra": "our hosting configuration", "db": "the database"}


def _minutes_words(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes < 90:
        return "about a minute" if minutes == 1 else f"about {minutes} minutes"
    hours = round(seconds / 3600, 1)
    return f"about {hours:g} hours"


def _date_words(moment: dt.datetime) -> str:
    return f"{moment.strftime('%A')} {moment.day} {moment.strftime('%B %Y')}"


def _message_context(data: Mapping[str, Any], what: str) -> dict[str, Any]:
    summary = data["summary"]
    start, end = parse_time(summary.get("start_time")), parse_time(summary.get("end_time"))
    if start is None or end is None or not any(r.get("key") == "restored" and r.get("known")
                                               for r in data.get("timeline", [])):
        raise Refused(f"incident {data.get('incident')} has no restore time yet: the {what} says the issue is fixed",
                      "render it after the rollback restored service ('rollback report' shows the timeline)")
    day = start.date().isoformat()
    severity = str(summary.get("severity") or "")
    reasons = [reason_text(r) for r in summary.get("reasons") or []]
    signals = {str(r.get("signal")) for r in summary.get("reasons") or []}
    layers = [str(layer) for layer in (data.get("resolution") or {}).get("layers") or [] if layer in USER_EFFECTS]
    data_touched = "db" in layers or "data_loss" in signals
    effects = [USER_EFFECTS[layer] for layer in layers if layer != "db"]
    if "service_down" in signals:
        effects.insert(0, "our service was unavailable")
    if data_touched:
        effects.append(USER_EFFECTS["db"])
    if not effects:
        effects = [USER_EFFECTS["app"]]
    affected = _join(effects)
    start_clock, end_clock = _clock(start, day), _clock(end, day)
    if start_clock == end_clock:  # within one minute (a drill): the seconds tell them apart
        start_clock, end_clock = start.strftime("%H:%M:%S"), end.strftime("%H:%M:%S")
    lasted = _minutes_words((end - start).total_seconds())
    when = f"On {_date_words(start)}, from {start_clock} to {end_clock} UTC ({lasted})"
    happened = f"A change we released at {start_clock} UTC did not work as intended: {affected}."
    parts = [USER_PARTS[layer] for layer in layers]
    did = ((f"We rolled back {_join(parts)} to the previous version, which worked as expected" if parts else
            "We rolled back to the previous version, which worked as expected")
           + f"; the service was back to normal at {end_clock} UTC.")
    if data_touched:
        to_do = (f"If you signed up, changed your settings or added anything between {start_clock} and {end_clock} "
                 "UTC, please check that it is there and do it again if it is not. If something you had before "
                 f"{start_clock} UTC is still missing, reply to this email and we will put it back for you.")
    elif "assets" in layers or "edge" in layers:
        to_do = ("Nothing. If a page still looks wrong, reload it (your browser may have kept a copy of the "
                 "broken page).")
    else:
        to_do = "Nothing. If something failed for you during that time, trying it again now works."
    verified = bool((data.get("verification") or {}).get("ok"))
    return {"report": data, "drill": bool(data.get("drill")), "incident": data.get("incident"), "date": day,
            "date_words": _date_words(start), "start_time": start_clock, "end_time": end_clock,
            "duration_words": lasted, "when": when, "affected": affected,
            "severity": severity, "reasons": reasons, "what_happened": happened, "what_we_did": did,
            "what_to_do": to_do, "data_touched": data_touched, "verified": verified}


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1] if parts else ""


def email(data: Mapping[str, Any], templates: Templates) -> dict[str, str]:
    """The runbook's "[RESOLVED]" email: ``{"subject", "body"}``. Refused before service is restored."""
    text = templates.render("email.txt.j2", _message_context(data, "[RESOLVED] email"))
    head, _, body = text.lstrip("\n").partition("\n")
    if not head.lower().startswith("subject:"):
        raise BadInput(f"template {templates.origin('email.txt.j2')} must start with a 'Subject: ...' line",
                       "put the subject on the first line, then a blank line, then the body")
    return {"subject": head.split(":", 1)[1].strip(), "body": body.lstrip("\n")}


def banner(data: Mapping[str, Any], feature: str, templates: Templates) -> str:
    """The runbook's in-app banner about ``feature``. Refused before service is restored."""
    if not feature.strip():
        raise BadInput("--banner needs the feature's name", "e.g. --banner 'the integrations page'")
    return templates.render("banner.txt.j2", {**_message_context(data, "banner"), "feature": feature.strip()})


def write_output(text: str, out: Path) -> Path:
    """Write ``text`` to ``out`` atomically (a reader never sees half a report)."""
    out = out.expanduser()
    if out.is_dir():
        raise BadInput(f"--out {out} is a directory", "name a file, e.g. --out incident.md")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OperationFailed(f"cannot write {out}: {exc.strerror}", "check the path and its permissions",
                              details={"path": str(out)}) from exc
    return out
