"""Secrets never survive redaction, whatever shape they arrive in."""

from __future__ import annotations

import pytest

from rollback.redact import MASK, redact, redact_text, register_secret


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
