"""``rollback infra``: the infrastructure layer.

Two families of commands share this group: the stack-state commands (history,
diff, preview, restore through Pulumi; ``rollback.cli.infra_stack``) and the
break-glass restores straight through boto3 (edge, assets, invalidate, drift;
``rollback.cli.infra_breakglass``; the whole distribution: ``cdn``,
``rollback.cli.infra_cdn``).
"""

from __future__ import annotations

import click

from rollback.cli import infra_breakglass, infra_cdn, infra_stack


@click.group()
def infra() -> None:
    """Infrastructure rollback: Pulumi stack history, diff, preview and restore,
    and break-glass CloudFront / Lambda@Edge / S3 restores."""


for _command in (*infra_stack.COMMANDS, *infra_breakglass.COMMANDS, infra_cdn.cdn):
    infra.add_command(_command)
