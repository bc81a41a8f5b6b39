"""The exception tree of rollback.

Every error a user can cause or meet is a :class:`RollbackError`. The CLI
catches only this class, prints ``error: <message> (<hint>)`` on one line and
exits with the error's ``exit_code``. Anything else is a bug and shows a
traceback.

::

    RollbackError                      exit 1  an operation failed
    ├── OperationFailed                exit 1  a step against a real system failed
    │   ├── VercelError                        Vercel API error (.code, .status)
    │   ├── AwsError                           AWS API error (.code)
    │   ├── DatabaseError                      PostgreSQL / pg_dump / pg_restore error
    │   └── PulumiError                        Pulumi CLI / backend error
    ├── BadInput                       exit 2  usage, argument values
    │   ├── ConfigError                        rollback.toml invalid (.key, .line)
    │   └── UnknownEnvironment                 --env names no environment (.env, .available)
    ├── ChecksFailed                   exit 3  checks ran and some failed (.checks)
    ├── Refused                        exit 4  we will not do it
    │   ├── ConfirmationRequired               destructive step without --yes and no TTY
    │   ├── UnsafePrecondition                 state makes the step unsafe
    │   └── LockHeld                           someone else holds the lock (.holder)
    └── Interrupted                    exit 130  Ctrl-C
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    "ConfigError",
    "ConfirmationRequired",
    "DatabaseError",
    "Interrupted",
    "LockHeld",
    "OperationFailed",
    "PulumiError",
    "Refused",
    "RollbackError",
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


class RollbackError(Exception):
    """Base class: a failure the user can act on.

    ``message`` says what went wrong, ``hint`` what to do about it. Both must be
    free of secrets: callers pass them through :func:`rollback.redact.redact`
    when they embed text from outside (an API body, a command's stderr).
    """

    exit_code: int = EXIT_FAILED
    default_hint: str = "see the journal with 'rollback journal list'"

    def __init__(self, message: str, hint: str | None = None, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.data = data
        for key, value in data.items():
            setattr(self, key, value)

    def one_line(self) -> str:
        """The line the CLI prints: ``<message> (<hint>)``, newlines folded."""
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class OperationFailed(RollbackError):
    exit_code = EXIT_FAILED


class VercelError(OperationFailed):
    default_hint = "check the Vercel dashboard and retry"

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None,
                 status: int | None = None, **data: Any) -> None:
        super().__init__(message, hint, code=code, status=status, **data)


class AwsError(OperationFailed):
    default_hint = "check the AWS console and your credentials, then retry"

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None,
                 **data: Any) -> None:
        super().__init__(message, hint, code=code, **data)


class DatabaseError(OperationFailed):
    # Not "check the database URL": that hint is given where the URL can be the cause
    # (rollback.adapters.postgres.hint_for), never for a full disk or a missing table.
    default_hint = "the message says what PostgreSQL or its tools reported; fix that, then run the command again"


class PulumiError(OperationFailed):
    default_hint = "run the same pulumi command by hand to see its full output"


class BadInput(RollbackError):
    exit_code = EXIT_BAD_INPUT
    default_hint = "see 'rollback --help'"


class ConfigError(BadInput):
    default_hint = "fix rollback.toml, then run 'rollback config check'"

    def __init__(self, message: str, hint: str | None = None, *, key: str | None = None,
                 line: int | None = None, path: str | None = None, **data: Any) -> None:
        super().__init__(message, hint, key=key, line=line, path=path, **data)


class UnknownEnvironment(BadInput):
    def __init__(self, env: str, available: Sequence[str]) -> None:
        names = ", ".join(available) or "none"
        super().__init__(
            f"unknown environment {env!r}",
            f"use one of: {names}",
            env=env,
            available=list(available),
        )


class ChecksFailed(RollbackError):
    exit_code = EXIT_CHECKS_FAILED
    default_hint = "see the failed checks above"

    def __init__(self, message: str, hint: str | None = None, *, checks: Sequence[Any] = (),
                 **data: Any) -> None:
        super().__init__(message, hint, checks=list(checks), **data)


class Refused(RollbackError):
    exit_code = EXIT_REFUSED
    default_hint = "nothing was changed"


class ConfirmationRequired(Refused):
    default_hint = "run it in a terminal to confirm, or pass --yes"


class UnsafePrecondition(Refused):
    pass


class LockHeld(Refused):
    default_hint = "wait for the other run to finish, or release the lock if it is stale"


class Interrupted(RollbackError):
    exit_code = EXIT_INTERRUPTED
    default_hint = "the journal shows the last completed step"
