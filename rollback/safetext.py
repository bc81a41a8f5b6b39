"""Text is text: values from outside are shown, never interpreted.

A ``--reason``, an S3 key, a table name or an API error reaches a terminal, a
log or a JSON document. Two things must never happen on the way:

- a control character (ESC, OSC, BEL, a C1 code such as CSI ``\\x9b``, a bidi
  override) is written raw, where a terminal would act on it: :func:`printable`
  shows each as an escape (``\\x1b``, ``\\u202e``);
- a document printed by ``--json`` holds ``NaN`` or ``Infinity`` (not JSON):
  :func:`dumps` writes strict JSON (``allow_nan=False``), with non-finite numbers
  as ``null``, and escapes the characters above inside strings too.

Rich markup is the third trap; ``rollback.cli.support`` renders cells as
``rich.text.Text`` (never parsed as markup) after :func:`printable`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["dumps", "finite", "printable"]

# C0 controls, DEL, C1 controls, line/paragraph separators, bidi embeddings/overrides/isolates,
# zero-width joiners and the BOM: invisible, or acted on by terminals and editors.
_INVISIBLE = "\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_CONTROL = re.compile(f"[\x00-\x1f{_INVISIBLE}]")
_CONTROL_KEEP_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_INVISIBLE}]")
_IN_JSON = re.compile(f"[{_INVISIBLE}]")


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(value: Any, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with every control or invisible character shown as an escape.

    With ``keep_newlines``, ``\\n`` and ``\\t`` stay as they are (a message of several lines).
    """
    text = value if isinstance(value, str) else str(value)
    pattern = _CONTROL_KEEP_LINES if keep_newlines else _CONTROL
    return pattern.sub(_escape, text)


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (tuples become lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(document: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON for a document we print or store: no NaN/Infinity, unsafe characters escaped."""
    text = json.dumps(finite(document), indent=indent, default=str, ensure_ascii=False, allow_nan=False,
                      sort_keys=sort_keys)
    # Outside strings JSON has only ASCII punctuation, so these can only be inside a string,
    # where \\uXXXX is the same character to any parser.
    return _IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
