"""Fixtures shared by every test directory.

- ``run_cli``: runs the real CLI entry point in-process and returns exit code,
  stdout and stderr.
- ``write_config``: writes a rollback.toml into a temp dir from a dict of
  sections.
- ``moto_server``: one moto server for the session (real HTTP); tests get the
  AWS environment pointing at it through ``aws_env``.

Nothing may be skipped, in CI (``CI=true``) or by default anywhere else: a
missing PostgreSQL or Vercel CLI would otherwise turn whole suites into a green
run. Outside CI, ``ROLLBACK_TESTS_ALLOW_SKIP=1`` allows skips (say, on a laptop
without PostgreSQL); in CI nothing does.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ALLOW_SKIP = not IN_CI and os.environ.get("ROLLBACK_TESTS_ALLOW_SKIP", "").lower() in ("1", "true", "yes")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        import json

        return json.loads(self.out)


def forget_secrets() -> None:
    """Empty the redactor's registry, as a new process starts: each CLI run must register the
    secrets it reads itself (a test must not pass because an earlier run registered them)."""
    import rollback.redact as redact

    redact._registered.clear()
    if hasattr(redact, "_ordered"):
        redact._ordered = ()


def next_wall_second() -> float:
    """Wait until the wall clock enters its next whole second and return that moment (``time.time()``).
    For what has one-second resolution (S3's LastModified, names stamped to the second): a condition on
    the clock, at most one second, never a fixed sleep past it."""
    start = int(time.time())
    while (now := time.time()) < start + 1:
        time.sleep(start + 1 - now + 0.001)
    return now


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    from rollback.cli import main

    def run(*args: str) -> CliResult:
        forget_secrets()
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def render_config(envs: dict[str, dict[str, dict[str, Any]]], default_env: str | None = None,
                  journal_dir: str | None = None) -> str:
    lines: list[str] = []
    if default_env:
        lines.append(f'default_env = "{default_env}"')
    if journal_dir:
        lines += ["[journal]", f"dir = {_toml_value(journal_dir)}"]
    for env, sections in envs.items():
        for section, values in sections.items():
            lines.append(f"[env.{env}.{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config({"production": {"vercel": {"project": "p"}}}, default_env="production")``."""

    def write(envs: dict[str, dict[str, dict[str, Any]]], default_env: str | None = None,
              journal_dir: str | None = None, name: str = "rollback.toml") -> Path:
        path = tmp_path / name
        path.write_text(render_config(envs, default_env, journal_dir), encoding="utf-8")
        return path

    return write


@pytest.fixture
def declarations() -> Iterator[None]:
    """Step actions a test declares (``rollback.actions.action``) are forgotten after it: no other test of
    this process sees them in the registry."""
    from rollback.actions import DECLARED

    before = dict(DECLARED)
    yield
    DECLARED.clear()
    DECLARED.update(before)


@pytest.fixture(params=[True, False], ids=["journal-redacts", "journal-does-not-redact"])
def journal_redaction(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run an end-to-end secrets test twice: with the journal's own redaction, and with it
    switched off (a test-only switch), to prove that every value reaching the journal was
    already redacted where it was made; ``Journal.write`` must not be the only guard."""
    from rollback.journal import Journal

    monkeypatch.setattr(Journal, "redact_entries", bool(request.param))
    return bool(request.param)


@dataclass
class SmallDisk:
    """A directory on a disk that a test can fill at a chosen moment.

    ``tmpfs``: a 256 kB tmpfs mounted for the test (needs root); :meth:`fill` pads the
    journal's last page with blank lines (which the reader skips) and fills the rest of the
    disk, so the journal's next write needs a page that is not there. ``dev-full``, where
    nothing can be mounted: :meth:`fill` puts ``/dev/full`` under the journal's file
    descriptor (``dup2``), whose writes fail with ENOSPC. Either way the failing write is
    the kernel's, through the journal's own ``os.write``.
    """

    path: Path
    mode: str
    note: str = ""

    def fill(self, journal: Any = None) -> None:
        import errno

        if self.mode == "dev-full":
            assert journal is not None and journal._fd is not None, "dev-full needs the open journal"
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, journal._fd)
            os.close(full)
            return
        if journal is not None and journal.path.exists():
            size = journal.path.stat().st_size
            with journal.path.open("ab") as handle:
                handle.write(b"\n" * (-size % 4096))
        with (self.path / "filler").open("ab", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)


@pytest.fixture(params=["tmpfs", "dev-full"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    """See :class:`SmallDisk`. Where a tmpfs cannot be mounted (not root, no CAP_SYS_ADMIN), the
    tmpfs case runs the dev-full way instead of skipping, and says so in ``note``."""
    import subprocess

    path = tmp_path / "disk"
    path.mkdir()
    if request.param == "dev-full":
        yield SmallDisk(path, "dev-full")
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        yield SmallDisk(path, "dev-full", note=f"tmpfs not mountable here ({mounted.stderr.strip()}): "
                                               "ran the dev-full way")
        return
    try:
        yield SmallDisk(path, "tmpfs")
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _program_venvs(basetemp: Path) -> Path:
    """The run's one cache of program environments: beside the workers' own temp dirs (a worker's basetemp is
    ``<run>/popen-gwN``; the controller's, and a run without workers', is ``<run>``)."""
    return (basetemp.parent if basetemp.name.startswith("popen-gw") else basetemp) / "program-venvs"


@pytest.fixture(scope="session", autouse=True)
def _shared_program_venvs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One cache of Pulumi program environments for the whole run, every worker and sandbox included
    (``$ROLLBACK_PROGRAM_VENVS``): an environment depends only on its requirements, and each build of the
    program's own (pulumi, pulumi-aws) takes about 25 s of CPU and 370 MB. Builds of the same pins by two
    workers at once wait on each other's lock. tests/stack/test_program_env.py checks the per-root default."""
    from rollback.adapters.program_venv import VENVS_ENV

    if os.environ.get(VENVS_ENV):  # given from outside: use it
        yield
        return
    shared = _program_venvs(tmp_path_factory.getbasetemp())
    shared.mkdir(exist_ok=True)
    os.environ[VENVS_ENV] = str(shared)
    try:
        yield
    finally:
        os.environ.pop(VENVS_ENV, None)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from rollback.sandbox.aws import start_moto

    server = start_moto()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from rollback.sandbox.aws import moto_environment

    for key, value in moto_environment(moto_server).items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A skipped test (marker or pytest.skip) fails instead, unless ROLLBACK_TESTS_ALLOW_SKIP=1
    outside CI: nothing is skipped silently."""
    outcome = yield
    report = outcome.get_result()
    if not ALLOW_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        where = "in CI" if IN_CI else "without ROLLBACK_TESTS_ALLOW_SKIP=1"
        report.longrepr = f"skipped {where}, which is not allowed: {report.longrepr}"


# --- every AWS call the CLI makes, for the operator-role test (tests/aws_calls.py) ---------------------


@pytest.fixture(autouse=True)
def _no_team_lease_left_held() -> Iterator[None]:
    """The team leases this process holds are process-wide (``rollback.lock._HELD``, what every step's
    ``ensure_held`` checks). A test that stops between taking one and closing its journal (a failed
    assertion, a TypeError) must not leave it there: on an xdist worker every later test's run would find
    it lost and stop with exit 4, turning one failure into forty."""
    yield
    from rollback import lock

    lock._HELD.clear()


def _default_signals() -> None:
    """A suite started in the background (``&`` in a script, ``nohup``, some CI runners) inherits SIGINT
    (and SIGHUP, SIGTERM) as *ignored*, and an ignored signal stays ignored across ``exec``: every child
    the signal tests start would then shrug off the signal they are sent. Back to the defaults, in this
    process and so in its children."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def pytest_configure(config: pytest.Config) -> None:
    from tests import aws_calls

    _default_signals()
    # db commands prefer $DIRECT_URL (database.direct_url_env) when it is set: a developer's own must not
    # point the tests' commands at their database.
    os.environ.pop("DIRECT_URL", None)
    aws_calls.install()
    config.addinivalue_line(
        "markers", "after_aws_tests: runs after every other test (it reads the AWS calls they recorded)")


def sandbox_group(item: pytest.Item) -> str | None:
    """The pytest-xdist group of a test that uses the session's sandbox (tests/sandbox/conftest.py), else
    None. Each group runs on one worker, which starts one sandbox for it (the fixture is per worker
    session); two groups let the sandbox tests run on two workers at once, each with its own world."""
    if "sandbox" not in getattr(item, "fixturenames", ()):
        return None
    # The runs (rollback run, and rollback watch's automatic ones) on one worker, the rest of the world's
    # tests on another: two sandboxes, about as long as each other.
    return "sandbox-runs" if item.path.name in ("test_run.py", "test_watch.py") else "sandbox-world"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = sandbox_group(item)
        if group is not None:  # a test of the session's sandbox: the full run, not the inner loop
            item.add_marker(pytest.mark.xdist_group(group))
            item.add_marker(pytest.mark.slow)
    # The slow tests first, so that on several workers the long ones start early rather than finish
    # late (the same order in every worker: xdist requires it); the operator-role check last.
    items.sort(key=lambda item: 2 if item.get_closest_marker("after_aws_tests") else
               0 if item.get_closest_marker("slow") else 1)


def pytest_runtest_setup(item: pytest.Item) -> None:
    from tests import aws_calls

    aws_calls.current_test(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests import aws_calls

    aws_calls.dump()
    if not hasattr(session.config, "workerinput"):  # the controller, once every worker has ended
        from rollback.adapters.program_venv import VENVS_ENV

        factory = getattr(session.config, "_tmp_path_factory", None)
        if factory is not None and not os.environ.get(VENVS_ENV):  # not one given from outside
            shutil.rmtree(_program_venvs(factory.getbasetemp()), ignore_errors=True)  # about 370 MB each
