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
:class:`~rollback.model.stackdiff.ConfigValue`, which never prints them.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollback.adapters.pulumi_backend import state_from_deployment
from rollback.errors import BadInput, LockHeld, PulumiError
from rollback.model.stackdiff import ConfigValue, StackState, StackVersion, config_value_from_cli
from rollback.redact import redact_text, register_secret

__all__ = [
    "HISTORY_PAGE_SIZE",
    "PlanViolated",
    "PlanViolation",
    "PlannedStep",
    "PreviewSummary",
    "PulumiStack",
    "StepComparison",
    "UpSummary",
    "cli_available",
    "compare_steps",
    "parse_plan_violations",
    "plan_file_steps",
    "preview_json_steps",
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
    steps: tuple[dict[str, Any], ...] = ()
    """Each changing step of the preview: urn, type, op, keys (the properties that force a replacement)."""

    def to_dict(self) -> dict[str, Any]:
        return {"change_summary": self.change_summary, "plan_file": self.plan_file,
                "replacements": [s for s in self.steps if s["op"] in REPLACING_OPS]}


REPLACING_OPS = ("replace", "create-replacement", "delete-replaced")


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

    def preview_steps(self, *, message: str | None = None, config_file: Path | None = None
                      ) -> dict[str, PlannedStep]:
        """``pulumi preview --json``: the steps an update would take now, by URN (nothing is saved)."""
        import json

        with pulumi_errors("previewing", stack=self.name):
            result = self.stack.preview(json=True, message=message, color="never",
                                        config_file=str(config_file) if config_file else None)
        try:
            document = json.loads(result.stdout or "{}")
        except ValueError as exc:
            raise PulumiError("pulumi preview --json printed no JSON document",
                              "run 'pulumi preview --json' by hand to see why") from exc
        return preview_json_steps(document if isinstance(document, dict) else {})

    def preview(self, plan_file: Path, *, message: str | None = None, config_file: Path | None = None
                ) -> PreviewSummary:
        """``pulumi preview --diff --save-plan <plan_file>``: the change summary comes from the event log.

        ``config_file``: the stack config file to use (``--config-file``), when the program runs from
        another checkout than the one holding the stack's config.
        """
        steps: list[dict[str, Any]] = []

        def on_event(event: Any) -> None:
            pre = getattr(event, "resource_pre_event", None)
            metadata = getattr(pre, "metadata", None)
            if metadata is None:
                return
            op = str(getattr(metadata.op, "value", metadata.op))
            if op not in ("same", "read"):
                steps.append({"urn": str(metadata.urn), "type": str(metadata.type), "op": op,
                              "keys": [str(k) for k in (metadata.keys or [])]})

        with pulumi_errors("previewing", stack=self.name):
            result = self.stack.preview(diff=True, plan=str(plan_file), message=message, color="never",
                                        config_file=str(config_file) if config_file else None, on_event=on_event)
        return PreviewSummary({str(k): int(v) for k, v in (result.change_summary or {}).items()},
                              redact_text(result.stdout or ""), str(plan_file), tuple(steps))

    def up(self, plan_file: Path | None, *, message: str | None = None, config_file: Path | None = None,
           targets: list[str] | None = None) -> UpSummary:
        """``pulumi up --plan <plan_file>``: applies exactly what the saved plan allows.

        A plan the CLI refuses as violated raises :class:`PlanViolated` naming the resources and
        properties. ``plan_file=None`` is a plain ``pulumi up`` (the guarded fallback only), limited to
        ``targets`` (``--target``: "an exclusive list of resource URNs to update") when given.
        """
        from pulumi.automation import errors as auto_errors

        with pulumi_errors("applying the plan" if plan_file else "applying the update", stack=self.name):
            try:
                result = self.stack.up(plan=str(plan_file) if plan_file else None, message=message,
                                       color="never", show_secrets=False, target=list(targets) if targets else None,
                                       config_file=str(config_file) if config_file else None)
            except auto_errors.CommandError as exc:
                violations = parse_plan_violations("\n".join(_streams(exc)))
                if plan_file is not None and violations:
                    shown = "; ".join(v.describe() for v in violations)
                    # Not a CommandError: pulumi_errors lets it through as it is.
                    raise PlanViolated(f"pulumi up refused the saved plan: {shown}", violations=violations) from exc
                raise
        summary = result.summary
        outputs = {k: ("[secret]" if v.secret else v.value) for k, v in (result.outputs or {}).items()}
        return UpSummary(str(summary.result), {str(k): int(v) for k, v in (summary.resource_changes or {}).items()},
                         outputs, redact_text(result.stdout or ""))



# --- when `up --plan` refuses a correct plan ------------------------------------------------------
#
# Update plans are still experimental and some correct plans are refused: a Lambda function whose code
# is an Archive (pulumi/pulumi#11587, our edge function), stack outputs (#16670, #16681). The CLI then
# fails with "resource <urn> violates plan: properties changed: ~~code[...]" (or "<op> is not allowed by
# the plan"), possibly after applying the steps before it. The guarded fallback compares a fresh
# `pulumi preview --json` with the saved plan and applies without the plan only when every step the
# preview would take is one the plan allowed (same operations, same changed properties).

_VIOLATION = re.compile(r"resource (?P<urn>urn:pulumi:\S+) violates plan: (?P<detail>.*)")
_NOT_ALLOWED = re.compile(
    r"(?P<op>[a-z-]+) is not allowed by the plan: (?P<detail>.*?)(?: for (?P<urn>urn:pulumi:\S+))?$")
_CHANGED_PROPERTY = re.compile(r"(~~|\+\+|--)([A-Za-z0-9_$.\-]+)\[")


@dataclass(frozen=True)
class PlanViolation:
    """One "violates plan" report of the Pulumi CLI: which resource, which properties."""

    urn: str | None
    properties: tuple[str, ...]
    detail: str

    @property
    def resource(self) -> str:
        return self.urn.rsplit("::", 1)[-1] if self.urn else "(the stack)"

    def describe(self) -> str:
        what = f"properties {', '.join(self.properties)}" if self.properties else shorten_text(self.detail, 120)
        return f"{self.resource} ({self.urn or 'no resource named'}): {what}"

    def to_dict(self) -> dict[str, Any]:
        return {"urn": self.urn, "resource": self.resource, "properties": list(self.properties)}


def shorten_text(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _top_level_properties(detail: str) -> tuple[str, ...]:
    """``~~code[{..}!={..}] ++tags[..]`` -> ("code", "tags"), reading only bracket depth 0."""
    found: list[str] = []
    depth = 0
    index = 0
    while index < len(detail):
        char = detail[index]
        if depth == 0:
            match = _CHANGED_PROPERTY.match(detail, index)
            if match:
                found.append(match.group(2))
                index = match.end()
                depth = 1
                continue
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(depth - 1, 0)
        index += 1
    return tuple(dict.fromkeys(found))


def parse_plan_violations(text: str) -> list[PlanViolation]:
    """Every plan violation the CLI reported in ``text`` (its output of a failed ``up --plan``)."""
    violations: list[PlanViolation] = []
    for line in text.splitlines():
        line = line.strip()
        match = _VIOLATION.search(line)
        if match:
            detail = match.group("detail")
            properties = _top_level_properties(detail.split("properties changed:", 1)[-1])
            violations.append(PlanViolation(match.group("urn"), properties, detail))
            continue
        match = _NOT_ALLOWED.search(line)
        if match:
            violations.append(PlanViolation(match.group("urn"), (), f"{match.group('op')} is not allowed: "
                                                                    f"{match.group('detail')}"))
    unique: dict[tuple[str | None, tuple[str, ...]], PlanViolation] = {}
    for violation in violations:
        unique.setdefault((violation.urn, violation.properties), violation)
    return list(unique.values())


class PlanViolated(PulumiError):
    """``pulumi up --plan`` refused the saved plan (see the module note above)."""

    default_hint = "compare a fresh preview with the plan (rollback infra restore offers that), or preview again"

    def __init__(self, message: str, hint: str | None = None, *, violations: list[PlanViolation],
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.violations = violations


@dataclass(frozen=True)
class PlannedStep:
    """What an update does to one resource: its operations, the top-level properties it changes and,
    when the source says, their new values (a plan's goal: the changed ones; a preview: all new inputs)."""

    urn: str
    ops: tuple[str, ...]
    properties: frozenset[str] | None  # None: the source does not say
    values: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    deleted: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {"urn": self.urn, "ops": list(self.ops),
                "properties": sorted(self.properties) if self.properties is not None else None}


_NO_CHANGE = {"same", "read", "refresh"}


def _top(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def plan_file_steps(plan_file: Path) -> dict[str, PlannedStep]:
    """The steps a saved update plan (``pulumi preview --save-plan``) allows, by URN."""
    import json

    try:
        document = json.loads(plan_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PulumiError(f"cannot read the update plan {plan_file}: {exc}", "preview again") from exc
    plans = document.get("resourcePlans") if isinstance(document, dict) else None
    steps: dict[str, PlannedStep] = {}
    for urn, plan in (plans or {}).items():
        ops = tuple(str(op) for op in (plan or {}).get("steps") or [] if str(op) not in _NO_CHANGE)
        if not ops:
            continue
        diff = ((plan or {}).get("goal") or {}).get("inputDiff")
        properties: frozenset[str] | None = None
        values: dict[str, Any] | None = None
        deleted: frozenset[str] = frozenset()
        if isinstance(diff, dict):
            names = [*(diff.get("adds") or {}), *(diff.get("deletes") or []), *(diff.get("updates") or {})]
            properties = frozenset(_top(str(n)) for n in names)
            # apitype.PlanDiffV1: the new value of each added or updated top-level input.
            values = {str(k): v for k, v in {**(diff.get("adds") or {}), **(diff.get("updates") or {})}.items()}
            deleted = frozenset(str(n) for n in diff.get("deletes") or [])
        steps[str(urn)] = PlannedStep(str(urn), ops, properties, values, deleted)
    return steps


def preview_json_steps(document: Mapping[str, Any]) -> dict[str, PlannedStep]:
    """The steps of a ``pulumi preview --json`` document, by URN."""
    ops: dict[str, list[str]] = {}
    properties: dict[str, set[str] | None] = {}
    inputs: dict[str, dict[str, Any]] = {}
    for step in document.get("steps") or []:
        urn, op = str(step.get("urn")), str(step.get("op"))
        if op in _NO_CHANGE:
            continue
        ops.setdefault(urn, []).append(op)
        new_state = step.get("newState")
        if isinstance(new_state, dict) and isinstance(new_state.get("inputs"), dict):
            inputs[urn] = dict(new_state["inputs"])
        detailed = step.get("detailedDiff")
        reasons = step.get("diffReasons")
        if isinstance(detailed, dict) or isinstance(reasons, list):
            changed = [*(detailed or {}), *(reasons or [])]
            known = properties.get(urn) or set()
            properties[urn] = known | {_top(str(n)) for n in changed}
        else:
            properties.setdefault(urn, None)
    steps: dict[str, PlannedStep] = {}
    for urn, found in ops.items():
        names = properties.get(urn)
        steps[urn] = PlannedStep(urn, tuple(found), frozenset(names) if names is not None else None,
                                 inputs.get(urn))
    return steps


@dataclass(frozen=True)
class StepComparison:
    """A fresh preview against the saved plan."""

    unplanned: tuple[PlannedStep, ...]  # the preview would do this; the plan did not allow it
    differing: tuple[tuple[PlannedStep, PlannedStep], ...]  # (planned, previewed): other ops or properties
    done: tuple[PlannedStep, ...]  # planned, no longer needed (the failed update applied it)
    other_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(URN, properties) whose new value in the preview is not the plan's goal value."""
    unchecked: tuple[tuple[str, str], ...] = ()
    """(URN, property) whose value cannot be compared: a secret (encrypted differently on each side) or a
    value known only during the update."""
    to_apply: tuple[str, ...] = ()
    """The URNs the preview would change, every one as planned: ``pulumi up --target`` of these."""

    @property
    def approved(self) -> bool:
        """Every step the preview would take is one the plan allowed, as planned, with the planned values."""
        return not self.unplanned and not self.differing and not self.other_values

    def describe(self) -> str:
        parts = [f"not in the plan: {s.urn} {'/'.join(s.ops)}" for s in self.unplanned]
        for planned, fresh in self.differing:
            parts.append(f"{fresh.urn}: planned {'/'.join(planned.ops)} of "
                         f"{', '.join(sorted(planned.properties or [])) or '?'}, preview {'/'.join(fresh.ops)} of "
                         f"{', '.join(sorted(fresh.properties or [])) or '?'}")
        parts += [f"{urn}: the preview's new value of {', '.join(props)} is not the plan's"
                  for urn, props in self.other_values]
        if parts:
            return "; ".join(parts)
        unchecked = (f"; {len(self.unchecked)} secret or unknown value(s) compared as such only"
                     if self.unchecked else "")
        return "the preview's steps and new values are the plan's" + unchecked

    def to_dict(self) -> dict[str, Any]:
        return {"approved": self.approved, "unplanned": [s.to_dict() for s in self.unplanned],
                "differing": [{"planned": p.to_dict(), "preview": f.to_dict()} for p, f in self.differing],
                "other_values": [{"urn": u, "properties": list(p)} for u, p in self.other_values],
                "unchecked": [{"urn": u, "property": p} for u, p in self.unchecked],
                "to_apply": list(self.to_apply), "done": [s.to_dict() for s in self.done]}


# Values a side cannot know exactly: a secret (its ciphertext differs between the plan's encrypter and the
# preview's "[secret]"), a computed value (Pulumi's UnknownStringValue), an asset or archive (hashed).
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
_SIG = "4dabf18193072939515e22adb298388d"


def _opaque(value: Any) -> bool:
    return value == _UNKNOWN or (isinstance(value, Mapping) and _SIG in value)


def _same_value(planned: Any, fresh: Any, opaque: list[str], path: str) -> bool:
    if _opaque(planned) or _opaque(fresh):
        opaque.append(path)
        return _opaque(planned) == _opaque(fresh) or planned == _UNKNOWN or fresh == _UNKNOWN
    if isinstance(planned, Mapping) and isinstance(fresh, Mapping):
        return set(planned) == set(fresh) and all(_same_value(planned[k], fresh[k], opaque, f"{path}.{k}")
                                                  for k in planned)
    if isinstance(planned, list) and isinstance(fresh, list):
        return len(planned) == len(fresh) and all(_same_value(a, b, opaque, f"{path}[{i}]")
                                                  for i, (a, b) in enumerate(zip(planned, fresh, strict=True)))
    return bool(planned == fresh)


def _value_differences(planned: PlannedStep, fresh: PlannedStep) -> tuple[list[str], list[str]]:
    """(properties whose preview value is not the plan's goal value, properties compared as opaque only)."""
    if planned.values is None or fresh.values is None:
        return [], []
    differ: list[str] = []
    opaque: list[str] = []
    for name, value in sorted(planned.values.items()):
        if name not in fresh.values or not _same_value(value, fresh.values[name], opaque, name):
            differ.append(name)
    differ += sorted(name for name in planned.deleted if name in fresh.values)
    return differ, opaque


def compare_steps(planned: Mapping[str, PlannedStep], fresh: Mapping[str, PlannedStep]) -> StepComparison:
    unplanned: list[PlannedStep] = []
    differing: list[tuple[PlannedStep, PlannedStep]] = []
    other_values: list[tuple[str, tuple[str, ...]]] = []
    unchecked: list[tuple[str, str]] = []
    for urn, step in sorted(fresh.items()):
        allowed = planned.get(urn)
        if allowed is None:
            unplanned.append(step)
            continue
        same_properties = (allowed.properties is None or step.properties is None
                           or allowed.properties == step.properties)
        if allowed.ops != step.ops or not same_properties:
            differing.append((allowed, step))
            continue
        differ, opaque = _value_differences(allowed, step)
        if differ:
            other_values.append((urn, tuple(differ)))
        unchecked += [(urn, path) for path in opaque]
    done = [step for urn, step in sorted(planned.items()) if urn not in fresh]
    return StepComparison(tuple(unplanned), tuple(differing), tuple(done), tuple(other_values), tuple(unchecked),
                          tuple(sorted(fresh)))
