"""``infra preview | restore`` as a real Pulumi stack would take them: the database instance is never replaced
nor created by a rollback (today's restore keys are carried forward), a restore that changes the served release
invalidates it, and the ``--without-plan`` fallback compares the plan's goal values and updates only the planned
resources.

The Pulumi CLI is the recorded-CLI double (tests/stack/recorded_pulumi.py, NOT the Pulumi CLI) driven through
the Automation API; it answers in the CLI's formats: the saved plan is ``apitype.DeploymentPlanV1`` (each
resource plan's ``goal.inputDiff`` holds the new value of every changed top-level input), ``preview --json``
prints each step's ``newState.inputs``, a change of ``dbRestoreFromSnapshot`` replaces the RDS instance as the
program's new identifier does, and ``up --target URN`` updates only those resources ("an exclusive list of
resource URNs to update", the Automation API's ``up(target=...)``). Offline cases run the real program under
Pulumi's mocks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.adapters.pulumi import PlannedStep, compare_steps, plan_file_steps
from rollback.adapters.stack_config import read_stack_config, write_stack_config
from tests.stack.backend_fixtures import build_backend
from tests.stack.conftest import FakePulumi, StackEnv

CDN = "urn:pulumi:staging::rollback::aws:cloudfront/distribution:Distribution::cdn"
DB = "urn:pulumi:staging::rollback::aws:rds/instance:Instance::db"
FUNCTION = "urn:pulumi:staging::rollback::aws:lambda/function:Function::security-headers"
SNAPSHOT_KEY = "rollback:dbRestoreFromSnapshot"
SNAPSHOT = "rollback-staging-db-pre-2026-11-27-2"


@pytest.fixture
def restored_db(make_stack: Callable[..., StackEnv]) -> StackEnv:
    """The stack after its database was restored from a snapshot in the last update (version 5): today's
    config has dbRestoreFromSnapshot, versions 1-4 do not."""
    env = make_stack()
    shutil.rmtree(env.backend)
    build_backend(env.backend, extra_config={5: {SNAPSHOT_KEY: SNAPSHOT}})
    write_stack_config(env.stack_file, {SNAPSHOT_KEY: SNAPSHOT})
    return env


# --------------------------------------------------------------------------- 9: the database instance


@pytest.mark.usefixtures("no_pulumi")
def test_offline_preview_carries_todays_restore_keys_and_says_so(restored_db: StackEnv, run_cli: Any) -> None:
    result = run_cli("infra", "preview", "--to", "3", "--offline", "--config-only", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["carried_forward"] == [SNAPSHOT_KEY]
    assert read_stack_config(restored_db.stack_file)[SNAPSHOT_KEY] == SNAPSHOT  # the instance stays
    assert read_stack_config(restored_db.stack_file)["rollback:assetsRelease"] == "2026-11-26.1"  # the rest moves
    assert not [r for r in document["desired_state_diff"] if r["type"] == "aws:rds/instance:Instance"]
    assert any("the database restore keys stay as they are today" in n for n in document["plan"]["notes"])
    human = run_cli("infra", "preview", "--to", "3", "--offline", "--config-only")
    assert human.code == 0, human.err
    assert f"= {SNAPSHOT_KEY}: kept as it is today" in human.out


@pytest.mark.usefixtures("no_pulumi")
def test_offline_allow_db_replacement_takes_that_versions_keys(restored_db: StackEnv, run_cli: Any) -> None:
    result = run_cli("infra", "preview", "--to", "3", "--offline", "--config-only", "--allow-db-replacement",
                     "--json")
    assert result.code == 0, result.err
    assert SNAPSHOT_KEY not in read_stack_config(restored_db.stack_file)
    rows = {(r["resource"], r["path"]): r for r in result.json()["desired_state_diff"]}
    identifier = rows[("db-instance", "identifier")]
    assert identifier["old"].startswith("rollback-staging-db-from-") and identifier["new"] == "rollback-staging-db"


@pytest.mark.usefixtures("no_pulumi")
def test_offline_a_program_that_replaces_the_instance_is_refused(program_with_unencrypted_db: StackEnv,
                                                                  run_cli: Any) -> None:
    before = program_with_unencrypted_db.stack_file.read_text()
    refused = run_cli("infra", "preview", "--to", "3", "--offline")
    assert refused.code == 4, refused.err
    assert "would replace the database instance db-instance (storageEncrypted: true -> false)" in refused.err
    assert "--allow-db-replacement" in refused.err
    assert program_with_unencrypted_db.stack_file.read_text() == before  # nothing written
    assert run_cli("infra", "preview", "--to", "3", "--offline", "--allow-db-replacement").code == 0


@pytest.fixture
def program_with_unencrypted_db(restored_db: StackEnv) -> StackEnv:
    """Versions 1-3 ran from a commit whose program did not encrypt the database (storageEncrypted forces a
    new instance)."""
    import subprocess
    from dataclasses import replace

    from tests.stack.backend_fixtures import UPDATES

    project = restored_db.project
    database = project / "infra" / "database.py"

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(project), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
    original = database.read_text()
    database.write_text(original.replace("storage_encrypted=True", "storage_encrypted=False"))
    assert database.read_text() != original
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-am", "db not encrypted")
    old = git("rev-parse", "HEAD")
    database.write_text(original)
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-am", "db encrypted")
    new = git("rev-parse", "HEAD")
    heads = [old, old, old, new, new]
    shutil.rmtree(restored_db.backend)
    build_backend(restored_db.backend, updates=tuple(replace(u, git_head=h) for u, h in zip(UPDATES, heads,
                                                                                             strict=True)),
                  extra_config={5: {SNAPSHOT_KEY: SNAPSHOT}})
    return restored_db


def test_cli_preview_keeps_the_instance_and_restore_refuses_a_plan_that_replaces_it(
        restored_db: StackEnv, fake_pulumi: FakePulumi, run_cli: Any) -> None:
    preview = run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json", "--json")
    assert preview.code == 0, preview.err
    assert preview.json()["carried_forward"] == [SNAPSHOT_KEY]
    assert read_stack_config(restored_db.stack_file)[SNAPSHOT_KEY] == SNAPSHOT
    assert DB not in plan_file_steps(restored_db.root / "v3.plan.json")  # no step touches the instance
    set_all = [c for c in fake_pulumi.calls() if "set-all" in c][-1]
    assert not any(SNAPSHOT_KEY in arg for arg in set_all)
    assert not [c for c in fake_pulumi.calls() if "rm-all" in c]

    # With --allow-db-replacement the preview takes version 3's keys: the plan replaces the instance ...
    assert run_cli("infra", "config-restore", preview.json()["undo"].split(" ")[-1], "--yes").code == 0
    allowed = run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json",
                      "--allow-db-replacement")
    assert allowed.code == 0, allowed.err
    assert plan_file_steps(restored_db.root / "v3.plan.json")[DB].ops == (
        "create-replacement", "replace", "delete-replaced")
    # ... which restore applies only when told again.
    refused = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert refused.code == 4, refused.err
    assert "the plan v3.plan.json would replace the database instance db" in refused.err
    assert not [c for c in fake_pulumi.calls() if "up" in c]
    applied = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes",
                      "--allow-db-replacement")
    assert applied.code == 0, applied.err


def test_cli_preview_refuses_a_replacement_of_the_instance(stack_env: StackEnv, fake_pulumi: FakePulumi,
                                                          run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program change that replaces the instance (the double reports it as the CLI's event log does)."""
    monkeypatch.setenv("FAKE_PULUMI_REPLACE", f"{DB} identifier")
    refused = run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json")
    assert refused.code == 4, refused.err
    assert "would replace the database instance db" in refused.err and "--allow-db-replacement" in refused.err
    assert not (stack_env.root / "v3.plan.json").exists()  # the plan is not kept


# --------------------------------------------------------------------------- 11: the release invalidation


def test_restore_that_changes_the_release_invalidates_what_the_assets_origin_serves(
        stack_env: StackEnv, fake_pulumi: FakePulumi, run_cli: Any, aws_env: str) -> None:
    """The double's update does not call AWS: the distribution's origin path is set as the program's update
    would set it; the restore then invalidates the behaviours that origin serves (the cache key does not
    include the origin path), whatever the program of version 3 does."""
    import uuid

    import boto3

    cloudfront = boto3.client("cloudfront", region_name="us-east-1")
    bucket = f"assets-{uuid.uuid4().hex[:10]}"

    def behaviour(origin: str, path: str | None = None) -> dict[str, Any]:
        item = {"TargetOriginId": origin, "ViewerProtocolPolicy": "redirect-to-https",
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}}, "MinTTL": 0}
        return {**item, "PathPattern": path} if path else item

    created = cloudfront.create_distribution(DistributionConfig={
        "CallerReference": uuid.uuid4().hex, "Comment": "restore test", "Enabled": True,
        "Origins": {"Quantity": 2, "Items": [
            {"Id": "assets", "DomainName": f"{bucket}.s3.amazonaws.com", "OriginPath": "/releases/2026-11-26.1",
             "S3OriginConfig": {"OriginAccessIdentity": ""}},
            {"Id": "app", "DomainName": "app.vercel.app", "CustomOriginConfig": {
                "HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}]},
        "DefaultCacheBehavior": behaviour("app"),
        "CacheBehaviors": {"Quantity": 1, "Items": [behaviour("assets", "/static/*")]}})
    distribution = created["Distribution"]["Id"]
    with stack_env.config.open("a", encoding="utf-8") as handle:
        handle.write(f'distribution_id = "{distribution}"\n')  # under [env.staging.aws], the file's last table

    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes", "--json")
    assert result.code == 0, result.err
    step = next(s for s in result.json()["steps"] if s["id"] == "invalidate")
    assert step["result"]["paths"] == ["/static/*"] and step["result"]["distribution_id"] == distribution
    listed = cloudfront.list_invalidations(DistributionId=distribution)["InvalidationList"]["Items"]
    assert [item["Id"] for item in listed] == [step["result"]["id"]]
    assert any("assetsRelease changes (2026-11-27.2 -> 2026-11-26.1)" in n for n in result.json()["plan"]["notes"])


def test_a_restore_without_a_known_distribution_says_it_could_not_invalidate(
        stack_env: StackEnv, fake_pulumi: FakePulumi, run_cli: Any) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    result = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert result.code == 0, result.err
    assert "no distribution is known to invalidate" in result.err
    assert 'rollback infra invalidate --paths "/*"' in result.err


# --------------------------------------------------------------------------- 13: the --without-plan fallback


def test_step_comparison_compares_the_goal_values() -> None:
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "abc"}
    masked = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "[secret]"}
    planned = {CDN: PlannedStep(CDN, ("update",), frozenset({"origins"}),
                                {"origins": [{"originPath": "/releases/a", "header": secret}]})}

    def fresh(path: str) -> dict[str, PlannedStep]:
        inputs = {"origins": [{"originPath": path, "header": masked}], "priceClass": "PriceClass_100"}
        return {CDN: PlannedStep(CDN, ("update",), frozenset({"origins"}), inputs)}

    same = compare_steps(planned, fresh("/releases/a"))
    assert same.approved and same.to_apply == (CDN,)
    assert same.unchecked == ((CDN, "origins[0].header"),) and "compared as such only" in same.describe()
    other = compare_steps(planned, fresh("/releases/b"))
    assert not other.approved and other.other_values == ((CDN, ("origins",)),)
    assert "the preview's new value of origins is not the plan's" in other.describe()


def test_the_fallback_refuses_other_values_and_updates_only_the_planned_resources(
        stack_env: StackEnv, fake_pulumi: FakePulumi, monkeypatch: pytest.MonkeyPatch, run_cli: Any) -> None:
    assert run_cli("infra", "preview", "--config-only", "--to", "3", "--plan-file", "v3.plan.json").code == 0
    plan = json.loads((stack_env.root / "v3.plan.json").read_text())
    assert plan["resourcePlans"][CDN]["goal"]["inputDiff"]["updates"]["origins"][0]["originPath"] == \
        "/releases/2026-11-26.1"
    monkeypatch.setenv("FAKE_PULUMI_VIOLATE", f"{FUNCTION} code")
    refused = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert refused.code == 4 and "--without-plan" in refused.err, refused.err

    # Same resources, same properties, another value: a data source the program reads answers otherwise now.
    drifted = [{"originId": "assets", "domainName": "rollback-staging-assets.s3.us-east-1.amazonaws.com",
                "originPath": "/releases/hotfix-9"}]
    monkeypatch.setenv("FAKE_PULUMI_DRIFT", f"{CDN} origins {json.dumps(drifted)}")
    differs = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--without-plan", "--yes")
    assert differs.code == 4, differs.err
    assert f"{CDN}: the preview's new value of origins is not the plan's" in differs.err
    assert not [c for c in fake_pulumi.calls() if "up" in c and "--plan" not in c]

    monkeypatch.delenv("FAKE_PULUMI_DRIFT")
    fallback = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--without-plan", "--yes",
                       "--json")
    assert fallback.code == 0, fallback.err
    (up,) = [c for c in fake_pulumi.calls() if "up" in c and "--plan" not in c]
    targets = [up[i + 1] for i, arg in enumerate(up) if arg == "--target"]
    assert targets == [CDN]  # the planned resource only
    comparison = next(s for s in fallback.json()["steps"] if s["id"] == "up")["result"]["comparison"]
    assert comparison["to_apply"] == [CDN] and comparison["unchecked"]  # the origin secret: compared as secret


def test_plan_goal_values_are_read_from_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"resourcePlans": {CDN: {"steps": ["update"], "goal": {
        "type": "aws:cloudfront/distribution:Distribution", "name": "cdn", "custom": True,
        "inputDiff": {"updates": {"origins": [1]}, "adds": {"comment": "x"}, "deletes": ["aliases"]}}}}}))
    (step,) = plan_file_steps(path).values()
    assert step.values == {"origins": [1], "comment": "x"} and step.deleted == frozenset({"aliases"})
    assert step.properties == frozenset({"origins", "comment", "aliases"})
