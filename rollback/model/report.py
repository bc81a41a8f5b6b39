"""The incident report as data: built from the incident record and the run journals.

Pure: no I/O here. :func:`build_report` takes the incident record's read model
(``IncidentRecord.to_dict()``, CONTRACTS.md "Contract B"), the journals of the
incident's runs (:class:`rollback.journal.RunRecord`), the impact measured in
CloudWatch (or why it was not) and, when known, the rows that exist only in a
database a swap set aside. It returns one JSON-ready ``dict`` that every
rendering (Markdown, HTML, JSON, the email and the banner) reads; the
templates only lay it out.

The structure follows the runbook's "Incident Report Template": summary,
timeline, root cause (left for people), impact, resolution (every action with
its result), verification, data loss, metrics against the targets, prevention,
action items and lessons learned (left for people).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.journal import RunRecord
from rollback.plan import finished_word

__all__ = [
    "ACTION_ITEMS",
    "PHASES",
    "REPORT_FORMAT",
    "TIMELINE",
    "DataLossFacts",
    "Impact",
    "build_report",
    "data_loss_facts",
    "format_seconds",
    "metric_lines",
    "metric_rows",
    "phase_seconds",
    "reason_sentence",
    "reason_text",
    "run_actions",
    "timeline_bar",
    "timeline_details",
    "timeline_lines",
    "timeline_rows",
]

REPORT_FORMAT = "rollback.report/1"

# (key in the record's timeline, label) in the order of the runbook's template.
TIMELINE: tuple[tuple[str, str], ...] = (
    ("deployment_initiated", "Deployment initiated"),
    ("detected", "Issue detected"),
    ("decided", "Rollback decision made"),
    ("initiated", "Rollback initiated"),
    ("restored", "Service restored"),
    ("verified", "Verification complete"),
)

# (phase, label, start event, end event): CONTRACTS.md "Contract B" metrics.
PHASES: tuple[tuple[str, str, str, str], ...] = (
    ("detect", "Time to detect", "deployment_initiated", "detected"),
    ("decide", "Time to decide", "detected", "decided"),
    ("rollback", "Time to roll back", "decided", "restored"),
    ("verify", "Time to verify", "restored", "verified"),
    ("total", "Total recovery time", "detected", "verified"),
)

DEFAULT_TARGETS = {"detect": 300.0, "decide": 120.0, "rollback": 600.0, "verify": 300.0, "total": 900.0}

# The runbook's checklist; people tick them off.
ACTION_ITEMS: tuple[str, ...] = (
    "Fix underlying bug",
    "Add test coverage",
    "Update monitoring",
    "Improve deployment process",
    "Update documentation",
)

# A step's statuses that mean its effect is there (a wait that found its work over is "finished").
DONE = ("done", "already done", "finished")

LAYER_WORDS = {
    "app": "the application",
    "edge": "the edge function",
    "assets": "the static assets",
    "infra": "the infrastructure",
    "db": "the database",
    "verify": "verification",
    "core": "coordination",
}


# --------------------------------------------------------------------------- small helpers


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO-8601 timestamp (``Z`` or offset) as an aware UTC datetime; ``None`` if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def format_seconds(seconds: float | None) -> str:
    """``42 s``, ``3 min 10 s``, ``1 h 2 min``; ``not measured`` for ``None``."""
    if seconds is None:
        return "not measured"
    negative = seconds < 0
    whole = round(abs(seconds))
    if whole < 60:
        text = f"{abs(seconds):.1f} s" if abs(seconds) < 10 and abs(seconds) != whole else f"{whole} s"
    elif whole < 3600:
        minutes, rest = divmod(whole, 60)
        text = f"{minutes} min" + (f" {rest} s" if rest else "")
    else:
        hours, rest = divmod(whole, 3600)
        text = f"{hours} h" + (f" {rest // 60} min" if rest // 60 else "")
    return f"-{text}" if negative else text


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def reason_text(reason: Mapping[str, Any]) -> str:
    """One decision reason in words: ``5xx error rate: 12.5% (threshold 5%): alarm in ALARM``."""
    unit = str(reason.get("unit") or "")

    def with_unit(value: Any) -> str:
        text = _plain(value)
        if not unit:
            return text
        return f"{text}{unit}" if unit in ("%", "s", "ms") else f"{text} {unit}"

    text = str(reason.get("signal") or "signal")
    if reason.get("value") is not None:
        text += f": {with_unit(reason['value'])}"
    if reason.get("threshold") is not None:
        text += f" (threshold {with_unit(reason['threshold'])})"
    if reason.get("detail"):
        text += f": {reason['detail']}"
    return text


def _sentence(text: str) -> str:
    text = " ".join(text.split()).rstrip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _alarm_since(detail: str) -> tuple[str, str]:
    """``("rollback-sandbox-cdn-5xx-error-rate", " since 04:01:22 UTC")`` from an alarm reason's detail."""
    name, _, since = detail.partition(" since ")
    moment = parse_time(since.strip()) if since else None
    return name.strip(), (f" since {moment.strftime('%H:%M:%S')} UTC" if moment is not None else "")


# A decision reason's signal -> its sentence ({measured}/{limit} with units, {said}: " (detail)",
# {colon}: ": detail").
_SENTENCES = {
    "rows_fewer": "rows were missing compared with the backup, without evidence of data loss{said}",
    "error_rate": "the error rate was {measured}, above the {limit} threshold{said}",
    "canary_error_rate": "the canary failed {measured} of its own requests, above {limit}{said}",
    "p95_ms": "responses were slow: p95 {measured}, above {limit}{said}",
    "service_down": "the service was down{said}",
    "health_failing": "some health checks failed{colon}",
    "failed_migration": "a database migration failed{colon}",
    "feature_broken": "a {value} feature was broken",
    "security_breach": "a security breach was reported{said}",
    "db_connections_exhausted": "the database connections were exhausted{said}",
    "cosmetic": "a cosmetic issue (UI, non-critical bug)",
    "operator": "the operator chose the layers to roll back: {value}",
}


def reason_sentence(reason: Mapping[str, Any]) -> str:
    """One decision reason as a sentence for people (the report, ``incident show``):
    ``User has 110 rows, 10 fewer than backup app-... (8.3 %; ...).``, ``The error rate was 30.05 %, above the
    5 % threshold (...)``, ``Rollback alarm rollback-cdn-5xx-error-rate (CloudFront 5xx error rate) was in
    ALARM since 04:01:22 UTC.``"""
    signal = str(reason.get("signal") or "")
    value = reason.get("value")
    detail = str(reason.get("detail") or "")
    why = str(reason.get("why") or "")
    unit = str(reason.get("unit") or "")
    threshold = str(reason.get("threshold") or "").removeprefix("> ").strip()
    measured = f"{_plain(value)} {unit}".strip() if value is not None else ""
    limit = f"{threshold} {unit}".strip()
    if reason.get("source") == "flag" and (not detail or detail == why):
        detail = f"reported with --{signal.replace('_', '-')}"  # what the operator saw, not a measurement
    said = f" ({detail})" if detail and detail != why else ""
    if signal.startswith("alarm."):
        name, since = _alarm_since(detail)
        what = why.removeprefix("rollback alarm: ").split(" (")[0] if why.startswith("rollback alarm") else ""
        return _sentence(f"rollback alarm {name}{f' ({what})' if what else ''} was in {value}{since}")
    if signal == "data_loss":
        return _sentence(f"data was being lost: {detail}" if detail and detail != why and not said.startswith(" (rep")
                         else f"data was being lost{said}")
    template = _SENTENCES.get(signal)
    if template is not None:
        colon = f": {detail}" if detail and detail != why else ""
        return _sentence(template.format(measured=measured, limit=limit, said=said, colon=colon,
                                         value=_plain(value)))
    head = why or signal.replace("_", " ")
    return _sentence(f"{head}: {measured}{said}" if measured else f"{head}{said}")


# --------------------------------------------------------------------------- metrics


def phase_seconds(timeline: Mapping[str, Any]) -> dict[str, float | None]:
    """The phase durations (Contract B's formulas) computed from the timeline's timestamps."""
    moments = {key: parse_time(timeline.get(key)) for key in {p[2] for p in PHASES} | {p[3] for p in PHASES}}
    out: dict[str, float | None] = {}
    for phase, _label, start, end in PHASES:
        a, b = moments[start], moments[end]
        out[phase] = round((b - a).total_seconds(), 3) if a is not None and b is not None else None
    return out


def metric_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rollback metrics of an incident record (its read model) against its targets: one row per phase
    with ``label``, ``text`` (``1 min 4 s``), ``target_text`` and ``verdict`` (``met``, ``missed``,
    ``not measured``)."""
    computed = phase_seconds(record.get("timeline") or {})
    recorded = record.get("metrics") or {}
    targets = {**DEFAULT_TARGETS, **{k: float(v) for k, v in (record.get("targets") or {}).items()
                                     if _number(v) is not None}}
    rows = []
    for phase, label, start, end in PHASES:
        seconds = _number(recorded.get(phase))
        if seconds is None:
            seconds = computed[phase]
        target = targets[phase]
        met = None if seconds is None else seconds <= target
        rows.append({
            "phase": phase, "label": label, "from": start, "to": end,
            "seconds": seconds, "text": format_seconds(seconds),
            "target_seconds": target, "target_text": f"< {format_seconds(target)}",
            "met": met, "verdict": "not measured" if met is None else ("met" if met else "missed"),
        })
    return rows


# The timeline picture's text: 11 px sans-serif. A label's box is estimated at CHAR_WIDTH per character
# (wider than any common sans-serif's average, digits included) so that boxes laid out here never overlap
# once a browser draws them (tests/report/test_report_chromium.py measures them in headless Chromium).
FONT_PX = 11.0
CHAR_WIDTH = 6.9
LANE = 15.0  # one row of labels
GAP = 8.0  # between two labels in one row
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH + 2.0


def _tick_label(seconds: float) -> str:
    if seconds == 0:
        return "0"
    return format_seconds(seconds)


class _Lanes:
    """Rows of labels: each label takes the first row where it overlaps no other (greedy, left to right)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def place(self, x0: float, x1: float) -> int:
        for index, end in enumerate(self.ends):
            if x0 >= end + GAP:
                self.ends[index] = x1
                return index
        self.ends.append(x1)
        return len(self.ends) - 1


def _fit(center: float, width: float, low: float, high: float) -> float:
    """The left edge of a ``width`` wide label centred on ``center``, moved to stay within [low, high]."""
    x0 = center - width / 2
    return max(low, min(x0, high - width))


def timeline_bar(record: Mapping[str, Any], metrics: Sequence[Mapping[str, Any]], *, width: float = 720.0,
                 left: float = 16.0, right: float = 16.0) -> dict[str, Any]:
    """Geometry of the timeline drawn as one bar, in user units of an SVG ``viewBox`` ``width`` wide.

    The axis is scaled to the incident (from the deployment, or the detection when the deployment time is
    unknown, to its last recorded moment), not to the targets: each phase is a segment, each phase's target
    a marker where the phase had to end, and the total target a marker ``total`` after detection; a target
    beyond the axis is listed at its right end, "off scale". Every label (``labels``: ``x`` is its left
    edge, ``y`` its baseline, ``text``, ``kind``) is laid out here in rows so that none overlaps another
    or leaves the picture; ``height`` follows the rows used."""
    timeline = record.get("timeline") or {}
    moments = {key: parse_time(timeline.get(key)) for key, _ in TIMELINE}
    origin = moments["deployment_initiated"] or moments["detected"]
    by_phase = {m["phase"]: m for m in metrics}
    empty = {"width": width, "height": 0.0, "segments": [], "markers": [], "ticks": [], "labels": [],
             "offscale": [], "span_seconds": 0, "origin": None}
    if origin is None:
        return empty

    def offset(moment: dt.datetime) -> float:
        return (moment - origin).total_seconds()

    segments: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    ends = [0.0]
    for phase, label, start, end in PHASES[:-1]:
        a, b = moments.get(start), moments.get(end)
        if a is None or b is None:
            continue
        metric = by_phase[phase]
        segments.append({"phase": phase, "label": label, "start": offset(a), "end": offset(b),
                         "seconds": metric["seconds"], "text": metric["text"], "met": metric["met"],
                         "verdict": metric["verdict"], "target_text": metric["target_text"]})
        targets.append({"phase": phase, "label": f"{phase} target", "at": offset(a) + metric["target_seconds"],
                        "kind": "phase", "target_text": format_seconds(metric["target_seconds"])})
        ends.append(offset(b))
    if not segments:
        return empty
    detected = moments["detected"]
    if detected is not None:
        total = by_phase["total"]
        targets.append({"phase": "total", "label": f"total target ({format_seconds(total['target_seconds'])})",
                        "at": offset(detected) + total["target_seconds"], "kind": "total",
                        "target_text": format_seconds(total["target_seconds"])})
    extent = max(max(ends), 1.0)
    # A target a little beyond the incident's end still fits the axis; one far beyond it is off scale.
    reach = max([extent, *(t["at"] for t in targets if t["at"] <= extent * 1.5)])
    domain = reach * 1.04
    on_scale = [t for t in targets if t["at"] <= domain]
    off_scale = [t for t in targets if t["at"] > domain]
    arrow = 10.0 if off_scale else 0.0
    plot_left, plot_right = left, width - right - arrow
    scale = (plot_right - plot_left) / domain

    def x_of(seconds: float) -> float:
        return round(float(plot_left + seconds * scale), 2)

    for segment in segments:
        segment["x"] = x_of(segment["start"])
        segment["width"] = round(max((segment["end"] - segment["start"]) * scale, 1.0), 2)
    markers: list[dict[str, Any]] = []
    for target in on_scale:
        markers.append({**target, "x": x_of(target["at"])})
    limit = (plot_right - plot_left) / 80.0
    step = next((s for s in NICE_STEPS if domain / s <= limit), NICE_STEPS[-1])
    ticks: list[dict[str, Any]] = [{"x": x_of(t), "label": _tick_label(t), "at": t}
                                   for t in range(0, int(domain) + 1, step)]

    low, high = left, width - right
    above, below = _Lanes(), _Lanes()
    # (row, left edge, estimated width, text, kind): laid out with the estimated widths; drawn anchored at
    # the middle (or at the picture's edge when pushed against it), so the real, narrower text stays inside
    # the box it was given.
    placed_above: list[tuple[int, float, float, str, str]] = []
    for segment in sorted(segments, key=lambda s: s["x"] + s["width"] / 2):
        text = f"{segment['phase']} {segment['text']}"
        w = _text_width(text)
        x0 = _fit(segment["x"] + segment["width"] / 2, w, low, high)
        placed_above.append((above.place(x0, x0 + w), x0, w, text, segment["phase"]))
    tick_row: list[tuple[int, float, float, str, str]] = []
    tick_end = -1e9
    for tick in ticks:
        w = _text_width(str(tick["label"]))
        x0 = _fit(float(tick["x"]), w, low, high)
        if x0 >= tick_end + GAP:  # a tick label that would touch the previous one is left out
            tick_row.append((0, x0, w, str(tick["label"]), "tick"))
            tick_end = x0 + w
    placed_below: list[tuple[int, float, float, str, str]] = []
    for marker in sorted(markers, key=lambda m: m["x"]):
        w = _text_width(marker["label"])
        x0 = _fit(marker["x"], w, low, high)
        placed_below.append((below.place(x0, x0 + w), x0, w, marker["label"], marker["kind"]))
    # The targets beyond the axis, in as few rows as fit, each row against the right edge under the axis's end.
    placed_off: list[tuple[int, float, float, str, str]] = []
    rows: list[str] = []
    for target in sorted(off_scale, key=lambda t: t["at"]):
        item = f"{target['label'].split(' (')[0]} {target['target_text']}"
        head = "targets off scale: " if not rows else ""
        if rows and _text_width(f"{rows[-1]}, {item}") <= high - low:
            rows[-1] = f"{rows[-1]}, {item}"
        else:
            rows.append(f"{head}{item}")
    for row, text in enumerate(rows):
        placed_off.append((row, high - _text_width(text), _text_width(text), text, "offscale"))

    top = 4.0
    rows_above = max((row for row, *_ in placed_above), default=-1) + 1
    bar_y = top + rows_above * LANE + 4.0
    bar_h = 22.0
    axis_y = bar_y + bar_h + 6.0
    tick_y = axis_y + 4.0 + FONT_PX + 2.0
    below_y = tick_y + LANE
    rows_below = max((row for row, *_ in placed_below), default=-1) + 1
    off_y = below_y + rows_below * LANE

    def placed(row_y: float, x0: float, w: float, text: str, kind: str) -> dict[str, Any]:
        if x0 <= low + 0.01:
            x, anchor = low, "start"
        elif x0 + w >= high - 0.01:
            x, anchor = high, "end"
        else:
            x, anchor = x0 + w / 2, "middle"
        return {"x": round(x, 2), "y": round(row_y, 2), "anchor": anchor, "text": text,
                "kind": "phase" if kind in by_phase else kind, "box": [round(x0, 2), round(x0 + w, 2)]}

    labels = [placed(bar_y - 5.0 - row * LANE, x0, w, text, kind) for row, x0, w, text, kind in placed_above]
    labels += [placed(tick_y, x0, w, text, kind) for _, x0, w, text, kind in tick_row]
    labels += [placed(below_y + row * LANE, x0, w, text, kind) for row, x0, w, text, kind in placed_below]
    labels += [placed(off_y + row * LANE, x0, w, text, kind) for row, x0, w, text, kind in placed_off]
    height = round(max([tick_y] + [lab["y"] for lab in labels]) + 6.0, 2)
    for marker in markers:
        marker["y1"] = round(bar_y - (4.0 if marker["kind"] == "total" else 2.0), 2)
        marker["y2"] = round(axis_y + (6.0 if marker["kind"] == "total" else 2.0), 2)
    return {"width": width, "height": height, "bar_y": round(bar_y, 2), "bar_height": bar_h,
            "axis_y": round(axis_y, 2), "plot_left": plot_left, "plot_right": round(plot_right, 2),
            "segments": segments, "markers": markers, "ticks": ticks, "labels": labels,
            "offscale": [{"phase": t["phase"], "label": t["label"], "at": t["at"]} for t in off_scale],
            "span_seconds": round(domain, 3), "origin": _iso(origin)}


def timeline_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The timeline as aligned text lines (``rollback drill``, ``rollback incident show``)."""
    lines = []
    for row in rows:
        moment = row.get("time") or "not recorded"
        since = f"  ({row['since_detected']})" if row.get("since_detected") else ""
        detail = f": {row['detail']}" if row.get("detail") else ""
        lines.append(f"  {moment:<12}  {row.get('label')}{since}{detail}")
    return lines


def metric_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics against the targets as an aligned text table: the words ``rollback run`` prints too
    (``1 min 4 s``, ``met``/``missed``)."""
    if not rows:
        return []
    width = max(len(str(m.get("label"))) for m in rows)
    lines = [f"  {'metric'.ljust(width)}  {'time':>12}  {'target':>10}  verdict"]
    for m in rows:
        lines.append(f"  {str(m.get('label')).ljust(width)}  {m.get('text')!s:>12}  {m.get('target_text')!s:>10}  "
                     f"{m.get('verdict')}")
    return lines


# --------------------------------------------------------------------------- actions from the journals


def _entry_seconds(start: Any, end: Any) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return round((b - a).total_seconds(), 3) if a is not None and b is not None else None


# How a step's result fields read in a sentence (:func:`result_text`). Keys not named here read as
# "<key in words> <value>" (a count as "<value> <key in words>"); paths, manifests and ids of the
# same thing are left out (the journal keeps every field).
_LEFT_OUT = frozenset({"already_done", "seconds", "manifest", "manifest_path", "path", "owns", "source",
                       "split_tables", "items", "from_url", "to_url", "deployment_id", "project_id",
                       "distribution_id", "checked_at", "incident", "since", "taken_at", "evidence"})
_COUNTS = frozenset({"files", "tables", "rows", "total_rows", "toc_entries", "terminated_sessions", "sends",
                     "keys", "steps", "rounds", "copied", "skipped"})
_WORDS = {"total_rows": "rows", "toc_entries": "TOC entries", "terminated_sessions": "session(s) ended",
          "sends": "request(s) sent", "rounds": "round(s)", "job_status": "job", "set_aside": "kept aside as",
          "from_deployment_id": "from", "to_deployment_id": "to", "from_version": "from version",
          "new_version": "new version", "current_version": "now version", "prisma_migration_head": "Prisma head",
          "confirmed_by": "confirmed by the", "etag": "ETag", "arn": "ARN", "id": "id"}
_FLAGS = {"ok": ("ok", "NOT ok"), "match": ("counts match", "counts DIFFER"), "changed": ("changed", "unchanged"),
          "retried": ("retried after a 412", ""), "superuser": ("superuser", ""), "createdb": ("may create databases",
                                                                                         "may NOT create databases"),
          "can_signal_backends": ("may end sessions", "")}


def _size_text(value: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _field_phrase(key: str, value: Any) -> str:
    words = _WORDS.get(key, key.replace("_", " "))
    if isinstance(value, bool):
        yes, no = _FLAGS.get(key, (words, f"not {words}"))
        return yes if value else no
    if isinstance(value, (int, float)) and key.endswith("_seconds"):
        what = key[: -len("_seconds")].replace("_", " ")
        return f"{what} {value * 1000:.0f} ms" if value < 1 else f"{what} {format_seconds(float(value))}"
    if isinstance(value, (int, float)) and key.endswith("bytes"):
        return _size_text(float(value))
    if isinstance(value, (int, float)) and key in _COUNTS:
        return f"{_plain(value)} {words}"
    if isinstance(value, (list, tuple)):
        shown = [str(v) for v in value if isinstance(v, (str, int, float))]
        if shown and len(shown) == len(value) and len(", ".join(shown)) <= 60:
            return f"{words} {', '.join(shown)}"
        return f"{len(value)} {words}"
    if isinstance(value, Mapping):
        if key == "summary":
            names = {"pass": "passed", "fail": "failed"}
            return ", ".join(f"{_plain(v)} {names.get(k, k.replace('_', ' '))}" for k, v in value.items())
        return ""
    return f"{words} {_plain(value)}"


def result_text(result: Any, *, limit: int = 200) -> str:
    """A step's result as a readable phrase (``backup app-...: 5 files, 15 TOC entries, ok``): its ``would``,
    or its fields in words; paths and nested documents are left out (the journal has them)."""
    if not isinstance(result, Mapping) or not result:
        return ""
    if result.get("would"):
        return f"would {result['would']}" if not str(result["would"]).startswith("would") else str(result["would"])
    fields = {k: v for k, v in result.items() if v is not None and k not in _LEFT_OUT}
    parts: list[str] = []
    if "etag_before" in fields and "etag_after" in fields:
        parts.append(f"ETag {fields.pop('etag_before')} -> {fields.pop('etag_after')}")
    if "key" in fields and "before" in fields and "value" in fields:
        parts.append(f"{fields.pop('key')}: {fields.pop('before') or '(unset)'} -> {fields.pop('value')}")
    if "restore" in fields and str(fields["restore"]).startswith("rollback "):
        parts.append(f"undo with '{fields.pop('restore')}'")
    parts += [p for p in (_field_phrase(k, v) for k, v in fields.items()) if p]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_actions(run: RunRecord) -> dict[str, Any]:
    """One run's steps in plan order with status (``done``, ``already done``, ``finished`` for a wait that
    found its work over, ``failed``,
    ``running`` when the run ended mid-step, ``not run``, ``dry run``), duration and result."""
    order: list[str] = []
    steps: dict[str, dict[str, Any]] = {}

    def slot(step_id: str, description: str = "") -> dict[str, Any]:
        if step_id not in steps:
            order.append(step_id)
            steps[step_id] = {"id": step_id, "description": description, "layer": None, "action": None,
                              "destructive": False, "status": "not run", "seconds": None, "result": {},
                              "result_text": "", "error": None, "started_at": None, "finished_at": None}
        return steps[step_id]

    for entry in run.entries:
        event = entry.get("event")
        if event == "step_planned":
            for planned in entry.get("steps", []):
                item = slot(str(planned.get("id")), str(planned.get("description") or planned.get("summary") or ""))
                item.update(layer=planned.get("layer"), action=planned.get("action"),
                            destructive=bool(planned.get("destructive")),
                            params=planned.get("params") if isinstance(planned.get("params"), Mapping) else {})
        elif event in ("step_started", "step_finished", "step_failed"):
            item = slot(str(entry.get("step")), str(entry.get("description") or ""))
            if entry.get("description"):
                item["description"] = str(entry["description"])
            if event == "step_started":
                item.update(status="running", started_at=entry.get("ts"), error=None)
            elif event == "step_finished":
                raw = entry.get("result")
                result: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
                already = bool(entry.get("already_done") or result.get("already_done"))
                status = "dry run" if entry.get("dry_run") else (
                    finished_word(str(item.get("action") or "")) if already else "done")
                item.update(status=status, finished_at=entry.get("ts"), result=dict(result),
                            result_text=result_text(result))
                item["seconds"] = _entry_seconds(item["started_at"], entry.get("ts"))
            else:
                item.update(status="failed", finished_at=entry.get("ts"), error=entry.get("error"))
                item["seconds"] = _entry_seconds(item["started_at"], entry.get("ts"))
    rows = [steps[s] for s in order]
    for number, row in enumerate(rows, start=1):
        row["n"] = number
        row["seconds_text"] = format_seconds(row["seconds"]) if row["seconds"] is not None else ""
        took = row["seconds"]
        timed = took is not None and row["status"] in ("done", "failed", "finished")
        duration = (f"{took * 1000:.0f} ms" if took < 1 else row["seconds_text"]) if timed else ""
        row["outcome"] = f"{row['status']} in {duration}" if timed else str(row["status"])
    started = run.started
    return {"run": run.run_id, "status": run.status, "command": started.get("command"),
            "dry_run": bool(started.get("dry_run")), "resumes": started.get("resumes"),
            "started_at": started.get("ts"), "finished_at": (run.finished or {}).get("ts"),
            "exit_code": (run.finished or {}).get("exit_code"), "steps": rows}


# --------------------------------------------------------------------------- data loss


@dataclass(frozen=True)
class DataLossFacts:
    """What the journals say about data at stake: the input of the salvage count hook."""

    db_restore: str | None = None  # "beside", "in place" or None
    backup: str | None = None  # the backup that was restored
    restored_database: str | None = None  # the copy a restore created beside the live database
    swapped: bool = False
    live_database: str | None = None
    kept_database: str | None = None  # <db>_replaced_<time>, set aside by the swap
    swapped_at: str | None = None
    emergency_backup: str | None = None
    emergency_backup_at: str | None = None
    emergency_skipped: str | None = None  # the reason given
    down_migrations: tuple[str, ...] = ()
    rds_restores: tuple[Mapping[str, Any], ...] = ()
    runs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def any(self) -> bool:
        return bool(self.db_restore or self.swapped or self.down_migrations or self.rds_restores)

    def to_dict(self) -> dict[str, Any]:
        return {"db_restore": self.db_restore, "backup": self.backup, "restored_database": self.restored_database,
                "swapped": self.swapped, "live_database": self.live_database, "kept_database": self.kept_database,
                "swapped_at": self.swapped_at, "emergency_backup": self.emergency_backup,
                "emergency_backup_at": self.emergency_backup_at, "emergency_skipped": self.emergency_skipped,
                "down_migrations": list(self.down_migrations), "rds_restores": [dict(r) for r in self.rds_restores]}


def data_loss_facts(actions: Sequence[Mapping[str, Any]]) -> DataLossFacts:
    """Read the database steps that really ran (not dry runs) out of the runs' actions."""
    found: dict[str, Any] = {"down_migrations": [], "rds_restores": [], "runs": []}
    for run in actions:
        if run.get("dry_run"):
            continue
        for step in run.get("steps", []):
            if step.get("status") not in DONE:
                continue
            action = str(step.get("action") or "")
            params = step.get("params") or {}
            result = step.get("result") or {}
            if action in ("db.backup", "db.backup_replaced") and params.get("kind") == "emergency":
                background = f"written in the background by run {result['run']}" if result.get("run") else None
                found["emergency_backup"] = result.get("name") or background or found.get("emergency_backup")
                found["emergency_backup_at"] = step.get("started_at")
            elif action == "db.skip_emergency_backup":
                found["emergency_skipped"] = str(params.get("reason") or result.get("reason") or "no reason given")
            elif action in ("db.restore_beside", "db.restore_in_place"):
                found["db_restore"] = "in place" if action == "db.restore_in_place" else "beside"
                dump_dir = params.get("dump_dir")
                found["backup"] = Path(str(dump_dir)).name if dump_dir else None
                found["restored_database"] = result.get("database") or params.get("database")
                found["runs"].append(run.get("run"))
            elif action == "db.swap":
                found["swapped"] = True
                found["kept_database"] = result.get("set_aside") or params.get("aside")
                found["live_database"] = result.get("live")
                found["restored_database"] = result.get("restored") or params.get("restored") \
                    or found.get("restored_database")
                found["swapped_at"] = step.get("finished_at")
            elif action == "db.down":
                found["down_migrations"].append(str(params.get("name") or result.get("name") or step.get("id")))
            elif action == "rds.restore":
                found["rds_restores"].append({"target": params.get("target"), "source": params.get("source"),
                                              "snapshot": params.get("snapshot"), "time": params.get("time")})
    return DataLossFacts(
        db_restore=found.get("db_restore"), backup=found.get("backup"),
        restored_database=found.get("restored_database"), swapped=bool(found.get("swapped")),
        live_database=found.get("live_database"), kept_database=found.get("kept_database"),
        swapped_at=found.get("swapped_at"), emergency_backup=found.get("emergency_backup"),
        emergency_backup_at=found.get("emergency_backup_at"), emergency_skipped=found.get("emergency_skipped"),
        down_migrations=tuple(found["down_migrations"]), rds_restores=tuple(found["rds_restores"]),
        runs=tuple(str(r) for r in found["runs"] if r))


def _data_loss(facts: DataLossFacts, rows_only_in_kept: Mapping[str, int] | None) -> dict[str, Any]:
    lines: list[str] = []
    if not facts.any:
        status = "none"
        lines.append("None: no database restore, swap or down migration ran in this incident.")
    else:
        status = "possible"
        if facts.emergency_backup:
            lines.append(f"An emergency backup of the live database was taken first: {facts.emergency_backup}"
                         + (f" (at {facts.emergency_backup_at})" if facts.emergency_backup_at else "") + ".")
        elif facts.emergency_skipped:
            lines.append(f"The emergency backup was SKIPPED (reason: {facts.emergency_skipped}).")
        if facts.db_restore == "in place":
            lines.append(f"Backup {facts.backup or '(unknown)'} was restored in place: rows written after that "
                         "backup are no longer in the live database; the emergency backup holds them.")
        elif facts.swapped:
            lines.append(f"Backup {facts.backup or '(unknown)'} was restored beside the live database and swapped "
                         f"in; the previous live database is kept as {facts.kept_database or '(unknown)'}.")
            lines.append("Rows written after the emergency backup (up to the swap) exist only in the kept "
                         "database.")
        elif facts.db_restore == "beside":
            status = "none"
            lines.append(f"Backup {facts.backup or '(unknown)'} was restored into "
                         f"{facts.restored_database or 'a new database'} beside the live database, which was "
                         "not replaced: no data was lost.")
        for name in facts.down_migrations:
            lines.append(f"The down migration of {name} ran; what it removed is in the emergency backup.")
        for restore in facts.rds_restores:
            point = restore.get("snapshot") or restore.get("time") or "the latest restorable time"
            lines.append(f"RDS instance {restore.get('target')} was restored from {point}; the source instance "
                         f"{restore.get('source')} is untouched and holds every row written after that point.")
    counted = dict(rows_only_in_kept) if rows_only_in_kept is not None else None
    if facts.swapped:
        if counted is None:
            lines.append("Rows only in the kept database: not counted yet.")
        else:
            total = sum(counted.values())
            status = "none" if total == 0 else "some"
            detail = ", ".join(f"{table} {rows}" for table, rows in sorted(counted.items()) if rows)
            lines.append(f"Rows only in the kept database: {total}" + (f" ({detail})" if detail else "") + "."
                         + (f" Copy them back with 'rollback db salvage {facts.kept_database} --apply'."
                            if total else ""))
    return {"status": status, "lines": lines, "rows_only_in_kept": counted, **facts.to_dict()}


# --------------------------------------------------------------------------- impact


@dataclass(frozen=True)
class Impact:
    """What CloudWatch says about the incident window (or why nothing was measured)."""

    measured: bool
    requests: int | None = None
    requests_failed: int | None = None
    error_rate: float | None = None  # percent over the window, weighted by requests
    peak_error_rate: float | None = None  # percent, the worst period
    window_start: str | None = None
    window_end: str | None = None
    source: str = ""
    reason: str = ""

    @classmethod
    def not_measured(cls, reason: str) -> Impact:
        return cls(measured=False, reason=reason)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Impact:
        """The impact as :meth:`to_dict` wrote it (the figures an incident's ``closed`` event stores)."""
        def number(key: str) -> float | None:
            return _number(document.get(key))

        requests, failed = number("requests"), number("requests_failed")
        return cls(measured=bool(document.get("measured")), requests=int(requests) if requests is not None else None,
                   requests_failed=int(failed) if failed is not None else None, error_rate=number("error_rate"),
                   peak_error_rate=number("peak_error_rate"), window_start=document.get("window_start"),
                   window_end=document.get("window_end"), source=str(document.get("source") or ""),
                   reason=str(document.get("reason") or ""))

    def to_dict(self) -> dict[str, Any]:
        return {"measured": self.measured, "requests": self.requests, "requests_failed": self.requests_failed,
                "error_rate": self.error_rate, "peak_error_rate": self.peak_error_rate,
                "window_start": self.window_start, "window_end": self.window_end, "source": self.source,
                "reason": self.reason}


def impact_window(record: Mapping[str, Any]) -> tuple[dt.datetime, dt.datetime] | None:
    """From the deployment (else the detection) to the restoration (else the verification)."""
    timeline = record.get("timeline") or {}
    start = parse_time(timeline.get("deployment_initiated")) or parse_time(timeline.get("detected"))
    end = parse_time(timeline.get("restored")) or parse_time(timeline.get("verified"))
    if start is None or end is None or end <= start:
        return None
    return start, end


def _impact_lines(impact: Impact) -> dict[str, str]:
    if not impact.measured:
        why = f" ({impact.reason})" if impact.reason else ""
        return {"error_rate_text": f"not measured{why}", "requests_failed_text": f"not measured{why}"}
    rate = (f"{impact.error_rate:.2f}% of {impact.requests} requests" if impact.error_rate is not None
            and impact.requests is not None else
            (f"{impact.error_rate:.2f}% (average)" if impact.error_rate is not None else "not measured"))
    if impact.peak_error_rate is not None:
        rate += f", peak {impact.peak_error_rate:.2f}%"
    failed = str(impact.requests_failed) if impact.requests_failed is not None else "not measured"
    return {"error_rate_text": rate, "requests_failed_text": failed}


# --------------------------------------------------------------------------- the report


def _hhmm(moment: dt.datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment else ""


def _first_event(record: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    return next((e for e in record.get("events") or [] if isinstance(e, Mapping) and e.get("event") == kind), None)


def timeline_details(record: Mapping[str, Any], actions: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """What happened at a moment of the timeline, where the record says: the canary of a Vercel rolling
    release (the deployment), and the step that initiated the rollback and the one that restored service
    (from the run's journal)."""
    details: dict[str, str] = {}
    opened = _first_event(record, "opened") or {}
    deployment = opened.get("deployment")
    release = deployment.get("rolling_release") if isinstance(deployment, Mapping) else None
    if isinstance(release, Mapping) and isinstance(deployment, Mapping):
        found = release.get("base")
        base: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        percentage = _number(release.get("percentage"))
        share = f" at {percentage:g} % of production" if percentage is not None else ""
        details["deployment_initiated"] = (f"canary {_plain(deployment.get('url'))} ({_plain(deployment.get('id'))}) "
                                           f"started a Vercel rolling release{share} (base "
                                           f"{_plain(base.get('url'))})")
    if opened.get("detected_from") == "watch" and opened.get("detected_detail"):
        details["detected"] = _plain(opened["detected_detail"])
    decided = _first_event(record, "decided")
    if decided is not None and decided.get("by") == "watch":
        found = decided.get("readings")
        readings: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        details["decided"] = (f"rollback watch {_plain(decided.get('watch'))}: {_plain(readings.get('streak'))} bad "
                              f"readings in a row (of {_plain(readings.get('readings'))}), "
                              f"{_plain(decided.get('severity'))}")
    steps = {str(a.get("run")): [s for s in a.get("steps") or [] if isinstance(s, Mapping)] for a in actions}
    initiated = _first_event(record, "initiated")
    if initiated is not None:
        step = next((s for s in steps.get(str(initiated.get("run")), []) if s.get("id") == initiated.get("step")), None)
        if step is not None and step.get("description"):
            details["initiated"] = str(step["description"])
    restored = _first_event(record, "restored")
    if restored is not None and restored.get("layer"):
        # What brought service back: the restoring layer's first change (its health check only confirmed it).
        layer = str(restored["layer"])
        change = next((s for s in steps.get(str(restored.get("run")), [])
                       if str(s.get("id", "")).startswith(f"{layer}.") and s.get("destructive")), None)
        if change is not None and change.get("description"):
            details["restored"] = f"{layer}: {change['description']}"
    return details


def timeline_rows(record: Mapping[str, Any], details: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The runbook's timeline of an incident record: one row per moment (``time``, ``label``,
    ``since_detected``, ``detail``; ``known`` False for a moment not recorded)."""
    timeline = record.get("timeline") or {}
    detected = parse_time(timeline.get("detected"))
    first_day = None
    rows = []
    for key, label in TIMELINE:
        moment = parse_time(timeline.get(key))
        offset = None
        if moment is not None and detected is not None and moment != detected:
            seconds = (moment - detected).total_seconds()
            offset = format_seconds(abs(seconds)) + (" after detection" if seconds > 0 else " before detection")
        day = moment.date().isoformat() if moment else None
        rows.append({"key": key, "label": label, "at": _iso(moment), "time": _hhmm(moment),
                     "date": day if day and day != first_day else None, "since_detected": offset,
                     "known": moment is not None, "detail": (details or {}).get(key)})
        if day and first_day is None:
            first_day = day
    return rows


def _brief(record: Mapping[str, Any]) -> str:
    severity = record.get("severity") or "unrated"
    env = record.get("env") or "?"
    layers = [str(layer) for layer in record.get("layers") or []]
    reasons = record.get("reasons") or []
    what = str(reasons[0].get("signal")) if reasons and isinstance(reasons[0], Mapping) else "bad deploy"
    rolled = f", rolled back {', '.join(layers)}" if layers else ""
    return f"{severity} on {env}: {what}{rolled}"


def _resolution(record: Mapping[str, Any]) -> dict[str, Any]:
    layers = [str(layer) for layer in record.get("layers") or []]
    options = {str(k): str(v) for k, v in (record.get("options") or {}).items()}
    parts = [LAYER_WORDS.get(layer, layer) + (f" ({options[layer].replace('-', ' ')})" if options.get(layer) else "")
             for layer in layers]
    text = ("Rolled back " + _join(parts) + " to the previous stable version.") if parts else \
        "No rollback plan was run."
    return {"layers": layers, "options": options, "command": record.get("command"), "text": text,
            "layer_words": parts}


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def build_report(
    record: Mapping[str, Any],
    runs: Sequence[RunRecord],
    *,
    impact: Impact | None = None,
    rows_only_in_kept: Mapping[str, int] | None = None,
    missing_runs: Sequence[str] = (),
    generated_at: str | None = None,
) -> dict[str, Any]:
    """The report's data. ``runs`` are the journals of ``record["runs"]`` that could be read;
    ``missing_runs`` those that could not (named in the report, not fatal)."""
    impact = impact or Impact.not_measured("no measurement source")
    timeline = record.get("timeline") or {}
    detected = parse_time(timeline.get("detected"))
    start = parse_time(timeline.get("deployment_initiated")) or detected
    end = parse_time(timeline.get("restored")) or parse_time(timeline.get("verified"))
    duration = (end - start).total_seconds() if start is not None and end is not None else None
    metrics = metric_rows(record)
    actions = [run_actions(run) for run in runs]
    verifications = [v for v in record.get("verifications") or [] if isinstance(v, Mapping)]
    last = verifications[-1] if verifications else None
    facts = data_loss_facts(actions)
    reasons = [dict(r) | {"text": reason_sentence(r)} for r in record.get("reasons") or [] if isinstance(r, Mapping)]
    notes = [str(e.get("message")) for e in record.get("events") or []
             if isinstance(e, Mapping) and e.get("event") == "note" and e.get("message")]
    brief = _brief(record)
    first = start or detected
    date = first.date().isoformat() if first is not None else "unknown date"
    return {
        "format": REPORT_FORMAT,
        "generated_at": generated_at,
        "incident": record.get("id"),
        "env": record.get("env"),
        "drill": bool(record.get("drill")),
        "status": record.get("status"),
        "title": f"Incident Report: {date} {'[DRILL] ' if record.get('drill') else ''}{brief}",
        "brief": brief,
        "summary": {
            "date": date,
            "duration_seconds": duration,
            "duration": format_seconds(duration),
            "duration_from": "deployment initiated" if timeline.get("deployment_initiated") else "issue detected",
            "duration_to": "service restored" if timeline.get("restored") else "verification complete",
            "start_time": _iso(start),
            "end_time": _iso(end),
            "severity": record.get("severity"),
            "reasons": reasons,
            "impact": {**impact.to_dict(), **_impact_lines(impact),
                       "users_affected": "not measured (CloudFront counts requests, not the users who made them)"},
        },
        "timeline": timeline_rows(record, timeline_details(record, actions)),
        "resolution": _resolution(record),
        "actions": actions,
        "missing_runs": list(missing_runs),
        "verification": None if last is None else {
            "ok": bool(last.get("ok")), "strict": bool(last.get("strict")), "checked_at": last.get("checked_at"),
            "seconds": last.get("seconds"),
            "items": [{"not_healed_by_run": False, **i} for i in last.get("items") or [] if isinstance(i, Mapping)],
            "not_healed": last.get("not_healed") if isinstance(last.get("not_healed"), Mapping) else None,
            "count": len(verifications)},
        "data_loss": _data_loss(facts, rows_only_in_kept),
        "metrics": metrics,
        "timeline_bar": timeline_bar(record, metrics),
        "action_items": list(ACTION_ITEMS),
        "notes": notes,
    }
