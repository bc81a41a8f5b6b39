"""Round-trip edits of Pulumi.<stack>.yaml: comments, order and quoting survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback.adapters.stack_config import qualify_key, read_stack_config, stack_config_path, write_stack_config
from rollback.errors import BadInput, StackConfigError

STACK = """\
# Production stack: edited by hand and by `rollback infra edge`.
secretsprovider: passphrase
encryptionsalt: v1:abc:def
config:
  aws:region: eu-west-1 # the app's region
  # Lambda@Edge pin: empty means "latest published"
  rollback:edgeFunctionVersion: "6"
  rollback:assetsRelease: 'r-2026-11-27'
  rollback:dbPassword:
    secure: v1:AAAABBBB
  rollback:alarmEmails:
    - ops@example.com
    - oncall@example.com
  rollback:zone: example.com
"""


@pytest.fixture
def stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text(STACK, encoding="utf-8")
    return path


def test_read_returns_config_mapping(stack_file: Path) -> None:
    config = read_stack_config(stack_file)
    assert config == {
        "aws:region": "eu-west-1",
        "rollback:edgeFunctionVersion": "6",
        "rollback:assetsRelease": "r-2026-11-27",
        "rollback:dbPassword": {"secure": "v1:AAAABBBB"},
        "rollback:alarmEmails": ["ops@example.com", "oncall@example.com"],
        "rollback:zone": "example.com",
    }
    assert type(config["aws:region"]) is str


def test_read_missing_or_empty(tmp_path: Path) -> None:
    assert read_stack_config(tmp_path / "absent.yaml") == {}
    empty = tmp_path / "Pulumi.empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert read_stack_config(empty) == {}
    no_config = tmp_path / "Pulumi.none.yaml"
    no_config.write_text("secretsprovider: passphrase\nconfig:\n", encoding="utf-8")
    assert read_stack_config(no_config) == {}


def test_replace_keeps_everything_else_byte_for_byte(stack_file: Path) -> None:
    write_stack_config(stack_file, {"rollback:edgeFunctionVersion": "5"})
    assert stack_file.read_text(encoding="utf-8") == STACK.replace('edgeFunctionVersion: "6"',
                                                                   'edgeFunctionVersion: "5"')


def test_replace_keeps_single_quotes(stack_file: Path) -> None:
    write_stack_config(stack_file, {"rollback:assetsRelease": "r-2026-11-26"})
    assert "rollback:assetsRelease: 'r-2026-11-26'\n" in stack_file.read_text(encoding="utf-8")


def test_unchanged_write_is_identity(stack_file: Path) -> None:
    write_stack_config(stack_file, {})
    assert stack_file.read_text(encoding="utf-8") == STACK


@pytest.mark.parametrize(("value", "rendered"), [
    ("7", '"7"'), ("true", '"true"'), ("1.5", '"1.5"'), ("", '""'), ("null", '"null"'),
    ("arn:aws:lambda:us-east-1:123:function:f:7", "arn:aws:lambda:us-east-1:123:function:f:7"),
    ("plain", "plain"),
])
def test_new_values_quoted_like_pulumi(stack_file: Path, value: str, rendered: str) -> None:
    write_stack_config(stack_file, {"rollback:newKey": value})
    text = stack_file.read_text(encoding="utf-8")
    assert text.endswith(f"  rollback:newKey: {rendered}\n")
    assert read_stack_config(stack_file)["rollback:newKey"] == value
    assert text.startswith(STACK)  # appended at the end, nothing else moved


def test_remove_key_keeps_following_comments(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.s.yaml"
    path.write_text("config:\n  a:x: '1'\n  a:pin: \"7\" # pinned\n  # keep me\n  a:z: '3'\n", encoding="utf-8")
    write_stack_config(path, {"a:pin": None})
    text = path.read_text(encoding="utf-8")
    assert "a:pin" not in text and "# pinned" not in text
    assert "# keep me" in text
    assert read_stack_config(path) == {"a:x": "1", "a:z": "3"}
    assert text.index("a:x") < text.index("# keep me") < text.index("a:z")


def test_remove_absent_key_is_noop(stack_file: Path) -> None:
    write_stack_config(stack_file, {"rollback:nothing": None})
    assert stack_file.read_text(encoding="utf-8") == STACK


def test_project_qualifies_bare_keys(stack_file: Path) -> None:
    result = write_stack_config(stack_file, {"edgeFunctionVersion": "4"}, project="rollback")
    assert result["rollback:edgeFunctionVersion"] == "4"
    assert "edgeFunctionVersion" not in result
    assert qualify_key("aws:region", "rollback") == "aws:region"
    assert qualify_key("x", None) == "x"


def test_creates_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "stacks" / "Pulumi.dev.yaml"
    write_stack_config(path, {"rollback:edgeFunctionVersion": "3"})
    assert path.read_text(encoding="utf-8") == 'config:\n  rollback:edgeFunctionVersion: "3"\n'


def test_file_without_config_section(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("# header\nsecretsprovider: passphrase\n", encoding="utf-8")
    write_stack_config(path, {"rollback:x": "y"})
    assert path.read_text(encoding="utf-8") == "# header\nsecretsprovider: passphrase\nconfig:\n  rollback:x: y\n"


def test_four_space_indent_and_sequences_kept(tmp_path: Path) -> None:
    text = "config:\n    a:list:\n    -   one\n    -   two\n    a:v: x\n"
    path = tmp_path / "Pulumi.i.yaml"
    path.write_text(text, encoding="utf-8")
    write_stack_config(path, {"a:v": "y"})
    assert path.read_text(encoding="utf-8") == text.replace("a:v: x", "a:v: y")


def test_mode_preserved(stack_file: Path) -> None:
    stack_file.chmod(0o640)
    write_stack_config(stack_file, {"rollback:zone": "example.org"})
    assert stack_file.stat().st_mode & 0o777 == 0o640
    assert not list(stack_file.parent.glob(".*.tmp"))


def test_broken_yaml_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config:\n  a: [unclosed\n", encoding="utf-8")
    with pytest.raises(StackConfigError, match="not valid YAML"):
        read_stack_config(path)
    with pytest.raises(StackConfigError):
        write_stack_config(path, {"a": "b"})
    assert path.read_text(encoding="utf-8") == "config:\n  a: [unclosed\n"


def test_config_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config: [1, 2]\n", encoding="utf-8")
    with pytest.raises(StackConfigError, match="must be a mapping"):
        read_stack_config(path)
    with pytest.raises(StackConfigError, match="must be a mapping"):
        write_stack_config(path, {"a": "b"})


def test_non_string_scalar_value_rejected(stack_file: Path) -> None:
    with pytest.raises(BadInput, match="must be a string, a mapping or a list"):
        write_stack_config(stack_file, {"rollback:x": 7})


def test_structured_values_replace_in_place_keeping_the_rest(stack_file: Path) -> None:
    """A secret (``secure:``) and a list are written as Pulumi stores them; nothing else moves."""
    write_stack_config(stack_file, {"rollback:dbPassword": {"secure": "v1:CCCCDDDD"},
                                    "rollback:alarmEmails": ["ops@example.com"]})
    text = stack_file.read_text()
    assert text == STACK.replace("v1:AAAABBBB", "v1:CCCCDDDD").replace("    - oncall@example.com\n", "")
    assert read_stack_config(stack_file)["rollback:dbPassword"] == {"secure": "v1:CCCCDDDD"}


def test_stack_config_path(tmp_path: Path) -> None:
    assert stack_config_path(tmp_path, "prod") == tmp_path / "Pulumi.prod.yaml"
    (tmp_path / "Pulumi.yaml").write_text("name: rollback\nruntime: python\nstackConfigDir: stacks\n",
                                          encoding="utf-8")
    assert stack_config_path(tmp_path, "prod") == tmp_path / "stacks" / "Pulumi.prod.yaml"
