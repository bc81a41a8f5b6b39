"""PostgreSQL through psycopg 3: row counts, rights, create/rename/swap, orphans.

psycopg is imported inside the functions that need it, so importing this
module stays cheap. Every ``psycopg.Error`` becomes a :class:`DatabaseError`
(redacted) in :func:`db_errors`, the one place the mapping happens.

A connection target (:class:`Target`) keeps the password apart: it is passed to
psycopg in the conninfo and to child processes in ``PGPASSWORD``, never on a
command line, and :meth:`Target.describe` never shows it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollback.errors import BadInput, DatabaseError, Interrupted, LockHeld, RollbackError, UnsafePrecondition
from rollback.interrupts import STOP_SIGNALS, handling
from rollback.lock import ensure_held
from rollback.redact import redact_text

__all__ = [
    "Database",
    "ForeignKey",
    "RoleRights",
    "StatementFailed",
    "SwapResult",
    "TableCount",
    "Target",
    "db_errors",
    "savepoint",
]

PRISMA_LOCK_ID = 72707369


@contextlib.contextmanager
def db_errors(action: str, hint: str | None = None) -> Iterator[None]:
    """Map psycopg errors raised inside the block to :class:`DatabaseError`."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        sqlstate = getattr(exc, "sqlstate", None)
        raise DatabaseError(f"{action} failed: {redact_text(detail)}",
                            hint or hint_for(sqlstate, connection=isinstance(exc, psycopg.OperationalError),
                                             detail=detail),
                            sqlstate=sqlstate) from exc


class StatementFailed(DatabaseError):
    """A statement inside :func:`savepoint` failed; the connection is usable again (``detail``: the server's
    message, redacted)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@contextlib.contextmanager
def savepoint(conn: Any) -> Iterator[None]:
    """Run the block in a savepoint: a failing statement rolls back to it and raises :class:`StatementFailed`,
    so one check that cannot run (a missing table, a missing privilege) does not end the others."""
    import psycopg

    try:
        with conn.transaction():
            yield
    except psycopg.Error as exc:
        raise StatementFailed(redact_text(" ".join(str(exc).split())[:200]) or type(exc).__name__) from exc


URL_HINT = "check the database URL and that the server is reachable"
_HINTS = {
    "42501": "the role lacks a privilege on that object: grant it, or use the owner's URL",
    "28P01": "authentication failed: check the user and password in the database URL",
    "28000": "the server refused the role: check pg_hba.conf and the user in the database URL",
    "3D000": "the database does not exist: check the database name in the URL",
    "3F000": "that schema does not exist: check the schema names in database.tables and the URL's ?schema=",
    "42P01": "that table does not exist: check database.tables in rollback.toml (schema.table for a schema "
             "other than the search path's)",
    "53100": "the database server's disk is full: free space on the server, then retry",
    "57P01": "the session was ended by an administrator; run the command again",
    "57014": "the statement was cancelled (a statement_timeout or an operator); run the command again",
}
# By SQLSTATE class (the first two characters), where no exact code matches.
_CLASS_HINTS = {
    "08": URL_HINT,
    "53": "the database server is out of a resource (disk, memory, connections): see the message, free it, "
          "then retry",
    "40": "a concurrent transaction got in the way; run the command again",
    "42": "the server rejected the statement: see the message (a missing table, column or privilege)",
}


def hint_for(sqlstate: str | None, *, connection: bool = False, detail: str = "") -> str | None:
    """The hint that matches a PostgreSQL error's cause (SQLSTATE), never a guess.

    The database URL is suggested only for what it can cause: a connection that could not
    be made or was lost (an ``OperationalError`` without SQLSTATE, class 08) and the
    authentication and database-name codes. libpq reports a refused login at connect time
    without a SQLSTATE: its message tells which.
    """
    if sqlstate:
        return _HINTS.get(sqlstate) or _CLASS_HINTS.get(sqlstate[:2])
    if not connection:
        return None
    if "password authentication failed" in detail:
        return _HINTS["28P01"]
    if "no pg_hba.conf entry" in detail or ("role" in detail and "does not exist" in detail):
        return _HINTS["28000"]
    if "database" in detail and "does not exist" in detail:
        return _HINTS["3D000"]
    return URL_HINT


@dataclass(frozen=True)
class Target:
    """Where to connect: libpq parameters (``dbname``, ``user``, ``host``...) incl. the password."""

    params: Mapping[str, str]

    @classmethod
    def from_url(cls, url: str, variable: str = "the database URL") -> Target:
        """libpq's reading of a URL or key=value string (:mod:`rollback.dburl`: every candidate
        password registered as a secret, ambiguous URLs refused naming ``variable``)."""
        from rollback.dburl import parse_database_url

        params, schema = parse_database_url(url, variable)
        if not params.get("dbname"):
            raise BadInput(f"{variable} names no database", "append /DBNAME to the URL")
        if schema and "options" not in params:
            params["options"] = f"-csearch_path={schema}"
        return cls(params)

    @property
    def dbname(self) -> str:
        return self.params["dbname"]

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    def for_db(self, dbname: str) -> Target:
        return Target({**self.params, "dbname": dbname})

    def conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**self.params)

    def public_conninfo(self) -> str:
        """The conninfo without the password (safe on a command line)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**{k: v for k, v in self.params.items() if k != "password"})

    def child_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Environment for pg_dump/pg_restore: the password in PGPASSWORD, nothing on argv.

        The rest of ``base`` is kept: PGSSLMODE, PGSSLROOTCERT and the like apply to
        the tools as to psycopg, and the ``--dbname`` conninfo overrides host, port,
        database and user.
        """
        env = dict(base)
        if self.password:
            env["PGPASSWORD"] = self.password
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env

    def describe(self) -> str:
        host = self.params.get("host", "localhost")
        port = self.params.get("port", "5432")
        # Redacted: a value is never a piece of the password (from_url refuses such URLs),
        # but this line goes into errors and journals, so it is checked once more here.
        return redact_text(f"{self.user or '(default user)'}@{host}:{port}/{self.dbname}")


@dataclass(frozen=True)
class TableCount:
    schema: str
    name: str
    rows: int

    @property
    def key(self) -> str:
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "name": self.name, "rows": self.rows}


@dataclass(frozen=True)
class RoleRights:
    role: str
    superuser: bool
    createdb: bool
    owns: Mapping[str, bool] = field(default_factory=dict)
    can_signal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "superuser": self.superuser, "createdb": self.createdb,
                "owns": dict(self.owns), "can_signal_backends": self.can_signal}


@dataclass(frozen=True)
class ForeignKey:
    """A child -> parent relation; a schema of ``None`` means "found through search_path"
    (config relations name bare tables, as Prisma models do)."""

    name: str
    child_table: str
    child_columns: tuple[str, ...]
    parent_table: str
    parent_columns: tuple[str, ...]
    declared: bool = True
    child_schema: str | None = None
    parent_schema: str | None = None

    @property
    def label(self) -> str:
        def table(schema: str | None, name: str) -> str:
            return name if schema in (None, "public") else f"{schema}.{name}"

        return (f"{table(self.child_schema, self.child_table)}({', '.join(self.child_columns)}) -> "
                f"{table(self.parent_schema, self.parent_table)}({', '.join(self.parent_columns)})")


@dataclass(frozen=True)
class SwapResult:
    live: str
    restored: str
    set_aside: str
    downtime_seconds: float
    terminated_sessions: int

    def to_dict(self) -> dict[str, Any]:
        return {"live": self.live, "restored": self.restored, "set_aside": self.set_aside,
                "downtime_seconds": round(self.downtime_seconds, 4),
                "terminated_sessions": self.terminated_sessions}


_COUNT_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1, 2
"""


class Database:
    """One PostgreSQL server reached through ``target`` (its database is the live one)."""

    def __init__(self, target: Target, *, connect_timeout: int = 10) -> None:
        self.target = target
        self.connect_timeout = connect_timeout

    # -- connections -----------------------------------------------------------------------------
    def connect(self, dbname: str | None = None, *, autocommit: bool = True) -> Any:
        import psycopg

        target = self.target.for_db(dbname) if dbname else self.target
        with db_errors(f"connecting to {target.describe()}"):
            return psycopg.connect(target.conninfo(), autocommit=autocommit, connect_timeout=self.connect_timeout)

    def maintenance(self, *, autocommit: bool = True) -> Any:
        """A connection to a database other than the live one (``postgres``, else ``template1``)."""
        import psycopg

        last: Exception | None = None
        for name in ("postgres", "template1"):
            if name == self.target.dbname:
                continue
            try:
                return psycopg.connect(self.target.for_db(name).conninfo(), autocommit=autocommit,
                                       connect_timeout=self.connect_timeout)
            except psycopg.Error as exc:
                last = exc
        raise DatabaseError(f"cannot connect to a maintenance database (postgres, template1) on "
                            f"{self.target.describe()}: {redact_text(' '.join(str(last).split()))}",
                            "the role needs CONNECT on the postgres database to create, rename or drop databases")

    def query(self, sql: str, params: Sequence[Any] = (), *, dbname: str | None = None) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn, db_errors("querying the database"):
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    # -- facts -------------------------------------------------------------------------------------
    def server_version(self, conn: Any = None) -> tuple[str, int]:
        """(``"15.5"``, 150005); on ``conn`` when given (else on a connection of its own)."""
        sql = "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
        if conn is None:
            rows = self.query(sql)
        else:
            with db_errors("reading the server version"):
                rows = conn.execute(sql).fetchall()
        return str(rows[0][0]).split()[0], int(rows[0][1])

    def encoding(self, conn: Any) -> str:
        """The encoding of the database ``conn`` is connected to (``UTF8``)."""
        with db_errors("reading the database's encoding"):
            return str(conn.execute("SELECT pg_encoding_to_char(encoding) FROM pg_database "
                                    "WHERE datname = current_database()").fetchone()[0])

    def tables(self, conn: Any) -> set[tuple[str, str]]:
        """``(schema, table)`` of every ordinary table of the database ``conn`` is connected to."""
        with db_errors("listing tables"):
            return {(str(s), str(t)) for s, t in conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r'").fetchall()}

    def find_table(self, conn: Any, schema: str, name: str) -> tuple[str, str] | None:
        """``(schema, table)`` of ``schema.name``, or of a bare ``name`` found through search_path (as
        Prisma's models are); None when there is no such table. psycopg's errors pass through."""
        from psycopg import sql

        ident = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        row = conn.execute(sql.SQL("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                                   "ON n.oid = c.relnamespace WHERE c.oid = to_regclass({}) "
                                   "AND c.relkind IN ('r', 'p')").format(sql.Literal(ident.as_string(conn)))).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def begin_read_only_snapshot(self, conn: Any) -> None:
        """Make ``conn``'s transaction (autocommit off) REPEATABLE READ, READ ONLY: one consistent view."""
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def run_script(self, conn: Any, script: str) -> None:
        """Run a SQL script (several statements, no parameters) on ``conn``."""
        conn.execute(script.encode())

    def comment(self, dbname: str) -> str | None:
        """``COMMENT ON DATABASE`` text of ``dbname`` (None without one or without the database)."""
        with self.maintenance() as conn, db_errors(f"reading the comment of database {dbname}"):
            row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                               (dbname,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def set_comment(self, dbname: str, text: str) -> None:
        from psycopg import sql

        with self.maintenance() as conn, db_errors(f"commenting on database {dbname}"):
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(dbname), sql.Literal(text)))

    def exists(self, dbname: str) -> bool:
        with self.maintenance() as conn, db_errors("looking up databases"):
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None

    def oid(self, dbname: str) -> int | None:
        """The database's oid (which a rename keeps: after a swap the live name has the copy's oid)."""
        with self.maintenance() as conn, db_errors("looking up databases"):
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        return None if row is None else int(row[0])

    def identity(self) -> dict[str, Any]:
        """Which database this is: the server's system identifier (``pg_control_system()``; None when
        the role may not read it), the database name, host and port (as the URL gives them)."""
        import psycopg

        system: str | None = None
        with self.connect() as conn:
            try:
                row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
                system = str(row[0]) if row and row[0] is not None else None
            except psycopg.Error:
                system = None
        return {"system_identifier": system, "database": self.target.dbname,
                "host": self.target.params.get("host"), "port": self.target.params.get("port")}

    def databases_with_prefix(self, prefix: str) -> list[dict[str, Any]]:
        """Databases whose name starts with ``prefix``: name, size, comment, whether they take connections."""
        with self.maintenance() as conn, db_errors("listing databases"):
            rows = conn.execute(
                "SELECT datname, pg_database_size(oid), shobj_description(oid, 'pg_database'), datallowconn "
                "FROM pg_database WHERE left(datname, %s) = %s ORDER BY 1", (len(prefix), prefix)).fetchall()
        return [{"name": str(r[0]), "bytes": int(r[1]), "comment": None if r[2] is None else str(r[2]),
                 "allows_connections": bool(r[3])} for r in rows]

    def databases_like(self, prefix: str) -> list[tuple[str, int]]:
        """Databases whose name starts with ``prefix``: (name, size in bytes)."""
        with self.maintenance() as conn, db_errors("listing databases"):
            rows = conn.execute(
                "SELECT datname, pg_database_size(oid) FROM pg_database WHERE left(datname, %s) = %s ORDER BY 1",
                (len(prefix), prefix)).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def rights(self, databases: Sequence[str] = ()) -> RoleRights:
        with self.maintenance() as conn, db_errors("reading the role's rights"):
            role, superuser, createdb = conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
            owns: dict[str, bool] = {}
            for name in databases:
                row = conn.execute("SELECT pg_has_role(current_user, datdba, 'USAGE') FROM pg_database "
                                   "WHERE datname = %s", (name,)).fetchone()
                owns[name] = bool(row[0]) if row else False
            signal = conn.execute("SELECT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')").fetchone()
        return RoleRights(str(role), bool(superuser), bool(createdb), owns, bool(signal[0]) or bool(superuser))

    def unreadable(self, dbname: str) -> list[str]:
        """The tables, sequences and materialized views of ``dbname`` this role may not read (``SELECT``,
        and ``USAGE`` on their schema): what would make ``pg_dump`` of it fail."""
        with self.connect(dbname) as conn, db_errors(f"reading the privileges on {dbname}"):
            rows = conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'S', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' "
                "AND NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')) "
                "ORDER BY 1, 2").fetchall()
        return [f"{schema}.{name}" for schema, name in rows]

    def table_counts(self, dbname: str | None = None, tables: Sequence[tuple[str, str]] | None = None,
                     conn: Any = None) -> list[TableCount]:
        """Exact row counts (``count(*)``) of every user table, or of ``tables``."""
        from psycopg import sql

        def run(connection: Any) -> list[TableCount]:
            with db_errors("counting rows"):
                names = tables if tables is not None else [(str(s), str(t)) for s, t in
                                                            connection.execute(_COUNT_TABLES).fetchall()]
                out = []
                for schema, table in names:
                    query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                    count = connection.execute(query).fetchone()[0]
                    out.append(TableCount(schema, table, int(count)))
                return out

        if conn is not None:
            return run(conn)
        with self.connect(dbname) as connection:
            return run(connection)

    # -- what changed in a database since a moment (staged standbys) ----------------------------------
    def xid_horizon(self) -> int:
        """The first transaction id not yet assigned (64-bit, cluster-wide): every row written after this
        moment carries an ``xmin`` at or past it."""
        with self.maintenance() as conn, db_errors("reading the transaction horizon"):
            return int(conn.execute("SELECT txid_snapshot_xmax(txid_current_snapshot())").fetchone()[0])

    def sequence_states(self, dbname: str) -> str:
        """A digest of every sequence's state in ``dbname`` (``nextval`` writes no row version)."""
        import hashlib

        with self.connect(dbname) as conn, db_errors(f"reading the sequences of {dbname}"):
            rows = conn.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences "
                                "ORDER BY 1, 2").fetchall()
        return hashlib.sha256(repr([tuple(map(str, row)) for row in rows]).encode()).hexdigest()[:16]

    def written_since(self, dbname: str, horizon: int) -> list[str]:
        """The user tables of ``dbname`` holding a row version written by a transaction at or after
        ``horizon`` (inserted or updated since; a delete alone changes the row counts), and the tables
        whose columns were changed since. One sequential read of each table, stopping at the first such
        row; ``age(xmin)`` compares transaction ids across wraparound (the raw ``xmin`` survives freezing).
        A horizon more than a billion transactions back cannot be judged: reported as such."""
        from psycopg import sql

        with self.connect(dbname) as conn, db_errors(f"checking what changed in {dbname}"):
            now = int(conn.execute("SELECT txid_snapshot_xmax(txid_current_snapshot())").fetchone()[0])
            if now - horizon > 1_000_000_000:
                return [f"(more than a billion transactions since {horizon}: cannot tell)"]
            xid = str(max(3, horizon % 2**32))  # 0-2 are special transaction ids
            changed = [f"{s}.{t} (columns)" for s, t in conn.execute(
                "SELECT DISTINCT n.nspname, c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' "
                "AND n.nspname NOT LIKE 'pg_temp%%' AND age(a.xmin) <= age(%s::text::xid) ORDER BY 1, 2",
                (xid,)).fetchall()]
            for schema, table in conn.execute(_COUNT_TABLES).fetchall():
                query = sql.SQL("SELECT EXISTS (SELECT 1 FROM ONLY {}.{} WHERE age(xmin) <= age(%s::text::xid))"
                                ).format(sql.Identifier(schema), sql.Identifier(table))
                if conn.execute(query, (xid,)).fetchone()[0]:
                    changed.append(f"{schema}.{table} (rows)")
        return changed

    @contextlib.contextmanager
    def exported_snapshot(self, dbname: str | None = None) -> Iterator[tuple[str, Any]]:
        """A REPEATABLE READ transaction with an exported snapshot, kept open for the block (on the
        live database, or on ``dbname``).

        pg_dump ``--snapshot`` then dumps exactly what this transaction sees, so
        the row counts taken here match the dump.
        """
        conn = self.connect(dbname, autocommit=False)
        try:
            with db_errors("exporting a snapshot"):
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])
            yield snapshot, conn
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.close()

    # -- databases -----------------------------------------------------------------------------------
    def create_database_like(self, name: str, like: str, *, comment: str | None = None,
                             template: str | None = None) -> None:
        """Create a database ``name`` with the owner, settings and grants of ``like`` (and
        ``comment``, rollback's mark, set right after it is created).

        Empty (from ``template0``), or with ``template`` a file copy of that database
        (``STRATEGY FILE_COPY``: a checkpoint, a copy of its files, another checkpoint; no
        WAL for the data). A template must have no sessions: a staged standby refuses
        connections for that reason.
        """
        from psycopg import sql

        with self.maintenance() as conn, db_errors(f"creating database {name}"):
            row = conn.execute(
                "SELECT pg_get_userbyid(datdba), datconnlimit, datacl IS NULL, "
                "pg_encoding_to_char(encoding), datcollate, datctype, rolsuper "
                "FROM pg_database, pg_roles WHERE datname = %s AND rolname = current_user", (like,)).fetchone()
            if row is None:
                raise DatabaseError(f"database {like} does not exist", "check the database URL")
            owner, connlimit, default_acl, encoding, collate, ctype, superuser = row
            ident = sql.Identifier(name)
            if template is None:
                create = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                    ident, sql.Literal(encoding), sql.Literal(collate), sql.Literal(ctype))
            else:
                # The copy keeps the template's encoding and locale (the standby was created like the live one).
                create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident, sql.Identifier(template))
                if int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 150000:
                    create = sql.SQL("{} STRATEGY FILE_COPY").format(create)
            if superuser:
                create = sql.SQL("{} OWNER {}").format(create, sql.Identifier(owner))
            conn.execute(create)
            try:
                if comment is not None:
                    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(comment)))
                if connlimit != -1:
                    conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(ident,
                                                                                       sql.Literal(connlimit)))
                for (setting,) in conn.execute(
                        "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d "
                        "ON d.oid = s.setdatabase WHERE d.datname = %s AND s.setrole = 0", (like,)).fetchall():
                    key, _, value = str(setting).partition("=")
                    # A list setting is stored already quoted, item by item ('"$user", public');
                    # as one Literal it would become a single item.
                    rendered = sql.SQL(value) if _is_list_setting(key) else sql.Literal(value)
                    conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(ident, sql.Identifier(key),
                                                                               rendered))
                if not default_acl:
                    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
                    grants = conn.execute(
                        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, "
                        "a.privilege_type FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s",
                        (like,)).fetchall()
                    for grantee, privilege in grants:
                        who = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
                        conn.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), ident, who))
            except Exception:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
                raise

    def set_allow_connections(self, name: str, allowed: bool) -> None:
        from psycopg import sql

        with self.maintenance() as conn, db_errors(f"changing whether {name} takes connections"):
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if allowed else "false")))

    def database_facts(self, name: str) -> dict[str, Any] | None:
        """Size, whether it takes connections, its sessions, and whether this role may use it as
        a template (owner or superuser); None when there is no such database."""
        with self.maintenance() as conn, db_errors(f"reading the catalog entry of {name}"):
            # Client sessions only: an autovacuum worker may be in any database (even one that refuses
            # connections), and CREATE DATABASE ... TEMPLATE tells it to leave.
            row = conn.execute(
                "SELECT pg_database_size(d.oid), d.datallowconn, "
                "(SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid "
                "AND a.backend_type = 'client backend'), "
                "pg_has_role(current_user, d.datdba, 'USAGE') OR (SELECT rolsuper FROM pg_roles "
                "WHERE rolname = current_user), d.xmin::text::bigint FROM pg_database d WHERE d.datname = %s",
                (name,)).fetchone()
        if row is None:
            return None
        # row_version: the pg_database row's xmin, which every ALTER DATABASE (ALLOW_CONNECTIONS...) changes
        # and VACUUM does not (it updates datfrozenxid in place).
        return {"bytes": int(row[0]), "allows_connections": bool(row[1]), "sessions": int(row[2]),
                "may_copy": bool(row[3]), "row_version": int(row[4])}

    def end_sessions(self, name: str, timeout: float = 10.0) -> int:
        """End every client session on ``name`` and wait until they are gone."""
        with self.maintenance() as conn, db_errors(f"ending the sessions on {name}"):
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if row is None:
            return 0
        ender = _SessionEnder(self, [int(row[0])])
        try:
            with db_errors(f"ending the sessions on {name}"):
                return ender.end_and_wait(timeout)
        finally:
            ender.finish()

    def drop_database(self, name: str) -> None:
        """Drop ``name`` (never the live database: refused here as a last line of defence)."""
        from psycopg import sql

        if name == self.target.dbname:
            raise UnsafePrecondition(f"refusing to drop the live database {name}")
        # Not WITH (FORCE): for a role that is not a superuser it refuses while an autovacuum
        # worker is in the database (a freshly loaded copy attracts one). Plain DROP DATABASE
        # asks autovacuum to leave and waits for it; the client sessions are ended here, and by
        # a second connection while DROP waits (it holds the database's lock: nobody new gets in).
        with self.maintenance() as conn, db_errors(f"dropping database {name}"):
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if row is None:
                return
            unendable = self._unendable_sessions(conn, name)
            if unendable:
                raise UnsafePrecondition(f"{unendable} session(s) of other roles are connected to {name} and this "
                                         "role may not end them", f"close them, or GRANT pg_signal_backend TO "
                                         f"{self.target.user}; nothing was dropped",
                                         details={"missing": "pg_signal_backend"})
            ender = _SessionEnder(self, [int(row[0])])
            try:
                ender.end_and_wait(timeout=10)
                ender.start()
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            finally:
                ender.finish()

    def _unendable_sessions(self, conn: Any, dbname: str) -> int:
        """Client sessions on ``dbname`` this role may not end (another role's, without pg_signal_backend)."""
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid "
            "WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND a.usesysid IS NOT NULL "
            "AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
            "AND (r.rolsuper OR NOT (pg_has_role(current_user, r.oid, 'MEMBER') "
            "OR pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')))", (dbname,)).fetchone()
        return int(row[0])

    def swap(self, restored: str, set_aside: str, *, aside_comment: str | None = None) -> SwapResult:
        """Put ``restored`` in place of the live database: both renames in ONE transaction.

        A kill at any moment (SIGKILL included) leaves either the old state or the
        new one: until ``COMMIT`` the server rolls everything back when our
        connection goes away. Nothing else is committed on the way (no
        ``ALLOW_CONNECTIONS false``): the first ``RENAME`` takes the database's
        exclusive lock, which holds new connections at the door until the commit
        (they then fail with "database was just renamed" and reconnect), while a
        second connection ends the sessions already inside. The set-aside copy
        gets ``aside_comment`` (rollback's mark) in the same transaction and the
        new live database the old one's comment.

        SIGINT, SIGTERM and SIGHUP abort the transaction before ``COMMIT``; from
        ``COMMIT`` until its outcome is known they wait. The outcome of a failure is
        read from the catalog over a fresh connection, never assumed.
        """
        from psycopg import sql

        live = self.target.dbname
        with self.maintenance() as conn, db_errors("swapping databases", "nothing was changed"):
            oids = {str(n): int(o) for n, o in conn.execute(
                "SELECT datname, oid FROM pg_database WHERE datname = ANY(%s)", ([live, restored, set_aside],))}
            for name in (live, restored):
                if name not in oids:
                    raise UnsafePrecondition(f"database {name} does not exist", "nothing was changed")
            if set_aside in oids:
                raise UnsafePrecondition(f"database {set_aside} already exists",
                                         "wait a second and run it again; nothing was changed")
            for name in (live, restored):
                unendable = self._unendable_sessions(conn, name)
                if unendable:
                    raise UnsafePrecondition(
                        f"{unendable} session(s) of other roles are connected to {name} and this role may "
                        "not end them: it lacks pg_signal_backend", f"GRANT pg_signal_backend TO "
                        f"{self.target.user} (as a superuser), or close those sessions; nothing was changed",
                        details={"missing": "pg_signal_backend"})
            row = conn.execute("SELECT shobj_description(%s, 'pg_database')", (oids[live],)).fetchone()
            live_comment = None if row is None or row[0] is None else str(row[0])
        live_oid, restored_oid = oids[live], oids[restored]

        def rename(old: str, new: str) -> sql.Composed:
            return sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))

        def comment(name: str, text: str | None) -> sql.Composed:
            return sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.SQL("NULL") if text is None else sql.Literal(text))

        with _InterruptGuard() as guard:
            ender = _SessionEnder(self, [live_oid, restored_oid])
            try:
                txn = self.maintenance(autocommit=False)
            except BaseException:
                ender.finish()
                raise
            pid = int(txn.info.backend_pid)
            committed: bool | None = False
            started = time.monotonic()
            ended = 0
            try:
                with db_errors("swapping databases", "nothing was changed"):
                    txn.execute("SET LOCAL lock_timeout = '10s'")
                    txn.execute("SET LOCAL statement_timeout = '30s'")
                    started = time.monotonic()
                    ended = ender.end_and_wait(timeout=5)
                    ender.start()  # ends stragglers while the first RENAME waits for the database to empty
                    txn.execute(rename(live, set_aside))
                    txn.execute(rename(restored, live))
                    txn.execute(comment(set_aside, aside_comment))
                    txn.execute(comment(live, live_comment))
                    ended += ender.finish()
                    ensure_held()  # a team lease lost since the step began: roll back, never COMMIT
                    guard.hold()  # from COMMIT on, signals wait until the outcome is known
                    committed = None
                    txn.commit()
                    committed = True
            except BaseException as exc:
                guard.hold()  # nothing may interrupt working out where things stand
                with contextlib.suppress(Exception):
                    ender.finish()
                with contextlib.suppress(Exception):
                    txn.close()
                # committed False: COMMIT was never sent, the server rolls back as the connection goes.
                # committed None: it was sent; read the catalog once that session is gone.
                state = "old" if committed is False else self._swap_state(live, live_oid, restored_oid, pid)
                if state != "new":
                    failure = _swap_failed(exc, state, live, restored, set_aside, guard.pending)
                    if failure is exc:
                        raise
                    raise failure from exc
            finally:
                guard.hold()
                with contextlib.suppress(Exception):
                    ender.finish()
                with contextlib.suppress(Exception):
                    txn.close()
            answered = self._answers(live)
            downtime = time.monotonic() - started
            result = SwapResult(live, restored, set_aside, downtime, ended)
            if not answered:
                raise DatabaseError(
                    f"the swap DID happen ({restored} is now {live}, the previous database is kept as "
                    f"{set_aside}), but {live} does not answer a query", f"check the server log and {live}",
                    set_aside=set_aside, swapped=result.to_dict())
            if guard.pending:
                raise Interrupted(
                    f"interrupted ({guard.pending}) after the swap completed: {restored} is now {live}, the "
                    f"previous database is kept as {set_aside}", "nothing to undo; check the live database",
                    swapped=result.to_dict())
        return result

    def _answers(self, dbname: str, attempts: int = 20) -> bool:
        """The database takes a new connection and answers ``SELECT 1`` (connections that were waiting
        at the rename's lock are refused once: retry briefly)."""
        import psycopg

        for _ in range(attempts):
            try:
                with psycopg.connect(self.target.for_db(dbname).conninfo(), autocommit=True,
                                     connect_timeout=self.connect_timeout) as conn:
                    conn.execute("SELECT 1").fetchone()
                return True
            except psycopg.Error:
                time.sleep(0.05)
        return False

    def _swap_state(self, live: str, live_oid: int, restored_oid: int, backend_pid: int) -> str:
        """``"old"``, ``"new"`` or ``"missing"``: which database holds the live name, read once the
        swap's own backend is gone (so its transaction has committed or rolled back)."""
        with self.maintenance() as conn, db_errors(
                "the swap's COMMIT was sent but its outcome is unknown; reading the catalog",
                f"check which database is named {live}: the previous one or the restored copy"):
            deadline = time.monotonic() + 10
            while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend_pid,)).fetchone():
                if time.monotonic() > deadline:
                    # Still there (busy): end it, which rolls its transaction back.
                    conn.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
                    deadline = time.monotonic() + 10
                time.sleep(0.02)
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (live,)).fetchone()
        if row is None:
            return "missing"
        oid = int(row[0])
        return "old" if oid == live_oid else "new" if oid == restored_oid else "missing"

    # -- parallel COPY -----------------------------------------------------------------------------
    def copy_in(self, dbname: str, schema: str, table: str, blocks: Iterable[bytes], *, streams: int,
                encoding: str, session: Mapping[str, str] | None = None) -> int:
        """Load COPY text rows (blocks of whole lines) into ``schema.table`` over ``streams``
        connections at once; returns the bytes sent.

        pg_restore loads one table over one connection, so on a database whose size
        is one big table its parallel jobs do not help; splitting the rows does. The
        column list is the one pg_dump writes (no dropped or generated columns).
        Any failure aborts every stream's COPY (``CopyFail``) and raises.
        """
        import queue
        import threading

        from psycopg import sql

        with self.connect(dbname) as conn, db_errors(f"reading the columns of {schema}.{table}"):
            columns = [str(r[0]) for r in conn.execute(
                "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
                "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
                (schema, table)).fetchall()]
        statement = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns))
        settings = {"client_encoding": encoding, "datestyle": "ISO", "intervalstyle": "postgres",
                    "row_security": "off", **dict(session or {})}
        done, abort = object(), object()
        queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=4) for _ in range(max(1, streams))]
        errors: list[BaseException] = []

        def writer(inbox: queue.Queue[Any]) -> None:
            ended = False  # the producer's last item (done or abort) was taken
            try:
                with self.connect(dbname) as conn:
                    for key, value in settings.items():
                        conn.execute("SELECT set_config(%s, %s, false)", (key, value))
                    with conn.cursor() as cur, cur.copy(statement) as copy:
                        while True:
                            item = inbox.get()
                            ended = item is done or item is abort
                            if item is done:
                                break
                            if item is abort:
                                raise InterruptedError("aborted: another stream failed")
                            copy.write(item)
            except BaseException as exc:  # reported to the producer, which stops every stream
                errors.append(exc)
                while not ended:  # keep taking blocks so the producer never blocks on a full queue
                    item = inbox.get()
                    ended = item is done or item is abort

        threads = [threading.Thread(target=writer, args=(q,), daemon=True) for q in queues]
        for thread in threads:
            thread.start()
        sent = 0
        end = done
        try:
            for number, block in enumerate(blocks):
                if errors:
                    end = abort
                    break
                queues[number % len(queues)].put(block)
                sent += len(block)
        except BaseException:
            end = abort
            raise
        finally:
            for inbox in queues:
                inbox.put(end)
            for thread in threads:
                thread.join()
        failures = [e for e in errors if not isinstance(e, InterruptedError)]
        if failures:
            with db_errors(f"loading {schema}.{table}"):
                raise failures[0]
            raise failures[0]
        return sent

    # -- advisory lock ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def advisory_lock(self, conn: Any, key: int = PRISMA_LOCK_ID, timeout: float = 10.0) -> Iterator[None]:
        """Prisma Migrate's session lock (``pg_advisory_lock(72707369)``), waited for up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with db_errors("taking the migration advisory lock"):
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise LockHeld(f"the migration advisory lock ({key}) is held by another session",
                                   "wait for the running 'prisma migrate' to finish", holder=key)
                time.sleep(0.1)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    # -- integrity ---------------------------------------------------------------------------------------
    def foreign_keys(self, conn: Any) -> list[ForeignKey]:
        rows = conn.execute("""
            SELECT c.conname, cn.nspname, cc.relname, pn.nspname, pc.relname,
                   ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
                   ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                         JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
            FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
            JOIN pg_class cc ON cc.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
            JOIN pg_class pc ON pc.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
            WHERE c.contype = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 2, 3, 1""").fetchall()
        return [ForeignKey(str(r[0]), str(r[2]), tuple(r[5]), str(r[4]), tuple(r[6]),
                           child_schema=str(r[1]), parent_schema=str(r[3])) for r in rows]

    def count_orphans(self, conn: Any, fk: ForeignKey) -> int:
        """Child rows whose (non-null) key has no parent row.

        Every name is an ``sql.Identifier``: config relations are user input.
        """
        from psycopg import sql

        def table(schema: str | None, name: str) -> sql.Composable:
            if schema is None:
                return sql.Identifier(name)
            return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))

        not_null = sql.SQL(" AND ").join(sql.SQL("ch.{} IS NOT NULL").format(sql.Identifier(c))
                                         for c in fk.child_columns)
        match = sql.SQL(" AND ").join(sql.SQL("p.{} = ch.{}").format(sql.Identifier(pc), sql.Identifier(cc))
                                      for cc, pc in zip(fk.child_columns, fk.parent_columns, strict=True))
        query = sql.SQL("SELECT count(*) FROM {} ch WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
            table(fk.child_schema, fk.child_table), not_null, table(fk.parent_schema, fk.parent_table), match)
        return int(conn.execute(query).fetchone()[0])


class _InterruptGuard:
    """SIGINT, SIGTERM and SIGHUP as Ctrl-C (``KeyboardInterrupt``) while the swap runs, except inside
    :meth:`deferred` (and after :meth:`hold`), where they are only recorded in ``pending``.

    Installed only in the main thread (where Python runs signal handlers); the
    previous handlers come back on exit.
    """

    def __init__(self) -> None:
        self.pending: str | None = None
        self.received: str | None = None
        self._defer = 0
        self._handlers = contextlib.ExitStack()

    def __enter__(self) -> _InterruptGuard:
        # A signal ignored when the command started (nohup's SIGHUP) stays ignored, as in the runner.
        self._handlers.enter_context(handling(self._handle, STOP_SIGNALS))
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        name = signal.Signals(signum).name
        self.received = name
        if self._defer:
            self.pending = self.pending or name
            return
        raise KeyboardInterrupt(name)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1

    def hold(self) -> None:
        """Defer every signal from now until the guard is left."""
        self._defer += 1

    def __exit__(self, *exc: object) -> None:
        self._handlers.close()


class _SessionEnder:
    """A second connection that ends every client session on some databases (by oid: after the
    swap the live *name* belongs to another database, whose new sessions must live)."""

    def __init__(self, db: Database, oids: Sequence[int]) -> None:
        import threading

        self.db = db
        self.oids = list(oids)
        self.ended = 0
        # Connected now, before the sessions are ended: connecting is not part of the downtime.
        self._conn: Any = db.maintenance()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _end_once(self) -> tuple[int, int]:
        if self._conn is None:
            self._conn = self.db.maintenance()
        rows = self._conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datid = ANY(%s) "
            "AND pid <> pg_backend_pid() AND usesysid IS NOT NULL", (self.oids,)).fetchall()
        return sum(1 for (ok,) in rows if ok), len(rows)

    def end_and_wait(self, timeout: float) -> int:
        """End the sessions now and wait until none is left; returns how many were ended."""
        deadline = time.monotonic() + timeout
        ended = 0
        while True:
            now_ended, present = self._end_once()
            ended += now_ended
            if not present:
                return ended
            if time.monotonic() > deadline:
                raise UnsafePrecondition(f"{present} session(s) could not be ended within {timeout:.0f} s",
                                         "the role needs pg_signal_backend (GRANT pg_signal_backend TO <role>) "
                                         "or to be a superuser; nothing was changed")
            time.sleep(0.002)  # an ended session is gone within milliseconds

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._run, name="rollback-swap-session-ender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 60  # a safety net: the swap stops it long before
        while not self._stop.wait(0.02) and time.monotonic() < deadline:
            try:
                self.ended += self._end_once()[0]
            except Exception:  # the swap's own statements report the real failure
                return

    def finish(self) -> int:
        """Stop ending sessions (before COMMIT: afterwards the restored database is the live one)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                raise DatabaseError("the helper connection that ends sessions did not stop",
                                    "nothing was changed; run the command again")
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        ended, self.ended = self.ended, 0
        return ended


def _swap_failed(exc: BaseException, state: str, live: str, restored: str, set_aside: str,
                 pending: str | None) -> RollbackError:
    """The error for a swap that did not happen (``state`` "old") or left the live name empty."""
    if state == "missing":
        return DatabaseError(
            f"swapping databases failed ({_describe_failure(exc)}) and no database is named {live} now",
            f"look for {set_aside} and {restored}; rename the one to keep to {live} by hand", set_aside=set_aside)
    unchanged = f"nothing was changed: {live} keeps its name and its data"
    if isinstance(exc, KeyboardInterrupt) or pending:
        how = str(exc) if isinstance(exc, KeyboardInterrupt) and str(exc) else pending or "Ctrl-C"
        return Interrupted(f"interrupted ({how}) during the swap; {unchanged}", "run the command again to swap")
    if isinstance(exc, RollbackError):
        if "nothing was changed" not in (exc.hint or ""):
            return exc.with_hint(f"{exc.hint}; {unchanged}")
        return exc
    return DatabaseError(f"swapping databases failed: {_describe_failure(exc)}", unchanged)


_LIST_SETTINGS = {"search_path", "temp_tablespaces"}


def _is_list_setting(key: str) -> bool:
    """Settings PostgreSQL stores as a list of quoted items (GUC_LIST_QUOTE or GUC_LIST_INPUT)."""
    return key.lower() in _LIST_SETTINGS or key.lower().endswith("_preload_libraries")


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, DatabaseError):
        return exc.message
    return redact_text(" ".join(str(exc).split())) or type(exc).__name__
