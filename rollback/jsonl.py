"""The append-only JSON-lines files: the run journal and the incident record.

Both are written one whole line at a time and fsynced (:func:`append_line`; :mod:`rollback.journal`
and :mod:`rollback.model.incident` say when a failed write stops a command), so the only damage a crash
leaves is a torn line (most often the last). The reader (:func:`read_json_lines`) skips blank lines and
counts a line that does not parse as torn; what an entry must hold is the caller's business.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.safetext import dumps

__all__ = ["JsonLines", "append_line", "parse_json_lines", "read_json_lines"]


def append_line(fd: int, entry: Mapping[str, Any], *, after_torn: bool = False) -> None:
    """Write ``entry`` as one line to ``fd`` (opened with ``O_APPEND``) and fsync it; raises ``OSError``.

    One ``write()`` of the whole line: ``O_APPEND`` keeps lines whole between processes. A short write
    (a disk filling up) is finished by a second one; if that fails the line is torn, which the reader
    counts and skips. ``after_torn`` (the previous line may be torn) starts this one on a line of its own.
    """
    data = (("\n" if after_torn else "") + dumps(entry, indent=None) + "\n").encode("utf-8", errors="backslashreplace")
    written = os.write(fd, data)
    if written < len(data):
        os.write(fd, data[written:])
    os.fsync(fd)


@dataclass
class JsonLines:
    """The parsed lines of one file, each with its line number (from 1), and how many were torn."""

    lines: list[tuple[int, Any]] = field(default_factory=list)
    torn: int = 0


def read_json_lines(path: Path) -> JsonLines:
    """Every non-blank line of ``path`` parsed as JSON (any JSON value: the caller checks the shape).

    A line that is not JSON (a crash mid-write, bytes that are not UTF-8, a 5,000-deep nesting) is
    counted in :attr:`JsonLines.torn`, never fatal. Raises ``OSError`` when the file cannot be read
    at all (a directory, a dangling symlink...).
    """
    with path.open("rb") as handle:
        return parse_json_lines(handle)


def parse_json_lines(lines: Iterable[bytes]) -> JsonLines:
    """:func:`read_json_lines` of lines already in hand (a copy fetched from the team's S3 prefix)."""
    read = JsonLines()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            read.lines.append((number, json.loads(raw)))
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
            read.torn += 1
    return read
