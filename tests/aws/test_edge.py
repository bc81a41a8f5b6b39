"""Break-glass edge rollback against moto with real CloudFront semantics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from rollback.adapters.stack_config import read_stack_config
from rollback.config import load_config
from rollback.context import Services
from rollback.errors import AwsError, UnsafePrecondition
from rollback.runner import execute
from tests.aws.conftest import STACK_FILE, EdgeStack, Project, associations, journal_events

EDGE = ("infra", "edge", "--poll-interval", "0s")



def edge_handlers(config: Any, adapter: Any) -> dict[str, Any]:
    """The edge plan's handlers: its own and the automatic distribution snapshot's."""
    from rollback.commands.infra.cdn import CdnHandlers
    from rollback.commands.infra.edge import EdgeHandlers

    services = Services(config, edge=adapter)
    return {**EdgeHandlers(services, interval=0).handlers(), **CdnHandlers(services, interval=0).handlers()}

def test_edge_rollback_end_to_end(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                  project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack(versions=3, live=3)
    proj = project(stack)
    cf = aws("cloudfront")
    etag_before = cf.get_distribution_config(Id=stack.distribution_id)["ETag"]

    result = run_cli(*EDGE, "--to-version", "2", "--yes", "--config", str(proj.config))

    assert result.code == 0, result.err
    after = cf.get_distribution_config(Id=stack.distribution_id)
    assert associations(cf, stack.distribution_id) == {"default": [stack.arn(2)], "/api/*": [stack.arn(2)],
                                                       "/static/*": []}
    assert after["ETag"] != etag_before
    assert cf.get_distribution(Id=stack.distribution_id)["Distribution"]["Status"] == "Deployed"
    # The pin: same version, everything else in the file untouched.
    assert read_stack_config(proj.stack_file)["rollback:edgeFunctionVersion"] == "2"
    assert proj.stack_file.read_text(encoding="utf-8") == STACK_FILE.replace('Version: "3"', 'Version: "2"')
    assert result.out.strip() == (f"edge function {stack.function}: version 3 -> 2 on behaviours "
                                  f"[default, /api/*]; ETag {etag_before} -> {after['ETag']}; "
                                  f"pinned rollback:edgeFunctionVersion = 2")
    assert "InProgress" in result.err  # progress while waiting
    events = journal_events(proj.journal_dir)
    finished = [e["step"] for e in events if e["event"] == "step_finished"]
    assert finished == ["snapshot", "associate", "wait", "pin"]  # the distribution is saved first
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "succeeded"


def test_edge_json_output(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                          project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack(versions=2, live=2)
    proj = project(stack)
    result = run_cli(*EDGE, "--to-version", "1", "--yes", "--json", "--config", str(proj.config))
    assert result.code == 0, result.err
    document = result.json()
    assert document["ok"] is True
    assert document["edge"]["to_arn"] == stack.arn(1)
    assert document["edge"]["behaviours"] == ["default", "/api/*"]
    steps = {s["id"]: s["result"] for s in document["run"]["steps"]}
    assert steps["associate"]["changed"] is True
    assert steps["associate"]["etag_after"] == aws("cloudfront").get_distribution_config(
        Id=stack.distribution_id)["ETag"]
    assert steps["pin"] == {"changed": True, "key": "rollback:edgeFunctionVersion", "before": "3", "value": "1",
                            "path": str(proj.stack_file)}


def test_dry_run_changes_nothing(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                 project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    cf = aws("cloudfront")
    etag = cf.get_distribution_config(Id=stack.distribution_id)["ETag"]
    result = run_cli(*EDGE, "--to-version", "1", "--dry-run", "--config", str(proj.config))
    assert result.code == 0, result.err
    assert result.out.startswith("dry run: edge function")
    assert f"version 3 -> 1 on behaviours [default, /api/*] (IfMatch {etag})" in result.err
    assert "stack prod: pin rollback:edgeFunctionVersion = 1 in stacks/Pulumi.prod.yaml" in result.err
    assert result.out.strip().endswith("; would pin rollback:edgeFunctionVersion = 1")
    assert cf.get_distribution_config(Id=stack.distribution_id)["ETag"] == etag
    assert associations(cf, stack.distribution_id)["default"] == [stack.arn(3)]
    assert proj.stack_file.read_text(encoding="utf-8") == STACK_FILE
    assert not proj.journal_dir.exists() or not list(proj.journal_dir.glob("*.jsonl"))


def test_without_yes_and_terminal_refuses(edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
                                          run_cli: Any, aws: Callable[[str], Any]) -> None:
    stack = edge_stack()
    proj = project(stack)
    result = run_cli(*EDGE, "--to-version", "1", "--config", str(proj.config))
    assert result.code == 4
    assert result.err.strip().splitlines()[-1].startswith("error: refusing to move edge function")
    assert associations(aws("cloudfront"), stack.distribution_id)["default"] == [stack.arn(3)]


def _plan(proj: Project, stack: EdgeStack, version: int) -> tuple[Any, Any, Any]:
    from rollback.commands.infra import edge as commands

    config = load_config(proj.config)
    adapter = Services(config).edge()
    planned = commands.plan_edge(config, adapter, to_version=version, distribution_id=stack.distribution_id,
                                 function=stack.function)
    return config, adapter, planned


def _someone_else_updates(cf: Any, distribution_id: str, change: Callable[[dict[str, Any]], None]) -> str:
    current = cf.get_distribution_config(Id=distribution_id)
    config = current["DistributionConfig"]
    change(config)
    return str(cf.update_distribution(Id=distribution_id, IfMatch=current["ETag"], DistributionConfig=config)["ETag"])


def test_concurrent_association_change_fails_cleanly(aws: Callable[[str], Any],
                                                     edge_stack: Callable[..., EdgeStack],
                                                     project: Callable[..., Project]) -> None:
    from rollback.journal import Journal

    stack = edge_stack(versions=4, live=3)
    proj = project(stack)
    config, adapter, planned = _plan(proj, stack, 2)
    cf = aws("cloudfront")

    def to_v4(config_: dict[str, Any]) -> None:
        config_["DefaultCacheBehavior"]["LambdaFunctionAssociations"]["Items"][0]["LambdaFunctionARN"] = stack.arn(4)

    their_etag = _someone_else_updates(cf, stack.distribution_id, to_v4)

    journal = Journal.start(config.journal_dir, command="test", env="prod")
    with pytest.raises(UnsafePrecondition) as caught:
        execute(planned.plan, edge_handlers(config, adapter), journal=journal)
    assert caught.value.exit_code == 4
    assert "changed by someone else" in caught.value.message
    assert f"now uses {stack.arn(4)} (planned to change {stack.arn(3)})" in caught.value.message
    # Their change stands; ours was not applied anywhere, and the pin was not written.
    after = cf.get_distribution_config(Id=stack.distribution_id)
    assert after["ETag"] == their_etag
    assert associations(cf, stack.distribution_id) == {"default": [stack.arn(4)], "/api/*": [stack.arn(3)],
                                                       "/static/*": []}
    assert read_stack_config(proj.stack_file)["rollback:edgeFunctionVersion"] == "3"
    events = journal_events(proj.journal_dir)
    assert [e["event"] for e in events][-2:] == ["step_failed", "run_finished"]
    assert events[-1]["status"] == "refused" and events[-1]["stopped_at"] == "associate"


def test_concurrent_unrelated_change_is_kept_and_retried_once(aws: Callable[[str], Any],
                                                               edge_stack: Callable[..., EdgeStack],
                                                               project: Callable[..., Project]) -> None:

    stack = edge_stack()
    proj = project(stack)
    config, adapter, planned = _plan(proj, stack, 1)
    cf = aws("cloudfront")
    their_etag = _someone_else_updates(cf, stack.distribution_id, lambda c: c.update(Comment="changed by Alice"))
    notes: list[str] = []
    outcome = execute(planned.plan, edge_handlers(config, adapter), progress=notes.append)
    result = outcome.result_of("associate")
    assert result["retried"] is True
    assert result["etag_before"] == their_etag and result["etag_planned"] == planned.facts.etag
    after = cf.get_distribution_config(Id=stack.distribution_id)
    assert after["DistributionConfig"]["Comment"] == "changed by Alice"  # not overwritten
    assert associations(cf, stack.distribution_id)["default"] == [stack.arn(1)]
    assert any("re-reading it once" in n for n in notes)
    assert read_stack_config(proj.stack_file)["rollback:edgeFunctionVersion"] == "1"


def test_changed_again_during_retry_stops(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                          project: Callable[..., Project]) -> None:

    stack = edge_stack()
    proj = project(stack)
    config, adapter, planned = _plan(proj, stack, 1)
    cf = aws("cloudfront")
    _someone_else_updates(cf, stack.distribution_id, lambda c: c.update(Comment="first"))
    real_get = adapter.get_config

    def get_then_change(distribution_id: str) -> Any:
        read = real_get(distribution_id)
        _someone_else_updates(cf, distribution_id, lambda c: c.update(Comment="second"))
        return read

    adapter.get_config = get_then_change
    with pytest.raises(AwsError) as caught:
        execute(planned.plan, edge_handlers(config, adapter))
    assert getattr(caught.value, "code", None) == "PreconditionFailed"
    assert "stopped after one retry" in caught.value.message
    assert associations(cf, stack.distribution_id)["default"] == [stack.arn(3)]
    assert cf.get_distribution_config(Id=stack.distribution_id)["DistributionConfig"]["Comment"] == "second"


def test_missing_version_is_bad_input(edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
                                      run_cli: Any) -> None:
    stack = edge_stack(versions=3)
    proj = project(stack)
    result = run_cli(*EDGE, "--to-version", "9", "--yes", "--config", str(proj.config))
    assert result.code == 2
    assert result.err.strip() == (f"error: version 9 of function {stack.function} does not exist "
                                  f"(published versions: 1, 2, 3)")
    assert "Traceback" not in result.err


def test_function_not_on_distribution(edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
                                      run_cli: Any) -> None:
    stack = edge_stack()
    other = edge_stack(versions=1, live=1, with_alarm=False)
    proj = project(stack)
    result = run_cli(*EDGE, "--to-version", "1", "--function", other.function, "--yes", "--config",
                     str(proj.config))
    assert result.code == 2
    assert f"has no behaviour using function {other.function}" in result.err


def test_already_on_version_is_a_no_op_that_still_pins(aws: Callable[[str], Any],
                                                       edge_stack: Callable[..., EdgeStack],
                                                       project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack(live=2)
    proj = project(stack)
    etag = aws("cloudfront").get_distribution_config(Id=stack.distribution_id)["ETag"]
    result = run_cli(*EDGE, "--to-version", "2", "--config", str(proj.config))  # no --yes needed: not destructive
    assert result.code == 0, result.err
    assert "already on version 2" in result.out
    assert aws("cloudfront").get_distribution_config(Id=stack.distribution_id)["ETag"] == etag
    assert read_stack_config(proj.stack_file)["rollback:edgeFunctionVersion"] == "2"


def test_pin_failure_says_cloudfront_changed_and_how_to_pin(aws: Callable[[str], Any],
                                                            edge_stack: Callable[..., EdgeStack],
                                                            project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack)
    proj.stack_file.unlink()
    proj.stack_file.mkdir()  # unreadable as a file: the pin write fails after CloudFront changed
    result = run_cli(*EDGE, "--to-version", "1", "--yes", "--config", str(proj.config))
    assert result.code == 1
    line = result.err.strip().splitlines()[-1]
    assert line.startswith(f"error: CloudFront now uses {stack.function} version 1 (ETag ")
    assert "but writing the pin to" in line
    assert line.endswith("(write it by hand, or the next pulumi up undoes the rollback: "
                         "pulumi config set rollback:edgeFunctionVersion 1 --stack prod)")
    assert associations(aws("cloudfront"), stack.distribution_id)["default"] == [stack.arn(1)]
    failed = [e for e in journal_events(proj.journal_dir) if e["event"] == "step_failed"]
    assert failed[0]["step"] == "pin" and "pulumi config set" in failed[0]["error"]

    # Fixing the file and running the same command again completes the pin without touching CloudFront.
    proj.stack_file.rmdir()
    proj.stack_file.write_text(STACK_FILE, encoding="utf-8")
    etag = aws("cloudfront").get_distribution_config(Id=stack.distribution_id)["ETag"]
    again = run_cli(*EDGE, "--to-version", "1", "--yes", "--config", str(proj.config))
    assert again.code == 0, again.err
    assert read_stack_config(proj.stack_file)["rollback:edgeFunctionVersion"] == "1"
    assert aws("cloudfront").get_distribution_config(Id=stack.distribution_id)["ETag"] == etag


def test_wait_timeout_is_one_clear_error(edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
                                         run_cli: Any, aws: Callable[[str], Any]) -> None:
    stack = edge_stack()
    proj = project(stack)
    result = run_cli("infra", "edge", "--to-version", "1", "--yes", "--timeout", "0s", "--poll-interval", "1s",
                     "--config", str(proj.config))
    assert result.code == 1
    assert "is still InProgress after" in result.err
    assert "re-run the same command to wait again" in result.err
    assert associations(aws("cloudfront"), stack.distribution_id)["default"] == [stack.arn(1)]
    assert read_stack_config(proj.stack_file)["rollback:edgeFunctionVersion"] == "3"  # not pinned yet


def test_no_pin(edge_stack: Callable[..., EdgeStack], project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack()
    proj = project(stack, pulumi=False)
    refused = run_cli(*EDGE, "--to-version", "1", "--yes", "--config", str(proj.config))
    assert refused.code == 2
    assert "has no [env.prod.pulumi] section" in refused.err
    result = run_cli(*EDGE, "--to-version", "1", "--yes", "--no-pin", "--config", str(proj.config))
    assert result.code == 0, result.err
    assert "pinned" not in result.out
    assert proj.stack_file.read_text(encoding="utf-8") == STACK_FILE


def test_unset_resources_name_the_config_key(project: Callable[..., Project], run_cli: Any, aws_env: str) -> None:
    proj = project(None)
    result = run_cli(*EDGE, "--to-version", "1", "--yes", "--config", str(proj.config))
    assert result.code == 2
    assert result.err.strip() == ("error: no distribution to act on: env.prod.aws.distribution_id is not set "
                                  "(set distribution_id under [env.prod.aws] in rollback.toml, or pass --distribution)")


def test_resources_from_stack_outputs(edge_stack: Callable[..., EdgeStack], project: Callable[..., Project],
                                      run_cli: Any, tmp_path: Any, aws: Callable[[str], Any]) -> None:
    """The outputs come from the stack's current checkpoint in a self-managed (file://) backend."""
    stack = edge_stack()
    state = tmp_path / "state"
    (state / ".pulumi" / "stacks").mkdir(parents=True)
    outputs = {"distributionId": stack.distribution_id, "edgeFunctionName": stack.function,
               "assetsBucket": stack.bucket}
    (state / ".pulumi" / "stacks" / "prod.json").write_text(json.dumps({"version": 3, "checkpoint": {
        "stack": "prod", "latest": {"resources": [{
            "urn": "urn:pulumi:prod::rollback::pulumi:pulumi:Stack::rollback-prod", "custom": False,
            "type": "pulumi:pulumi:Stack", "outputs": outputs}]}}}), encoding="utf-8")
    proj = project(None, aws_settings={"from_stack_outputs": True},
                   pulumi_settings={"backend_url": f"file://{state}"})
    result = run_cli(*EDGE, "--to-version", "2", "--yes", "--json", "--config", str(proj.config))
    assert result.code == 0, result.err
    assert result.json()["resources"]["sources"] == {"distribution": "stack outputs", "function": "stack outputs"}
    assert associations(aws("cloudfront"), stack.distribution_id)["default"] == [stack.arn(2)]


class SomeoneDeploysAfterTheFirstRead:
    """The edge adapter, with someone else's deploy landing right after the plan's read of the distribution."""

    def __init__(self, adapter: Any, deploy: Callable[[], object]) -> None:
        self.adapter = adapter
        self.deploy: Callable[[], object] | None = deploy

    def get_config(self, distribution_id: str) -> Any:
        read = self.adapter.get_config(distribution_id)
        if self.deploy is not None:
            deploy, self.deploy = self.deploy, None
            deploy()
        return read

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)


def test_concurrent_change_between_plan_and_act_refuses_without_overwriting(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack], project: Callable[..., Project]) -> None:
    """``infra edge`` as a library caller runs it (rollback.commands.infra.edge.run_edge); the CLI runs the
    same prepare_edge and prints the refusal's one_line() with exit code 4."""
    from rollback.commands.infra.edge import run_edge

    stack = edge_stack(versions=4, live=3)
    proj = project(stack)
    cf = aws("cloudfront")

    def to_v4(config: dict[str, Any]) -> None:
        for item in [config["DefaultCacheBehavior"], *config["CacheBehaviors"]["Items"]]:
            for association in item["LambdaFunctionAssociations"].get("Items", []):
                association["LambdaFunctionARN"] = stack.arn(4)

    config = load_config(proj.config)
    real = Services(config).edge()
    edge = SomeoneDeploysAfterTheFirstRead(real, lambda: _someone_else_updates(cf, stack.distribution_id, to_v4))
    with pytest.raises(UnsafePrecondition) as refused:
        run_edge(config, Services(config, edge=edge), to_version=2, interval=0)
    assert refused.value.exit_code == 4
    last = f"error: {refused.value.one_line()}"
    assert last.startswith(f"error: distribution {stack.distribution_id} was changed by someone else since the "
                           f"plan: behaviour ")
    assert last.endswith("(nothing was changed by this run; find out who changed it, then run the command again "
                         "to plan against the new state)")
    assert associations(cf, stack.distribution_id) == {"default": [stack.arn(4)], "/api/*": [stack.arn(4)],
                                                       "/static/*": []}
    assert read_stack_config(proj.stack_file)["rollback:edgeFunctionVersion"] == "3"


def test_missing_stack_config_file_is_not_created(edge_stack: Callable[..., EdgeStack],
                                                  project: Callable[..., Project], run_cli: Any,
                                                  aws: Callable[[str], Any]) -> None:
    stack = edge_stack()
    proj = project(stack)
    proj.stack_file.unlink()
    result = run_cli(*EDGE, "--to-version", "1", "--yes", "--config", str(proj.config))
    assert result.code == 2
    assert f"stack config file {proj.stack_file} does not exist" in result.err
    assert not proj.stack_file.exists()
    assert associations(aws("cloudfront"), stack.distribution_id)["default"] == [stack.arn(3)]  # planned first


def test_concurrent_updates_from_threads_exactly_one_wins(aws: Callable[[str], Any],
                                                          edge_stack: Callable[..., EdgeStack]) -> None:
    import concurrent.futures

    from botocore.exceptions import ClientError

    stack = edge_stack(versions=4)
    cf = aws("cloudfront")
    read = cf.get_distribution_config(Id=stack.distribution_id)

    def update(version: int) -> str:
        import boto3

        client = boto3.client("cloudfront", region_name="us-east-1")
        config = read["DistributionConfig"]
        body = {**config, "DefaultCacheBehavior": {**config["DefaultCacheBehavior"], "LambdaFunctionAssociations": {
            "Quantity": 1, "Items": [{"LambdaFunctionARN": stack.arn(version), "EventType": "viewer-response",
                                      "IncludeBody": False}]}}}
        try:
            client.update_distribution(Id=stack.distribution_id, IfMatch=read["ETag"], DistributionConfig=body)
            return "ok"
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(update, [1, 2, 4, 1]))
    assert sorted(outcomes) == ["PreconditionFailed"] * 3 + ["ok"]


def test_stack_outputs_failure_names_the_config_key(project: Callable[..., Project], run_cli: Any,
                                                     monkeypatch: pytest.MonkeyPatch, aws_env: str,
                                                     tmp_path: Any) -> None:
    """No self-managed backend and no Pulumi CLI on PATH: the outputs cannot be read, for real."""
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    proj = project(None, aws_settings={"from_stack_outputs": True})
    result = run_cli("infra", "invalidate", "--config", str(proj.config))
    assert result.code == 2
    assert result.err.strip() == (
        "error: no distribution to act on: env.prod.aws.distribution_id is not set (reading the stack outputs "
        "failed: cannot read the stack outputs: no Pulumi CLI and no self-managed backend configured) "
        "(set distribution_id under [env.prod.aws] in rollback.toml, or pass --distribution)")
