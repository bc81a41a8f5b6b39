"""The report's data, built from a realistic record and the real journals (no network)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from rollback.commands import report as commands
from rollback.journal import find_run
from rollback.model.report import (
    DataLossFacts,
    Impact,
    build_report,
    data_loss_facts,
    format_seconds,
    phase_seconds,
    reason_text,
    run_actions,
)
from rollback.templating import md_escape, visible
from tests.report.fixture_incident import (
    EXPECTED_METRICS,
    INCIDENT,
    RUN1,
    RUN2,
    TIMES,
    IncidentFixture,
    incident_events,
    iso_seconds,
)


def _data(incident: IncidentFixture, **kwargs: Any) -> dict[str, Any]:
    return commands.build(None, incident.journal_dir, None, measure=False, **kwargs)


def _record(incident: IncidentFixture) -> dict[str, Any]:
    return commands.load_incident(incident.incidents_dir / f"{INCIDENT}.jsonl")


def test_timeline_is_the_record_s(incident: IncidentFixture) -> None:
    data = _data(incident)
    rows = {row["key"]: row for row in data["timeline"]}
    assert [row["key"] for row in data["timeline"]] == ["deployment_initiated", "detected", "decided", "initiated",
                                                       "restored", "verified"]
    for key, value in TIMES.items():
        assert rows[key]["known"]
        assert iso_seconds(rows[key]["at"]) == iso_seconds(value)
        assert rows[key]["time"] == value[11:19]
    assert rows["deployment_initiated"]["since_detected"] == "3 min 30 s before detection"
    assert rows["verified"]["since_detected"] == "17 min 30 s after detection"


def test_metrics_equal_those_computed_from_the_timeline_and_are_judged(incident: IncidentFixture) -> None:
    data = _data(incident)
    metrics = {m["phase"]: m for m in data["metrics"]}
    assert {phase: m["seconds"] for phase, m in metrics.items()} == EXPECTED_METRICS
    assert phase_seconds(_record(incident)["timeline"]) == EXPECTED_METRICS
    assert {phase: m["verdict"] for phase, m in metrics.items()} == {
        "detect": "met", "decide": "met", "rollback": "met", "verify": "missed", "total": "missed"}
    assert metrics["total"]["target_seconds"] == 900
    assert metrics["verify"]["text"] == "11 min 20 s"


def test_record_metrics_win_over_the_timeline_and_missing_ones_are_not_measured() -> None:
    record = {"id": "INC-x", "env": "p", "timeline": {"detected": "2026-11-28T09:00:00Z"},
              "metrics": {"detect": 42.0}, "targets": {"detect": 30}}
    metrics = {m["phase"]: m for m in build_report(record, [])["metrics"]}
    assert metrics["detect"]["seconds"] == 42.0 and metrics["detect"]["verdict"] == "missed"
    assert metrics["decide"]["seconds"] is None and metrics["decide"]["verdict"] == "not measured"
    assert metrics["decide"]["text"] == "not measured"


def test_every_action_with_its_status_duration_and_result(incident: IncidentFixture) -> None:
    data = _data(incident)
    first, second = data["actions"]
    assert (first["run"], first["status"]) == (RUN1, "failed")
    assert (second["run"], second["status"], second["resumes"]) == (RUN2, "succeeded", RUN1)
    assert [s["status"] for s in first["steps"]] == ["done", "done", "failed"] + ["not run"] * 5
    assert first["steps"][2]["error"].startswith("distribution E2QWRUHAPOMQZL changed")
    # a wait that found its work finished says so ("already done" reads as skipped)
    assert [s["status"] for s in second["steps"]] == ["already done", "finished"] + ["done"] * 6
    steps = {s["id"]: s for s in second["steps"]}
    assert steps["db.restore"]["seconds"] == 150.0 and steps["db.restore"]["seconds_text"] == "2 min 30 s"
    assert steps["edge.associate"]["layer"] == "edge"
    assert "kept aside as app_replaced_20261128T092200" in steps["db.swap"]["result_text"]
    assert "=" not in steps["db.swap"]["result_text"]  # a phrase, not a key=value dump
    # nested results (a backup's manifest) are not dumped into the one-line result
    assert "manifest" not in steps["db.emergency-backup"]["result_text"]


def test_data_loss_names_the_backups_and_the_kept_database(incident: IncidentFixture) -> None:
    loss = _data(incident)["data_loss"]
    assert loss["swapped"] is True
    assert loss["emergency_backup"] == "app-20261128T092145Z-emergency"
    assert loss["kept_database"] == "app_replaced_20261128T092200"
    assert loss["backup"] == "app-20261128T080000Z"
    assert loss["rows_only_in_kept"] is None
    assert any("not counted yet" in line for line in loss["lines"])


def test_the_salvage_hook_fills_the_count(incident: IncidentFixture) -> None:
    seen: list[DataLossFacts] = []

    def count(config: Any, facts: DataLossFacts) -> dict[str, int]:
        seen.append(facts)
        return {"User": 3, "Integration": 1, "UserStats": 0}

    loss = _data(incident, count_rows=count)["data_loss"]
    assert seen[0].kept_database == "app_replaced_20261128T092200"
    assert loss["status"] == "some"
    assert loss["rows_only_in_kept"] == {"User": 3, "Integration": 1, "UserStats": 0}
    assert "Rows only in the kept database: 4 (Integration 1, User 3). Copy them back with 'rollback db salvage " \
        "app_replaced_20261128T092200 --apply'." in loss["lines"]


def test_no_database_step_means_no_data_loss() -> None:
    facts = data_loss_facts([{"run": "r", "dry_run": False, "steps": [
        {"action": "vercel.rollback", "status": "done", "params": {}, "result": {}}]}])
    assert not facts.any
    loss = build_report({"id": "INC-x", "timeline": {}}, [])["data_loss"]
    assert loss["status"] == "none"
    assert loss["lines"] == ["None: no database restore, swap or down migration ran in this incident."]


def test_dry_run_steps_are_not_data_loss() -> None:
    facts = data_loss_facts([{"run": "r", "dry_run": True, "steps": [
        {"action": "db.swap", "status": "dry run", "params": {"aside": "x"}, "result": {}}]}])
    assert not facts.swapped


def test_a_drill_is_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.report.fixture_incident import write_incident

    fixture = write_incident(tmp_path, monkeypatch, drill=True)
    monkeypatch.undo()
    data = commands.build(None, fixture.journal_dir, measure=False)
    assert data["drill"] is True
    assert "[DRILL]" in data["title"]


def test_unknown_deployment_time_leaves_detect_not_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.report.fixture_incident import write_incident

    fixture = write_incident(tmp_path, monkeypatch, deployment_known=False)
    monkeypatch.undo()
    data = commands.build(None, fixture.journal_dir, measure=False)
    metrics = {m["phase"]: m for m in data["metrics"]}
    assert metrics["detect"]["verdict"] == "not measured"
    assert metrics["total"]["seconds"] == EXPECTED_METRICS["total"]
    assert data["summary"]["duration_from"] == "issue detected"
    assert data["timeline_bar"]["origin"] == "2026-11-28T09:15:30Z"


def test_timeline_bar_segments_follow_the_phases(incident: IncidentFixture) -> None:
    bar = _data(incident)["timeline_bar"]
    assert [s["phase"] for s in bar["segments"]] == ["detect", "decide", "rollback", "verify"]
    xs = [(s["x"], s["x"] + s["width"]) for s in bar["segments"]]
    assert all(a[1] <= b[0] + 0.01 for a, b in itertools.pairwise(xs))  # consecutive, no overlap
    assert all(16 <= m["x"] <= bar["width"] - 16 for m in bar["markers"])
    total = next(m for m in bar["markers"] if m["kind"] == "total")
    assert total["at"] == 210 + 900  # 15 min after detection, which came 3 min 30 s after the deploy
    assert [s["met"] for s in bar["segments"]] == [True, True, True, False]


def test_json_document_is_strict(incident: IncidentFixture) -> None:
    text = commands.render(_data(incident), "json", None)  # type: ignore[arg-type]

    def refuse(value: str) -> Any:
        raise ValueError(value)

    document = json.loads(text, parse_constant=refuse)
    assert document["format"] == "rollback.report/1"
    assert document["incident"] == INCIDENT


def test_missing_journal_is_named_not_fatal(incident: IncidentFixture) -> None:
    (incident.journal_dir / f"{RUN1}.jsonl").unlink()
    data = _data(incident)
    assert data["missing_runs"] == [RUN1]
    assert [a["run"] for a in data["actions"]] == [RUN2]


def test_run_actions_of_an_unfinished_run(incident: IncidentFixture) -> None:
    path = incident.journal_dir / f"{RUN2}.jsonl"
    lines = path.read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if '"step_finished"' in line and '"db.restore"' in line)
    path.write_text("\n".join(lines[:cut]) + '\n{"ts": "2026-11-28T09:2', encoding="utf-8")  # killed mid-write
    actions = run_actions(find_run(incident.journal_dir, RUN2))
    assert actions["status"] == "unfinished"
    assert {s["id"]: s["status"] for s in actions["steps"]}["db.restore"] == "running"


def test_events_fold_into_contract_b_read_model(incident: IncidentFixture) -> None:
    record = _record(incident)
    assert record["id"] == INCIDENT and record["env"] == "production" and record["drill"] is False
    assert record["runs"] == [RUN1, RUN2]
    assert [v["ok"] for v in record["verifications"]] == [False, True]
    assert record["severity"] == "P1" and record["layers"] == ["app", "edge", "db"]
    assert len(record["events"]) == len(list(incident_events()))


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "not measured"), (0, "0 s"), (4.2, "4.2 s"), (42, "42 s"), (60, "1 min"), (190, "3 min 10 s"),
    (3600, "1 h"), (3720, "1 h 2 min"), (-30, "-30 s"),
])
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.mark.parametrize(("reason", "text"), [
    ({"signal": "5xx error rate", "value": 12.5, "threshold": 5, "unit": "%"}, "5xx error rate: 12.5% (threshold 5%)"),
    ({"signal": "p95", "value": 5300, "threshold": 500, "unit": "ms", "detail": "/api/*"},
     "p95: 5300ms (threshold 500ms): /api/*"),
    ({"signal": "alarm", "value": "ALARM", "unit": "state"}, "alarm: ALARM state"),
    ({"signal": "health"}, "health"),
])
def test_reason_text(reason: dict[str, Any], text: str) -> None:
    assert reason_text(reason) == text


@pytest.mark.parametrize(("raw", "escaped"), [
    ("[/api/pay]", "\\[/api/pay\\]"),
    ("<script>x</script>", "\\<script>x\\</script>"),
    ("a | b", "a \\| b"),
    ("*bold* `code` ~~gone~~", "\\*bold\\* \\`code\\` \\~\\~gone\\~\\~"),
    ("app_replaced_20261128", "app_replaced_20261128"),
    ("_emph_", "\\_emph\\_"),
    ("&lt;", "\\&lt;"),
    ("# heading", "\\# heading"),
    ("- item", "\\- item"),
    ("1. first", "1\\. first"),
    ("12.5%", "12.5%"),
    ("line\nbreak", "line break"),
    # shown escaped (\x07), and that backslash escaped for Markdown, so it renders as \x07
    ("bell\x07 esc\x1b[31m", "bell\\\\x07 esc\\\\x1b\\[31m"),
])
def test_md_escape(raw: str, escaped: str) -> None:
    assert md_escape(raw) == escaped


def test_visible_shows_control_and_bidi_characters() -> None:
    assert visible("a\u202eb\x00c\r\nd") == "a\\u202eb\\x00c d"
    assert visible("plain é 日本") == "plain é 日本"


def test_impact_lines() -> None:
    record = {"id": "INC-x", "timeline": {"detected": "2026-11-28T09:00:00Z"}}
    measured = Impact(measured=True, requests=1000, requests_failed=125, error_rate=12.5, peak_error_rate=40.0)
    summary = build_report(record, [], impact=measured)["summary"]["impact"]
    assert summary["error_rate_text"] == "12.50% of 1000 requests, peak 40.00%"
    assert summary["requests_failed_text"] == "125" and summary["requests_failed"] == 125
    summary = build_report(record, [], impact=Impact.not_measured("no aws.distribution_id in the config"))["summary"]
    assert summary["impact"]["requests_failed_text"] == "not measured (no aws.distribution_id in the config)"


def test_severity_reasons_read_as_sentences() -> None:
    from rollback.model.report import reason_sentence

    data_loss = {"signal": "data_loss", "value": True, "threshold": "true", "unit": "", "severity": "P0",
                 "detail": "User has 110 rows, 10 fewer than backup app-20261201T031400Z (8.3 %; threshold >= 10 "
                           "rows and >= 1 %); explained by failed migration (20261130090000_merge_user_stats)",
                 "why": "data being lost or corrupted: an app rollback stops the damage, a database step repairs it"}
    assert reason_sentence(data_loss) == (
        "Data was being lost: User has 110 rows, 10 fewer than backup app-20261201T031400Z (8.3 %; threshold >= 10 "
        "rows and >= 1 %); explained by failed migration (20261130090000_merge_user_stats).")
    alarm = {"signal": "alarm.edge-function-errors", "value": "ALARM", "threshold": "== ALARM", "unit": "",
             "detail": "rollback-sandbox-edge-function-errors since 2026-12-01T03:15:07+00:00",
             "why": "rollback alarm: Lambda@Edge errors"}
    assert reason_sentence(alarm) == ("Rollback alarm rollback-sandbox-edge-function-errors (Lambda@Edge errors) "
                                      "was in ALARM since 03:15:07 UTC.")
    rate = {"signal": "error_rate", "value": 30.05, "threshold": "> 5", "unit": "%", "why": "high error rate",
            "detail": "5xxErrorRate Average over the last 5 min"}
    assert reason_sentence(rate) == ("The error rate was 30.05 %, above the 5 % threshold (5xxErrorRate Average "
                                     "over the last 5 min).")
    for reason in (data_loss, alarm, rate):
        assert "threshold true" not in reason_sentence(reason) and ": True" not in reason_sentence(reason)


def test_actions_one_line_per_step_details_apart_and_every_column_headed(incident: IncidentFixture) -> None:
    from rollback.templating import Templates

    data = _data(incident)
    md = commands.render(data, "md", Templates.for_config(None))
    html = commands.render(data, "html", Templates.for_config(None))
    assert "| # | layer | step | outcome |" in md and "| # | layer | step | status | duration | result |" not in md
    assert "| metric | target | this incident | verdict |" in md
    assert "<th>verdict</th>" in html and "<th></th>" not in html
    # each step one row with its outcome; what it found and did in the appendix (md) / a closed details (html)
    steps = {s["id"]: s for s in data["actions"][1]["steps"]}
    assert steps["db.restore"]["outcome"] == "done in 2 min 30 s" and steps["app.wait"]["outcome"] == "finished in 1 s"
    appendix = md[md.index("## Appendix: what each step found and did"):]
    assert "kept aside as app_replaced_20261128T092200" in appendix
    assert "kept aside as" not in md[:md.index("## Appendix")]
    details = html[html.index("<details>"):html.index("</details>")]
    assert "<summary>What each step of run " in details and "<details open" not in html
