"""The Pulumi project (``Pulumi.yaml``) and stack names as Pulumi spells them.

A stack is named ``stack``, ``project/stack`` or ``organization/project/stack``
(self-managed backends have the one organization ``organization``). The
project is the ``name`` in ``Pulumi.yaml`` unless ``pulumi.project`` says
otherwise; a stack name whose project part disagrees is bad input, as it is for
the Pulumi CLI. ``Pulumi.<stack>.yaml`` and the program's ``pulumi.get_stack()``
use the short name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.errors import BadInput

__all__ = ["DIY_ORGANIZATION", "ProjectFile", "StackRef", "read_project_file", "resolve_stack"]

DIY_ORGANIZATION = "organization"


@dataclass(frozen=True)
class ProjectFile:
    path: Path
    name: str | None
    main: str | None
    stack_config_dir: str | None


def read_project_file(project_dir: Path) -> ProjectFile | None:
    """``Pulumi.yaml`` (or ``.yml``) in ``project_dir``, or None when there is none."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    for name in ("Pulumi.yaml", "Pulumi.yml"):
        path = project_dir / name
        if not path.is_file():
            continue
        try:
            document: Any = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
        except (OSError, ValueError, YAMLError) as exc:
            raise BadInput(f"cannot read {path}: {exc}", "fix the file, or check pulumi.project_dir") from exc
        if not isinstance(document, Mapping):
            raise BadInput(f"{path} is not a Pulumi project file (a mapping)", "check pulumi.project_dir")
        return ProjectFile(path, _text(document, "name"), _text(document, "main"), _text(document, "stackConfigDir"))
    return None


def _text(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return str(value) if value not in (None, "") else None


@dataclass(frozen=True)
class StackRef:
    """One stack: ``given`` is what rollback.toml says (passed to the Pulumi CLI as it is)."""

    organization: str | None
    project: str
    name: str
    given: str

    @property
    def qualified(self) -> str:
        return f"{self.organization or DIY_ORGANIZATION}/{self.project}/{self.name}"

    def __str__(self) -> str:
        return self.given


def resolve_stack(stack: str, project_dir: Path, *, project: str | None = None) -> StackRef:
    """``stack`` from rollback.toml, with its project from ``project`` or ``Pulumi.yaml``."""
    parts = stack.split("/")
    organization = parts[0] if len(parts) == 3 else None
    named = parts[-2] if len(parts) >= 2 else None
    file = read_project_file(project_dir)
    from_file = file.name if file is not None else None
    where = str(file.path) if file is not None else f"{project_dir}/Pulumi.yaml"
    if named and project and named != project:
        raise BadInput(f"pulumi.stack {stack!r} names project {named!r} but pulumi.project is {project!r}",
                       "make them agree, or drop pulumi.project (the stack name says it)")
    if named and from_file and named != from_file and not project:
        raise BadInput(f"pulumi.stack {stack!r} names project {named!r} but {where} says name: {from_file}",
                       "use the project of Pulumi.yaml in the stack name, or set pulumi.project_dir to that project")
    resolved = named or project or from_file
    if not resolved:
        raise BadInput(f"cannot tell the Pulumi project of stack {stack!r}: no {where}",
                       'set pulumi.project_dir to the directory of Pulumi.yaml, or write the stack as "project/stack"')
    return StackRef(organization, resolved, parts[-1], stack)
