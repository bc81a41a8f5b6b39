"""The HTML report rendered by a real headless browser (Debian's ``chromium``; ``.ci/run``
installs it when missing): the page the browser builds shows the report's text, the
record's hostile strings as written (no element, no script run), and the SVG timeline."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.report.fixture_incident import HOSTILE_DETAIL, HOSTILE_PATH, IncidentFixture

# Each test here starts a sandbox or a browser of its own: the full run, not the inner loop.
pytestmark = pytest.mark.slow

Run = Callable[..., CliResult]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH (bash .ci/run installs Debian's chromium package)")


class Dom(HTMLParser):
    """Elements and visible text of a dumped DOM (``<style>``/``<title>`` text left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"
        if tag in ("style", "head"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False
        if tag in ("style", "head"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title and not self.title:
            self.title = data
        if not self._skip:
            self.text.append(data)

    def count(self, tag: str) -> int:
        return sum(1 for name, _ in self.tags if name == tag)

    def visible_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def render_in_chromium(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               *extra, page.as_uri()]
    env = {**os.environ, "HOME": str(tmp_path)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


def test_html_report_renders_in_headless_chromium(run_cli: Run, incident: IncidentFixture, tmp_path: Path) -> None:
    page = tmp_path / "incident.html"
    assert run_cli("report", "--format", "html", "--out", str(page)).code == 0
    done = render_in_chromium(page, tmp_path, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Dom()
    dom.feed(done.stdout)
    text = dom.visible_text()

    # the page the browser built is the report
    for heading in ("Summary", "Timeline", "Root Cause Analysis", "Impact Assessment", "Resolution",
                    "Actions taken", "Verification", "Rollback metrics", "Prevention", "Action Items",
                    "Lessons Learned"):
        assert heading in text, heading
    assert "Incident Report: 2026-11-28 P1 on production" in text
    assert "09:15:30 Issue detected" in text
    assert "Time to verify < 5 min 11 min 20 s missed" in text
    assert "Total recovery time < 15 min 17 min 30 s missed" in text
    assert "app_replaced_20261128T092200" in text

    # text from the record shows as written: no element was made of it, no script ran
    assert HOSTILE_DETAIL in text
    assert HOSTILE_PATH in text
    assert dom.count("script") == 0 and dom.count("img") == 0
    assert not any(tag == "a" for tag, _ in dom.tags)
    assert dom.title.startswith("Incident Report: 2026-11-28 P1")  # a script would have set it to 'pwned'

    # the timeline: one inline SVG, a segment per phase, a marker per target
    assert dom.count("svg") == 1
    rects = [attrs for tag, attrs in dom.tags if tag == "rect"]
    assert [a.get("class") for a in rects] == ["seg-met", "seg-met", "seg-met", "seg-missed"]
    assert sum(1 for tag, attrs in dom.tags if tag == "line" and "marker" in (attrs.get("class") or "")) == 5
    assert "detect 3 min 30 s" in text and "verify 11 min 20 s" in text and "total target (15 min)" in text


def test_html_report_screenshot_is_drawn(run_cli: Run, incident: IncidentFixture, tmp_path: Path) -> None:
    """A screenshot comes out (its layout was judged by eye when the template was written)."""
    page = tmp_path / "incident.html"
    assert run_cli("report", "--format", "html", "--out", str(page)).code == 0
    shot = tmp_path / "incident.png"
    done = render_in_chromium(page, tmp_path, "--window-size=1100,1600", f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


# --------------------------------------------------------------------------- the timeline's labels, measured

MEASURE = """<pre id="measured"></pre>
<script>
const svg = document.querySelector("figure svg");
const frame = svg.getBoundingClientRect();
const boxes = [...svg.querySelectorAll("text")].map(t => {
  const r = t.getBoundingClientRect();
  return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
});
document.getElementById("measured").textContent = JSON.stringify(
  {svg: {left: frame.left, right: frame.right, top: frame.top, bottom: frame.bottom}, boxes: boxes});
</script>
"""


def _incident_of(seconds: float) -> dict[str, object]:
    """An incident record ``seconds`` long from the deployment to the verification, shaped like a drill's:
    detected halfway, decided and rolled back quickly, verified at the end."""
    import datetime as dt

    start = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
    share = {"deployment_initiated": 0.0, "detected": 0.45, "decided": 0.47, "initiated": 0.5, "restored": 0.55,
             "verified": 1.0}
    timeline = {key: (start + dt.timedelta(seconds=seconds * part)).isoformat().replace("+00:00", "Z")
                for key, part in share.items()}
    return {"id": f"INC-{int(seconds)}s", "env": "sandbox", "drill": True, "status": "closed", "timeline": timeline,
            "severity": "P0", "layers": ["app"], "reasons": [], "events": [], "runs": []}


def measured_labels(page_html: str, width: int, tmp_path: Path) -> dict[str, object]:
    """The timeline's text boxes as headless Chromium lays them out at ``width`` px: the report page with the
    measuring script added (and its Content-Security-Policy, which forbids scripts, taken out), the
    measurements written into the DOM and read back with ``--dump-dom``."""
    import json
    import re

    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page_html)
    assert "<script" not in page
    page = page.replace("</body>", MEASURE + "</body>")
    path = tmp_path / f"timeline-{width}.html"
    path.write_text(page, encoding="utf-8")
    done = render_in_chromium(path, tmp_path, f"--window-size={width},1400", "--dump-dom",
                              "--virtual-time-budget=5000")
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found and found.group(1), done.stdout[-2000:]
    import html

    return dict(json.loads(html.unescape(found.group(1))))


@pytest.mark.parametrize("seconds", [10, 240, 2400], ids=["10s", "4min", "40min"])
def test_timeline_labels_never_overlap_nor_leave_the_picture(seconds: int, tmp_path: Path) -> None:
    """The axis scales to the incident (a 10-second sandbox incident put every label on one spot of a
    15-minute axis, and clipped the total target's). At 800 and 1200 px, for a 10 s, 4 min and 40 min
    incident, no text box of the picture overlaps another or leaves the SVG, measured in the browser."""
    from rollback.commands.report import render
    from rollback.model.report import build_report
    from rollback.templating import Templates

    data = build_report(_incident_of(seconds), [], generated_at="2026-12-01T04:00:00Z")
    bar = data["timeline_bar"]
    assert bar["span_seconds"] < seconds * 2 or seconds >= 2400  # scaled to the incident, not to 15 min
    if seconds == 10:
        assert {t["phase"] for t in bar["offscale"]} == {"detect", "decide", "rollback", "verify", "total"}
    page = render(data, "html", Templates.for_config(None))
    for width in (800, 1200):
        found = measured_labels(page, width, tmp_path)
        frame = found["svg"]
        boxes = found["boxes"]
        assert isinstance(frame, dict) and isinstance(boxes, list) and len(boxes) >= 8, found
        texts = [b["text"] for b in boxes]
        assert any(t.startswith("detect ") for t in texts) and any("total target" in t for t in texts), texts
        for box in boxes:  # inside the picture (half a pixel of rounding allowed)
            assert box["right"] > box["left"] and box["bottom"] > box["top"], box
            assert frame["left"] - 0.5 <= box["left"] and box["right"] <= frame["right"] + 0.5, (width, box, frame)
            assert frame["top"] - 0.5 <= box["top"] and box["bottom"] <= frame["bottom"] + 0.5, (width, box, frame)
        for index, one in enumerate(boxes):
            for other in boxes[index + 1:]:
                apart = (one["right"] <= other["left"] + 0.5 or other["right"] <= one["left"] + 0.5
                         or one["bottom"] <= other["top"] + 0.5 or other["bottom"] <= one["top"] + 0.5)
                assert apart, (width, seconds, one, other)
