"""``rollback app revert`` against a real temporary git repository with a bare
remote whose post-receive hook asks the emulator for a production deployment,
as Vercel's git integration does on a push."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.adapters.git import GitRepo
from rollback.commands.app import handlers as app_handlers
from rollback.config import load_config
from rollback.context import Services
from rollback.errors import BadInput, OperationFailed, UnsafePrecondition
from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO, FaultRule
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]

HOOK = """#!{python}
import json, os, sys, urllib.request
for line in sys.stdin:
    old, new, ref = line.split()
    if ref != "refs/heads/main":
        continue
    body = {{"project": "demo", "sha": new, "ready_after": 0.2,
             "healthy": os.environ.get("EMULATOR_DEPLOY_HEALTHY", "1") == "1"}}
    request = urllib.request.Request("{url}/_admin/deployments", data=json.dumps(body).encode(),
                                     headers={{"Content-Type": "application/json"}}, method="POST")
    urllib.request.urlopen(request, timeout=5).read()
"""


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, emulator: VercelEmulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work tree on main with three commits, pushed to a bare 'origin' whose hook deploys."""
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@example.com"}.items():
        monkeypatch.setenv(key, value)
    remote = tmp_path / "origin.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "--bare", "-b", "main", str(remote))
    hook = remote / "hooks" / "post-receive"
    hook.write_text(HOOK.format(python=sys.executable, url=emulator.url))
    hook.chmod(0o755)
    git(tmp_path, "init", "-b", "main", str(work))
    for number, text in enumerate(["hello", "feature", "bug"], start=1):
        (work / f"file{number}.txt").write_text(text + "\n")
        git(work, "add", ".")
        git(work, "commit", "-m", f"commit {number}: {text}")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-q", "origin", "main")
    return work


def live_sha(emulator: VercelEmulator) -> str:
    project = emulator.state.project(DEMO.project_id)
    return emulator.state.deployments[project.production_id or ""].sha


def test_revert_push_wait_and_check_health(run_cli: RunCli, app_env: Path, repo: Path,
                                           emulator: VercelEmulator) -> None:
    bad = git(repo, "rev-parse", "HEAD")
    result = run_cli("app", "revert", bad, "--push", "--wait", "--timeout", "20s", "--yes", "--repo", str(repo))
    assert result.code == 0, result.err
    head = git(repo, "rev-parse", "HEAD")
    assert head != bad
    assert git(repo, "log", "-1", "--format=%s").startswith('Revert "commit 3: bug"')
    assert not (repo / "file3.txt").exists()
    assert git(repo.parent / "origin.git", "rev-parse", "main") == head
    assert live_sha(emulator) == head
    assert "health: 3 check(s) passed" in result.out
    assert "version /api/version: reports" in result.err
    journal = "".join(p.read_text() for p in app_env.glob("*.jsonl"))
    assert '"git-revert"' in journal and '"wait-deploy"' in journal and '"health"' in journal


def test_revert_a_range_without_push(run_cli: RunCli, app_env: Path, repo: Path) -> None:
    first = git(repo, "rev-list", "--max-parents=0", "HEAD")
    result = run_cli("app", "revert", f"{first}..HEAD", "--repo", str(repo), "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert len(doc["commits"]) == 2
    assert git(repo, "rev-list", "--count", "HEAD") == "5"
    assert sorted(p.name for p in repo.glob("*.txt")) == ["file1.txt"]
    assert git(repo.parent / "origin.git", "rev-list", "--count", "main") == "3"  # not pushed


def test_a_dirty_work_tree_is_refused(run_cli: RunCli, app_env: Path, repo: Path) -> None:
    (repo / "file1.txt").write_text("local edit\n")
    head = git(repo, "rev-parse", "HEAD")
    result = run_cli("app", "revert", "HEAD", "--repo", str(repo))
    assert result.code == 4
    assert "uncommitted changes (file1.txt)" in result.err
    assert git(repo, "rev-parse", "HEAD") == head


def test_untracked_files_do_not_block(repo: Path) -> None:
    (repo / "notes.tmp").write_text("scratch\n")
    GitRepo(repo).require_clean()


def test_unknown_commit_exits_2(run_cli: RunCli, app_env: Path, repo: Path) -> None:
    result = run_cli("app", "revert", "deadbeef", "--repo", str(repo))
    assert result.code == 2
    assert result.err.strip().splitlines() == [result.err.strip()]
    assert "no commit 'deadbeef'" in result.err


def test_option_like_revisions_are_rejected(repo: Path) -> None:
    with pytest.raises(BadInput):
        GitRepo(repo).resolve("--exec=sh")
    with pytest.raises(BadInput):
        GitRepo(repo).push("origin", "--force")


def test_wait_needs_push(run_cli: RunCli, app_env: Path, repo: Path) -> None:
    result = run_cli("app", "revert", "HEAD", "--wait", "--repo", str(repo))
    assert result.code == 2 and "--push" in result.err


def test_dry_run_changes_nothing(run_cli: RunCli, app_env: Path, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    result = run_cli("app", "revert", "HEAD", "--push", "--wait", "--dry-run", "--repo", str(repo))
    assert result.code == 0, result.err
    assert "would: git revert --no-edit HEAD" in result.out and "would: git push origin HEAD:main" in result.out
    assert git(repo, "rev-parse", "HEAD") == head
    assert not list(app_env.glob("*.jsonl"))


def test_push_without_yes_and_terminal_is_refused(run_cli: RunCli, app_env: Path, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert run_cli("app", "revert", "HEAD", "--push", "--repo", str(repo)).code == 4
    assert git(repo, "rev-parse", "HEAD") == head


def test_a_conflicting_revert_is_aborted(run_cli: RunCli, app_env: Path, repo: Path) -> None:
    target = git(repo, "rev-parse", "HEAD~1")  # adds file2.txt
    (repo / "file2.txt").write_text("changed later\n")
    git(repo, "commit", "-am", "edit file2")
    result = run_cli("app", "revert", target, "--repo", str(repo))
    assert result.code == 1
    assert "aborted" in result.err
    assert git(repo, "status", "--porcelain") == ""


def test_failing_health_checks_exit_3(run_cli: RunCli, app_env: Path, repo: Path, emulator: VercelEmulator,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULATOR_DEPLOY_HEALTHY", "0")
    result = run_cli("app", "revert", "HEAD", "--push", "--wait", "--timeout", "20s", "--yes", "--repo", str(repo))
    assert result.code == 3, result.err
    assert "health check(s) failed" in result.err.strip().splitlines()[-1]
    assert live_sha(emulator) == git(repo, "rev-parse", "HEAD")


def test_a_rollback_in_effect_keeps_the_revert_from_going_live(run_cli: RunCli, app_env: Path, repo: Path,
                                                               emulator: VercelEmulator) -> None:
    # The fixture's first push deploys the repo's HEAD (ready after 0.2 s): let it go live first, so that the
    # deployment read here is the one the rollback replaces (on a loaded machine it can take a while).
    deadline = time.monotonic() + 15
    while live_sha(emulator) != git(repo, "rev-parse", "HEAD") and time.monotonic() < deadline:
        time.sleep(0.05)
    before = emulator.state.project(DEMO.project_id).production_id
    assert run_cli("app", "rollback", "--yes").code == 0
    replaced = emulator.state.project(DEMO.project_id).last_alias_request
    assert replaced is not None
    head = git(repo, "rev-parse", "HEAD")
    result = run_cli("app", "revert", "HEAD", "--push", "--wait", "--timeout", "20s", "--yes", "--repo", str(repo))
    assert result.code == 4, result.err
    last = result.err.strip().splitlines()[-1]
    assert before and replaced["fromDeploymentId"] == before
    assert "rollback app undo" in last and before in last and "nothing was changed" in last
    assert git(repo, "rev-parse", "HEAD") == head  # refused before any git step
    assert git(repo.parent / "origin.git", "rev-parse", "main") == head


def test_a_rollback_that_starts_after_the_push_fails_the_wait(app_env: Path, repo: Path, client: Any,
                                                              emulator: VercelEmulator) -> None:
    from rollback.commands.app import plan as commands

    config = load_config()
    gitrepo = GitRepo(repo)
    planned = commands.plan_revert(config, gitrepo, "HEAD", push=True, wait=True, timeout=20,
                                   project=commands.project_of(config, client))
    emulator.state.request_alias_job(DEMO.project_id, DEMO.previous, "rollback")  # someone rolls back meanwhile
    with pytest.raises(OperationFailed) as info:
        app_handlers.apply(planned, app_handlers.handlers(Services(config, vercel=client, git=gitrepo)))
    assert type(info.value) is OperationFailed and info.value.exit_code == 1
    assert "rollback app promote dpl_" in info.value.one_line()


def test_a_transient_read_error_while_waiting_for_the_deploy_keeps_waiting(app_env: Path, repo: Path, client: Any,
                                                                           emulator: VercelEmulator) -> None:
    from rollback.commands.app import plan as commands

    config = load_config()
    gitrepo = GitRepo(repo)
    planned = commands.plan_revert(config, gitrepo, "HEAD", push=True, wait=True, timeout=20,
                                   project=commands.project_of(config, client))
    hook = repo.parent / "origin.git" / "hooks" / "post-receive"  # a slower build: the wait must list deployments
    hook.write_text(hook.read_text().replace('"ready_after": 0.2', '"ready_after": 1.0'))
    for path in ("^/v9/projects", "^/v6/deployments"):  # each fails for a whole retry budget once
        emulator.state.add_fault(FaultRule(method="GET", path=path, status=503, times=client.max_attempts))
    notes: list[str] = []
    app_handlers.apply(planned, app_handlers.handlers(Services(config, vercel=client, git=gitrepo)),
                   progress=notes.append)
    assert live_sha(emulator) == git(repo, "rev-parse", "HEAD")
    assert sum("status failed" in note and "still waiting" in note for note in notes) == 2, notes


def finish_builds(emulator: VercelEmulator) -> None:
    """Every BUILDING deployment of the emulator is ready at its next read."""
    with emulator.state.lock:
        for deployment in emulator.state.deployments.values():
            if deployment.state == "BUILDING":
                deployment.ready_after = 0.0


def test_a_slow_build_says_it_is_still_waiting(app_env: Path, repo: Path, client: Any, emulator: VercelEmulator,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from rollback.commands.app import handlers as app_handlers
    from rollback.commands.app import plan as commands

    monkeypatch.setattr(app_handlers, "WAIT_NOTE_SECONDS", 0.3)  # every 10 s in real life
    config = load_config()
    gitrepo = GitRepo(repo)
    planned = commands.plan_revert(config, gitrepo, "HEAD", push=True, wait=True, timeout=20,
                                   project=commands.project_of(config, client))
    hook = repo.parent / "origin.git" / "hooks" / "post-receive"
    hook.write_text(hook.read_text().replace('"ready_after": 0.2', '"ready_after": 600'))
    notes: list[str] = []

    def progress(line: str) -> None:
        notes.append(line)
        if sum(1 for note in notes if note.startswith("still waiting for ")) == 2:
            finish_builds(emulator)  # the build ends after the second "still waiting" line, however slow we are

    app_handlers.apply(planned, app_handlers.handlers(Services(config, vercel=client, git=gitrepo)),
                   progress=progress)
    head = git(repo, "rev-parse", "HEAD")
    assert live_sha(emulator) == head
    waiting = [note for note in notes if note.startswith(f"still waiting for {head[:12]} to serve production")]
    assert len(waiting) >= 2, notes
    assert "BUILDING" in waiting[-1]


def test_apply_reverts_the_planned_commits_not_a_fresh_reading(app_env: Path, repo: Path) -> None:
    from rollback.commands.app import plan as commands

    gitrepo = GitRepo(repo)
    bad = gitrepo.head()
    planned = commands.plan_revert(load_config(), gitrepo, "HEAD")
    (repo / "file4.txt").write_text("later\n")  # HEAD moves between plan and apply
    git(repo, "add", ".")
    git(repo, "commit", "-m", "commit 4: later")
    document = app_handlers.apply(planned, app_handlers.handlers(Services(load_config(), git=gitrepo)))
    assert document["steps"][0]["result"]["reverted"] == [bad]
    assert (repo / "file4.txt").exists() and not (repo / "file3.txt").exists()


def test_a_failed_push_says_the_revert_is_committed_locally(run_cli: RunCli, app_env: Path, repo: Path) -> None:
    before = git(repo, "rev-parse", "HEAD")
    git(repo, "remote", "add", "broken", str(repo.parent / "does-not-exist.git"))
    result = run_cli("app", "revert", "HEAD", "--push", "--remote", "broken", "--yes", "--repo", str(repo))
    assert result.code == 1, result.err
    head = git(repo, "rev-parse", "HEAD")
    assert head != before
    last = result.err.strip().splitlines()[-1]
    assert "work tree is unchanged" not in last
    assert f"committed locally as HEAD {head[:12]}" in last
    assert "git push broken HEAD:main" in last and f"git reset --hard {before[:12]}" in last


def test_git_repo_adapter_revert_result(repo: Path) -> None:
    gitrepo = GitRepo(repo)
    before = gitrepo.head()
    result = gitrepo.revert(gitrepo.commits_in("HEAD"))
    assert result.previous_head == before and result.reverted == (before,)
    assert gitrepo.head() == result.head
    (repo / "file1.txt").write_text("dirty\n")
    with pytest.raises(UnsafePrecondition):
        gitrepo.require_clean()


def test_wait_checks_the_token_before_changing_anything(run_cli: RunCli, app_env: Path, repo: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERCEL_TOKEN")
    head = git(repo, "rev-parse", "HEAD")
    result = run_cli("app", "revert", "HEAD", "--push", "--wait", "--yes", "--repo", str(repo))
    assert result.code == 2 and "VERCEL_TOKEN" in result.err
    assert git(repo, "rev-parse", "HEAD") == head
