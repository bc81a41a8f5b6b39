"""Pure helpers of the database layer (no server)."""

from __future__ import annotations

import pytest

from rollback.adapters.postgres import Target, _strip_prisma_params, _table_sql, set_aside_name
from rollback.errors import BadInput


def test_set_aside_names_fit_postgres_identifier_limit() -> None:
    assert set_aside_name("app", "replaced", "20261128093000") == "app_replaced_20261128093000"
    long = set_aside_name("x" * 80, "restore", "20261128093000")
    assert len(long) == 63 and long.endswith("_restore_20261128093000")


def test_prisma_url_parameters_are_stripped_and_schema_becomes_search_path() -> None:
    url, schema = _strip_prisma_params("postgresql://u:p@h:5432/db?schema=tenant&connection_limit=5&sslmode=require")
    assert schema == "tenant"
    assert "connection_limit" not in url and "schema=" not in url and "sslmode=require" in url
    target = Target.from_url("postgresql://u:s3cretpass@h:5432/db?schema=tenant&pgbouncer=true")
    assert target.params["options"] == "-csearch_path=tenant"
    assert target.dbname == "db"


def test_the_password_stays_out_of_descriptions_and_command_lines() -> None:
    target = Target.from_url("postgresql://app:pa%24%24word-xyz@db.internal:6543/prod")
    assert target.password == "pa$$word-xyz"
    assert "word" not in target.describe() and target.describe() == "app@db.internal:6543/prod"
    assert "word" not in target.public_conninfo()
    env = target.child_env({"PATH": "/bin", "PGPASSWORD": "stale", "PGHOST": "elsewhere"})
    assert env["PGPASSWORD"] == "pa$$word-xyz" and "PGHOST" not in env


def test_a_url_without_a_database_is_bad_input() -> None:
    with pytest.raises(BadInput, match="names no database"):
        Target.from_url("postgresql://app:pw@host:5432")


@pytest.mark.parametrize(("name", "sql"), [
    ("User", '"User"'),
    ("user_stats", "user_stats"),
    ('"Integration"', '"Integration"'),
    ("billing.Invoice", '"billing"."Invoice"'),
])
def test_table_names_are_quoted_for_sql(name: str, sql: str) -> None:
    assert _table_sql(name) == sql
