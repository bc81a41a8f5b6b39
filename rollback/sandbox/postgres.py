"""A throwaway PostgreSQL cluster: ``initdb`` + ``pg_ctl`` in a temp dir.

Used by the database tests, the benchmark and the sandbox drill. The server
listens on a free TCP port on 127.0.0.1 (password auth, scram-sha-256) and on a
Unix socket inside the temp dir. It has a superuser ``postgres`` and a
non-superuser application role ``app`` (LOGIN, CREATEDB) owning a database
``app``; both have random passwords.

``initdb`` refuses to run as root, so when our effective uid is 0 every server
command runs as the ``postgres`` OS user (``runuser``), and the temp dir is
handed over to that user.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["PostgresCluster", "find_bin_dir", "start_postgres"]

SERVER_USER = "postgres"


def find_bin_dir(major: int | None = None) -> Path:
    """The directory holding ``initdb``/``pg_ctl``: ``$PG_BIN_DIR``, else the newest
    ``/usr/lib/postgresql/<major>/bin``, else the directory of ``pg_ctl`` on PATH."""
    override = os.environ.get("PG_BIN_DIR")
    if override:
        return Path(override)
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        majors = sorted((int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "bin" / "initdb").exists()),
                        reverse=True)
        if major is not None and major in majors:
            return root / str(major) / "bin"
        if majors and major is None:
            return root / str(majors[0]) / "bin"
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found (install postgresql, or set PG_BIN_DIR)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runuser() -> str:
    """``runuser`` lives in sbin, which a non-login root shell (or ``env -i``) may not have on PATH."""
    import shutil

    found = shutil.which("runuser") or next((p for p in ("/usr/sbin/runuser", "/sbin/runuser")
                                             if os.access(p, os.X_OK)), None)
    return found or "runuser"


def _as_server_user(args: list[str]) -> list[str]:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return [_runuser(), "-u", SERVER_USER, "--", *args]
    return args


@dataclass
class PostgresCluster:
    """A running throwaway cluster. ``url(dbname, user)`` gives a connection URL."""

    base: Path
    bin_dir: Path
    port: int
    passwords: dict[str, str]
    major: int
    host: str = "127.0.0.1"
    _stopped: bool = field(default=False, repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    def url(self, dbname: str = "app", user: str = "app") -> str:
        password = quote(self.passwords[user], safe="")
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", user: str = "postgres", autocommit: bool = True) -> Any:
        import psycopg

        return psycopg.connect(self.url(dbname, user), autocommit=autocommit)

    def execute(self, sql: str, dbname: str = "postgres", user: str = "postgres") -> list[tuple[Any, ...]]:
        """Run SQL as ``user`` (default the superuser) and return the rows, if any."""
        with self.connect(dbname, user) as conn, conn.cursor() as cur:
            cur.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []

    def create_role(self, name: str, *, createdb: bool = False, superuser: bool = False) -> str:
        password = secrets.token_urlsafe(18)
        flags = " CREATEDB" if createdb else " NOCREATEDB"
        flags += " SUPERUSER" if superuser else ""
        self.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'{flags}")
        self.passwords[name] = password
        return password

    def create_database(self, name: str, owner: str = "app") -> None:
        self.execute(f'CREATE DATABASE "{name}" OWNER "{owner}" TEMPLATE template0')

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def databases(self) -> list[str]:
        return [row[0] for row in self.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def stop(self, *, remove: bool = True) -> None:
        _dismiss(self._watchdog)
        self._watchdog = None
        if not self._stopped:
            self._stopped = True
            subprocess.run(_as_server_user([self.tool("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate",
                                            "-w", "stop"]),
                           capture_output=True, check=False, timeout=60)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_postgres(
    *,
    bin_dir: Path | None = None,
    port: int | None = None,
    base_dir: Path | None = None,
    fast: bool = True,
    settings: dict[str, str] | None = None,
) -> PostgresCluster:
    """Create and start a cluster; returns once it accepts connections.

    ``fast`` turns off fsync (tests only care about behaviour, not durability).
    Raises ``RuntimeError`` with the server log's tail when it cannot start.
    """
    bins = bin_dir or find_bin_dir()
    base = Path(tempfile.mkdtemp(prefix="rollback-pg-", dir=base_dir))
    os.chmod(base, 0o755)
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if is_root:
        shutil.chown(base, SERVER_USER, SERVER_USER)
    super_password = secrets.token_urlsafe(18)
    app_password = secrets.token_urlsafe(18)
    pwfile = base / "pw"
    pwfile.write_text(super_password + "\n")
    (base / "sock").mkdir()
    if is_root:
        for path in (pwfile, base / "sock"):
            shutil.chown(path, SERVER_USER, SERVER_USER)
    os.chmod(pwfile, 0o600)

    def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_as_server_user(args), capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=str(base))

    try:
        init = run([str(bins / "initdb"), "-D", str(base / "data"), "-U", SERVER_USER, "--pwfile", str(pwfile),
                    "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                    "--locale=C", "--no-sync"])
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
        chosen = port or _free_port()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(chosen),
            "unix_socket_directories": f"'{base / 'sock'}'",
            "max_connections": "50",
            "shared_buffers": "128MB",
            "max_wal_size": "2GB",
            "log_min_messages": "warning",
        }
        if fast:
            conf.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        conf.update(settings or {})
        with open(base / "data" / "postgresql.auto.conf", "a", encoding="utf-8") as handle:
            for key, value in conf.items():
                handle.write(f"{key} = {value}\n")
        started = run([str(bins / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "server.log"), "-w",
                       "-t", "60", "start"])
        if started.returncode != 0:
            log = (base / "server.log").read_text(errors="replace")[-2000:] if (base / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()[-1000:]} {log}")
        version = subprocess.run([str(bins / "postgres"), "--version"], capture_output=True, text=True, check=False)
        major = int(version.stdout.split()[-1].split(".")[0])
        cluster = PostgresCluster(base=base, bin_dir=bins, port=chosen,
                                  passwords={SERVER_USER: super_password, "app": app_password}, major=major)
        _wait_ready(cluster)
        cluster._watchdog = _start_watchdog(bins, base)
        cluster.execute(f"CREATE ROLE app LOGIN CREATEDB PASSWORD '{app_password}'")
        cluster.create_database("app", owner="app")
        return cluster
    except BaseException:
        subprocess.run(_as_server_user([str(bins / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate", "stop"]),
                       capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
        raise


# Stops the cluster and removes its directory when the process that started it
# dies without calling stop() (SIGKILL, SIGTERM, a crashed test run): it waits
# for EOF on a pipe only its parent holds. "done" on the pipe dismisses it.
_WATCHDOG = """
import shutil, subprocess, sys
if sys.stdin.readline().strip() != "done":
    subprocess.run(sys.argv[3:] + [sys.argv[1], "-D", sys.argv[2] + "/data", "-m", "immediate", "stop"],
                   capture_output=True, check=False, timeout=60)
    shutil.rmtree(sys.argv[2], ignore_errors=True)
"""


def _start_watchdog(bins: Path, base: Path) -> subprocess.Popen[bytes]:
    prefix = _as_server_user([])
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(bins / "pg_ctl"), str(base), *prefix],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _dismiss(watchdog: subprocess.Popen[bytes] | None) -> None:
    if watchdog is not None and watchdog.stdin is not None:
        with contextlib.suppress(OSError):
            watchdog.stdin.write(b"done\n")
            watchdog.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            watchdog.wait(timeout=5)


def _wait_ready(cluster: PostgresCluster, timeout: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with contextlib.closing(psycopg.connect(cluster.url("postgres", SERVER_USER), connect_timeout=3)):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
