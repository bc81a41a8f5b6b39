"""Salvage: bring back the rows written after a backup, from the copy a swap kept, into the live database.

After ``db restore --swap`` the previous database is kept as ``<db>_replaced_<time>``;
everything users wrote after the backup exists only there. :func:`compare` reads
both databases table by table, by primary key, in foreign-key order (parents
first), and reports per table the keys only in the kept copy, the keys in both
whose rows differ, and how many are only in the live database. :func:`copy_missing`
copies the rows only in the kept copy into the live database in ONE transaction.
First every sequence of a salvageable table is moved past every id seen in the
kept copy (and in use), so that the app's new inserts stop taking ids that the
kept copy's rows hold. Then each row goes in its own savepoint, so a row that
violates a constraint (a unique email taken meanwhile) is skipped and named by its
key. A row whose parent (through a declared foreign key or a relation from
``database.relations``, directly or through its own parent) differs between the two
databases or was skipped is skipped too, and named: after a restore the app reuses
ids, so a parent key that "differs" is usually another user's row, and copying the
child would attach it to that user. Rows that differ are never overwritten: they are
listed for a person to judge.

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

__all__ = ["Reference", "TableDiff", "compare", "copy_missing", "references", "user_tables"]

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
    context: bool = False  # compared only for the keys its children reference (see compare)

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


@dataclass(frozen=True)
class Reference:
    """A child -> parent reference salvage follows: a declared foreign key, or a relation from
    ``database.relations`` (Prisma's ``relationMode = "prisma"`` declares none in the database)."""

    name: str
    child: tuple[str, str]
    child_columns: tuple[str, ...]
    parent: tuple[str, str]
    parent_columns: tuple[str, ...]
    declared: bool = True

    def describe(self) -> str:
        if self.declared:
            return f"foreign key {self.name}"
        return f"relation {self.name} from rollback.toml"


def references(conn: Any, relations: Iterable[tuple[str, str]] = ()) -> list[Reference]:
    """The declared foreign keys of ``conn``'s database, plus ``relations`` (``("Child.column",
    "Parent.column")`` pairs, bare table names as Prisma models give them, found in any schema)."""
    rows = conn.execute("""
        SELECT c.conname, cn.nspname, cc.relname, pn.nspname, pc.relname,
               ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
               ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
        FROM pg_constraint c JOIN pg_class cc ON cc.oid = c.conrelid
        JOIN pg_namespace cn ON cn.oid = cc.relnamespace
        JOIN pg_class pc ON pc.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
        WHERE c.contype = 'f' ORDER BY 2, 3, 1""").fetchall()
    out = [Reference(str(r[0]), (str(r[1]), str(r[2])), tuple(str(c) for c in r[5]), (str(r[3]), str(r[4])),
                     tuple(str(c) for c in r[6])) for r in rows]
    tables = user_tables(conn)
    for child, parent in relations:
        child_table, child_column = child.split(".", 1)
        parent_table, parent_column = parent.split(".", 1)
        found_child = _by_name(tables, child_table)
        found_parent = _by_name(tables, parent_table)
        if found_child is None or found_parent is None:
            continue  # a relation naming a table this database does not have: nothing to follow
        out.append(Reference(f"{child} -> {parent}", found_child, (child_column,), found_parent, (parent_column,),
                             declared=False))
    return out


def _by_name(tables: Sequence[tuple[str, str]], name: str) -> tuple[str, str] | None:
    matches = [t for t in tables if t[1] == name]
    return next((t for t in matches if t[0] == "public"), matches[0] if matches else None)


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


def _fk_order(tables: Sequence[tuple[str, str]], refs: Sequence[Reference]) -> list[tuple[str, str]]:
    """``tables`` with every parent before its children (``refs``: foreign keys and relations); a
    cycle keeps the remaining tables in name order."""
    wanted = set(tables)
    parents: dict[tuple[str, str], set[tuple[str, str]]] = {t: set() for t in tables}
    for ref in refs:
        child, parent = ref.child, ref.parent
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


def compare(kept: Any, live: Any, tables: Iterable[str] | None = None, *,
            relations: Iterable[tuple[str, str]] = (), with_parents: bool = False) -> list[TableDiff]:
    """Compare the kept copy with the live database, table by table, parents first.

    ``kept`` and ``live`` are connections (each inside a REPEATABLE READ transaction,
    so that every table is read at one moment); ``tables`` limits the comparison
    (``name`` or ``schema.name``); ``relations`` (see :func:`references`) order tables
    that no foreign key links. With ``with_parents``, the tables ``tables`` reference
    (however deep) are compared too, as ``context``: :func:`copy_missing` needs to know
    which of their keys differ, and copies nothing into them.
    """
    in_live = set(user_tables(live))
    in_kept = set(user_tables(kept))
    refs = references(live, relations)
    chosen = set(in_live | in_kept)
    context: set[tuple[str, str]] = set()
    if tables is not None:
        wanted = set(tables)
        everything = chosen
        chosen = {t for t in chosen if t[1] in wanted or f"{t[0]}.{t[1]}" in wanted}
        if with_parents:
            context = _ancestors(chosen, refs) & everything - chosen
    out: list[TableDiff] = []
    picked = chosen | context
    for schema, name in _fk_order(sorted(picked & in_live), refs) + sorted(picked - in_live):
        diff = TableDiff(schema, name, context=(schema, name) in context)
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


def _ancestors(tables: set[tuple[str, str]], refs: Sequence[Reference]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    todo = list(tables)
    while todo:
        table = todo.pop()
        for ref in refs:
            if ref.child == table and ref.parent not in found and ref.parent not in tables:
                found.add(ref.parent)
                todo.append(ref.parent)
    return found


def _sort_key(key: tuple[str | None, ...]) -> tuple[Any, ...]:
    # Numeric keys in numeric order, others as text; NULL cannot be in a primary key.
    return tuple((0, int(k), "") if k is not None and k.lstrip("-").isdigit() else (1, 0, k or "") for k in key)


def copy_missing(kept: Any, live: Any, diffs: Sequence[TableDiff], *,
                 relations: Iterable[tuple[str, str]] = ()) -> None:
    """Copy the rows only in the kept copy into the live database (``live`` is inside the one
    transaction the caller commits), parents first; fills ``copied``, ``skipped``, ``sequences``.

    Sequences move first (past every id the kept copy holds); a row whose parent differs or
    was skipped is skipped with it (see the module's docstring)."""
    import psycopg
    from psycopg import sql

    for diff in diffs:
        if diff.salvageable and diff.key and not diff.context:
            diff.sequences = _advance_sequences(kept, live, diff)
    refs = references(live, relations)
    by_table = {(d.schema, d.name): d for d in diffs}
    # table -> {key: why the row is not (to be) in the live database as the kept copy has it}
    blocked: dict[tuple[str, str], dict[tuple[str | None, ...], str]] = {
        (d.schema, d.name): {k: "differs in the live database (another row holds that key)" for k in d.differ}
        for d in diffs if d.salvageable}
    for diff in diffs:
        # A parent table left out of --tables: its rows only in the kept copy stay there.
        if diff.context and diff.salvageable:
            blocked[(diff.schema, diff.name)].update(
                {k: "is not copied (its table was left out of --tables)" for k in diff.only_in_kept})
    for diff in diffs:
        if not diff.salvageable or not diff.only_in_kept or diff.context:
            continue
        table = (diff.schema, diff.name)
        wanted = set(diff.only_in_kept)
        names = [c.name for c in diff.columns]
        mine = [r for r in refs if r.child == table and all(c in names for c in r.child_columns)
                and r.parent in by_table]
        bad = {r: _blocked_values(kept, r, by_table[r.parent], blocked.get(r.parent, {}))
               for r in mine if r.parent != table}
        own = [r for r in mine if r.parent == table]
        # rows of this table that point (however deep) at a blocked row of the same table -> why
        inner = _block_within(kept, diff, own, wanted, blocked.setdefault(table, {})) if own else {}
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
                why = inner.get(key) or _parent_problem(row, names, bad)
                if why is not None:
                    blocked[table][key] = "was skipped"
                    diff.skipped.append({"key": _show_key(key), "sqlstate": None, "constraint": None,
                                         "reason": why})
                    continue
                try:
                    with live.transaction():  # a savepoint: one bad row does not undo the others
                        live.execute(insert, row)
                    diff.copied += 1
                except psycopg.errors.IntegrityError as exc:
                    diag = exc.diag
                    blocked[table][key] = "was skipped"
                    diff.skipped.append({"key": _show_key(key), "sqlstate": exc.sqlstate,
                                         "constraint": diag.constraint_name,
                                         "reason": _violation(exc.sqlstate, diag.constraint_name)})


def _label(table: tuple[str, str]) -> str:
    return table[1] if table[0] == "public" else f"{table[0]}.{table[1]}"


def _blocked_values(kept: Any, ref: Reference, parent: TableDiff,
                    blocked: Mapping[tuple[str | None, ...], str]) -> dict[tuple[str | None, ...], str]:
    """The values of ``ref``'s parent columns that a child must not point at (as text, in
    ``ref.parent_columns`` order) -> why, read from the blocked parent rows of the kept copy."""
    from psycopg import sql

    if not blocked:
        return {}
    if list(ref.parent_columns) == list(parent.key):
        return {key: _because(ref, key, why) for key, why in blocked.items()}
    # A reference to a unique column other than the key: read which values the blocked rows hold.
    query = sql.SQL("SELECT {}, {} FROM {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in parent.key),
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in ref.parent_columns),
        _ident(*ref.parent))
    out: dict[tuple[str | None, ...], str] = {}
    for row in kept.execute(query).fetchall():
        key, value = tuple(row[:len(parent.key)]), tuple(row[len(parent.key):])
        if key in blocked:
            out[value] = _because(ref, key, blocked[key])
    return out


def _because(ref: Reference, key: tuple[str | None, ...], why: str) -> str:
    shown = _show_key(key)
    return f"its parent {_label(ref.parent)} {shown if isinstance(shown, str) else ', '.join(map(str, shown))} " \
           f"{why} ({ref.describe()})"


def _parent_problem(row: Sequence[str | None], names: Sequence[str],
                    bad: Mapping[Reference, Mapping[tuple[str | None, ...], str]]) -> str | None:
    for ref, values in bad.items():
        if not values:
            continue
        value = tuple(row[names.index(c)] for c in ref.child_columns)
        if None not in value and value in values:
            return values[value]
    return None


def _block_within(kept: Any, diff: TableDiff, own: Sequence[Reference], wanted: set[tuple[str | None, ...]],
                  blocked: dict[tuple[str | None, ...], str]) -> dict[tuple[str | None, ...], str]:
    """A table that references itself (a reply to a comment): before copying, every wanted row whose
    parent row in the same table is blocked, however deep (rows come in any order) -> why; each is
    added to ``blocked``."""
    from psycopg import sql

    own = [r for r in own if list(r.parent_columns) == list(diff.key)]
    if not own or not blocked:
        return {}
    columns = list(diff.key) + [c for r in own for c in r.child_columns]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        _ident(diff.schema, diff.name))
    parents_of: dict[tuple[str | None, ...], list[tuple[Reference, tuple[str | None, ...]]]] = {}
    for row in kept.execute(query).fetchall():
        key = tuple(row[:len(diff.key)])
        if key not in wanted:
            continue
        at = len(diff.key)
        for ref in own:
            value = tuple(row[at:at + len(ref.child_columns)])
            at += len(ref.child_columns)
            if None not in value:
                parents_of.setdefault(key, []).append((ref, value))
    out: dict[tuple[str | None, ...], str] = {}
    changed = True
    while changed:
        changed = False
        for key, parents in parents_of.items():
            if key in out:
                continue
            for ref, value in parents:
                if value in blocked:
                    out[key] = _because(ref, value, blocked[value])
                    blocked[key] = "was skipped"
                    changed = True
                    break
    return out


def _violation(sqlstate: str | None, constraint: str | None) -> str:
    kinds = {"23505": "unique", "23503": "foreign key", "23514": "check", "23502": "not null",
             "23P01": "exclusion"}
    what = kinds.get(sqlstate or "", "integrity")
    return f"violates {what} constraint {constraint}" if constraint else f"violates a {what} constraint"


def _advance_sequences(kept: Any, live: Any, diff: TableDiff) -> list[dict[str, Any]]:
    """Move each sequence of the table past every id the kept copy holds or its sequence handed out,
    and past the ids in use: after a restore the sequences went back to the backup's values, and the
    app's next inserts would take ids that rows of the kept copy hold (which salvage then cannot
    tell from the kept rows). Done before copying."""
    from psycopg import sql

    out: list[dict[str, Any]] = []
    table = f"{sql.Identifier(diff.schema).as_string(live)}.{sql.Identifier(diff.name).as_string(live)}"
    for column in diff.columns:
        row = live.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column.name)).fetchone()
        if not row or not row[0]:
            continue
        sequence = str(row[0])
        before = int(live.execute(sql.SQL("SELECT last_value FROM {}").format(sql.SQL(sequence))).fetchone()[0])
        highest = sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column.name),
                                                            _ident(diff.schema, diff.name))
        in_use = live.execute(highest).fetchone()[0]
        seen = kept.execute(highest).fetchone()[0]
        kept_row = kept.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column.name)).fetchone()
        handed_out = 0
        if kept_row and kept_row[0]:
            handed_out = int(kept.execute(sql.SQL("SELECT last_value FROM {}").format(
                sql.SQL(str(kept_row[0])))).fetchone()[0])
        target = max(int(in_use or 0), int(seen or 0), handed_out)
        if target > before:
            live.execute("SELECT setval(%s, %s, true)", (sequence, target))
            out.append({"sequence": sequence, "from": before, "to": target})
    return out


def summary(diffs: Sequence[TableDiff]) -> Mapping[str, int]:
    diffs = [d for d in diffs if not d.context]
    return {"tables": len(diffs), "only_in_kept": sum(len(d.only_in_kept) for d in diffs),
            "differ": sum(len(d.differ) for d in diffs), "copied": sum(d.copied for d in diffs),
            "skipped": sum(len(d.skipped) for d in diffs),
            "not_salvageable": sum(1 for d in diffs if not d.salvageable and d.reason != "only in the live database")}
