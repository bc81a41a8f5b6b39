"""``db salvage --apply`` never attaches a copied row to the wrong parent (issue 18, item 3).

After a restore the sequences are back at the backup's values, so the app's next inserts take ids
that rows of the kept copy hold: the kept copy's user 301 (alice) and the live user 301 (bob, signed
up after the restore) are different people with one key. Salvage reports user 301 as "differ" and
leaves it alone; before this fix it still copied alice's integrations, whose foreign key bob's row
then satisfied: alice's integrations on bob's account. A row whose parent (a declared foreign key or
a ``database.relations`` entry, directly or through its own parent, the same table included) differs
or was skipped is now skipped and named by its key, and every sequence moves past every id the kept
copy holds before anything is copied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]

BEFORE_BACKUP = """
CREATE TABLE "IntegrationEvent" (id SERIAL PRIMARY KEY,
    "integrationId" INTEGER NOT NULL REFERENCES "Integration"(id), note TEXT NOT NULL);
CREATE TABLE "Comment" (id SERIAL PRIMARY KEY, "userId" INTEGER NOT NULL REFERENCES "User"(id),
    "parentId" INTEGER REFERENCES "Comment"(id), body TEXT NOT NULL);
INSERT INTO "Comment"("userId", body) VALUES (1, 'first');
CREATE TABLE "Tag" (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);
"""

# Written after the backup: after the swap these rows are only in the kept copy.
AFTER_BACKUP = """
INSERT INTO "User"(id, email) VALUES (301, 'alice@example.com'), (302, 'carol@example.com');
SELECT setval('"User_id_seq"', 302);
INSERT INTO "Integration"(id, "userId", provider) VALUES (151, 301, 'alice-gitlab'), (152, 302, 'carol-gitlab');
SELECT setval('"Integration_id_seq"', 152);
INSERT INTO "IntegrationEvent"("integrationId", note) VALUES (151, 'alice-event'), (152, 'carol-event');
INSERT INTO "UserStats"("userId", visits) VALUES (301, 7), (302, 9);
INSERT INTO "Comment"("userId", body) VALUES (2, 'second');
INSERT INTO "Comment"("userId", "parentId", body) VALUES (2, 2, 'reply to second');
INSERT INTO "Comment"("userId", "parentId", body) VALUES (2, 3, 'reply to the reply');
INSERT INTO "Tag"(name) VALUES ('a'), ('b');
"""

# The app after the restore: its sequences are the backup's, so it reuses the kept copy's ids.
AFTER_RESTORE = """
INSERT INTO "User"(email) VALUES ('bob@example.com');
INSERT INTO "Comment"("userId", body) VALUES (1, 'bob comment');
INSERT INTO "Tag"(name) VALUES ('b');
"""


def _restored(run_cli: RunCli, live_db: LiveDb) -> str:
    live_db.sql(BEFORE_BACKUP, user="app")
    backup = run_cli("db", "backup", "--json")
    assert backup.code == 0, backup.err
    live_db.sql(AFTER_BACKUP, user="app")
    restored = run_cli("db", "restore", backup.json()["backup"]["name"], "--swap", "--yes", "--json")
    assert restored.code == 0, restored.err
    live_db.sql(AFTER_RESTORE, user="app")
    assert live_db.scalar('SELECT id FROM "User" WHERE email = \'bob@example.com\'') == 301  # alice's id
    return str(restored.json()["swap"]["set_aside"])


def _skipped(result: dict[str, Any], table: str) -> dict[str, str]:
    return {str(s["key"]): str(s["reason"]) for s in result[table].get("skipped", [])}


def test_rows_whose_parent_differs_or_was_skipped_are_skipped_and_named(run_cli: RunCli, live_db: LiveDb) -> None:
    kept = _restored(run_cli, live_db)
    applied = run_cli("db", "salvage", "--apply", "--yes", "--json")
    assert applied.code == 0, applied.err
    result = {t["table"]: t for t in applied.json()["salvage"]["tables"]}
    assert result["User"]["keys_differ"] == ["301"] and result["User"]["copied"] == 1  # carol

    # Nothing of alice's reached bob's account: not her integration, its event, her stats.
    assert live_db.scalar('SELECT count(*) FROM "Integration" WHERE "userId" = 301') == 0
    assert live_db.scalar('SELECT count(*) FROM "UserStats" WHERE "userId" = 301') == 0
    assert live_db.scalar('SELECT count(*) FROM "IntegrationEvent" WHERE note = \'alice-event\'') == 0
    integration = _skipped(result, "Integration")
    assert list(integration) == ["151"]
    assert "its parent User 301 differs" in integration["151"] and "foreign key" in integration["151"]
    event = _skipped(result, "IntegrationEvent")
    assert len(event) == 1 and "its parent Integration 151 " in next(iter(event.values()))  # transitive
    stats = _skipped(result, "UserStats")
    assert len(stats) == 1 and "relation UserStats.userId -> User.id from rollback.toml" in next(iter(stats.values()))
    # The same table: comment 2 is bob's now; the replies to alice... to carol's comment 2 (and the
    # reply to that reply) stay out, whatever order the rows come in.
    comments = _skipped(result, "Comment")
    assert set(comments) == {"3", "4"} and "its parent Comment 2 differs" in comments["3"]
    assert "its parent Comment 3 " in comments["4"]
    # carol's rows came back, with their parents
    assert live_db.scalar('SELECT count(*) FROM "Integration" WHERE "userId" = 302') == 1
    assert live_db.scalar('SELECT count(*) FROM "IntegrationEvent" WHERE note = \'carol-event\'') == 1
    assert live_db.scalar('SELECT visits FROM "UserStats" WHERE "userId" = 302') == 9

    # Sequences are past every id the kept copy holds, also where nothing was copied (Tag: its row 2
    # takes a name bob's tag has; a table salvage copied nothing into).
    assert result["Tag"].get("copied", 0) == 0
    for table in ("User", "Integration", "Comment", "Tag", "IntegrationEvent"):
        highest = live_db.scalar(f'SELECT max(id) FROM "{table}"', dbname=kept)
        assert live_db.scalar(f"""SELECT nextval('"{table}_id_seq"')""") > highest, table
    # Every skipped row is named, with a reason, in the journal too (keys only, no row content).
    journal = live_db.journal_text()
    assert "its parent User 301 differs" in journal and "alice@example.com" not in journal


def test_a_table_filter_still_sees_the_parents_that_differ(run_cli: RunCli, live_db: LiveDb) -> None:
    _restored(run_cli, live_db)
    applied = run_cli("db", "salvage", "--tables", "Integration", "--apply", "--yes", "--json")
    assert applied.code == 0, applied.err
    tables = applied.json()["salvage"]["tables"]
    assert [t["table"] for t in tables] == ["Integration"]  # User was compared, not reported or copied
    assert live_db.scalar('SELECT count(*) FROM "Integration" WHERE "userId" = 301') == 0
    assert "its parent User 301 differs" in tables[0]["skipped"][0]["reason"]
    assert live_db.scalar('SELECT count(*) FROM "User" WHERE id = 302') == 0  # not asked for
