"""CDN: the CloudFront distribution in front of the assets bucket and the app.

Two pins meet here: the assets origin path (``releases/<release-id>``) and the
edge-function version ARN on the default behaviour. Rolling back either is a
change of exactly one distribution input. Additional metrics (origin latency,
cache hit rate, error rates per status) are switched on so the rollback
alarms can watch them.

A change of the origin path invalidates ``/*`` (``infra.invalidation``): the
cache key does not include the origin path, so without it the other release's
objects would be served for up to a day.

Security headers: the Lambda@Edge function adds them on the default (assets)
behaviour and stays the versioned rollback lever the runbook names; the app
paths (``/api/*``, ``/auth/*``) get the same headers from a CloudFront
response-headers policy, built from the function's own header values. Neither
overrides a header the origin already sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.assets_bucket import release_origin_path
from infra.edge.handler import SECURITY_HEADERS
from infra.invalidation import AwsSettings, ReleaseInvalidation

ASSETS_ORIGIN_ID = "assets"
APP_ORIGIN_ID = "app"

# AWS managed policies (stable, documented IDs).
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"

ORIGIN_VERIFY_HEADER = "X-Origin-Verify"


@dataclass
class CdnArgs:
    """Inputs of :class:`Cdn`."""

    name_prefix: str
    """``<project>-<stack>``: account-wide names (origin access control, headers policy) are unique per stack."""
    assets_bucket_id: pulumi.Input[str]
    assets_bucket_arn: pulumi.Input[str]
    assets_bucket_domain: pulumi.Input[str]
    """Regional domain name of the assets bucket."""
    assets_release: str
    """Release served from ``releases/<release-id>/``."""
    app_origin_domain: str
    """Host of the app (Vercel) serving the dynamic paths."""
    edge_function_version_arn: pulumi.Input[str]
    """Qualified (numbered) Lambda@Edge version ARN for the default behaviour."""
    app_path_patterns: Sequence[str] = ("/api/*",)
    origin_verify_secret: pulumi.Input[str] | None = None
    """Sent to the app as X-Origin-Verify so it can refuse requests that bypass the CDN."""
    aliases: Sequence[str] = ()
    certificate_arn: str | None = None
    price_class: str = "PriceClass_100"
    aws: AwsSettings = field(default_factory=AwsSettings)
    """The stack's aws:* settings: the release invalidation calls CloudFront with them."""
    tags: dict[str, str] = field(default_factory=dict)


class Cdn(pulumi.ComponentResource):
    """CloudFront distribution, its origin access control, metrics subscription and bucket policy."""

    distribution: aws.cloudfront.Distribution

    def __init__(self, name: str, args: CdnArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rollback:infra:Cdn", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.origin_access_control = aws.cloudfront.OriginAccessControl(
            f"{name}-oac",
            # Account-wide name: two stacks in one account must not collide.
            name=f"{args.name_prefix}-assets-oac"[:64],
            description="CloudFront reads the assets bucket with SigV4",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=child,
        )

        app_origin: dict[str, object] = {
            "origin_id": APP_ORIGIN_ID,
            "domain_name": args.app_origin_domain,
            "custom_origin_config": {
                "http_port": 80,
                "https_port": 443,
                "origin_protocol_policy": "https-only",
                "origin_ssl_protocols": ["TLSv1.2"],
            },
        }
        if args.origin_verify_secret is not None:
            app_origin["custom_headers"] = [{"name": ORIGIN_VERIFY_HEADER, "value": args.origin_verify_secret}]

        self.app_headers = aws.cloudfront.ResponseHeadersPolicy(
            f"{name}-app-headers",
            name=f"{args.name_prefix}-app-security-headers"[:128],
            comment="Security headers on the app paths (the edge function adds them on the assets)",
            security_headers_config=security_headers_config(),
            opts=child,
        )

        viewer_certificate: dict[str, object]
        if args.certificate_arn:
            viewer_certificate = {
                "acm_certificate_arn": args.certificate_arn,
                "ssl_support_method": "sni-only",
                "minimum_protocol_version": "TLSv1.2_2021",
            }
        else:
            viewer_certificate = {"cloudfront_default_certificate": True}

        self.distribution = aws.cloudfront.Distribution(
            f"{name}-distribution",
            enabled=True,
            # Deliberately free of pins: a rollback pin changes only the input it pins.
            comment=f"{name}: assets bucket and app origin",
            is_ipv6_enabled=True,
            http_version="http2and3",
            price_class=args.price_class,
            aliases=list(args.aliases) or None,
            default_root_object="index.html",
            origins=[
                {
                    "origin_id": ASSETS_ORIGIN_ID,
                    "domain_name": args.assets_bucket_domain,
                    "origin_access_control_id": self.origin_access_control.id,
                    # The release pin: rolling assets back is changing this path.
                    "origin_path": release_origin_path(args.assets_release),
                },
                app_origin,
            ],
            default_cache_behavior={
                "target_origin_id": ASSETS_ORIGIN_ID,
                "viewer_protocol_policy": "redirect-to-https",
                "allowed_methods": ["GET", "HEAD", "OPTIONS"],
                "cached_methods": ["GET", "HEAD"],
                "compress": True,
                "cache_policy_id": CACHING_OPTIMIZED,
                "lambda_function_associations": [
                    {
                        "event_type": "viewer-response",
                        # The edge pin: a numbered version ARN, never $LATEST.
                        "lambda_arn": args.edge_function_version_arn,
                        "include_body": False,
                    }
                ],
            },
            ordered_cache_behaviors=[
                {
                    "path_pattern": pattern,
                    "target_origin_id": APP_ORIGIN_ID,
                    "viewer_protocol_policy": "redirect-to-https",
                    "allowed_methods": ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"],
                    "cached_methods": ["GET", "HEAD"],
                    "compress": True,
                    "cache_policy_id": CACHING_DISABLED,
                    "origin_request_policy_id": ALL_VIEWER_EXCEPT_HOST_HEADER,
                    "response_headers_policy_id": self.app_headers.id,
                }
                for pattern in args.app_path_patterns
            ],
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate=viewer_certificate,
            tags=args.tags,
            opts=child,
        )

        # Keyed on the origin path: a release change (or its rollback) invalidates what was cached.
        self.release_invalidation = ReleaseInvalidation(
            f"{name}-release-invalidation",
            distribution_id=self.distribution.id,
            origin_path=release_origin_path(args.assets_release),
            aws=args.aws,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.distribution]),
        )

        # Additional metrics: OriginLatency and CacheHitRate exist only with this subscription.
        self.monitoring = aws.cloudfront.MonitoringSubscription(
            f"{name}-metrics",
            distribution_id=self.distribution.id,
            monitoring_subscription={
                "realtime_metrics_subscription_config": {"realtime_metrics_subscription_status": "Enabled"}
            },
            opts=child,
        )

        # The bucket policy lives here rather than in AssetsBucket: it names this
        # distribution, which itself needs the bucket as its origin.
        self.bucket_policy = aws.s3.BucketPolicy(
            f"{name}-assets-read",
            bucket=args.assets_bucket_id,
            policy=pulumi.Output.all(args.assets_bucket_arn, self.distribution.arn).apply(
                lambda arns: _bucket_policy(arns[0], arns[1])
            ),
            opts=child,
        )

        self.distribution_id = self.distribution.id
        self.distribution_arn = self.distribution.arn
        self.domain_name = self.distribution.domain_name
        self.register_outputs(
            {
                "distributionId": self.distribution_id,
                "distributionArn": self.distribution_arn,
                "domainName": self.domain_name,
            }
        )


def security_headers_config() -> dict[str, object]:
    """The edge function's headers as a response-headers policy; the origin's own headers win."""
    hsts = {d.strip().lower(): d.strip() for d in SECURITY_HEADERS["Strict-Transport-Security"].split(";")}
    max_age = next(int(d.split("=", 1)[1]) for d in hsts if d.startswith("max-age="))
    return {
        "strict_transport_security": {
            "access_control_max_age_sec": max_age,
            "include_subdomains": "includesubdomains" in hsts,
            "preload": "preload" in hsts,
            "override": False,
        },
        "content_security_policy": {
            "content_security_policy": SECURITY_HEADERS["Content-Security-Policy"],
            "override": False,
        },
        "content_type_options": {"override": False},
        "frame_options": {"frame_option": SECURITY_HEADERS["X-Frame-Options"], "override": False},
        "referrer_policy": {"referrer_policy": SECURITY_HEADERS["Referrer-Policy"], "override": False},
    }


def _bucket_policy(bucket_arn: str, distribution_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "CloudFrontReadsReleases",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudfront.amazonaws.com"},
                    "Action": "s3:GetObject",
                    "Resource": f"{bucket_arn}/releases/*",
                    "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        },
        sort_keys=True,
    )
