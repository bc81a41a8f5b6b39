"""Distribution snapshots shared in S3, so that another on-call engineer can list and restore them.

``[cdn] snapshots_url = "s3://bucket/prefix"`` (else ``<[lock] url>/cdn-snapshots``): each snapshot is
also written to ``<prefix>/<distribution>/<snapshot id>.distribution.json``, the same document as the
local file. Custom origin header values (``X-Origin-Verify``) may be in it, so:

- every object is written with server-side encryption (``ServerSideEncryption=AES256``, SSE-S3: no
  KMS key to grant) and without any ACL: S3 objects are private to the bucket owner by default, and a
  bucket with ACLs disabled (Object Ownership "bucket owner enforced", the default for new buckets)
  refuses ACL grants anyway;
- the operator role may list only the snapshot prefix and read and write only under it.

The store takes its ``s3`` client in the constructor; errors go through
:func:`rollback.adapters.aws.aws_errors`.
"""

from __future__ import annotations

import re
from typing import Any

from rollback.adapters.aws import aws_errors
from rollback.adapters.cloudfront import SNAPSHOT_SUFFIX, DistributionSnapshot, snapshot_from_json

__all__ = ["S3SnapshotStore", "open_snapshot_store", "parse_s3_url"]

_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>[^\s]*))?$")
_MISSING = {"NoSuchKey", "404", "NotFound"}
LIST_LIMIT = 100


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (ValueError when it is not one)."""
    match = _URL.match(url)
    if match is None:
        raise ValueError(f"{url!r} is not s3://bucket or s3://bucket/prefix")
    return match["bucket"], (match["prefix"] or "").strip("/")


class S3SnapshotStore:
    """Snapshots under ``s3://<bucket>/<prefix>/<distribution>/<id>.distribution.json``."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _folder(self, distribution_id: str) -> str:
        return f"{self.prefix}/{distribution_id}/" if self.prefix else f"{distribution_id}/"

    def key(self, snapshot_id: str, distribution_id: str) -> str:
        return f"{self._folder(distribution_id)}{snapshot_id}{SNAPSHOT_SUFFIX}"

    def save(self, snapshot: DistributionSnapshot) -> str:
        """Write ``snapshot`` (encrypted at rest, private); returns its ``s3://`` URL."""
        key = self.key(snapshot.id, snapshot.distribution_id)
        with aws_errors(f"sharing snapshot {snapshot.id} in s3://{self.bucket}/{key}",
                        "check [cdn] snapshots_url and the operator role's access to it"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=snapshot.to_json().encode(),
                                   ContentType="application/json", ServerSideEncryption="AES256")
        return f"s3://{self.bucket}/{key}"

    def list(self, distribution_id: str | None = None, limit: int = LIST_LIMIT) -> list[DistributionSnapshot]:
        """The newest ``limit`` snapshots (of ``distribution_id``, or of every distribution), newest first;
        unreadable ones are skipped."""
        keys: list[str] = []
        folder = self._folder(distribution_id) if distribution_id else (f"{self.prefix}/" if self.prefix else "")
        with aws_errors(f"listing shared snapshots in {self.url}",
                        "check [cdn] snapshots_url and the operator role's access to it"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                keys += [str(item["Key"]) for item in page.get("Contents") or []
                         if str(item["Key"]).endswith(SNAPSHOT_SUFFIX)]
        found: list[DistributionSnapshot] = []
        # Ids end in their UTC time, so within a distribution the newest sorts last by name.
        for key in sorted(keys, key=lambda k: k.rsplit("/", 1)[-1].rsplit("-", 1)[-1], reverse=True)[:limit]:
            try:
                snapshot = self._get(key)
            except ValueError:
                continue
            if snapshot is not None:
                found.append(snapshot)
        return sorted(found, key=lambda s: (s.taken_at, s.id), reverse=True)

    def load(self, snapshot_id: str, distribution_id: str) -> DistributionSnapshot | None:
        """The snapshot, or ``None`` when the bucket has no such object; ``ValueError`` when it is damaged."""
        return self._get(self.key(snapshot_id, distribution_id))

    def _get(self, key: str) -> DistributionSnapshot | None:
        from botocore.exceptions import ClientError

        with aws_errors(f"reading s3://{self.bucket}/{key}",
                        "check [cdn] snapshots_url and the operator role's access to it"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if str((exc.response or {}).get("Error", {}).get("Code", "")) in _MISSING:
                    return None
                raise
            body = response["Body"].read()
        return snapshot_from_json(body, key.rsplit("/", 1)[-1])


def open_snapshot_store(url: str, client: Any) -> S3SnapshotStore:
    bucket, prefix = parse_s3_url(url)
    return S3SnapshotStore(client, bucket, prefix)
