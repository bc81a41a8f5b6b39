"""Keep secrets out of everything we write or print.

Secrets reach us only through the environment (``VERCEL_TOKEN``, the database
URL variable, the AWS credential chain). Before any text or structure is
printed, journaled or put in a report, it passes through :func:`redact`, which
removes:

- every registered secret value, in the spellings it can take in text (as is,
  percent-encoded or decoded, escaped inside JSON, a ``repr`` or a libpq
  conninfo string). The environment's secrets are registered by default, and
  adapters register what they read, e.g. a database URL's password;
- passwords inside URLs (``postgresql://user:pw@host`` -> ``postgresql://user:***@host``),
  including passwords with an unencoded ``/`` or ``@`` (everything between the
  user name and the last ``@`` of the URL is masked);
- ``Authorization`` header values, ``Bearer`` tokens and ``token=`` style
  query parameters; ``password=...`` pairs, quoted or not (libpq's key=value
  form), and ``"password": "..."`` pairs in JSON text;
- values under keys whose name says they are secret (``token``, ``password``...).

Redaction is linear in the size of the text (no pattern can backtrack
quadratically; ``bench/redact.py`` prints the figures) and scans at most
:data:`MAX_SCAN` characters of one text: whatever lies beyond is dropped and
replaced by a marker, never passed through unredacted.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

__all__ = ["MASK", "MAX_SCAN", "is_secret_key", "redact", "redact_text", "register_secret"]

MASK = "***"
# Characters of one text that are scanned for secrets; the rest is cut off with a marker.
MAX_SCAN = 1 << 20
TRUNCATED = "[... {count} more characters not shown: too long to check for secrets]"
# Shorter values are not masked as registered secrets: masking every "abc" would do more harm than good.
MIN_SECRET = 4

# Variables whose values are secrets wherever they appear.
SECRET_ENV_VARS = (
    "VERCEL_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
    "PGPASSWORD",
)

_SECRET_KEY = re.compile(
    r"(^|[_\-.])(token|password|passwd|pwd|secret|passphrase|authorization|api[_\-]?key|"
    r"access[_\-]?key|private[_\-]?key|credentials?)($|[_\-.])",
    re.IGNORECASE,
)

# Every pattern below starts with a literal word, so the engine only ever tries a match where
# that word stands, and every repetition in it is over a class the next token cannot start with:
# no input makes one of them backtrack (linear time; see bench/redact.py).
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?[ \t]*[:=][ \t]*[\"']?)(bearer[ \t]+|basic[ \t]+|token[ \t]+)?"
                          r"[^\s\"',}]+")
_BEARER = re.compile(r"(?i)\b(bearer)[ \t]+[A-Za-z0-9._~+/=\-]{8,}")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:token|access_token|password|secret|api_key|apikey)=)[^&\s\"']+")
# libpq's key=value form: password=bare, password = 'quoted \' value' (an unterminated quote runs to the end).
_KV_SECRET = re.compile(r"(?i)\b(password|passwd|pgpassword|token|secret)([ \t]*=[ \t]*)"
                        r"(?:'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&\"',;]+)", re.DOTALL)
_JSON_SECRET = re.compile(r"(?i)(\"(?:password|passwd|pgpassword|token|secret|access_token|api_key|apikey)"
                          r"\"[ \t]*:[ \t]*)\"(?:[^\"\\]|\\.)*\"?", re.DOTALL)
# Where a URL ends in running text.
_URL_END = re.compile(r"[\s\"'<>`]")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_MAX_SCHEME = 32
# Cheap tests that let a text skip the patterns that cannot match it.
_KEYWORDS = ("authoriz", "bearer", "token", "pass", "secret", "api")

_lock = threading.Lock()
_registered: set[str] = set()
_ordered: tuple[str, ...] = ()


def _spellings(value: str) -> set[str]:
    """The ways ``value`` can be written in text we print: as is, URL-encoded or decoded,
    escaped inside JSON or a Python ``repr``, and quoted in a libpq conninfo string."""
    forms = {value, unquote(value), quote(value, safe=""), quote(value), json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
             value.replace("\\", "\\\\").replace("'", "\\'")}
    return {form for form in forms if len(form) >= MIN_SECRET}


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it appears.

    Short values are ignored: masking every ``a`` in a text would do more harm
    than good, and real tokens and passwords are longer.
    """
    global _ordered
    if not value or len(value) < MIN_SECRET:
        return
    forms = _spellings(value)
    with _lock:
        if forms <= _registered:
            return
        _registered.update(forms)
        # Longest first, so that a secret containing another is masked whole.
        _ordered = tuple(sorted(_registered, key=len, reverse=True))


def _known_secrets(extra: Iterable[str]) -> list[str]:
    values = list(_ordered)
    more: set[str] = set()
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= MIN_SECRET:
            more |= _spellings(value)
    for value in extra:
        if value and len(value) >= MIN_SECRET:
            more |= _spellings(value)
    if more:
        values = sorted(set(values) | more, key=len, reverse=True)
    return values


def is_secret_key(key: str) -> bool:
    """True when a mapping key's name says its value is a secret."""
    return bool(_SECRET_KEY.search(key))


def _mask_url_passwords(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host``, in one pass.

    The password is everything between the first ``:`` after ``//`` and the
    *last* ``@`` of the URL, so an unencoded ``/`` or ``@`` in it (which libpq
    and urllib would read as the end of the password) is masked whole. A URL
    with an ``@`` in its path and a port may lose more than its password to the
    mask: shown too little beats shown a secret.
    """
    found = text.find("://")
    if found == -1:
        return text
    out: list[str] = []
    pos = 0
    while found != -1:
        start = found + 3
        scheme = found
        while scheme > max(pos, found - _MAX_SCHEME) and text[scheme - 1] in _SCHEME_CHARS:
            scheme -= 1
        end_match = _URL_END.search(text, start)
        end = end_match.start() if end_match else len(text)
        if scheme < found:
            at = text.rfind("@", start, end)
            colon = text.find(":", start, at) if at != -1 else -1
            if colon != -1 and text[colon + 1:at] != MASK:
                out.append(text[pos:colon + 1])
                out.append(MASK)
                pos = at
        # The rest of this URL is done: continue after it (each character is looked at a bounded
        # number of times, whatever the text).
        found = text.find("://", max(end, start))
    out.append(text[pos:])
    return "".join(out)


def _limit(text: str) -> str:
    """At most MAX_SCAN characters; the token cut in two is dropped too (it may be part of a secret)."""
    if len(text) <= MAX_SCAN:
        return text
    head = text[:MAX_SCAN]
    parts = head.rsplit(None, 1)
    head = parts[0] + " " if len(parts) == 2 else ""
    return head + TRUNCATED.format(count=len(text) - len(head))


def redact_text(text: str, extra: Iterable[str] = ()) -> str:
    """Return ``text`` with every secret we know of or can recognise masked.

    Linear in ``len(text)``; a text longer than :data:`MAX_SCAN` is cut there
    (with a marker saying how much was left out).
    """
    text = _limit(text)
    for secret in _known_secrets(extra):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _mask_url_passwords(text)
    lowered = text.lower()
    if not any(word in lowered for word in _KEYWORDS):
        return text
    if "authoriz" in lowered:
        text = _AUTH_HEADER.sub(rf"\g<1>\g<2>{MASK}", text)
    if "bearer" in lowered:
        text = _BEARER.sub(rf"\g<1> {MASK}", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(rf"\g<1>{MASK}", text)
        text = _KV_SECRET.sub(rf"\g<1>\g<2>{MASK}", text)
    if '"' in text:
        text = _JSON_SECRET.sub(rf'\g<1>"{MASK}"', text)
    return text


def redact(value: Any) -> Any:
    """Redact a JSON-like structure (or a string) recursively.

    Keys that name a secret get their value replaced whole; every string is
    passed through :func:`redact_text`. Returns a new structure.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key) and item not in (None, "", False, True):
                # "url_env" style keys hold a variable *name*, not a secret.
                out[key] = item if key.endswith("_env") else MASK
            else:
                out[redact_text(key) if isinstance(key, str) else key] = redact(item)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value
