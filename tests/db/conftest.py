"""A real PostgreSQL for every database test.

One throwaway cluster per session (``rollback.sandbox.postgres.start_postgres``:
initdb + pg_ctl in a temp dir, as the ``postgres`` OS user when we are root),
unless ``TEST_DATABASE_URL`` names a server (a superuser URL). Under pytest-xdist
each worker has its own cluster (its session), so no test shares a server's
connections or catalog with another worker's. Each test gets a fresh database
owned by the non-superuser role ``app``, seeded with a small Prisma-like schema
(sequences, indexes, constraints, ``_prisma_migrations``): a clone of a template
seeded once per session (``CREATE DATABASE ... TEMPLATE``, a file copy, about ten
times quicker than running the schema again), and a rollback.toml pointing at it.
With ``CI=true`` a server that cannot start fails the run; elsewhere it is a skip, which fails the run too unless
``ROLLBACK_TESTS_ALLOW_SKIP=1`` (tests/conftest.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import IN_CI, render_config

SCHEMA = """
CREATE TABLE "User" (
    id SERIAL PRIMARY KEY,
    email TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX "User_email_key" ON "User"(email);
CREATE TABLE "Integration" (
    id SERIAL PRIMARY KEY,
    "userId" INTEGER NOT NULL REFERENCES "User"(id) ON DELETE CASCADE,
    provider TEXT NOT NULL CHECK (provider <> '')
);
CREATE INDEX "Integration_userId_idx" ON "Integration"("userId");
-- relationMode = "prisma": no foreign key, the relation is declared in rollback.toml
CREATE TABLE "UserStats" (
    id SERIAL PRIMARY KEY,
    "userId" INTEGER NOT NULL,
    visits INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "User"(email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 300) g;
INSERT INTO "Integration"("userId", provider) SELECT g, 'github' FROM generate_series(1, 300, 2) g;
INSERT INTO "UserStats"("userId", visits) SELECT g, g * 3 FROM generate_series(1, 200) g;
CREATE TABLE "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ,
    "migration_name" VARCHAR(255) NOT NULL,
    "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "_prisma_migrations" VALUES
 ('00000000-0000-0000-0000-000000000001', repeat('a', 64), now() - interval '2 days', '20261101000000_init',
  NULL, NULL, now() - interval '2 days', 1),
 ('00000000-0000-0000-0000-000000000002', repeat('b', 64), now() - interval '1 day', '20261120000000_stats',
  NULL, NULL, now() - interval '1 day', 1);
"""


@dataclass
class ExternalServer:
    """The same surface as ``PostgresCluster`` over a server named by ``TEST_DATABASE_URL``."""

    admin_url: str
    passwords: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.admin_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.admin_user = parts.username or "postgres"
        self.passwords[self.admin_user] = parts.password or ""
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            self.major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        self.app_role = f"app_{secrets.token_hex(3)}"
        self.create_role(self.app_role, createdb=True)
        self.passwords["app"] = self.passwords[self.app_role]

    def url(self, dbname: str = "app", user: str = "app") -> str:
        name = self.app_role if user == "app" else (self.admin_user if user == "postgres" else user)
        return f"postgresql://{name}:{quote(self.passwords[user], safe='')}@{self.host}:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres", user: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url(dbname, user), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []

    def create_role(self, name: str, *, createdb: bool = False, superuser: bool = False) -> str:
        password = secrets.token_urlsafe(18)
        flags = (" CREATEDB" if createdb else " NOCREATEDB") + (" SUPERUSER" if superuser else "")
        self.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'{flags}")
        self.passwords[name] = password
        return password

    def create_database(self, name: str, owner: str = "app") -> None:
        owner = self.app_role if owner == "app" else owner
        self.execute(f'CREATE DATABASE "{name}" OWNER "{owner}" TEMPLATE template0')

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def databases(self) -> list[str]:
        return [row[0] for row in self.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]

    def stop(self) -> None:
        template = getattr(self, "schema_template", None)
        if template:
            self.execute(f'ALTER DATABASE "{template}" WITH IS_TEMPLATE false')
            self.drop_database(template)
        self.execute(f'DROP ROLE IF EXISTS "{self.app_role}"')


@pytest.fixture(scope="session")
def pg() -> Iterator[Any]:
    """The PostgreSQL server for this session."""
    if os.environ.get("TEST_DATABASE_URL"):
        server: Any = ExternalServer(os.environ["TEST_DATABASE_URL"])
    else:
        from rollback.sandbox.postgres import start_postgres

        try:
            server = start_postgres()
        except Exception as exc:  # no binaries, cannot start...
            if IN_CI:
                pytest.fail(f"PostgreSQL could not start (CI=true forbids skipping): {exc}")
            pytest.skip(f"PostgreSQL could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


def seeded_database(server: Any, name: str) -> None:
    """Create database ``name``, owned by the app role, holding :data:`SCHEMA` and its rows: a clone of
    the session's template, which is seeded the first time (one per server and app role). Nothing else
    ever connects to the template, so ``CREATE DATABASE ... TEMPLATE`` never finds it in use."""
    template = getattr(server, "schema_template", None)
    owner = str(getattr(server, "app_role", "app"))
    if template is None:
        template = f"schema_template_{secrets.token_hex(3)}"
        server.create_database(template, owner="app")
        server.execute(SCHEMA, dbname=template, user="app")
        # Marked as a template, so that no listing of databases (ours or rollback's) shows it.
        server.execute(f'ALTER DATABASE "{template}" WITH IS_TEMPLATE true')
        server.schema_template = template
    server.execute(f'CREATE DATABASE "{name}" OWNER "{owner}" TEMPLATE "{template}"')


@dataclass
class LiveDb:
    """One test's live database and the config/environment pointing at it."""

    pg: Any
    name: str
    config_path: Path
    root: Path
    url: str

    @property
    def backups_dir(self) -> Path:
        return self.root / "backups"

    @property
    def journal_dir(self) -> Path:
        return self.root / "runs"

    @property
    def migrations_dir(self) -> Path:
        return self.root / "prisma" / "migrations"

    def sql(self, query: str, *, user: str = "postgres", dbname: str | None = None) -> list[tuple[Any, ...]]:
        return list(self.pg.execute(query, dbname=dbname or self.name, user=user))

    def scalar(self, query: str, *, dbname: str | None = None) -> Any:
        return self.sql(query, dbname=dbname)[0][0]

    def databases(self) -> list[str]:
        return [d for d in self.pg.databases() if d == self.name or d.startswith(self.name + "_")]

    def journal_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.journal_dir.glob("*.jsonl")))

    def config(self) -> Any:
        from rollback.config import load_config

        return load_config(self.config_path)


@pytest.fixture
def live_db(pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveDb]:
    name = f"live{secrets.token_hex(4)}"
    seeded_database(pg, name)
    url = pg.url(name, "app")
    config = tmp_path / "rollback.toml"
    config.write_text(render_config({"test": {"database": {
        "url_env": "TEST_LIVE_DATABASE_URL",
        "tables": ["User", "Integration", "UserStats"],
        "grow_only": ["User"],
        "relations": [{"child": "UserStats.userId", "parent": "User.id"}],
        "backups_dir": "backups",
        "migrations_dir": "prisma/migrations",
    }}}, default_env="test", journal_dir=str(tmp_path / "runs")))
    monkeypatch.setenv("TEST_LIVE_DATABASE_URL", url)
    monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
    monkeypatch.delenv("ROLLBACK_ENV", raising=False)
    monkeypatch.delenv("ROLLBACK_JOURNAL_DIR", raising=False)
    db = LiveDb(pg, name, config, tmp_path, url)
    try:
        yield db
    finally:
        for database in db.databases():
            pg.drop_database(database)


@pytest.fixture
def password_of(live_db: LiveDb) -> str:
    return str(urlsplit(live_db.url).password)


def assert_no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


Damage = Callable[[LiveDb], None]
