"""rollback: infrastructure-as-code rollbacks for Vercel, PostgreSQL/Prisma and AWS edge stacks.

The library API mirrors the CLI: every verb is a plain function in
``rollback.commands``; configuration is :func:`load_config`; the adapters a verb
uses come from one :class:`Services` built from that configuration; plans
(:class:`Plan`, :class:`Step`), the journal (:class:`Journal`) and the error tree
(:class:`RollbackError` and its subclasses, the ``EXIT_*`` codes) are importable
from here.

The error tree is imported eagerly (it is small); the rest on first use, so that
``import rollback`` (and ``rollback --help``) stays free of pydantic and friends.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rollback.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECKS_FAILED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    AwsError,
    BadInput,
    ChecksFailed,
    CommandFailed,
    ConfigError,
    ConfirmationRequired,
    DatabaseError,
    Interrupted,
    LockHeld,
    MissingExtra,
    OperationFailed,
    PulumiError,
    Refused,
    RollbackError,
    StackConfigError,
    StaleETag,
    UnknownEnvironment,
    UnsafePrecondition,
    VercelError,
)

if TYPE_CHECKING:
    from rollback.config import Config, load_config
    from rollback.context import Services
    from rollback.journal import Journal
    from rollback.plan import Plan, Step

__version__ = "0.1.0"

_LAZY = {
    "Config": "rollback.config",
    "load_config": "rollback.config",
    "Plan": "rollback.plan",
    "Step": "rollback.plan",
    "Journal": "rollback.journal",
    "Services": "rollback.context",
}

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
    "Config",
    "ConfigError",
    "ConfirmationRequired",
    "DatabaseError",
    "Interrupted",
    "Journal",
    "LockHeld",
    "MissingExtra",
    "OperationFailed",
    "Plan",
    "PulumiError",
    "Refused",
    "RollbackError",
    "Services",
    "StackConfigError",
    "StaleETag",
    "Step",
    "UnknownEnvironment",
    "UnsafePrecondition",
    "VercelError",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    """Import the lazily exported names on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rollback' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
