"""The error tree: typed fields, exit codes, one-line docstrings, and hints extended by a new error."""

from __future__ import annotations

import inspect

import pytest

import rollback
from rollback import errors
from rollback.errors import StackConfigError as StackConfigErrorThere
from rollback.errors import StaleETag as CloudfrontStaleETag


def _classes() -> list[type[errors.RollbackError]]:
    return [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, errors.RollbackError)]


def test_every_error_has_a_docstring_and_is_exported() -> None:
    for cls in _classes():
        assert cls.__doc__ and cls.__doc__.strip(), cls.__name__
        assert cls.__name__ in errors.__all__
        assert getattr(rollback, cls.__name__) is cls
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the drawn tree"


@pytest.mark.parametrize(("cls", "parent", "code"), [
    (errors.StaleETag, errors.AwsError, errors.EXIT_FAILED),
    (errors.StackConfigError, errors.OperationFailed, errors.EXIT_FAILED),
    (errors.MissingExtra, errors.BadInput, errors.EXIT_BAD_INPUT),
    (errors.LockHeld, errors.Refused, errors.EXIT_REFUSED),
    (errors.ChecksFailed, errors.RollbackError, errors.EXIT_CHECKS_FAILED),
])
def test_parents_and_exit_codes(cls: type[errors.RollbackError], parent: type, code: int) -> None:
    assert issubclass(cls, parent)
    assert cls.exit_code == code


def test_moved_classes_stay_importable_from_their_old_modules() -> None:
    assert CloudfrontStaleETag is errors.StaleETag
    assert StackConfigErrorThere is errors.StackConfigError


def test_vercel_error_fields_and_defaults() -> None:
    plain = errors.VercelError("boom")
    assert (plain.code, plain.status, plain.transient, plain.sent, plain.retry_after) == (None, None, False, True, None)
    connect = errors.VercelError("no route", code="connect", transient=True, sent=False)
    assert connect.data == {"code": "connect", "status": None, "transient": True, "sent": False,
                            "retry_after": None}


def test_command_failed_exits_with_the_commands_status() -> None:
    failed = errors.CommandFailed("guarded command failed", exit_code=7, record={"backup": "b1"})
    assert failed.exit_code == 7 and failed.record == {"backup": "b1"}
    assert errors.OperationFailed.exit_code == errors.EXIT_FAILED


def test_with_hint_is_a_new_error_of_the_same_kind() -> None:
    original = errors.ConfigError("bad key", "fix it", key="vercel.project", line=3, path="rollback.toml",
                                  details={"extra": 1})
    again = original.with_hint("fix it; then run again")
    assert again is not original and type(again) is errors.ConfigError
    assert (again.key, again.line, again.path, again.details) == ("vercel.project", 3, "rollback.toml", {"extra": 1})
    assert again.hint == "fix it; then run again" and original.hint == "fix it"
    assert again.__cause__ is original
    assert again.one_line() == "bad key (fix it; then run again)"
