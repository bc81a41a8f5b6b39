"""rollback: infrastructure-as-code rollbacks for Vercel, PostgreSQL/Prisma and AWS edge stacks.

The library API mirrors the CLI: every verb is a plain function in
``rollback.commands``; configuration is :func:`load_config`; plans, the journal
and the error tree are importable from here.
"""

from __future__ import annotations

from rollback.errors import RollbackError

__version__ = "0.1.0"

__all__ = ["RollbackError", "__version__"]
