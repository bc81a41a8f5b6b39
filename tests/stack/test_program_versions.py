"""An earlier stack version's program: the commit an update ran from, checked out in a temporary git
worktree (removed afterwards, also after a failure or a kill), and the desired-state diff of
program@HEAD + current config against program@commit + that version's config, under Pulumi's mocks.

A real git repository whose history has two program versions: a changed property in infra/cdn.py."""

from __future__ import annotations

import shutil
import subprocess
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
from tests.stack.backend_fixtures import REPO_ROOT


@dataclass
class Repo:
    path: Path
    old: str  # the commit whose cdn.py serves http2and3
    new: str  # HEAD: http2 only

    @property
    def git(self) -> GitRepo:
        return GitRepo(self.path)


def _git(path: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin", "HOME": str(path)}
    return subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO_ROOT / "infra", root / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "stacks", root / "stacks")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "program v1")
    old = _git(root, "rev-parse", "HEAD")
    cdn = root / "infra" / "cdn.py"
    cdn.write_text(cdn.read_text().replace('http_version="http2and3"', 'http_version="http2"'))
    _git(root, "commit", "-q", "-am", "cdn: http2 only")
    return Repo(root, old, _git(root, "rev-parse", "HEAD"))


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
