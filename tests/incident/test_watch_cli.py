"""``rollback watch`` through the CLI without the sandbox: the kill switch (a local file beside the lock, and
an S3 object beside the team lease against the moto server), bad flags, and the real loop (a real process,
real HTTP, the real clock) against a health URL that fails a seeded random 20 % of its requests.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rollback.sandbox.serving import QuietDisconnects
from rollback.watchstate import WatchState
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rollback.toml"
    path.write_text('default_env = "production"\n[journal]\ndir = "runs"\n'
                    '[env.production.health]\nbase_url = "http://127.0.0.1:9"\npaths = ["/api/health"]\n',
                    encoding="utf-8")
    monkeypatch.setenv("ROLLBACK_CONFIG", str(path))
    return path


def test_pause_and_resume_keep_a_switch_beside_the_lock(config_path: Path, run_cli: RunCli, tmp_path: Path) -> None:
    paused = run_cli("watch", "--pause", "--reason", "freeze [/api/pay] \x1b[31m", "--json")
    assert paused.code == 0, paused.err
    document = paused.json()
    assert document["paused"]["reason"] == "freeze [/api/pay] \x1b[31m" and document["paused"]["where"] == "local"
    files = list((tmp_path / "locks").glob("*.paused.json"))  # beside the lock file, named as it is
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    shown = run_cli("watch", "--pause", "--reason", "freeze [/api/pay] \x1b[31m")
    assert "freeze [/api/pay] \\x1b[31m" in shown.out  # text is text: markup as written, ESC escaped
    lifted = run_cli("watch", "--resume")
    assert lifted.code == 0 and "lifted" in lifted.out and not files[0].exists()
    again = run_cli("watch", "--resume")
    assert again.code == 0 and "was not paused" in again.out


@pytest.mark.parametrize(("args", "message"), [
    (("--auto", "app,db"), "never restores the database"),
    (("--pause", "--resume"), "exclude each other"),
    (("--reason", "x"), "--reason goes with --pause"),
    (("--interval", "0s"), "--interval must be"),
    (("--for", "0s"), "--for must be"),
    (("--min-bad", "0"), "--min-bad"),
    (("--for", "soon"), "is not a duration"),
])
def test_bad_flags_are_one_line_and_exit_2(config_path: Path, run_cli: RunCli, args: tuple[str, ...],
                                           message: str) -> None:
    result = run_cli("watch", *args)
    assert result.code == 2, result.err
    assert message in result.err and "Traceback" not in result.err


def test_the_kill_switch_in_s3_holds_for_another_machine(aws_env: str, tmp_path: Path) -> None:
    """With ``[lock] url`` the switch is also an object beside the team lease: a watch on another machine
    (another lock directory, no local file) finds the environment paused, and --resume there lifts it
    for both."""
    import boto3

    from rollback.lock import TeamLock

    bucket = f"team-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    team = f"s3://{bucket}/team"
    laptop = WatchState("production", "cfg-a\0production", TeamLock(team),
                        environ={"ROLLBACK_LOCK_DIR": str(tmp_path / "a")})
    runner = WatchState("production", "cfg-b\0production", TeamLock(team),
                        environ={"ROLLBACK_LOCK_DIR": str(tmp_path / "b")})
    assert runner.paused() is None
    laptop.pause("incident 42", by="alice")
    body = json.loads(s3.get_object(Bucket=bucket, Key="team/locks/production.paused.json")["Body"].read())
    assert body["by"] == "alice" and body["reason"] == "incident 42"
    found = runner.paused()
    assert found is not None and found.where == "team" and found.by == "alice"
    assert runner.resume()  # lifted from the other machine
    assert laptop.paused() is not None  # ... its local copy still says paused: the switch is set where either is
    laptop.resume()
    assert laptop.paused() is None and runner.paused() is None
    # the cooldown record is shared the same way
    laptop.record_auto(watch="w1", incident="INC-1", layers=["app"])
    shared = runner.last_auto()
    assert shared is not None and shared["incident"] == "INC-1"


def test_an_unreadable_team_switch_fails_closed(tmp_path: Path) -> None:
    """A kill switch that cannot be read is an error the watch treats as set (it pages, acts on nothing)."""
    from rollback.errors import AwsError, OperationFailed
    from rollback.lock import TeamLock

    class Down:
        def read(self, key: str) -> Any:
            raise AwsError("could not connect to the endpoint URL", "check the network")

    team = TeamLock("s3://b/p", store_factory=lambda bucket: Down())  # type: ignore[arg-type,return-value]
    state = WatchState("production", "cfg\0production", team, environ={"ROLLBACK_LOCK_DIR": str(tmp_path)})
    with pytest.raises(OperationFailed, match="could not be read"):
        state.paused()


# ------------------------------------------------------------------------------------------ the real loop


class Flapping:
    """A health URL whose n-th answer is 500 when n is in a seeded random 20 % of the first 100."""

    def __init__(self, seed: int) -> None:
        self.bad = set(random.Random(seed).sample(range(1, 101), 20))
        self.count = 0
        self.reached = threading.Event()
        self.lock = threading.Lock()


@pytest.fixture
def flapping() -> Iterator[tuple[Flapping, str]]:
    state = Flapping(seed=22)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.count += 1
                number = state.count
            status = 500 if number in state.bad else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            if number >= 100:
                state.reached.set()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(QuietDisconnects, http.server.ThreadingHTTPServer):
        pass

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_health_url_failing_a_seeded_20_percent_of_100_real_readings_never_rolls_back(
        flapping: tuple[Flapping, str], tmp_path: Path) -> None:
    """The real loop in a real process: 100 readings of a health URL that fails 20 of them at random (seeded):
    no streak reaches --min-bad, nothing is decided, no incident is opened; then SIGTERM stops the watch
    (exit 130) with its document."""
    state, url = flapping
    path = tmp_path / "rollback.toml"
    path.write_text(f'default_env = "production"\n[journal]\ndir = "runs"\n[env.production.health]\n'
                    f'base_url = "{url}"\npaths = ["/api/health"]\n', encoding="utf-8")
    env = {**os.environ, "ROLLBACK_CONFIG": str(path), "ROLLBACK_LOCK_DIR": str(tmp_path / "locks")}
    proc = subprocess.Popen([sys.executable, "-m", "rollback", "watch", "--for", "10m", "--interval", "0.1s",
                             "--json"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert state.reached.wait(120), f"the watch made {state.count} readings in 120 s"
        # The 100th answer is out; let the watch judge it before stopping it: its status line says so.
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    document = json.loads(out)
    readings = document["readings"]
    assert readings["readings"] >= 99 and readings["not_measured"] == 0
    assert 19 <= readings["bad"] <= 20  # the 100th reading may have been cut short by the signal
    assert document["incident"] is None and document["decision"] is None and document["acted"] is None
    assert document["interrupted"] is True
    assert "bad P0 (1/3)" in err and "(3/3)" not in err
    assert not (tmp_path / "incidents").exists() and not (tmp_path / "runs").exists()
