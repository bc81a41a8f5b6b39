"""Keep secrets out of everything we write or print.

Secrets reach us only through the environment (``VERCEL_TOKEN``, the database
URL variable, the AWS credential chain). Before any text or structure is
printed, journaled or put in a report, it passes through :func:`redact`, which
removes:

- every registered secret value (the environment's secrets are registered by
  default, and adapters register what they read, e.g. a database URL's
  password);
- passwords inside URLs (``postgresql://user:pw@host`` -> ``postgresql://user:***@host``);
- ``Authorization`` header values and ``token=`` style query parameters;
- values under keys whose name says they are secret (``token``, ``password``...).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

__all__ = ["MASK", "is_secret_key", "redact", "redact_text", "register_secret"]

MASK = "***"

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
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer\s+|basic\s+|token\s+)?[^\s\"',}]+")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{8,}")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:token|access_token|password|secret|api_key|apikey)=)[^&\s\"']+")
_KV_SECRET = re.compile(r"(?i)\b(password|passwd|pgpassword|token|secret)=(?!\*\*\*)([^\s&\"']+)")

_lock = threading.Lock()
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it appears.

    Short values are ignored: masking every ``a`` in a text would do more harm
    than good, and real tokens and passwords are longer.
    """
    if not value or len(value) < 4:
        return
    with _lock:
        _registered.add(value)
        decoded = unquote(value)
        if decoded != value and len(decoded) >= 4:
            _registered.add(decoded)


def _known_secrets() -> list[str]:
    values = set(_registered)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            values.add(value)
    # Longest first, so that a secret containing another is masked whole.
    return sorted(values, key=len, reverse=True)


def is_secret_key(key: str) -> bool:
    """True when a mapping key's name says its value is a secret."""
    return bool(_SECRET_KEY.search(key))


def redact_text(text: str, extra: Iterable[str] = ()) -> str:
    """Return ``text`` with every secret we know of or can recognise masked."""
    for secret in [*_known_secrets(), *[e for e in extra if e and len(e) >= 4]]:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _KV_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)
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
                out[key] = redact(item)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value
