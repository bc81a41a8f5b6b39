"""``db restore --swap``: service first, then the safety dump of the copy the swap kept (issue 20).

The emergency backup used to run before the restore, competing with it; the swap keeps the previous
database whole as ``<db>_replaced_<time>``, so the dump is now read from that copy after the swap:

- the journal records verify, rights, restore, counts, swap, then the dump; the command prints
  "database restored after X s; safety dump written after Y s";
- the dump is a backup of the live database as it was until the swap (restorable here without
  ``--from-other-database``), and its manifest names the copy it was read from;
- ``db prune`` keeps a copy whose dump is not written (the swap marks it in its own transaction);
- a dump that fails after the swap says the restored database is live, and ``rollback resume``
  writes it; ``--no-wait-backup`` leaves it to a journaled run of its own, in the background.

Real PostgreSQL, the real CLI (in process), real pg_dump (a failing one where a failure is the point).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.backups import list_backups, load_manifest
from rollback.setaside import Mark
from tests.conftest import CliResult
from tests.db.conftest import LiveDb

RunCli = Callable[..., CliResult]


def take_backup(run_cli: RunCli) -> str:
    result = run_cli("db", "backup", "--json")
    assert result.code == 0, result.err
    return str(result.json()["backup"]["name"])


def mark_of(live_db: LiveDb, name: str) -> Mark | None:
    return Mark.from_comment(live_db.scalar(
        f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}'", dbname="postgres"))


def prunable(run_cli: RunCli) -> tuple[list[str], list[str]]:
    """``(targets prune would drop, its notes)`` from ``db prune --dry-run``."""
    result = run_cli("db", "prune", "--dry-run", "--json")
    assert result.code == 0, result.err
    document = result.json()
    plan = document.get("plan") or {}
    return [s["target"] for s in plan.get("steps", [])], list(plan.get("notes", document.get("notes", [])))


def events(live_db: LiveDb, run: str) -> list[tuple[str, str]]:
    path = live_db.journal_dir / f"{run}.jsonl"
    return [(e["event"], e.get("step", "")) for e in map(json.loads, path.read_text().splitlines())]


def test_service_first_then_the_safety_dump_of_the_kept_copy(run_cli: RunCli, live_db: LiveDb) -> None:
    name = take_backup(run_cli)
    live_db.sql('DELETE FROM "Integration"')  # the bad change: what the kept copy (and its dump) hold
    human = run_cli("db", "restore", name, "--swap", "--yes")
    assert human.code == 0, human.err
    said = re.search(r"database restored after ([\d.]+) s; safety dump written after ([\d.]+) s \((\S+), of (\S+)\)",
                     human.out)
    assert said is not None, human.out
    restored_after, written_after, dump, aside = float(said[1]), float(said[2]), said[3], said[4]
    assert restored_after <= written_after
    assert live_db.scalar('SELECT count(*) FROM "Integration"') == 150  # the restored data is live

    run = re.search(r"journaled as run (\S+)", human.err)
    assert run is not None, human.err
    order = [step for event, step in events(live_db, run[1]) if event == "step_finished"]
    assert order == ["verify-backup", "check-rights", "restore", "check-counts", "swap", "emergency-backup"]

    manifest = next(b for b in list_backups(live_db.backups_dir) if b["name"] == dump)
    assert manifest["kind"] == "emergency" and manifest["dumped_from"] == aside
    assert manifest["database"] == live_db.name and manifest["this_database"] is None
    assert {t["name"]: t["rows"] for t in manifest["tables"]}["Integration"] == 0  # the data before the restore
    assert load_manifest(Path(manifest["manifest_path"]))["verified"]["checksums"] == "match"
    mark = mark_of(live_db, aside)
    assert mark is not None and mark.role == "replaced" and mark.get("dump") == dump
    # a backup of this database: it restores here without --from-other-database
    again = run_cli("db", "restore", dump, "--swap", "--dry-run", "--json")
    assert again.code == 0, again.err
    # the copy's dump is written: prune may drop it now
    assert aside in prunable(run_cli)[0]


def test_the_json_document_gives_both_times(run_cli: RunCli, live_db: LiveDb) -> None:
    name = take_backup(run_cli)
    document = run_cli("db", "restore", name, "--swap", "--yes", "--json").json()
    steps = [s["id"] for s in document["steps"]]
    assert steps.index("swap") < steps.index("emergency-backup")
    dump = document["safety_dump"]
    assert 0 < document["restored_after_seconds"] <= dump["after_seconds"]
    assert dump["of"] == document["swap"]["set_aside"] and dump["name"]


@pytest.mark.parametrize("staged", [False, True], ids=["from-the-dump", "staged"])
def test_dry_run_plans_the_dump_after_the_swap(run_cli: RunCli, live_db: LiveDb, staged: bool) -> None:
    result = run_cli("db", "backup", *(["--stage"] if staged else []), "--json")
    assert result.code == 0, result.err
    plan = run_cli("db", "restore", result.json()["backup"]["name"], "--swap", "--dry-run", "--json").json()
    steps = [(s["id"], s["action"]) for s in plan["plan"]["steps"]]
    assert steps[-2:] == [("swap", "db.swap"), ("emergency-backup", "db.backup_replaced")]
    assert any("service first" in note for note in plan["plan"]["notes"])
    # --in-place keeps nothing to dump from: its emergency backup stays first
    in_place = run_cli("db", "restore", result.json()["backup"]["name"], "--in-place", "--dry-run", "--json").json()
    ids = [s["id"] for s in in_place["plan"]["steps"]]
    assert ids.index("emergency-backup") < ids.index("restore")
    assert {s["action"] for s in in_place["plan"]["steps"]} >= {"db.backup"}


def test_no_wait_backup_needs_swap(run_cli: RunCli, live_db: LiveDb) -> None:
    name = take_backup(run_cli)
    result = run_cli("db", "restore", name, "--no-wait-backup", "--yes")
    assert result.code == 2 and "--no-wait-backup goes with --swap" in result.err


def failing_pg_dump(live_db: LiveDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_dump that fails as a full disk makes it fail (pg_restore stays the real one)."""
    real = Path(str(live_db.pg.bin_dir)) if hasattr(live_db.pg, "bin_dir") else Path(
        f"/usr/lib/postgresql/{live_db.pg.major}/bin")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_restore").symlink_to(real / "pg_restore")
    (fake / "pg_dump").write_text('#!/bin/sh\ncase "$*" in *--version*) exec "' + str(real / "pg_dump")
                                  + '" "$@";; esac\necho "pg_dump: error: could not write to file: No space left on '
                                  'device" >&2\nexit 1\n')
    (fake / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PG_BIN_DIR", str(fake))


def test_a_dump_that_fails_after_the_swap_keeps_the_copy_until_resume_writes_it(
        run_cli: RunCli, live_db: LiveDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = take_backup(run_cli)
    live_db.sql('DELETE FROM "UserStats"')
    failing_pg_dump(live_db, tmp_path, monkeypatch)
    failed = run_cli("db", "restore", name, "--swap", "--yes")
    assert failed.code == 1, failed.err
    errors = [line for line in failed.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0], failed.err
    assert "the restored database is live" in errors[0] and "'rollback resume' writes it" in errors[0]
    assert live_db.scalar('SELECT count(*) FROM "UserStats"') == 200  # service is back all the same
    aside = next(d for d in live_db.databases() if "_replaced_" in d)
    mark = mark_of(live_db, aside)
    assert mark is not None and mark.get("dump") == "pending"
    targets, notes = prunable(run_cli)
    assert aside not in targets
    assert any(aside in note and "safety dump is not written yet" in note for note in notes), notes

    monkeypatch.delenv("PG_BIN_DIR")  # the disk has room again
    resumed = run_cli("resume", "--yes", "--json")
    assert resumed.code == 0, resumed.err
    steps = {s["id"]: s for s in resumed.json()["steps"]}
    assert [i for i, s in steps.items() if not s["already_done"]] == ["emergency-backup"]
    assert [d for d in live_db.databases() if "_replaced_" in d] == [aside]  # nothing restored or swapped again
    dump = steps["emergency-backup"]["result"]["name"]
    assert (mark_of(live_db, aside) or Mark("", "", "", "")).get("dump") == dump
    assert {t["name"]: t["rows"] for t in load_manifest(Path(steps["emergency-backup"]["result"]["manifest_path"]))[
        "tables"]}["UserStats"] == 0
    assert aside in prunable(run_cli)[0]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)


@pytest.mark.slow
def test_no_wait_backup_leaves_the_dump_to_a_journaled_background_run(run_cli: RunCli, live_db: LiveDb) -> None:
    name = take_backup(run_cli)
    live_db.sql('DELETE FROM "Integration"')
    result = run_cli("db", "restore", name, "--swap", "--yes", "--no-wait-backup", "--json")
    assert result.code == 0, result.err
    document = result.json()
    background = document["safety_dump"]
    assert background["background"] is True and background["of"] == document["swap"]["set_aside"]
    assert live_db.scalar('SELECT count(*) FROM "Integration"') == 150
    restore_run, dump_run = document["run"], background["run"]

    def finished() -> dict[str, Any] | None:
        lines = [json.loads(line) for line in (live_db.journal_dir / f"{dump_run}.jsonl").read_text().splitlines()]
        return next((e for e in lines if e["event"] == "run_finished"), None)

    end = wait_for(finished, f"the background run {dump_run} finishing")
    assert end["status"] == "succeeded", end
    started = json.loads((live_db.journal_dir / f"{dump_run}.jsonl").read_text().splitlines()[0])
    assert started["continues"] == restore_run and started["background"] is True
    assert [e for e in events(live_db, dump_run) if e[0] == "step_finished"] == [("step_finished", "emergency-backup")]
    aside = background["of"]
    dumps = [b for b in list_backups(live_db.backups_dir) if b.get("dumped_from") == aside]
    assert len(dumps) == 1 and {t["name"]: t["rows"] for t in dumps[0]["tables"]}["Integration"] == 0
    assert (mark_of(live_db, aside) or Mark("", "", "", "")).get("dump") == dumps[0]["name"]
    shown = run_cli("journal", "show", dump_run, "--json")
    assert shown.code == 0, shown.err
