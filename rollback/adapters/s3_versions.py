"""S3 object versions: list them, work out what to restore, restore.

The restore rules are pure functions over a key's versions (:func:`plan_key`),
so they are table-tested without a server; :class:`S3Versions` does the I/O.

How a key is put back, without ever deleting a version (every action can itself
be undone from the version history):

- **to a version** (``--to-version V`` or the state at ``--before TIME``): when
  the only versions above the target are delete markers, those markers are
  removed, so the target becomes current again with its own version id;
  otherwise the target is copied over the current one (``CopyObject`` with
  ``CopySource.VersionId`` and ``MetadataDirective=COPY``: content type,
  metadata, cache headers and tags come from the old version), which adds a
  new current version;
- **undelete** (``--undelete``): the delete markers on top of the key are
  removed;
- **absent at TIME**: a key that did not exist at TIME (created after it), or
  that was deleted at TIME but exists now, is deleted by *adding* a delete
  marker, the same reversible thing ``aws s3 rm`` does; ``keep_new`` leaves
  keys created after TIME alone instead. A key deleted before TIME and still
  deleted stays deleted (no action).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollback.adapters.aws import aws_errors
from rollback.errors import BadInput, UnsafePrecondition

__all__ = [
    "KeyAction",
    "ObjectVersion",
    "S3Versions",
    "group_by_key",
    "newest_first",
    "plan_key",
    "state_at",
]

COPY_LIMIT = 5 * 1024**3  # CopyObject's single-request limit


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str
    is_latest: bool
    is_delete_marker: bool
    last_modified: dt.datetime
    etag: str | None = None
    size: int | None = None
    # Position in S3's listing (0 = newest of its kind for the key): breaks timestamp ties,
    # which are common because S3 lists LastModified to the second.
    rank: int = field(default=0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "version_id": self.version_id, "is_latest": self.is_latest,
                "is_delete_marker": self.is_delete_marker,
                "last_modified": self.last_modified.isoformat().replace("+00:00", "Z"),
                "etag": self.etag, "size": self.size}


@dataclass(frozen=True)
class KeyAction:
    """What to do to one key. ``action`` is ``copy``, ``remove-delete-markers``, ``delete`` or ``none``."""

    key: str
    action: str
    reason: str
    current_version: str | None  # the latest version id (a delete marker's too) when planned
    target_version: str | None = None
    markers: tuple[str, ...] = ()
    size: int | None = None

    @property
    def changes(self) -> bool:
        return self.action != "none"

    def describe(self) -> str:
        if self.action == "copy":
            return f"{self.key}: copy version {self.target_version} over {self.current_version} ({self.reason})"
        if self.action == "remove-delete-markers":
            markers = ", ".join(self.markers)
            return f"{self.key}: remove delete marker(s) {markers} -> version {self.target_version} ({self.reason})"
        if self.action == "delete":
            return f"{self.key}: add a delete marker over {self.current_version} ({self.reason})"
        return f"{self.key}: nothing to do ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "action": self.action, "reason": self.reason,
                "current_version": self.current_version, "target_version": self.target_version,
                "markers": list(self.markers), "description": self.describe()}


def newest_first(versions: Iterable[ObjectVersion]) -> list[ObjectVersion]:
    """Versions and delete markers of a key, newest first.

    S3 interleaves both in one newest-first listing, but botocore hands them back
    as two lists, and ``LastModified`` has one-second resolution. Ties are broken
    by: the ``IsLatest`` flag, then delete markers before content (a key is
    usually deleted after it was written, rarely rewritten within the same
    second it was deleted), then S3's own order within each list.
    """
    return sorted(versions, key=lambda v: (v.last_modified, v.is_latest, v.is_delete_marker, -v.rank),
                  reverse=True)


def group_by_key(versions: Iterable[ObjectVersion]) -> dict[str, list[ObjectVersion]]:
    grouped: dict[str, list[ObjectVersion]] = {}
    for version in versions:
        grouped.setdefault(version.key, []).append(version)
    return {key: newest_first(items) for key, items in sorted(grouped.items())}


def state_at(versions: Sequence[ObjectVersion], moment: dt.datetime) -> ObjectVersion | None:
    """The version that was current at ``moment`` (possibly a delete marker), or ``None`` if none existed."""
    for version in newest_first(versions):
        if version.last_modified <= moment:
            return version
    return None


def _to_target(key: str, versions: list[ObjectVersion], target: ObjectVersion, reason: str) -> KeyAction:
    latest = versions[0]
    if latest.version_id == target.version_id:
        return KeyAction(key, "none", f"version {target.version_id} is already current", latest.version_id,
                         target.version_id)
    above = versions[:versions.index(target)]
    if above and all(v.is_delete_marker for v in above):
        return KeyAction(key, "remove-delete-markers", reason, latest.version_id, target.version_id,
                         tuple(v.version_id for v in above), target.size)
    return KeyAction(key, "copy", reason, latest.version_id, target.version_id, size=target.size)


def plan_key(
    key: str,
    versions: Sequence[ObjectVersion],
    *,
    to_version: str | None = None,
    before: dt.datetime | None = None,
    undelete: bool = False,
    keep_new: bool = False,
) -> KeyAction:
    """The action that restores ``key`` (exactly one of ``to_version``, ``before``, ``undelete``)."""
    if sum((to_version is not None, before is not None, undelete)) != 1:
        raise BadInput("choose exactly one of --to-version, --before, --undelete")
    ordered = newest_first(versions)
    if not ordered:
        return KeyAction(key, "none", "no versions of this key", None)
    latest = ordered[0]
    if to_version is not None:
        target = next((v for v in ordered if v.version_id == to_version), None)
        if target is None:
            known = ", ".join(v.version_id for v in ordered if not v.is_delete_marker) or "none"
            raise BadInput(f"{key}: version {to_version} does not exist", f"versions of this key: {known}")
        if target.is_delete_marker:
            raise BadInput(f"{key}: version {to_version} is a delete marker, not content",
                           "pick a version with content, or use --undelete")
        return _to_target(key, ordered, target, f"back to version {to_version}")
    if undelete:
        if not latest.is_delete_marker:
            return KeyAction(key, "none", "not deleted", latest.version_id)
        markers: list[ObjectVersion] = []
        for version in ordered:
            if not version.is_delete_marker:
                break
            markers.append(version)
        content = ordered[len(markers)] if len(markers) < len(ordered) else None
        if content is None:
            return KeyAction(key, "none", "only delete markers: no content to bring back", latest.version_id)
        return KeyAction(key, "remove-delete-markers", "undelete", latest.version_id, content.version_id,
                         tuple(m.version_id for m in markers), content.size)
    assert before is not None
    when = before.astimezone(dt.UTC).isoformat(timespec="milliseconds" if before.microsecond else "seconds")
    when = when.replace("+00:00", "Z")
    target = state_at(ordered, before)
    if target is None:
        if latest.is_delete_marker:
            return KeyAction(key, "none", f"did not exist at {when} and is deleted now", latest.version_id)
        if keep_new:
            return KeyAction(key, "none", f"created after {when}; kept (--keep-new)", latest.version_id)
        return KeyAction(key, "delete", f"did not exist at {when}", latest.version_id)
    if target.is_delete_marker:
        if latest.is_delete_marker:
            return KeyAction(key, "none", f"deleted at {when} and still deleted", latest.version_id)
        return KeyAction(key, "delete", f"was deleted at {when}", latest.version_id)
    return _to_target(key, ordered, target, f"state at {when}")


@dataclass
class S3Versions:
    """A versioned bucket, through the boto3 S3 client it is given."""

    s3: Any

    def versioning(self, bucket: str) -> str:
        """``Enabled``, ``Suspended`` or ``Disabled`` (never enabled)."""
        with aws_errors(f"reading versioning of bucket {bucket}", "check aws.assets_bucket (or --bucket)"):
            response = self.s3.get_bucket_versioning(Bucket=bucket)
        return str(response.get("Status") or "Disabled")

    def list_versions(self, bucket: str, *, key: str | None = None, prefix: str | None = None) -> list[ObjectVersion]:
        """Every version and delete marker of ``key`` (exactly) or under ``prefix``."""
        search = key if key is not None else (prefix or "")
        found: list[ObjectVersion] = []
        ranks: dict[tuple[str, bool], int] = {}

        def rank(item_key: str, marker: bool) -> int:
            ranks[(item_key, marker)] = ranks.get((item_key, marker), -1) + 1
            return ranks[(item_key, marker)]

        with aws_errors(f"listing versions in s3://{bucket}/{search}", "check aws.assets_bucket (or --bucket)"):
            paginator = self.s3.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=bucket, Prefix=search):
                for item in page.get("Versions", []):
                    found.append(ObjectVersion(item["Key"], str(item.get("VersionId")), bool(item.get("IsLatest")),
                                               False, _utc(item["LastModified"]), item.get("ETag"),
                                               item.get("Size"), rank(item["Key"], False)))
                for item in page.get("DeleteMarkers", []):
                    found.append(ObjectVersion(item["Key"], str(item.get("VersionId")), bool(item.get("IsLatest")),
                                               True, _utc(item["LastModified"]), rank=rank(item["Key"], True)))
        if key is not None:
            found = [v for v in found if v.key == key]
        return found

    def has_current_object(self, bucket: str, prefix: str) -> bool:
        """Whether some object under ``prefix`` exists now: a latest version that is no delete marker (a
        zero-byte "folder" object named like the prefix does not count). Stops at the first one found."""
        with aws_errors(f"listing s3://{bucket}/{prefix}", "check the bucket (the origin's domain) and your rights"):
            paginator = self.s3.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                if any(item.get("IsLatest") and not str(item["Key"]).endswith("/")
                       for item in page.get("Versions", [])):
                    return True
        return False

    def folders(self, bucket: str, prefix: str) -> list[str]:
        """The folder names right under ``prefix`` (``releases/`` -> ``["r41", "r42"]``) that hold an
        object now, sorted."""
        names: list[str] = []
        with aws_errors(f"listing s3://{bucket}/{prefix}", "check the bucket (the origin's domain) and your rights"):
            paginator = self.s3.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                names += [str(p["Prefix"]) for p in page.get("CommonPrefixes", []) if p.get("Prefix")]
        return sorted(n[len(prefix):].rstrip("/") for n in dict.fromkeys(names) if self.has_current_object(bucket, n))

    def latest_version_id(self, bucket: str, key: str) -> str | None:
        versions = newest_first(self.list_versions(bucket, key=key))
        return versions[0].version_id if versions else None

    def apply(self, bucket: str, action: KeyAction, *, check: bool = True) -> dict[str, Any]:
        """Carry out one planned action. With ``check``, refuse when the key changed since the plan."""
        if not action.changes:
            return {"key": action.key, "action": "none"}
        if check:
            now = self.latest_version_id(bucket, action.key)
            if now != action.current_version:
                raise UnsafePrecondition(
                    f"s3://{bucket}/{action.key} changed since the plan (current version {now}, "
                    f"planned over {action.current_version})",
                    "someone else wrote it; run the command again to plan against the new state")
        if action.action == "copy":
            if action.size is not None and action.size > COPY_LIMIT:
                raise BadInput(f"{action.key}: version {action.target_version} is larger than 5 GiB",
                               "restore it with 'aws s3api' multipart copy by hand")
            with aws_errors(f"copying version {action.target_version} of s3://{bucket}/{action.key}"):
                response = self.s3.copy_object(
                    Bucket=bucket, Key=action.key,
                    CopySource={"Bucket": bucket, "Key": action.key, "VersionId": action.target_version},
                    MetadataDirective="COPY", TaggingDirective="COPY")
            return {"key": action.key, "action": "copy", "from_version": action.target_version,
                    "new_version": response.get("VersionId")}
        if action.action == "remove-delete-markers":
            for marker in action.markers:
                with aws_errors(f"removing delete marker {marker} of s3://{bucket}/{action.key}"):
                    self.s3.delete_object(Bucket=bucket, Key=action.key, VersionId=marker)
            return {"key": action.key, "action": "remove-delete-markers", "removed": list(action.markers),
                    "current_version": action.target_version}
        if action.action == "delete":
            with aws_errors(f"deleting s3://{bucket}/{action.key}"):
                response = self.s3.delete_object(Bucket=bucket, Key=action.key)
            return {"key": action.key, "action": "delete", "delete_marker": response.get("VersionId")}
        raise ValueError(f"unknown action {action.action!r}")


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)

