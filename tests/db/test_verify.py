"""``rollback db verify``: each check with its measured value; exit 3 when one fails."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]


def checks(result: CliResult) -> dict[str, dict[str, object]]:
    return {c["check"]: c for c in result.json()["checks"]}


def test_a_healthy_database_passes(run_cli: RunCli, live_db: LiveDb) -> None:
    result = run_cli("db", "verify", "--json")
    assert result.code == 0, result.out
    found = checks(result)
    assert found["migrations.failed"]["value"] == 0
    assert found["rows.User"]["value"] == 300
    assert found["orphans.Integration(userId) -> User(id)"]["value"] == 0
    assert found["orphans.UserStats(userId) -> User(id)"]["detail"] == "relation from config"
    human = run_cli("db", "verify")
    assert human.code == 0 and "rows.User" in human.out


def test_orphans_of_a_config_relation_fail_with_their_count(run_cli: RunCli, live_db: LiveDb) -> None:
    live_db.sql('INSERT INTO "UserStats"("userId") VALUES (5000), (5001), (5002)')
    result = run_cli("db", "verify", "--json")
    assert result.code == 3
    check = checks(result)["orphans.UserStats(userId) -> User(id)"]
    assert check["ok"] is False and check["value"] == 3
    assert "check(s) failed" in result.err and "Traceback" not in result.err


def test_failed_migrations_fail(run_cli: RunCli, live_db: LiveDb) -> None:
    live_db.sql("INSERT INTO _prisma_migrations (id, checksum, migration_name) VALUES ('f', 'x', 'broken')")
    result = run_cli("db", "verify", "--json")
    assert result.code == 3
    assert checks(result)["migrations.failed"]["value"] == 1


def test_row_counts_against_a_baseline_with_grow_only_tolerance(run_cli: RunCli, live_db: LiveDb) -> None:
    backup = run_cli("db", "backup", "--json").json()["backup"]["name"]
    # User is grow-only: more rows is fine
    live_db.sql("INSERT INTO \"User\"(email) VALUES ('new@example.com')")
    grown = run_cli("db", "verify", "--baseline", backup, "--json")
    assert grown.code == 0, grown.out
    assert checks(grown)["rows.User"]["expected"] == ">= 300"
    # Integration is not: a lost row fails, with the measured value
    live_db.sql('DELETE FROM "Integration" WHERE id = 1')
    lost = run_cli("db", "verify", "--baseline", backup, "--json")
    assert lost.code == 3
    assert checks(lost)["rows.Integration"]["value"] == 149
    assert checks(lost)["rows.Integration"]["expected"] == 150
    # within a tolerance it passes
    tolerated = run_cli("db", "verify", "--baseline", backup, "--tolerance", "1", "--json")
    assert tolerated.code == 0
    # a grow-only table that shrank fails
    live_db.sql('DELETE FROM "User" WHERE id IN (2, 4)')
    shrunk = run_cli("db", "verify", "--baseline", backup, "--tolerance", "1", "--json")
    assert shrunk.code == 3 and checks(shrunk)["rows.User"]["ok"] is False


def test_a_missing_watched_table_fails(run_cli: RunCli, live_db: LiveDb) -> None:
    live_db.sql('DROP TABLE "UserStats"')
    result = run_cli("db", "verify", "--json")
    assert result.code == 3
    assert checks(result)["rows.UserStats"]["detail"] == "table missing"


def test_a_config_relation_cannot_inject_sql(run_cli: RunCli, live_db: LiveDb) -> None:
    from tests.conftest import render_config

    live_db.sql('CREATE TABLE victim (id int); CREATE TABLE "t" (id int)', user="app")
    evil = '"t" ch WHERE false; DROP TABLE victim; SELECT count(*) FROM "t".id'
    live_db.config_path.write_text(render_config({"test": {"database": {
        "url_env": "TEST_LIVE_DATABASE_URL", "tables": ["User"],
        "relations": [{"child": evil, "parent": "User.id"}],
    }}}, default_env="test", journal_dir=str(live_db.journal_dir)))
    result = run_cli("db", "verify", "--json")
    assert result.code == 3, (result.out, result.err)
    assert "Traceback" not in result.err
    failed = [c for c in result.json()["checks"] if not c["ok"]]
    assert len(failed) == 1 and "cannot check" in failed[0]["detail"]
    assert live_db.scalar("SELECT count(*) FROM pg_class WHERE relname = 'victim'") == 1


def test_a_table_that_cannot_be_counted_is_one_failed_check_and_the_rest_run(run_cli: RunCli,
                                                                            live_db: LiveDb) -> None:
    from tests.conftest import render_config

    live_db.sql("CREATE SCHEMA audit; CREATE TABLE audit.log (id int)")  # the app role may not read it
    live_db.config_path.write_text(render_config({"test": {"database": {
        "url_env": "TEST_LIVE_DATABASE_URL", "tables": ["nosuchschema.User", "audit.log", "User", "public.Integration"],
        "relations": [{"child": "UserStats.userId", "parent": "User.id"}],
    }}}, default_env="test", journal_dir=str(live_db.journal_dir)))
    result = run_cli("db", "verify", "--json")
    assert result.code == 3, (result.out, result.err)
    found = checks(result)
    assert found["rows.nosuchschema.User"]["ok"] is False
    assert found["rows.nosuchschema.User"]["detail"] == "table missing"
    assert found["rows.audit.log"]["ok"] is False and "permission denied" in str(found["rows.audit.log"]["detail"])
    assert found["rows.User"]["value"] == 300 and found["rows.public.Integration"]["value"] == 150
    assert found["orphans.UserStats(userId) -> User(id)"]["ok"] is True  # the checks after it ran
    assert result.json()["failed"] == 2
