"""Pure helpers of the database layer (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback.adapters.postgres import ForeignKey, Target
from rollback.dburl import strip_prisma_params
from rollback.errors import BadInput
from rollback.setaside import set_aside_name


def test_set_aside_names_fit_postgres_identifier_limit() -> None:
    assert set_aside_name("app", "replaced", "20261128093000") == "app_replaced_20261128093000"
    long = set_aside_name("x" * 80, "restore", "20261128093000")
    assert len(long) == 63 and long.endswith("_restore_20261128093000")


def test_prisma_url_parameters_are_stripped_and_schema_becomes_search_path() -> None:
    url, schema = strip_prisma_params("postgresql://u:p@h:5432/db?schema=tenant&connection_limit=5&sslmode=require")
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
    assert env["PGPASSWORD"] == "pa$$word-xyz"


def test_pg_dump_gets_the_tls_settings_and_the_password_only_in_its_environment(tmp_path: Path) -> None:
    from rollback.adapters.pg_tools import PgTools

    record = tmp_path / "record"
    fake = tmp_path / "pg_dump"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}.argv\nenv > {record}.env\n')
    fake.chmod(0o755)
    tools = PgTools(tmp_path, {"PATH": "/usr/bin:/bin", "PGSSLMODE": "verify-full",
                               "PGSSLROOTCERT": "/etc/ca.pem", "PGPASSWORD": "stale"})
    tools.dump(Target.from_url("postgresql://app:s3cret-pass-42@db.internal:5432/prod"), tmp_path / "out", jobs=1)
    env = dict(line.split("=", 1) for line in Path(f"{record}.env").read_text().splitlines() if "=" in line)
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "/etc/ca.pem"
    assert env["PGPASSWORD"] == "s3cret-pass-42"
    argv = Path(f"{record}.argv").read_text()
    assert "host=db.internal" in argv and "s3cret-pass-42" not in argv


def test_a_url_without_a_database_is_bad_input() -> None:
    with pytest.raises(BadInput, match="names no database"):
        Target.from_url("postgresql://app:pw@host:5432")


def test_foreign_key_labels_name_schema_only_outside_public() -> None:
    declared = ForeignKey("fk", "Integration", ("userId",), "User", ("id",), child_schema="public",
                          parent_schema="billing")
    assert declared.label == "Integration(userId) -> billing.User(id)"
    assert ForeignKey("c", "UserStats", ("userId",), "User", ("id",), declared=False).label == \
        "UserStats(userId) -> User(id)"


def test_set_aside_names_are_cut_in_bytes_at_a_character_boundary() -> None:
    from rollback.setaside import parse_set_aside_name

    live = "données_ünïcødé_" * 3  # 48 characters, 63 bytes in UTF-8
    name = set_aside_name(live, "replaced", "20261128093000")
    assert len(name.encode()) <= 63 and name.endswith("_replaced_20261128093000")
    assert live.startswith(name[: -len("_replaced_20261128093000")])
    assert parse_set_aside_name(name, live) == ("replaced", "20261128093000")


def test_set_aside_names_parse_only_with_a_real_timestamp_and_role() -> None:
    from rollback.setaside import parse_set_aside_name

    assert parse_set_aside_name("app_restore_20261128093000", "app") == ("restore", "20261128093000")
    assert parse_set_aside_name("app_restore_points", "app") is None
    assert parse_set_aside_name("app_restore_20261399093000", "app") is None  # month 13
    assert parse_set_aside_name("app_backup_20261128093000", "app") is None
    assert parse_set_aside_name("other_restore_20261128093000", "app") is None


def test_marks_round_trip_and_prove_only_their_own_name() -> None:
    from rollback.setaside import Mark

    mark = Mark("replaced", "run-1", "app", "app_replaced_20261128093000", details={"backup": "b"})
    parsed = Mark.from_comment(mark.to_comment())
    assert parsed is not None and parsed.get("backup") == "b" and parsed.run == "run-1"
    assert parsed.is_mark_of("app_replaced_20261128093000", "app")
    assert not parsed.is_mark_of("app_replaced_20261128093001", "app")
    assert not parsed.is_mark_of("app_replaced_20261128093000", "app2")
    for text in (None, "", "the shop", "rollback:", "rollback:[]", 'rollback:{"role": 1}', "rollback:{bad json"):
        assert Mark.from_comment(text) is None


def test_the_registry_knows_every_db_action() -> None:
    """Resume and 'rollback run' build handlers through the registry: it must know every action."""
    from typing import Any, cast

    from rollback.commands.db.handlers import DbHandlers
    from rollback.commands.registry import FAMILIES

    assert set(DbHandlers(cast(Any, None)).handlers()) == set(FAMILIES["db"])
