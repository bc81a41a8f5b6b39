"""Progress posts to the incident channel: a Slack-compatible incoming webhook.

The runbook's communication plan: post when the rollback starts, as it goes
(at most every 5 minutes while a long step runs: an RDS restore takes 10-15
minutes), and when it ends. Configured per environment::

    [env.production.notify]
    webhook_env = "SLACK_WEBHOOK_URL"   # the variable's name; the URL is a secret

Every post is ``{"text": ...}`` (Slack, Mattermost, Rocket.Chat and Teams'
Slack-compatible endpoints accept it), redacted, with ``&``, ``<`` and ``>``
escaped as Slack asks so that text from outside cannot mention ``<!channel>``
or forge a link.

A post must never stop or slow a rollback: callers only put a message on a
bounded queue; one background thread sends it with a short timeout and a few
retries (honouring ``Retry-After``). A failure is a line on stderr and a note
in the journal (written on the caller's thread, at its next call, so that the
journal keeps one writer). :meth:`Notifier.close` flushes with a deadline and
says what was not delivered.

How a command uses it::

    notifier = Notifier.from_config(config, incident=incident_id, journal=journal)
    try:
        notifier.start(severity, plan)
        for each step:   with notifier.running(step): ...   # heartbeats while it runs
        after a layer:   notifier.layer_done("app", {"status": "restored", "seconds": 41.2})
        notifier.end(restored=True, verified=True, metrics=record["metrics"], targets=record["targets"])
    finally:
        notifier.close(timeout=5)
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rollback.adapters.http import DEFAULT_MAX_BODY, AnswerRefused, AnswerTooLarge, fetch
from rollback.model.report import PHASES, format_seconds
from rollback.redact import redact_text
from rollback.templating import visible

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.plan import Plan, Step

__all__ = ["DeliveryReport", "NoteSink", "Notifier", "slack_escape"]

HEARTBEAT_SECONDS = 300.0
MAX_RETRY_AFTER = 10.0  # seconds; a longer Retry-After is not worth holding the queue for
_STOP = object()


class NoteSink(Protocol):
    """Where delivery failures are noted: :class:`rollback.journal.Journal` (or the incident record)."""

    def note(self, message: str, **fields: Any) -> Any: ...


def slack_escape(value: Any) -> str:
    """A value for Slack's mrkdwn, shown as written: one line, control characters escaped,
    ``&``, ``<`` and ``>`` as entities (no mention, no link can be forged)."""
    return visible(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _step_text(step: Step | str) -> str:
    return step if isinstance(step, str) else step.describe()


@dataclass
class DeliveryReport:
    """What happened to the posts (returned by :meth:`Notifier.close`)."""

    enabled: bool
    queued: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    unsent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "queued": self.queued, "sent": self.sent, "failed": self.failed,
                "dropped": self.dropped, "unsent": self.unsent}


class Notifier:
    """Posts an incident's progress to a webhook without ever holding up the rollback.

    A notifier without a URL (no ``[env.X.notify]``, or its variable unset) is
    disabled: every method is a cheap no-op, so callers never branch on it.
    """

    def __init__(
        self,
        url: str | None,
        *,
        env: str = "",
        incident: str | None = None,
        drill: bool = False,
        journal: NoteSink | None = None,
        heartbeat_every: float = HEARTBEAT_SECONDS,
        timeout: float = 5.0,
        attempts: int = 3,
        queue_size: int = 50,
        stderr: Callable[[str], None] | None = None,
        why_disabled: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.url = url
        self.max_body = max_body  # a webhook's answer is read this far at most (rollback.adapters.http.fetch)
        self.env = env
        self.incident = incident
        self.drill = drill
        self.journal = journal
        self.heartbeat_every = heartbeat_every
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self._stderr = stderr or (lambda line: print(line, file=sys.stderr, flush=True))
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._notes: list[str] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._deadline: float | None = None
        self._step: tuple[str, float] | None = None  # (description, monotonic start)
        self._last_heartbeat = 0.0
        self._failures_shown = 0
        self.report = DeliveryReport(enabled=url is not None)
        if why_disabled:
            self._fail(why_disabled)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, config: Config, *, incident: str | None = None, drill: bool = False,
                    journal: NoteSink | None = None, stderr: Callable[[str], None] | None = None) -> Notifier:
        """The environment's notifier: enabled when ``[env.X.notify]`` is set and its variable holds a URL."""
        settings = config.env.notify
        if settings is None:
            return cls(None, env=config.env_name, incident=incident, drill=drill, journal=journal, stderr=stderr)
        url = config.webhook_url()
        why = None
        if url is None:
            why = f"notifications are configured but ${settings.webhook_env} is not set: nothing will be posted"
        elif not url.lower().startswith(("https://", "http://")):
            why = f"${settings.webhook_env} is not an http(s) URL: nothing will be posted"
            url = None
        return cls(url, env=config.env_name, incident=incident, drill=drill, journal=journal,
                   heartbeat_every=settings.heartbeat_minutes * 60, timeout=settings.timeout, stderr=stderr,
                   why_disabled=why, max_body=config.max_body)

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def attach(self, journal: NoteSink | None) -> None:
        """Note delivery failures in ``journal`` from now on (e.g. once the run's journal is open)."""
        self.journal = journal
        self._flush_notes()

    # ------------------------------------------------------------------ the messages

    def _prefix(self) -> str:
        drill = "[DRILL] " if self.drill else ""
        incident = f" ({slack_escape(self.incident)})" if self.incident else ""
        return f"{drill}*{slack_escape(self.env)}*{incident}: "

    def start(self, severity: str | None, plan: Plan | Mapping[str, Any]) -> None:
        """The rollback starts: severity and the plan's steps."""
        data = plan if isinstance(plan, Mapping) else plan.to_dict()
        steps = [s for s in data.get("steps", []) if isinstance(s, Mapping)]
        layers = list(dict.fromkeys(str(s.get("layer")) for s in steps if s.get("layer")))
        lines = [f"{self._prefix()}{slack_escape(severity or 'unrated')} rollback started: "
                 f"{slack_escape(data.get('title') or 'plan')}, {len(steps)} steps"
                 + (f" across {slack_escape(', '.join(layers))}" if layers else "")]
        for number, step in enumerate(steps[:15], start=1):
            layer = f"[{slack_escape(step.get('layer'))}] " if step.get("layer") else ""
            lines.append(f"{number}. {layer}{slack_escape(step.get('description') or step.get('summary') or '')}")
        if len(steps) > 15:
            lines.append(f"... and {len(steps) - 15} more")
        self._post("\n".join(lines))

    def layer_done(self, layer: str, result: Mapping[str, Any] | str) -> None:
        """A layer finished: ``result`` is a word (``"restored"``) or a mapping with
        ``status``, and optionally ``seconds``, ``steps``, ``detail``."""
        if isinstance(result, str):
            status, seconds, detail, steps = result, None, "", None
        else:
            status = str(result.get("status") or "done")
            seconds = result.get("seconds") if isinstance(result.get("seconds"), (int, float)) else None
            detail = str(result.get("detail") or "")
            steps = result.get("steps") if isinstance(result.get("steps"), int) else None
        text = f"{self._prefix()}layer {slack_escape(layer)}: {slack_escape(status)}"
        if seconds is not None:
            text += f" in {format_seconds(float(seconds))}"
        if steps is not None:
            text += f" ({steps} step{'' if steps == 1 else 's'})"
        if detail:
            text += f": {slack_escape(detail)}"
        self._post(text)

    def step_started(self, step: Step | str) -> None:
        """Runner hook: a step starts. While it runs, a heartbeat is posted every
        ``heartbeat_every`` seconds (5 minutes by default) by the background thread."""
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            self._step = (_step_text(step), now)
        self._ensure_thread()
        self._flush_notes()

    def step_finished(self, step: Step | str | None = None) -> None:
        """Runner hook: the running step ended (finished, failed or interrupted)."""
        with self._lock:
            self._step = None
        self._flush_notes()

    @contextlib.contextmanager
    def running(self, step: Step | str) -> Iterator[None]:
        """``with notifier.running(step): handler.act(step, ctx)``: step_started, then step_finished
        whatever happens."""
        self.step_started(step)
        try:
            yield
        finally:
            self.step_finished(step)

    def heartbeat(self, step: Step | str, elapsed: float) -> bool:
        """Post "still running" for ``step``, at most once every ``heartbeat_every`` seconds;
        ``True`` when a post was queued."""
        if not self.enabled:
            return False
        now = time.monotonic()
        with self._lock:
            if self._last_heartbeat and now - self._last_heartbeat < self.heartbeat_every:
                return False
            self._last_heartbeat = now
        self._post(f"{self._prefix()}still running: {slack_escape(_step_text(step))} "
                   f"({format_seconds(elapsed)} so far)")
        return True

    def end(self, restored: bool, verified: bool | None, metrics: Mapping[str, Any] | None = None,
            targets: Mapping[str, Any] | None = None) -> None:
        """The rollback ended: restored or not, verified or not, and the metrics against the targets."""
        state = "service restored" if restored else "service NOT restored"
        check = {True: "verification passed", False: "verification FAILED", None: "not verified"}[verified]
        text = f"{self._prefix()}rollback finished: {state}, {check}"
        parts = []
        for phase, label, _start, _end in PHASES:
            value = (metrics or {}).get(phase)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            target = (targets or {}).get(phase)
            verdict = ""
            if isinstance(target, (int, float)) and not isinstance(target, bool):
                verdict = " (met)" if value <= target else f" (missed, target {format_seconds(float(target))})"
            parts.append(f"{label.lower()} {format_seconds(float(value))}{verdict}")
        if parts:
            text += "\n" + "; ".join(parts)
        self._post(text)

    def post(self, text: str) -> None:
        """Any other message, escaped like the rest."""
        self._post(self._prefix() + slack_escape(text))

    # ------------------------------------------------------------------ delivery

    def _post(self, text: str) -> None:
        self._flush_notes()
        if not self.enabled or self._stopping.is_set():
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait(redact_text(text))
            with self._lock:
                self.report.queued += 1
        except queue.Full:
            with self._lock:
                self.report.dropped += 1
                first = self.report.dropped == 1
            if first:
                self._fail("notification queue full (the webhook is too slow): later posts are dropped")

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._work, name="rollback-notify", daemon=True)
                self._thread.start()

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _work(self) -> None:
        import httpx

        tick = min(1.0, max(0.05, self.heartbeat_every / 4))
        with httpx.Client(follow_redirects=False) as client:
            while True:
                try:
                    item = self._queue.get(timeout=tick)
                except queue.Empty:
                    if self._stopping.is_set():
                        break  # closed, and nothing left to send
                    item = None
                if item is _STOP:
                    break
                if isinstance(item, str):
                    left = self._remaining()
                    if left is not None and left <= 0:
                        with self._lock:
                            self.report.unsent += 1
                        continue
                    self._send(client, item)
                elif not self._stopping.is_set():
                    self._maybe_heartbeat()

    def _maybe_heartbeat(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._step is None:
                return
            description, started = self._step
            since = max(started, self._last_heartbeat)
            if now - since < self.heartbeat_every:
                return
            self._last_heartbeat = now
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(redact_text(f"{self._prefix()}still running: {slack_escape(description)} "
                                               f"({format_seconds(now - started)} so far)"))
            with self._lock:
                self.report.queued += 1

    def _send(self, client: Any, text: str) -> None:
        import httpx

        from rollback.adapters.vercel import parse_retry_after

        assert self.url is not None
        error = ""
        for attempt in range(1, self.attempts + 1):
            left = self._remaining()
            if left is not None and left <= 0:
                error = error or "deadline reached"
                break
            timeout = self.timeout if left is None else max(0.05, min(self.timeout, left))
            wait: float | None = None
            try:
                # timeout bounds the whole attempt, the answer's last byte included
                response = fetch(client, "POST", self.url, json={"text": text}, max_body=self.max_body,
                                 deadline=timeout)
            except AnswerRefused as exc:
                if isinstance(exc, AnswerTooLarge) and exc.status is not None and exc.status < 300:
                    with self._lock:  # delivered; only its answer was too long to read
                        self.report.sent += 1
                    return
                error = exc.reason
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no answer'}"
            else:
                if response.status_code < 300:
                    with self._lock:
                        self.report.sent += 1
                    return
                error = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    break  # a 4xx will not get better by retrying (a revoked webhook: 403/404)
                wait = parse_retry_after(response.headers.get("Retry-After"))
            if attempt == self.attempts:
                break
            delay = min(MAX_RETRY_AFTER, wait if wait is not None else 0.5 * 2 ** (attempt - 1))
            left = self._remaining()
            if left is not None and delay >= left:
                break
            if self._stopping.wait(delay):
                # close() was called meanwhile: go on only while its deadline leaves time.
                left = self._remaining()
                if left is not None and left <= 0:
                    break
        with self._lock:
            self.report.failed += 1
        self._fail(f"notification not delivered ({error}); the rollback goes on")

    def _fail(self, message: str) -> None:
        """Say it on stderr now (from any thread); journal it on the caller's thread."""
        line = redact_text(message)
        with self._lock:
            self._notes.append(line)
            self._failures_shown += 1
            show = self._failures_shown <= 5
        if show:
            with contextlib.suppress(Exception):
                self._stderr(f"warning: {line}")

    def _flush_notes(self) -> None:
        with self._lock:
            notes, self._notes = self._notes, []
        if not notes:
            return
        if self.journal is None:
            with self._lock:
                self._notes[:0] = notes  # keep them for when a journal is attached
            return
        if getattr(self.journal, "finished", False):
            return  # a finished journal takes no more lines; they were said on stderr
        for line in notes:
            with contextlib.suppress(Exception):  # a note must never break the rollback
                self.journal.note(line, kind="notify")

    def close(self, timeout: float = 5.0) -> DeliveryReport:
        """Send what is queued, for at most ``timeout`` seconds; note what was not delivered."""
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._stopping.set()
        with self._lock:
            self._step = None
            thread = self._thread
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=max(0.0, timeout))
            thread.join(max(0.0, (self._deadline or 0) - time.monotonic()) + 0.2)
            leftover = 0
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, str):
                    leftover += 1
            with self._lock:
                self.report.unsent += leftover
            if thread.is_alive() or self.report.unsent:
                self._fail(f"{self.report.unsent} notification(s) not sent before the {timeout:g} s deadline")
        self._flush_notes()
        return self.report
