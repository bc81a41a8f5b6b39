"""pg_dump and pg_restore, run without a shell, the password only in ``PGPASSWORD``.

The binaries are those of the server's major version
(``/usr/lib/postgresql/<major>/bin``, or ``$PG_BIN_DIR``): a pg_restore older
than the pg_dump that wrote an archive cannot read it, and PATH often holds
whichever client the distribution installed last. Anything a tool prints that
we surface passes through :func:`rollback.redact.redact_text`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rollback.adapters.postgres import Target
from rollback.errors import DatabaseError, Interrupted
from rollback.redact import redact_text

__all__ = ["PgTools", "ToolRun", "copy_blocks", "file_checksums", "sha256_file", "table_data_entries"]

# One table's data: serial runs print the first two kinds, parallel ones (-j) both a start and a
# "finished item" line per table. A table counts once, by its name (the last part: "finished item"
# lines give no schema).
_PROGRESS = re.compile(r'(?:finished item \d+ TABLE DATA (?P<tag>.+)|(?:dumping contents of table|processing data '
                       r'for table) "(?P<quoted>.+)")')


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(directory: Path) -> list[dict[str, object]]:
    """``[{path, sha256, bytes}]`` of every file under ``directory``, sorted by path."""
    out: list[dict[str, object]] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        out.append({"path": path.relative_to(directory).as_posix(), "sha256": sha256_file(path),
                    "bytes": path.stat().st_size})
    return out


@dataclass(frozen=True)
class ToolRun:
    seconds: float
    stderr_tail: str


def _tool_hint(action: str, output: str) -> str | None:
    """A hint from what pg_dump/pg_restore said, matched to the cause."""
    text = output.lower()
    if "no space left on device" in text or "disk quota exceeded" in text:
        where = "where the backup is written (backups_dir)" if action.startswith("pg_dump") else \
            "on the database server (or where the backup is read from)"
        return f"a disk is full: free space {where}, then run the command again"
    if "could not connect" in text or "connection to server" in text or "could not translate host" in text:
        from rollback.adapters.postgres import URL_HINT

        return URL_HINT
    if "password authentication failed" in text:
        return "authentication failed: check the user and password in the database URL"
    if "permission denied" in text:
        return "the role lacks a privilege on that object: grant it, or use the owner's URL"
    return None


class PgTools:
    """The client tools of one PostgreSQL major version."""

    def __init__(self, bin_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.bin_dir = bin_dir
        self.environ = dict(os.environ if environ is None else environ)

    @classmethod
    def for_major(cls, major: int, environ: Mapping[str, str] | None = None) -> PgTools:
        env = dict(os.environ if environ is None else environ)
        candidates = [Path(env["PG_BIN_DIR"])] if env.get("PG_BIN_DIR") else []
        candidates += [Path(f"/usr/lib/postgresql/{major}/bin"), Path(f"/usr/pgsql-{major}/bin"),
                       Path(f"/opt/homebrew/opt/postgresql@{major}/bin"),
                       Path(f"/usr/local/opt/postgresql@{major}/bin")]
        for directory in candidates:
            if (directory / "pg_dump").exists() and (directory / "pg_restore").exists():
                return cls(directory, env)
        raise DatabaseError(f"pg_dump/pg_restore for PostgreSQL {major} not found",
                            f"install postgresql-client-{major}, or set PG_BIN_DIR to its bin directory")

    def _tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def version(self, name: str = "pg_dump") -> str:
        done = subprocess.run([self._tool(name), "--version"], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    def _run(self, args: Sequence[str], target: Target | None, action: str,
             progress: Callable[[str], None] | None = None, total: int = 0,
             on_start: Callable[[subprocess.Popen[str]], None] | None = None,
             session: Mapping[str, str] | None = None) -> ToolRun:
        env = target.child_env(self.environ) if target else {k: v for k, v in self.environ.items()
                                                              if not k.startswith("PG")}
        if session:
            env["PGOPTIONS"] = " ".join(f"-c {key}={value}" for key, value in session.items())
        started = time.monotonic()
        try:
            proc = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, env=env, errors="replace")
        except OSError as exc:
            raise DatabaseError(f"{action}: cannot run {args[0]}: {exc.strerror}") from exc
        if on_start is not None:
            on_start(proc)
        lines: list[str] = []
        seen: set[str] = set()

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                line = line.rstrip("\n")
                found = _PROGRESS.search(line)
                if found:
                    name = (found.group("tag") or found.group("quoted").rsplit(".", 1)[-1]).strip().strip('"')
                    if name not in seen:
                        seen.add(name)
                        done = min(len(seen), total) if total else len(seen)
                        if progress is not None:
                            progress(f"{action}: {done}/{total} tables" if total else f"{action}: {done} tables")
                    continue
                if "pg_dump: " in line or "pg_restore: " in line:
                    if any(word in line for word in ("error", "warning", "FATAL", "fatal", "ERROR")):
                        lines.append(line)
                    continue
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt as exc:
            proc.terminate()
            proc.wait()
            raise Interrupted(f"{action} interrupted") from exc
        reader.join(timeout=5)
        tail = redact_text("; ".join(line.strip() for line in lines[-5:] if line.strip()))
        if code != 0:
            how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            raise DatabaseError(f"{action} failed ({how}){': ' + tail if tail else ''}",
                                _tool_hint(action, "\n".join(lines)), returncode=code)
        return ToolRun(time.monotonic() - started, tail)

    def dump(self, target: Target, out_dir: Path, *, jobs: int, compress: int = 6, snapshot: str | None = None,
             progress: Callable[[str], None] | None = None, total: int = 0) -> ToolRun:
        """``pg_dump -Fd -j N -Z C`` into ``out_dir`` (which must not exist)."""
        args = [self._tool("pg_dump"), "--format=directory", f"--jobs={max(1, jobs)}", f"--compress={compress}",
                "--verbose", "--no-password", f"--file={out_dir}", f"--dbname={target.public_conninfo()}"]
        if snapshot:
            args.append(f"--snapshot={snapshot}")
        return self._run(args, target, "pg_dump", progress, total)

    def list_archive(self, archive: Path) -> list[str]:
        """The archive's table of contents (``pg_restore --list``); raises if unreadable."""
        args = [self._tool("pg_restore"), "--list", str(archive)]
        done = subprocess.run(args, capture_output=True, text=True, check=False, errors="replace",
                              env={k: v for k, v in self.environ.items() if not k.startswith("PG")})
        if done.returncode != 0:
            raise DatabaseError(f"pg_restore cannot read the backup {archive.name}: "
                                f"{redact_text(' '.join(done.stderr.split())[-400:])}",
                                "the backup is damaged; use another one")
        return [line for line in done.stdout.splitlines() if line and not line.startswith(";")]

    def restore(self, target: Target, dbname: str, archive: Path, *, jobs: int, clean: bool = False,
                single_transaction: bool = False, no_owner: bool = False,
                progress: Callable[[str], None] | None = None, total: int = 0,
                on_start: Callable[[subprocess.Popen[str]], None] | None = None,
                session: Mapping[str, str] | None = None, section: str | None = None,
                use_list: Path | None = None) -> ToolRun:
        """``pg_restore`` into ``dbname``; any SQL error fails the run (``--exit-on-error``).

        ``session`` holds settings for pg_restore's own sessions (through ``PGOPTIONS``);
        ``section`` (pre-data, data, post-data) and ``use_list`` (a ``--use-list`` file)
        restrict what is restored.
        """
        args = [self._tool("pg_restore"), "--verbose", "--no-password", "--exit-on-error",
                f"--dbname={target.for_db(dbname).public_conninfo()}"]
        if section:
            args.append(f"--section={section}")
        if use_list:
            args.append(f"--use-list={use_list}")
        if single_transaction:
            args.append("--single-transaction")
        else:
            args.append(f"--jobs={max(1, jobs)}")
        if clean:
            args += ["--clean", "--if-exists"]
        if no_owner:
            args.append("--no-owner")
        args.append(str(archive))
        return self._run(args, target, "pg_restore", progress, total, on_start, session)


def table_data_entries(toc: Sequence[str]) -> dict[tuple[str, str], str]:
    """``(schema, table) -> dump id`` of the TABLE DATA entries of a ``pg_restore --list``."""
    out: dict[tuple[str, str], str] = {}
    for line in toc:
        match = re.match(r"^(\d+); \d+ \d+ TABLE DATA (\S+) (.+)$", line)
        if match:
            schema, rest = match.group(2), match.group(3)
            # "<table> <owner>"; a table name may hold spaces, an owner name rarely does
            table = rest.rsplit(" ", 1)[0] if " " in rest else rest
            out[(schema, table)] = match.group(1)
    return out


def copy_blocks(path: Path, block: int = 1 << 18) -> Iterator[bytes]:
    """The COPY text rows of one TABLE DATA file (``<id>.dat`` or ``<id>.dat.gz``), in blocks
    of whole lines, without the ``\\.`` terminator pg_dump writes after the last row."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS) if path.name.endswith(".gz") else None
    pending = b""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(block)
            if not chunk:
                break
            data = pending + (decompressor.decompress(chunk) if decompressor else chunk)
            cut = data.rfind(b"\n") + 1
            pending, data = data[cut:], data[:cut]
            if data.startswith(b"\\.\n"):
                return
            end = data.find(b"\n\\.\n")  # a line holding only "\." (a row's backslash is doubled)
            if end >= 0:
                yield data[: end + 1]
                return
            if data:
                yield data
    if decompressor is not None:
        pending += decompressor.flush()
    if pending.strip() and pending.strip() != b"\\.":
        yield pending if pending.endswith(b"\n") else pending + b"\n"


def remove_tree(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
