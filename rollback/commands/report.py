"""``rollback report``: the incident report, the "[RESOLVED]" email and the in-app banner.

The data comes from the incident record (``<root>/.rollback/incidents/<id>.jsonl``,
CONTRACTS.md "Contract B"), the journals of the incident's runs and, where the
config names a CloudFront distribution, CloudWatch's request and 5xx figures
for the incident window. :func:`rollback.report.build_report` turns them into
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

from rollback.adapters.cloudwatch import CLOUDFRONT_REGION, CloudFrontMetrics
from rollback.commands.db_salvage import salvage_report
from rollback.context import Services
from rollback.errors import BadInput, OperationFailed, Refused, RollbackError
from rollback.incident import read_incident
from rollback.journal import RunRecord, find_run
from rollback.redact import redact
from rollback.report import (
    DEFAULT_TARGETS,
    DONE,
    DataLossFacts,
    Impact,
    build_report,
    data_loss_facts,
    impact_window,
    parse_time,
    reason_text,
    run_actions,
)
from rollback.templating import Templates

if TYPE_CHECKING:
    from rollback.config import Config

__all__ = [
    "FORMATS",
    "banner",
    "build",
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
TEMPLATE_OF = {"md": "report.md.j2", "html": "report.html.j2"}
SUFFIX = ".jsonl"

SEVERITY_WORDS = {
    "P0": "A critical incident (service down or data at risk)",
    "P1": "A major incident (a major feature broken or a high error rate)",
    "P2": "A medium incident (a minor feature broken, some errors)",
    "P3": "A minor incident (a non-critical bug)",
}


def incidents_dir(journal_dir: Path) -> Path:
    """``<journal dir>/../incidents``: ``.rollback/incidents`` beside ``.rollback/runs``."""
    return journal_dir.parent / "incidents"


# --------------------------------------------------------------------------- the incident record
# The record is rollback.incident's (Contract B); the report reads its read model only.


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
    """The incident's read model (Contract B, :meth:`rollback.incident.IncidentRecord.to_dict`) from its file,
    with the environment's targets."""

    return read_incident(path).to_dict(_targets(config))


# --------------------------------------------------------------------------- measurements


def measure_impact(config: Config | None, record: Mapping[str, Any], *, cloudwatch: Any = None) -> Impact:
    """CloudFront's requests and 5xx rate over the incident window, or why they were not measured.

    Never fails the report: an unreachable CloudWatch is a line in the report, not an error.
    """
    window = impact_window(record)
    if window is None:
        return Impact.not_measured("the incident has no start and restore time yet")
    distribution = config.env.aws.distribution_id if config is not None else None
    if not distribution:
        return Impact.not_measured("no aws.distribution_id in the config")
    try:
        if cloudwatch is None:
            import boto3  # heavy: only when the report measures impact without an injected client
            from botocore.config import Config as BotoConfig

            # Short and bounded: a report must not wait on an unreachable CloudWatch.
            cloudwatch = boto3.Session(region_name=CLOUDFRONT_REGION).client(
                "cloudwatch", config=BotoConfig(retries={"max_attempts": 2, "mode": "standard"},
                                                connect_timeout=3, read_timeout=10))
        return CloudFrontMetrics(cloudwatch).impact(distribution, *window)
    except RollbackError as exc:
        return Impact.not_measured(f"CloudWatch: {exc.message}")


def count_rows_only_in_kept(config: Config | None, facts: DataLossFacts) -> Mapping[str, int] | None:
    """Rows (per table) that exist only in the database a swap kept aside (``facts.kept_database``,
    ``<db>_replaced_<time>``): written after the emergency backup and before the swap, and not salvaged
    since. Counted by ``rollback db salvage``'s comparison (primary keys only, no row is read out).
    ``None`` = not counted (no config, no kept database, or the database cannot be reached or the copy
    is gone): the report says so instead of failing."""
    if config is None or config.env.database is None or not facts.kept_database:
        return None
    try:
        db = Services(config).database()
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


def build(config: Config | None, journal_dir: Path, ref: str | None = None, *, env: str | None = None,
          measure: bool = True, cloudwatch: Any = None,
          count_rows: Callable[[Config | None, DataLossFacts], Mapping[str, int] | None] | None = None
          ) -> dict[str, Any]:
    """The report's data for incident ``ref`` (default: the newest of ``env``).

    ``count_rows`` counts the rows only in a database a swap kept aside (default
    :func:`count_rows_only_in_kept`)."""
    path = find_incident(incidents_dir(journal_dir), ref, env=env)
    record = load_incident(path, config)
    runs: list[RunRecord] = []
    missing: list[str] = []
    for run_id in record.get("runs") or []:
        try:
            runs.append(find_run(journal_dir, str(run_id)))
        except (BadInput, OSError):
            missing.append(str(run_id))
    impact = measure_impact(config, record, cloudwatch=cloudwatch) if measure else \
        Impact.not_measured("not asked")
    facts = data_loss_facts([run_actions(run) for run in runs])
    counted = (count_rows or count_rows_only_in_kept)(config, facts) if facts.swapped else None
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    data = build_report(record, runs, impact=impact, rows_only_in_kept=counted, missing_runs=missing,
                        generated_at=now)
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
    happened = SEVERITY_WORDS.get(severity, "An incident") + (f" ({severity})" if severity else "") + ": "
    happened += "; ".join(reasons) + "." if reasons else "a bad deployment caused errors."
    resolution = data["resolution"]
    done = [s for run in data.get("actions", []) if not run.get("dry_run") for s in run.get("steps", [])
            if s.get("status") in DONE]
    words = list(resolution.get("layer_words") or [])
    did = ("We rolled back " + (", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0])
           + " to a previous stable version to restore service quickly") if words else \
        "We rolled back to a previous stable version to restore service quickly"
    did += f" ({len(done)} steps, all journaled)." if done else "."
    verified = bool((data.get("verification") or {}).get("ok"))
    return {"report": data, "drill": bool(data.get("drill")), "incident": data.get("incident"), "date": day,
            "start_time": _clock(start, day), "end_time": _clock(end, day), "severity": severity,
            "reasons": reasons, "what_happened": happened, "what_we_did": did, "verified": verified}


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
