"""The CLI contract through the real entry point: exit codes, one-line errors,
--json purity, masked secrets, and a fast --help that imports nothing heavy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

RunCli = Callable[..., CliResult]

VALID = {
    "production": {
        "vercel": {"project": "prj_abc"},
        "health": {"base_url": "https://app.example.com"},
        "database": {"url_env": "DATABASE_URL", "tables": ["User"]},
    },
    "staging": {"vercel": {"project": "prj_stg"}},
}


def assert_one_line_error(result: CliResult, code: int, *fragments: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert lines[0].endswith(")"), "the line ends with what to do, in parentheses"
    assert "Traceback" not in result.err + result.out
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_groups_and_exit_codes(run_cli: RunCli) -> None:
    result = run_cli("--help")
    assert result.code == 0
    for word in ("config", "journal", "Setup:", "Exit codes", "--env", "--config"):
        assert word in result.out
    assert run_cli().out == result.out  # no arguments prints the same help


def test_version(run_cli: RunCli) -> None:
    from rollback import __version__

    result = run_cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"rollback, version {__version__}"


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "rollback", "--version"], capture_output=True, text=True,
                         check=True)
    assert "rollback, version" in out.stdout


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from rollback.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('boto3', 'botocore', 'httpx', 'psycopg', 'pulumi', 'pydantic', 'rich') "
        "if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY="


def test_config_check_valid_masks_secrets(run_cli: RunCli, write_config: Callable[..., Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(VALID, default_env="production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:Sup3r-Secret@db.internal:5432/app")
    monkeypatch.setenv("VERCEL_TOKEN", "vercel-token-0123456789")
    result = run_cli("--config", str(path), "config", "check")
    assert result.code == 0, result.err
    assert "valid (env production)" in result.err
    assert "postgresql://app:***@db.internal:5432/app" in result.out
    for secret in ("Sup3r-Secret", "vercel-token-0123456789"):
        assert secret not in result.out + result.err

    as_json = run_cli("config", "check", "--config", str(path), "--env", "staging", "--json")
    assert as_json.code == 0
    document = as_json.json()  # stdout holds exactly one JSON document
    assert document["env"] == "staging"
    assert document["secrets"]["VERCEL_TOKEN"] == "***"
    assert document["settings"]["targets"] == {"detect": 5, "decide": 2, "rollback": 10, "verify": 5,
                                               "total": 15, "rpo": 5}


def test_config_check_failures_exit_2_with_one_line(run_cli: RunCli, write_config: Callable[..., Path],
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROLLBACK_CONFIG", raising=False)
    monkeypatch.delenv("ROLLBACK_ENV", raising=False)
    assert_one_line_error(run_cli("config", "check"), 2, "no rollback.toml", "rollback config init")
    assert_one_line_error(run_cli("--config", "nope.toml", "config", "check"), 2, "does not exist")

    path = write_config(VALID, default_env="production")
    assert_one_line_error(run_cli("--config", str(path), "--env", "qa", "config", "check"), 2,
                          "unknown environment 'qa'", "production, staging")

    bad_type = tmp_path / "bad.toml"
    bad_type.write_text('[env.p.vercel]\nproject = "x"\n[env.p.targets]\ntotal = "fifteen"\n')
    assert_one_line_error(run_cli("--config", str(bad_type), "config", "check"), 2,
                          "bad.toml:4: env.p.targets.total")

    secret = tmp_path / "secret.toml"
    secret.write_text('[env.p.vercel]\nproject = "x"\ntoken = "tok_live_abcdef"\n')
    result = run_cli("--config", str(secret), "config", "check")
    assert_one_line_error(result, 2, "env.p.vercel.token", "VERCEL_TOKEN")
    assert "tok_live_abcdef" not in result.err

    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(os.urandom(64) + b"\n[[[ = =\n")
    assert_one_line_error(run_cli("--config", str(garbage), "config", "check"), 2)

    as_json = run_cli("--config", str(secret), "config", "check", "--json")
    assert as_json.code == 2
    assert as_json.json()["ok"] is False
    assert as_json.json()["error"]["exit_code"] == 2


def test_usage_errors_exit_2_with_one_line(run_cli: RunCli) -> None:
    assert_one_line_error(run_cli("config", "check", "--bogus"), 2, "No such option", "--help")
    assert_one_line_error(run_cli("no-such-command"), 2, "No such command")
    assert_one_line_error(run_cli("journal", "list", "--limit", "zero"), 2, "--limit")


def test_config_init_refuses_to_overwrite(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("config", "init", "--path", str(tmp_path)).code == 0
    assert (tmp_path / "rollback.toml").is_file()
    assert_one_line_error(run_cli("config", "init", "--path", str(tmp_path)), 4, "already exists", "--force")
    assert run_cli("config", "init", "--path", str(tmp_path), "--force").code == 0


def test_config_init_into_a_directory(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli("config", "init", "--path", "sub/").code == 0  # a name ending in / is a directory
    assert (tmp_path / "sub" / "rollback.toml").is_file()
    assert run_cli("config", "init", "--path", "other.toml").code == 0  # anything else is the file itself
    assert (tmp_path / "other.toml").is_file()
    (tmp_path / "plain").write_text("")
    assert_one_line_error(run_cli("config", "init", "--path", "plain/"), 2, "is not a directory")


def test_journal_list_and_show(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rollback.journal import Journal
    from rollback.plan import Plan, Step
    from rollback.runner import execute, handler

    monkeypatch.setenv("ROLLBACK_JOURNAL_DIR", str(tmp_path / "runs"))
    journal = Journal.start(tmp_path / "runs", command="rollback app rollback", env="production")
    plan = Plan.of("t", "production", [Step("one", "a", "first step"), Step("two", "a", "second step")])
    execute(plan, {"a": handler(lambda step, ctx: {"n": 1})}, journal=journal)

    listed = run_cli("journal", "list", "--json")
    assert listed.code == 0
    runs = listed.json()["runs"]
    assert runs[0]["run"] == journal.run_id and runs[0]["status"] == "succeeded"

    shown = run_cli("journal", "show", journal.run_id[:22], "--json")
    assert shown.code == 0
    assert shown.json()["last_completed_step"] == "two"
    human = run_cli("journal", "show", "last")
    assert "succeeded" in human.out and "second step" in human.out
    assert_one_line_error(run_cli("journal", "show", "20990101"), 2, "no run")


KILLED_RUN = r"""
import sys, time
from pathlib import Path
from rollback.journal import Journal
from rollback.plan import Plan, Step
from rollback.runner import execute, handler

journal = Journal.start(Path(sys.argv[1]), command="rollback db restore", env="production")
print(journal.run_id, flush=True)
plan = Plan.of("restore", "production", [
    Step("backup", "work", "emergency backup"),
    Step("restore", "work", "restore into app_restored"),
    Step("swap", "hang", "swap into place"),
])
def work(step, ctx):
    return {"step": step.id}
def hang(step, ctx):
    print("HANGING", flush=True)
    time.sleep(60)
execute(plan, {"work": handler(work), "hang": handler(hang)}, journal=journal)
"""


def test_a_journal_written_by_a_killed_process_still_parses(run_cli: RunCli, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(runs)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "HANGING"
    proc.kill()  # SIGKILL: no handler, no flush, no cleanup
    assert proc.wait(timeout=10) == -9

    monkeypatch.setenv("ROLLBACK_JOURNAL_DIR", str(runs))
    shown = run_cli("journal", "show", run_id, "--json")
    assert shown.code == 0, shown.err
    document = shown.json()
    assert document["status"] == "unfinished"
    assert document["last_completed_step"] == "restore"
    assert [s["status"] for s in document["steps"]] == ["done", "done", "started"]
    human = run_cli("journal", "show", run_id)
    assert "last completed step: restore" in human.out


def test_a_journal_left_open_by_a_failing_command_is_finished_and_unlocked(
        run_cli: RunCli, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """An error between starting the journal and running the plan still closes the run."""
    import click

    from rollback.cli import SUBCOMMANDS
    from rollback.cli.support import AppContext, pass_app
    from rollback.errors import UnsafePrecondition
    from rollback.journal import list_runs

    @click.command()
    @pass_app
    def fails(app: AppContext) -> None:
        app.start_journal()
        raise UnsafePrecondition("the target is not READY", "pick another deployment")

    module = type(sys)("tests_fake_group")
    module.fails = fails  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_fake_group", module)
    monkeypatch.setitem(SUBCOMMANDS, "fails", ("tests_fake_group:fails", "Incident"))
    path = write_config(VALID, default_env="production")
    for _ in range(2):  # the second run is not refused by a lock left behind
        result = run_cli("--config", str(path), "fails")
        assert_one_line_error(result, 4, "the target is not READY")
    runs = list_runs(path.parent / ".rollback" / "runs")
    assert [r.status for r in runs] == ["refused", "refused"]
    assert runs[0].finished is not None and "not READY" in runs[0].finished["error"]


PROGRAM = """
import atexit, sys, threading
import rollback.cli as cli

class Teardown:
    def __del__(self):
        print("teardown ran", flush=True)

kept = Teardown()  # a module global: only the interpreter's teardown frees it

def fake_main():
    go = threading.Event()

    def late():
        go.wait()
        print("thread finished")

    threading.Thread(target=late).start()  # not a daemon: a normal exit joins it first
    atexit.register(lambda: print("handler ran"))
    print("main printed")  # left in the buffer: the exit flushes it
    go.set()
    return int(sys.argv[1])

cli.main = fake_main
cli.run()
"""


@pytest.mark.parametrize("code", [0, 3])
def test_the_program_exits_as_python_would_but_skips_the_teardown(code: int) -> None:
    """``rollback.cli.run`` (the console script, ``python -m rollback``) exits with main's code after
    what a normal exit does first (non-daemon threads joined, then the other exit handlers, then the
    buffers flushed) and skips only the interpreter's teardown (about 0.1 s of CPU for a command that
    loaded botocore, pydantic, psycopg: bench/decide.py)."""
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(code)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == code, done.stderr
    assert done.stdout.splitlines() == ["main printed", "thread finished", "handler ran"], done.stdout
    assert done.stderr == ""


def test_the_program_keeps_the_exit_code_of_a_system_exit_and_of_an_error() -> None:
    raised = PROGRAM.replace("    return int(sys.argv[1])", "    sys.exit(int(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", raised, "5"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 5, done.stderr
    bad = subprocess.run([sys.executable, "-m", "rollback", "decide", "--no-such-flag"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: No such option"), bad.stderr
