"""Database: RDS PostgreSQL with its network, backups, restores and pre-release snapshots as config.

* The network is declared here (see ``infra.settings.DbNetwork``): a subnet
  group, a security group that opens 5432 to exactly the configured sources,
  and a parameter group that enforces TLS (``rds.force_ssl``).
* The master password is managed by RDS in Secrets Manager
  (``manage_master_user_password``): no password lives in stack config, so
  restoring an earlier update's config never resets it.
* The engine is pinned to its major version with automatic minor upgrades:
  RDS cannot downgrade an engine, so an exact minor pin could never be rolled
  back after AWS (or we) upgraded it. The program refuses a downgrade or a
  storage shrink before ``pulumi up`` (``infra.settings.check_live_database``).
* Changes apply immediately (``dbApplyImmediately``, default true): a rollback
  of the instance class, storage or Multi-AZ must not report success and wait
  for the maintenance window.
* Enhanced monitoring (``dbMonitoringInterval``, default every 60 s; 0 turns it
  off) publishes through a role of its own, ``<base>-rds-monitoring``, which
  RDS assumes. A restore copies the interval and the role to the new instance
  (``rollback db rds-restore``), so the operator role may pass exactly this
  role on to RDS monitoring, and nothing else.
* Automated backups (retention >= 7 days) give point-in-time restore.
  Deletion protection, a final snapshot and tags copied to snapshots keep every
  rollback point reachable.
* A restore is config: ``restore_from_snapshot`` or ``restore_to_time``
  declares a *new* instance (RDS cannot restore in place) under a new
  identifier. The instance is ``retain_on_delete``: when a restore replaces
  it, Pulumi forgets the old instance instead of trying to delete it, so it
  stays (deletion-protected) for comparison until someone removes it by hand.
* Pre-release snapshots are declared from a list, named from the *base*
  identifier, and their source and name are ignored after creation: a
  restore (a new instance identifier) neither renames nor re-takes them, so
  the pre-release snapshots stay the pre-release ones and a restore does not
  wait on new snapshots. They are also retained when dropped from the list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.settings import POSTGRES_PORT, DbNetwork, RestoreToTime

MONITORING_SERVICE = "monitoring.rds.amazonaws.com"
MONITORING_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"


@dataclass
class DatabaseArgs:
    """Inputs of :class:`Database`."""

    identifier: str
    """RDS identifier of the instance in use (a restore gets its own)."""
    identifier_base: str
    """The stack's base identifier: release snapshots and the network are named from it."""
    backup_retention_days: int
    network: DbNetwork
    instance_class: str = "db.t4g.medium"
    engine_major: str = "16"
    allocated_storage_gb: int = 20
    db_name: str = "app"
    username: str = "app_admin"
    multi_az: bool = False
    apply_immediately: bool = True
    restore_from_snapshot: str | None = None
    """Snapshot identifier or ARN to create the instance from."""
    restore_to_time: RestoreToTime | None = None
    """Point-in-time restore of another instance."""
    release_snapshots: Sequence[str] = ()
    """Suffixes of manual snapshots to take, e.g. ``pre-2026-11-20-1``."""
    monitoring_interval: int = 60
    """Enhanced monitoring every N seconds; 0 turns it off (and declares no monitoring role)."""
    backup_window: str = "03:00-03:30"
    maintenance_window: str = "sun:04:00-sun:04:30"
    tags: dict[str, str] = field(default_factory=dict)


class Database(pulumi.ComponentResource):
    """The RDS PostgreSQL instance, its network and parameter group, and its pre-release snapshots."""

    instance: aws.rds.Instance
    snapshots: list[aws.rds.Snapshot]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rollback:infra:Database", name, None, opts)
        if args.restore_from_snapshot is not None and args.restore_to_time is not None:
            raise ValueError("restore_from_snapshot and restore_to_time are exclusive")
        child = pulumi.ResourceOptions(parent=self)
        base = args.identifier_base

        self.subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            name=f"{base}-subnets",
            description=f"Subnets of {base} ({args.network.access} access)",
            subnet_ids=list(args.network.subnet_ids),
            tags=args.tags,
            opts=child,
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-access",
            name=f"{base}-access",
            description=f"Who may connect to {base} on {POSTGRES_PORT}",
            vpc_id=args.network.vpc_id,
            ingress=[
                {
                    "description": "PostgreSQL from the app",
                    "protocol": "tcp",
                    "from_port": POSTGRES_PORT,
                    "to_port": POSTGRES_PORT,
                    "cidr_blocks": list(args.network.allowed_cidrs) or None,
                    "security_groups": list(args.network.allowed_security_group_ids) or None,
                }
            ],
            # RDS answers on established connections only; it opens none of its own.
            egress=[],
            tags=args.tags,
            opts=child,
        )
        self.parameter_group = aws.rds.ParameterGroup(
            f"{name}-parameters",
            name=f"{base}-pg{args.engine_major}",
            family=f"postgres{args.engine_major}",
            description=f"{base}: TLS required",
            parameters=[{"name": "rds.force_ssl", "value": "1", "apply_method": "immediate"}],
            tags=args.tags,
            opts=child,
        )

        self.monitoring_role: aws.iam.Role | None = None
        if args.monitoring_interval:
            self.monitoring_role = aws.iam.Role(
                f"{name}-monitoring",
                name=f"{base}-rds-monitoring",
                description=f"Assumed by RDS to publish the enhanced monitoring of {base} and its restores",
                assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": MONITORING_SERVICE}, "Action": "sts:AssumeRole"}]}),
                managed_policy_arns=[MONITORING_POLICY_ARN],
                tags=args.tags,
                opts=child,
            )

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
            # The major only, with minor upgrades on: see the module docstring.
            engine_version=args.engine_major,
            auto_minor_version_upgrade=True,
            # A major upgrade is an explicit change of dbEngineVersion; a downgrade is refused in settings.
            allow_major_version_upgrade=True,
            apply_immediately=args.apply_immediately,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            multi_az=args.multi_az,
            # A restored instance takes its database and master user from the source.
            db_name=None if restoring else args.db_name,
            username=None if restoring else args.username,
            manage_master_user_password=True,
            db_subnet_group_name=self.subnet_group.name,
            vpc_security_group_ids=[self.security_group.id],
            parameter_group_name=self.parameter_group.name,
            publicly_accessible=args.network.publicly_accessible,
            port=POSTGRES_PORT,
            monitoring_interval=args.monitoring_interval,
            monitoring_role_arn=self.monitoring_role.arn if self.monitoring_role is not None else None,
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
                # Taken from the instance in use when it is first declared; never re-taken after.
                db_instance_identifier=self.instance.identifier,
                db_snapshot_identifier=f"{base}-{suffix}",
                tags={**args.tags, "rollback:release-snapshot": suffix},
                opts=pulumi.ResourceOptions(
                    parent=self,
                    retain_on_delete=True,
                    # A restore changes the instance identifier; without this every release
                    # snapshot would be replaced (re-taken from the restored instance).
                    ignore_changes=["dbInstanceIdentifier", "dbSnapshotIdentifier"],
                ),
            )
            for suffix in args.release_snapshots
        ]

        self.monitoring_role_arn: pulumi.Output[str] | None = (
            self.monitoring_role.arn if self.monitoring_role is not None else None)
        self.instance_id = self.instance.identifier
        self.instance_arn = self.instance.arn
        self.address = self.instance.address
        self.master_secret_arn = self.instance.master_user_secrets.apply(
            lambda secrets: secrets[0].secret_arn if secrets else None
        )
        # The key RDS encrypts the master secret with (aws/secretsmanager's unless one is named): a restore
        # turns the managed password on again with it (`rollback db rds-restore`), so the operator may use it.
        self.master_secret_kms_key_id = self.instance.master_user_secrets.apply(
            lambda secrets: secrets[0].kms_key_id if secrets else None
        )
        self.register_outputs(
            {
                "instanceId": self.instance_id,
                "instanceArn": self.instance_arn,
                "address": self.address,
                "masterSecretArn": self.master_secret_arn,
                "masterSecretKmsKeyId": self.master_secret_kms_key_id,
                "snapshotIds": [s.db_snapshot_identifier for s in self.snapshots],
            }
        )
