"""Stack names as Pulumi spells them (``stack``, ``project/stack``, ``organization/project/stack``), the
project from Pulumi.yaml, "not found" naming the stacks that exist, and ``history --limit`` reading only
what it lists. Self-managed backends built from the real checkpoints; the CLI cases use the recorded-CLI
double of ``pulumi`` (tests/stack/recorded_pulumi.py) through the Automation API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import pytest

from tests.conftest import CliResult
from tests.stack.backend_fixtures import PROJECT, STACK
from tests.stack.conftest import FakePulumi, StackEnv

RunCli = Callable[..., CliResult]


def set_pulumi(env: StackEnv, **values: str | None) -> None:
    """Rewrite [env.staging.pulumi] keys (None removes the key)."""
    lines = env.config.read_text().splitlines()
    for key, value in values.items():
        lines = [line for line in lines if not line.startswith(f"{key} = ")]
        if value is not None:
            lines.insert(lines.index("[env.staging.pulumi]") + 1, f'{key} = "{value}"')
    env.config.write_text("\n".join(lines) + "\n")


def rename_stack(env: StackEnv, project: str, stack: str) -> None:
    """Make the backend and the project say ``organization/<project>/<stack>`` (as `pulumi stack rename`
    and a renamed Pulumi.yaml would)."""
    pulumi = env.backend / ".pulumi"
    (pulumi / "stacks" / PROJECT).rename(pulumi / "stacks" / project)
    for path in (pulumi / "stacks" / project).iterdir():
        path.rename(path.with_name(path.name.replace(STACK, stack, 1)))
    history = pulumi / "history" / PROJECT / STACK
    for path in history.iterdir():
        path.rename(path.with_name(path.name.replace(f"{STACK}-", f"{stack}-", 1)))
    (pulumi / "history" / project).mkdir()
    history.rename(pulumi / "history" / project / stack)
    shutil.rmtree(pulumi / "history" / PROJECT)
    project_file = env.project / "Pulumi.yaml"
    project_file.write_text(project_file.read_text().replace(f"name: {PROJECT}\n", f"name: {project}\n"))
    (env.project / "stacks" / f"Pulumi.{STACK}.yaml").rename(env.project / "stacks" / f"Pulumi.{stack}.yaml")


@pytest.mark.parametrize("name", [STACK, f"{PROJECT}/{STACK}", f"organization/{PROJECT}/{STACK}"])
def test_every_spelling_of_the_stack_reads_the_same_history(stack_env: StackEnv, run_cli: RunCli, name: str) -> None:
    set_pulumi(stack_env, stack=name, project=None)  # the project comes from Pulumi.yaml
    result = run_cli("infra", "history", "--json")
    assert result.code == 0, result.err
    assert [v["version"] for v in result.json()["versions"]] == [1, 2, 3, 4, 5]
    assert result.json()["stack"] == name


def test_fully_qualified_name_of_another_project_against_a_self_managed_backend(
        stack_env: StackEnv, run_cli: RunCli) -> None:
    """As a new user would: `pulumi login file://...` in a project whose Pulumi.yaml says name: countdown."""
    rename_stack(stack_env, "countdown", "foo")
    set_pulumi(stack_env, stack="organization/countdown/foo", project=None)
    history = run_cli("infra", "history", "--json")
    assert history.code == 0, history.err
    assert [v["version"] for v in history.json()["versions"]] == [1, 2, 3, 4, 5]
    diff = run_cli("infra", "diff", "3", "5", "--json")
    assert diff.code == 0, diff.err
    assert [r["name"] for r in diff.json()["resources"]] == ["cdn"]
    # Pulumi.<stack>.yaml takes the short name.
    from rollback.adapters.stack_config import stack_config_file
    from rollback.config import load_config

    assert stack_config_file(load_config(stack_env.config)) == stack_env.project / "stacks" / "Pulumi.foo.yaml"


def test_not_found_lists_the_stacks_that_exist(stack_env: StackEnv, run_cli: RunCli) -> None:
    set_pulumi(stack_env, stack=f"organization/{PROJECT}/prod", project=None)
    result = run_cli("infra", "history")
    assert result.code == 2
    assert f"stack organization/{PROJECT}/prod not found in file://{stack_env.backend}" in result.err
    assert f"(stacks there: organization/{PROJECT}/{STACK})" in result.err


@pytest.mark.parametrize(
    ("stack", "project", "message"),
    [
        ("organization/countdown/foo", None, "names project 'countdown' but"),
        ("countdown/staging", "rollback", "names project 'countdown' but pulumi.project is 'rollback'"),
        ("acme/rollback/staging", None, "a self-managed backend has the one organization 'organization'"),
    ],
)
def test_inconsistent_names_are_bad_input(stack_env: StackEnv, run_cli: RunCli, stack: str, project: str | None,
                                          message: str) -> None:
    set_pulumi(stack_env, stack=stack, project=project)
    result = run_cli("infra", "history")
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1


def test_history_limit_reads_only_the_newest_history_files(stack_env: StackEnv, run_cli: RunCli) -> None:
    document = run_cli("infra", "history", "--limit", "2", "--json").json()
    assert [v["version"] for v in document["versions"]] == [4, 5]
    assert document["count"] == 5
    assert document["versions"][0]["config_changed"]  # v4 against v3, read for that
    assert document["source"]["history_files_read"] == 3
    everything = run_cli("infra", "history", "--json").json()
    assert everything["source"]["history_files_read"] == 5
    assert everything["versions"][-2:] == document["versions"]


def test_cli_selects_a_fully_qualified_stack_and_lists_stacks_when_not_found(
        stack_env: StackEnv, fake_pulumi: FakePulumi, run_cli: RunCli) -> None:
    set_pulumi(stack_env, stack=f"organization/{PROJECT}/{STACK}", project=None)
    result = run_cli("infra", "history", "--via", "cli", "--limit", "2", "--json")
    assert result.code == 0, result.err
    assert [v["version"] for v in result.json()["versions"]] == [4, 5]
    selects = [c for c in fake_pulumi.calls() if "select" in c]
    assert selects and f"organization/{PROJECT}/{STACK}" in selects[0]
    set_pulumi(stack_env, stack=f"organization/{PROJECT}/prod")
    missing = run_cli("infra", "history", "--via", "cli")
    assert missing.code == 2
    assert f"stack organization/{PROJECT}/prod not found (stacks there: {STACK})" in missing.err


def test_history_page_is_read_once_on_pulumi_cloud(stack_env: StackEnv, fake_pulumi: FakePulumi, run_cli: RunCli,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Cloud numbers updates: the newest page is enough (a DIY backend through the CLI needs all to number)."""
    monkeypatch.setenv("FAKE_PULUMI_VERSIONS", "cloud")
    result = run_cli("infra", "history", "--via", "cli", "--limit", "2", "--json")
    assert result.code == 0, result.err
    assert [v["version"] for v in result.json()["versions"]] == [4, 5]
    pages = [c for c in fake_pulumi.calls() if "history" in c]
    sizes = {c[c.index("--page-size") + 1] for c in pages}
    assert sizes == {"3", "1"}, pages  # N+1 for the rows, 1 for the total
    assert json.loads(result.out)["count"] == 5
