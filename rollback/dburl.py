"""Database URLs and key=value conninfo strings, read the way libpq reads them.

libpq's URL reader (``conninfo_uri_parse_options`` in ``fe-connect.c``) takes
the user information to end at the first ``@`` or ``/`` after ``postgresql://``.
A password with an unencoded ``/`` or ``@`` (``openssl rand -base64`` makes
both) is therefore split without an error: ``postgresql://u:ab/cd@h/db`` is
host ``u``, port ``ab``, database ``cd@h/db``; ``postgresql://u:p@ss@h/db`` is
password ``p`` on host ``ss@h``. Pieces of the password then travel as a host,
a port or a database name into error messages. An unencoded space is refused by
libpq with a message that quotes the password. So here:

- every reading a person or libpq could give the password is registered as a
  secret before anything else happens (:func:`register_conninfo_secrets`);
- the string is parsed by libpq itself (psycopg's ``conninfo_to_dict``);
- a URL that libpq reads differently from the way it was written is refused
  (exit 2) with a message that says what to percent-encode, and libpq's own
  parse errors are translated: no message quotes any part of the value.

Prisma's own query parameters (``schema``, ``connection_limit``...), which libpq
would reject, are taken out first; ``schema`` becomes ``search_path``.

:func:`pooler_reason` says when a URL goes through a connection pooler rather than
to the database itself: ``prisma://`` / ``prisma+postgres://`` (Prisma Accelerate),
``pgbouncer=true`` (Prisma's flag for a transaction-mode PgBouncer), port 6543 (the
transaction poolers of Supabase and others), or an RDS Proxy endpoint
(``<name>.proxy-<id>.<region>.rds.amazonaws.com``). A dump, ``CREATE DATABASE`` or a
rename through a transaction-mode pooler misbehaves, and the database behind it is not
the host in the URL.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from rollback.errors import BadInput
from rollback.redact import register_secret

__all__ = ["PRISMA_PARAMS", "parse_database_url", "password_candidates", "pooler_reason",
           "register_conninfo_secrets", "strip_prisma_params", "url_user", "with_server"]

URL_SCHEMES = ("postgresql://", "postgres://")
# Query parameters Prisma accepts in its URLs that libpq would reject.
PRISMA_PARAMS = frozenset({"schema", "connection_limit", "pool_timeout", "pgbouncer", "socket_timeout",
                           "statement_cache_size", "sslaccept", "sslidentity", "sslpassword"})

# libpq key=value: password = 'quoted \' value' | bare\ value (a backslash escapes the next character).
_KV_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*(?:'((?:[^'\\]|\\.)*)'?|((?:[^\s\\]|\\.)*))", re.DOTALL)
_KV_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_QUERY_PASSWORD = re.compile(r"[?&]password=([^&]*)")

# libpq's parse errors, by the start of the message, as lines that quote nothing of the value.
_PARSE_ERRORS = (
    ("unexpected spaces found", "has an unencoded space (write it %20 in a URL)"),
    ("invalid percent-encoded token", "has a '%' that is not followed by two hex digits (write '%' as %25)"),
    ("forbidden value %00", "has %00 in it, which libpq refuses"),
    ("missing \"=\" after", "has a value with a space in it: quote it, password='...'"),
    ("unterminated quoted string", "has a quote that is never closed"),
    ("invalid connection option", "names a connection option libpq does not know"),
    ("invalid URI query parameter", "has a query parameter libpq does not know"),
    ("extra key/value separator", "has a query parameter with a second '='"),
    ("missing key/value separator", "has a query parameter without '='"),
    ("end of string reached when looking for matching", "has a '[' without its ']'"),
    ("unexpected character", "has an IPv6 address in [ ] followed by something other than ':' or '/'"),
    ("invalid URI propagated", "is not a URL libpq can read"),
)
ENCODE_HINT = ("percent-encode the password: python3 -c 'import sys, urllib.parse; "
               "print(urllib.parse.quote(sys.argv[1], safe=\"\"))' 'PASSWORD'")


def _is_url(value: str) -> bool:
    return value[:16].lower().startswith(URL_SCHEMES)


POOLER_SCHEMES = ("prisma://", "prisma+postgres://")
POOLER_PORT = "6543"
_RDS_PROXY = re.compile(r"\.proxy-[a-z0-9]+\.[a-z0-9-]+\.rds\.amazonaws\.com(\.cn)?$", re.IGNORECASE)
_KV_FIELD = re.compile(r"(?:^|\s)(host|port|pgbouncer)\s*=\s*'?([^'\s]*)")


def pooler_reason(value: str) -> str | None:
    """Why ``value`` (a URL or key=value string) goes through a connection pooler, or None. Pure: it
    quotes nothing of the password."""
    lowered = value.strip().lower()
    for scheme in POOLER_SCHEMES:
        if lowered.startswith(scheme):
            return f"a {scheme} URL (Prisma Accelerate)"
    hosts: list[str] = []
    ports: list[str] = []
    if _is_url(lowered):
        rest = lowered[lowered.index("://") + 3:]
        authority = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
        for part in authority.split(","):
            host, _, port = part.rpartition(":") if not part.endswith("]") else (part, "", "")
            hosts.append(host or part)
            ports.append(port)
        query = rest.split("?", 1)[1] if "?" in rest else ""
        params = dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
        if unquote(params.get("pgbouncer", "")) == "true":
            return "pgbouncer=true"
        for key in ("host", "port"):
            if key in params:
                (hosts if key == "host" else ports).extend(unquote(params[key]).split(","))
    else:
        for key, raw in _KV_FIELD.findall(lowered):
            if key == "pgbouncer" and raw == "true":
                return "pgbouncer=true"
            (hosts if key == "host" else ports if key == "port" else []).extend(raw.split(","))
    if POOLER_PORT in ports:
        return f"port {POOLER_PORT} (a transaction-mode pooler's port)"
    proxy = next((h for h in hosts if _RDS_PROXY.search(h)), None)
    if proxy:
        return f"an RDS Proxy endpoint ({proxy})"
    return None


def password_candidates(value: str) -> list[str]:
    """Every string a person or libpq could take for the password in ``value``.

    In a URL the password starts after the first ``:`` of the user information;
    it ends at the first ``@`` or ``/`` for libpq, at the last ``@`` for the
    person who wrote it: each of those endings gives a candidate, percent-decoded
    and as written. Pure: no psycopg.
    """
    found: list[str] = []
    if _is_url(value):
        rest = value[value.index("://") + 3:]
        colon = rest.find(":")
        stop = [i for i, ch in enumerate(rest) if ch in "@/"] if colon != -1 else []
        for end in stop:
            if end > colon and "@" in rest[end:]:
                found.append(rest[colon + 1:end])
        last_at = rest.rfind("@")
        if colon != -1 and last_at > colon:
            found.append(rest[colon + 1:last_at])
        found += [m.group(1) for m in _QUERY_PASSWORD.finditer(rest)]
    else:
        for match in _KV_PASSWORD.finditer(value):
            raw = match.group(1) if match.group(1) is not None else match.group(2)
            found += [raw, _KV_UNESCAPE.sub(r"\1", raw)]
            # A bare value cut short at a space (libpq refuses that string): mask the rest of it too.
            tail = value[match.end():].split("=", 1)[0].rsplit(None, 1)[0] if "=" in value[match.end():] else ""
            if tail:
                found.append(raw + tail)
    out: list[str] = []
    for item in found:
        for form in (item, unquote(item)):
            if form and form not in out:
                out.append(form)
    return out


def register_conninfo_secrets(value: str) -> None:
    """Register every candidate password of ``value`` (see :func:`password_candidates`)."""
    for candidate in password_candidates(value):
        register_secret(candidate)


def strip_prisma_params(value: str) -> tuple[str, str | None]:
    """Take Prisma-only query parameters out of a URL; return it and Prisma's ``schema``.

    The query starts where libpq says: at the first ``?`` after the user
    information (a ``?`` in the password does not start it). The parameters
    kept are passed on exactly as written.
    """
    if not _is_url(value):
        return value, None
    head = value.index("://") + 3
    rest = value[head:]
    cut = min((i for i in (rest.find("@"), rest.find("/")) if i != -1), default=-1)
    after_userinfo = cut + 1 if cut != -1 and rest[cut] == "@" else 0
    question = rest.find("?", after_userinfo)
    if question == -1:
        return value, None
    schema: str | None = None
    kept: list[str] = []
    for pair in rest[question + 1:].split("&"):
        key, _, raw = pair.partition("=")
        if unquote(key) == "schema":
            schema = unquote(raw)
        if unquote(key) not in PRISMA_PARAMS:
            kept.append(pair)
    base = value[:head] + rest[:question]
    return (base + "?" + "&".join(kept)) if any(kept) else base, schema


def _parse_error(message: str, variable: str) -> BadInput:
    for start, what in _PARSE_ERRORS:
        if message.startswith(start):
            return BadInput(f"{variable} {what}", "fix the value; " + ENCODE_HINT)
    return BadInput(f"{variable} is not a connection URL or key=value string libpq can read",
                    "write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE with the password "
                    "percent-encoded")


def parse_database_url(value: str, variable: str = "the database URL") -> tuple[dict[str, str], str | None]:
    """libpq's parameters for ``value`` (a URL or key=value string) and Prisma's ``schema``.

    Raises :class:`BadInput` naming ``variable`` when libpq cannot read the value
    or would read it differently from the way it was written; the message
    quotes nothing of the value.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    register_conninfo_secrets(value)
    stripped, schema = strip_prisma_params(value)
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(stripped).items() if v is not None}
    except ProgrammingError as exc:
        raise _parse_error(str(exc), variable) from None
    except UnicodeDecodeError:  # a %XX sequence libpq decodes to bytes that are not UTF-8
        raise BadInput(f"{variable} has percent-encoded bytes that are not UTF-8 text",
                       "write '%' as %25 where it is meant literally; " + ENCODE_HINT) from None
    register_secret(params.get("password"))
    if _is_url(stripped):
        rest = stripped[stripped.index("://") + 3:]
        authority = rest.split("/", 1)[0]
        before_query = rest.split("?", 1)[0]
        if "@" in params.get("host", "") or authority.count("@") > 1:
            raise BadInput(f"{variable} has an '@' in its user name or password that is not percent-encoded "
                           "(libpq would take what follows it for the host)",
                           "write '@' as %40; " + ENCODE_HINT)
        if "@" in authority and "@" in before_query[len(authority):]:
            # 'user:pa@/ss@host/db': libpq stops the password at the first '@' and reads the rest as an
            # empty host and a database named 'ss@host/db'
            raise BadInput(f"{variable} has an '@' and a '/' in its user name or password that are not "
                           "percent-encoded (libpq would take what follows them for the database name)",
                           "write '@' as %40 and '/' as %2F; " + ENCODE_HINT)
        if "@" not in authority and "@" in before_query:
            raise BadInput(f"{variable} has a '/' in its user name or password that is not percent-encoded "
                           "(libpq would take what follows it for the port and the database name)",
                           "write '/' as %2F; " + ENCODE_HINT)
        if not re.fullmatch(r"[0-9,]*", params.get("port", "")):
            raise BadInput(f"{variable} has a port that is not a number",
                           "write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE; " + ENCODE_HINT)
    return params, schema


def url_user(value: str) -> str | None:
    """The user name in a URL (percent-decoded), or None."""
    if not _is_url(value):
        return None
    user = urlsplit(value).username
    return unquote(user) if user else None


def with_server(value: str, *, host: str, port: int | None, username: str | None = None,
                password: str | None = None) -> str:
    """``value`` (a URL) pointed at ``host:port``, with ``username``/``password`` (percent-encoded) when
    given, else its own user information; the database name and the parameters are kept."""
    parts = urlsplit(value)
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if username is not None:
        userinfo = quote(username, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
    server = f"{host}:{port or parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{server}" if userinfo else server))
