"""The health and version checks that close an app change (and ``rollback run``'s ``<layer>.health``
steps): the plan step, its handler, and the checks as plain functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollback.actions import StepHandlers, action
from rollback.adapters.health import HealthChecker, make_health_client
from rollback.adapters.http import DEFAULT_MAX_BODY
from rollback.config import HealthSettings
from rollback.errors import ChecksFailed
from rollback.lock import pause
from rollback.plan import Step
from rollback.runner import Check, StepContext

if TYPE_CHECKING:
    from rollback.adapters.health import CheckResult
    from rollback.config import Config


__all__ = [
    "HealthHandlers",
    "check_health",
    "health_step",
    "run_health_checks",
]


# ------------------------------------------------------------ health and version (the "verify" layer)
def health_step(config: Config, *, expected_version: str | None = None, expected_from: str | None = None,
                after: str = "the change is done", step_id: str = "health") -> Step | None:
    """The configured health and version checks as a plan step (``None`` without ``health.base_url``).

    The expected version is ``expected_version``, or the ``head`` of step ``expected_from``'s
    result (a revert's commit); it is checked only when a ``version_path`` is configured."""
    settings = config.env.health
    if not settings.base_url:
        return None
    version_path = settings.version_path
    shown = [*settings.paths, *([version_path] if version_path else [])]
    expecting = ""
    if version_path and expected_version:
        expecting = f" (expecting {expected_version[:12]})"
    return Step(id=step_id, action="health.check", target=settings.base_url, layer="verify",
                summary="health and version checks: " + ", ".join(shown) + expecting,
                params={"base_url": settings.base_url, "paths": list(settings.paths), "version_path": version_path,
                        "expect_status": settings.expect_status, "timeout": settings.timeout,
                        "expected_version": expected_version if version_path else None,
                        "expected_from": expected_from, "after": after, "max_body": config.max_body})


def _health_settings(params: Mapping[str, Any]) -> HealthSettings:
    return HealthSettings(base_url=str(params["base_url"]), paths=list(params.get("paths") or ["/"]),
                          version_path=params.get("version_path"), timeout=float(params.get("timeout") or 5.0),
                          expect_status=int(params.get("expect_status") or 200))


def _expected_version(step: Step, ctx: StepContext) -> str | None:
    if step.params.get("expected_version"):
        return str(step.params["expected_version"])
    source = step.params.get("expected_from")
    if source:
        head = (ctx.results.get(step.sibling(str(source))) or {}).get("head")
        return str(head) if head else None
    return None


@dataclass
class HealthHandlers(StepHandlers):
    """The ``health.check`` step: GET the configured paths (and the version endpoint), retried for a
    short settle window; a failed check fails the step with exit 3, listing every check."""

    layer = "verify"


    def check(self, step: Step, ctx: StepContext) -> Check:
        earlier = ctx.earlier.get(step.id)
        if earlier is not None:  # passed in the run resumed: the steps after it were built on that
            return Check(True, dict(earlier), f"check {step.params['base_url']}")
        return Check(False, {"would_check": step.params["base_url"]}, f"check {step.params['base_url']}")

    @action("health.check", check="check", read_only=True)
    def run(self, step: Step, ctx: StepContext) -> dict[str, Any]:
        results = check_health(_health_settings(step.params), expected_version=_expected_version(step, ctx),
                               sleep=self.sleep, clock=self.clock,
                               max_body=int(step.params.get("max_body") or DEFAULT_MAX_BODY))
        for result in results:
            ctx.note(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}")
        failed = [r for r in results if not r.ok]
        if failed:
            after = str(step.params.get("after") or "the change is done")
            raise ChecksFailed(f"{len(failed)} of {len(results)} health check(s) failed: "
                               + "; ".join(f"{r.name} {r.detail}" for r in failed),
                               f"{after}; investigate the app", checks=[r.to_dict() for r in results])
        return {"checks": [r.to_dict() for r in results]}


def check_health(settings: HealthSettings, *, expected_version: str | None = None, settle: float | None = None,
                 sleep: Callable[[float], None] = pause, clock: Callable[[], float] = time.monotonic,
                 max_body: int = DEFAULT_MAX_BODY) -> list[CheckResult]:
    """The health and version checks of ``settings``, retried for a short settle window until all pass."""
    window = settings.timeout if settle is None else settle
    with make_health_client(settings) as http:
        checker = HealthChecker(http, settings, max_body=max_body)
        deadline = clock() + window
        while True:
            results = checker.run(expected_version)
            if all(r.ok for r in results) or clock() >= deadline:
                return results
            sleep(0.25)


def run_health_checks(config: Config, *, expected_version: str | None = None, settle: float | None = None,
                      sleep: Callable[[float], None] = pause,
                      clock: Callable[[], float] = time.monotonic) -> list[CheckResult]:
    """The configured health and version checks, retried for a short settle window until all pass."""
    return check_health(config.env.health, expected_version=expected_version, settle=settle, sleep=sleep,
                        clock=clock, max_body=config.max_body)
