"""rollback.toml is validated into typed settings; every mistake names its key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.commands.config import init, template_text
from rollback.config import load_config
from rollback.errors import BadInput, ConfigError, Refused, UnknownEnvironment

VALID = {
    "production": {
        "vercel": {"project": "prj_abc", "team": "team_xyz"},
        "health": {"base_url": "https://app.example.com", "paths": ["/", "/api/health"],
                   "version_path": "/api/version"},
        "database": {"url_env": "APP_DATABASE_URL", "tables": ["User", "Integration"], "backups_dir": "bk"},
        "aws": {"region": "eu-west-1", "distribution_id": "E123"},
        "pulumi": {"stack": "production", "backend_url": "file:///tmp/state"},
    },
    "staging": {"vercel": {"project": "prj_stg"}},
}


def test_the_shipped_template_is_valid(tmp_path: Path) -> None:
    path = init(tmp_path)
    assert path.read_text() == template_text()
    config = load_config(path, environ={})
    assert config.env_name == "production"
    assert config.env.targets.total == 15
    with pytest.raises(Refused, match="already exists"):
        init(tmp_path)


def test_valid_config_resolves_env_paths_and_defaults(write_config: Callable[..., Path]) -> None:
    path = write_config(VALID, default_env="production")
    config = load_config(path, environ={"APP_DATABASE_URL": "postgresql://app:pw-123456@db/app"})
    assert config.env.vercel is not None and config.env.vercel.team == "team_xyz"
    assert config.env.aws.region == "eu-west-1"
    assert config.env.targets.detect == 5 and config.env.targets.decide == 2
    assert config.backups_dir == path.parent / "bk"
    assert config.journal_dir == path.parent / ".rollback" / "runs"
    described = config.describe()
    assert described["secrets"]["APP_DATABASE_URL"] == "postgresql://app:***@db/app"
    assert "pw-123456" not in str(described)


def test_env_selection_order(write_config: Callable[..., Path]) -> None:
    path = write_config(VALID, default_env="production")
    assert load_config(path, environ={}).env_name == "production"
    assert load_config(path, environ={"ROLLBACK_ENV": "staging"}).env_name == "staging"
    assert load_config(path, "production", environ={"ROLLBACK_ENV": "staging"}).env_name == "production"
    with pytest.raises(UnknownEnvironment, match="unknown environment 'qa'") as info:
        load_config(path, "qa", environ={})
    assert "production, staging" in info.value.one_line()
    assert info.value.exit_code == 2


def test_file_location_order(write_config: Callable[..., Path], tmp_path: Path) -> None:
    path = write_config(VALID, default_env="production")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert load_config(environ={}, cwd=nested).path == path.resolve()
    other = write_config({"x": {"vercel": {"project": "p"}}}, name="other.toml")
    assert load_config(environ={"ROLLBACK_CONFIG": str(other)}, cwd=nested).env_name == "x"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


def test_no_file_anywhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no rollback\.toml") as info:
        load_config(environ={}, cwd=tmp_path)
    assert "rollback config init" in info.value.one_line()


@pytest.mark.parametrize(
    ("text", "message", "key", "line"),
    [
        ('[env.p.vercel]\nproject = "x"\n[env.p.targets]\ndetect = "soon"\n',
         "env.p.targets.detect: Input should be a valid number", "env.p.targets.detect", 4),
        ('[env.p.vercel]\nproject = "x"\ncolour = "red"\n', "env.p.vercel.colour: unknown key",
         "env.p.vercel.colour", 3),
        ('[env.p.health]\nbase_url = "ftp://x"\n', "must be an http:// or https:// URL",
         "env.p.health.base_url", 2),
        ("[env.p.aws]\nregion = 5\n", "env.p.aws.region", "env.p.aws.region", 2),
        ("[env.p.pulumi]\nbackend_url = \"file:///x\"\n", "env.p.pulumi.stack: required key is missing",
         "env.p.pulumi.stack", None),
        ("default_env = \"p\"\n", "env: Value error, define at least one environment", "env", None),
        ("[env.p.targets]\ntotal = -1\n", "greater than 0", "env.p.targets.total", 2),
    ],
)
def test_bad_values_name_the_key_and_line(tmp_path: Path, text: str, message: str, key: str,
                                          line: int | None) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert message in info.value.message
    assert info.value.data["key"] == key
    assert info.value.data["line"] == line
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "key", "where"),
    [
        ('[env.p.vercel]\nproject = "x"\ntoken = "vercel_abcdef"\n', "env.p.vercel.token", "VERCEL_TOKEN"),
        ('[env.p.database]\nurl = "postgresql://u:pw@h/db"\n', "env.p.database.url", "url_env"),
        ('[env.p.health]\nbase_url = "https://user:pass1@app.example.com"\n', "env.p.health.base_url",
         "environment"),
        ('[env.p.aws]\nsecret_access_key = "abc"\n', "env.p.aws.secret_access_key", "credential chain"),
    ],
)
def test_a_secret_in_the_file_is_an_error(tmp_path: Path, text: str, key: str, where: str) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="secrets must not be written in the config file") as info:
        load_config(path, environ={})
    assert info.value.data["key"] == key
    assert where in info.value.hint
    for secret in ("vercel_abcdef", ":pw@", "pass1"):
        assert secret not in info.value.one_line()


def test_garbage_toml_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text('default_env = "p"\n[env.p.vercel\nproject = 1\n')
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, environ={})
    assert info.value.data["line"] == 2
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, environ={})


def test_two_envs_and_no_default_needs_a_choice(write_config: Callable[..., Path]) -> None:
    path = write_config(VALID)
    with pytest.raises(ConfigError, match="no environment selected"):
        load_config(path, environ={})
    single = write_config({"only": {"vercel": {"project": "p"}}}, name="single.toml")
    assert load_config(single, environ={}).env_name == "only"


@pytest.mark.parametrize("token", ["tok_abc123\r", "  tok_abc123\n"])
def test_vercel_token_is_stripped(write_config: Callable[..., Path], token: str) -> None:
    config = load_config(write_config(VALID, default_env="production"), environ={"VERCEL_TOKEN": token})
    assert config.vercel_token() == "tok_abc123"


@pytest.mark.parametrize("token", ["short\r\nX-Evil: 1", "tok\u00e9n-n0n-ascii", "two words"])
def test_a_token_that_cannot_be_a_header_is_bad_input_and_never_echoed(write_config: Callable[..., Path],
                                                                      token: str) -> None:
    config = load_config(write_config(VALID, default_env="production"), environ={"VERCEL_TOKEN": token})
    with pytest.raises(BadInput, match="VERCEL_TOKEN holds characters") as info:
        config.vercel_token()
    assert token.strip() not in info.value.one_line()


def test_journal_dir_without_selecting_an_environment(write_config: Callable[..., Path], tmp_path: Path) -> None:
    from rollback.config import resolve_journal_dir

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    assert resolve_journal_dir(environ={}, cwd=empty) == empty / ".rollback" / "runs"
    path = write_config(VALID, journal_dir="journals")  # two envs, no default: still fine here
    assert resolve_journal_dir(environ={}, cwd=tmp_path) == path.parent.resolve() / "journals"
    assert resolve_journal_dir(path, environ={"ROLLBACK_JOURNAL_DIR": "/j"}) == Path("/j")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_journal_dir(tmp_path / "missing.toml", environ={})
