"""A read-only step added to the db restore in one module (this one) runs in the restore like the steps
db_restore.py declares: the registry builds its handler from its declaration, on the same Services (the
same database target) as the restore's own steps.

Against a real PostgreSQL (tests/db/conftest.py); the step is declared inside the test and forgotten after
it, so that no other test sees it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rollback.actions import action
from rollback.commands.db import restore as db_restore
from rollback.context import Services
from rollback.plan import Plan, Step
from rollback.runner import Check, StepContext, execute
from tests.db.conftest import LiveDb


def test_a_read_only_step_declared_in_a_test_module_runs_in_the_db_restore(live_db: LiveDb,
                                                                           declarations: None) -> None:
    from rollback.commands.db import handlers as commands
    from rollback.commands.db.common import DbSteps
    from rollback.commands.registry import FAMILIES, family_of, handlers_for, is_read_only

    opened: list[Any] = []

    @dataclass
    class CountUsersSteps(DbSteps):
        """Count the restored copy's users (the one step this module adds to the restore)."""

        @action("db.count_restored_users", read_only=True)
        def count_restored_users(self, step: Step, ctx: StepContext) -> Check:
            opened.append(self.db)
            name = str(ctx.results[step.sibling("restore")]["database"])
            with self.db.connect(name) as conn:
                (users,) = [c.rows for c in self.db.table_counts(conn=conn, tables=[("public", "User")])]
            return Check(False, {"database": name, "users": users}, f"count the users of {name}")

    assert family_of("db.count_restored_users") == "db" and "db.count_restored_users" in FAMILIES["db"]
    assert is_read_only("db.count_restored_users")

    config = live_db.config()
    services = Services(config)
    backup = commands.backup(config, services=services)
    live_db.sql('DELETE FROM "User" WHERE id > 100')
    planned = db_restore.plan_restore(config, backup["name"], skip_emergency_reason="test", services=services)
    at = [s.id for s in planned.steps].index("check-counts") + 1
    probe = Step("count-users", "db.count_restored_users", "count the restored copy's users")
    plan = replace(planned, steps=(*planned.steps[:at], probe, *planned.steps[at:]))
    assert isinstance(plan, Plan) and probe.layer == "db"

    outcome = execute(plan, handlers_for(config, plan.actions, services))
    counted = outcome.result_of("count-users")
    assert counted["database"] == outcome.result_of("restore")["database"]
    assert counted["users"] == 300  # the backup's users; the live database kept its 100
    assert live_db.scalar('SELECT count(*) FROM "User"') == 100
    assert opened == [services.database()]  # one database target for the whole plan
