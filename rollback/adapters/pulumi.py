"""Every call to the Pulumi Automation API (``pulumi.automation``) lives here.

:class:`PulumiStack` wraps one ``auto.Stack`` (given to it; :func:`select_stack`
builds one for a project directory) and returns our types:

- ``history()``: ``pulumi stack history --json --show-secrets --page-size N``
  with N large enough for the whole history (the CLI's default page is 10);
- ``export()``: ``pulumi stack export --show-secrets``;
- ``get_config()`` / ``set_config()``: ``pulumi config --json`` and
  ``pulumi config set-all`` / ``rm-all``;
- ``preview(plan)``: ``pulumi preview --diff --save-plan <plan>``;
- ``up(plan)``: ``pulumi up --yes --skip-preview --plan <plan>`` (exactly the
  saved plan).

Library errors are mapped in one place, :func:`pulumi_errors`:
``ConcurrentUpdateError`` (the stack is locked) -> :class:`LockHeld`,
``StackNotFoundError`` -> :class:`BadInput`, any other ``CommandError`` ->
:class:`PulumiError` with the CLI's last error lines, redacted.

Secret config values come back decrypted from ``--show-secrets``: they are
registered for redaction at once and only ever leave this module inside
:class:`~rollback.stackdiff.ConfigValue`, which never prints them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollback.adapters.pulumi_backend import state_from_deployment
from rollback.errors import BadInput, LockHeld, PulumiError
from rollback.redact import redact_text, register_secret
from rollback.stackdiff import ConfigValue, StackState, StackVersion, config_value_from_cli

__all__ = [
    "HISTORY_PAGE_SIZE",
    "PreviewSummary",
    "PulumiStack",
    "UpSummary",
    "cli_available",
    "pulumi_errors",
    "select_stack",
]

# Large enough for any stack's whole history in one page: the CLI's default is 10.
HISTORY_PAGE_SIZE = 100_000


def cli_available() -> bool:
    """Whether a ``pulumi`` executable is on PATH."""
    return shutil.which("pulumi") is not None


def _tail(text: str, lines: int = 4) -> str:
    kept = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return redact_text(" | ".join(kept[-lines:]))[:600]


def _streams(exc: BaseException) -> tuple[str, str]:
    """(stdout, stderr) of a CommandError: it keeps only ``str(CommandResult)``."""
    text = str(exc)
    stdout, _, stderr = text.partition("\n stderr: ")
    _, _, stdout = stdout.partition("\n stdout: ")
    return stdout, stderr


@contextmanager
def pulumi_errors(action: str, *, stack: str = "") -> Iterator[None]:
    """Map ``pulumi.automation`` errors raised while ``action`` runs to ours."""
    from pulumi.automation import errors as auto_errors

    try:
        yield
    except auto_errors.ConcurrentUpdateError as exc:
        holder = _tail(_streams(exc)[1], 2)
        raise LockHeld(
            f"{action}: stack {stack} is locked by another update ({holder})",
            f"wait for it to finish; if it is stale, run 'pulumi cancel --stack {stack}' and retry",
            holder=holder,
        ) from exc
    except auto_errors.StackNotFoundError as exc:
        raise BadInput(f"{action}: stack {stack} not found ({_tail(_streams(exc)[1], 1)})",
                       "check pulumi.stack and pulumi.backend_url in rollback.toml") from exc
    except auto_errors.CommandError as exc:
        stdout, stderr = _streams(exc)
        raise PulumiError(f"{action} failed: {_tail(stderr) or _tail(stdout)}",
                          "run the same pulumi command by hand to see its full output") from exc
    except auto_errors.InvalidVersionError as exc:
        raise PulumiError(f"{action}: unsupported Pulumi CLI ({exc})", "install Pulumi CLI 3.x") from exc
    except FileNotFoundError as exc:
        raise PulumiError(f"{action}: the Pulumi CLI is not installed ({exc.filename})",
                          "install it, or use --offline where the command offers it") from exc


def select_stack(stack: str, work_dir: Path, *, backend_url: str | None = None,
                 env: Mapping[str, str] | None = None) -> PulumiStack:
    """Select ``stack`` of the Pulumi project in ``work_dir`` (where Pulumi.yaml lives)."""
    from pulumi import automation as auto

    env_vars = dict(env or {})
    if backend_url:
        env_vars["PULUMI_BACKEND_URL"] = backend_url
    with pulumi_errors("selecting the stack", stack=stack):
        workspace = auto.LocalWorkspace(work_dir=str(work_dir), env_vars=env_vars)
        try:
            selected = auto.Stack.select(stack, workspace)
        except auto.StackNotFoundError as exc:
            raise BadInput(f"stack {stack} not found ({_existing_stacks(workspace)})",
                           "check pulumi.stack, pulumi.project_dir (Pulumi.yaml's name) and pulumi.backend_url "
                           "in rollback.toml") from exc
    return PulumiStack(selected)


def _existing_stacks(workspace: Any) -> str:
    """The stacks the backend has for this project, for a "not found" message."""
    from pulumi.automation import errors as auto_errors

    try:
        names = sorted(str(s.name) for s in workspace.list_stacks())
    except (auto_errors.CommandError, OSError, ValueError):
        return "the backend's stacks could not be listed"
    return f"stacks there: {', '.join(names)}" if names else "the backend has no stack of this project"


@dataclass(frozen=True)
class PreviewSummary:
    change_summary: dict[str, int]
    stdout: str
    plan_file: str

    def to_dict(self) -> dict[str, Any]:
        return {"change_summary": self.change_summary, "plan_file": self.plan_file}


@dataclass(frozen=True)
class UpSummary:
    result: str
    resource_changes: dict[str, int]
    outputs: dict[str, Any]
    stdout: str

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "resource_changes": self.resource_changes, "outputs": self.outputs}


def _epoch(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int(value.replace(tzinfo=UTC).timestamp())


class PulumiStack:
    """One stack through the Automation API (the ``auto.Stack`` is given to it)."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.name: str = str(stack.name)

    def history(self, newest: int | None = None) -> list[StackVersion]:
        """Every update (or one page of the ``newest`` N), oldest first. Self-managed backends
        report version 0 for every update: then versions are numbered here, oldest = 1 (which
        is right only for the whole history: callers read it all in that case)."""
        with pulumi_errors("reading the stack history", stack=self.name):
            summaries = self.stack.history(page_size=newest or HISTORY_PAGE_SIZE, page=1, show_secrets=True)
        summaries = list(reversed(summaries))  # the CLI lists newest first
        numbered_locally = all(not (s.version or 0) for s in summaries)
        versions: list[StackVersion] = []
        for number, summary in enumerate(summaries, start=1):
            config: dict[str, ConfigValue] = {}
            for key, raw in (summary.config or {}).items():
                # UpdateSummary turns the CLI's {"value", "secret"} into auto.ConfigValue.
                value = (ConfigValue(None if raw.value is None else str(raw.value), bool(raw.secret))
                         if hasattr(raw, "secret") else config_value_from_cli(raw))
                if value.secret and value.value:
                    register_secret(value.value)
                config[str(key)] = value
            versions.append(StackVersion(
                version=number if numbered_locally else int(summary.version),
                kind=str(summary.kind),
                result=str(summary.result),
                message=str(summary.message or ""),
                start_time=_epoch(summary.start_time),
                end_time=_epoch(summary.end_time),
                environment={str(k): str(v) for k, v in (summary.environment or {}).items()},
                config=config,
                resource_changes={str(k): int(v) for k, v in (summary.resource_changes or {}).items()},
                numbered_locally=numbered_locally,
            ))
        return versions

    def export(self) -> StackState:
        """The current state (``pulumi stack export``)."""
        with pulumi_errors("exporting the stack", stack=self.name):
            deployment = self.stack.export_stack()
        return state_from_deployment(dict(deployment.deployment or {}))

    def outputs(self) -> dict[str, Any]:
        """Current stack outputs; secret outputs are masked."""
        with pulumi_errors("reading the stack outputs", stack=self.name):
            outputs = self.stack.outputs()
        return {k: ("[secret]" if v.secret else v.value) for k, v in outputs.items()}

    def get_config(self) -> dict[str, ConfigValue]:
        """The stack's config as the CLI resolves it (``pulumi config --show-secrets --json``)."""
        with pulumi_errors("reading the stack config", stack=self.name):
            values = self.stack.get_all_config()
        config: dict[str, ConfigValue] = {}
        for key, value in values.items():
            if value.secret and value.value:
                register_secret(str(value.value))
            config[str(key)] = ConfigValue(str(value.value), bool(value.secret))
        return config

    def set_config(self, values: Mapping[str, ConfigValue], *, remove: list[str] | tuple[str, ...] = ()) -> None:
        """Set ``values`` (secrets re-encrypted by the CLI) and remove ``remove``, in two CLI calls."""
        from pulumi import automation as auto

        missing = [key for key, value in values.items() if value.secret and value.value is None]
        if missing:
            raise PulumiError(f"cannot set secret config {', '.join(missing)}: its plaintext is not available",
                              "read the history through the Pulumi CLI (with the stack's passphrase/KMS access)")
        with pulumi_errors("writing the stack config", stack=self.name):
            if values:
                self.stack.set_all_config({key: auto.ConfigValue(value=str(value.value), secret=value.secret)
                                           for key, value in values.items()})
            if remove:
                self.stack.remove_all_config(list(remove))

    def preview(self, plan_file: Path, *, message: str | None = None) -> PreviewSummary:
        """``pulumi preview --diff --save-plan <plan_file>``: the change summary comes from the event log."""
        with pulumi_errors("previewing", stack=self.name):
            result = self.stack.preview(diff=True, plan=str(plan_file), message=message, color="never")
        return PreviewSummary({str(k): int(v) for k, v in (result.change_summary or {}).items()},
                              redact_text(result.stdout or ""), str(plan_file))

    def up(self, plan_file: Path, *, message: str | None = None) -> UpSummary:
        """``pulumi up --plan <plan_file>``: applies exactly what the saved plan allows."""
        with pulumi_errors("applying the plan", stack=self.name):
            result = self.stack.up(plan=str(plan_file), message=message, color="never", show_secrets=False)
        summary = result.summary
        outputs = {k: ("[secret]" if v.secret else v.value) for k, v in (result.outputs or {}).items()}
        return UpSummary(str(summary.result), {str(k): int(v) for k, v in (summary.resource_changes or {}).items()},
                         outputs, redact_text(result.stdout or ""))

