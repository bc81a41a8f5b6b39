"""A database password never appears in any output, journal or backup manifest, whatever it is.

Hypothesis writes passwords over the printable ASCII range (``openssl rand -base64`` gives
'/', '+', '='; people type '@', ' ', quotes and backslashes), sets them on a real role of
the throwaway PostgreSQL (``ALTER ROLE ... PASSWORD``) and hands them to the CLI in the
three ways an operator writes a database URL: percent-encoded in a URL, raw in a URL (libpq
misreads some of those: they must be refused, exit 2), and quoted in libpq's key=value form.
Each runs ``config check`` (human and ``--json``), ``db backup`` (which writes a manifest and
a journal), ``db backups`` and ``journal show``, with and without ``--traceback``, and with
the journal's own redaction on and off (``journal_redaction``). Every password carries two
random halves of a UUID at its ends, so a *piece* of it leaking (libpq splitting it at a '/'
into a port and a database name) is caught too.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "
PASSWORDS = st.tuples(st.uuids(), st.text(alphabet=PRINTABLE, max_size=20)).map(
    lambda t: t[0].hex[:8] + t[1] + t[0].hex[8:16])
ROLE = "leak_probe"


def _set_password(pg: Any, password: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg.url("postgres", "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(password)))


@pytest.fixture
def probe_role(live_db: LiveDb) -> str:
    """A login role that can read the live database (a member of its owner, ``app``)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(live_db.pg.url("postgres", "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ROLE)))
        owner = live_db.pg.app_role if hasattr(live_db.pg, "app_role") else "app"
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(ROLE)))
    return ROLE


def _url(live_db: LiveDb, form: str, password: str) -> str:
    host, port = "127.0.0.1", live_db.pg.port
    if form == "url-encoded":
        return f"postgresql://{ROLE}:{quote(password, safe='')}@{host}:{port}/{live_db.name}"
    if form == "url-raw":
        return f"postgresql://{ROLE}:{password}@{host}:{port}/{live_db.name}"
    quoted = password.replace("\\", "\\\\").replace("'", "\\'")
    return f"host={host} port={port} user={ROLE} password='{quoted}' dbname={live_db.name}"


def _everything_written(live_db: LiveDb, results: list[CliResult]) -> str:
    texts = [r.out + r.err for r in results]
    for directory in (live_db.journal_dir, live_db.backups_dir):
        if directory.is_dir():
            texts += [p.read_text(errors="replace") for p in sorted(directory.rglob("*"))
                      if p.is_file() and (p.suffix in (".jsonl", ".json", ".lock") or p.name.endswith(".tmp"))]
    return "\n".join(texts)


@pytest.mark.slow
@settings(max_examples=24, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(password=PASSWORDS, form=st.sampled_from(["url-encoded", "url-raw", "key-value"]),
       traceback=st.booleans())
def test_no_password_reaches_output_journal_or_manifest(run_cli: Any, live_db: LiveDb, probe_role: str,
                                                        monkeypatch: pytest.MonkeyPatch, journal_redaction: bool,
                                                        password: str, form: str, traceback: bool) -> None:
    from rollback.dburl import parse_database_url
    from rollback.errors import BadInput

    _set_password(live_db.pg, password)
    url = _url(live_db, form, password)
    monkeypatch.setenv("TEST_LIVE_DATABASE_URL", url)
    try:
        exact = parse_database_url(url)[0].get("password") == password
    except BadInput:
        exact = False
    first = ["--traceback"] if traceback else []
    results = [run_cli(*first, "config", "check"), run_cli(*first, "config", "check", "--json"),
               run_cli(*first, "db", "backup", "--json")]
    backup = results[-1]
    if form != "url-raw":
        assert exact, "an encoded or quoted password must be read exactly"
    if exact:
        assert all(r.code == 0 for r in results), [r.err for r in results]
        results += [run_cli("db", "backups"), run_cli("journal", "show", "last"),
                    run_cli("journal", "show", "last", "--json")]
    else:
        # refused before anything connects (2), or libpq decoded a '%XX' and the server said no (1)
        assert backup.code in (1, 2), backup.err
        assert backup.code == 1 or "TEST_LIVE_DATABASE_URL" in backup.err
    written = _everything_written(live_db, results)
    quoted = password.replace("\\", "\\\\").replace("'", "\\'")
    for piece in {password, quote(password, safe=""), quoted, password[:8], password[-8:]}:
        assert piece not in written, (piece, form, written[-2000:])
    for result in results:
        assert "Traceback" not in result.err or traceback


def test_backup_with_a_quoted_key_value_password_writes_a_manifest_without_it(
        run_cli: Any, live_db: LiveDb, probe_role: str, monkeypatch: pytest.MonkeyPatch,
        journal_redaction: bool) -> None:
    """The key=value form with a quoted password (it leaked through config check and the journal)."""
    password = "it's a 'quoted' pass\\word"
    _set_password(live_db.pg, password)
    monkeypatch.setenv("TEST_LIVE_DATABASE_URL", _url(live_db, "key-value", password))
    result = run_cli("--traceback", "db", "backup", "--json")
    assert result.code == 0, result.err
    manifest = Path(result.json()["backup"]["manifest_path"]).read_text()
    check = run_cli("config", "check")
    assert check.code == 0, check.err
    for text in (manifest, result.out + result.err, check.out + check.err, live_db.journal_text()):
        for piece in (password, "pass\\word", "'quoted'"):
            assert piece not in text
