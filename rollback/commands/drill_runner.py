"""Running ``rollback`` commands in this process for the drill, as a shell would run them: output
captured and logged (secrets redacted), progress lines shown as they happen, and signals turned
into :class:`DrillInterrupted`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.errors import (
    EXIT_INTERRUPTED,
)
from rollback.interrupts import handling, raise_interrupt
from rollback.redact import redact_text

__all__ = ["STREAMED", "DrillInterrupted", "Invocation", "Progress", "Runner", "scoped_environ",
           "signals_ignored", "signals_interrupt"]

STREAMED = re.compile(r"^(\[\d+/\d+\] |error: |warning: |journaled as run )")


Progress = Callable[[str], None]


class DrillInterrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP during a drill (a phase's command exited 130, or the drill itself
    was interrupted between commands)."""


@dataclass
class Invocation:
    """One ``rollback`` command run by the drill."""

    argv: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def document(self) -> Any:
        """The command's ``--json`` document (``None`` when it printed none)."""
        text = self.stdout.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return None

    def error_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        if lines:
            return lines[-1].removeprefix("error: ")
        tail = [line for line in self.stderr.splitlines() if line.strip()]
        return tail[-1] if tail else f"exit {self.code}"


# --------------------------------------------------------------------------- running one command


class _Lines(io.StringIO):
    """A text stream that keeps everything written, copies it to the drill's log, and hands each
    complete line to ``echo`` (the rollback's progress, shown as it happens)."""

    def __init__(self, log: io.TextIOBase | None, echo: Progress | None) -> None:
        super().__init__()
        self._log = log
        self._echo = echo
        self._pending = ""

    def write(self, text: str) -> int:
        written = super().write(text)  # a TypeError for bytes, as a text stream must (click probes it)
        if self._log is not None:
            self._log.write(redact_text(text))
        if self._echo is not None:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._echo(line)
        return written

    def flush(self) -> None:
        super().flush()
        if self._log is not None:
            self._log.flush()

    def finish(self) -> str:
        if self._echo is not None and self._pending:
            self._echo(self._pending)
            self._pending = ""
        self.flush()
        return self.getvalue()


class Runner:
    """Runs ``rollback`` commands in this process, as a shell would run them, and logs them."""

    def __init__(self, log_path: Path | None, echo: Progress | None = None) -> None:
        self.log_path = log_path
        self.echo = echo
        self._log: io.TextIOBase | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def note(self, line: str) -> None:
        if self._log is not None:
            self._log.write(redact_text(line) + "\n")
            self._log.flush()

    def __call__(self, argv: Sequence[str], *, stream: bool = False) -> Invocation:
        from rollback.cli import main  # the drill runs the CLI in-process; commands must not import cli at load time

        args = [str(a) for a in argv]
        self.note(f"$ rollback {shlex.join(args)}")
        out = _Lines(None, None)
        echo = None
        if stream and self.echo is not None:
            real, show = sys.stderr, self.echo

            def echo(line: str) -> None:
                # The steps as they start and end, and what went wrong; the notes in between are in the log.
                if STREAMED.match(line):
                    with contextlib.redirect_stderr(real):  # the terminal, not the capture
                        show(line)

        err = _Lines(self._log, echo)
        started = time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
        stderr = err.finish()
        stdout = out.finish()
        invocation = Invocation(args, code, stdout, stderr, time.monotonic() - started)
        if self._log is not None:
            self._log.write(redact_text(stdout if stdout.endswith("\n") or not stdout else stdout + "\n"))
        self.note(f"# exit {code} in {invocation.seconds:.2f} s")
        if code == EXIT_INTERRUPTED:
            raise DrillInterrupted(shlex.join(["rollback", *args]))
        return invocation


# --------------------------------------------------------------------------- the environment


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str], unset: Sequence[str] = ()) -> Iterator[None]:
    """``values`` set (and ``unset`` removed) in ``os.environ`` for the drill; put back afterwards."""
    saved = dict(os.environ)
    try:
        for name in unset:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the drill as Ctrl-C does (a running step handles them itself)."""
    with handling(raise_interrupt, ("SIGTERM", "SIGHUP")):
        yield


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While the sandbox is being stopped: a second Ctrl-C must not leave it half stopped."""
    with handling(signal.SIG_IGN):
        yield
