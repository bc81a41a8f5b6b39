"""Salvage: bring back the rows written after a backup, from the copy a swap kept, into the live database.

After ``db restore --swap`` the previous database is kept as ``<db>_replaced_<time>``;
everything users wrote after the backup exists only there. :func:`compare` reads
both databases table by table, by primary key, in foreign-key order (parents
first), and reports per table the keys only in the kept copy, the keys in both
whose rows differ, and how many are only in the live database. :func:`copy_missing`
copies the rows only in the kept copy into the live database in ONE transaction:
each row in its own savepoint, so a row that violates a constraint (a unique email
taken meanwhile, a parent that was skipped) is skipped and named by its key; then
every sequence of a copied table is advanced past the ids in use. Rows that
differ are never overwritten: they are listed for a person to judge.

Row contents never leave the database connections: values travel as text between
the two servers' sessions and only keys and counts are returned. Columns are
matched by name (a migration may have added or dropped some); generated columns
are skipped; ``_prisma_migrations`` is never salvaged (it is the migration
history, not user data).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TableDiff", "compare", "copy_missing", "user_tables"]

SKIPPED_TABLES = {("public", "_prisma_migrations")}
KEY_LIST_LIMIT = 1000


@dataclass
class Column:
    name: str
    type: str  # format_type(), usable in a cast
    identity_always: bool = False


@dataclass
class TableDiff:
    schema: str
    name: str
    key: list[str] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    salvageable: bool = True
    reason: str | None = None
    only_in_kept: list[tuple[str | None, ...]] = field(default_factory=list)
    differ: list[tuple[str | None, ...]] = field(default_factory=list)
    only_in_live: int = 0
    copied: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    sequences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        def keys(items: Sequence[tuple[str | None, ...]]) -> list[Any]:
            return [_show_key(k) for k in items[:KEY_LIST_LIMIT]]

        out: dict[str, Any] = {"table": self.label, "key": self.key, "salvageable": self.salvageable,
                               "reason": self.reason, "only_in_kept": len(self.only_in_kept),
                               "differ": len(self.differ), "only_in_live": self.only_in_live,
                               "keys_only_in_kept": keys(self.only_in_kept), "keys_differ": keys(self.differ),
                               "keys_truncated": max(len(self.only_in_kept), len(self.differ)) > KEY_LIST_LIMIT}
        if self.copied or self.skipped or self.sequences:
            out.update(copied=self.copied, skipped=self.skipped, sequences=self.sequences)
        return out


def _show_key(key: tuple[str | None, ...]) -> Any:
    return key[0] if len(key) == 1 else list(key)


def _ident(schema: str, name: str) -> Any:
    from psycopg import sql

    return sql.Identifier(schema, name)


def user_tables(conn: Any) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%' "
        "ORDER BY 1, 2").fetchall()
    return [(str(s), str(t)) for s, t in rows]


def _columns(conn: Any, schema: str, name: str) -> list[Column]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attidentity = 'a' FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attgenerated = '' ORDER BY a.attname", (schema, name)).fetchall()
    return [Column(str(r[0]), str(r[1]), bool(r[2])) for r in rows]


def _primary_key(conn: Any, schema: str, name: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, pos) ON true "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s ORDER BY k.pos", (schema, name)).fetchall()
    return [str(r[0]) for r in rows]


def _fk_order(conn: Any, tables: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``tables`` with every parent before its children (declared foreign keys); a cycle keeps
    the remaining tables in name order."""
    edges = conn.execute(
        "SELECT cn.nspname, cc.relname, pn.nspname, pc.relname FROM pg_constraint c "
        "JOIN pg_class cc ON cc.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace "
        "JOIN pg_class pc ON pc.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace "
        "WHERE c.contype = 'f'").fetchall()
    wanted = set(tables)
    parents: dict[tuple[str, str], set[tuple[str, str]]] = {t: set() for t in tables}
    for cs, ct, ps, pt in edges:
        child, parent = (str(cs), str(ct)), (str(ps), str(pt))
        if child in wanted and parent in wanted and child != parent:
            parents[child].add(parent)
    ordered: list[tuple[str, str]] = []
    remaining = sorted(tables)
    while remaining:
        ready = [t for t in remaining if not (parents[t] - set(ordered))]
        if not ready:  # a cycle: take the rest as they come
            ordered += remaining
            break
        ordered += ready
        remaining = [t for t in remaining if t not in ready]
    return ordered


def _fingerprints(conn: Any, schema: str, name: str, key: Sequence[str],
                  columns: Sequence[str]) -> dict[tuple[str | None, ...], str]:
    """key (as text) -> md5 of the row's ``columns`` (as text), for every row."""
    from psycopg import sql

    query = sql.SQL("SELECT {}, md5(ROW({})::text) FROM {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in key),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), _ident(schema, name))
    out: dict[tuple[str | None, ...], str] = {}
    with conn.cursor(name=f"salvage_{abs(hash((schema, name)))}") as cur:
        cur.itersize = 10_000
        cur.execute(query)
        for row in cur:
            out[tuple(row[:-1])] = str(row[-1])
    return out


def compare(kept: Any, live: Any, tables: Iterable[str] | None = None) -> list[TableDiff]:
    """Compare the kept copy with the live database, table by table, parents first.

    ``kept`` and ``live`` are connections (each inside a REPEATABLE READ transaction,
    so that every table is read at one moment); ``tables`` limits the comparison
    (``name`` or ``schema.name``).
    """
    in_live = set(user_tables(live))
    in_kept = set(user_tables(kept))
    chosen = set(in_live | in_kept)
    if tables is not None:
        wanted = set(tables)
        chosen = {t for t in chosen if t[1] in wanted or f"{t[0]}.{t[1]}" in wanted}
    out: list[TableDiff] = []
    for schema, name in _fk_order(live, sorted(chosen & in_live)) + sorted(chosen - in_live):
        diff = TableDiff(schema, name)
        out.append(diff)
        if (schema, name) in SKIPPED_TABLES:
            diff.salvageable = False
            diff.reason = "the migration history: never salvaged (see 'rollback db migrations')"
            continue
        if (schema, name) not in in_kept:
            diff.salvageable, diff.reason = False, "only in the live database"
            continue
        if (schema, name) not in in_live:
            diff.salvageable, diff.reason = False, "only in the kept copy (the schema changed): not salvaged"
            continue
        key = _primary_key(live, schema, name)
        if not key or key != _primary_key(kept, schema, name):
            diff.salvageable = False
            diff.reason = "no primary key: not salvageable" if not key else "the primary keys differ"
            continue
        live_cols = {c.name: c for c in _columns(live, schema, name)}
        kept_cols = {c.name for c in _columns(kept, schema, name)}
        common = [live_cols[n] for n in sorted(live_cols) if n in kept_cols]
        if any(k not in {c.name for c in common} for k in key):
            diff.salvageable, diff.reason = False, "its key columns changed"
            continue
        diff.key, diff.columns = key, common
        names = [c.name for c in common]
        old, new = _fingerprints(kept, schema, name, key, names), _fingerprints(live, schema, name, key, names)
        diff.only_in_kept = sorted((k for k in old if k not in new), key=_sort_key)
        diff.differ = sorted((k for k in old if k in new and old[k] != new[k]), key=_sort_key)
        diff.only_in_live = sum(1 for k in new if k not in old)
    return out


def _sort_key(key: tuple[str | None, ...]) -> tuple[Any, ...]:
    # Numeric keys in numeric order, others as text; NULL cannot be in a primary key.
    return tuple((0, int(k), "") if k is not None and k.lstrip("-").isdigit() else (1, 0, k or "") for k in key)


def copy_missing(kept: Any, live: Any, diffs: Sequence[TableDiff]) -> None:
    """Copy the rows only in the kept copy into the live database (``live`` is inside the one
    transaction the caller commits), parents first; fills ``copied``, ``skipped``, ``sequences``."""
    import psycopg
    from psycopg import sql

    for diff in diffs:
        if not diff.salvageable or not diff.only_in_kept:
            continue
        wanted = set(diff.only_in_kept)
        names = [c.name for c in diff.columns]
        select = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names),
            _ident(diff.schema, diff.name))
        overriding = sql.SQL(" OVERRIDING SYSTEM VALUE") if any(c.identity_always for c in diff.columns) \
            else sql.SQL("")
        insert = sql.SQL("INSERT INTO {} ({}){} VALUES ({})").format(
            _ident(diff.schema, diff.name), sql.SQL(", ").join(sql.Identifier(n) for n in names), overriding,
            sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(c.type)) for c in diff.columns))
        positions = [names.index(k) for k in diff.key]
        with kept.cursor(name=f"salvage_rows_{abs(hash((diff.schema, diff.name)))}") as cur:
            cur.itersize = 2_000
            cur.execute(select)
            for row in cur:
                key = tuple(row[i] for i in positions)
                if key not in wanted:
                    continue
                try:
                    with live.transaction():  # a savepoint: one bad row does not undo the others
                        live.execute(insert, row)
                    diff.copied += 1
                except psycopg.errors.IntegrityError as exc:
                    diag = exc.diag
                    diff.skipped.append({"key": _show_key(key), "sqlstate": exc.sqlstate,
                                         "constraint": diag.constraint_name,
                                         "reason": _violation(exc.sqlstate, diag.constraint_name)})
        if diff.copied:
            diff.sequences = _advance_sequences(kept, live, diff)


def _violation(sqlstate: str | None, constraint: str | None) -> str:
    kinds = {"23505": "unique", "23503": "foreign key", "23514": "check", "23502": "not null",
             "23P01": "exclusion"}
    what = kinds.get(sqlstate or "", "integrity")
    return f"violates {what} constraint {constraint}" if constraint else f"violates a {what} constraint"


def _advance_sequences(kept: Any, live: Any, diff: TableDiff) -> list[dict[str, Any]]:
    """Move each sequence of the table past the ids now in use and past every id the kept copy's
    sequence handed out (a skipped row may still be copied by hand)."""
    from psycopg import sql

    out: list[dict[str, Any]] = []
    table = f"{sql.Identifier(diff.schema).as_string(live)}.{sql.Identifier(diff.name).as_string(live)}"
    for column in diff.columns:
        row = live.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column.name)).fetchone()
        if not row or not row[0]:
            continue
        sequence = str(row[0])
        before = int(live.execute(sql.SQL("SELECT last_value FROM {}").format(sql.SQL(sequence))).fetchone()[0])
        in_use = live.execute(sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(column.name), _ident(diff.schema, diff.name))).fetchone()[0]
        kept_row = kept.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column.name)).fetchone()
        handed_out = 0
        if kept_row and kept_row[0]:
            handed_out = int(kept.execute(sql.SQL("SELECT last_value FROM {}").format(
                sql.SQL(str(kept_row[0])))).fetchone()[0])
        target = max(int(in_use or 0), handed_out)
        if target > before:
            live.execute("SELECT setval(%s, %s, true)", (sequence, target))
            out.append({"sequence": sequence, "from": before, "to": target})
    return out


def summary(diffs: Sequence[TableDiff]) -> Mapping[str, int]:
    return {"tables": len(diffs), "only_in_kept": sum(len(d.only_in_kept) for d in diffs),
            "differ": sum(len(d.differ) for d in diffs), "copied": sum(d.copied for d in diffs),
            "skipped": sum(len(d.skipped) for d in diffs),
            "not_salvageable": sum(1 for d in diffs if not d.salvageable and d.reason != "only in the live database")}
