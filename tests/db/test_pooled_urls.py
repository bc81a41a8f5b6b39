"""Pooler URLs and the app's new URL after a database switch (rollback.dburl, run's switch checks), in memory."""

from __future__ import annotations

import pytest

from rollback.commands.run.plan import check_switchable
from rollback.dburl import pooler_reason, url_user, with_server
from rollback.errors import UnsafePrecondition


@pytest.mark.parametrize(("url", "why"), [
    ("postgresql://u:p@h:6543/db", "port 6543"),
    ("postgres://u:p@h/db?schema=public&pgbouncer=true", "pgbouncer=true"),
    ("prisma://accelerate.prisma-data.net/?api_key=k", "prisma://"),
    ("prisma+postgres://localhost:51213/?api_key=k", "prisma+postgres://"),
    ("postgresql://u:p@app.proxy-abc123.eu-west-1.rds.amazonaws.com/db", "RDS Proxy"),
    ("host=h port=6543 dbname=d", "port 6543"),
    ("postgresql://u:p@h1:5432,h2:6543/db", "port 6543"),
    ("postgresql://u:p@h/db?host=x.proxy-a1.us-east-1.rds.amazonaws.com", "RDS Proxy"),
])
def test_pooler_urls(url: str, why: str) -> None:
    assert why in str(pooler_reason(url))


@pytest.mark.parametrize("url", [
    "postgresql://u:p@db.c1.us-east-1.rds.amazonaws.com:5432/db?sslmode=require",
    "postgresql://u:p%406543@h:5432/db",  # 6543 in the password is no port
    "host=h port=5432 dbname=d",
    "postgresql://u:p@h/db?pgbouncer=false",
])
def test_direct_urls(url: str) -> None:
    assert pooler_reason(url) is None


def test_with_server_keeps_the_database_and_parameters() -> None:
    url = "postgresql://app:old@old.example.com:5432/app?schema=public&sslmode=require"
    assert with_server(url, host="new.rds.amazonaws.com", port=5433) == \
        "postgresql://app:old@new.rds.amazonaws.com:5433/app?schema=public&sslmode=require"
    assert with_server(url, host="new", port=None, username="app_admin", password="p/w@x:y") == \
        "postgresql://app_admin:p%2Fw%40x%3Ay@new:5432/app?schema=public&sslmode=require"
    assert url_user(url) == "app"


def test_check_switchable_refuses_what_an_endpoint_cannot_replace() -> None:
    with pytest.raises(UnsafePrecondition, match="sensitive variable"):
        check_switchable("demo", "DATABASE_URL", None)
    with pytest.raises(UnsafePrecondition, match=r"connection pooler \(pgbouncer=true\): the restored"):
        check_switchable("demo", "DATABASE_URL", "postgresql://u:p@h/db?pgbouncer=true")
    with pytest.raises(UnsafePrecondition, match="connects as u, not as the app role app_user"):
        check_switchable("demo", "DIRECT_URL", "postgresql://u:p@h/db", app_role="app_user")
    check_switchable("demo", "DIRECT_URL", "postgresql://app_user:p@h/db", app_role="app_user")
