"""The sandbox's world: a bad deploy across every layer, seeded into the local stand-ins.

What it seeds (names follow the Pulumi program in ``infra/`` for project
``rollback``, stack ``sandbox``, so the name prefix is ``rollback-sandbox``):

- **Vercel** (the emulator): project ``demo`` of team ``demo-team``; production
  serves the bad deployment "Add new feature" (3 minutes old, 500 on
  ``/api/health``, slow ``/api/*``); the good one, "Add stats cache" (2 hours
  old), is the instant-rollback candidate. With ``rolling`` (``sandbox up
  --rolling``) the bad deployment is instead the canary of a Vercel rolling
  release at 10 % (manual approval; it crashes: 500 on every request), and the
  good one, its base, serves the other 90 %: a 10 % error rate.
- **Edge**: Lambda@Edge ``rollback-sandbox-security-headers`` versions 1, 2
  (good) and 3 (bad, published with the bad deploy); the distribution's
  viewer-response association names version 3.
- **Assets**: versioned bucket ``rollback-sandbox-assets``; the distribution
  serves ``releases/r42/`` (origin path ``/releases/r42``). The good release
  was uploaded 2 hours ago; the bad deploy overwrote ``index.html`` and
  ``app.js`` and deleted ``app.css`` 4 minutes ago, so
  ``rollback infra assets --prefix releases/r42/ --before "30m ago"`` restores it.
- **Database** (the throwaway PostgreSQL): database ``app`` managed by Prisma
  Migrate (``User``, ``Integration``, ``UserStats``; relationMode "prisma",
  so no foreign keys); a verified backup taken with ``rollback db backup``
  *before* the damage; then a failed migration and the damage it did (users
  deleted, integrations lost, stats zeroed, orphans), so a restore of that
  backup repairs it. ``prisma/migrations/`` holds the local migration files.
- **RDS** (moto, made as strict as RDS by :mod:`rollback.sandbox.rds`):
  instance ``rollback-sandbox-db`` created 3 days ago with 7 days of automated
  backups (so ``--to-time "15m ago"`` is inside its window), its master
  password managed by RDS in Secrets Manager (as ``infra/database.py``
  declares it), and a manual snapshot taken before the release.
- **Alarms**: the six rollback criterion alarms and the composite alarm of
  ``infra/alarms.py``; the 5xx, edge-errors, cache-hit and composite alarms in
  ALARM since 1 minute ago, with 15 minutes of datapoints that turn bad at
  the deploy. The app server's monitor keeps publishing and re-evaluating.
- **Pulumi**: a self-managed ``file://`` backend with four updates of stack
  ``sandbox``; the last one (4 minutes ago) moved the edge pin to the bad
  version 3. Its outputs name the resources above. ``pulumi/`` is the project:
  a git repository of this repository's own ``Pulumi.yaml`` and ``infra/``
  program at three versions (:data:`rollback.sandbox.seed_pulumi.PROGRAM_VERSIONS`: HTTP/2 only; then HTTP/3;
  then IPv6 for viewers, today's program), each update's ``git.head`` the commit
  it ran from, and the stack config (every required key;
  ``rollback:edgeFunctionVersion: "3"``), so ``rollback infra preview --to 3
  --offline`` checks out version 3's program and shows what the program change
  does beside the config's.

Timestamps that only moto keeps (object versions, function versions, alarm
state changes, the RDS instance's creation) are moved back in the moto process
itself (:func:`rollback.sandbox.seed_aws.backdate_aws`), which is why moto runs inside the supervisor.

Each system's seed is a module of its own: :mod:`~rollback.sandbox.seed_vercel`,
:mod:`~rollback.sandbox.seed_aws` (with the standalone moto server's smaller edge seed),
:mod:`~rollback.sandbox.seed_db`, :mod:`~rollback.sandbox.seed_pulumi`, :mod:`~rollback.sandbox.seed_git`
and :mod:`~rollback.sandbox.seed_config` (the rollback.toml); this one holds what they share: the
world's names and numbers, and its :class:`Timeline`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rollback.sandbox.vercel_state import DEMO

__all__ = [
    "ACCOUNT",
    "CANARY_PERCENT",
    "DEMO",
    "ENV",
    "PREFIX",
    "REGION",
    "Timeline",
    "iso",
    "naive",
]

ENV = "sandbox"
WEBHOOK_ENV = "SANDBOX_WEBHOOK_URL"  # the variable holding the sandbox incident channel's URL (a secret)
PROJECT = "rollback"
STACK = "sandbox"
PREFIX = f"{PROJECT}-{STACK}"
ACCOUNT = "123456789012"
REGION = "us-east-1"
EDGE_FUNCTION = f"{PREFIX}-security-headers"
ASSETS_BUCKET = f"{PREFIX}-assets"
RELEASE = "r42"
DB_INSTANCE = f"{PREFIX}-db"
DB_SNAPSHOT = f"{DB_INSTANCE}-pre-{RELEASE}"
DISTRIBUTION_ID = "E2SANDBOXR42CF"
GOOD_EDGE_VERSION = "2"
BAD_EDGE_VERSION = "3"
VERCEL_JOB_SECONDS = 0.5
CLOUDFRONT_DEPLOY_SECONDS = 1.0
# The stack's one secret (the X-Origin-Verify value CloudFront sends to the app). The database
# password is not in stack config: RDS manages it in Secrets Manager (infra/database.py).
ORIGIN_SECRET_KEY = f"{PROJECT}:originVerifySecret"

# The runbook's thresholds, as infra/settings.py AlarmThresholds defaults them.
DB_MAX_CONNECTIONS = 405  # db.t4g.medium, as infra/settings.py computes it (tests/infra_program/test_sandbox_alarms.py)
DB_ALLOCATED_GB = 20


@dataclass(frozen=True)
class Timeline:
    """When things happened in the sandbox's story (UTC)."""

    now: dt.datetime

    @property
    def created(self) -> dt.datetime:  # the stack, the RDS instance, edge v1
        return self.now - dt.timedelta(days=3)

    @property
    def edge_v2(self) -> dt.datetime:
        return self.now - dt.timedelta(hours=26)

    @property
    def good_release(self) -> dt.datetime:
        return self.now - dt.timedelta(hours=2)

    @property
    def bad_deploy(self) -> dt.datetime:  # stack update, edge v3, bad assets
        return self.now - dt.timedelta(minutes=4)

    @property
    def bad_app(self) -> dt.datetime:  # the Vercel deployment (the emulator's seed: 0.05 h ago) and the migration
        return self.now - dt.timedelta(minutes=3)

    @property
    def detected(self) -> dt.datetime:  # the alarms went to ALARM, after the bad app went live (3 min ago + 60 s)
        return self.now - dt.timedelta(minutes=1)

    def to_dict(self) -> dict[str, str]:
        return {name: iso(getattr(self, name)) for name in
                ("created", "edge_v2", "good_release", "bad_deploy", "bad_app", "detected", "now")}


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def naive(value: dt.datetime) -> dt.datetime:
    """moto keeps naive UTC datetimes."""
    return value.astimezone(dt.UTC).replace(tzinfo=None)

CANARY_PERCENT = 10.0  # the --rolling world's canary share
