"""The Pulumi program of an earlier stack version, checked out beside the repository.

Every update records the commit it ran from (``environment["git.head"]``, and
``git.dirty`` when the tree had uncommitted changes). :func:`program_source`
reads that; :func:`checkout` makes a detached ``git worktree`` of the commit
under ``<root>/.rollback/worktrees/`` and yields the project directory inside
it (where ``Pulumi.yaml`` is), and removes the worktree afterwards, also after
a failure or an interrupt. A worktree left by a killed run is removed by the
next checkout of the same repository (:func:`remove_stale`).

The virtualenv ``Pulumi.yaml`` names (``runtime.options.virtualenv``, ``.venv``)
is a link in the worktree: to the environment built for that commit's
``requirements.txt`` (:mod:`rollback.adapters.program_venv`) when the caller
gives one, else to the project's own (today's dependencies, ``--with-current-deps``);
:attr:`Checkout.requirements_differ` says when that commit pinned other ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.adapters.git import GitRepo
from rollback.errors import BadInput, UnsafePrecondition

__all__ = ["Checkout", "ProgramSource", "checkout", "program_changes", "program_paths", "program_source",
           "project_in_repo", "remove_stale", "require_program", "virtualenv_name", "worktree_path", "worktrees_dir"]

WORKTREES = ".rollback/worktrees"


@dataclass(frozen=True)
class ProgramSource:
    """Where a stack version's program came from."""

    version: int
    commit: str | None
    dirty: bool

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "commit": self.commit, "dirty": self.dirty}


def program_source(version: int, environment: Mapping[str, str]) -> ProgramSource:
    commit = (environment.get("git.head") or "").strip() or None
    dirty = (environment.get("git.dirty") or "").strip().lower() == "true"
    return ProgramSource(version, commit, dirty)


@dataclass(frozen=True)
class Checkout:
    """A worktree of ``commit``: ``project_dir`` is where its Pulumi.yaml is."""

    commit: str
    worktree: Path
    project_dir: Path
    changed_files: tuple[str, ...]  # program files that differ from HEAD
    requirements_differ: bool


def worktrees_dir(root: Path) -> Path:
    return root / WORKTREES


def require_program(repo: GitRepo, source: ProgramSource) -> str:
    """The commit to check out; refuses a version without one, from a dirty tree, or unknown here."""
    if source.commit is None:
        raise UnsafePrecondition(
            f"version {source.version} does not record the commit it ran from (no git.head in its environment)",
            "preview it with today's program: add --config-only")
    if source.dirty:
        raise UnsafePrecondition(
            f"version {source.version} ran from commit {source.commit[:12]} with uncommitted changes (git.dirty): "
            "its program is not in the repository",
            "preview it with today's program (--config-only), or with that commit's program as committed: "
            "there is no other copy of what ran")
    if not repo.has_commit(source.commit):
        raise UnsafePrecondition(
            f"version {source.version} ran from commit {source.commit[:12]}, which this repository does not have",
            f"fetch it ('git fetch origin {source.commit}'), or preview with today's program: --config-only")
    return source.commit


def remove_stale(repo: GitRepo, root: Path) -> list[Path]:
    """Remove worktrees a killed run left under ``<root>/.rollback/worktrees`` (and git's records of them)."""
    base = worktrees_dir(root).resolve()
    removed: list[Path] = []
    registered = {path.resolve() for path in repo.worktrees()}
    leftovers = set(base.iterdir()) if base.is_dir() else set()
    for path in sorted({p for p in registered if base in p.parents} | {p.resolve() for p in leftovers}):
        repo.remove_worktree(path)
        removed.append(path)
    return removed


def project_in_repo(repo: GitRepo, project_dir: Path) -> Path:
    """``project_dir`` relative to the repository's top level (BadInput when it is outside)."""
    top = repo.toplevel().resolve()
    try:
        return project_dir.resolve().relative_to(top)
    except ValueError as exc:
        raise BadInput(f"the Pulumi project {project_dir} is not inside the git repository {top}",
                       "run from the repository that holds the program, or use --config-only") from exc


def program_paths(relative: Path) -> list[str]:
    """What "the program" is, for comparing commits: infra/ and Pulumi.yaml of the project."""
    base = "" if str(relative) == "." else f"{relative}/"
    return [f"{base}infra", f"{base}Pulumi.yaml"]


def program_changes(repo: GitRepo, commit: str, project_dir: Path) -> list[str]:
    """The program files that differ between ``commit`` and the work tree (what runs today)."""
    return repo.changed_files(commit, None, program_paths(project_in_repo(repo, project_dir)))


def worktree_path(commit: str, project_dir: Path, root: Path) -> Path:
    """Where :func:`checkout` puts the worktree of ``commit`` (the same path each time)."""
    name = f"{commit[:12]}-{hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:8]}"
    return worktrees_dir(root) / name


@contextmanager
def checkout(repo: GitRepo, commit: str, *, project_dir: Path, root: Path,
             virtualenv: Callable[[Path], Path | None] | None = None) -> Iterator[Checkout]:
    """A worktree of ``commit`` for the project in ``project_dir`` (a directory of ``repo``); removed on exit.

    ``virtualenv(project dir in the worktree)`` gives the environment to link as the project's virtualenv
    (``None``, or no callback: the project's own)."""
    relative = project_in_repo(repo, project_dir)
    remove_stale(repo, root)
    path = worktree_path(commit, project_dir, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        repo.add_worktree(commit, path)
        inner = path / relative
        if not (inner / "Pulumi.yaml").is_file() and not (inner / "Pulumi.yml").is_file():
            raise UnsafePrecondition(f"commit {commit[:12]} has no Pulumi project at {relative or '.'}",
                                     "that version's program is elsewhere; preview with --config-only")
        own = virtualenv(inner) if virtualenv is not None else None
        if own is not None:
            _link(own, inner / virtualenv_name(inner))
        else:
            _link_virtualenv(project_dir, inner)
        changed = tuple(repo.changed_files(commit, None, program_paths(relative)))
        requirements = [f for f in changed if f.endswith("requirements.txt")]
        yield Checkout(commit, path, inner, changed, bool(requirements))
    finally:
        repo.remove_worktree(path)


def virtualenv_name(project: Path) -> str:
    """``runtime.options.virtualenv`` of the ``Pulumi.yaml`` in ``project`` (``.venv`` when it names none)."""
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        path = project / name
        if path.is_file():
            from ruamel.yaml import YAML  # lazily: not needed by 'rollback --help'

            document = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
            runtime = document.get("runtime") if isinstance(document, dict) else None
            options = runtime.get("options") if isinstance(runtime, dict) else None
            if isinstance(options, dict) and options.get("virtualenv"):
                return str(options["virtualenv"])
    return ".venv"


def _link(source: Path, target: Path) -> None:
    if target.is_symlink() or target.exists():
        raise UnsafePrecondition(f"{target} is in that commit's tree: its virtualenv cannot be linked there",
                                 "run with today's .venv: --with-current-deps")
    target.symlink_to(source.resolve(), target_is_directory=True)


def _link_virtualenv(project_dir: Path, inner: Path) -> None:
    """The project's virtualenv (Pulumi.yaml's ``virtualenv: .venv`` by convention), linked, not copied."""
    for name in (".venv", "venv"):
        source = project_dir / name
        target = inner / name
        if source.is_dir() and not target.exists():
            target.symlink_to(source.resolve(), target_is_directory=True)
