"""Self-managed (DIY) Pulumi backends built from the real checkpoints in tests/stack/fixtures/.

:func:`build_backend` writes a backend directory (through
:func:`rollback.sandbox.pulumi_backend.build_backend`, which the sandbox uses
too) with the layout of Pulumi's ``pkg/backend/diy``, in the project or legacy
layout, plain or gzip- or zstd-compressed.

Each update's checkpoint is one of the real fixture checkpoints (v0, v1, v3 and
the one with encrypted secrets: a long-lived stack carries old checkpoint
versions in its history), with its URNs moved to ``staging::rollback`` and the
resources a rollback touches added: the stack (with its outputs), the
Lambda@Edge function, the CloudFront distribution (edge version in
``defaultCacheBehavior.lambdaFunctionAssociations[0].lambdaArn``, release in
``origins[0].originPath``, the origin-verify secret as a secret input of the
app origin's header) and the database.

Secrets use Pulumi's ``b64`` secrets provider format (the one the fixture
checkpoints declare): ciphertext = base64 of the value. The recorded-CLI double
"decrypts" them the same way.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.sandbox import pulumi_backend as sandbox_backend
from rollback.sandbox.pulumi_backend import BackendUpdate, encrypt, secret_property

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "rollback"
STACK = "staging"
ACCOUNT = "123456789012"
FUNCTION = "rollback-staging-security-headers"
DISTRIBUTION_ID = "E2QWRUHAPOMQZL"
START = 1_764_000_000  # 2025-11-24T16:00:00Z
SECRET_KEY = "rollback:originVerifySecret"


@dataclass(frozen=True)
class Update:
    message: str
    edge_version: str
    release: str
    origin_secret: str
    base: str
    git_head: str


# The stack's history: edge version, release (origin path) and a secret (the X-Origin-Verify value
# CloudFront sends to the app) rotated along the way.
UPDATES: tuple[Update, ...] = (
    Update("initial deploy", "5", "2026-11-25.1", "first-password-1", "checkpoint-v0.json", "a1" * 20),
    Update("edge function v6", "6", "2026-11-25.1", "first-password-1", "checkpoint-v1.json", "b2" * 20),
    Update("release 2026-11-26.1", "6", "2026-11-26.1", "first-password-1", "checkpoint-v3.json", "c3" * 20),
    Update("edge v7, rotate origin secret", "7", "2026-11-26.1", "second-password-2", "checkpoint-v3.json",
           "d4" * 20),
    Update("release 2026-11-27.2", "7", "2026-11-27.2", "second-password-2", "checkpoint-v3.json", "e5" * 20),
)


def base_config() -> dict[str, Any]:
    """The repository's staging stack config (plain values), read without the program's files."""
    from rollback.adapters.stack_config import read_stack_config

    return read_stack_config(REPO_ROOT / "stacks" / "Pulumi.staging.yaml")


def history_config(update: Update) -> dict[str, Any]:
    """The config an update ran with, as a DIY ``.history.json`` stores it."""
    config: dict[str, Any] = dict(base_config())
    config["rollback:edgeFunctionVersion"] = update.edge_version
    config["rollback:assetsRelease"] = update.release
    config[SECRET_KEY] = {"secure": encrypt(update.origin_secret)}
    return config


def _urn(typ: str, name: str, parent_type: str | None = None) -> str:
    qualified = f"{parent_type}${typ}" if parent_type else typ
    return f"urn:pulumi:{STACK}::{PROJECT}::{qualified}::{name}"


def rollback_resources(update: Update) -> list[dict[str, Any]]:
    stack_urn = _urn("pulumi:pulumi:Stack", f"{PROJECT}-{STACK}")
    function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{FUNCTION}"
    version_arn = f"{function_arn}:{update.edge_version}"
    bucket = "rollback-staging-assets"
    outputs = {
        "distributionId": DISTRIBUTION_ID,
        "distributionDomain": "d111111abcdef8.cloudfront.net",
        "edgeFunctionName": FUNCTION,
        "edgeFunctionVersion": update.edge_version,
        "edgeFunctionVersionArn": version_arn,
        "assetsBucket": bucket,
        "assetsRelease": update.release,
        "dbInstanceId": "rollback-staging-db",
        "alarmNames": ["rollback-staging-5xx", "rollback-staging-edge-errors"],
        "compositeAlarmName": "rollback-staging-rollback",
        "alertTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:rollback-staging-alerts",
        "operatorRoleArn": f"arn:aws:iam::{ACCOUNT}:role/rollback-staging-operator",
    }
    return [
        {"urn": stack_urn, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": outputs},
        {
            "urn": _urn("aws:lambda/function:Function", "security-headers"),
            "custom": True, "id": FUNCTION, "type": "aws:lambda/function:Function", "parent": stack_urn,
            "inputs": {"name": FUNCTION, "publish": True, "runtime": "nodejs20.x", "handler": "index.handler"},
            "outputs": {"name": FUNCTION, "arn": function_arn, "version": update.edge_version,
                        "qualifiedArn": version_arn},
        },
        {
            "urn": _urn("aws:cloudfront/distribution:Distribution", "cdn"),
            "custom": True, "id": DISTRIBUTION_ID, "type": "aws:cloudfront/distribution:Distribution",
            "parent": stack_urn,
            "inputs": {
                "enabled": True,
                "defaultCacheBehavior": {
                    "targetOriginId": "assets",
                    "viewerProtocolPolicy": "redirect-to-https",
                    "lambdaFunctionAssociations": [{"eventType": "viewer-response", "lambdaArn": version_arn}],
                },
                "origins": [{"originId": "assets", "domainName": f"{bucket}.s3.us-east-1.amazonaws.com",
                             "originPath": f"/releases/{update.release}"},
                            {"originId": "app", "domainName": "huntaze-staging.vercel.app",
                             "customHeaders": [{"name": "X-Origin-Verify",
                                                "value": secret_property(update.origin_secret)}]}],
                "priceClass": "PriceClass_100",
            },
            "outputs": {"id": DISTRIBUTION_ID, "status": "Deployed"},
        },
        {
            "urn": _urn("aws:rds/instance:Instance", "db"),
            "custom": True, "id": "rollback-staging-db", "type": "aws:rds/instance:Instance", "parent": stack_urn,
            "inputs": {"identifier": "rollback-staging-db", "engine": "postgres", "engineVersion": "16",
                       "instanceClass": "db.t4g.small", "manageMasterUserPassword": True},
            "outputs": {"identifier": "rollback-staging-db"},
        },
    ]


def checkpoint(update: Update, *, pending: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The stack file after ``update``: the real fixture checkpoint plus the rollback resources."""
    text = (FIXTURES / update.base).read_text(encoding="utf-8")
    text = text.replace("foo::countdown", f"{STACK}::{PROJECT}")
    document = json.loads(text)
    body = document.get("checkpoint", document)
    if "target" in body:
        body["target"] = STACK
    if "stack" in body:
        body["stack"] = f"organization/{PROJECT}/{STACK}"
    latest = body["latest"]
    latest["resources"] = rollback_resources(update) + latest["resources"]
    if "secrets_providers" in latest:
        latest["secrets_providers"] = {"type": "b64", "state": {}}
    if pending:
        latest["pending_operations"] = pending
    return copy.deepcopy(document)


def build_backend(root: Path, *, layout: str = "project", compression: str | None = None,
                  updates: tuple[Update, ...] = UPDATES, pending: list[dict[str, Any]] | None = None,
                  extra_config: dict[int, dict[str, Any]] | None = None) -> Path:
    """Write a DIY backend with one history/checkpoint pair per update; returns ``root``.

    ``compression`` is ``None``, ``"gz"``, ``"zst"`` or ``"mixed"`` (alternating per update).
    ``extra_config``: version (1 = oldest) -> more config keys that update ran with.
    """
    written = [
        BackendUpdate(message=update.message, start_time=START + number * 3600,
                      config={**history_config(update), **(extra_config or {}).get(number, {})},
                      checkpoint=checkpoint(update),
                      changes={"create": 34} if number == 1 else {"same": 33, "update": 1},
                      git_head=update.git_head)
        for number, update in enumerate(updates, start=1)
    ]
    return sandbox_backend.build_backend(root, project=PROJECT, stack=STACK, updates=written, layout=layout,
                                         compression=compression, current=checkpoint(updates[-1], pending=pending))


def write_lock(root: Path, *, layout: str = "project") -> Path:
    """A lock file as a running ``pulumi up`` leaves it (Pulumi's ``lockContent``)."""
    return sandbox_backend.write_lock(root, project=PROJECT, stack=STACK, layout=layout)


def build_project(root: Path, *, current: Update = UPDATES[-1]) -> Path:
    """A copy of the repository's Pulumi project (Pulumi.yaml, infra/, stacks/) whose staging
    config matches ``current``, so tests never touch the real files."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO_ROOT / "infra", root / "infra",
                    ignore=shutil.ignore_patterns("__pycache__", "node_modules", ".venv"))
    (root / "stacks").mkdir(exist_ok=True)
    text = (REPO_ROOT / "stacks" / "Pulumi.staging.yaml").read_text(encoding="utf-8")
    path = root / "stacks" / "Pulumi.staging.yaml"
    path.write_text(text, encoding="utf-8")
    from rollback.adapters.stack_config import write_stack_config

    write_stack_config(path, {"rollback:edgeFunctionVersion": current.edge_version,
                              "rollback:assetsRelease": current.release})
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"  {SECRET_KEY}:\n    secure: {encrypt(current.origin_secret)}\n")
    return root


def git(path: Path, *args: str) -> str:
    """``git ARGS`` in ``path`` with a fixed identity and no user configuration."""
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin", "HOME": str(path)}
    return subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_two_programs(project: Path, *, old_requirements: str | None = None,
                        new_requirements: str | None = None) -> tuple[str, str]:
    """Make ``project`` a git repository with two program commits: the first serves HTTP/3
    (``http2and3``), the second ``http2`` only; each with its ``infra/requirements.txt`` when given.
    Returns (old, new) commit ids."""
    requirements = project / "infra" / "requirements.txt"
    if old_requirements is not None:
        requirements.write_text(old_requirements)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "program v1")
    old = git(project, "rev-parse", "HEAD")
    cdn = project / "infra" / "cdn.py"
    cdn.write_text(cdn.read_text().replace('http_version="http2and3"', 'http_version="http2"'))
    if new_requirements is not None:
        requirements.write_text(new_requirements)
    git(project, "commit", "-q", "-am", "cdn: http2 only")
    return old, git(project, "rev-parse", "HEAD")
