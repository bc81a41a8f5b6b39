"""README's practice examples run as written, in order, each practice against its own sandbox.

Every fenced ``bash`` block preceded by ``<!-- readme-test: sandbox -->`` is extracted and run by bash,
as a new user would type them after ``source .venv/bin/activate``. The blocks form chains: a chain
starts at a block that starts a sandbox itself (``rollback sandbox up ...`` or ``rollback drill ...``)
and takes the blocks after it, in README order, until the next such block. Each chain is one test: its
blocks run in one shell (so ``eval "$(rollback sandbox status)"`` carries over), in a fresh directory
with a throwaway HOME, so that the chains can run at the same time on different pytest-xdist workers.
Each command must exit with the code its comment documents (``# exit 3: ...``; ``exit 0 or 3``), else
0, and print the severity its comment claims (``# P0: ...``: a line of its output starts with ``P0:``).
An example that stops working, or that prints another severity than the README says, fails this test;
so does a practice section with an unmarked block, or a marked block with a ``<placeholder>`` left for
the reader to fill in.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rollback.sandbox.world import Sandbox

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARK = "<!-- readme-test: sandbox -->"
FENCE = re.compile(r"^```bash\s*$")
EXPECTED = re.compile(r"\bexit (\d+)(?: or (\d+))?")
SEVERITY = re.compile(r"^(P[0-3])\b")  # a comment that starts with a severity claims the command prints it
PLACEHOLDER = re.compile(r"<[A-Za-z][A-Za-z0-9_ -]*>")


def marked_blocks(text: str) -> list[str]:
    """The marked ``bash`` blocks, in order."""
    lines = text.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if line.strip() == MARK:
            assert FENCE.match(lines[index + 1]), f"README line {index + 2}: {MARK} must precede a ```bash fence"
            end = next(i for i in range(index + 2, len(lines)) if lines[i].startswith("```"))
            blocks.append("\n".join(lines[index + 2:end]))
    return blocks


def practice_sections(text: str) -> dict[str, list[tuple[bool, str]]]:
    """Every ``bash`` block under a "Practise" heading: (marked?, first line)."""
    sections: dict[str, list[tuple[bool, str]]] = {}
    heading = ""
    fenced = False
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("```"):
            if not fenced and FENCE.match(line) and "Practise" in heading:
                marked = index > 0 and lines[index - 1].strip() == MARK
                sections.setdefault(heading, []).append((marked, lines[index + 1] if index + 1 < len(lines) else ""))
            fenced = not fenced
        elif not fenced and re.match(r"^#{1,6} ", line):
            heading = f"{line} (README line {index + 1})"
    return sections


def split_comment(line: str) -> tuple[str, str]:
    """``(command, comment)``: the comment is the first ``#`` outside quotes that starts a word."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1:].strip()
    return line.rstrip(), ""


def checked_script(blocks: list[str]) -> str:
    """The blocks as one bash script where each command's exit code is checked against its comment."""
    out = []
    for number, block in enumerate(blocks, start=1):
        out.append(f"echo '=== README block {number}' >&2")
        logical: list[str] = []
        pending = ""
        for raw in block.splitlines():
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            logical.append(pending + raw)
            pending = ""
        for line in logical:
            command, comment = split_comment(line)
            if not command.strip():
                continue
            match = EXPECTED.search(comment)
            codes = {int(c) for c in match.groups() if c is not None} if match else {0}
            allowed = " ".join(str(c) for c in sorted(codes))
            out.append(f"echo {shlex.quote('$ ' + command.strip())} >&2")
            quoted = shlex.quote(command.strip())
            claim = SEVERITY.match(comment)
            if claim:
                # Captured (and printed again): the claim is checked against what it printed.
                out.append(f"__out=$({command}); __rc=$?; printf '%s\\n' \"$__out\"")
            else:
                out.append(command)
                out.append("__rc=$?")
            out.append(f'case " {allowed} " in *" $__rc "*) ;; *) '
                       f'echo "README example failed (exit $__rc, documented {allowed}): "{quoted} >&2; exit 97;; esac')
            if claim:
                severity = claim.group(1)
                out.append(f'if ! printf \'%s\\n\' "$__out" | grep -q \'^{severity}: \'; then echo "README example '
                           f'printed $(printf \'%s\\n\' "$__out" | grep -o \'^P[0-3]: \' | head -1)not the documented '
                           f'{severity}: "{quoted} >&2; exit 98; fi')
    return "\n".join(out) + "\n"


def test_practice_sections_mark_every_block() -> None:
    text = README.read_text(encoding="utf-8")
    sections = practice_sections(text)
    assert len(sections) >= 4, sections  # the sandbox's own, app, database, break-glass infra
    for heading, blocks in sections.items():
        unmarked = [first for marked, first in blocks if not marked]
        assert not unmarked, f"{heading}: a bash block without {MARK}: {unmarked}"
    for block in marked_blocks(text):
        assert not PLACEHOLDER.search(block), f"a placeholder in a README example:\n{block}"


def test_the_first_command_runs_the_drill() -> None:
    text = README.read_text(encoding="utf-8")
    first = text[text.index("## Two commands"):text.index("## Install")]
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[sandbox]' && .venv/bin/rollback drill --sandbox" \
        in first
    assert "bash tests/run.sh" in first and "source .venv/bin/activate" in first
    assert "@@" not in first  # the sample output was filled in


def test_the_scheduled_drill_workflow() -> None:
    from ruamel.yaml import YAML

    workflow = YAML(typ="safe").load((ROOT / "examples" / "drill.yml").read_text(encoding="utf-8"))
    triggers = workflow.get("on") or workflow.get(True)  # YAML 1.1 reads a bare `on` as true
    assert [s["cron"] for s in triggers["schedule"]] == ["0 9 1 1,4,7,10 *"]  # quarterly, as the runbook asks
    assert "workflow_dispatch" in triggers
    steps = workflow["jobs"]["drill"]["steps"]
    runs = "\n".join(str(step.get("run", "")) for step in steps)
    assert "pip install -q -e '.[sandbox]'" in runs and "rollback drill --sandbox" in runs
    upload = next(step for step in steps if str(step.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and "drill-report.md" in upload["with"]["path"]


def test_the_watch_workflow() -> None:
    """examples/watch.yml: on a successful production deployment (Vercel's deployment_status), rollback
    watch for 15 minutes with the deploy's time, never the database, its outcome in the job summary."""
    from ruamel.yaml import YAML

    workflow = YAML(typ="safe").load((ROOT / "examples" / "watch.yml").read_text(encoding="utf-8"))
    triggers = workflow.get("on") or workflow.get(True)  # YAML 1.1 reads a bare `on` as true
    assert "deployment_status" in triggers and "workflow_dispatch" in triggers
    job = workflow["jobs"]["watch"]
    assert "deployment_status.state == 'success'" in job["if"] and "'Production'" in job["if"]
    runs = "\n".join(str(step.get("run", "")) for step in job["steps"])
    assert "rollback watch --for 15m" in runs and "--auto app,edge,assets" in runs and "--deployed-at" in runs
    assert "GITHUB_STEP_SUMMARY" in runs and "exit $code" in runs
    assert job["timeout-minutes"] > 15


def _tool_path() -> str:
    """This venv's bin (rollback, aws) first, then Vercel's CLI where tests/run.sh installs it."""
    from tests.app.test_vercel_cli import vercel_cli

    cli = Path(vercel_cli())  # fails in CI when missing; skipped elsewhere with how to install it
    return os.pathsep.join([str(Path(sys.executable).parent), str(cli.parent), os.environ.get("PATH", "")])


STARTS_A_SANDBOX = re.compile(r"^\s*rollback (sandbox up|drill)\b")


def chains(blocks: list[str]) -> list[list[int]]:
    """The blocks' indexes grouped into chains (see the module docstring)."""
    found: list[list[int]] = []
    for index, block in enumerate(blocks):
        first = next((line for line in block.splitlines() if line.strip()), "")
        if STARTS_A_SANDBOX.match(first) or not found:
            found.append([])
        found[-1].append(index)
    return found


BLOCKS = marked_blocks(README.read_text(encoding="utf-8"))
CHAINS = chains(BLOCKS)


def test_the_practice_examples_are_chains_that_start_a_sandbox() -> None:
    assert len(BLOCKS) >= 8
    assert len(CHAINS) >= 4  # the sandbox's own, app, database, break-glass infra
    for chain in CHAINS:
        first = next(line for line in BLOCKS[chain[0]].splitlines() if line.strip())
        assert STARTS_A_SANDBOX.match(first), f"README block {chain[0] + 1} must start a sandbox: {first}"


@pytest.mark.slow
@pytest.mark.parametrize("chain", CHAINS, ids=["blocks-" + "-".join(str(i + 1) for i in c) for c in CHAINS])
def test_readme_practice_examples_run_as_written(chain: list[int], tmp_path: Path) -> None:
    blocks = [BLOCKS[index] for index in chain]
    script = checked_script(blocks)
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    keep = ("LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    # The machine's package index settings (PIP_INDEX_URL, PIP_FIND_LINKS...): the offline preview builds
    # version 3's environment with pip, as a reader's machine would with its own.
    env.update({name: value for name, value in os.environ.items() if name.startswith("PIP_")})
    # decide --live and status read their sources within 1.5 s (the product's target), and a source that
    # misses it is "not measured"/"not read", which would change the severity and the exit code the README
    # claims. The machine running the suite is shared and loaded: the budget is raised here on purpose
    # (as tests/sandbox/test_decide_live.py does), for what the examples claim is what is read, not how fast.
    env["ROLLBACK_DECIDE_BUDGET"] = "30"
    env.update({"PATH": _tool_path(), "HOME": str(home), "CI": "1", "NO_COLOR": "1", "PAGER": "cat", "AWS_PAGER": "",
                "PSQLRC": os.devnull, "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local" / "share"),
                "PYTHONDONTWRITEBYTECODE": "1"})
    (work / "examples.sh").write_text(script, encoding="utf-8")
    text = "\n".join(blocks)
    try:
        done = subprocess.run(["bash", "examples.sh"], cwd=work, env=env, capture_output=True, text=True,
                              timeout=1200, stdin=subprocess.DEVNULL)
        tail = "\n".join(done.stderr.splitlines()[-60:])
        assert done.returncode == 0, f"exit {done.returncode}\n{tail}"
        # A few outcomes the examples promise, beyond their exit codes.
        if "--out drill.html" in text:
            assert (work / "drill.html").is_file()
        if "rollback app revert" in text:
            assert "Revert \\\"Add new feature\\\"" in done.stdout or 'Revert "Add new feature"' in done.stdout
    finally:
        Sandbox.down(work / ".rollback" / "sandbox")
    assert Sandbox.status(work / ".rollback" / "sandbox") is None


def _run_checked(block: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "check.sh").write_text(checked_script([block]), encoding="utf-8")
    return subprocess.run(["bash", "check.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_the_commented_claims_are_compared_with_what_runs(tmp_path: Path) -> None:
    """A comment's exit code and severity are checked against the command's, not taken on trust."""
    assert _run_checked("echo 'P0: immediate rollback'   # P0: data lost", tmp_path).returncode == 0
    wrong = _run_checked("echo 'P0: immediate rollback'   # P1: alarms in ALARM", tmp_path)
    assert wrong.returncode == 98 and "printed P0: not the documented P1" in wrong.stderr
    assert _run_checked("sh -c 'exit 3'   # exit 3: drifted", tmp_path).returncode == 0
    code = _run_checked("sh -c 'exit 3'   # drifted", tmp_path)
    assert code.returncode == 97 and "(exit 3, documented 0)" in code.stderr
    status = _run_checked("sh -c 'echo P2: fix forward; exit 3'   # P2 and exit 3", tmp_path)
    assert status.returncode == 0 and "P2: fix forward" in status.stdout  # still shown


@pytest.mark.parametrize("line, expected", [
    ("rollback infra drift           # exit 3: drifted", ("rollback infra drift", "exit 3: drifted")),
    ("curl -s $E -d '{\"path\": \"#x\"}'  # a fault", ("curl -s $E -d '{\"path\": \"#x\"}'", "a fault")),
    ("rollback sandbox up", ("rollback sandbox up", "")),
])
def test_split_comment(line: str, expected: tuple[str, str]) -> None:
    assert split_comment(line) == expected
