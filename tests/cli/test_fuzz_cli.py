"""Property tests: config files and command lines built from the real schema and the real
command tree get exit 0 only when they are valid, and one ``error:`` line (exit 2) when not.

The generators reach past the parsers: every config file is valid TOML (written by tomli_w)
whose sections and keys come from the pydantic models in ``rollback.config``, with values
that are valid for their key or invalid in a way we know (a wrong type, out of range, an
unknown or secret-named key, a bad environment name); every argument list is a real
command path from the click tree with its options and arguments, valid or broken in a way
we know (an unknown option, a value the option's type refuses, a missing required one). A
key or option this file has no generator for (a new one) still gets a value, and then the
example only checks "no traceback, 0 or one error line".
"""

from __future__ import annotations

import string
import tempfile
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from rollback.cli.support import Duration
from rollback.config import Settings
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
USAGE_ERRORS = ("No such option", "No such command", "Missing argument", "Missing option", "Invalid value",
                "Got unexpected extra argument", "requires an argument")


@dataclass
class Verdict:
    """Whether a generated input is valid: True, False, or None when we cannot tell (a key or
    parameter this file has no generator for). Half the inputs are meant to be broken, each in
    one place: :meth:`breaks_here` says whether to break the current one."""

    valid: bool | None = True
    why: list[str] = field(default_factory=list)
    meant_broken: bool = False

    def breaks_here(self, draw: st.DrawFn, odds: int = 4) -> bool:
        return self.meant_broken and self.valid is not False and draw(st.integers(0, odds - 1)) == 0

    def broken(self, why: str) -> None:
        self.valid = False
        self.why.append(why)

    def unknown(self, why: str) -> None:
        if self.valid is True:
            self.valid = None
        self.why.append(why)


def assert_one_error_line(result: CliResult) -> str:
    assert "Traceback" not in result.out + result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return lines[0]


# ----------------------------------------------------------------------------- config files

IDENT = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,14}", fullmatch=True)
PATHS = st.from_regex(r"[a-z][a-z0-9_/-]{0,14}", fullmatch=True).filter(lambda s: "//" not in s)
POSITIVE = st.one_of(st.integers(1, 10_000), st.floats(0.01, 10_000, allow_nan=False, allow_infinity=False))
TABLE_NAMES = st.lists(st.from_regex(r"[A-Z][A-Za-z0-9_]{0,10}", fullmatch=True), max_size=4)
# Valid values by model and key. The models and their keys come from rollback.config itself.
VALID: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("Settings", "default_env"): st.nothing(),  # set from the environments drawn
    ("JournalSettings", "dir"): PATHS,
    ("VercelSettings", "project"): IDENT,
    ("VercelSettings", "team"): IDENT,
    ("HealthSettings", "base_url"): st.sampled_from(["https://app.example.com", "http://127.0.0.1:3000"]),
    ("HealthSettings", "paths"): st.lists(st.from_regex(r"/[a-z]{0,8}", fullmatch=True), max_size=3),
    ("HealthSettings", "version_path"): st.from_regex(r"/[a-z]{0,8}", fullmatch=True),
    ("HealthSettings", "timeout"): POSITIVE,
    ("HealthSettings", "expect_status"): st.integers(100, 599),
    ("DatabaseSettings", "url_env"): st.from_regex(r"[A-Z][A-Z0-9_]{0,12}_URL", fullmatch=True),
    ("DatabaseSettings", "tables"): TABLE_NAMES,
    ("DatabaseSettings", "grow_only"): TABLE_NAMES,
    ("DatabaseSettings", "backups_dir"): PATHS,
    ("DatabaseSettings", "migrations_dir"): PATHS,
    ("Relation", "child"): st.from_regex(r"[A-Z][a-z]{0,6}\.[a-z][A-Za-z]{0,6}", fullmatch=True),
    ("Relation", "parent"): st.from_regex(r"[A-Z][a-z]{0,6}\.[a-z][A-Za-z]{0,6}", fullmatch=True),
    ("AwsSettings", "region"): st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2"]),
    ("AwsSettings", "distribution_id"): IDENT,
    ("AwsSettings", "edge_function"): IDENT,
    ("AwsSettings", "assets_bucket"): IDENT,
    ("AwsSettings", "db_instance"): IDENT,
    ("AwsSettings", "from_stack_outputs"): st.booleans(),
    ("PulumiSettings", "stack"): IDENT,
    ("PulumiSettings", "backend_url"): st.sampled_from(["file:///tmp/state", "s3://bucket/state"]),
    ("PulumiSettings", "project_dir"): PATHS,
    ("PulumiSettings", "project"): IDENT,
    **{("Targets", key): POSITIVE for key in ("detect", "decide", "rollback", "verify", "total")},
}
# Values that are wrong for a key of this Python type, whatever the key's other rules.
WRONG_TYPE: dict[type, st.SearchStrategy[Any]] = {
    str: st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2), st.just({"a": 1})),
    int: st.one_of(st.text(alphabet="xyz", min_size=1, max_size=3), st.just([1]), st.just({"a": 1})),
    float: st.one_of(st.text(alphabet="xyz", min_size=1, max_size=3), st.just([1.5]), st.just({"a": 1})),
    bool: st.one_of(st.just([True]), st.just({"a": True}), st.floats(0.5, 2.5)),
    list: st.one_of(st.just({"a": "b"}), st.integers()),
}
# Values outside a key's rules, for keys whose rules go beyond the type.
OUT_OF_RANGE: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("HealthSettings", "base_url"): st.sampled_from(["ftp://x", "not a url", "app.example.com"]),
    ("HealthSettings", "paths"): st.just(["no-slash"]),
    ("HealthSettings", "timeout"): st.sampled_from([0, -1, float("inf"), float("nan")]),
    ("HealthSettings", "expect_status"): st.sampled_from([99, 600, -200]),
    ("Relation", "child"): st.sampled_from(["nodot", "a.b.c", ".x"]),
    ("AwsSettings", "region"): st.sampled_from(["US-EAST-1", "useast1", "moon"]),
    ("PulumiSettings", "backend_url"): st.sampled_from(["ftp://x", "/tmp/state"]),
    ("DatabaseSettings", "url_env"): st.sampled_from(["1BAD", "has space", "a-b"]),
    **{("Targets", key): st.sampled_from([0, -5, float("inf"), float("-inf"), float("nan")])
       for key in ("detect", "decide", "rollback", "verify", "total")},
}
SECRET_KEYS = ["token", "password", "api_key", "secret", "db_password"]


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None``, whether None was allowed)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _model(annotation: Any) -> type[BaseModel] | None:
    inner, _ = _unwrap(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _base_type(annotation: Any) -> type | None:
    inner, _ = _unwrap(annotation)
    origin = typing.get_origin(inner) or inner
    return origin if origin in (str, int, float, bool, list) else None


@dataclass
class Site:
    """A place in a generated document that can be broken: a key's value, or a table."""

    table: dict[str, Any]
    where: str
    model: str
    key: str | None = None
    annotation: Any = None


def _draw_model(draw: st.DrawFn, model: type[BaseModel], verdict: Verdict, where: str,
                sites: list[Site]) -> dict[str, Any]:
    """A valid table for ``model`` (as far as this file knows its rules); every key drawn and
    the table itself are recorded in ``sites`` as places a broken document may be broken."""
    table: dict[str, Any] = {}
    sites.append(Site(table, where, model.__name__))
    for key, info in model.model_fields.items():
        if not (info.is_required() or draw(st.booleans())):
            continue
        table[key] = _draw_value(draw, model.__name__, key, info.annotation, verdict, f"{where}.{key}", sites)
        sites.append(Site(table, f"{where}.{key}", model.__name__, key, info.annotation))
    return table


def _draw_value(draw: st.DrawFn, model: str, key: str, annotation: Any, verdict: Verdict, where: str,
                sites: list[Site]) -> Any:
    nested = _model(annotation)
    inner, _ = _unwrap(annotation)
    if nested is not None:
        return _draw_model(draw, nested, verdict, where, sites)
    if typing.get_origin(inner) is list and _model(typing.get_args(inner)[0]) is not None:
        item = _model(typing.get_args(inner)[0])
        assert item is not None
        return [_draw_model(draw, item, verdict, f"{where}[{i}]", sites) for i in range(draw(st.integers(0, 2)))]
    if (model, key) in VALID:
        return draw(VALID[(model, key)])
    verdict.unknown(f"{where}: no generator for {model}.{key}")
    return draw(st.one_of(st.booleans(), POSITIVE, IDENT))


def _break(draw: st.DrawFn, sites: list[Site], verdict: Verdict) -> None:
    """Break one site in a way that is invalid whatever else the document holds. The kind of
    break is drawn first, then a site it applies to (hypothesis favours early choices: drawing
    the site first would break the first table nearly every time)."""
    ranged = [s for s in sites if s.key is not None and (s.model, s.key) in OUT_OF_RANGE]
    typed = [s for s in sites if s.key is not None and (_model(s.annotation) or _base_type(s.annotation))]
    kinds = ["unknown key", "secret"] + (["out of range"] * 2 if ranged else []) + (["wrong type"] if typed else [])
    kind = draw(st.sampled_from(kinds))
    if kind in ("unknown key", "secret"):
        site = draw(st.sampled_from([s for s in sites if s.key is None]))
        key = "nonsense" if kind == "unknown key" else draw(st.sampled_from(SECRET_KEYS))
        site.table[key] = 1 if kind == "unknown key" else "s3cret-value"
        verdict.broken(f"{site.where}.{key}: {kind}")
    elif kind == "out of range":
        site = draw(st.sampled_from(ranged))
        assert site.key is not None
        inner, _ = _unwrap(site.annotation)
        value = draw(OUT_OF_RANGE[(site.model, site.key)])
        site.table[site.key] = [value] if typing.get_origin(inner) is list and not isinstance(value, list) else value
        verdict.broken(f"{site.where}: out of range ({value!r})")
    else:
        site = draw(st.sampled_from(typed))
        assert site.key is not None
        base = _base_type(site.annotation)
        site.table[site.key] = draw(st.integers(1, 9)) if base is None else draw(WRONG_TYPE[base])
        verdict.broken(f"{site.where}: wrong type ({site.table[site.key]!r})")


@st.composite
def config_files(draw: st.DrawFn) -> tuple[dict[str, Any], Verdict]:
    """A rollback.toml as a dict (written with tomli_w, so always valid TOML) and its verdict:
    a valid document, or (half the time) one broken in exactly one place chosen among all."""
    verdict = Verdict(meant_broken=draw(st.booleans()))
    sites: list[Site] = []
    document: dict[str, Any] = {}
    env_field = Settings.model_fields["env"]
    env_model = _model(typing.get_args(env_field.annotation)[1])
    assert env_model is not None
    names = draw(st.lists(IDENT, min_size=1, max_size=3, unique=True))
    document["env"] = {name: _draw_model(draw, env_model, verdict, f"env.{name}", sites) for name in names}
    if draw(st.booleans()):
        journal_model = _model(Settings.model_fields["journal"].annotation)
        assert journal_model is not None
        document["journal"] = _draw_model(draw, journal_model, verdict, "journal", sites)
    if len(names) > 1 or draw(st.booleans()):
        document["default_env"] = draw(st.sampled_from(names))
    if verdict.meant_broken:
        how = draw(st.sampled_from(["site"] * 6 + ["no env", "env name", "default_env"]))
        if how == "no env":
            document["env"] = {}
            verdict.broken("no environment")
        elif how == "env name":
            document["env"][draw(st.sampled_from(["odd name", "dots.in.it", "-leading", "ü"]))] = {}
            verdict.broken("bad environment name")
        elif how == "default_env":
            document["default_env"] = "nowhere"
            verdict.broken("default_env names no environment")
        else:
            _break(draw, sites, verdict)
    return document, verdict


@pytest.mark.slow
@SETTINGS
@given(case=config_files())
def test_config_files_from_the_real_schema(run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           case: tuple[dict[str, Any], Verdict]) -> None:
    document, verdict = case
    for name in ("ROLLBACK_ENV", "ROLLBACK_JOURNAL_DIR", "VERCEL_API_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "rollback.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    result = run_cli("--config", str(path), "config", "check", "--json")
    if verdict.valid is True:
        assert result.code == 0, (verdict.why, result.err, path.read_text())
        assert result.json()["env"] == document.get("default_env", next(iter(document["env"])))
    elif verdict.valid is False:
        assert result.code == 2, (verdict.why, result.out, path.read_text())
        assert_one_error_line(result)
    else:
        assert result.code in (0, 2), result.err
        if result.code:
            assert_one_error_line(result)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes_config_files_never_traceback(run_cli: RunCli, tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "rollback.toml"
    path.write_bytes(data)
    result = run_cli("--config", str(path), "config", "check")
    assert result.code in (0, 2)
    if result.code:
        assert_one_error_line(result)


# ----------------------------------------------------------------------------- command lines

def _leaf_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    from rollback.cli import root

    found: list[tuple[tuple[str, ...], click.Command]] = []

    def walk(command: click.Command, path: tuple[str, ...], ctx: click.Context) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, (*path, name), click.Context(sub, parent=ctx, info_name=name))
        else:
            found.append((path, command))

    walk(root, (), click.Context(root, info_name="rollback"))
    return found


# Commands that start long-lived local processes (a whole sandbox, a drill) are exercised end to end in
# tests/sandbox; fuzzing them here would start servers in throwaway directories.
STARTS_PROCESSES = {("sandbox", "up"), ("sandbox", "reset"), ("drill",)}
COMMANDS = [(path, command) for path, command in _leaf_commands() if path not in STARTS_PROCESSES]
TEXT = st.text(alphabet=string.ascii_letters + string.digits + " ._:/[]@%'\"\u00e9\x1b", min_size=1,
               max_size=12).filter(lambda s: not s.startswith("-"))


def _value(draw: st.DrawFn, param: click.Parameter, verdict: Verdict, scratch: Path) -> str:
    """A value for ``param``: valid for its type, or (sometimes) one its type refuses."""
    kind = param.type
    callback = getattr(param.callback, "__qualname__", "")
    if param.callback is not None and not callback.startswith("_set."):
        # A callback may refuse what the type accepts (decide --changed): we cannot tell valid input.
        verdict.unknown(f"{param.name}: checked by {callback}")
    bad = verdict.breaks_here(draw, 3)
    if isinstance(kind, click.Choice):
        if bad:
            verdict.broken(f"{param.name}: not a choice")
            return "not-a-choice"
        return str(draw(st.sampled_from(list(kind.choices))))
    if isinstance(kind, click.IntRange | click.FloatRange):
        low = -(10**6) if kind.min is None else kind.min
        high = 10**6 if kind.max is None else kind.max
        if bad:
            verdict.broken(f"{param.name}: out of range or not a number")
            below = kind.min is not None and draw(st.booleans())
            return str(low - 1) if below else ("lots" if kind.max is None else str(high + 1))
        number = draw(st.integers(int(low) + (1 if kind.min_open else 0), int(high) - (1 if kind.max_open else 0)))
        return str(number)
    if type(kind) in (click.types.IntParamType, click.types.FloatParamType):
        if bad:
            verdict.broken(f"{param.name}: not a number")
            return "x7"
        return str(draw(st.integers(0, 10**6)))
    if isinstance(kind, click.Path):
        if kind.exists:
            if bad:
                verdict.broken(f"{param.name}: no such path")
                return str(scratch / "missing")
            existing = scratch / "existing.txt"
            existing.write_text("x")
            return str(existing)
        return str(scratch / draw(st.sampled_from(["out", "plan.json", "dir/x"])))
    if isinstance(kind, Duration):
        if bad:
            verdict.broken(f"{param.name}: not a duration")
            return "soon"
        return str(draw(st.sampled_from(["0s", "0", "1ms", "0.5s"])))  # short: a valid wait may be waited
    if type(kind) is click.types.StringParamType:  # a subclass may refuse text: "unknown" below
        return draw(TEXT)
    verdict.unknown(f"{param.name}: no generator for {type(kind).__name__}")
    return draw(TEXT)


@st.composite
def invocations(draw: st.DrawFn, scratch: Path) -> tuple[list[str], Verdict, bool]:
    """(argv, verdict, asks for help) for a command of the real tree."""
    verdict = Verdict(meant_broken=draw(st.booleans()))
    path, command = draw(st.sampled_from(COMMANDS))
    options: list[list[str]] = []
    positional: list[str] = []
    arguments_done = False  # after an argument left out, no later one (it would take its place)
    for param in command.params:
        if param.name == "help":
            continue
        if isinstance(param, click.Argument):
            if arguments_done or (not param.required and not draw(st.booleans())):
                arguments_done = True
                continue
            if param.required and verdict.breaks_here(draw):
                verdict.broken(f"{param.name}: missing argument")
                arguments_done = True
                continue
            positional.append(_value(draw, param, verdict, scratch))
        elif isinstance(param, click.Option):
            if param.required and verdict.breaks_here(draw):
                verdict.broken(f"{param.name}: missing required option")
                continue
            # --config with a path that does not exist stops every command at once: seldom.
            odds = 6 if param.name == "config_path" else 2
            if not param.required and draw(st.integers(0, odds - 1)) > 0:
                continue
            name = draw(st.sampled_from([o for o in param.opts if o.startswith("-")]))
            options.append([name] if param.is_flag else [name, _value(draw, param, verdict, scratch)])
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if len(positional) == len(arguments) and all(p.nargs == 1 for p in arguments) and verdict.breaks_here(draw, 2):
        positional.append("one-too-many")
        verdict.broken("extra argument")
    if verdict.meant_broken and verdict.valid is not False:
        options.append([draw(st.sampled_from(["--bogus", "--no-such-thing"]))])
        verdict.broken("unknown option")
    help_asked = verdict.valid is not False and draw(st.integers(0, 9)) == 0
    if help_asked:
        options.append(["--help"])
    root: list[str] = []
    if draw(st.integers(0, 4)) == 0:
        root += ["--env", draw(IDENT)]
    ordered = draw(st.permutations(options))
    return [*root, *path, *(token for group in ordered for token in group), *positional], verdict, help_asked


def test_the_generator_reaches_every_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"app rollback", "db restore", "infra assets", "journal show", "config check"} <= names


@pytest.mark.slow
@SETTINGS
@given(data=st.data())
def test_command_lines_from_the_real_command_tree(run_cli: RunCli, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, data: st.DataObject) -> None:
    # No rollback.toml anywhere and no credentials: a valid command line can only stop at the
    # missing config (exit 2 with a line that is not a usage error), refuse (4), or succeed
    # (help, journal, config init). An invalid one is a usage error: exit 2, never 0.
    for name in ("ROLLBACK_CONFIG", "ROLLBACK_ENV", "VERCEL_TOKEN", "DATABASE_URL", "VERCEL_API_URL",
                 "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with tempfile.TemporaryDirectory() as directory:  # fresh per example: nothing carries over
        scratch = Path(directory)
        argv, verdict, help_asked = data.draw(invocations(scratch))
        monkeypatch.chdir(scratch)
        monkeypatch.setenv("ROLLBACK_JOURNAL_DIR", str(scratch / "runs"))
        result = run_cli(*argv)
        monkeypatch.chdir(tmp_path)
    if help_asked:
        assert result.code == 0 and "Usage:" in result.out, (argv, result.err)
    elif verdict.valid is False:
        assert result.code == 2, (argv, verdict.why, result.out, result.err)
        line = assert_one_error_line(result)
        assert any(phrase in line for phrase in USAGE_ERRORS), (argv, verdict.why, line)
    else:
        # 3 only where "not there" is a status: no sandbox runs in the scratch directory.
        status = ["sandbox", "status"] in (argv[0:2], argv[2:4])  # after an optional "--env NAME"
        allowed = (0, 2, 3, 4) if status else (0, 2, 4)
        assert result.code in allowed, (argv, verdict.why, result.err)
        if result.code:
            line = assert_one_error_line(result)
            if verdict.valid is True:
                assert not any(phrase in line for phrase in USAGE_ERRORS), (argv, line)
