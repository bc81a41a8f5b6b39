"""``rollback infra assets``: put object versions of the assets bucket back, straight through S3.

:func:`plan_assets` reads the key's versions and returns the plan (one step per key that changes)
with its :class:`AssetsFacts`; :class:`AssetsHandlers` carries out each, re-checking the key first: a key written
since the plan is left alone. No version is ever deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rollback.actions import StepHandlers, action
from rollback.adapters.s3_versions import KeyAction, ObjectVersion, S3Versions, group_by_key, newest_first, plan_key
from rollback.config import Config
from rollback.errors import BadInput, UnsafePrecondition
from rollback.plan import Plan, Step
from rollback.runner import Check, Prepared, StepContext

__all__ = ["AssetsFacts", "AssetsHandlers", "plan_assets", "stamp"]


@dataclass(frozen=True)
class AssetsFacts:
    """What an assets restore was planned from: every key's versions as read (the facts of its
    :class:`~rollback.runner.Prepared`)."""

    bucket: str
    actions: tuple[KeyAction, ...]
    versioning: str

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "versioning": self.versioning,
                "actions": [a.to_dict() for a in self.actions],
                "changes": sum(1 for a in self.actions if a.changes)}


def stamp(moment: dt.datetime) -> str:
    """``2026-11-28T09:30:00Z`` (milliseconds only when there are some)."""
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.astimezone(dt.UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def plan_assets(config: Config, store: S3Versions, *, bucket: str, key: str | None = None,
                prefix: str | None = None, to_version: str | None = None, before: dt.datetime | None = None,
                undelete: bool = False, keep_new: bool = False) -> Prepared[AssetsFacts]:
    """Plan the per-key restores (one step per key that changes)."""
    if (key is None) == (prefix is None):
        raise BadInput("choose exactly one of --key and --prefix")
    if sum((to_version is not None, before is not None, undelete)) != 1:
        raise BadInput("choose exactly one of --to-version, --before and --undelete")
    if to_version is not None and prefix is not None:
        raise BadInput("--to-version names one version of one key: use it with --key",
                       "for a prefix, use --before TIME or --undelete")
    if keep_new and before is None:
        raise BadInput("--keep-new only applies with --before")
    versioning = store.versioning(bucket)
    if versioning == "Disabled":
        raise UnsafePrecondition(f"bucket {bucket} has never had versioning enabled: there are no old versions "
                                 "to restore", "enable versioning (the stack does) so the next incident has them")
    versions = store.list_versions(bucket, key=key, prefix=prefix)
    if key is not None and not versions:
        raise BadInput(f"s3://{bucket}/{key} has no versions", "check the key (it is case-sensitive)")
    by_key = group_by_key(versions)
    actions = tuple(plan_key(k, v, to_version=to_version, before=before, undelete=undelete, keep_new=keep_new)
                    for k, v in by_key.items())
    if versioning == "Suspended":
        # With versioning suspended, copy_object and an unversioned delete_object write the version
        # "null", replacing the one already there: that content would be gone for good.
        at_risk = [a.key for a in actions if a.action in ("copy", "delete")
                   and any(v.version_id == "null" and not v.is_delete_marker for v in by_key[a.key])]
        if at_risk:
            shown = ", ".join(at_risk[:5]) + (f" and {len(at_risk) - 5} more" if len(at_risk) > 5 else "")
            raise UnsafePrecondition(
                f"bucket {bucket} has versioning suspended: restoring {shown} would overwrite or remove its "
                "null version for good",
                f"re-enable versioning first: aws s3api put-bucket-versioning --bucket {bucket} "
                "--versioning-configuration Status=Enabled", details={"keys": at_risk})
    steps = [Step(id=f"key-{number}", action="s3.restore", target=f"s3://{bucket}", summary=action.describe(),
                  params={"bucket": bucket, **action.to_dict(), "size": action.size},
                  destructive=True)
             for number, action in enumerate((a for a in actions if a.changes), start=1)]
    unchanged = sum(1 for a in actions if not a.changes)
    what = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}/{prefix or ''}*"
    mode = f"version {to_version}" if to_version else f"state at {stamp(before)}" if before else "undelete"
    notes = [f"{unchanged} key(s) need no change"] if unchanged else []
    deleting = sum(1 for a in actions if a.action == "delete")
    if deleting:
        notes.append(f"{deleting} key(s) did not exist (or were deleted) at that time and get a delete marker; "
                     "no version is removed (undo with --undelete); --keep-new leaves keys created since alone")
    if versioning == "Suspended":
        notes.append(f"bucket {bucket} has versioning suspended: a restored key's new version is 'null', which the "
                     "next write replaces (re-enable versioning to keep it)")
    return Prepared(Plan.of(f"restore {what} ({mode})", config.env_name, steps, notes),
                    AssetsFacts(bucket, actions, versioning))


def _key_action(step: Step) -> KeyAction:
    p = step.params
    return KeyAction(str(p["key"]), str(p["action"]), str(p["reason"]), p.get("current_version"),
                     p.get("target_version"), tuple(p.get("markers") or ()), p.get("size"))


@dataclass
class AssetsHandlers(StepHandlers):
    """The assets layer's handler: put one key of a versioned bucket back (copy an old version over
    it, remove delete markers, or add one). Never deletes a version."""

    layer = "assets"

    @property
    def store(self) -> S3Versions:
        return self.services.s3()


    def check_restore(self, step: Step, ctx: StepContext) -> Check:
        """Done when the key is already as this step leaves it; refused when someone wrote it since the plan."""
        bucket, action = str(step.params["bucket"]), _key_action(step)
        would = action.describe()
        versions = newest_first(self.store.list_versions(bucket, key=action.key))
        latest = versions[0] if versions else None
        now = latest.version_id if latest is not None else None
        done = self._already(action, versions)
        if done is not None:
            return Check(True, done, would)
        if now != action.current_version:
            raise UnsafePrecondition(
                f"s3://{bucket}/{action.key} changed since the plan (current version {now}, "
                f"planned over {action.current_version})",
                "someone else wrote it; run the command again to plan against the new state")
        return Check(False, {"key": action.key, "action": action.action}, would)

    @staticmethod
    def _already(action: KeyAction, versions: Sequence[ObjectVersion]) -> dict[str, Any] | None:
        if not versions or versions[0].version_id == action.current_version:
            return None
        latest = versions[0]
        if action.action == "copy":
            target = next((v for v in versions if v.version_id == action.target_version), None)
            if (target is not None and not latest.is_delete_marker and latest.etag and latest.etag == target.etag
                    and latest.last_modified >= target.last_modified):
                return {"key": action.key, "action": "copy", "from_version": action.target_version,
                        "new_version": latest.version_id}
        if action.action == "remove-delete-markers":
            left = {v.version_id for v in versions} & set(action.markers)
            if latest.version_id == action.target_version and not left:
                return {"key": action.key, "action": "remove-delete-markers", "removed": list(action.markers),
                        "current_version": action.target_version}
        if action.action == "delete" and latest.is_delete_marker and any(
                v.version_id == action.current_version for v in versions[1:]):
            return {"key": action.key, "action": "delete", "delete_marker": latest.version_id}
        return None

    @action("s3.restore", check="check_restore")
    def restore(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        # The check just read the key and found it as planned.
        return self.store.apply(str(step.params["bucket"]), _key_action(step), check=False)

