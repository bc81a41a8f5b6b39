"""git, run as a subprocess with an argument list (never a shell).

:class:`GitRepo` wraps one work tree: resolve revisions, check that the tree is
clean, ``git revert --no-edit`` a commit or an ``A..B`` range (aborting a
conflicted revert so the tree is left as it was), push. Failures become
:class:`~rollback.errors.OperationFailed` (or :class:`~rollback.errors.BadInput`
for a revision that does not exist) carrying git's own message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rollback.errors import BadInput, OperationFailed, UnsafePrecondition
from rollback.redact import redact_text

__all__ = ["GitRepo", "RevertResult"]

_REVISION = re.compile(r"^[A-Za-z0-9_./@^~{}\-]+$")


@dataclass(frozen=True)
class RevertResult:
    """The commits reverted (oldest first as git applied them) and the new HEAD."""

    reverted: tuple[str, ...]
    head: str
    previous_head: str

    def to_dict(self) -> dict[str, object]:
        return {"reverted": list(self.reverted), "head": self.head, "previous_head": self.previous_head}


@dataclass
class GitRepo:
    """One git work tree. ``git`` is the executable (found on PATH by default)."""

    path: Path
    git: str = field(default_factory=lambda: shutil.which("git") or "git")
    env: Mapping[str, str] | None = None
    timeout: float = 120.0

    def _run(self, *args: str, check: bool = True, what: str | None = None,
             hint: str = "see git's message; the work tree is unchanged") -> subprocess.CompletedProcess[str]:
        environ = dict(os.environ if self.env is None else self.env)
        environ.setdefault("GIT_TERMINAL_PROMPT", "0")
        environ["LC_ALL"] = "C"
        try:
            proc = subprocess.run([self.git, *args], cwd=self.path, env=environ, capture_output=True, text=True,
                                  timeout=self.timeout, stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError as exc:
            raise OperationFailed("git is not installed (or not on PATH)", "install git") from exc
        except subprocess.TimeoutExpired as exc:
            raise OperationFailed(f"git {what or args[0]} timed out after {self.timeout:.0f} s",
                                  f"check the remote and your credentials; {hint}") from exc
        if check and proc.returncode != 0:
            raise OperationFailed(f"git {what or args[0]} failed: {self._first_line(proc)}", hint)
        return proc

    @staticmethod
    def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
        text = (proc.stderr or proc.stdout or "").strip()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        fatal = next((line for line in lines if line.startswith(("fatal:", "error:"))), None)
        return redact_text(fatal or (lines[0] if lines else f"exit {proc.returncode}"))

    def is_repository(self) -> bool:
        proc = self._run("rev-parse", "--is-inside-work-tree", check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def check_repository(self) -> None:
        proc = self._run("rev-parse", "--is-inside-work-tree", check=False)
        if proc.returncode != 0 or proc.stdout.strip() != "true":
            raise BadInput(f"{self.path} is not a git work tree", "run it from your app's repository (or --repo)")

    def resolve(self, revision: str) -> str:
        """The full sha of a commit-ish; BadInput if it does not exist."""
        if not _REVISION.match(revision) or revision.startswith("-"):
            raise BadInput(f"{revision!r} is not a git revision", "give a commit sha, a tag or a branch")
        proc = self._run("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise BadInput(f"no commit {revision!r} in {self.path}", "check 'git log --oneline'")
        return proc.stdout.strip()

    def head(self) -> str:
        return self._run("rev-parse", "HEAD", what="rev-parse HEAD").stdout.strip()

    def current_branch(self) -> str | None:
        proc = self._run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return proc.stdout.strip() or None

    def dirty_files(self) -> list[str]:
        """Tracked files with changes (staged or not); untracked files do not block a revert."""
        proc = self._run("status", "--porcelain", "--untracked-files=no", what="status")
        return [line[3:] for line in proc.stdout.splitlines() if line.strip()]

    def require_clean(self) -> None:
        dirty = self.dirty_files()
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            raise UnsafePrecondition(f"the work tree has uncommitted changes ({shown})",
                                     "commit or stash them first; nothing was changed")

    def commits_in(self, spec: str) -> list[str]:
        """The commits a revert of ``spec`` (one commit or ``A..B``) undoes, newest first."""
        if ".." in spec:
            start, _, end = spec.partition("..")
            if not start or not end or end.startswith("."):
                raise BadInput(f"{spec!r} is not a range", "write it A..B (reverts the commits after A up to B)")
            a, b = self.resolve(start), self.resolve(end)
            proc = self._run("rev-list", f"{a}..{b}", what="rev-list")
            commits = [line for line in proc.stdout.split() if line]
            if not commits:
                raise BadInput(f"the range {spec} holds no commits", "A..B reverts the commits after A up to B")
            return commits
        return [self.resolve(spec)]

    def revert(self, commits: Sequence[str], *, spec: str | None = None) -> RevertResult:
        """``git revert --no-edit`` exactly ``commits`` (newest first, as planned by :meth:`commits_in`);
        a conflict is aborted and reported. ``spec`` only names them in messages."""
        listed = [commits] if isinstance(commits, str) else list(commits)  # one sha is not a list of chars
        if not listed:
            raise BadInput("nothing to revert", "give a commit or a range")
        commits = [self.resolve(c) for c in listed]
        spec = spec or " ".join(c[:12] for c in commits)
        previous = self.head()
        args = ["revert", "--no-edit", *commits]
        proc = self._run(*args, check=False)
        if proc.returncode != 0:
            self._run("revert", "--abort", check=False)
            raise OperationFailed(f"git revert {spec} failed: {self._first_line(proc)}",
                                  "the revert was aborted and the work tree is as it was; revert by hand")
        return RevertResult(reverted=tuple(commits), head=self.head(), previous_head=previous)

    def push(self, remote: str, branch: str, *, previous_head: str | None = None) -> None:
        """``git push REMOTE HEAD:refs/heads/BRANCH``. ``previous_head`` (HEAD before the revert)
        lets a failure say exactly how to drop the local revert."""
        for value, what in ((remote, "remote"), (branch, "branch")):
            if not _REVISION.match(value) or value.startswith("-"):
                raise BadInput(f"{value!r} is not a valid {what} name", f"check --{what}")
        head = self.head()
        reset = (f"'git reset --hard {previous_head[:12]}'" if previous_head
                 else "'git reset --hard' to the commit before it")
        # By now the revert commit exists: "the work tree is unchanged" would be wrong.
        self._run("push", remote, f"HEAD:refs/heads/{branch}", what=f"push {remote} {branch}",
                  hint=f"the revert is committed locally as HEAD {head[:12]} but not pushed: push it by hand "
                       f"with 'git push {remote} HEAD:{branch}', or drop it with {reset}")

    def remotes(self) -> list[str]:
        return self._run("remote", what="remote").stdout.split()

    # --- another commit's files, beside this work tree ---------------------------------------------

    def toplevel(self) -> Path:
        return Path(self._run("rev-parse", "--show-toplevel", what="rev-parse --show-toplevel").stdout.strip())

    def has_commit(self, sha: str) -> bool:
        """Whether ``sha`` names a commit this repository has (never fetches)."""
        if not re.fullmatch(r"[0-9a-fA-F]{7,64}", sha):
            return False
        proc = self._run("cat-file", "-e", f"{sha}^{{commit}}", check=False)
        return proc.returncode == 0

    def show_file(self, sha: str, path: str) -> bytes | None:
        """The content of ``path`` (relative to the top level) at commit ``sha``; ``None`` when it has none."""
        environ = dict(os.environ if self.env is None else self.env)
        environ["LC_ALL"] = "C"
        try:  # bytes as stored: no newline translation, so a digest of them is the file's
            proc = subprocess.run([self.git, "show", f"{sha}:{path}"], cwd=self.path, env=environ,
                                  capture_output=True, timeout=self.timeout, stdin=subprocess.DEVNULL, check=False)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            raise OperationFailed(f"git show {sha[:12]}:{path} failed: {exc}", "check git") from exc
        return proc.stdout if proc.returncode == 0 else None

    def changed_files(self, old: str, new: str | None = None, paths: Sequence[str] = ()) -> list[str]:
        """Files that differ between two commits, or (``new=None``) between ``old`` and the work tree
        (under ``paths`` when given; untracked files are not listed)."""
        revisions = [old] if new is None else [old, new]
        proc = self._run("diff", "--name-only", *revisions, "--", *paths, what="diff --name-only")
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def add_worktree(self, sha: str, path: Path) -> Path:
        """A detached work tree of ``sha`` at ``path`` (which must not exist)."""
        self._run("worktree", "add", "--detach", "--force", str(path), sha, what=f"worktree add {sha[:12]}",
                  hint="nothing else was changed")
        return path

    def remove_worktree(self, path: Path) -> None:
        """Remove a work tree made by :meth:`add_worktree` (also a half-made or stale one) and its record."""
        self._run("worktree", "remove", "--force", "--force", str(path), check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        self._run("worktree", "prune", check=False)

    def worktrees(self) -> list[Path]:
        proc = self._run("worktree", "list", "--porcelain", what="worktree list")
        return [Path(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("worktree ")]
