"""Whether a stopped run may still be resumed: no other run of its environment acted since it started.

A run that lost the team lease stops with exit 4, and ``rollback resume`` continues it once the lease
is free: the finished steps are re-checked, the remaining ones act. That is right after an interruption
nobody competed with. But when another run of the environment took the lease meanwhile and *acted*
(restored and swapped the database, moved the app), the remaining steps would act on a world that run
changed: a second swap (the writes made between the two left only in a set-aside copy), the app moved
back again. The same holds for any stopped run that another run acted after.

:func:`refuse_if_overtaken` reads every run of the environment that started after the run to resume
(run ids sort by start time; the lock lets one run act at a time, so such a run took the lock after
this one's last renewal, or after it ended): the journals on this machine, and the copies the team
lease keeps in ``<lock url>/runs/`` of runs on other machines. It refuses (exit 4, naming that run,
when and on which layers it acted, and what to do instead) when one of them

- finished a step that changes something (an action outside
  :func:`~rollback.commands.registry.is_read_only`, not found already done), or
- may have: it stopped inside such a step (killed, failed, interrupted), or its copy in S3 has no end
  (a run killed or cut off from S3: the copy is refreshed at each renewal of the lease, every ``ttl / 4``
  seconds, so what it did after its last copy is unknown) while it had state-changing steps left, or
  had not planned yet.

A run that only read (health checks, the checklist), a dry run (never journaled) or no run at all
leaves the resume allowed. A local journal is written and fsynced before each step acts, so its end is
known. The run's own resumes are left to :func:`rollback.runner.load_resume_point`, which names them,
and the runs it started itself (``continues``: the background safety dump of its swap) are its own.

``rollback resume`` calls it before asking anything, and again once it holds the lock and the lease,
when no other run can act any more (a run that acted while the operator read the prompt is caught there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.errors import AwsError, BadInput, UnsafePrecondition
from rollback.lock import describe_holder
from rollback.runner import RESUMABLE, steps_in_format

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.journal import Journal, RunRecord

__all__ = ["Intervention", "SeenRun", "interventions", "refuse_if_overtaken", "runs_after"]


@dataclass(frozen=True)
class SeenRun:
    """A run's journal as found: ``where`` it was read (a path, or its copy's s3:// URL), and whether
    it is ``complete`` (the journal itself, fsynced before each act) or a copy that may lag behind."""

    record: RunRecord
    where: str
    complete: bool


@dataclass(frozen=True)
class Intervention:
    """What another run did to the environment after the run to resume started."""

    run: str
    holder: str  # describe_holder(): the run, who, host, pid, command
    where: str
    layers: tuple[str, ...]
    steps: tuple[str, ...]
    at: str | None  # when its first state-changing step finished (or, unsure, its last journaled moment)
    certain: bool  # a step finished; False: it may have acted (stopped inside a step, or its copy has no end)
    how: str  # one line: what the journal shows

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "holder": self.holder, "where": self.where, "layers": list(self.layers),
                "steps": list(self.steps), "at": self.at, "certain": self.certain, "how": self.how}


def _planned(record: RunRecord) -> dict[str, tuple[str, str]] | None:
    """Step id -> (action, layer) from the run's plan; None when its journal has no plan."""
    planned: dict[str, tuple[str, str]] = {}
    found = False
    for entry in record.entries:
        if entry.get("event") != "step_planned":
            continue
        found = True
        try:
            steps = steps_in_format(entry.get("steps"), entry.get("plan_format"))
        except BadInput:  # a newer rollback wrote it: its actions taken as they are (not read-only: it acted)
            steps = entry.get("steps")
        for step in steps if isinstance(steps, list) else []:
            if isinstance(step, Mapping) and isinstance(step.get("id"), str):
                planned[step["id"]] = (str(step.get("action") or "?"), str(step.get("layer") or "?"))
    return planned if found else None


def _acted(seen: SeenRun) -> Intervention | None:
    record = seen.record
    planned = _planned(record)
    plan = planned or {}
    state: dict[str, tuple[str, str | None]] = {}  # step id -> (started|done|quiet|failed, when)
    for entry in record.entries:
        event, step = entry.get("event"), str(entry.get("step"))
        when = entry.get("ts") if isinstance(entry.get("ts"), str) else None
        if event == "step_started":
            state[step] = ("started", when)
        elif event == "step_finished":
            quiet = entry.get("dry_run") or entry.get("already_done")
            state[step] = ("quiet" if quiet else "done", when)
        elif event == "step_failed":
            state[step] = ("failed", when)

    from rollback.commands.registry import is_read_only

    def changing(step: str) -> bool:
        return not is_read_only(plan.get(step, ("?", "?"))[0])  # a step outside the plan: unknown

    def layers(steps: Iterable[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(plan.get(s, ("?", "unknown"))[1] for s in steps))

    holder = describe_holder({**record.started, "run": record.run_id})
    base = {"run": record.run_id, "holder": holder, "where": seen.where}
    done = [s for s, (status, _) in state.items() if status == "done" and changing(s)]
    if done:
        at = state[done[0]][1]
        return Intervention(**base, layers=layers(done), steps=tuple(done), at=at, certain=True,
                            how=f"finished {len(done)} state-changing step(s) ({', '.join(done)}), the first at "
                                f"{at or '?'}")
    inside = [s for s, (status, _) in state.items() if status in ("started", "failed") and changing(s)]
    if inside:
        at = state[inside[-1]][1]
        return Intervention(**base, layers=layers(inside), steps=tuple(inside), at=at, certain=False,
                            how=f"stopped inside state-changing step {inside[-1]} (started {at or '?'}), which "
                                "may have acted")
    if seen.complete or record.finished is not None:
        return None
    left = [s for s in plan if changing(s) and s not in state]
    if planned is not None and not left:
        return None  # its plan only reads: whatever it did after its last copy changed nothing
    last = next((e.get("ts") for e in reversed(record.entries) if isinstance(e.get("ts"), str)), None)
    return Intervention(**base, layers=layers(left) if planned is not None else ("unknown",), steps=tuple(left),
                        at=last, certain=False,
                        how=f"its journal's copy ends at {last or '?'} without the run's end (the run was killed "
                            "or cut off from S3, or still runs), " + (
                                f"with state-changing steps left ({', '.join(left)})" if planned is not None
                                else "before its plan") + ": it may have acted since")


def interventions(record: RunRecord, others: Iterable[SeenRun]) -> list[Intervention]:
    """The runs among ``others`` of ``record``'s environment, started after it and not continuing it,
    that acted (or may have), oldest first. Pure: reads only the records given."""
    env = record.started.get("env")
    # The run and the runs that are part of it: its resumes (load_resume_point names those) and the runs it
    # started itself (a swap's safety dump in the background, "continues"), and theirs in turn.
    chain = {record.run_id}
    found = []
    for seen in sorted(others, key=lambda s: s.record.run_id):
        other = seen.record
        if other.started.get("resumes") in chain or other.started.get("continues") in chain:
            chain.add(other.run_id)
            continue
        if (other.run_id in chain or other.run_id <= record.run_id or other.started.get("env") != env
                or other.started.get("dry_run")):
            continue
        acted = _acted(seen)
        if acted is not None:
            found.append(acted)
    return found


def runs_after(config: Config, record: RunRecord) -> list[SeenRun]:
    """The journals of the runs started after ``record``: this machine's, and the team's copies in S3
    (``[lock] url``) of the others. A run found in both is read from its own journal here."""
    from rollback.journal import list_runs, parse_run

    seen = {r.run_id: SeenRun(r, str(r.path), True) for r in list_runs(config.journal_dir, after=record.run_id)}
    settings = config.lock_settings
    if settings.url:
        from rollback.lock import TeamLock

        try:
            for run_id, url, data in TeamLock(settings.url, settings.ttl).shared_runs(after=record.run_id):
                if run_id not in seen:
                    seen[run_id] = SeenRun(parse_run(run_id, data, Path(run_id)), url, False)
        except AwsError as exc:
            raise exc.with_hint("resume reads the team's journals to know whether another run acted since this "
                                "one; nothing was done: try again once S3 answers") from exc
    return list(seen.values())


def refuse_if_overtaken(config: Config, run: str, *, journal: Journal | None = None) -> None:
    """Refuse (:class:`UnsafePrecondition`, exit 4) to resume run ``run`` (an id, a unique prefix, or
    ``last``) when another run of its environment acted since it started (see the module's docstring).
    ``journal``: the resume's own, already open (it holds the lock and the lease): a refusal is noted
    there and finishes it."""
    from rollback.journal import find_run

    record = find_run(config.journal_dir, run)
    if (record.status not in RESUMABLE or record.started.get("dry_run")
            or record.started.get("env") != config.env_name):
        return  # not a resume at all: load_resume_point and the caller say why (exit 2)
    found = interventions(record, runs_after(config, record))
    if not found:
        return
    first = found[0]
    more = f" (and {len(found) - 1} more run(s) after it)" if len(found) > 1 else ""
    acted = "acted" if first.certain else "may have acted"
    look = (f"'rollback journal show {first.run}'" if not first.where.startswith("s3://")
            else f"{first.where} (or 'rollback journal show {first.run}' on its machine)")
    error = UnsafePrecondition(
        f"run {record.run_id} cannot be resumed: another run {acted} on env {record.started.get('env')!r} since "
        f"it started, on layer(s) {', '.join(first.layers)}: {first.holder}; it {first.how}{more}",
        f"nothing was done; resuming would carry on with this run's plan in a world that run changed, e.g. swap "
        f"the database a second time or move the app back; see what it did in {look}, then plan from the world "
        f"as it is now: 'rollback decide --live', then a new 'rollback run'",
        details={"run": record.run_id, "acted": [i.to_dict() for i in found]})
    if journal is not None:
        journal.note(error.message, overtaken_by=first.to_dict())
        journal.finish("refused", error.exit_code, error=error.one_line())
    raise error
