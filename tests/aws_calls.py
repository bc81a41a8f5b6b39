"""Every AWS operation the CLI's code makes during the test suite, recorded with botocore's event hooks.

Installed by ``tests/conftest.py`` for the whole session: each botocore client
gets a ``before-parameter-build`` hook (operation and parameters) and an
``after-call`` hook (the HTTP status). A call is recorded only when it comes
from the ``rollback`` package itself (its adapters and commands), not from a
test seeding moto nor from the sandbox's seeders (``rollback.sandbox``).

``tests/infra_program/test_operator_role_vs_cli.py`` checks each recorded call against
the operator role's policy. With ``ROLLBACK_AWS_CALLS_FILE`` set, the calls are
also written there as JSON lines when the session ends (how that test gets them
when it runs without the AWS tests in the same session). With
``ROLLBACK_AWS_CALLS_DIR`` set (tests/run.sh, under pytest-xdist), each process
writes its own file in that directory (``gw0.jsonl``, ... or ``main.jsonl``);
``load`` of the directory reads them all, the calls of every worker together.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CALLS", "Call", "current_test", "dump", "install", "load"]

ENV_FILE = "ROLLBACK_AWS_CALLS_FILE"
ENV_DIR = "ROLLBACK_AWS_CALLS_DIR"


@dataclass
class Call:
    test: str
    service: str  # botocore's service name: "s3", "cloudfront", "rds", "cloudwatch", "lambda"
    operation: str  # "CopyObject"
    params: dict[str, Any]
    caller: str  # the innermost rollback module on the stack, e.g. "rollback.adapters.s3_versions"
    status: int | None = None  # HTTP status of the response; None when no response came
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status is not None and self.status < 300


CALLS: list[Call] = []
_LOCK = threading.Lock()
_STATE = {"test": "", "installed": False}


def current_test(nodeid: str) -> None:
    _STATE["test"] = nodeid


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return {"bytes": base64.b64encode(bytes(value[:16])).decode(), "length": len(value)}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return f"<{type(value).__name__}>"


def _caller() -> str | None:
    frame = sys._getframe(2)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module == "rollback" or module.startswith("rollback."):
            return module
        if module == "tests" or module.startswith("tests."):
            return None  # the test's own call (even when made inside a step the runner called): not the CLI's
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _before(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    caller = _caller()
    if caller is None or caller.startswith("rollback.sandbox"):
        return
    call = Call(_STATE["test"], str(model.service_model.service_name), str(model.name), _plain(params), caller)
    with _LOCK:
        CALLS.append(call)
    context["rollback_recorded_call"] = call


def _after(http_response: Any, context: dict[str, Any], **_: Any) -> None:
    call = context.get("rollback_recorded_call")
    if call is not None:
        call.status = int(getattr(http_response, "status_code", 0) or 0)


def install() -> None:
    """Hook every botocore client created from now on (idempotent)."""
    if _STATE["installed"]:
        return
    import botocore.session

    original = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build", _before)
        client.meta.events.register("after-call", _after)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    _STATE["installed"] = True


def dump(path: Path | None = None) -> None:
    target = path or (Path(os.environ[ENV_FILE]) if os.environ.get(ENV_FILE) else None)
    if target is None and os.environ.get(ENV_DIR):
        target = Path(os.environ[ENV_DIR]) / f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.jsonl"
    if target is None:
        return
    with target.open("w", encoding="utf-8") as handle:
        for call in CALLS:
            handle.write(json.dumps(asdict(call)) + "\n")


def load(path: Path) -> list[Call]:
    """The calls in a file, or in every ``*.jsonl`` file of a directory (one per worker)."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    return [Call(**json.loads(line)) for file in files
            for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
