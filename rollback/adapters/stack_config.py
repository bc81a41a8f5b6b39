"""Pulumi stack config files (``Pulumi.<stack>.yaml``): read and edit, round-trip.

Both the break-glass edge restore (which pins ``rollback:edgeFunctionVersion``
so that the next ``pulumi up`` keeps the version we rolled back to) and the
stack restore edit these files. Edits go through ruamel.yaml's round-trip mode,
so comments, key order, indentation and quoting of the untouched keys survive;
a value we replace keeps the quoting style it had. New values that YAML would
read as something other than a string (``7``, ``true``) are double-quoted, as
``pulumi config set`` writes them.

The file is replaced atomically (temp file + rename) and keeps its mode, so a
crash never leaves half a stack file behind.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollback.errors import BadInput, StackConfigError

__all__ = ["StackConfigError", "qualify_key", "read_stack_config", "stack_config_path", "write_stack_config"]


def qualify_key(key: str, project: str | None) -> str:
    """``edgeFunctionVersion`` -> ``rollback:edgeFunctionVersion`` (keys with a namespace stay)."""
    if ":" in key or not project:
        return key
    return f"{project}:{key}"


def stack_config_path(project_dir: Path, stack: str) -> Path:
    """Where Pulumi keeps ``Pulumi.<stack>.yaml``: ``stackConfigDir`` from ``Pulumi.yaml``, else the project dir."""
    config_dir = project_dir
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        project_file = project_dir / name
        if project_file.is_file():
            document = _load(project_file)
            if isinstance(document, Mapping) and document.get("stackConfigDir"):
                config_dir = project_dir / str(document["stackConfigDir"])
            break
    return config_dir / f"Pulumi.{stack}.yaml"


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long values (secure blobs, ARNs)
    return yaml


def _load(path: Path) -> Any:
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StackConfigError(f"cannot read {path}: {exc.strerror}", "check the path and its permissions",
                               path=str(path)) from exc
    try:
        return _yaml().load(text)
    except YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise StackConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}",
                               "fix the syntax, then retry", path=str(path)) from exc


def _plain(value: Any) -> Any:
    """ruamel's commented containers and scalar strings -> plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def read_stack_config(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file as plain Python values.

    Secrets stay in their encrypted ``{"secure": "..."}`` form. A missing file
    reads as no config, as Pulumi treats it.
    """
    if not path.exists():
        return {}
    document = _load(path)
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise StackConfigError(f"{path}: expected a mapping at the top level", path=str(path))
    config = document.get("config")
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise StackConfigError(f"{path}: 'config' must be a mapping", path=str(path))
    result = _plain(config)
    assert isinstance(result, dict)
    return result


def _needs_quotes(yaml: Any, value: str) -> bool:
    from ruamel.yaml.nodes import ScalarNode

    tag = yaml.resolver.resolve(ScalarNode, value, (True, False))
    return str(tag) != "tag:yaml.org,2002:str"


def _styled(yaml: Any, old: Any, value: str) -> Any:
    from ruamel.yaml.scalarstring import (
        DoubleQuotedScalarString,
        LiteralScalarString,
        SingleQuotedScalarString,
    )

    for style in (DoubleQuotedScalarString, SingleQuotedScalarString):
        if isinstance(old, style):
            return style(value)
    if isinstance(old, LiteralScalarString) and "\n" in value:
        return LiteralScalarString(value)
    if _needs_quotes(yaml, value) or value == "":
        return DoubleQuotedScalarString(value)
    return value


def _remove(config: Any, key: str) -> None:
    """Delete ``key``, keeping full-line comments that followed it (ruamel attaches them to it)."""
    keys = list(config.keys())
    index = keys.index(key)
    token = config.ca.items.get(key, [None, None, None, None])
    trailing = token[2] if len(token) > 2 else None
    config.pop(key)
    if trailing is None or index == 0:
        return
    text = str(trailing.value)
    newline = text.find("\n")
    rest = text[newline + 1:] if newline >= 0 else ""
    if not rest.strip():
        return
    from ruamel.yaml.tokens import CommentToken

    previous = keys[index - 1]
    slot = config.ca.items.setdefault(previous, [None, None, None, None])
    while len(slot) < 4:
        slot.append(None)
    if slot[2] is None:
        slot[2] = CommentToken("\n" + rest, trailing.start_mark, None)
    else:
        slot[2].value = str(slot[2].value) + rest


def write_stack_config(path: Path, values: Mapping[str, Any], *, project: str | None = None) -> dict[str, Any]:
    """Set or remove (``None``) keys under ``config:`` and save, keeping everything else.

    A value is a ``str`` (written in the style the key already had), or a
    mapping or list for structured values (``{"secure": "<ciphertext>"}`` for a
    secret, objects and lists as Pulumi stores them). Keys without a namespace
    are qualified with ``project`` when given. Creates the file (with just
    ``config:``) when it does not exist. Returns the resulting ``config:``
    mapping as plain values.
    """
    from ruamel.yaml.comments import CommentedMap

    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise BadInput(f"invalid stack config key {key!r}")
        if value is not None and not isinstance(value, (str, Mapping, list)):
            raise BadInput(f"stack config value for {key} must be a string, a mapping or a list, "
                           f"got {type(value).__name__}")
    yaml = _yaml()
    if path.exists():
        document = _load(path)  # raises a clear StackConfigError on broken YAML
        mapping, sequence, offset = _guess_indent(path.read_text(encoding="utf-8"))
        yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    else:
        document = None
        yaml.indent(mapping=2, sequence=4, offset=2)
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        raise StackConfigError(f"{path}: expected a mapping at the top level", path=str(path))
    config = document.get("config")
    if config is None:
        config = CommentedMap()
        document["config"] = config
    if not isinstance(config, CommentedMap):
        raise StackConfigError(f"{path}: 'config' must be a mapping", path=str(path))
    for raw_key, value in values.items():
        key = qualify_key(raw_key, project)
        if value is None:
            if key in config:
                _remove(config, key)
        elif isinstance(value, str):
            config[key] = _styled(yaml, config.get(key), value)
        else:
            config[key] = value
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    atomic_write(path, buffer.getvalue())
    result = _plain(config)
    assert isinstance(result, dict)
    return result


def _guess_indent(text: str) -> tuple[int, int, int]:
    """``(mapping, sequence, offset)`` indentation as the file already uses it (Pulumi's: 2, 4, 2)."""
    mapping: int | None = None
    sequence: tuple[int, int] | None = None
    parent: int | None = None  # column of the last key that opened a block
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        column = len(line) - len(stripped)
        if parent is not None and stripped.startswith("-") and column >= parent and sequence is None:
            content = len(stripped) - len(stripped[1:].lstrip(" ")) + column
            sequence = (content - parent, column - parent)
        elif parent is not None and column > parent and mapping is None:
            mapping = column - parent
        body = stripped[1:].lstrip(" ") if stripped.startswith("-") else stripped
        opens = body.split(" #")[0].rstrip().endswith(":")
        parent = (column + len(stripped) - len(body)) if opens else None
        if mapping is not None and sequence is not None:
            break
    mapping = mapping or 2
    seq, offset = sequence or (mapping + 2, mapping)
    return mapping, max(seq, offset + 2), offset


def atomic_write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StackConfigError(f"cannot write {path}: {exc.strerror}", "check the directory's permissions",
                               path=str(path)) from exc
