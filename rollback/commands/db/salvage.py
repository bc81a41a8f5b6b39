"""``rollback db salvage``: bring back the rows written after the backup, from the copy a swap set aside.

Only from a copy that rollback's swap set aside from THIS database (its name and its
mark say so); rows are compared by primary key, parents first, and only rows missing
from the live database are copied, in one transaction. Row contents are never printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rollback.actions import action
from rollback.adapters.postgres import Database, db_errors
from rollback.adapters.salvage import compare, copy_missing, summary
from rollback.commands.db.common import DbSteps, default_jobs, emergency_step
from rollback.config import Config, Relation
from rollback.context import Services
from rollback.errors import BadInput, UnsafePrecondition
from rollback.lock import ensure_held
from rollback.plan import Plan, Step
from rollback.runner import Check, StepContext
from rollback.setaside import Mark, parse_set_aside_name

__all__ = ["SalvageSteps", "plan_salvage", "salvage", "salvage_report", "salvage_target"]


def salvage_target(db: Database, kept: str | None) -> tuple[str, dict[str, Any]]:
    """The kept copy to salvage from: ``kept``, or the newest copy a swap set aside; refused unless
    rollback's swap made it from THIS database (its mark says so)."""
    live = db.target.dbname
    rows = {str(r["name"]): r for r in db.databases_with_prefix("")}
    if kept is None:
        candidates = sorted((n for n in rows if (parse_set_aside_name(n, live) or ("",))[0] == "replaced"),
                            reverse=True)
        marked = [n for n in candidates if (m := Mark.from_comment(rows[n]["comment"])) and m.is_mark_of(n, live)]
        if not marked:
            raise BadInput(f"no copy of {live} set aside by a swap ({live}_replaced_<time>)",
                           "name one: rollback db salvage NAME")
        kept = marked[0]
    if kept not in rows:
        raise BadInput(f"no database {kept}", "list the set-aside copies with 'rollback db prune --dry-run'")
    parsed = parse_set_aside_name(kept, live)
    mark = Mark.from_comment(rows[kept]["comment"])
    if parsed is None or parsed[0] != "replaced" or mark is None or not mark.is_mark_of(kept, live):
        raise UnsafePrecondition(
            f"{kept} is not a copy of {live} that 'rollback db restore --swap' set aside (its name or its rollback "
            "mark does not say so)", "nothing was read or changed; salvage only from this database's "
            f"{live}_replaced_<time> copies")
    if not rows[kept]["allows_connections"]:
        raise UnsafePrecondition(f"{kept} refuses connections", f"ALTER DATABASE \"{kept}\" ALLOW_CONNECTIONS true "
                                 "(as its owner), then run it again")
    return kept, {"run": mark.run, "at": mark.at, "backup": mark.get("backup")}


def salvage_report(db: Database, kept: str, tables: Any = None, *, apply: bool = False,
                   relations: Sequence[Relation] = ()) -> dict[str, Any]:
    """Compare (and with ``apply`` copy, in one transaction) the kept copy against the live database.
    ``relations`` (``database.relations``) are followed like foreign keys: a row whose parent differs
    or was skipped is skipped too."""
    live_name = db.target.dbname
    wanted = [str(t) for t in tables] if tables else None
    pairs = [(r.child, r.parent) for r in relations]
    with db.connect(kept, autocommit=False) as old, db.connect(autocommit=False) as new, \
            db_errors(f"comparing {kept} with {live_name}", "nothing was changed" if apply else None):
        db.begin_read_only_snapshot(old)
        diffs = compare(old, new, wanted, relations=pairs, with_parents=apply)
        if wanted is not None:
            found = {d.name for d in diffs} | {f"{d.schema}.{d.name}" for d in diffs}
            unknown = sorted(set(wanted) - found)
            if unknown:
                raise BadInput(f"no table {', '.join(unknown)} in {kept} or {live_name}",
                               "name tables as Table or schema.Table")
        if apply:
            copy_missing(old, new, diffs, relations=pairs)
            ensure_held()  # a team lease lost while copying: roll back, never COMMIT
            new.commit()
        else:
            new.rollback()
    shown = [d for d in diffs if not d.context]
    return {"kept": kept, "live": live_name, "applied": apply, "summary": dict(summary(shown)),
            "tables": [d.to_dict() for d in shown]}


def plan_salvage(config: Config, kept: str | None = None, *, tables: list[str] | None = None,
                 skip_emergency_reason: str | None = None, jobs: int | None = None,
                 services: Services) -> Plan:
    """Compare, emergency backup, copy the rows only in the kept copy (one transaction)."""
    db = services.database()
    name, mark = salvage_target(db, kept)
    live = db.target.dbname
    params: dict[str, Any] = {"kept": name, "tables": tables}
    return Plan.of(f"db salvage {name}", config.env_name, [
        Step("compare", "db.salvage_compare", f"compare {name} with {live} by primary key, parents first",
             params=params),
        emergency_step(skip_emergency_reason, config, jobs or default_jobs()),
        Step("apply", "db.salvage_apply", f"copy the rows only in {name} into {live} (one transaction; rows that "
             "violate a constraint are skipped and named; rows that differ are never overwritten)", target=live,
             params=params, destructive=True),
    ], [f"{name} was set aside by run {mark['run']}" + (f" (swapping in backup {mark['backup']})"
                                                          if mark.get("backup") else ""),
        "row contents are never printed: keys and counts only"])


def salvage(config: Config, kept: str | None = None, *, tables: list[str] | None = None,
            services: Services) -> dict[str, Any]:
    """The read-only salvage report (``db salvage`` without ``--apply``)."""
    db = services.database()
    name, mark = salvage_target(db, kept)
    return {**salvage_report(db, name, tables, relations=config.env.database.relations), "set_aside_by": mark}


class SalvageSteps(DbSteps):
    """Step handlers: compare the kept copy, copy the rows only in it."""

    @action("db.salvage_compare", read_only=True)
    def salvage_compare(self, step: Step, ctx: StepContext) -> Check:
        """Read-only: what the kept copy holds that the live database does not (keys and counts)."""
        report = salvage_report(self.db, str(step.params["kept"]), step.params.get("tables"),
                                relations=self.config.env.database.relations)
        return Check(False, report, f"{report['summary']['only_in_kept']} row(s) only in {report['kept']}, "
                                    f"{report['summary']['differ']} differ")

    def check_salvage_apply(self, step: Step, ctx: StepContext) -> Check:
        kept = str(step.params["kept"])
        earlier = ctx.earlier.get(step.id)
        would = (f"copy the rows only in {kept} into {self.db.target.dbname} in one transaction, parents first, "
                 "skipping (and naming) rows that violate a constraint")
        if earlier is not None:  # one transaction: it happened whole
            return Check(True, dict(earlier), would)
        return Check(False, {}, would)

    @action("db.salvage_apply", check="check_salvage_apply")
    def salvage_apply(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        """Copy the rows only in the kept copy into the live database, in one transaction."""
        return salvage_report(self.db, str(step.params["kept"]), step.params.get("tables"), apply=True,
                              relations=self.config.env.database.relations)
