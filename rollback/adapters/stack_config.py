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

The environment's stack config file (:func:`stack_config_file`) is saved byte for byte before
``rollback infra preview`` rewrites it (:func:`backup_stack_config`) and put back by
``rollback infra config-restore`` (:func:`config_restore`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.adapters.stack_history import project_dir, stack_ref
from rollback.errors import BadInput, OperationFailed, PulumiError, StackConfigError
from rollback.model.stackdiff import ConfigValue, config_value_from_history, diff_config

if TYPE_CHECKING:
    from rollback.config import Config

__all__ = ["StackConfigError", "atomic_write", "backup_dir", "backup_stack_config", "check_config_backup",
           "config_restore", "file_config", "file_digest", "qualify_key", "read_stack_config", "stack_config_file",
           "stack_config_path", "write_file_config", "write_stack_config"]


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


# --------------------------------------------------------------------------- the environment's stack config file


def stack_config_file(config: Config) -> Path:
    """The configured stack's ``Pulumi.<stack>.yaml`` (``stackConfigDir`` honoured)."""
    return stack_config_path(project_dir(config), stack_ref(config).name)


def file_digest(path: Path) -> str | None:
    """SHA-256 of the file's bytes, ``None`` when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    except OSError as exc:
        raise OperationFailed(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from exc


def file_config(path: Path) -> dict[str, ConfigValue]:
    """The ``config:`` of ``Pulumi.<stack>.yaml`` as ConfigValues (secrets as ciphertext)."""
    return {key: config_value_from_history(value) for key, value in read_stack_config(path).items()}


def write_file_config(path: Path, target: Mapping[str, ConfigValue], current: Mapping[str, ConfigValue],
                       project: str | None) -> list[str]:
    """Make the file's config equal ``target``, touching only the keys that differ
    (so comments and order of everything else survive). Returns the keys written."""
    changed = [c.key for c in diff_config(current, target)]
    if not changed:
        return []
    values: dict[str, Any] = {}
    for key in changed:
        value = target.get(key)
        if value is None:
            values[key] = None
        elif value.secret:
            if value.ciphertext is None:
                raise PulumiError(f"cannot write secret {key}: only its plaintext is known",
                                  "pin it through the Pulumi CLI (rollback infra preview without --offline)")
            values[key] = {"secure": value.ciphertext}
        else:
            text = value.value or ""
            parsed = None
            if text[:1] in ("[", "{"):
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
            structured = isinstance(parsed, (list, dict)) and not (current.get(key) and current[key].value == text)
            values[key] = parsed if structured else text
    write_stack_config(path, values, project=project)
    return changed


def backup_dir(config: Config) -> Path:
    """Where ``preview`` saves the stack config before rewriting it."""
    return config.resolve_path(".rollback/stack-config")


def backup_stack_config(config: Config, path: Path | None = None) -> Path:
    """Copy ``Pulumi.<stack>.yaml`` (or ``path``) byte for byte before it is rewritten; returns the backup."""
    path = path or stack_config_file(config)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory = backup_dir(config)
    backup = directory / f"{stack_ref(config).name}-{stamp}.yaml"
    existed = path.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if existed:
            shutil.copy2(path, backup)
        else:
            backup.write_text("", encoding="utf-8")
    except OSError as exc:
        raise OperationFailed(f"cannot save a backup of {path.name} to {directory}: {exc.strerror}",
                              "check that directory's permissions; nothing was changed") from exc
    meta = {"stack": config.require_pulumi().stack, "path": str(path), "existed": existed,
            "sha256": file_digest(path), "saved_at": stamp}
    atomic_write(backup.with_suffix(".json"), json.dumps(meta, indent=2))
    return backup


def check_config_backup(config: Config, backup: Path) -> dict[str, Any]:
    """The metadata ``preview`` saved with a stack config backup; BadInput when ``backup`` is not one."""
    stack = config.require_pulumi().stack
    meta_path = backup.with_suffix(".json")
    pick = f"pick one from {backup_dir(config)}"
    if not backup.is_file() or not meta_path.is_file():
        raise BadInput(f"{backup} is not a stack config backup made by 'rollback infra preview'", pick)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"cannot read {meta_path}, the metadata of backup {backup.name}: {exc.strerror}", pick) from exc
    except ValueError as exc:
        raise BadInput(f"{meta_path}, the metadata of backup {backup.name}, is not valid JSON", pick) from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("path"), str) or not meta["path"]:
        raise BadInput(f"{meta_path}, the metadata of backup {backup.name}, does not name the file it saved", pick)
    if meta.get("stack") != stack:
        raise BadInput(f"{backup} belongs to stack {meta.get('stack')!r}, not {stack!r}",
                       "pass --env for that stack's environment")
    return meta


def config_restore(config: Config, backup: Path) -> dict[str, Any]:
    """Put back the stack config file saved by ``preview`` (undo an abandoned preview).

    The file it overwrites is saved first, so that this restore can be undone in turn.
    """
    meta = check_config_backup(config, backup)
    target = Path(meta["path"])
    text = None
    if meta.get("existed"):
        try:
            text = backup.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise BadInput(f"cannot read backup {backup}: {reason}", f"pick another from {backup_dir(config)}") \
                from exc
    saved = backup_stack_config(config, target)
    if text is not None:
        atomic_write(target, text)
    else:
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise OperationFailed(f"cannot remove {target}: {exc.strerror}", "check the directory's permissions") \
                from exc
    return {"stack": meta["stack"], "restored": str(target), "from": str(backup), "existed": meta.get("existed"),
            "backup": str(saved), "undo": f"rollback infra config-restore {shlex.quote(str(saved))}"}
