"""A swap that fails or is interrupted at any statement: one transaction, so nothing changed, or all of it.

The failures are injected into real connections (every statement still runs against the real
server); tests/db/test_swap_kill.py kills a real process instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from rollback.adapters.postgres import Database, Target
from rollback.errors import DatabaseError, Interrupted
from rollback.setaside import Mark
from tests.db.conftest import LiveDb


class FailingConnection:
    """A real maintenance connection that fails on chosen statements (before or after running them)."""

    def __init__(self, conn: Any, fail_on: list[str], *, after: bool, error: type[BaseException]) -> None:
        self.conn = conn
        self.fail_on = fail_on
        self.after = after
        self.error = error

    def __getattr__(self, name: str) -> Any:  # as_string() asks for .connection, .adapters...
        return getattr(self.conn, name)

    def __enter__(self) -> FailingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def _maybe_fail(self, text: str, *, before: bool) -> None:
        if before != self.after and any(needle in text for needle in self.fail_on):
            if self.error is KeyboardInterrupt:
                raise KeyboardInterrupt("SIGINT")
            import psycopg

            raise psycopg.OperationalError(f"injected failure at: {text}")

    def execute(self, query: Any, params: Any = None) -> Any:
        text = query if isinstance(query, str) else query.as_string(self.conn)
        self._maybe_fail(text, before=True)
        result = self.conn.execute(query, params)
        self._maybe_fail(text, before=False)
        return result

    def commit(self) -> None:
        self._maybe_fail("COMMIT", before=True)
        self.conn.commit()
        self._maybe_fail("COMMIT", before=False)


class FailingDatabase(Database):
    """A real Database whose maintenance connections fail on chosen statements (injected, not patched)."""

    def __init__(self, target: Target, fail_on: list[str], *, after: bool, error: type[BaseException]) -> None:
        super().__init__(target)
        self.fail_on, self.after, self.error = fail_on, after, error

    def maintenance(self, *, autocommit: bool = True) -> Any:
        return FailingConnection(super().maintenance(autocommit=autocommit), self.fail_on, after=self.after,
                                 error=self.error)


class SilentDatabase(Database):
    """A real Database whose live database never answers after the swap."""

    def _answers(self, dbname: str, attempts: int = 20) -> bool:
        return False


def database_failing_on(live_db: LiveDb, *fail_on: str, after: bool = False,
                        error: type[BaseException] = Exception) -> Database:
    return FailingDatabase(Target.from_url(live_db.url), list(fail_on), after=after, error=error)


def state(live_db: LiveDb, restored: str, aside: str) -> dict[str, Any]:
    rows = live_db.sql("SELECT datname, datallowconn FROM pg_database", dbname="postgres")
    names = {str(r[0]): bool(r[1]) for r in rows}
    return {"live_data": live_db.scalar("SELECT v FROM swap_probe"), "restored": restored in names,
            "aside": aside in names, "all_allow": all(names[n] for n in (live_db.name, restored, aside) if n in names)}


@pytest.fixture
def restored(live_db: LiveDb) -> str:
    name = f"{live_db.name}_restore_20261128000000"
    live_db.sql("CREATE TABLE swap_probe (v text); INSERT INTO swap_probe VALUES ('old')", user="app")
    live_db.pg.create_database(name, owner="app")
    live_db.pg.execute("CREATE TABLE swap_probe (v text); INSERT INTO swap_probe VALUES ('new')", dbname=name,
                       user="app")
    return name


STATEMENTS = ['" RENAME TO "{aside}"', '"{restored}" RENAME TO', 'COMMENT ON DATABASE "{aside}"',
              'COMMENT ON DATABASE "{live}"', "COMMIT"]


@pytest.mark.parametrize("where", STATEMENTS)
@pytest.mark.parametrize("error", [Exception, KeyboardInterrupt], ids=["error", "ctrl-c"])
def test_a_failure_before_the_commit_changes_nothing(live_db: LiveDb, restored: str,
                                                      where: str, error: type[BaseException]) -> None:
    aside = f"{live_db.name}_replaced_20261128000001"
    needle = where.format(aside=aside, restored=restored, live=live_db.name)
    db = database_failing_on(live_db, needle, error=error)
    expected = Interrupted if error is KeyboardInterrupt else DatabaseError
    with pytest.raises(expected) as caught:
        db.swap(restored, aside, aside_comment="rollback:{}")
    assert "nothing was changed" in caught.value.one_line()
    assert state(live_db, restored, aside) == {"live_data": "old", "restored": True, "aside": False,
                                               "all_allow": True}


@pytest.mark.parametrize("where", STATEMENTS[:-1])
def test_a_failure_after_a_statement_ran_changes_nothing(live_db: LiveDb, restored: str,
                                                          where: str) -> None:
    """The statement took effect inside the transaction, and the failure rolls it back with the rest."""
    aside = f"{live_db.name}_replaced_20261128000002"
    needle = where.format(aside=aside, restored=restored, live=live_db.name)
    db = database_failing_on(live_db, needle, after=True, error=KeyboardInterrupt)
    with pytest.raises(Interrupted, match="nothing was changed"):
        db.swap(restored, aside)
    assert state(live_db, restored, aside)["live_data"] == "old"
    assert not state(live_db, restored, aside)["aside"]


def test_a_commit_whose_reply_is_lost_is_read_back_as_done(live_db: LiveDb, restored: str) -> None:
    """COMMIT ran but the client saw an error: the outcome is read from the catalog, not assumed."""
    aside = f"{live_db.name}_replaced_20261128000003"
    mark = Mark("replaced", "run-1", live_db.name, aside).to_comment()
    db = database_failing_on(live_db, "COMMIT", after=True)
    result = db.swap(restored, aside, aside_comment=mark)
    assert result.set_aside == aside
    assert state(live_db, restored, aside) == {"live_data": "new", "restored": False, "aside": True,
                                               "all_allow": True}
    assert live_db.scalar(f"SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                          f"WHERE datname = '{aside}'", dbname="postgres") == mark


def test_a_ctrl_c_at_the_commit_waits_for_its_outcome(live_db: LiveDb, restored: str) -> None:
    aside = f"{live_db.name}_replaced_20261128000004"
    db = database_failing_on(live_db, "COMMIT", after=True, error=KeyboardInterrupt)
    result = db.swap(restored, aside)  # the interrupt came after COMMIT: the swap is done and said so
    assert result.live == live_db.name
    assert state(live_db, restored, aside)["live_data"] == "new"


def test_the_live_comment_moves_with_the_name(live_db: LiveDb, restored: str) -> None:
    live_db.sql(f"COMMENT ON DATABASE \"{live_db.name}\" IS 'the shop'", dbname="postgres")
    aside = f"{live_db.name}_replaced_20261128000005"
    Database(Target.from_url(live_db.url)).swap(restored, aside, aside_comment="rollback:{}")
    comments = dict(live_db.sql("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database",
                                dbname="postgres"))
    assert comments[live_db.name] == "the shop" and comments[aside] == "rollback:{}"


def test_a_live_database_that_does_not_answer_after_the_swap_says_it_happened(
        live_db: LiveDb, restored: str) -> None:
    aside = f"{live_db.name}_replaced_20261128000006"
    db = SilentDatabase(Target.from_url(live_db.url))
    with pytest.raises(DatabaseError) as caught:
        db.swap(restored, aside)
    line = caught.value.one_line()
    assert "the swap DID happen" in line and aside in line and "nothing was" not in line
    assert state(live_db, restored, aside)["live_data"] == "new"


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


def test_a_non_ascii_live_name_near_the_limit_gets_whole_set_aside_names(live_db: LiveDb) -> None:
    from rollback.setaside import set_aside_name

    live = "données_ü" * 6  # 54 characters, 60 bytes
    live_db.pg.create_database(live, owner="app")
    try:
        db = Database(Target.from_url(live_db.url).for_db(live))
        copy = set_aside_name(live, "restore", "20261128000000")
        db.create_database_like(copy, live)
        assert db.exists(copy)  # PostgreSQL did not cut the name: it is exactly the one we computed
    finally:
        for name in live_db.pg.databases():
            if name.startswith("données"):
                live_db.pg.drop_database(name)
