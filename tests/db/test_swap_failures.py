"""A swap that fails part-way: each undo runs on its own, and the error says where things stand."""

from __future__ import annotations

from typing import Any

import pytest

from rollback.adapters.postgres import Database, Target
from rollback.errors import DatabaseError
from tests.db.conftest import LiveDb


class FailingConnection:
    """A real maintenance connection whose ``execute`` fails on chosen statements."""

    def __init__(self, conn: Any, fail_on: list[str]) -> None:
        self.conn = conn
        self.fail_on = fail_on

    def __getattr__(self, name: str) -> Any:  # as_string() asks for .connection, .adapters...
        return getattr(self.conn, name)

    def __enter__(self) -> FailingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def execute(self, query: Any, params: Any = None) -> Any:
        import psycopg

        text = query if isinstance(query, str) else query.as_string(self.conn)
        if any(needle in text for needle in self.fail_on):
            raise psycopg.OperationalError(f"injected failure at: {text}")
        return self.conn.execute(query, params)


def database_failing_on(live_db: LiveDb, monkeypatch: pytest.MonkeyPatch, *fail_on: str) -> Database:
    db = Database(Target.from_url(live_db.url))
    real = db.maintenance
    monkeypatch.setattr(db, "maintenance", lambda: FailingConnection(real(), list(fail_on)))
    return db


def allows(live_db: LiveDb, name: str) -> Any:
    rows = live_db.sql(f"SELECT datallowconn FROM pg_database WHERE datname = '{name}'", dbname="postgres")
    return rows[0][0] if rows else None


@pytest.fixture
def restored(live_db: LiveDb) -> str:
    name = f"{live_db.name}_restore_20261128000000"
    live_db.pg.create_database(name, owner="app")
    return name


def test_a_failed_second_rename_is_undone(live_db: LiveDb, restored: str, monkeypatch: pytest.MonkeyPatch) -> None:
    aside = f"{live_db.name}_replaced_1"
    db = database_failing_on(live_db, monkeypatch, f'"{restored}" RENAME TO')
    with pytest.raises(DatabaseError) as caught:
        db.swap(restored, aside)
    assert "nothing was changed" in caught.value.one_line()
    assert allows(live_db, live_db.name) is True and allows(live_db, restored) is True
    assert allows(live_db, aside) is None
    assert live_db.scalar('SELECT count(*) FROM "User"') == 300  # still the live data under the live name


def test_a_failed_undo_names_the_statements_to_run(live_db: LiveDb, restored: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    aside = f"{live_db.name}_replaced_2"
    db = database_failing_on(live_db, monkeypatch, f'"{restored}" RENAME TO', f'"{aside}" RENAME TO')
    with pytest.raises(DatabaseError) as caught:
        db.swap(restored, aside)
    line = caught.value.one_line()
    assert f"renamed to {aside}" in line
    assert f'ALTER DATABASE "{aside}" RENAME TO "{live_db.name}"' in line
    assert f'ALTER DATABASE "{live_db.name}" ALLOW_CONNECTIONS true' in line
    assert allows(live_db, aside) is False  # exactly the state the message describes
    assert allows(live_db, restored) is True
    for statement in caught.value.statements:  # running them by hand brings the live database back
        live_db.sql(statement, dbname="postgres")
    assert allows(live_db, live_db.name) is True


def test_a_failure_after_the_swap_says_it_happened(live_db: LiveDb, restored: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    aside = f"{live_db.name}_replaced_3"
    db = database_failing_on(live_db, monkeypatch, f'"{live_db.name}" ALLOW_CONNECTIONS true')
    with pytest.raises(DatabaseError) as caught:
        db.swap(restored, aside)
    line = caught.value.one_line()
    assert "the swap DID happen" in line and aside in line and "nothing was" not in line
    assert f'ALTER DATABASE "{live_db.name}" ALLOW_CONNECTIONS true' in line
    assert allows(live_db, aside) is False and allows(live_db, restored) is None
    live_db.sql(f'ALTER DATABASE "{live_db.name}" ALLOW_CONNECTIONS true', dbname="postgres")
    live_db.sql(f'ALTER DATABASE "{aside}" ALLOW_CONNECTIONS true', dbname="postgres")


def test_list_settings_are_copied_item_by_item(live_db: LiveDb) -> None:
    live_db.sql(f'ALTER DATABASE "{live_db.name}" SET search_path = "$user", public, "Other Schema"', user="app")
    live_db.sql(f"ALTER DATABASE \"{live_db.name}\" SET statement_timeout = '5min'", user="app")
    copy = f"{live_db.name}_restore_20261128000001"
    Database(Target.from_url(live_db.url)).create_database_like(copy, live_db.name)

    def settings(name: str) -> list[str]:
        return sorted(str(row[0]) for row in live_db.sql(
            "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d "
            f"ON d.oid = s.setdatabase WHERE d.datname = '{name}'", dbname="postgres"))
    assert len(settings(copy)) == 2 and settings(copy) == settings(live_db.name)
    assert live_db.sql("SHOW search_path", dbname=copy)[0][0] == '"$user", public, "Other Schema"'
