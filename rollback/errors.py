"""The exception tree of rollback.

Every error a user can cause or meet is a :class:`RollbackError`. The CLI
catches only this class, prints ``error: <message> (<hint>)`` on one line and
exits with the error's ``exit_code``. Anything else is a bug and shows a
traceback.

Errors carry their data as typed attributes (listed in brackets below); context
that no code branches on (for a reader of the traceback or of ``--json``) goes
in ``details``. Adapters map their library's errors at their edge and raise
ours ``from`` the original; to add to a hint, raise :meth:`RollbackError.with_hint`
``from`` the error instead of changing it in place.

::

    RollbackError                      exit 1  an operation failed
    ├── OperationFailed                exit 1  a step against a real system failed
    │   ├── VercelError                        Vercel API error (.code, .status, .transient, .sent,
    │   │                                      .retry_after); a timeout or a failure to connect has
    │   │                                      status None and transient True, and sent False only
    │   │                                      when no byte of the request left
    │   ├── AwsError                           AWS API error (.code, .status)
    │   │   └── StaleETag                      IfMatch no longer matches (.etag)
    │   ├── DatabaseError                      PostgreSQL / pg_dump / pg_restore error (.sqlstate,
    │   │                                      .returncode, .set_aside, .swapped)
    │   ├── PulumiError                        Pulumi CLI / backend error
    │   │   └── PlanViolated                   (rollback.adapters.pulumi) up --plan refused the plan
    │   ├── StackConfigError                   Pulumi.<stack>.yaml unreadable or unwritable (.path)
    │   ├── CommandFailed            its code  a guarded command failed (.exit_code, .record)
    │   └── AnswerRefused                      (rollback.adapters.http) an HTTP answer too long or too
    │                                          slow, not read further (.reason, .timed_out)
    ├── BadInput                       exit 2  usage, argument values (.path)
    │   ├── ConfigError                        rollback.toml invalid (.key, .line, .path)
    │   ├── UnknownEnvironment                 --env names no environment (.env, .available)
    │   └── MissingExtra                       an optional extra is not installed (.extra, .module)
    ├── ChecksFailed                   exit 3  checks ran and some failed (.checks, .document)
    ├── Refused                        exit 4  we will not do it
    │   ├── ConfirmationRequired               destructive step without --yes and no TTY
    │   ├── UnsafePrecondition                 state makes the step unsafe
    │   └── LockHeld                           someone else holds the lock (.holder)
    └── Interrupted                    exit 130  Ctrl-C, SIGTERM, SIGHUP (.swapped)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CHECKS_FAILED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "AwsError",
    "BadInput",
    "ChecksFailed",
    "CommandFailed",
    "ConfigError",
    "ConfirmationRequired",
    "DatabaseError",
    "Interrupted",
    "LockHeld",
    "MissingExtra",
    "OperationFailed",
    "PulumiError",
    "Refused",
    "RollbackError",
    "StackConfigError",
    "StaleETag",
    "UnknownEnvironment",
    "UnsafePrecondition",
    "VercelError",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CHECKS_FAILED = 3
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130

_E = TypeVar("_E", bound="RollbackError")


class RollbackError(Exception):
    """Base class: a failure the user can act on.

    ``message`` says what went wrong, ``hint`` what to do about it. Both must be
    free of secrets: callers pass them through :func:`rollback.redact.redact`
    when they embed text from outside (an API body, a command's stderr).
    ``details`` holds context no code branches on; typed data lives in each
    class's own attributes (named in ``fields``).
    """

    exit_code: int = EXIT_FAILED
    default_hint: str = "see the journal with 'rollback journal list'"
    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str, hint: str | None = None, *,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.details: dict[str, Any] = dict(details or {})

    @property
    def data(self) -> dict[str, Any]:
        """The typed fields and the details in one mapping (for logs and tests)."""
        return {**{name: getattr(self, name) for name in self.fields}, **self.details}

    def with_hint(self: _E, hint: str) -> _E:
        """A copy of this error (same class, same fields) with another hint; raise it ``from`` this one."""
        other = copy.copy(self)
        other.hint = hint
        other.__cause__ = self
        return other

    def one_line(self) -> str:
        """The line the CLI prints: ``<message> (<hint>)``, newlines folded."""
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())

    def to_dict(self) -> dict[str, Any]:
        """The error as ``--json`` shows it."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class OperationFailed(RollbackError):
    """A step against a real system failed (exit 1)."""

    exit_code = EXIT_FAILED


class VercelError(OperationFailed):
    """The Vercel API answered an error, timed out or could not be reached."""

    default_hint = "check the Vercel dashboard and retry"
    fields: ClassVar[tuple[str, ...]] = ("code", "status", "transient", "sent", "retry_after")

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None,
                 status: int | None = None, transient: bool = False, sent: bool = True,
                 retry_after: float | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.code = code
        self.status = status
        # Worth retrying: a timeout, a dropped connection, 429 or 5xx.
        self.transient = transient
        # Whether any byte of the request may have reached Vercel (False only for a failed connect).
        self.sent = sent
        self.retry_after = retry_after


class AwsError(OperationFailed):
    """An AWS API call failed (``code`` is botocore's error code, ``status`` the HTTP or resource status)."""

    default_hint = "check the AWS console and your credentials, then retry"
    fields: ClassVar[tuple[str, ...]] = ("code", "status")

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None,
                 status: int | str | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.code = code
        self.status = status


class StaleETag(AwsError):
    """``IfMatch`` no longer matches: someone else updated the distribution since we read it."""

    default_hint = "re-read the distribution and plan again"
    fields: ClassVar[tuple[str, ...]] = ("code", "status", "etag")

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None,
                 etag: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, code=code, details=details)
        self.etag = etag


class DatabaseError(OperationFailed):
    """PostgreSQL, pg_dump or pg_restore reported an error."""

    # Not "check the database URL": that hint is given where the URL can be the cause
    # (rollback.adapters.postgres.hint_for), never for a full disk or a missing table.
    default_hint = "the message says what PostgreSQL or its tools reported; fix that, then run the command again"
    fields: ClassVar[tuple[str, ...]] = ("sqlstate", "returncode", "set_aside", "swapped")

    def __init__(self, message: str, hint: str | None = None, *, sqlstate: str | None = None,
                 returncode: int | None = None, set_aside: str | None = None,
                 swapped: Mapping[str, Any] | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.sqlstate = sqlstate
        self.returncode = returncode
        # After a swap: the name the previous database is kept under, and the swap's record.
        self.set_aside = set_aside
        self.swapped = dict(swapped) if swapped is not None else None


class PulumiError(OperationFailed):
    """The Pulumi CLI or its backend failed."""

    default_hint = "run the same pulumi command by hand to see its full output"


class StackConfigError(OperationFailed):
    """The stack config file cannot be read, parsed or written."""

    default_hint = "fix the file by hand, or set the value with 'pulumi config set'"
    fields: ClassVar[tuple[str, ...]] = ("path",)

    def __init__(self, message: str, hint: str | None = None, *, path: str | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.path = path


class CommandFailed(OperationFailed):
    """A command run under a guard failed: rollback exits with the command's own status."""

    fields: ClassVar[tuple[str, ...]] = ("exit_code", "record")

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int = EXIT_FAILED,
                 record: Mapping[str, Any] | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.exit_code = exit_code
        # What was taken just before the command ran (a backup or a snapshot).
        self.record = dict(record or {})


class BadInput(RollbackError):
    """Usage or argument values are wrong (exit 2)."""

    exit_code = EXIT_BAD_INPUT
    default_hint = "see 'rollback --help'"
    fields: ClassVar[tuple[str, ...]] = ("path",)

    def __init__(self, message: str, hint: str | None = None, *, path: str | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.path = path


class ConfigError(BadInput):
    """rollback.toml (or a setting from the environment) is invalid."""

    default_hint = "fix rollback.toml, then run 'rollback config check'"
    fields: ClassVar[tuple[str, ...]] = ("key", "line", "path")

    def __init__(self, message: str, hint: str | None = None, *, key: str | None = None,
                 line: int | None = None, path: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, path=path, details=details)
        self.key = key
        self.line = line


class UnknownEnvironment(BadInput):
    """``--env`` names an environment rollback.toml does not define."""

    fields: ClassVar[tuple[str, ...]] = ("env", "available")

    def __init__(self, env: str, available: Sequence[str]) -> None:
        names = ", ".join(available) or "none"
        super().__init__(f"unknown environment {env!r}", f"use one of: {names}")
        self.env = env
        self.available = list(available)


class MissingExtra(BadInput):
    """A command needs an optional extra (``pip install 'rollback[extra]'``) that is not installed."""

    fields: ClassVar[tuple[str, ...]] = ("extra", "module")

    def __init__(self, message: str, hint: str | None = None, *, extra: str, module: str) -> None:
        super().__init__(message, hint)
        self.extra = extra
        self.module = module


class ChecksFailed(RollbackError):
    """Checks ran and some failed (exit 3)."""

    exit_code = EXIT_CHECKS_FAILED
    default_hint = "see the failed checks above"
    fields: ClassVar[tuple[str, ...]] = ("checks", "document")

    def __init__(self, message: str, hint: str | None = None, *, checks: Sequence[Any] = (),
                 document: Mapping[str, Any] | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.checks = list(checks)
        # The full result (what --json prints), when the checks produced one.
        self.document = dict(document) if document is not None else None


class Refused(RollbackError):
    """We will not do it; nothing was changed (exit 4)."""

    exit_code = EXIT_REFUSED
    default_hint = "nothing was changed"


class ConfirmationRequired(Refused):
    """A destructive step needs confirmation: no TTY to ask on and no ``--yes``."""

    default_hint = "run it in a terminal to confirm, or pass --yes"


class UnsafePrecondition(Refused):
    """The state of the world makes the step unsafe."""


class LockHeld(Refused):
    """Someone else holds the lock (``holder`` describes them)."""

    default_hint = "wait for the other run to finish, or release the lock if it is stale"
    fields: ClassVar[tuple[str, ...]] = ("holder",)

    def __init__(self, message: str, hint: str | None = None, *, holder: Any = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.holder = holder


class Interrupted(RollbackError):
    """Ctrl-C or a signal stopped the run (exit 130)."""

    exit_code = EXIT_INTERRUPTED
    default_hint = "the journal shows the last completed step"
    fields: ClassVar[tuple[str, ...]] = ("swapped",)

    def __init__(self, message: str, hint: str | None = None, *, swapped: Mapping[str, Any] | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        # Interrupted after a database swap completed: the swap's record.
        self.swapped = dict(swapped) if swapped is not None else None
