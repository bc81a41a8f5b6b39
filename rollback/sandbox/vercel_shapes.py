"""JSON bodies in the shapes of Vercel's published API (the OpenAPI spec's
response schemas), built from the emulator's state."""

from __future__ import annotations

from typing import Any

from rollback.sandbox.vercel_rolling import SimRollingRelease
from rollback.sandbox.vercel_state import EmulatorState, SimAlias, SimDeployment, SimProject

__all__ = ["alias_v4", "deployment_v6", "deployment_v13", "pagination", "project_v9", "rolling_release_v1",
           "team_body", "user_body"]


def _creator(state: EmulatorState) -> dict[str, Any]:
    return {"uid": state.user["id"], "username": state.user["username"], "email": state.user["email"]}


def _meta(dep: SimDeployment) -> dict[str, str]:
    return {
        "githubCommitSha": dep.sha,
        "githubCommitMessage": dep.message,
        "githubCommitRef": dep.ref,
        "githubCommitAuthorName": "demo",
        "githubOrg": "demo-org",
        "githubRepo": dep.name,
        "githubDeployment": "1",
    }


def _inspector(state: EmulatorState, dep: SimDeployment) -> str:
    project = state.projects.get(dep.project_id)
    team = state.teams.get(project.account_id) if project else None
    owner = team["slug"] if team else state.user["username"]
    return f"https://vercel.com/{owner}/{dep.name}/{dep.id[4:]}"


def _team_of(state: EmulatorState, dep: SimDeployment) -> dict[str, Any] | None:
    project = state.projects.get(dep.project_id)
    team = state.teams.get(project.account_id) if project else None
    return {"id": team["id"], "name": team["name"], "slug": team["slug"]} if team else None


def _aliases(state: EmulatorState, dep: SimDeployment) -> list[str]:
    return sorted(a.alias for a in state.aliases.values() if a.deployment_id == dep.id)


def _substate(state: EmulatorState, dep: SimDeployment) -> str:
    project = state.projects.get(dep.project_id)
    if project is not None and project.production_id == dep.id:
        return "PROMOTED"
    return "STAGED" if dep.target == "production" else "PROMOTED"


def deployment_v6(state: EmulatorState, dep: SimDeployment) -> dict[str, Any]:
    """An item of ``GET /v6/deployments`` (getDeployments)."""
    return {
        "uid": dep.id,
        "name": dep.name,
        "projectId": dep.project_id,
        "url": dep.url,
        "created": dep.created_at,
        "createdAt": dep.created_at,
        "buildingAt": dep.created_at + 1000,
        **({"ready": dep.ready_at} if dep.ready_at else {}),
        "source": "git",
        "state": dep.state,
        "readyState": dep.state,
        "readySubstate": _substate(state, dep),
        "type": "LAMBDAS",
        "creator": _creator(state),
        "meta": _meta(dep),
        "target": dep.target,
        "aliasError": None,
        "aliasAssigned": dep.alias_assigned_at,
        "isRollbackCandidate": state.is_rollback_candidate(dep),
        "inspectorUrl": _inspector(state, dep),
    }


def deployment_v13(state: EmulatorState, dep: SimDeployment) -> dict[str, Any]:
    """``GET /v13/deployments/{idOrUrl}`` (getDeployment), the lean variant of its oneOf."""
    project = state.projects.get(dep.project_id)
    body: dict[str, Any] = {
        "id": dep.id,
        "name": dep.name,
        "url": dep.url,
        "projectId": dep.project_id,
        "ownerId": project.account_id if project else state.user["id"],
        "createdAt": dep.created_at,
        "createdIn": "iad1",
        "buildingAt": dep.created_at + 1000,
        "bootedAt": dep.created_at + 500,
        **({"ready": dep.ready_at} if dep.ready_at else {}),
        "readyState": dep.state,
        "readySubstate": _substate(state, dep),
        "status": dep.state,
        "type": "LAMBDAS",
        "target": dep.target,
        "source": "git",
        "version": 2,
        "public": False,
        "buildSkipped": False,
        "aliasAssigned": dep.alias_assigned_at is not None,
        "aliasAssignedAt": dep.alias_assigned_at,
        "aliasError": None,
        "alias": _aliases(state, dep),
        "automaticAliases": [f"{dep.name}-git-{dep.ref.replace('/', '-')}-{_slug(state, dep)}.vercel.app"],
        "creator": _creator(state),
        "meta": _meta(dep),
        "regions": ["iad1"],
        "routes": None,
        "plan": "pro",
        "inspectorUrl": _inspector(state, dep),
        "isInConcurrentBuildsQueue": False,
        "isInSystemBuildsQueue": False,
        "projectSettings": {},
        "build": {"env": []},
        "env": [],
        "lambdas": [],
        "builds": [],
        "previewCommentsEnabled": False,
        "gitSource": {"type": "github", "repoId": 1, "ref": dep.ref, "sha": dep.sha},
        "project": {"id": dep.project_id, "name": dep.name, "framework": "nextjs"},
    }
    team = _team_of(state, dep)
    if team is not None:
        body["team"] = team
    return body


def _slug(state: EmulatorState, dep: SimDeployment) -> str:
    team = _team_of(state, dep)
    return str(team["slug"]) if team else str(state.user["username"])


def project_v9(state: EmulatorState, project: SimProject) -> dict[str, Any]:
    """``GET /v9/projects/{idOrName}`` (getProject), with ``lastAliasRequest`` and ``targets``."""
    production = state.deployments.get(project.production_id or "")
    targets: dict[str, Any] = {}
    latest: list[dict[str, Any]] = []
    if production is not None:
        targets["production"] = _project_deployment(state, production)
    for dep in sorted((d for d in state.deployments.values() if d.project_id == project.id),
                      key=lambda d: d.created_at, reverse=True)[:5]:
        latest.append(_project_deployment(state, dep))
    return {
        "accountId": project.account_id,
        "id": project.id,
        "name": project.name,
        "createdAt": project.created_at,
        "updatedAt": project.created_at,
        "framework": "nextjs",
        "nodeVersion": "20.x",
        "directoryListing": False,
        "resourceConfig": {"functionDefaultRegions": ["iad1"]},
        "defaultResourceConfig": {"functionDefaultRegions": ["iad1"]},
        "autoAssignCustomDomains": True,
        "live": False,
        "link": {"type": "github", "repo": project.name, "org": "demo-org", "productionBranch": "main",
                 "deployHooks": [], "gitCredentialId": "", "sourceless": True, "createdAt": project.created_at,
                 "updatedAt": project.created_at, "repoId": 1},
        "lastAliasRequest": dict(project.last_alias_request) if project.last_alias_request else None,
        "lastRollbackTarget": ({"fromDeploymentId": (project.last_alias_request or {}).get("fromDeploymentId", ""),
                                "toDeploymentId": project.production_id or "",
                                "jobStatus": "succeeded",
                                "requestedAt": (project.last_alias_request or {}).get("requestedAt", 0)}
                               if project.auto_assign_paused else None),
        "targets": targets,
        "latestDeployments": latest,
        # The project-level configuration (null when rolling releases are disabled); Vercel's CLI reads it
        # to tell whether a promote starts a rolling release.
        "rollingRelease": project.rolling_config.public() if project.rolling_config is not None else None,
    }


def _release_deployment(dep: SimDeployment) -> dict[str, Any]:
    """A deployment as a rolling release names it (``currentDeployment``, ``canaryDeployment``)."""
    return {"name": dep.name, "createdAt": dep.created_at, "id": dep.id, "target": dep.target,
            "readyState": dep.state, **({"readyStateAt": dep.ready_at} if dep.ready_at else {}),
            "source": "git", "url": dep.url}


def rolling_release_v1(state: EmulatorState, release: SimRollingRelease | None) -> dict[str, Any]:
    """``GET /v1/projects/{idOrName}/rolling-release`` (and the answer of start, approve-stage, complete):
    ``{"rollingRelease": ... | null}``."""
    if release is None:
        return {"rollingRelease": None}
    named = {dep_id: _release_deployment(state.deployments[dep_id])
             for dep_id in (release.base_id, release.canary_id) if dep_id in state.deployments}
    return {"rollingRelease": release.body(named)}


def _project_deployment(state: EmulatorState, dep: SimDeployment) -> dict[str, Any]:
    team = _team_of(state, dep)
    return {
        "id": dep.id,
        "alias": _aliases(state, dep),
        "aliasAssigned": dep.alias_assigned_at,
        "aliasError": None,
        "createdAt": dep.created_at,
        "createdIn": "iad1",
        "creator": _creator(state),
        "deploymentHostname": dep.url.removesuffix(".vercel.app"),
        "name": dep.name,
        "meta": _meta(dep),
        "plan": "pro",
        "private": True,
        "readyState": dep.state,
        **({"readyAt": dep.ready_at} if dep.ready_at else {}),
        "target": dep.target,
        "teamId": team["id"] if team else None,
        "type": "LAMBDAS",
        "url": dep.url,
        "userId": state.user["id"],
    }


def alias_v4(state: EmulatorState, alias: SimAlias) -> dict[str, Any]:
    dep = state.deployments.get(alias.deployment_id)
    return {
        "alias": alias.alias,
        "created": _iso(alias.created_at),
        "createdAt": alias.created_at,
        "updatedAt": alias.updated_at,
        "creator": _creator(state),
        "deployment": {"id": alias.deployment_id, "url": dep.url if dep else ""},
        "deploymentId": alias.deployment_id,
        "projectId": alias.project_id,
        "uid": alias.uid,
    }


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso(ms: int) -> str:
    return _iso(ms)


def pagination(items: list[int], more: bool) -> dict[str, Any]:
    """Vercel's cursor pagination: ``next`` is the timestamp to pass as ``until``."""
    return {"count": len(items), "next": items[-1] if (items and more) else None,
            "prev": items[0] if items else None}


def user_body(state: EmulatorState) -> dict[str, Any]:
    user = state.user
    return {"user": {"id": user["id"], "uid": user["id"], "email": user["email"], "username": user["username"],
                     "name": user["name"], "avatar": None, "defaultTeamId": None, "version": None,
                     "billing": {"plan": "hobby"}, "createdAt": 0}}


def team_body(team: dict[str, Any]) -> dict[str, Any]:
    return {"id": team["id"], "slug": team["slug"], "name": team["name"], "createdAt": team["createdAt"],
            "avatar": None, "membership": {"role": "OWNER", "confirmed": True}, "limited": False}
