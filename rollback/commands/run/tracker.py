"""``rollback run``: one plan across layers, built from each layer's own planning functions.

:func:`~rollback.commands.run.plan.plan_run` reads the world and returns a
:class:`~rollback.runner.Prepared` (its facts a :class:`~rollback.commands.run.types.RunFacts`): one
:class:`~rollback.plan.Plan` whose steps come from the layers' planners
(``app``: :func:`~rollback.commands.app.plan.plan_rollback` or
:func:`~rollback.commands.app.plan.plan_revert`; ``edge``:
:func:`~rollback.commands.infra.edge.plan_edge`; ``assets``:
:func:`~rollback.commands.infra.assets.plan_assets` plus an invalidation;
``infra``: the stack's preview and restore; ``db``: an emergency backup, and
:func:`~rollback.commands.db.restore.plan_restore`, a migration repair or an RDS
restore), in the order of :data:`rollback.model.layers.RUN_ORDER`:

1. ``run.world``: a read-only check that the world is still as planned (what
   production serves, the distribution's ETag, the asset keys' versions, the
   backup, the stack's last update): a plan saved with ``--dry-run --json`` and
   run later with ``--plan FILE`` is refused when something changed since;
2. ``db.emergency-backup`` when the db layer is included;
3. the layers, app first (the fastest way to restore service), each step id
   prefixed with its layer (``app.vercel-rollback``, ``edge.associate``) so that
   ids stay unique; a health check (``<layer>.health``) right after the layer
   that restores service (app when included, else the first of the others);
4. the database restore (swap) last, and only when the db layer is asked for;
5. ``verify.checklist``: the post-rollback checklist (unless ``--no-verify``).

Cross-layer hazards (:mod:`rollback.model.layers`) are stated in the plan's notes and
enforced: a blocking one refuses the run (exit 4) unless its flag is given.

:class:`RunTracker` keeps the incident's timeline and the notifications in step
with a running plan: ``run_started``, ``initiated`` (the first state-changing
step started), ``restored`` (the restoring layer finished and its health check
passed), ``run_finished``; the notifier's start, heartbeats, one post per layer
and the end.

One job per module: :mod:`~rollback.commands.run.types` (the request, the plan,
saved plans, segments), :mod:`~rollback.commands.run.plan` (each layer's planning
and :func:`~rollback.commands.run.plan.plan_run`), :mod:`~rollback.commands.run.world` (the
``run.check_world`` and ``--switch-database`` handlers); this module keeps :class:`RunTracker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rollback.commands.incident import targets_seconds
from rollback.commands.run.types import (
    is_emergency,
    restoring_step,
    segments,
)
from rollback.errors import RollbackError
from rollback.model.incident import read_incident
from rollback.plan import Plan, Step
from rollback.runner import RunObserver

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.journal import Journal
    from rollback.model.incident import IncidentLog
    from rollback.notify import Notifier
    from rollback.runner import StepResult


__all__ = [
    "RunTracker",
]


class RunTracker(RunObserver):
    """The incident's timeline and the notifications, kept with a running plan.

    Written once per incident: ``initiated`` when the first state-changing step starts (not a check
    or a wait), ``restored`` when the restoring step (:func:`restoring_step`) finishes, with its
    health checks. Per run: ``run_started`` (:meth:`started`, when the journal opens) and
    ``run_finished`` (:meth:`closed`, after the journal is finished). Notifications: the start, a
    heartbeat while a long step runs, one post per layer, and the end (:meth:`finish`, which also
    closes the notifier before the journal is finished, so that a failed post is noted in it).
    """

    def __init__(self, plan: Plan, *, config: Config, incident: IncidentLog | None, notifier: Notifier,
                 severity: str | None, resumes: str | None = None, done: Sequence[str] = (),
                 close_unstarted: float = 0.0) -> None:

        self.plan = plan
        self.config = config
        self.incident = incident
        self.notifier = notifier
        self.severity = severity
        self.resumes = resumes
        self.layer, self.restored_step = restoring_step(plan)
        record = read_incident(incident.path) if incident is not None else None
        timeline = record.timeline() if record is not None else {}
        self.initiated = bool(timeline.get("initiated"))
        self.restored = bool(timeline.get("restored"))
        self.restored_at: str | None = timeline.get("restored")
        self.verified: bool | None = None
        self.run_id: str | None = None
        self.failure: str | None = None
        self.finished = False
        self.ended = False
        self._segments = segments(plan)
        self._last_of = {steps[-1].id: (group, steps) for group, steps in self._segments}
        self._results: dict[str, StepResult] = {}
        self.done = set(done)
        # How long a run whose journal never opened (the lock is held) waits for posts already queued:
        # only a caller's own (``rollback watch`` shares its notifier), none of ours.
        self.close_unstarted = close_unstarted

    # ---------------------------------------------------------------- run
    def started(self, journal: Journal) -> None:
        """The run's journal is open: ``run_started`` on the incident, the first notification."""
        self.run_id = journal.run_id
        if self.incident is not None:
            fields: dict[str, Any] = {"run": journal.run_id, "layers": list(self.plan.layers),
                                      "plan_title": self.plan.title}
            if self.resumes:
                fields["resumes"] = self.resumes
            self.incident.write("run_started", **fields)
            journal.note(f"attached to incident {self.incident.id}", incident=self.incident.id)
        self.notifier.attach(journal)
        if self.resumes:
            self.notifier.post(f"resuming run {self.resumes} as {journal.run_id}: {self.plan.title}")
        self.notifier.start(self.severity, self.plan)

    # ---------------------------------------------------------------- steps
    def step_started(self, number: int, step: Step, *, dry_run: bool) -> None:
        # A tracker follows real runs only (a dry run changes nothing, posts nothing, records nothing).
        self.notifier.step_started(step)
        # Imported here: the registry imports this module (its handler classes).
        from rollback.commands.registry import is_read_only  # steps that only read or wait, as declared

        if not self.initiated and not is_read_only(step.action) and step.id not in self.done:
            self.initiated = True
            if self.incident is not None:
                self.incident.write("initiated", run=self.run_id, step=step.id)

    def step_finished(self, number: int, item: StepResult) -> None:
        if item.dry_run:
            return
        self.notifier.step_finished(item.step)
        self._results[item.step.id] = item
        step = item.step
        if step.action == "verify.checklist":
            self.verified = bool(item.result.get("ok"))
        if step.id == self.restored_step and not self.restored:
            self.restored = True
            checks = list(item.result.get("checks") or []) if step.action == "health.check" else []
            if self.incident is not None:
                entry = self.incident.write("restored", run=self.run_id, layer=self.layer, step=step.id,
                                            health=checks)
                self.restored_at = str(entry.get("ts"))
        if step.id in self._last_of:
            group, steps = self._last_of[step.id]
            self._layer_done(group, steps)

    def _layer_done(self, group: str, steps: Sequence[Step]) -> None:
        if group == "run":
            return
        results = [self._results[s.id] for s in steps if s.id in self._results]
        seconds = round(sum(r.seconds for r in results), 3)
        already = sum(1 for r in results if r.already_done)
        if group == "db" and is_emergency(steps):
            name = (results[-1].result.get("name") if results else None) or "taken"
            label, status, detail = "db", "emergency backup taken", str(name)
        elif group == "verify":
            label, status, detail = "verification", "passed" if self.verified else "done", ""
        else:
            label = group
            status = "restored" if group == self.layer and self.restored else "done"
            detail = ""
            dumps = [self._results[s.id] for s in steps if s.action == "db.backup_replaced" and s.id in self._results]
            if group == "db" and dumps:  # a restore's safety dump, written once service was back
                detail = f"safety dump {dumps[-1].result.get('name') or 'written'}"
        if already:
            detail = (detail + "; " if detail else "") + f"{already} step(s) already done"
        self.notifier.layer_done(label, {"status": status, "seconds": seconds, "steps": len(steps), "detail": detail})

    def step_failed(self, number: int, step: Step, error: BaseException) -> None:
        self.notifier.step_finished(step)
        if step.action == "verify.checklist":
            self.verified = False
        message = error.one_line() if isinstance(error, RollbackError) else (
            "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}")
        self.failure = f"stopped at step {step.id} ({step.describe()}): {message}"

    def run_started(self, journal: Journal) -> None:
        self.started(journal)

    def run_ending(self, status: str, exit_code: int) -> None:
        if self.run_id is None:  # the journal never opened: nothing was done, nothing to post
            if not self.ended:
                self.ended = True
                self.notifier.close(timeout=self.close_unstarted)
            return
        self.finish(status, exit_code)

    def run_finished(self, status: str, exit_code: int) -> None:
        self.closed(status, exit_code)

    # ---------------------------------------------------------------- end
    def metrics(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.incident is None:
            return {}, {}
        document = read_incident(self.incident.path).to_dict(targets_seconds(self.config))
        return dict(document["metrics"]), dict(document["targets"])

    def finish(self, status: str, exit_code: int, timeout: float = 5.0) -> None:
        """The end post and the notifier closed (at most ``timeout`` s), before the journal is finished."""
        if self.ended:
            return
        self.ended = True
        if status != "succeeded":
            why = self.failure or f"the run {status}"
            resume = f"; continue with: rollback resume {self.run_id}" if self.run_id else ""
            self.notifier.post(f"{why} (exit {exit_code}){resume}")
        metrics, targets = self.metrics()
        self.notifier.end(self.restored, self.verified, metrics, targets)
        self.notifier.close(timeout=timeout)

    def closed(self, status: str, exit_code: int) -> None:
        """After the journal is finished: ``run_finished`` on the incident."""
        if self.finished or self.incident is None or self.run_id is None:
            return
        self.finished = True
        self.incident.write("run_finished", run=self.run_id, status=status, exit_code=exit_code)
