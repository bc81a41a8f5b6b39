"""``rollback report`` through the real CLI entry point: every format, the email, the banner,
template overrides, exit codes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.report.fixture_incident import (
    HOSTILE_DETAIL,
    HOSTILE_PATH,
    INCIDENT,
    IncidentFixture,
    older_incident,
    write_incident,
)

Run = Callable[..., CliResult]

# The runbook's "Incident Report Template" headings, in order.
RUNBOOK_SECTIONS = ["## Summary", "## Timeline", "## Root Cause Analysis", "## Impact Assessment", "## Resolution",
                    "## Prevention", "## Action Items", "## Lessons Learned"]


def _markdown_text(markdown: str) -> tuple[str, str]:
    """(HTML, text) of Markdown as a CommonMark renderer with GFM tables shows it."""
    from html.parser import HTMLParser

    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(markdown)

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.tags: list[str] = []

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            self.tags.append(tag)

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return html, "".join(parser.parts)


def test_markdown_has_every_runbook_section_filled(run_cli: Run, incident: IncidentFixture) -> None:
    result = run_cli("report")
    assert result.code == 0, result.err
    text = result.out
    positions = [text.index(section) for section in RUNBOOK_SECTIONS]
    assert positions == sorted(positions)
    assert text.startswith("# Incident Report: 2026-11-28 P1 on production")
    for filled in ("- **Date:** 2026-11-28", "- **Severity:** P1", "- **09:12:00** (2026-11-28) - Deployment initiated",
                   "- **09:15:30** - Issue detected", "- **09:33:00** - Verification complete",
                   "| Time to verify | < 5 min | 11 min 20 s | missed |", "- [ ] Fix underlying bug",
                   "| Total recovery time | < 15 min | 17 min 30 s | missed |"):
        assert filled.replace("<", "\\<") in text or filled in text, filled
    assert "_(to be written: what went wrong, and why)_" in text  # root cause: a blank for people


def test_markdown_renders_record_text_as_written(run_cli: Run, incident: IncidentFixture) -> None:
    html, text = _markdown_text(run_cli("report").out)
    assert HOSTILE_DETAIL in text
    assert HOSTILE_PATH in text
    assert "<script" not in html and "<img" not in html and 'href="http://evil.example"' not in html
    # the tables survive a '|' in a value: the verification table still has its 5 rows
    assert html.count("<tr>") == 1 + 8 + 1 + 8 + 1 + 5 + 1 + 5


def test_default_is_the_newest_incident_of_the_environment(run_cli: Run, incident: IncidentFixture) -> None:
    older_incident(incident.incidents_dir, "production")
    newer_other_env = "INC-20261130T000000Z-staging"
    (incident.incidents_dir / f"{newer_other_env}.jsonl").write_text(json.dumps(
        {"ts": "2026-11-30T00:00:00Z", "event": "opened", "env": "staging", "drill": False,
         "detected_at": "2026-11-30T00:00:00Z"}) + "\n", encoding="utf-8")
    assert run_cli("report", "--format", "json").json()["incident"] == INCIDENT
    assert run_cli("report", "last", "--format", "json").json()["incident"] == newer_other_env
    assert run_cli("report", "INC-20261101", "--json").json()["incident"] == "INC-20261101T080000Z-production"


def test_unknown_or_ambiguous_incident_is_bad_input(run_cli: Run, incident: IncidentFixture) -> None:
    result = run_cli("report", "INC-1999")
    assert result.code == 2
    assert result.err.startswith("error: no incident 'INC-1999' in ") and result.err.count("\n") == 1
    older_incident(incident.incidents_dir, "production")
    result = run_cli("report", "INC-2026")
    assert result.code == 2 and "ambiguous (2 incidents match)" in result.err


def test_no_incidents_at_all(run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROLLBACK_CONFIG", raising=False)
    result = run_cli("report")
    assert result.code == 2
    assert "no incidents recorded in" in result.err and "Traceback" not in result.err


def test_no_config_file_reads_the_journals_beside(run_cli: Run, incident: IncidentFixture) -> None:
    incident.config.unlink()
    result = run_cli("report", "--format", "json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["incident"] == INCIDENT
    # an open incident, no config to name the distribution: said, not guessed (a closed one has its figures)
    assert document["summary"]["impact"]["reason"] == \
        "no rollback.toml to name the distribution (measured when the incident closes)"


def test_json_is_one_strict_document(run_cli: Run, incident: IncidentFixture) -> None:
    result = run_cli("report", "--json")

    def refuse(value: str) -> Any:
        raise ValueError(value)

    document = json.loads(result.out, parse_constant=refuse)
    assert {m["phase"]: m["verdict"] for m in document["metrics"]}["total"] == "missed"
    assert result.code == 0


def test_out_writes_the_file(run_cli: Run, incident: IncidentFixture, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "incident.html"
    result = run_cli("report", "--format", "html", "--out", str(out))
    assert result.code == 0 and result.out == ""
    assert f"wrote {out}" in result.err
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert run_cli("report", "--out", str(tmp_path)).code == 2  # a directory


def test_html_is_self_contained_and_escaped(run_cli: Run, incident: IncidentFixture) -> None:
    page = run_cli("report", "--format", "html").out
    assert "<svg" in page and "<style>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page
    assert "[/api/pay](http://evil.example) | *bold* &lt;img src=x onerror=alert(1)&gt;" in page


def test_secrets_never_reach_the_report(run_cli: Run, incident: IncidentFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    token = "vercel_tok_9f8e7d6c5b4a"
    monkeypatch.setenv("VERCEL_TOKEN", token)
    with (incident.incidents_dir / f"{INCIDENT}.jsonl").open("a", encoding="utf-8") as handle:
        # a note written by a process that did not know the token was a secret
        handle.write(json.dumps({"ts": "2026-11-28T09:40:00Z", "event": "note",
                                 "message": f"used token {token} and postgresql://app:hunter2pw@db/app"}) + "\n")
    for fmt in ("md", "html", "json"):
        out = run_cli("report", "--format", fmt).out
        assert token not in out and "hunter2pw" not in out
        shown = _markdown_text(out)[1] if fmt == "md" else out
        assert "postgresql://app:***@db/app" in shown


def test_drill_is_marked_everywhere(run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_incident(tmp_path, monkeypatch, drill=True)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROLLBACK_CONFIG", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    md = run_cli("report")
    assert _markdown_text(md.out)[1].startswith("Incident Report: 2026-11-28 [DRILL] P1")
    assert "> **DRILL.**" in md.out
    assert "was a drill" in md.err
    assert "DRILL: this incident was a rollback drill" in run_cli("report", "--format", "html").out
    email = run_cli("report", "--email").out
    assert email.startswith("Subject: [DRILL] [RESOLVED]") and "Do not send this email" in email
    assert run_cli("report", "--banner", "login").out.startswith("[DRILL: do not publish]")


def test_email_is_filled_from_the_record(run_cli: Run, incident: IncidentFixture) -> None:
    """The email is sendable to customers: what they noticed, when (their terms: a date, UTC times, how long),
    what we did and what they may need to do; none of the engineering details the report has."""
    result = run_cli("report", "--email")
    assert result.code == 0, result.err
    subject, _, body = result.out.partition("\n\n")
    assert subject == "Subject: [RESOLVED] Service interruption on 2026-11-28"
    # the deployment to the service's restoration, in the reader's terms
    assert body.startswith("Dear users,\n\nOn Saturday 28 November 2026, from 09:12 to 09:21 UTC (about 10 "
                           "minutes), our service did not work as it should.")
    assert "some pages and actions of our service failed with an error or were slow" in body
    assert ("We rolled back the application, our site's delivery network and the database to the previous "
            "version, which worked as expected; the service was back to normal at 09:21 UTC.") in body
    # the database was restored: what users wrote in the window may need doing again
    assert ("If you signed up, changed your settings or added anything between 09:12 and 09:21 UTC, please check "
            "that it is there and do it again if it is not.") in body
    assert "Service is fully restored and operating normally." in body
    # no alarm names, backup names, step counts, severities or decision reasons
    for internal in ("app-5xx", "ALARM", "alarm", "app-2026", "backup", "step", "P1", "12.5", "<script>",
                     "vercel", "swap", "emergency"):
        assert internal not in body, internal
    document = run_cli("report", "--email", "--json").json()
    assert document["subject"] == "[RESOLVED] Service interruption on 2026-11-28"
    assert document["body"].startswith("Dear users,")


def test_banner_is_filled_from_the_record(run_cli: Run, incident: IncidentFixture) -> None:
    result = run_cli("report", "--banner", "the <b>integrations</b> page\n")
    assert result.code == 0, result.err
    assert result.out == ("We recently fixed an issue affecting the <b>integrations</b> page (between 09:12 and "
                          "09:21 UTC on 2026-11-28).\nIf you experienced problems, please try again.\n"
                          "Contact support if issues persist.\n")
    assert run_cli("report", "--banner", "login", "--json").json()["banner"].startswith("We recently fixed")


def test_email_and_banner_refuse_before_service_is_restored(run_cli: Run, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write_incident(tmp_path, monkeypatch, restored=False)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROLLBACK_CONFIG", raising=False)
    for args in (["--email"], ["--banner", "login"]):
        result = run_cli("report", *args)
        assert result.code == 4
        assert "has no restore time yet" in result.err
    assert run_cli("report").code == 0  # the report itself is fine: it says what is not recorded


@pytest.mark.parametrize("args", [["--email", "--banner", "x"], ["--email", "--format", "html"],
                                  ["--json", "--format", "md"], ["--format", "pdf"], ["--banner", " "]])
def test_bad_combinations(run_cli: Run, incident: IncidentFixture, args: list[str]) -> None:
    result = run_cli("report", *args)
    assert result.code == 2
    assert result.err.startswith("error: ") and "Traceback" not in result.err


def test_templates_are_overridden_beside_the_config(run_cli: Run, incident: IncidentFixture) -> None:
    overrides = incident.root / ".rollback" / "templates"
    overrides.mkdir(parents=True)
    (overrides / "report.md.j2").write_text(
        "{{ report.incident }} {{ report.summary.severity }}: {{ report.summary.reasons[1].detail }}\n",
        encoding="utf-8")
    result = run_cli("report")
    escaped = r"\[/api/pay\](http://evil.example) \| \*bold\* \<img src=x onerror=alert(1)>"
    assert result.out == f"{INCIDENT} P1: {escaped}\n"
    # the other templates are still the package's
    assert run_cli("report", "--format", "html").out.startswith("<!DOCTYPE html>")


def test_templates_dir_from_the_config(run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = write_incident(tmp_path, monkeypatch, config_extra="")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROLLBACK_CONFIG", raising=False)
    text = fixture.config.read_text(encoding="utf-8")
    fixture.config.write_text('templates_dir = "ops/templates"\n' + text, encoding="utf-8")
    assert run_cli("report").code == 2  # configured but missing: said, not ignored
    (tmp_path / "ops" / "templates").mkdir(parents=True)
    (tmp_path / "ops" / "templates" / "email.txt.j2").write_text(
        "Subject: [RESOLVED] Acme outage\n\nHello,\n{{ what_we_did }}\n- Acme\n", encoding="utf-8")
    result = run_cli("report", "--email")
    assert result.code == 0, result.err
    assert result.out.startswith("Subject: [RESOLVED] Acme outage\n\nHello,\nWe rolled back the application")


@pytest.mark.parametrize(("template", "message"), [
    ("{% for x in %}", "report.md.j2:1: "),
    ("{{ report.no_such_key.deeper }}", "report.md.j2: 'dict object' has no attribute 'no_such_key'"),
    ("{{ ''.__class__.__mro__ }}", "report.md.j2: "),
])
def test_a_broken_template_is_one_line(run_cli: Run, incident: IncidentFixture, template: str, message: str) -> None:
    overrides = incident.root / ".rollback" / "templates"
    overrides.mkdir(parents=True)
    (overrides / "report.md.j2").write_text(template, encoding="utf-8")
    result = run_cli("report")
    assert result.code == 2
    assert message in result.err and "delete it to use the default template" in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


def test_report_is_listed_in_the_incident_section(run_cli: Run) -> None:
    text = run_cli("--help").out
    section = text.split("Incident:\n", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"^\s+report\s", section, re.MULTILINE)
