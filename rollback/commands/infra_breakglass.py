"""Break-glass infrastructure restores straight through boto3, for when the Pulumi
path is too slow or broken: ``edge``, ``assets``, ``invalidate`` and ``drift``.

Each state-changing verb is split in two: ``plan_*`` reads and returns a
:class:`~rollback.plan.Plan` (nothing changes); :class:`EdgeHandlers`,
:class:`AssetsHandlers` and :class:`InvalidateHandlers` hold the step handlers
(a read-only check and an act each) that :func:`rollback.runner.execute` runs,
journaled, dry run or not. The handlers carry out exactly the planned change,
read from the step's params; where the world moved in between (a stale
CloudFront ETag, an S3 key written since the plan), they re-check and stop
rather than overwrite someone else's change.

The verbs live in one module each (:mod:`~rollback.commands.infra_edge`,
:mod:`~rollback.commands.infra_assets`, :mod:`~rollback.commands.infra_invalidate`; what they act
on in :mod:`~rollback.commands.infra_resources`); this module re-exports them. Adapters come from
:class:`rollback.context.Services`.

Resources come from the command line (``--distribution``, ``--function``,
``--bucket``), else ``[env.<name>.aws]`` in rollback.toml, else (with
``aws.from_stack_outputs``) the Pulumi stack's outputs.
"""

from __future__ import annotations

from rollback.commands.infra_assets import AssetsHandlers, AssetsPlan, plan_assets, stamp
from rollback.commands.infra_edge import (
    EdgeHandlers,
    EdgePlan,
    PreparedEdge,
    edge_document,
    edge_summary,
    plan_edge,
    prepare_edge,
    run_edge,
)
from rollback.commands.infra_invalidate import InvalidateHandlers, drift, load_checkpoint_file, plan_invalidate
from rollback.commands.infra_resources import EDGE_PIN_KEY, Resources, pin_command, resolve_resources
from rollback.context import EDGE_REGION

__all__ = [
    "EDGE_PIN_KEY",
    "EDGE_REGION",
    "AssetsHandlers",
    "AssetsPlan",
    "EdgeHandlers",
    "EdgePlan",
    "InvalidateHandlers",
    "PreparedEdge",
    "Resources",
    "drift",
    "edge_document",
    "edge_summary",
    "load_checkpoint_file",
    "pin_command",
    "plan_assets",
    "plan_edge",
    "plan_invalidate",
    "prepare_edge",
    "resolve_resources",
    "run_edge",
    "stamp",
]
