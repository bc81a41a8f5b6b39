"""Assets bucket: versioned S3, private, releases under ``releases/<release-id>/``.

Versioning is what makes an S3 rollback possible at all (every overwrite
keeps the previous object); the lifecycle bounds its cost without ever
dropping the newest noncurrent versions. Read access for CloudFront (origin
access control) is granted by the CDN component, because the bucket policy
names the distribution, which itself needs this bucket as its origin.

The bucket is ``protect``-ed: a replacement (a new ``assetsBucketName``, or
an earlier config with another one) would re-point CloudFront at an empty
bucket before failing to delete the old one. Pulumi refuses to delete a
protected resource, and ``rollback infra preview`` refuses the replacement
before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

RELEASES_PREFIX = "releases/"


@dataclass
class AssetsBucketArgs:
    """Inputs of :class:`AssetsBucket`."""

    noncurrent_version_days: int
    """Days a noncurrent object version is kept before it may expire."""
    noncurrent_versions_kept: int
    """Newest noncurrent versions kept whatever their age (1-100)."""
    bucket_name: str | None = None
    """Fixed bucket name; None lets Pulumi auto-name it."""
    tags: dict[str, str] = field(default_factory=dict)


class AssetsBucket(pulumi.ComponentResource):
    """Versioned, private S3 bucket holding each release under ``releases/<release-id>/``."""

    bucket: aws.s3.Bucket
    versioning: aws.s3.BucketVersioning

    def __init__(self, name: str, args: AssetsBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rollback:infra:AssetsBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=args.bucket_name,
            # A rollback must never find its history emptied by a stack teardown.
            force_destroy=False,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": args.noncurrent_version_days,
                        "newer_noncurrent_versions": args.noncurrent_versions_kept,
                    },
                    # Delete markers with no versions behind them are noise in version listings.
                    "expiration": {"expired_object_delete_marker": True},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            # Lifecycle rules on noncurrent versions only make sense once versioning is on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
        )

        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.regional_domain_name = self.bucket.bucket_regional_domain_name
        self.register_outputs(
            {
                "bucketName": self.bucket_name,
                "bucketArn": self.bucket_arn,
                "regionalDomainName": self.regional_domain_name,
            }
        )


def release_origin_path(release_id: str) -> str:
    """CloudFront origin path serving ``releases/<release-id>/`` as the site root."""
    return f"/{RELEASES_PREFIX}{release_id}"
