"""An earlier stack version's program: the commit an update ran from, checked out in a temporary git
worktree (removed afterwards, also after a failure or a kill), and the desired-state diff of
program@HEAD + current config against program@commit + that version's config, under Pulumi's mocks.

A real git repository whose history has two program versions: a changed property in infra/cdn.py."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rollback.adapters.git import GitRepo
from rollback.adapters.program_checkout import (
    ProgramSource,
    checkout,
    program_source,
    remove_stale,
    require_program,
    worktrees_dir,
)
from rollback.errors import UnsafePrecondition
from tests.conftest import CliResult
from tests.stack.backend_fixtures import REPO_ROOT, build_backend, commit_two_programs
from tests.stack.conftest import FakePulumi, StackEnv
from tests.stack.wheels import offline_wheels  # noqa: F401  (a fixture)

RunCli = Callable[..., CliResult]


@dataclass
class Repo:
    path: Path
    old: str  # the commit whose cdn.py serves http2and3
    new: str  # HEAD: http2 only

    @property
    def git(self) -> GitRepo:
        return GitRepo(self.path)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO_ROOT / "infra", root / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "stacks", root / "stacks")
    old, new = commit_two_programs(root)
    return Repo(root, old, new)


def test_program_source_reads_the_update_environment() -> None:
    assert program_source(3, {"git.head": "ab" * 20, "git.dirty": "false"}) == ProgramSource(3, "ab" * 20, False)
    assert program_source(4, {"git.head": "cd" * 20, "git.dirty": "true"}).dirty
    assert program_source(5, {"exec.kind": "auto.local"}).commit is None


def test_checkout_yields_that_commits_program_and_removes_the_worktree(repo: Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with checkout(repo.git, repo.old, project_dir=repo.path, root=state) as found:
        assert 'http_version="http2and3"' in (found.project_dir / "infra" / "cdn.py").read_text()
        assert found.changed_files == ("infra/cdn.py",)
        assert not found.requirements_differ
        assert found.worktree.parent == worktrees_dir(state)
        worktree = found.worktree
    assert not worktree.exists()
    assert worktree.resolve() not in {p.resolve() for p in repo.git.worktrees()}
    assert 'http_version="http2"' in (repo.path / "infra" / "cdn.py").read_text()  # the repo is untouched


def test_the_worktree_is_removed_after_a_failure_and_a_killed_runs_is_repaired(repo: Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with pytest.raises(RuntimeError), checkout(repo.git, repo.old, project_dir=repo.path, root=state) as found:
        worktree = found.worktree
        raise RuntimeError("the preview failed")
    assert not worktree.exists() and len(repo.git.worktrees()) == 1
    # A SIGKILLed run leaves the worktree behind: the next checkout removes it first.
    left = worktrees_dir(state) / "left-by-a-killed-run"
    repo.git.add_worktree(repo.old, left)
    assert len(repo.git.worktrees()) == 2
    with checkout(repo.git, repo.new, project_dir=repo.path, root=state):
        assert not left.exists()
    assert remove_stale(repo.git, state) == [] and len(repo.git.worktrees()) == 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (ProgramSource(2, None, False), "does not record the commit"),
        (ProgramSource(2, "ab" * 20, True), "with uncommitted changes (git.dirty)"),
        (ProgramSource(2, "ab" * 20, False), "which this repository does not have"),
    ],
)
def test_a_program_that_cannot_be_checked_out_is_refused(repo: Repo, source: ProgramSource, message: str) -> None:
    with pytest.raises(UnsafePrecondition) as caught:
        require_program(repo.git, source)
    assert message in caught.value.message and "--config-only" in caught.value.hint
    assert require_program(repo.git, ProgramSource(2, repo.old, False)) == repo.old


# --- through the CLI: `rollback infra preview/restore --to N` with version N's program ----------------


@dataclass
class ProgramStack:
    env: StackEnv
    old: str  # versions 1-3 ran from this commit (cdn.py serves http2and3)
    new: str  # versions 4-5 and the work tree (http2 only)

    def worktrees(self) -> list[Path]:
        return GitRepo(self.env.project).worktrees()


@pytest.fixture
def program_stack(make_stack: Callable[..., StackEnv], request: pytest.FixtureRequest) -> ProgramStack:
    """The stack fixtures, with the project in a git repository whose history has two program versions;
    versions 1-3 ran from the first, 4-5 from the second. Version 1 names a commit the repository lacks
    and version 2 ran from a dirty tree. The program's requirements.txt names a package of the test's
    offline wheel cache (tests/stack/wheels.py): the worktree's environment is built from it."""
    import json
    from dataclasses import replace

    from tests.stack.backend_fixtures import UPDATES, commit_two_programs

    request.getfixturevalue("offline_wheels")
    env = make_stack()
    old, new = commit_two_programs(env.project, old_requirements="rollback-fixture-dep==1.0\n")
    heads = ["f" * 40, old, old, new, new]
    updates = tuple(replace(u, git_head=h) for u, h in zip(UPDATES, heads, strict=True))
    shutil.rmtree(env.backend)
    build_backend(env.backend, updates=updates)
    history = sorted((env.backend / ".pulumi" / "history").rglob("*.history.json"))
    second = json.loads(history[1].read_text())
    second["environment"]["git.dirty"] = "true"
    history[1].write_text(json.dumps(second))
    return ProgramStack(env, old, new)


@pytest.mark.slow
@pytest.mark.usefixtures("no_pulumi")
def test_offline_preview_names_the_program_change_and_its_commit(program_stack: ProgramStack, run_cli: RunCli
                                                                 ) -> None:
    result = run_cli("infra", "preview", "--to", "3", "--offline", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["program"]["mode"] == "commit"
    assert document["program"]["commit"] == program_stack.old
    assert document["program"]["files"] == ["infra/cdn.py"]
    rows = {(r["resource"], r["path"]): r for r in document["desired_state_diff"]}
    http = rows[("cdn-distribution", "httpVersion")]
    assert (http["old"], http["new"], http["cause"]) == ("http2", "http2and3", "program")
    assert rows[("cdn-distribution", "origins[0].originPath")]["cause"] == "config"
    # The command to run where the CLI is names that commit's worktree and the stack's config file.
    assert "worktree add --detach" in document["run_where_cli_is_installed"]
    assert program_stack.old in document["run_where_cli_is_installed"]
    assert f"--config-file {program_stack.env.stack_file}" in document["run_where_cli_is_installed"]
    assert program_stack.worktrees() == [program_stack.env.project]  # the worktree is gone

    human_env = run_cli("infra", "config-restore", document["undo"].split(" ")[-1], "--yes")
    assert human_env.code == 0, human_env.err
    human = run_cli("infra", "preview", "--to", "3", "--offline")
    assert human.code == 0, human.err
    assert (f"program: version 3's own, from commit {program_stack.old[:12]} (differs from the work tree in "
            "infra/cdn.py)") in human.out
    assert "cdn-distribution (aws:cloudfront/distribution:Distribution) httpVersion: http2 -> http2and3 [program]" \
        in human.out


@pytest.mark.usefixtures("no_pulumi")
def test_config_only_previews_with_todays_program(program_stack: ProgramStack, run_cli: RunCli) -> None:
    result = run_cli("infra", "preview", "--to", "3", "--offline", "--config-only", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["program"]["mode"] == "config-only"
    assert "httpVersion" not in {r["path"] for r in document["desired_state_diff"]}
    assert {r["cause"] for r in document["desired_state_diff"]} == {"config"}


@pytest.mark.slow
@pytest.mark.usefixtures("no_pulumi")
@pytest.mark.parametrize(("version", "message"), [
    ("1", f"ran from commit {'f' * 12}, which this repository does not have"),
    ("2", "with uncommitted changes (git.dirty)"),
])
def test_a_program_that_cannot_be_checked_out_is_refused_unless_config_only(
        program_stack: ProgramStack, run_cli: RunCli, version: str, message: str) -> None:
    before = program_stack.env.stack_file.read_text()
    result = run_cli("infra", "preview", "--to", version, "--offline")
    assert result.code == 4, result.err
    assert message in result.err and "--config-only" in result.err
    assert program_stack.env.stack_file.read_text() == before
    assert run_cli("infra", "preview", "--to", version, "--offline", "--config-only").code == 0


@pytest.mark.slow
def test_preview_and_restore_run_that_commits_program_from_a_worktree(
        program_stack: ProgramStack, fake_pulumi: FakePulumi, run_cli: RunCli) -> None:
    """The Pulumi CLI is the recorded-CLI double (tests/stack/recorded_pulumi.py) driven through the
    Automation API: it shows where each command ran and with which config file."""
    import json

    env = program_stack.env
    preview = run_cli("infra", "preview", "--to", "3", "--plan-file", "v3.plan.json", "--json")
    assert preview.code == 0, preview.err
    calls = [json.loads(line) for line in fake_pulumi.log.read_text().splitlines()]
    (previewed,) = [c for c in calls if "preview" in c["argv"]]
    tree = Path(previewed["cwd"])
    assert tree.parent == env.root / ".rollback" / "worktrees" and tree.name.startswith(program_stack.old[:12])
    assert previewed["argv"][previewed["argv"].index("--config-file") + 1] == str(env.stack_file)
    assert not tree.exists() and program_stack.worktrees() == [env.project]
    sidecar = json.loads(Path(f"{env.root / 'v3.plan.json'}.rollback.json").read_text())
    assert sidecar["program"]["commit"] == program_stack.old

    restore = run_cli("infra", "restore", "--to", "3", "--plan-file", "v3.plan.json", "--yes")
    assert restore.code == 0, restore.err
    calls = [json.loads(line) for line in fake_pulumi.log.read_text().splitlines()]
    (applied,) = [c for c in calls if "up" in c["argv"]]
    assert Path(applied["cwd"]) == tree  # the same commit's program, at the same place
    assert applied["argv"][applied["argv"].index("--config-file") + 1] == str(env.stack_file)
    assert not tree.exists() and program_stack.worktrees() == [env.project]


@pytest.mark.slow
def test_the_worktree_is_removed_when_the_preview_fails(program_stack: ProgramStack, fake_pulumi: FakePulumi,
                                                        run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "preview")
    result = run_cli("infra", "preview", "--to", "3", "--plan-file", "v3.plan.json")
    assert result.code == 1, result.err
    assert "config-restore" in result.err  # the failure names the undo of the config it wrote
    assert program_stack.worktrees() == [program_stack.env.project]
    assert not any((program_stack.env.root / ".rollback" / "worktrees").iterdir())
