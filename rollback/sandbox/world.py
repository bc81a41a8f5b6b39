"""The sandbox as a Python API: ``up``, ``status``, ``reset`` and ``down`` of one sandbox directory.

``rollback sandbox up|status|reset|down`` are thin over these; tests and the
drill call them directly::

    from rollback.sandbox.world import Sandbox

    info = Sandbox.up(tmp_path / "sandbox")   # starts (or reuses) and seeds; returns SandboxInfo
    info.env["APP_URL"], info.world["vercel"]["good_deployment"]
    Sandbox.reset(tmp_path / "sandbox")       # re-break the world (re-seed every layer)
    Sandbox.down(tmp_path / "sandbox")        # no process and no cluster left behind

One directory holds one sandbox. ``up`` starts the supervisor
(:mod:`rollback.sandbox.supervisor`) detached, in its own session, with its
output in ``DIR/logs/``, and waits until it reports ``ready`` in
``DIR/sandbox.json``; a sandbox already running there is reused, never
started twice, and a stale ``sandbox.json`` (its owner dead) is cleaned up
first. ``down`` stops exactly the processes recorded there (checking each pid
still names the process that was started) and removes the PostgreSQL cluster,
also when the supervisor was SIGKILLed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.errors import BadInput, OperationFailed
from rollback.sandbox.processes import ProcessRef, is_alive, stop_process
from rollback.sandbox.supervisor import (
    LOCK_FILE,
    SEED_FILE,
    STATE_FILE,
    WORLD_FILE,
    lock_holder,
    read_state,
    write_seed_options,
)

__all__ = ["DEFAULT_DIR", "DownResult", "Sandbox", "SandboxInfo", "down", "reset", "status", "up"]

DEFAULT_DIR = Path(".rollback") / "sandbox"
UP_LOCK = "up.lock"
# The order `status` prints the variables in (any others follow).
EXPORT_ORDER = ("ROLLBACK_CONFIG", "ROLLBACK_ENV", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "DATABASE_URL", "VERCEL_API_URL",
                "VERCEL_TOKEN", "VERCEL_ORG_ID", "VERCEL_PROJECT_ID", "VERCEL_SCOPE", "VERCEL_ARGS", "APP_URL",
                "SANDBOX_WEBHOOK_URL")

Progress = Callable[[str], None]


@dataclass
class SandboxInfo:
    """A running sandbox: what ``DIR/sandbox.json`` says, plus the names the runbook's commands need."""

    dir: Path
    state: str
    pids: dict[str, int]
    ports: dict[str, int]
    urls: dict[str, str]
    env: dict[str, str]
    world: dict[str, Any]
    generation: int = 0
    seconds_to_ready: float | None = None
    error: str | None = None
    reused: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_ready(self) -> bool:
        return self.state == "ready"

    @property
    def config_path(self) -> Path:
        return self.dir / "rollback.toml"

    def exports(self) -> dict[str, str]:
        """Every variable ``status`` prints: the environment plus the names the runbook's commands use."""
        env = dict(self.env)
        aws = self.world.get("aws") or {}
        if aws:
            env.setdefault("DISTRIBUTION_ID", str(aws.get("distribution_id", "")))
            env.setdefault("EDGE_FUNCTION", str(aws.get("edge_function", "")))
            env.setdefault("ASSETS_BUCKET", str(aws.get("assets_bucket", "")))
            env.setdefault("DB_INSTANCE", str(aws.get("db_instance", "")))
        if self.env.get("DATABASE_URL"):
            env.setdefault("DATABASE_NAME", "app")
        repo = (self.world.get("git") or {}).get("repo")
        if repo:
            env.setdefault("APP_REPO", str(repo))
        good_backup = (self.world.get("database") or {}).get("good_backup")
        if good_backup:
            env.setdefault("DB_GOOD_BACKUP", str(good_backup))
        program = (self.world.get("pulumi") or {}).get("project_dir")
        if program:
            env.setdefault("PULUMI_PROJECT_DIR", str(program))
        ordered = {k: env[k] for k in EXPORT_ORDER if k in env}
        ordered.update({k: v for k, v in env.items() if k not in ordered})
        return ordered

    def shell(self) -> str:
        """``export NAME=value`` lines, quoted for any POSIX shell, ready to ``eval``."""
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in self.exports().items())

    def to_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "state": self.state, "reused": self.reused, "generation": self.generation,
                "seconds_to_ready": self.seconds_to_ready, "cpu_seconds_to_ready": self.raw.get("cpu_seconds_to_ready"),
                "error": self.error, "config": str(self.config_path),
                "pids": self.pids, "ports": self.ports, "urls": self.urls, "env": self.exports(),
                "processes": self.raw.get("processes", {}), "logs": self.raw.get("logs", {}), "world": self.world}


@dataclass
class DownResult:
    dir: Path
    was_running: bool
    stopped: list[str]
    removed: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "was_running": self.was_running, "stopped": self.stopped,
                "removed": self.removed}


def _info(directory: Path, state: dict[str, Any], *, reused: bool = False) -> SandboxInfo:
    return SandboxInfo(dir=directory, state=str(state.get("state")), pids=dict(state.get("pids") or {}),
                       ports=dict(state.get("ports") or {}), urls=dict(state.get("urls") or {}),
                       env=dict(state.get("env") or {}), world=dict(state.get("world") or {}),
                       generation=int(state.get("generation") or 0), seconds_to_ready=state.get("seconds_to_ready"),
                       error=state.get("error"), reused=reused, raw=state)


def _supervisor_alive(directory: Path) -> bool:
    """Whether a supervisor holds ``DIR/supervisor.lock`` (the one reliable sign of a live owner)."""
    path = directory / LOCK_FILE
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def _up_lock(directory: Path, timeout: float = 300.0) -> Iterator[None]:
    """Serialises ``up``/``down``/``reset`` of one directory (two ``up`` at once start one sandbox)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / UP_LOCK, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OperationFailed(f"another 'rollback sandbox' command holds {directory / UP_LOCK}",
                                          "wait for it to finish") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _check_directory(directory: Path) -> Path:
    resolved = directory.expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise BadInput(f"{directory} is not a directory", "pass --dir a directory for the sandbox")
    return resolved


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def up(directory: Path = DEFAULT_DIR, *, timeout: float = 180.0, progress: Progress | None = None,
       fresh: bool = False, rolling: bool = False) -> SandboxInfo:
    """Start the sandbox in ``directory`` (or reuse the one running there) and return it once seeded.

    With ``fresh``, a sandbox already running is re-seeded (:func:`reset`), so that every layer is
    broken as after a first ``up`` either way. With ``rolling``, the bad app release is the canary of a
    Vercel rolling release at 10 % instead of a full production deployment (a running sandbox seeded
    the other way is re-seeded). Raises :class:`OperationFailed` (with the log's last lines) when it
    cannot start; whatever it started is stopped again. Ctrl-C while waiting stops it too.
    """
    _require_extras()
    directory = _check_directory(directory)
    with _up_lock(directory):
        state = read_state(directory)
        running = state is not None and _supervisor_alive(directory)
        if running and state is not None:
            if state.get("state") not in ("ready", "degraded"):
                return _wait_ready(directory, timeout, progress, reused=True)
            seeded_rolling = bool((state.get("world") or {}).get("rolling"))
            if not fresh and seeded_rolling == rolling:
                return _info(directory, state, reused=True)
        else:
            if state is not None:
                _cleanup(directory, state)  # stale: its owner is dead
            _prepare(directory)
            write_seed_options(directory, rolling=rolling)
            log_path = directory / "logs" / "supervisor.log"
            with open(log_path, "ab") as log_file:
                subprocess.Popen([sys.executable, "-m", "rollback.sandbox.supervisor", "--dir", str(directory)],
                                 stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=str(directory), close_fds=True)
            try:
                return _wait_ready(directory, timeout, progress)
            except BaseException:
                with contextlib.suppress(Exception):
                    _stop(directory, read_state(directory))
                raise
    info = reset(directory, timeout=timeout, rolling=rolling)  # running, and a fresh (or other) world was asked for
    info.reused = True
    return info


def _prepare(directory: Path) -> None:
    """A fresh directory for a new sandbox: the generated files of an earlier one are removed
    (journals, incidents and logs are kept)."""
    for name in ("pulumi", "pulumi-state", "prisma", "backups", "app", "app.git"):
        shutil.rmtree(directory / name, ignore_errors=True)
    for name in (STATE_FILE, WORLD_FILE, SEED_FILE, "rollback.toml"):
        (directory / name).unlink(missing_ok=True)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    log_path = directory / "logs" / "supervisor.log"
    if log_path.exists() and log_path.stat().st_size > 1 << 20:
        log_path.replace(log_path.with_suffix(".log.1"))


def _wait_ready(directory: Path, timeout: float, progress: Progress | None, *, reused: bool = False,
                generation: int = 0) -> SandboxInfo:
    deadline = time.monotonic() + timeout
    announced = ""
    started = time.monotonic()
    while True:
        state = read_state(directory) or {}
        current = str(state.get("state", "starting"))
        if current == "ready" and int(state.get("generation") or 0) > generation:
            return _info(directory, state, reused=reused)
        if current in ("failed", "stopped", "stopping", "degraded") and state.get("error"):
            raise OperationFailed(f"the sandbox did not start: {state.get('error')}",
                                  f"see {directory / 'logs'}; last lines of supervisor.log:\n"
                                  f"{_tail(directory / 'logs' / 'supervisor.log')}")
        if not _supervisor_alive(directory) and time.monotonic() - started > 5:
            raise OperationFailed("the sandbox's supervisor exited before it was ready",
                                  f"see {directory / 'logs' / 'supervisor.log'}:\n"
                                  f"{_tail(directory / 'logs' / 'supervisor.log')}")
        if progress is not None and current != announced:
            progress(f"sandbox {current}...")
            announced = current
        if time.monotonic() > deadline:
            raise OperationFailed(f"the sandbox was not ready within {timeout:g} s",
                                  f"see {directory / 'logs' / 'supervisor.log'}")
        time.sleep(0.05)


def status(directory: Path = DEFAULT_DIR) -> SandboxInfo | None:
    """The running sandbox in ``directory``, or None when none runs there (a stale state counts as none)."""
    directory = _check_directory(directory)
    state = read_state(directory)
    if state is None or not _supervisor_alive(directory):
        return None
    return _info(directory, state)


def reset(directory: Path = DEFAULT_DIR, *, timeout: float = 120.0, rolling: bool = False) -> SandboxInfo:
    """Re-seed every layer of the running sandbox: the bad deploy is back, as after ``up`` (with
    ``rolling``: as the canary of a rolling release at 10 %, as after ``up --rolling``)."""
    directory = _check_directory(directory)
    with _up_lock(directory):
        state = read_state(directory)
        if state is None or not _supervisor_alive(directory):
            raise BadInput(f"no sandbox runs in {directory}", "start one with 'rollback sandbox up'")
        generation = int(state.get("generation") or 0)
        ref = ProcessRef.from_dict(state["processes"]["supervisor"])
        if not is_alive(ref):
            raise OperationFailed(f"the sandbox's supervisor (pid {ref.pid}) is not the recorded process",
                                  "run 'rollback sandbox down' then 'up'")
        write_seed_options(directory, rolling=rolling)
        os.kill(ref.pid, signal.SIGUSR1)
        return _wait_ready(directory, timeout, None, generation=generation)


def down(directory: Path = DEFAULT_DIR, *, timeout: float = 30.0) -> DownResult:
    """Stop the sandbox in ``directory``: its processes (only those recorded, still the same
    processes) and its PostgreSQL cluster. Safe to repeat; a no-op when nothing runs."""
    directory = _check_directory(directory)
    if not directory.is_dir():
        return DownResult(directory, False, [], [])
    with _up_lock(directory):
        state = read_state(directory)
        was_running = _supervisor_alive(directory)
        stopped, removed = _stop(directory, state, timeout=timeout)
        return DownResult(directory, was_running, stopped, removed)


def _stop(directory: Path, state: dict[str, Any] | None, *, timeout: float = 30.0) -> tuple[list[str], list[str]]:
    stopped: list[str] = []
    refs = {name: ProcessRef.from_dict(data) for name, data in ((state or {}).get("processes") or {}).items()}
    supervisor = refs.pop("supervisor", None)
    holder = lock_holder(directory)
    if holder is not None and holder != supervisor and is_alive(holder) and _supervisor_alive(directory):
        supervisor = holder  # the state file names another (older) owner: trust the lock's
    if supervisor is not None and is_alive(supervisor):
        # The owner stops its children and the cluster itself; wait for it to let go of its lock.
        os.kill(supervisor.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while (is_alive(supervisor) or _supervisor_alive(directory)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_alive(supervisor):
            stop_process(supervisor, timeout=0.1)
        stopped.append("supervisor")
    more, removed = _cleanup(directory, state, refs)
    return stopped + more, removed


def _cleanup(directory: Path, state: dict[str, Any] | None,
             refs: dict[str, ProcessRef] | None = None) -> tuple[list[str], list[str]]:
    """Whatever an owner that died (SIGKILL) left: its recorded processes, its cluster, its state file."""
    stopped: list[str] = []
    removed: list[str] = []
    if refs is None:
        refs = {name: ProcessRef.from_dict(data) for name, data in ((state or {}).get("processes") or {}).items()}
    postgres = (state or {}).get("postgres") or {}
    root = Path(postgres["root"]) if postgres.get("root") else None
    clusters = sorted(root.glob("*/data")) if root is not None and root.is_dir() else []
    if clusters:
        # pg_ctl first: it waits for the postmaster to shut its children down and releases the port.
        from rollback.sandbox.postgres import _as_server_user, find_bin_dir

        bin_dir = Path(postgres["bin_dir"]) if postgres.get("bin_dir") else None
        with contextlib.suppress(RuntimeError):
            bin_dir = bin_dir or find_bin_dir()
        pg_ctl = str(bin_dir / "pg_ctl") if bin_dir is not None else "pg_ctl"
        for data in clusters:
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                                   capture_output=True, check=False, timeout=60)
    for name, ref in refs.items():
        if name == "supervisor":
            continue
        if stop_process(ref, timeout=5):
            stopped.append(name)
    if root is not None and root.exists():
        shutil.rmtree(root, ignore_errors=True)
        removed.append(str(root))
    for name in (STATE_FILE, WORLD_FILE):
        path = directory / name
        if path.exists():
            path.unlink()
            removed.append(str(path))
    return stopped, removed


def _require_extras() -> None:
    """One line naming the extra when the sandbox's packages are missing."""
    import importlib.util

    missing = [name for name in ("moto", "flask", "flask_cors") if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise BadInput(f"the sandbox needs {', '.join(missing)}, which {verb} not installed",
                       "pip install -e '.[sandbox]'")


class Sandbox:
    """Contract D's names: ``Sandbox.up(dir)``, ``.status(dir)``, ``.reset(dir)``, ``.down(dir)``."""

    up = staticmethod(up)
    status = staticmethod(status)
    reset = staticmethod(reset)
    down = staticmethod(down)
