"""Database URLs are read the way libpq reads them, and no reading of one leaks its password.

libpq (psycopg's conninfo_to_dict) splits a URL password at an unencoded '/' or '@' without
an error, and rejects an unencoded space quoting the password: those URLs are refused here
with a line that quotes nothing of the value.
"""

from __future__ import annotations

import string
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollback.dburl import parse_database_url, password_candidates, strip_prisma_params
from rollback.errors import BadInput
from rollback.redact import redact_text


@pytest.mark.parametrize(
    ("url", "password", "why"),
    [
        ("postgresql://app:ab/cd+ef==@db.internal:5432/app", "ab/cd+ef==", "'/'"),
        ("postgresql://app:12/cd+ef@db.internal:5432/app", "12/cd+ef", "'/'"),
        ("postgresql://app:p@ss@db.internal/app", "p@ss", "'@'"),
        # found by hypothesis: '@' then '/' read as an empty host and a database named 'c2094cac@db...'
        ("postgresql://app:e3e70682@/c2094cac@db.internal:5432/app", "e3e70682@/c2094cac", "'@'"),
        ("postgresql://app:a b c@db.internal/app", "a b c", "space"),
        ("postgresql://app:100%pure@db.internal/app", "100%pure", "'%'"),
        ("host=db password=two words dbname=app", "two words", "space"),
    ],
)
def test_a_password_libpq_would_misread_is_refused_without_quoting_it(url: str, password: str, why: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_database_url(url, "DATABASE_URL")
    line = info.value.one_line()
    assert "DATABASE_URL" in line and why in line
    for piece in (password, *password.replace("@", "/").split("/"), *password.split()):
        if len(piece) >= 4:
            assert piece not in line, (piece, line)
    assert password not in redact_text(url)


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("postgresql://app:p%40ss%2Fw%20rd@db:6543/app", {"user": "app", "password": "p@ss/w rd", "host": "db",
                                                           "port": "6543", "dbname": "app"}),
        ("postgresql://app:p?w#x:y@db/app", {"user": "app", "password": "p?w#x:y", "host": "db", "dbname": "app"}),
        ("host=db password='a b\\' c' dbname=app", {"host": "db", "password": "a b' c", "dbname": "app"}),
        ("postgresql://app:pw@db/app?schema=tenant&sslmode=require&connection_limit=3",
         {"user": "app", "password": "pw", "host": "db", "dbname": "app", "sslmode": "require"}),
        ("postgresql://app:pa?ss@db/app?schema=s2", {"user": "app", "password": "pa?ss", "host": "db",
                                                     "dbname": "app"}),
    ],
)
def test_urls_libpq_reads_as_written_are_accepted(url: str, params: dict[str, str]) -> None:
    got, _ = parse_database_url(url)
    assert got == params


def test_prisma_parameters_are_cut_where_libpq_starts_the_query() -> None:
    # '?' inside the password does not start the query (libpq scans the user info to '@' first)
    assert strip_prisma_params("postgresql://u:p?w@h/db?schema=x&sslmode=require") == \
        ("postgresql://u:p?w@h/db?sslmode=require", "x")
    assert strip_prisma_params("postgresql://u:pw@h/db?schema=only") == ("postgresql://u:pw@h/db", "only")


PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "
PASSWORDS = st.tuples(st.uuids(), st.text(alphabet=PRINTABLE, max_size=24)).map(
    lambda t: t[0].hex[:8] + t[1] + t[0].hex[8:16])


@settings(max_examples=300, deadline=None)
@given(password=PASSWORDS, encode=st.booleans())
def test_any_printable_password_is_read_exactly_or_refused_and_never_shown(password: str, encode: bool) -> None:
    written = quote(password, safe="") if encode else password
    url = f"postgresql://app:{written}@db.internal:5432/app"
    assert password in password_candidates(url)
    try:
        params, _ = parse_database_url(url, "DATABASE_URL")
    except BadInput as exc:
        assert not encode, exc.one_line()
        shown = exc.one_line()
    else:
        # accepted only when libpq reads the password as written (a raw '%XX' is libpq's to decode)
        if encode or "%" not in password:
            assert params["password"] == password
        assert params["host"] == "db.internal" and params["dbname"] == "app"
        shown = redact_text(f"{url} {params}")
    for piece in (password, written, password[:8], password[-8:]):
        assert piece not in shown, (piece, shown)


@settings(max_examples=200, deadline=None)
@given(password=PASSWORDS)
def test_any_printable_password_in_key_value_form_is_read_exactly(password: str) -> None:
    quoted = password.replace("\\", "\\\\").replace("'", "\\'")
    conninfo = f"host=db.internal port=5432 user=app password='{quoted}' dbname=app"
    params, _ = parse_database_url(conninfo, "DATABASE_URL")
    assert params["password"] == password
    shown = redact_text(f"{conninfo} {params}")
    for piece in (password, quoted, password[:8], password[-8:]):
        assert piece not in shown, (piece, shown)
