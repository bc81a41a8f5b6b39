"""Edge function: the security-headers Lambda@Edge, published as numbered versions.

Each code change publishes a new immutable version; CloudFront references a
version ARN, never ``$LATEST``. ``pinned_version`` selects which one: rolling
the edge back is pinning an earlier number, which changes only the
association ARN on the distribution.

The function is ``retain_on_delete``: a replaced function (a rename, or an
earlier config with another name) is forgotten by Pulumi instead of deleted,
because CloudFront's replicas of a Lambda@Edge function keep it undeletable
for hours after the distribution stops using it; the delete would fail the
update after CloudFront had already been re-pointed. ``rollback infra
preview`` refuses such a replacement before anything changes.

Lambda@Edge functions can only be created in us-east-1: the function (and
its logs policy) name that region themselves (pulumi-aws 7's per-resource
``region``) and use the default provider, which carries every ``aws:*``
setting of the stack (profile, assumed role, default tags...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

EDGE_SOURCE_DIR = Path(__file__).resolve().parent / "edge"
EDGE_REGION = "us-east-1"
HANDLER_FILE = "handler.py"

_ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "edgelambda.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@dataclass
class EdgeFunctionArgs:
    """Inputs of :class:`EdgeFunction`."""

    function_name: str
    """Lambda function name (the CLI lists this function's versions)."""
    pinned_version: str | None = None
    """Version CloudFront uses; None means the newest published version."""
    source_dir: Path = EDGE_SOURCE_DIR
    tags: dict[str, str] = field(default_factory=dict)


class EdgeFunction(pulumi.ComponentResource):
    """Security-headers Lambda@Edge function and the version ARN CloudFront should use."""

    function: aws.lambda_.Function
    version_arn: pulumi.Output[str]
    version: pulumi.Output[str]

    def __init__(self, name: str, args: EdgeFunctionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rollback:infra:EdgeFunction", name, None, opts)
        edge = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=_ASSUME_ROLE_POLICY,
            tags=args.tags,
            opts=edge,
        )
        self.logs = aws.iam.RolePolicyAttachment(
            f"{name}-logs",
            role=self.role.name,
            policy_arn=aws.iam.ManagedPolicy.AWS_LAMBDA_BASIC_EXECUTION_ROLE,
            opts=edge,
        )
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=args.function_name,
            description="Adds security headers (HSTS, CSP, X-Content-Type-Options, X-Frame-Options, "
            "Referrer-Policy) on viewer responses",
            runtime="python3.12",
            handler="handler.handler",
            # Only the handler is packaged, so the code hash (and a new version) changes only with it.
            code=pulumi.AssetArchive({HANDLER_FILE: pulumi.FileAsset(str(args.source_dir / HANDLER_FILE))}),
            role=self.role.arn,
            # Whatever aws:region says, the function must not move.
            region=EDGE_REGION,
            # Lambda@Edge: published versions only, x86_64, and viewer triggers allow 128 MB / 5 s.
            publish=True,
            architectures=["x86_64"],
            memory_size=128,
            timeout=5,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.logs], retain_on_delete=True),
        )

        pinned = args.pinned_version
        if pinned is None:
            self.version = self.function.version
            self.version_arn = self.function.qualified_arn
        else:
            # Depends on the unversioned ARN only, so a preview with new code (whose version
            # is not known yet) still shows the pinned ARN exactly.
            self.version = pulumi.Output.from_input(pinned)
            self.version_arn = pulumi.Output.concat(self.function.arn, ":", pinned)

        self.function_name = self.function.name
        self.function_arn = self.function.arn
        self.latest_version = self.function.version
        self.register_outputs(
            {
                "functionName": self.function_name,
                "functionArn": self.function_arn,
                "latestVersion": self.latest_version,
                "version": self.version,
                "versionArn": self.version_arn,
            }
        )
