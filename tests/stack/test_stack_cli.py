"""``rollback infra history | diff | preview --offline | restore | config-restore`` through the
real CLI entry point, on DIY backends built from the real checkpoints, with no Pulumi CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.context import Services
from tests.conftest import CliResult
from tests.stack.backend_fixtures import SECRET_KEY, UPDATES, encrypt
from tests.stack.conftest import StackEnv

RunCli = Callable[..., CliResult]
SECRETS = [u.origin_secret for u in UPDATES] + [encrypt(u.origin_secret) for u in UPDATES]


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(("layout", "compression"), [("project", None), ("legacy", "gz"), ("project", "zst"),
                                                     ("legacy", "mixed")])
def test_history_lists_every_update_in_order(make_stack: Callable[..., StackEnv], run_cli: RunCli,
                                             layout: str, compression: str | None) -> None:
    make_stack(layout=layout, compression=compression)
    result = run_cli("infra", "history", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert [v["version"] for v in document["versions"]] == [1, 2, 3, 4, 5]
    assert [v["message"] for v in document["versions"]] == [u.message for u in UPDATES]
    assert document["numbered_locally"] is True
    assert "numbered by rollback" in document["notes"][0]
    assert [v["config_changed"] for v in document["versions"][1:]] == [
        ["rollback:edgeFunctionVersion"], ["rollback:assetsRelease"],
        ["rollback:edgeFunctionVersion", SECRET_KEY], ["rollback:assetsRelease"]]
    assert document["source"]["checkpoints_read"] == 0
    assert document["source"]["layout"] == layout
    assert_no_secrets(result.out)


def test_history_human_and_limit(stack_env: StackEnv, run_cli: RunCli) -> None:
    result = run_cli("infra", "history", "--limit", "2")
    assert result.code == 0, result.err
    assert "v4" in result.out and "v5" in result.out and "v3 " not in result.out
    assert "config changed: rollback:assetsRelease" in result.out
    assert "numbered by rollback, oldest = 1" in result.out


def test_diff_names_exactly_the_changed_properties(stack_env: StackEnv, run_cli: RunCli) -> None:
    result = run_cli("infra", "diff", "3", "5", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert [(c["key"], c["change"], c["secret"]) for c in document["config"]] == [
        ("rollback:assetsRelease", "changed", False), ("rollback:edgeFunctionVersion", "changed", False),
        (SECRET_KEY, "changed", True)]
    secret = next(c for c in document["config"] if c["secret"])
    assert secret["old"] == secret["new"] == "[secret]"
    paths = {r["name"]: [p["path"] for p in r["properties"]] for r in document["resources"]}
    assert paths == {"cdn": ["defaultCacheBehavior.lambdaFunctionAssociations[0].lambdaArn",
                             "origins[0].originPath", "origins[1].customHeaders[0].value"]}
    assert document["source"]["checkpoints_read"] == 2
    assert_no_secrets(result.out)

    human = run_cli("infra", "diff", "4", "5")
    assert human.code == 0, human.err
    assert "origins[0].originPath: /releases/2026-11-26.1 -> /releases/2026-11-27.2" in human.out
    assert "lambdaArn" not in human.out


def test_diff_defaults_to_the_current_state(stack_env: StackEnv, run_cli: RunCli) -> None:
    result = run_cli("infra", "diff", "2")
    assert result.code == 0, result.err
    assert "version 2 -> current" in result.out
    assert "function:rollback-staging-security-headers:6 -> " in result.out
    assert "rollback:originVerifySecret: [secret] changed" in result.out
    assert_no_secrets(result.out)


def test_diff_unknown_version_is_bad_input(stack_env: StackEnv, run_cli: RunCli) -> None:
    result = run_cli("infra", "diff", "9")
    assert result.code == 2
    assert result.err.strip() == ("error: no version 9 in the stack history (versions: 1..5) "
                                  "(list them with 'rollback infra history')")


@pytest.mark.usefixtures("no_pulumi")
def test_offline_preview_writes_the_earlier_config_keeping_comments(stack_env: StackEnv, run_cli: RunCli) -> None:
    before = stack_env.stack_file.read_text()
    result = run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json")
    assert result.code == 0, result.err
    after = stack_env.stack_file.read_text()
    # Exactly the three pinned keys changed, every comment and the key order kept.
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [
        ("  rollback:assetsRelease: 2026-11-27.2", "  rollback:assetsRelease: 2026-11-26.1"),
        ('  rollback:edgeFunctionVersion: "7"', '  rollback:edgeFunctionVersion: "6"'),
        (f"    secure: {encrypt(UPDATES[-1].origin_secret)}", f"    secure: {encrypt(UPDATES[2].origin_secret)}"),
    ]
    out = result.out
    assert "desired-state diff" in out and "NOT a diff against the cloud" in out
    assert "lambdaFunctionAssociations[0].lambdaArn" in out and "security-headers:7 -> " in out
    assert "origins[0].originPath: /releases/2026-11-27.2 -> /releases/2026-11-26.1" in out
    assert f"pulumi preview --diff --stack staging --save-plan {stack_env.root / 'v3.plan.json'}" in out
    assert_no_secrets(out + result.err)

    # The one command named in the output puts the previous config back, byte for byte.
    undo = next(line for line in out.splitlines() if "rollback infra config-restore" in line)
    backup = undo.split("config-restore ", 1)[1].strip()
    restored = run_cli("infra", "config-restore", backup, "--yes")
    assert restored.code == 0, restored.err
    assert stack_env.stack_file.read_text() == before
    # By id: 'last' orders runs by their second-resolution id, so it may pick the preview's run.
    run_id = restored.out.split("[run ", 1)[1].split("]", 1)[0]
    journaled = run_cli("journal", "show", run_id, "--json").json()
    assert "config-restore" in journaled["command"] and journaled["status"] == "succeeded"


def test_offline_preview_json_and_journal(stack_env: StackEnv, run_cli: RunCli) -> None:
    result = run_cli("infra", "preview", "--config-only", "--to", "2", "--offline", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["mode"] == "offline"
    assert {r["path"] for r in document["desired_state_diff"]} == {
        "defaultCacheBehavior.lambdaFunctionAssociations[0].lambdaArn", "origins[0].originPath",
        "origin_path"}  # the release invalidation, keyed on the origin path
    assert document["undo"].startswith("rollback infra config-restore ")
    runs = run_cli("journal", "show", "last", "--json").json()
    assert runs["status"] == "succeeded"
    assert [s["id"] for s in runs["steps"]] == ["desired-state", "backup-config", "write-config"]


def test_offline_preview_dry_run_changes_nothing(stack_env: StackEnv, run_cli: RunCli) -> None:
    before = stack_env.stack_file.read_text()
    result = run_cli("infra", "preview", "--config-only", "--to", "1", "--offline", "--dry-run")
    assert result.code == 0, result.err
    assert "dry run: nothing was written" in result.out
    assert stack_env.stack_file.read_text() == before


@pytest.mark.usefixtures("no_pulumi")
def test_restore_without_the_cli_names_the_exact_command(stack_env: StackEnv, run_cli: RunCli) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    Path("v3.plan.json").write_text("{}")  # as 'pulumi preview --save-plan' would leave it
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 1
    assert "the Pulumi CLI is not installed" in result.err
    assert f"pulumi up --plan {stack_env.root / 'v3.plan.json'} --stack staging" in result.err
    assert "Traceback" not in result.err


def test_restore_refuses_without_a_plan_from_preview(stack_env: StackEnv, run_cli: RunCli) -> None:
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "missing.json", "--yes")
    assert result.code == 4
    assert "plan file" in result.err and "does not exist" in result.err
    Path("foreign.json").write_text("{}")
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "foreign.json", "--yes")
    assert result.code == 4
    assert "was not saved by 'rollback infra preview'" in result.err


def test_stack_outputs_for_break_glass(stack_env: StackEnv) -> None:
    from rollback.commands.infra.stack import stack_outputs
    from rollback.config import load_config

    outputs = stack_outputs(load_config(stack_env.config), Services(load_config(stack_env.config)))
    assert outputs["distributionId"] == "E2QWRUHAPOMQZL"
    assert outputs["edgeFunctionName"] == "rollback-staging-security-headers"
    assert outputs["assetsBucket"] == "rollback-staging-assets"


def test_missing_pulumi_section_is_a_config_error(tmp_path: Path, run_cli: RunCli,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text('[env.x.vercel]\nproject = "p"\n')
    monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
    result = run_cli("infra", "history")
    assert result.code == 2
    assert "has no [env.x.pulumi] section" in result.err


def test_history_json_is_one_document(stack_env: StackEnv, run_cli: RunCli) -> None:
    result = run_cli("infra", "diff", "1", "2", "--json")
    assert json.loads(result.out)["summary"] == {"config": 1, "resources_added": 0, "resources_removed": 0,
                                                 "resources_changed": 1}


def test_history_and_diff_from_an_s3_backend(stack_env: StackEnv, run_cli: RunCli, aws_env: str) -> None:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="rollback-state")
    for path in stack_env.backend.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket="rollback-state", Key=f"pulumi/{path.relative_to(stack_env.backend).as_posix()}",
                          Body=path.read_bytes())
    text = stack_env.config.read_text().replace(f"file://{stack_env.backend}", "s3://rollback-state/pulumi")
    stack_env.config.write_text(text)
    history = run_cli("infra", "history", "--json")
    assert history.code == 0, history.err
    assert history.json()["source"]["url"] == "s3://rollback-state/pulumi"
    assert [v["version"] for v in history.json()["versions"]] == [1, 2, 3, 4, 5]
    diff = run_cli("infra", "diff", "1", "2", "--json")
    assert diff.code == 0, diff.err
    assert [r["name"] for r in diff.json()["resources"]] == ["cdn"]


@pytest.mark.usefixtures("no_pulumi")
def test_relative_file_backend_resolves_against_the_config(stack_env: StackEnv, run_cli: RunCli) -> None:
    text = stack_env.config.read_text().replace(f"file://{stack_env.backend}", "file://state")
    stack_env.config.write_text(text)
    result = run_cli("infra", "preview", "--config-only", "--to", "4", "--plan-file", "v4.plan.json")
    assert result.code == 0, result.err
    assert f"PULUMI_BACKEND_URL=file://{stack_env.backend} pulumi preview --diff --stack staging" in result.out
    Path("v4.plan.json").write_text("{}")
    restore = run_cli("infra", "restore", "--to", "4", "--plan-file", "v4.plan.json", "--yes")
    assert restore.code == 1
    assert f"PULUMI_BACKEND_URL=file://{stack_env.backend} pulumi up --plan" in restore.err


def test_config_restore_refuses_what_preview_did_not_save(stack_env: StackEnv, run_cli: RunCli,
                                                         tmp_path: Path) -> None:
    before = stack_env.stack_file.read_text()
    stray = tmp_path / "Pulumi.staging.yaml"
    stray.write_text("config: {}\n")
    cases = ((tmp_path / "missing.yaml", "does not exist"),  # absent
             (stray, "is not a stack config backup made by 'rollback infra preview'"))  # no preview metadata
    for candidate, message in cases:
        result = run_cli("infra", "config-restore", str(candidate))
        assert result.code == 2, result.err
        assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
        assert message in result.err
    assert stack_env.stack_file.read_text() == before


def _offline_backup(run_cli: RunCli, version: str = "3") -> Path:
    preview = run_cli("infra", "preview", "--config-only", "--to", version, "--offline", "--plan-file",
                      "v.plan.json", "--json")
    assert preview.code == 0, preview.err
    return Path(preview.json()["undo"].split("config-restore ", 1)[1])


def test_config_restore_asks_first_and_saves_what_it_overwrites(stack_env: StackEnv, run_cli: RunCli) -> None:
    original = stack_env.stack_file.read_text()
    backup = _offline_backup(run_cli)
    pinned = stack_env.stack_file.read_text()
    assert pinned != original
    refused = run_cli("infra", "config-restore", str(backup))
    assert refused.code == 4, refused.err
    assert "without confirmation" in refused.err and len(refused.err.strip().splitlines()) == 1
    assert stack_env.stack_file.read_text() == pinned
    dry = run_cli("infra", "config-restore", str(backup), "--dry-run")
    assert dry.code == 0, dry.err
    assert "dry run: nothing was written" in dry.out and str(stack_env.stack_file) in dry.out
    assert stack_env.stack_file.read_text() == pinned
    restored = run_cli("infra", "config-restore", str(backup), "--yes", "--json")
    assert restored.code == 0, restored.err
    document = restored.json()
    assert stack_env.stack_file.read_text() == original
    # What it overwrote was saved first, and the named command puts that back in turn.
    assert Path(document["backup"]).read_text() == pinned
    assert document["undo"] == f"rollback infra config-restore {document['backup']}"
    again = run_cli(*document["undo"].split()[1:], "--yes")
    assert again.code == 0, again.err
    assert "to put it back: rollback infra config-restore " in again.out
    assert stack_env.stack_file.read_text() == pinned


@pytest.mark.parametrize("metadata", ["{not json", "[]", '{"stack": "staging"}', '{"stack": "staging", "path": 7}'])
def test_config_restore_with_corrupt_backup_metadata_is_one_line(stack_env: StackEnv, run_cli: RunCli,
                                                                 metadata: str) -> None:
    backup = _offline_backup(run_cli)
    before = stack_env.stack_file.read_text()
    backup.with_suffix(".json").write_text(metadata)
    result = run_cli("infra", "config-restore", str(backup), "--yes")
    assert result.code == 2, result.err
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err and "metadata of backup" in result.err
    assert stack_env.stack_file.read_text() == before


@pytest.mark.parametrize("sidecar", ["{not json", "[1, 2]", b"\xff\xfe"])
def test_restore_with_a_corrupt_sidecar_is_one_line(stack_env: StackEnv, run_cli: RunCli,
                                                    sidecar: str | bytes) -> None:
    Path("v.plan.json").write_text("{}")
    path = Path("v.plan.json.rollback.json")
    if isinstance(sidecar, bytes):
        path.write_bytes(sidecar)
    else:
        path.write_text(sidecar)
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v.plan.json", "--yes")
    assert result.code == 2, result.err
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err and "v.plan.json.rollback.json" in result.err


@pytest.mark.usefixtures("no_pulumi")
def test_offline_preview_names_the_config_the_program_rejects(stack_env: StackEnv, run_cli: RunCli) -> None:
    """README practice against the repo's stack files: a key the program requires is missing from the
    *current* file; the error says so and names the key, instead of blaming the pinned config."""
    from rollback.adapters.stack_config import write_stack_config

    before = stack_env.stack_file.read_text()
    write_stack_config(stack_env.stack_file, {"rollback:dbNetwork": None})
    broken = stack_env.stack_file.read_text()
    result = run_cli("infra", "preview", "--config-only", "--to", "3", "--offline")
    assert result.code == 1
    (error,) = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: the program rejects the current stack config "
                            "(project/stacks/Pulumi.staging.yaml): config rollback:dbNetwork: is required")
    assert "fix Pulumi.staging.yaml first (nothing was changed)" in error
    assert "pinned" not in error
    assert stack_env.stack_file.read_text() == broken != before


@pytest.mark.usefixtures("no_pulumi")
def test_restore_after_an_offline_preview_names_the_preview_to_run(stack_env: StackEnv, run_cli: RunCli) -> None:
    preview = run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json", "--json")
    assert preview.code == 0, preview.err
    command = preview.json()["run_where_cli_is_installed"]
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 4
    assert "does not exist yet: the offline preview of version 3 pinned its config" in result.err
    assert f"run where the Pulumi CLI is installed: {command} ; then run this restore again" in result.err
    assert "run 'rollback infra preview" not in result.err  # not the loop back to preview


@pytest.mark.usefixtures("no_pulumi")
def test_offline_preview_refuses_a_version_that_would_replace_the_assets_bucket(
        stack_env: StackEnv, run_cli: RunCli) -> None:
    """The bucket was renamed after version 3: going back would re-point CloudFront at another bucket."""
    from rollback.adapters.stack_config import write_stack_config

    write_stack_config(stack_env.stack_file, {"rollback:assetsBucketName": "huntaze-staging-assets"})
    before = stack_env.stack_file.read_text()
    result = run_cli("infra", "preview", "--config-only", "--to", "3", "--offline")
    assert result.code == 4, result.err
    (error,) = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert "would replace the assets bucket assets-bucket (bucket: huntaze-staging-assets -> (absent))" in error
    assert "a rename is a migration, not a rollback" in error
    assert stack_env.stack_file.read_text() == before  # refused before anything was written
