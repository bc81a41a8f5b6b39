"""Database: RDS PostgreSQL with backups, restores and pre-release snapshots as config.

* Automated backups (retention >= 7 days) give point-in-time restore.
* Deletion protection, a final snapshot and tags copied to snapshots keep
  every rollback point reachable.
* A restore is config: ``restore_from_snapshot`` or ``restore_to_time``
  declares a *new* instance (RDS cannot restore in place) under a new
  identifier. The instance is ``retain_on_delete``: when a restore replaces
  it, Pulumi forgets the old instance instead of trying to delete it, so it
  stays (deletion-protected) for comparison until someone removes it by hand.
* Pre-release snapshots are declared from a list; they are also retained
  when dropped from the list, so trimming config never deletes a rollback point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.settings import RestoreToTime


@dataclass
class DatabaseArgs:
    """Inputs of :class:`Database`."""

    identifier: str
    """RDS identifier of the instance in use (a restore gets its own)."""
    password: pulumi.Input[str]
    backup_retention_days: int
    instance_class: str = "db.t4g.medium"
    engine_version: str = "16.4"
    allocated_storage_gb: int = 20
    db_name: str = "app"
    username: str = "app_admin"
    multi_az: bool = False
    subnet_group_name: str | None = None
    security_group_ids: Sequence[str] = ()
    restore_from_snapshot: str | None = None
    """Snapshot identifier or ARN to create the instance from."""
    restore_to_time: RestoreToTime | None = None
    """Point-in-time restore of another instance."""
    release_snapshots: Sequence[str] = ()
    """Suffixes of manual snapshots to take, e.g. ``pre-2026-11-20-1``."""
    backup_window: str = "03:00-03:30"
    maintenance_window: str = "sun:04:00-sun:04:30"
    tags: dict[str, str] = field(default_factory=dict)


class Database(pulumi.ComponentResource):
    """The RDS PostgreSQL instance and its declared pre-release snapshots."""

    instance: aws.rds.Instance
    snapshots: list[aws.rds.Snapshot]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rollback:infra:Database", name, None, opts)
        if args.restore_from_snapshot is not None and args.restore_to_time is not None:
            raise ValueError("restore_from_snapshot and restore_to_time are exclusive")

        restoring = args.restore_from_snapshot is not None or args.restore_to_time is not None
        restore_to_point_in_time: dict[str, object] | None = None
        if args.restore_to_time is not None:
            restore_to_point_in_time = {"source_db_instance_identifier": args.restore_to_time.source_instance}
            if args.restore_to_time.use_latest_restorable_time:
                restore_to_point_in_time["use_latest_restorable_time"] = True
            else:
                restore_to_point_in_time["restore_time"] = args.restore_to_time.restore_time

        self.instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=args.identifier,
            engine="postgres",
            # Pinned exactly; minor upgrades happen by changing this pin, not behind its back.
            engine_version=args.engine_version,
            auto_minor_version_upgrade=False,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            multi_az=args.multi_az,
            # A restored instance takes its database and master user from the source.
            db_name=None if restoring else args.db_name,
            username=None if restoring else args.username,
            password=args.password,
            db_subnet_group_name=args.subnet_group_name,
            vpc_security_group_ids=list(args.security_group_ids) or None,
            publicly_accessible=False,
            backup_retention_period=args.backup_retention_days,
            backup_window=args.backup_window,
            maintenance_window=args.maintenance_window,
            deletion_protection=True,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{args.identifier}-final",
            copy_tags_to_snapshot=True,
            # Automated backups outlive the instance, so point-in-time restore stays possible.
            delete_automated_backups=False,
            snapshot_identifier=args.restore_from_snapshot,
            restore_to_point_in_time=restore_to_point_in_time,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )

        self.snapshots = [
            aws.rds.Snapshot(
                f"{name}-snapshot-{suffix}",
                db_instance_identifier=self.instance.identifier,
                db_snapshot_identifier=f"{args.identifier}-{suffix}",
                tags={**args.tags, "rollback:release-snapshot": suffix},
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            for suffix in args.release_snapshots
        ]

        self.instance_id = self.instance.identifier
        self.instance_arn = self.instance.arn
        self.address = self.instance.address
        self.register_outputs(
            {
                "instanceId": self.instance_id,
                "instanceArn": self.instance_arn,
                "address": self.address,
                "snapshotIds": [s.db_snapshot_identifier for s in self.snapshots],
            }
        )
