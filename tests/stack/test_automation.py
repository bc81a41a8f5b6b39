"""The Automation API path (rollback.adapters.pulumi) against the recorded-CLI double of
``pulumi`` (tests/stack/recorded_pulumi.py) on PATH: exact invocations, preview with a
saved plan, restore with exactly that plan, and the refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.errors import LockHeld
from tests.conftest import CliResult
from tests.stack.backend_fixtures import SECRET_KEY, UPDATES, encrypt, write_lock
from tests.stack.conftest import FakePulumi, StackEnv

RunCli = Callable[..., CliResult]
SECRETS = [u.origin_secret for u in UPDATES]


def _sub(calls: list[list[str]], name: str) -> list[list[str]]:
    return [c[1:] for c in calls if c[:1] == ["--non-interactive"] and c[1:2] == [name]]


def test_history_through_the_automation_api(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                            run_cli: RunCli, journal_redaction: bool) -> None:
    result = run_cli("infra", "history", "--via", "cli", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["source"]["kind"] == "cli"
    assert [v["version"] for v in document["versions"]] == [1, 2, 3, 4, 5]
    assert [v["message"] for v in document["versions"]] == [u.message for u in UPDATES]
    assert document["numbered_locally"] is True
    assert document["versions"][3]["config_changed"] == ["rollback:edgeFunctionVersion", SECRET_KEY]
    (history_call,) = [c for c in _sub(fake_pulumi.calls(), "stack") if c[1] == "history"]
    assert history_call == ["stack", "history", "--json", "--show-secrets", "--page-size", "100000", "--page", "1",
                            "--stack", "staging"]
    for secret in SECRETS:  # decrypted by --show-secrets, never printed
        assert secret not in result.out and secret not in result.err


def test_diff_through_the_cli_reads_old_checkpoints_from_the_backend(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                                     run_cli: RunCli) -> None:
    """The one path where secrets arrive decrypted (``pulumi stack export --show-secrets``): the
    diff must say the secret changed and print none of its values, in JSON or for humans."""
    result = run_cli("infra", "diff", "3", "--via", "cli", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert {r["name"] for r in document["resources"]} == {"cdn"}
    assert ["stack", "export", "--show-secrets", "--stack", "staging"] in _sub(fake_pulumi.calls(), "stack")
    human = run_cli("infra", "diff", "3", "--via", "cli")
    assert human.code == 0, human.err
    for secret in set(SECRETS):
        for text in (result.out, result.err, human.out, human.err):
            assert secret not in text
    assert f"{SECRET_KEY}: [secret] changed" in human.out
    assert "origins[1].customHeaders[0].value: [secret] changed" in human.out
    secret_change = next(c for c in document["config"] if c["key"] == SECRET_KEY)
    assert secret_change["secret"] is True


def test_diff_through_the_cli_without_a_diy_backend_compares_config(
        make_stack: Callable[..., StackEnv], fake_pulumi: FakePulumi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Automation API with no self-managed backend to read old checkpoints from: injected as a
    CliSource without one (the recorded-CLI double still needs PULUMI_BACKEND_URL to answer)."""
    from rollback.adapters.stack_history import CliSource, cli_stack
    from rollback.commands.infra import stack as infra_stack
    from rollback.config import load_config
    from rollback.context import Services

    env = make_stack(backend_in_config=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{env.backend}")  # for the double only
    config = load_config(env.config)
    services = Services(config, stack_source=CliSource(cli_stack(config), None))
    document = json.loads(json.dumps(infra_stack.diff(config, 2, 4, services=services)))
    assert document["resources"] is None
    assert [c["key"] for c in document["config"]] == ["rollback:assetsRelease", "rollback:edgeFunctionVersion",
                                                      SECRET_KEY]
    assert any("pulumi stack export --version" in note for note in document["notes"])


def test_preview_sets_the_config_and_saves_the_plan(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                    run_cli: RunCli, journal_redaction: bool) -> None:
    before = stack_env.stack_file.read_text()
    result = run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json")
    assert result.code == 0, result.err
    plan = stack_env.root / "v3.plan.json"
    calls = fake_pulumi.calls()
    config_calls = _sub(calls, "config")
    assert config_calls[0] == ["config", "--show-secrets", "--json", "--stack", "staging"]
    set_all = config_calls[1]
    assert set_all[:4] == ["config", "set-all", "--stack", "staging"]
    assert sorted(zip(set_all[4::2], set_all[5::2], strict=True)) == [
        ("--plaintext", "rollback:assetsRelease=2026-11-26.1"),
        ("--plaintext", "rollback:edgeFunctionVersion=6"),
        ("--secret", f"{SECRET_KEY}={UPDATES[2].origin_secret}"),
    ]
    (preview,) = _sub(calls, "preview")
    assert "--diff" in preview
    assert preview[preview.index("--save-plan") + 1] == str(plan)
    assert "--event-log" in preview
    # The config file now holds version 3's values; comments and order are untouched.
    after = stack_env.stack_file.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [
        ("  rollback:assetsRelease: 2026-11-27.2", "  rollback:assetsRelease: 2026-11-26.1"),
        ('  rollback:edgeFunctionVersion: "7"', '  rollback:edgeFunctionVersion: "6"'),
        (f"    secure: {encrypt(UPDATES[-1].origin_secret)}", f"    secure: {encrypt(UPDATES[2].origin_secret)}"),
    ]
    assert "preview: same 33, update 1; plan saved to" in result.out
    assert f"rollback infra restore --to 3 --plan-file {plan}" in result.out
    assert plan.exists() and json.loads(Path(f"{plan}.rollback.json").read_text())["version"] == 3
    journals = "".join(p.read_text() for p in (stack_env.root / "runs").glob("*.jsonl"))
    assert journals  # the preview is journaled: check it too
    for secret in SECRETS:
        assert secret not in result.out and secret not in result.err and secret not in journals


@pytest.mark.slow
def test_library_callers_preview_and_restore_without_the_cli(stack_env: StackEnv, fake_pulumi: FakePulumi) -> None:
    """preview then restore through rollback.commands.infra.stack (run_preview, run_restore), with one
    Services, against the recorded-CLI double: the same plan is saved, then applied exactly."""
    from rollback.commands.infra.stack import diff, run_preview, run_restore
    from rollback.commands.infra.stack_plan import PreviewOptions
    from rollback.config import load_config
    from rollback.context import Services
    from rollback.errors import UnsafePrecondition

    config = load_config(stack_env.config)
    plan = stack_env.root / "v3.plan.json"
    dry = run_preview(config, Services(config), PreviewOptions(3, plan, config_only=True), dry_run=True)
    assert dry["dry_run"] is True and not plan.exists() and _sub(fake_pulumi.calls(), "preview") == []
    report = run_preview(config, Services(config), PreviewOptions(3, plan, config_only=True))
    assert report["version"] == 3 and report["change_summary"] == {"same": 33, "update": 1}
    assert report["next"] == f"rollback infra restore --to 3 --plan-file {plan}"
    assert plan.exists()
    outcome = run_restore(config, Services(config), 3, plan)
    assert outcome.result_of("up")["result"] == "succeeded"
    (up,) = _sub(fake_pulumi.calls(), "up")
    assert up[up.index("--plan") + 1] == str(plan)
    assert diff(config, 3, 6, services=Services(config))["config"] == []
    with pytest.raises(UnsafePrecondition, match="was already applied"):
        run_restore(config, Services(config), 3, plan)


def test_restore_applies_exactly_the_saved_plan(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                run_cli: RunCli) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    plan = stack_env.root / "v3.plan.json"
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 0, result.err
    assert "restored version 3: succeeded (same 33, update 1)" in result.out
    (up,) = _sub(fake_pulumi.calls(), "up")
    assert up[:3] == ["up", "--yes", "--skip-preview"]
    assert up[up.index("--plan") + 1] == str(plan)
    # The backend has a new update whose config is version 3's.
    diff = run_cli("infra", "diff", "3", "6", "--json").json()
    assert diff["config"] == [] and diff["resources"] == []
    run_id = result.out.strip().rsplit("run ", 1)[1]
    journal = run_cli("journal", "show", run_id, "--json").json()
    assert journal["status"] == "succeeded" and [s["id"] for s in journal["steps"]] == ["check", "up"]
    # A plan is applied once.
    again = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert again.code == 4 and "was already applied" in again.err


def test_restore_refuses_while_the_stack_is_locked(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                   run_cli: RunCli) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    write_lock(stack_env.backend)
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 4
    assert "stack staging is locked" in result.err and "created by ci@runner-7 (pid 4242)" in result.err
    assert "pulumi cancel --stack staging" in result.err
    assert _sub(fake_pulumi.calls(), "up") == []


def test_cli_lock_conflict_maps_to_lock_held(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                             run_cli: RunCli) -> None:
    """When only the CLI sees the lock (ConcurrentUpdateError), the adapter raises LockHeld."""
    from rollback.adapters.pulumi import select_stack

    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    write_lock(stack_env.backend)
    stack = select_stack("staging", stack_env.project, backend_url=f"file://{stack_env.backend}")
    with pytest.raises(LockHeld, match="locked by another update") as caught:
        stack.up(stack_env.root / "v3.plan.json")
    assert caught.value.exit_code == 4
    assert "pulumi cancel --stack staging" in caught.value.hint


def test_restore_refuses_pending_operations(make_stack: Callable[..., StackEnv], fake_pulumi: FakePulumi,
                                            run_cli: RunCli) -> None:
    pending = [{"resource": {"urn": "urn:pulumi:staging::rollback::aws:s3/bucket:Bucket::b",
                             "type": "aws:s3/bucket:Bucket"}, "type": "creating"}]
    make_stack(pending=pending)
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 4
    assert "1 pending operation(s) (creating)" in result.err
    assert "pulumi stack export --file state.json" in result.err
    assert _sub(fake_pulumi.calls(), "up") == []


def test_restore_refuses_a_plan_for_another_version_or_config(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                              run_cli: RunCli) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    wrong = run_cli("infra", "restore", "--to", "2", "--plan-file", "v3.plan.json", "--yes")
    assert wrong.code == 4 and "previewed for version 3, not 2" in wrong.err
    stack_env.stack_file.write_text(stack_env.stack_file.read_text() + "# edited after the preview\n")
    edited = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert edited.code == 4 and "the stack config changed since the preview" in edited.err
    assert _sub(fake_pulumi.calls(), "up") == []


def test_restore_needs_confirmation_without_yes(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                run_cli: RunCli) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json")
    assert result.code == 4 and "without confirmation" in result.err
    dry = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--dry-run")
    assert dry.code == 0, dry.err
    assert "dry run: nothing was applied" in dry.out
    assert _sub(fake_pulumi.calls(), "up") == []


def test_stack_outputs_through_the_cli(make_stack: Callable[..., StackEnv], fake_pulumi: FakePulumi,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs through the Automation API (no self-managed backend given to read them from)."""
    from rollback.adapters.stack_history import cli_stack, read_outputs
    from rollback.config import load_config

    env = make_stack(backend_in_config=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{env.backend}")
    config = load_config(env.config)
    outputs = read_outputs(None, lambda: cli_stack(config))
    assert outputs["distributionId"] == "E2QWRUHAPOMQZL"
    assert ["stack", "output", "--json", "--stack", "staging"] in _sub(fake_pulumi.calls(), "stack")


@pytest.mark.slow
def test_failed_preview_names_the_undo_command(stack_env: StackEnv, fake_pulumi: FakePulumi, run_cli: RunCli,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    before = stack_env.stack_file.read_text()
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "preview")
    result = run_cli("infra", "preview", "--config-only", "--to", "2", "--plan-file", "v2.plan.json")
    assert result.code == 1
    assert "previewing failed: error: preview failed" in result.err and "AccessDenied" in result.err
    assert "Traceback" not in result.err
    undo = result.err.split("to put the previous stack config back: ", 1)[1].strip().rstrip(")")
    assert undo.startswith("rollback infra config-restore ")
    assert stack_env.stack_file.read_text() != before
    assert run_cli(*undo.split()[1:], "--yes").code == 0
    assert stack_env.stack_file.read_text() == before


def test_backend_version_numbers_are_kept_when_the_backend_has_them(
        stack_env: StackEnv, fake_pulumi: FakePulumi, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PULUMI_VERSIONS", "cloud")
    result = run_cli("infra", "history", "--via", "cli", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert [v["version"] for v in document["versions"]] == [1, 2, 3, 4, 5]
    assert document["numbered_locally"] is False and document["notes"] == []


def test_restore_refuses_a_plan_file_changed_since_the_preview(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                               run_cli: RunCli) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    plan = stack_env.root / "v3.plan.json"
    sidecar = Path(f"{plan}.rollback.json")
    assert json.loads(sidecar.read_text())["plan_sha256"]
    plan.write_text(plan.read_text() + " ")  # another plan saved at the same path
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 4, result.err
    assert "the plan file v3.plan.json changed since the preview" in result.err
    assert "rollback infra preview --to 3" in result.err
    assert _sub(fake_pulumi.calls(), "up") == []


def test_restore_refuses_a_sidecar_without_a_plan_digest(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                         run_cli: RunCli) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    sidecar = stack_env.root / "v3.plan.json.rollback.json"
    meta = json.loads(sidecar.read_text())
    del meta["plan_sha256"]  # as an earlier rollback wrote it
    sidecar.write_text(json.dumps(meta))
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 4 and "has no recorded digest" in result.err
    assert _sub(fake_pulumi.calls(), "up") == []


@pytest.mark.slow
def test_offline_preview_removes_an_applied_plan_at_the_same_path(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                                  run_cli: RunCli) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    assert run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes").code == 0
    offline = run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json", "--offline")
    assert offline.code == 0, offline.err
    assert not (stack_env.root / "v3.plan.json").exists()  # the applied plan cannot pass for a new one
    again = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert again.code == 4 and "does not exist" in again.err
    assert len(_sub(fake_pulumi.calls(), "up")) == 1
    # The plan the user then saves with 'pulumi preview --save-plan' is accepted.
    (stack_env.root / "v3.plan.json").write_text("{}")
    fresh = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes", "--dry-run")
    assert fresh.code == 0, fresh.err


def test_restore_that_cannot_mark_the_plan_applied_still_succeeds_with_a_warning(
        stack_env: StackEnv, fake_pulumi: FakePulumi, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    import rollback.adapters.stack_config as stack_config

    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    real_write = stack_config.atomic_write

    def full_disk(path: Path, text: str) -> None:
        if path.name.endswith(".rollback.json"):
            raise stack_config.StackConfigError(f"cannot write {path}: No space left on device")
        real_write(path, text)

    import rollback.commands.infra.stack_plan as infra_stack_plan

    # The disk fills up for the plan's sidecar record, which infra_stack_plan writes.
    monkeypatch.setattr(infra_stack_plan, "atomic_write", full_disk)
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 0, result.err
    assert "restored version 3: succeeded" in result.out
    assert "warning: the stack was updated, but marking v3.plan.json as applied failed" in result.err
    assert len(_sub(fake_pulumi.calls(), "up")) == 1
    run_id = result.out.strip().rsplit("run ", 1)[1]
    journal = run_cli("journal", "show", run_id, "--json").json()
    assert journal["status"] == "succeeded"
    assert "marking v3.plan.json as applied failed" in json.dumps(journal)


def test_preview_refuses_a_plan_that_replaces_the_assets_bucket(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                                run_cli: RunCli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = "urn:pulumi:staging::rollback::aws:s3/bucket:Bucket::assets-bucket"
    monkeypatch.setenv("FAKE_PULUMI_REPLACE", f"{bucket} bucket")
    result = run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json")
    assert result.code == 4, result.err
    (error,) = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert "version 3 would replace the assets bucket assets-bucket (because of bucket)" in error
    assert "a rename is a migration, not a rollback" in error
    assert "rollback infra config-restore " in error  # the config was written: the undo is named
    plan = stack_env.root / "v3.plan.json"
    assert not plan.exists() and not Path(f"{plan}.rollback.json").exists()
