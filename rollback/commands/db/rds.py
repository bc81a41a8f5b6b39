"""``rollback db snapshots``, ``db snapshot create`` and ``db rds-restore``: RDS snapshots and restores.

Everything is validated before any AWS call that changes state; the source instance is
never modified: a restore creates a new instance, and the notes say how to point the
stack's rollback alarms at it.

A restore is two steps. ``rds.restore`` creates the instance with every setting the restore
call takes (:meth:`~rollback.adapters.rds.RdsAdapter.restore_settings`); ``rds.apply_settings``
then waits until it is ``available`` and turns on, with one ``ModifyDBInstance`` applied
immediately, what no restore call can set: the managed master password (the API reference says
``ManageMasterUserPassword`` on a restore "applies to RDS for Oracle only"), Performance
Insights, enhanced monitoring and, for a snapshot restore, storage autoscaling.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rollback.actions import action
from rollback.adapters.rds import after_labels, alarm_pin_lines, resolve_instance, settings_in_effect
from rollback.commands.db.common import DbSteps, stamp
from rollback.config import Config
from rollback.context import Services
from rollback.errors import BadInput, RollbackError, UnsafePrecondition
from rollback.plan import Plan, Step
from rollback.runner import Check, StepContext
from rollback.units import parse_time

__all__ = ["RdsSteps", "plan_rds_restore", "plan_snapshot_create", "snapshots"]


def snapshots(config: Config, instance: str | None = None, *, services: Services) -> dict[str, Any]:
    """The instance and its snapshots."""
    rds = services.rds()
    name = resolve_instance(config, instance)
    inst = rds.instance(name)
    snaps = rds.snapshots(name)
    return {"instance": inst.to_dict(), "snapshots": [s.to_dict() for s in snaps]}


def plan_snapshot_create(config: Config, *, instance: str | None = None, snapshot_id: str | None = None,
                         wait: bool = False, services: Services) -> Plan:
    """A manual snapshot of the instance (its id refused when it exists already)."""
    adapter = services.rds()
    name = resolve_instance(config, instance)
    adapter.instance(name)
    chosen = snapshot_id or f"{name}-rollback-{stamp().lower().replace('t', '-').rstrip('z')}"
    if adapter.snapshot(chosen) is not None:
        raise UnsafePrecondition(f"snapshot {chosen} already exists", "pass another --id")
    return Plan.of("db snapshot create", config.env_name, [
        Step("snapshot", "rds.create_snapshot", f"create manual snapshot {chosen} of {name}",
             target=f"rds {name}", params={"instance": name, "snapshot": chosen, "wait": wait})])


def plan_rds_restore(config: Config, *, snapshot: str | None = None, to_time: str | None = None,
                     latest: bool = False, target: str, instance: str | None = None, wait: bool = False,
                     now: dt.datetime | None = None, services: Services) -> Plan:
    """Validate everything before any AWS call that changes state; the source is never modified."""
    if sum(bool(x) for x in (snapshot, to_time, latest)) != 1:
        raise BadInput("give exactly one of --snapshot ID, --to-time TIME or --latest")
    adapter = services.rds()
    if adapter.instance_exists(target):
        raise UnsafePrecondition(f"DB instance {target} already exists",
                                 "choose a new --target; the source is never overwritten")
    params: dict[str, Any] = {"target": target, "wait": wait}
    if snapshot:
        snap = adapter.snapshot(snapshot)
        if snap is None:
            raise BadInput(f"no DB snapshot {snapshot}", "list them with 'rollback db snapshots'")
        if snap.status != "available":
            raise UnsafePrecondition(f"snapshot {snapshot} is {snap.status}, not available",
                                     "wait for it, or pick another snapshot")
        params.update(snapshot=snapshot, source=snap.instance)
        summary = f"restore snapshot {snapshot} into new instance {target}"
    else:
        source = resolve_instance(config, instance)
        inst = adapter.instance(source)
        if inst.latest_restorable is None or inst.earliest_restorable is None:
            raise UnsafePrecondition(f"{source} has no point-in-time restore window (automated backups off?)",
                                     "restore from a snapshot instead")
        if latest:
            params.update(source=source, time=None)
            summary = (f"restore {source} at its latest restorable time "
                       f"({inst.latest_restorable.isoformat()}) into new instance {target}")
        else:
            assert to_time is not None
            when = parse_time(to_time)
            if not (inst.earliest_restorable <= when <= inst.latest_restorable):
                raise BadInput(f"{when.isoformat()} is outside {source}'s restorable window "
                               f"{inst.earliest_restorable.isoformat()} .. {inst.latest_restorable.isoformat()}",
                               "pick a time inside the window, or use --latest")
            params.update(source=source, time=when.isoformat())
            summary = f"restore {source} as of {when.isoformat()} into new instance {target}"
    origin = str(params["source"]) if params.get("source") else None
    settings = adapter.restore_settings(origin, to_time=not snapshot) if origin else None
    steps = [Step("rds-restore", "rds.restore", summary, target=f"rds {target}", params=params)]
    if settings is not None and settings.after:
        steps.append(Step("rds-settings", "rds.apply_settings",
                          f"once {target} is available: turn on {', '.join(settings.after_labels())} "
                          "(ModifyDBInstance, applied immediately: no restore call can set them)",
                          target=f"rds {target}", params={"target": target, "settings": settings.after,
                                                          "wait": wait}))
    notes = ["the source instance is never modified or deleted; point the app at the new endpoint"]
    if settings is not None and settings.copied:
        notes.append(f"copied from {origin}: " + ", ".join(f"{label} {value}" if label != "tags" else value
                                                           for label, value in settings.copied.items()))
    notes += _restore_notes(config, target)
    return Plan.of("db rds-restore", config.env_name, steps, notes)


def _restore_notes(config: Config, target: str) -> list[str]:
    """How to point the rollback alarms at the new instance."""
    notes: list[str] = []
    pulumi = config.env.pulumi
    project = "rollback"
    if pulumi is not None:
        # Imported here: the stack's modules (the Pulumi backend, the program's machinery) are the largest
        # part of what 'rollback db' would load, and only this note of an RDS restore reads the stack.
        from rollback.adapters.stack_history import stack_ref

        try:
            project = stack_ref(config).project
        except RollbackError:
            project = pulumi.project or project
    lines = alarm_pin_lines(target, stack=pulumi.stack if pulumi else None, project=project)
    notes.append("to point the stack's rollback alarms at the new instance: " + "; ".join(lines))
    return notes


class RdsSteps(DbSteps):
    """Step handlers: create a snapshot, restore into a new instance, turn on what a restore cannot set
    (all resumable)."""

    def check_rds_create_snapshot(self, step: Step, ctx: StepContext) -> Check:
        instance, snapshot_id = str(step.params["instance"]), str(step.params["snapshot"])
        would = f"create snapshot {snapshot_id} of {instance}"
        if ctx.resuming:  # the planning refused an existing id: one there now is this run's
            snap = self._rds().snapshot(snapshot_id)
            if snap is not None and (snap.status == "available" or not step.params.get("wait")):
                return Check(True, snap.to_dict(), would)
        return Check(False, {}, would)

    @action("rds.create_snapshot", check="check_rds_create_snapshot")
    def rds_create_snapshot(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        rds = self._rds()
        instance, snapshot_id = str(step.params["instance"]), str(step.params["snapshot"])
        existing = rds.snapshot(snapshot_id) if ctx.resuming else None
        snap = existing if existing is not None else rds.create_snapshot(instance, snapshot_id)
        if step.params.get("wait"):
            ctx.note(f"waiting for snapshot {snapshot_id} to become available")
            snap = rds.wait_snapshot(snapshot_id)
        return snap.to_dict()

    def check_rds_restore(self, step: Step, ctx: StepContext) -> Check:
        target = str(step.params["target"])
        if ctx.resuming and self._rds().instance_exists(target):  # the planning refused an existing target
            inst = self._rds().instance(target)
            if inst.status == "available" or not step.params.get("wait"):
                return Check(True, inst.to_dict(), step.summary)
        return Check(False, {}, step.summary)

    @action("rds.restore", check="check_rds_restore")
    def rds_restore(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        rds = self._rds()
        p = step.params
        target = str(p["target"])
        if ctx.resuming and rds.instance_exists(target):
            inst = rds.instance(target)  # created by the stopped run: only the wait is left
        elif p.get("snapshot"):
            inst = rds.restore_from_snapshot(str(p["snapshot"]), target, like=str(p["source"]))
        else:
            when = dt.datetime.fromisoformat(str(p["time"])) if p.get("time") else None
            inst = rds.restore_to_time(str(p["source"]), target, when)
        if p.get("wait"):
            ctx.note(f"waiting for {target} to become available")
            inst = rds.wait_instance(target)
        return inst.to_dict()

    def check_rds_apply_settings(self, step: Step, ctx: StepContext) -> Check:
        target, after = str(step.params["target"]), dict(step.params["settings"])
        labels = after_labels(after)
        raw = self._rds().raw_instance(target)
        if raw is None:  # a dry run (or a restore still to be made): nothing to look at yet
            return Check(False, {"would_set": labels}, step.summary)
        missing = settings_in_effect(raw, after)
        if not missing and (raw.get("DBInstanceStatus") == "available" or not step.params.get("wait")):
            return Check(True, {"instance": self._rds().instance(target).to_dict(), "applied": labels},
                         step.summary)
        return Check(False, {"would_set": missing or labels}, step.summary)

    @action("rds.apply_settings", check="check_rds_apply_settings")
    def rds_apply_settings(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        rds = self._rds()
        target, after = str(step.params["target"]), dict(step.params["settings"])
        raw = rds.raw_instance(target) or {}
        if settings_in_effect(raw, after):
            # RDS refuses ModifyDBInstance until the new instance is available.
            ctx.note(f"waiting for {target} to become available before turning on {', '.join(after_labels(after))}")
            rds.wait_instance(target)
            rds.apply_after_restore(target, after)
        if step.params.get("wait"):
            ctx.note(f"waiting for {target} to apply them")
            inst = rds.wait_instance(target)
        else:
            inst = rds.instance(target)
        return {"instance": inst.to_dict(), "applied": after_labels(after)}
