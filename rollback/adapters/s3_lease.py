"""The team lease's store: S3 conditional writes (``If-None-Match: *``, ``If-Match``).

Implements :class:`rollback.lock.LeaseStore` over an injected boto3 ``s3``
client. A failed precondition (HTTP 412, ``PreconditionFailed``; or 409
``ConditionalRequestConflict`` when two conditional writes race) is an answer
(``None`` / ``False``), not an error; anything else becomes
:class:`~rollback.errors.AwsError` through :func:`rollback.adapters.aws.aws_errors`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from pathlib import Path
from typing import Any

from rollback.adapters.aws import aws_errors
from rollback.leasestore import LeaseObject

__all__ = ["S3LeaseStore", "open_store"]

_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _server_date(response: dict[str, Any]) -> dt.datetime | None:
    header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not header:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class S3LeaseStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def _put(self, key: str, body: bytes, **condition: str) -> str | None:
        from botocore.exceptions import ClientError

        with aws_errors(f"writing the team lease s3://{self.bucket}/{key}"):
            try:
                response = self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                                  ContentType="application/json", **condition)
            except ClientError as exc:
                if _code(exc) in _CONFLICT or (_code(exc) in _MISSING and "IfMatch" in condition):
                    return None
                raise
        return str(response.get("ETag", ""))

    def create(self, key: str, body: bytes) -> str | None:
        return self._put(key, body, IfNoneMatch="*")

    def replace(self, key: str, body: bytes, etag: str) -> str | None:
        return self._put(key, body, IfMatch=etag)

    def _get(self, key: str, what: str) -> tuple[bytes, dict[str, Any]] | None:
        """The object's bytes and the response, or None when there is none."""
        from botocore.exceptions import ClientError

        with aws_errors(f"reading {what}s3://{self.bucket}/{key}"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
            return bytes(response["Body"].read()), response

    def read(self, key: str) -> LeaseObject | None:
        found = self._get(key, "the team lease ")
        if found is None:
            return None
        raw, response = found
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        modified = response.get("LastModified")
        if isinstance(modified, dt.datetime) and modified.tzinfo is None:
            modified = modified.replace(tzinfo=dt.UTC)
        return LeaseObject(body if isinstance(body, dict) else {}, str(response.get("ETag", "")),
                           modified if isinstance(modified, dt.datetime) else None, _server_date(response))

    def delete(self, key: str, etag: str) -> bool:
        from botocore.exceptions import ClientError

        with aws_errors(f"releasing the team lease s3://{self.bucket}/{key}"):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            except ClientError as exc:
                if _code(exc) in _CONFLICT or _code(exc) in _MISSING:
                    return False
                raise
        return True

    def keys(self, prefix: str, *, after: str = "") -> list[str]:
        """The keys under ``prefix`` that sort after ``after`` (S3 lists in UTF-8 binary order: ``StartAfter``)."""
        found: list[str] = []
        with aws_errors(f"listing s3://{self.bucket}/{prefix}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, **({"StartAfter": after} if after else {}))
            for page in pages:
                found.extend(str(item["Key"]) for item in page.get("Contents", []))
        return found

    def fetch(self, key: str) -> bytes | None:
        """An object's bytes, or None when it is gone (removed between a listing and this read)."""
        found = self._get(key, "")
        return found[0] if found is not None else None

    def upload(self, key: str, path: Path) -> None:
        with aws_errors(f"copying {path.name} to s3://{self.bucket}/{key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes(),
                                   ContentType="application/x-ndjson")


def open_store(bucket: str) -> S3LeaseStore:
    """A store on ``bucket`` with short timeouts: a lease that cannot be reached must not stall a rollback."""
    import boto3
    from botocore.config import Config as BotoConfig

    client = boto3.client("s3", config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"},
                                                  connect_timeout=3, read_timeout=5))
    return S3LeaseStore(client, bucket)
