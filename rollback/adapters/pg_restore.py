"""Restore a ``pg_dump`` directory archive into a new, empty database, fast.

``pg_restore --jobs`` loads one table per worker, so one big table loads on one
core. :func:`restore_archive` loads each big table itself over several parallel
``COPY`` streams (:meth:`~rollback.adapters.postgres.Database.copy_in`) while
``pg_restore`` loads the others from an edited TOC (``--use-list``): schema first
(``pre-data``), the data, then indexes and constraints (``post-data``, parallel).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rollback.adapters.pg_tools import PgTools, copy_blocks, table_data_entries
from rollback.adapters.postgres import Database

__all__ = ["IN_PLACE_SESSION", "RESTORE_SESSION", "SPLIT_MIN_ROWS", "restore_archive"]

# Settings for pg_restore's own sessions. Index and constraint builds sort in
# memory instead of spilling to disk. Commits into the new database need not
# wait for WAL flushes: nobody uses it until the row counts have been checked
# after pg_restore ends, and a crash in between fails that check. Both are
# user-settable, so a non-superuser role may set them.
RESTORE_SESSION = {"maintenance_work_mem": "256MB", "synchronous_commit": "off"}
IN_PLACE_SESSION = {"maintenance_work_mem": "256MB"}

SPLIT_MIN_ROWS = 200_000


def _big_tables(dump_dir: Path, manifest: Mapping[str, Any], toc: list[str], *,
                split_min_rows: int) -> list[tuple[str, str, str, Path]]:
    """``(schema, table, dump id, data file)`` of the tables of at least ``split_min_rows`` rows."""
    entries = table_data_entries(toc)
    big: list[tuple[str, str, str, Path]] = []
    for table in manifest.get("tables", []):
        key = (str(table["schema"]), str(table["name"]))
        if int(table["rows"]) >= split_min_rows and key in entries:
            dump_id = entries[key]
            path = next((p for p in (dump_dir / f"{dump_id}.dat.gz", dump_dir / f"{dump_id}.dat") if p.is_file()),
                        None)
            if path is not None:
                big.append((key[0], key[1], dump_id, path))
    return big


def restore_archive(db: Database, tools: PgTools, dbname: str, dump_dir: Path, manifest: Mapping[str, Any], *,
                    jobs: int, no_owner: bool, progress: Callable[[str], None] | None = None,
                    on_start: Callable[[Any], None] | None = None,
                    split_min_rows: int = SPLIT_MIN_ROWS) -> dict[str, Any]:
    """Restore a backup into the (new, empty) database ``dbname``.

    Tables of at least ``split_min_rows`` rows are loaded by us over ``jobs``
    parallel COPY streams, while pg_restore loads the rest (``--use-list`` without
    them) with ``jobs`` workers; schema before (``pre-data``), indexes and
    constraints after (``post-data``, parallel). Without such tables, or with one
    job, it is one ``pg_restore --jobs``.
    """
    started = time.monotonic()
    common: dict[str, Any] = {"no_owner": no_owner, "on_start": on_start, "session": RESTORE_SESSION,
                              "progress": progress}
    toc = tools.list_archive(dump_dir)
    encoding = manifest.get("encoding")
    big = _big_tables(dump_dir, manifest, toc, split_min_rows=split_min_rows) if jobs > 1 and encoding else []
    if not big:
        run = tools.restore(db.target, dbname, dump_dir, jobs=jobs,
                            total=len(manifest.get("tables", [])), **common)
        return {"pg_restore_seconds": round(run.seconds, 3), "split_tables": []}
    tools.restore(db.target, dbname, dump_dir, jobs=1, section="pre-data", **common)
    skip = {dump_id for *_, dump_id, _ in big}
    procs: list[Any] = []
    outcome: dict[str, Any] = {}

    def remember(proc: Any) -> None:
        procs.append(proc)
        if on_start is not None:
            on_start(proc)

    with tempfile.TemporaryDirectory(prefix="rollback-restore-") as scratch:
        use_list = Path(scratch) / "toc.list"
        use_list.write_text("\n".join((";" if line.split(";", 1)[0] in skip else "") + line for line in toc) + "\n",
                            encoding="utf-8")

        def other_tables() -> None:
            try:
                outcome["run"] = tools.restore(db.target, dbname, dump_dir, jobs=jobs, section="data",
                                               use_list=use_list, **{**common, "on_start": remember})
            except BaseException as exc:  # re-raised in the calling thread
                outcome["error"] = exc

        worker = threading.Thread(target=other_tables, daemon=True)
        worker.start()
        try:
            for schema, table, _, path in big:
                if progress:
                    progress(f"loading {schema}.{table} over {jobs} parallel COPY streams")
                db.copy_in(dbname, schema, table, copy_blocks(path), streams=jobs, encoding=str(encoding),
                           session=RESTORE_SESSION)
        except BaseException:
            for proc in procs:
                proc.terminate()
            worker.join()
            raise
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    tools.restore(db.target, dbname, dump_dir, jobs=jobs, section="post-data", **common)
    return {"pg_restore_seconds": round(time.monotonic() - started, 3),
            "split_tables": [f"{schema}.{table}" for schema, table, *_ in big]}
