"""Secrets never survive redaction, whatever shape they arrive in."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollback.redact import MASK, MAX_SCAN, redact, redact_text, register_secret


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql://app:s3cr3t-pw@db.internal:5432/app", "s3cr3t-pw"),
        ("connect to postgres://u:p%40ss-word@h/db failed", "p%40ss-word"),
        ("Authorization: Bearer vercel_tok_123456789", "vercel_tok_123456789"),
        ('{"authorization": "Bearer abcdefghijkl"}', "abcdefghijkl"),
        ("GET /v6/deployments?teamId=t&token=abcdef123456", "abcdef123456"),
        ("PGPASSWORD=hunter2hunter2 pg_dump", "hunter2hunter2"),
    ],
)
def test_recognisable_secrets_are_masked(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert MASK in out


def test_registered_and_environment_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERCEL_TOKEN", "tok_from_env_0001")
    register_secret("registered-secret-value")
    out = redact_text("a tok_from_env_0001 b registered-secret-value c")
    assert out == f"a {MASK} b {MASK} c"


def test_structures_are_redacted_by_key_and_value() -> None:
    data = {
        "token": "abc123456",
        "url_env": "DATABASE_URL",
        "nested": [{"password": "pw-value-1"}, "mysql://root:rootpw1@h/x"],
        "count": 3,
    }
    out = redact(data)
    assert out["token"] == MASK
    assert out["url_env"] == "DATABASE_URL"  # a variable name, not a secret
    assert out["nested"][0]["password"] == MASK
    assert "rootpw1" not in out["nested"][1]
    assert out["count"] == 3
    assert data["token"] == "abc123456"  # the input is left alone


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # unencoded '/', '@' and spaces, as `openssl rand -base64` passwords have them
        ("postgresql://app:ab/cd+ef==@db.internal:5432/app", "ab/cd+ef=="),
        ("postgres://app:p@ss@word@db.internal/app failed", "p@ss@word"),
        ("connecting to redis://:only-a-password@cache:6379", "only-a-password"),
        # libpq key=value, quoted or escaped
        ("host=db password='a b\\' c' dbname=app", "a b\\' c"),
        ("host=db password = \"quoted pw\" dbname=app", "quoted pw"),
        ("host=db password=bare\\ value dbname=app", "bare\\ value"),
        ('{"user": "app", "password": "in-a-json-body"}', "in-a-json-body"),
    ],
)
def test_secrets_in_awkward_spellings_are_masked(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out, out
    assert MASK in out


def test_a_registered_secret_is_masked_in_every_spelling() -> None:
    secret = "pa ss/w@rd'\\\"%"
    register_secret(secret)
    from urllib.parse import quote

    for spelling in (secret, quote(secret, safe=""), repr(secret)[1:-1], json.dumps(secret)[1:-1]):
        assert spelling not in redact_text(f"x {spelling} y"), spelling


def test_text_beyond_the_scan_limit_is_cut_never_passed_through() -> None:
    register_secret("hunter2hunter2")
    text = "a " * (MAX_SCAN // 2) + "password=past-the-limit hunter2hunter2 " * 10
    out = redact_text(text)
    assert len(out) < MAX_SCAN + 200
    assert "past-the-limit" not in out and "hunter2hunter2" not in out
    assert out.endswith("too long to check for secrets]")
    # one token cut in two at the limit is dropped whole: its first half may be a secret's
    cut = redact_text("x" * (MAX_SCAN - 5) + " secret-half-of-a-token-spanning-the-limit")
    assert "secret-half" not in cut


# Fragments of the patterns the redactor looks for: repeated, they make a backtracking regex blow up.
FRAGMENTS = ["x", " ", "://", ":", "/", "@", "a", "password", "=", "'", '"', "\\", "authorization", "bearer",
             "token", "?", "&", "{", "}", ",", "\t", "\n"]


def _best_of(runs: int, func: Any) -> float:
    # CPU time of this process, the best of several runs: what other processes on a loaded machine do moves
    # wall-clock time far more than it moves this.
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        func()
        best = min(best, time.process_time() - started)
    return best


@settings(max_examples=25, deadline=None)
@given(unit=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join))
def test_redaction_time_grows_linearly_with_the_text(unit: str) -> None:
    """A measure of scaling, not a wall-clock limit: 16x the text may cost at most ~3x of 16x the time
    (linear costs 16x, a quadratic pattern 256x: the bound sits far from both). The absolute figures
    are in bench/redact.py."""
    small = (unit * (16_000 // len(unit) + 1))[:16_000]
    large = (unit * (256_000 // len(unit) + 1))[:256_000]
    t_small = _best_of(5, lambda: redact_text(small))
    t_large = _best_of(5, lambda: redact_text(large))
    assert t_large < 48 * t_small + 0.01, (unit, t_small, t_large)
