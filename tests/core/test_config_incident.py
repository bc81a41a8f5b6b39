"""The incident keys of rollback.toml: [env.X.alarms], [env.X.verify] (+ flows), [lock] / [env.X.lock]."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.config import load_config
from rollback.errors import ConfigError


def test_defaults_and_global_lock(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text('[lock]\nurl = "s3://team-bucket/app/"\n[env.production.vercel]\nproject = "p"\n'
                    '[env.staging.vercel]\nproject = "s"\n[env.staging.lock]\nurl = "s3://other"\nttl = 30\n',
                    encoding="utf-8")
    production = load_config(path, "production", environ={})
    assert production.lock_settings.url == "s3://team-bucket/app" and production.lock_settings.ttl == 60
    staging = load_config(path, "staging", environ={})
    assert staging.lock_settings.url == "s3://other" and staging.lock_settings.ttl == 30
    assert production.env.verify.api_p95_ms == 500 and production.env.verify.page_load_ms == 3000
    assert production.env.verify.cache_hit_percent == 70 and production.env.verify.flows == []
    assert production.env.alarms.names == [] and production.env.alarms.prefix is None
    assert production.identity != staging.identity and str(path.resolve()) in production.identity


def test_flows_and_alarms(write_config: Callable[..., Path]) -> None:
    path = write_config({"production": {
        "alarms": {"prefix": "app-prod"},
        "verify": {"flows": [{"name": "login", "method": "post", "path": "/api/login", "status": 201,
                              "body": '{"a": 1}', "body_contains": "session"}], "smoke": "npm run test:smoke"}}})
    config = load_config(path, environ={})
    flow = config.env.verify.flows[0]
    assert (flow.method, flow.status, flow.body_contains) == ("POST", 201, "session")
    assert config.env.alarms.prefix == "app-prod" and config.env.verify.smoke == "npm run test:smoke"


@pytest.mark.parametrize(("section", "values", "key"), [
    ("lock", {"url": "https://bucket"}, "env.production.lock.url"),
    ("lock", {"url": "s3://bucket", "ttl": 1}, "env.production.lock.ttl"),
    ("verify", {"api_p95_ms": float("inf")}, "env.production.verify.api_p95_ms"),
    ("verify", {"cache_hit_percent": 120}, "env.production.verify.cache_hit_percent"),
    ("verify", {"requests": 0}, "env.production.verify.requests"),
    ("verify", {"page_paths": ["home"]}, "env.production.verify.page_paths"),
    ("verify", {"flows": [{"name": "x", "path": "/", "method": "FETCH"}]}, "env.production.verify.flows.0.method"),
    ("verify", {"flows": [{"name": "x", "path": "nope"}]}, "env.production.verify.flows.0.path"),
    ("verify", {"flows": [{"name": "x", "path": "/"}, {"name": "x", "path": "/a"}]}, "env.production.verify.flows"),
    ("verify", {"flows": [{"name": "x", "path": "/", "colour": "red"}]}, "env.production.verify.flows.0.colour"),
    ("alarms", {"names": "one"}, "env.production.alarms.names"),
    ("alarms", {"suffix": "x"}, "env.production.alarms.suffix"),
])
def test_bad_values_name_their_key(write_config: Callable[..., Path], section: str, values: dict[str, Any],
                                   key: str) -> None:
    path = write_config({"production": {section: values}})
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.key == key
    assert info.value.exit_code == 2
