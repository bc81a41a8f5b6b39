"""``rollback run``'s own step handlers: ``run.check_world`` (is the world still as planned?) and
``--switch-database`` (point the app at the restored database and redeploy).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rollback.actions import StepHandlers, action
from rollback.adapters import stack_history
from rollback.adapters.s3_versions import group_by_key, newest_first
from rollback.backups import manifest_path as backup_manifest_path
from rollback.commands.db import handlers as db_commands
from rollback.commands.run.plan import check_switchable, failed_migrations, file_sha256, switch_keys, switch_variables
from rollback.dburl import with_server
from rollback.errors import OperationFailed, UnsafePrecondition
from rollback.plan import Step
from rollback.runner import Check

if TYPE_CHECKING:
    from rollback.runner import StepContext


__all__ = [
    "SwitchHandlers",
    "WorldHandlers",
]

# --------------------------------------------------------------------------------------------- world check


@dataclass
class WorldHandlers(StepHandlers):
    """The ``run.check_world`` step: read again what the plan was made from; refuse (exit 4) when it
    changed, so that a saved plan (``--plan FILE``) never acts on a world it was not made for."""

    layer = "core"


    def check(self, step: Step, ctx: StepContext) -> Check:
        if step.id in ctx.earlier:  # checked by the run this one resumes; its own steps changed it since
            return Check(True, dict(ctx.earlier[step.id]), step.summary)
        planned = step.params.get("world") or {}
        changed = self.differences(planned)
        if changed:
            raise UnsafePrecondition("the world changed since the plan was made: " + "; ".join(changed),
                                     "nothing was changed; plan again (rollback run ... --dry-run) and run that plan")
        return Check(False, {"checked": sorted(planned)}, step.summary)

    @action("run.check_world", check="check", read_only=True)
    def act(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        return dict(ctx.checked.result) if ctx.checked is not None else {}

    def differences(self, planned: Mapping[str, Any]) -> list[str]:
        config = self.services.config
        found: list[str] = []
        if "app" in planned:
            project = self.services.vercel().get_project(config.require_vercel().project)
            app = planned["app"]
            last = project.last_alias_request
            if project.production_deployment_id != app.get("production"):
                found.append(f"production serves {project.production_deployment_id}, not {app.get('production')}")
            elif (last.requested_at if last else None) != app.get("alias_request_at"):
                found.append(f"a new rollback or promote was requested ({last.requested if last else 'none'})")
            if app.get("canary"):
                release = self.services.vercel().get_rolling_release(project.id)
                if release is None or release.canary_id != app["canary"] or not release.is_active:
                    state = f"{release.state} for {release.canary_id}" if release is not None else "gone"
                    found.append(f"the rolling release of canary {app['canary']} is no longer active (now: {state})")
        if "edge" in planned:
            edge = planned["edge"]
            etag = self.services.edge().get_config(str(edge["distribution"])).etag
            if etag != edge.get("etag"):
                found.append(f"distribution {edge['distribution']} changed (ETag {edge.get('etag')} -> {etag})")
        if "assets" in planned:
            assets = planned["assets"]
            keys: Mapping[str, Any] = assets.get("keys") or {}
            store = self.services.s3()
            moved = []
            prefix = _common_prefix(list(keys))
            listed = group_by_key(store.list_versions(str(assets["bucket"]), prefix=prefix)) if keys else {}
            for key, version in keys.items():
                versions = newest_first(listed.get(key, []))
                now = versions[0].version_id if versions else None
                if now != version:
                    moved.append(key)
            if moved:
                found.append(f"{len(moved)} asset key(s) written since the plan: {', '.join(moved[:3])}")
        if "infra" in planned:
            latest = stack_history.open_source(config, "cli").latest()
            if (latest.version if latest else None) != planned["infra"].get("stack_latest"):
                found.append(f"stack updated since the plan (update {latest.version if latest else None})")
        if "db" in planned:
            db = planned["db"]
            if "backup" in db:
                _, dump_dir = db_commands.resolve_backup(config, str(db["backup"]))
                digest = file_sha256(backup_manifest_path(dump_dir))
                if digest != db.get("manifest_sha256"):
                    found.append(f"backup {db['backup']}'s manifest changed")
            failed = sorted(failed_migrations(config, self.services)) if "failed_migrations" in db else None
            if failed is not None and failed != sorted(db["failed_migrations"]):
                found.append("the failed migrations changed")
        return found


def _common_prefix(keys: Sequence[str]) -> str:
    if not keys:
        return ""
    first, last = min(keys), max(keys)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


# --------------------------------------------------------------------------------------------- --switch-database


@dataclass
class SwitchHandlers(StepHandlers):
    """``--switch-database``: the Vercel project's database variables (``database.url_env`` and, when the
    project has it, ``database.direct_url_env``: together, so that the app and its migrations never
    disagree) to the restored RDS instance, then a redeploy of what production serves (a variable
    applies to deployments built after it), promoted when a rollback paused the automatic assignment
    of production domains.

    The credentials come from the restored instance's managed master secret, or, with
    ``database.app_role``, stay those of the app's own role as the variables hold them (RDS restores
    roles with the data); never from this shell's database URL. A variable that goes through a
    connection pooler is refused: the instance's endpoint in its place would bypass the pool. Values
    (they hold passwords) are read, changed and written back without ever being journaled or printed."""

    layer = "app"


    def _endpoint(self, step: Step, ctx: StepContext) -> tuple[str | None, int | None]:
        restored = ctx.results.get(step.sibling(str(step.params.get("from_step") or "rds-restore"))) or {}
        endpoint = restored.get("endpoint")
        port = restored.get("port")
        return (str(endpoint) if endpoint else None), (int(port) if isinstance(port, int) else None)

    def _variables(self, step: Step) -> list[tuple[Any, str | None]]:
        return switch_variables(self.services, str(step.params["project"]), switch_keys(step.params))

    def check_switch(self, step: Step, ctx: StepContext) -> Check:
        endpoint, _ = self._endpoint(step, ctx)
        keys = switch_keys(step.params)
        would = f"set {', '.join(keys)} of {step.params['project']} to the restored instance's endpoint"
        if endpoint is None:
            return Check(False, {"would_set": keys, "host": "(known once restored)"}, would)
        found = self._variables(step)
        if all(value is not None and urlsplit(value).hostname == endpoint for _, value in found):
            return Check(True, {"variables": [env.to_dict() for env, _ in found], "host": endpoint,
                                "project": step.params["project"]}, would)
        return Check(False, {"would_set": keys, "host": endpoint}, would)

    @action("vercel.switch_database", check="check_switch")
    def switch(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        endpoint, port = self._endpoint(step, ctx)
        if endpoint is None:
            raise UnsafePrecondition("the restored instance has no endpoint yet", "wait for it, then resume")
        project = str(step.params["project"])
        found = self._variables(step)
        for env, value in found:
            check_switchable(project, env.key, value, app_role=step.params.get("app_role"))
        username = password = None
        if step.params.get("credentials") == "master-secret":
            instance = self.services.rds().instance(str(step.params["instance"]))
            if not instance.master_secret_arn:
                raise UnsafePrecondition(f"the restored instance {instance.id} has no managed master secret yet",
                                         "resume once it has one (rollback resume); nothing was switched")
            credentials = self.services.secrets().database_credentials(instance.master_secret_arn)
            username, password = credentials.username, credentials.password
        source = "the restored instance's managed master secret" if username else \
            f"the app role {step.params.get('app_role')}"
        from_hosts = []
        for env, value in found:
            assert value is not None  # check_switchable refused an unreadable value
            old = urlsplit(value).hostname
            new = with_server(value, host=endpoint, port=port, username=username, password=password)
            self.services.vercel().edit_env(project, env.id, value=new)
            from_hosts.append(old)
            ctx.note(f"{env.key}: host {old} -> {endpoint}, credentials from {source} (Vercel project {project}, "
                     "production)")
        return {"project": project, "variables": [env.key for env, _ in found], "from_host": from_hosts[0],
                "to_host": endpoint, "credentials": step.params.get("credentials"),
                "switched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}

    def check_redeploy(self, step: Step, ctx: StepContext) -> Check:
        earlier = ctx.earlier.get(step.id)
        would = f"POST /v13/deployments (redeploy) for {step.params['project']}, then promote it"
        if earlier is not None:
            return Check(True, dict(earlier), would)
        return Check(False, {"would_redeploy": step.params.get("deployment") or "production"}, would)

    @action("vercel.redeploy", check="check_redeploy")
    def redeploy(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        client = self.services.vercel()
        project = client.get_project(str(step.params["project"]))
        source = str(step.params.get("deployment") or project.production_deployment_id or "")
        if not source:
            raise UnsafePrecondition(f"project {project.name} serves no deployment to redeploy", "deploy by hand")
        created = client.redeploy(project.name, source, target="production")
        ctx.note(f"redeploying {source} as {created.id} ({created.url})", deployment=created.id)
        deadline = self.clock() + float(step.params.get("timeout") or 600.0)
        while True:
            current = client.get_deployment(created.id)
            if current.is_ready:
                break
            if current.state in ("ERROR", "CANCELED"):
                raise OperationFailed(f"the redeploy {created.id} is {current.state}", "see its build logs on Vercel")
            if self.clock() >= deadline:
                raise OperationFailed(f"the redeploy {created.id} is not READY after {step.params.get('timeout')} s",
                                      f"promote it when it is: rollback app promote {created.id}")
            self.sleep(0.5)
        project = client.get_project(project.id)
        promoted = False
        if project.production_deployment_id != created.id:
            # A rollback paused the automatic assignment: promote the new build explicitly.
            before = project.last_alias_request
            client.request_promote(project.id, created.id, before=before)
            while True:
                project = client.get_project(project.id)
                last = project.last_alias_request
                if project.production_deployment_id == created.id:
                    break
                if last is not None and last.to_deployment_id == created.id and last.job_status == "failed":
                    raise OperationFailed(f"promoting {created.id} failed", f"rollback app promote {created.id}")
                if self.clock() >= deadline:
                    raise OperationFailed(f"{created.id} does not serve production yet",
                                          f"rollback app promote {created.id}")
                self.sleep(0.25)
            promoted = True
        return {"redeployed": source, "deployment": created.id, "url": created.url, "promoted": promoted}
