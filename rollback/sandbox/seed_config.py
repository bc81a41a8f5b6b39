"""The sandbox's rollback.toml (and where its journals go)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollback.sandbox.seed import ENV, REGION, WEBHOOK_ENV
from rollback.sandbox.vercel_state import DEMO


def journal_dir_for(directory: Path) -> Path:
    """Where the sandbox's journals go: beside DIR in ``.rollback/runs`` when DIR is inside a
    ``.rollback`` directory (the default), so ``rollback journal``/``report`` find them from the
    working directory without a config; else inside DIR."""
    return directory.parent / "runs" if directory.parent.name == ".rollback" else directory / "runs"


def write_config(directory: Path, *, app_url: str, aws: Mapping[str, Any], pulumi: Mapping[str, Any]) -> Path:
    """``DIR/rollback.toml`` for environment ``sandbox``: every layer configured."""
    journal = journal_dir_for(directory)
    journal_value = "../runs" if journal == directory.parent / "runs" else "runs"
    text = f"""# Written by `rollback sandbox up`: the sandbox's environment. Secrets are not here:
# `eval "$(rollback sandbox status)"` exports VERCEL_TOKEN, DATABASE_URL and the AWS test credentials.
default_env = "{ENV}"

[journal]
dir = "{journal_value}"

[env.{ENV}]
sandbox = true  # a practice world: `rollback drill --env {ENV}` needs no --i-know-this-is-production

[env.{ENV}.vercel]
project = "{DEMO.project_name}"
team = "{DEMO.team_id}"

[env.{ENV}.health]
base_url = "{app_url}"
paths = ["/", "/api/health"]
version_path = "/api/version"
timeout = 5

[env.{ENV}.database]
url_env = "DATABASE_URL"
tables = ["User", "Integration", "UserStats"]
grow_only = ["User"]            # rows are never deleted: fewer than in the backup = data loss
backups_dir = "backups"
migrations_dir = "prisma/migrations"
# relationMode = "prisma": no foreign keys, so the relations to check for orphans are named here
relations = [
  {{ child = "Integration.userId", parent = "User.id" }},
  {{ child = "UserStats.userId", parent = "User.id" }},
]

[env.{ENV}.aws]
region = "{REGION}"
distribution_id = "{aws['distribution_id']}"
edge_function = "{aws['edge_function']}"
assets_bucket = "{aws['assets_bucket']}"
db_instance = "{aws['db_instance']}"

[env.{ENV}.pulumi]
stack = "{pulumi['stack']}"
project = "{pulumi['project']}"
backend_url = "{pulumi['backend_url']}"
project_dir = "pulumi"

[env.{ENV}.verify]
api_paths = ["/api/health", "/api/version", "/api/integrations"]
page_paths = ["/"]
# The sandbox's monitor measures every second where CloudWatch aggregates per minute: its CloudFront
# rates are judged over the last 12 s (0.2 min), as production's are over the last 5 min.
metrics_minutes = 0.2

# The sandbox's own incident channel: a Slack-compatible webhook served by the app server
# (`curl $APP_URL/_sandbox/channel` lists the posts). Its URL is a secret, exported by `status`.
[env.{ENV}.notify]
webhook_env = "{WEBHOOK_ENV}"

[[env.{ENV}.verify.flows]]
name = "login"
method = "POST"
path = "/api/auth/login"
body = '{{"email": "user1@example.com", "password": "sandbox"}}'
status = 200
body_contains = '"ok": true'

[[env.{ENV}.verify.flows]]
name = "registration"
method = "POST"
path = "/api/auth/register"
body = '{{"email": "new@example.com", "password": "sandbox"}}'
status = 201

[[env.{ENV}.verify.flows]]
name = "integrations"
path = "/api/integrations"
body_contains = "github"

[env.{ENV}.targets]
detect = 5
decide = 2
rollback = 10
verify = 5
total = 15
"""
    path = directory / "rollback.toml"
    last = directory / GENERATED_CONFIG
    if path.is_file() and last.is_file():
        current, before = path.read_text(encoding="utf-8"), last.read_text(encoding="utf-8")
        if current != before:  # edited since the sandbox wrote it: keep the edits
            text, generated = carry_over(current, before, text), text
            last.write_text(generated, encoding="utf-8")
            path.write_text(text, encoding="utf-8")
            return path
    last.write_text(text, encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    return path


# What the sandbox last wrote to DIR/rollback.toml, to tell the user's edits from its own lines.
GENERATED_CONFIG = ".rollback.toml.generated"


def carry_over(current: str, before: str, after: str) -> str:
    """The user's ``current`` config with the sandbox's own changes from ``before`` to ``after`` applied
    (a new port of the app after ``up``): a line the sandbox changed is replaced where it still reads as
    the sandbox wrote it; every line the user changed or added stays."""
    import difflib

    old_lines, new_lines = before.splitlines(keepends=True), after.splitlines(keepends=True)
    changes: dict[str, str] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False).get_opcodes():
        if tag == "replace" and i2 - i1 == j2 - j1:
            changes.update(zip(old_lines[i1:i2], new_lines[j1:j2], strict=True))
    return "".join(changes.get(line, line) for line in current.splitlines(keepends=True))
