"""Run the Pulumi program in-process under Pulumi's mocks and record what it declares.

No engine, CLI, plugin or cloud account is involved: the program is executed
with ``pulumi.runtime.set_mocks`` and every resource registration is captured
with its *inputs* (what the program declares), Outputs resolved to plain
values. Running it twice, with the current and with a pinned config, and
comparing the two results shows which declared inputs a pin changes; this is
what ``rollback infra preview --offline`` and the infra tests do.

Importing this module has no side effects and does not import pulumi; pulumi
is imported inside the run. Each run happens in a fresh thread with its own
event loop and context, because the Pulumi runtime keeps its settings, root
stack and config in context variables and refuses a second root stack in one
context. Runs are serialised: the runtime also keeps some process-wide state.

Mocked values are deterministic (account 123456789012, region us-east-1,
Lambda functions report version 3), so two runs of the same program with
the same config give identical results. Data-source calls (invokes) answer
from ``invokes`` (token -> result, or a function of the call's arguments);
unknown ones answer ``{}``, so a program sees "nothing exists yet" unless a
test says otherwise.

Each run imports the program's own package (``infra`` for ``<dir>/infra``)
with the program's parent directory first on ``sys.path``, and afterwards puts
``sys.path`` and any copy of that package the caller had imported back as they
were: running a program from another checkout (a ``git worktree`` of an older
commit, a test's copy) never replaces the caller's modules.

Besides its inputs, each resource's options that matter for a rollback are
recorded (``protect``, ``retain_on_delete``, ``ignore_changes``,
``delete_before_replace``, ``replace_on_changes``, ``depends_on``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

__all__ = [
    "MOCK_ACCOUNT_ID",
    "MOCK_FUNCTION_VERSION",
    "MOCK_REGION",
    "SECRET_MASK",
    "MockRun",
    "diff_declared_inputs",
    "run_program",
    "run_program_under_mocks",
]

MOCK_ACCOUNT_ID = "123456789012"
MOCK_REGION = "us-east-1"
MOCK_FUNCTION_VERSION = "3"
"""Version every mocked Lambda function reports as its newest published one."""

SECRET_MASK = "[secret]"
_SECRET_KEY_HINTS = ("password", "secret", "token")
# How the mock monitor hands over secret inputs (pulumi.runtime.rpc's wire signatures).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

_DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"
_RUN_LOCK = threading.Lock()
_T = TypeVar("_T")


@dataclass(frozen=True)
class MockRun:
    """What one run of the program declared."""

    resources: dict[str, dict[str, Any]]
    """Resource name -> {"type", "inputs", "custom", "provider", "options"}; inputs are plain values."""
    outputs: dict[str, Any]
    """Stack outputs (``pulumi.export``), resolved to plain values."""


def run_program_under_mocks(
    program_dir: Path,
    config: Mapping[str, object],
    project: str = "rollback",
    stack: str = "dev",
    secret_keys: Iterable[str] | None = None,
    invokes: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the program in ``program_dir`` under mocks; return resource name -> {"type", "inputs", ...}.

    ``config`` keys without a namespace belong to ``project`` (``"assetsRelease"``
    is ``"rollback:assetsRelease"``); ``"aws:region"`` and the like pass through.
    Non-string values are JSON-encoded, as the Pulumi CLI hands structured
    config to programs. Exceptions raised by the program propagate unchanged.

    Secrets are not shown: wherever the value of a secret config key appears as
    a whole string it is replaced by ``"[secret]"``. ``secret_keys`` names those
    keys; by default, every key whose name contains password, secret or token.
    """
    return run_program(program_dir, config, project=project, stack=stack, secret_keys=secret_keys,
                       invokes=invokes).resources


def run_program(
    program_dir: Path,
    config: Mapping[str, object],
    project: str = "rollback",
    stack: str = "dev",
    secret_keys: Iterable[str] | None = None,
    invokes: Mapping[str, Any] | None = None,
) -> MockRun:
    """Like :func:`run_program_under_mocks`, also returning the stack outputs.

    ``invokes`` maps a data-source token (``"aws:rds/getInstances:getInstances"``)
    to its result, or to a function of the call's arguments returning it.
    """
    main_file = Path(program_dir) / "__main__.py"
    if not main_file.is_file():
        raise FileNotFoundError(f"no Pulumi program at {main_file}")
    full_config = {_full_key(key, project): _config_value(value) for key, value in config.items()}
    if secret_keys is None:
        hidden = {k for k in full_config if any(hint in k.lower() for hint in _SECRET_KEY_HINTS)}
    else:
        hidden = {_full_key(k, project) for k in secret_keys}
    secrets = frozenset(full_config[k] for k in hidden if full_config.get(k))
    with _RUN_LOCK, _program_imports(Path(program_dir)):
        run = _in_fresh_thread(lambda: _run(main_file, full_config, project, stack, dict(invokes or {})))
    return MockRun(resources=_mask(run.resources, secrets), outputs=_mask(run.outputs, secrets))


def diff_declared_inputs(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[tuple[str, Any, Any]]]:
    """Per resource name, the input paths whose values differ: [(path, before, after)].

    Resources only in one run appear with path ``""`` and None on the other side; a changed
    resource option appears as ``<options>.<name>`` (``<options>.protect``).
    """
    changes: dict[str, list[tuple[str, Any, Any]]] = {}
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            changes[name] = [("", before.get(name), after.get(name))]
            continue
        found: list[tuple[str, Any, Any]] = []
        _diff_values("", before[name].get("inputs"), after[name].get("inputs"), found)
        if before[name].get("type") != after[name].get("type"):
            found.insert(0, ("<type>", before[name].get("type"), after[name].get("type")))
        old_options, new_options = before[name].get("options") or {}, after[name].get("options") or {}
        for option in sorted(set(old_options) | set(new_options)):
            if old_options.get(option) != new_options.get(option):
                found.append((f"<options>.{option}", old_options.get(option), new_options.get(option)))
        if found:
            changes[name] = found
    return changes


def _diff_values(path: str, left: Any, right: Any, found: list[tuple[str, Any, Any]]) -> None:
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right), key=str):
            _diff_values(f"{path}.{key}" if path else str(key), left.get(key), right.get(key), found)
    elif isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _diff_values(f"{path}[{index}]", a, b, found)
    elif left != right:
        found.append((path, left, right))


def _full_key(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _config_value(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


@contextmanager
def _program_imports(program_dir: Path) -> Iterator[None]:
    """Import the program's package from ``program_dir`` during the run, and restore the caller's afterwards.

    The package is the directory's name (``infra``), imported from its parent. A copy the caller
    imported from the same directory is used as it is (no re-import); one from another directory
    is set aside for the run and put back afterwards, as is ``sys.path``.
    """
    directory = program_dir.resolve()
    package = directory.name
    saved_path = list(sys.path)
    ours = [m for m in sys.modules if m == package or m.startswith(f"{package}.")]
    cached = sys.modules.get(package)
    cached_file = getattr(cached, "__file__", None) if cached is not None else None
    same = cached_file is not None and Path(cached_file).resolve().parent == directory
    stashed = {} if same else {name: sys.modules.pop(name) for name in ours}
    root = str(directory.parent)
    sys.path[:] = [root] + [entry for entry in sys.path if entry != root]
    try:
        yield
    finally:
        sys.path[:] = saved_path
        if stashed or not same:
            for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
                del sys.modules[name]
            sys.modules.update(stashed)


def _in_fresh_thread(fn: Callable[[], _T]) -> _T:
    """Run ``fn`` in a new thread (a new context: no Pulumi settings, no root stack) and return its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="pulumi-mocks", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: _T = box["value"]
    return result


def _run(main_file: Path, config: dict[str, str], project: str, stack: str, invokes: dict[str, Any]) -> MockRun:
    import pulumi
    from pulumi.runtime import config as runtime_config
    from pulumi.runtime import settings as runtime_settings
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = _RecordingMocks(invokes)

    class RecordingMonitor(MockMonitor):
        """Records each registration's resource options, which Mocks.new_resource does not see."""

        def RegisterResource(self, request: Any) -> Any:  # the gRPC method name
            mocks.note_options(request)
            return super().RegisterResource(request)  # type: ignore[no-untyped-call]

    try:
        runtime_config.set_all_config(config)
        runtime_settings.SETTINGS.outputs = set()
        pulumi.runtime.set_mocks(cast(Any, mocks), project=project, stack=stack, preview=False,
                                 monitor=RecordingMonitor(cast(Any, mocks)))
        root = runtime_settings.get_root_resource()
        code = compile(main_file.read_text(encoding="utf-8"), str(main_file), "exec")
        exported: dict[str, Any] = {}

        def program() -> None:
            exec(code, {"__name__": "__main__", "__file__": str(main_file)})
            outputs = dict(getattr(root, "outputs", {}))
            resolved: Any = _sync_await(pulumi.Output.from_input(outputs).future())
            exported.update(resolved or {})

        _sync_await(run_pulumi_func(program))
        return MockRun(resources=mocks.recorded(), outputs=_plain(exported))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)
        for worker_loop in mocks.worker_loops - {loop}:
            if not worker_loop.is_running() and not worker_loop.is_closed():
                worker_loop.close()


class _RecordingMocks:
    """pulumi.runtime.Mocks that records inputs and returns plausible AWS outputs.

    Defined without subclassing so that importing this module does not import
    pulumi; ``set_mocks`` only calls ``new_resource`` and ``call``.
    """

    def __init__(self, invokes: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._resources: dict[str, dict[str, Any]] = {}
        self._options: dict[tuple[str, str], dict[str, Any]] = {}
        self._urn_names: dict[str, str] = {}
        self._invokes = dict(invokes or {})
        # The mock monitor gives each worker thread its own event loop; closed after the run.
        self.worker_loops: set[asyncio.AbstractEventLoop] = set()

    def note_options(self, request: Any) -> None:
        """Keep the options of a registration (called by the monitor just before ``new_resource``)."""
        dependencies = [str(urn) for urn in request.dependencies]
        options = {
            "protect": bool(request.protect) if request.HasField("protect") else False,
            "retain_on_delete": bool(request.retainOnDelete) if request.HasField("retainOnDelete") else False,
            "ignore_changes": sorted(str(p) for p in request.ignoreChanges),
            "delete_before_replace": bool(request.deleteBeforeReplace),
            "replace_on_changes": sorted(str(p) for p in request.replaceOnChanges),
            "depends_on": sorted(urn.rsplit("::", 1)[-1] for urn in dependencies),
        }
        with self._lock:
            self._options[(str(request.type), str(request.name))] = options

    def _note_worker_loop(self) -> None:
        with self._lock:
            self.worker_loops.add(asyncio.get_event_loop_policy().get_event_loop())

    def recorded(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(sorted(self._resources.items()))

    # The mock monitor calls these from worker threads.
    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        self._note_worker_loop()
        inputs: dict[str, Any] = _plain(dict(args.inputs))
        typ: str = args.typ
        name: str = args.name
        with self._lock:
            options = self._options.get((typ, name), {})
        if typ == _DYNAMIC_TYPE and "__provider" in inputs:
            # The pickled provider code: the same code pickles differently per process and checkout.
            inputs["__provider"] = "<dynamic provider>"
        record = {
            "type": typ,
            "inputs": inputs,
            "custom": bool(args.custom),
            "provider": _provider_name(args.provider),
            "options": options,
        }
        with self._lock:
            key = name if name not in self._resources else f"{typ}::{name}"
            self._resources[key] = record
        resource_id, state = _mock_state(typ, name, inputs)
        # Echo the raw inputs (assets stay assets) as outputs, plus the computed ones.
        return resource_id, {**dict(args.inputs), **state}

    def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self._note_worker_loop()
        token: str = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": MOCK_ACCOUNT_ID,
                "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/mock",
                "userId": "AIDAMOCK",
                "id": MOCK_ACCOUNT_ID,
            }, []
        if token == "aws:index/getRegion:getRegion":
            return {"name": MOCK_REGION, "region": MOCK_REGION, "id": MOCK_REGION}, []
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        answer = self._invokes.get(token)
        if callable(answer):
            answer = answer(_plain(dict(args.args)))
        return dict(answer or {}), []

    def register_transform(self, transform: Any) -> None:
        """Transforms are not run under mocks."""

    def register_invoke_transform(self, transform: Any) -> None:
        """Invoke transforms are not run under mocks."""


def _mask(value: Any, secrets: frozenset[str]) -> Any:
    if not secrets:
        return value
    if isinstance(value, dict):
        return {k: _mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, secrets) for v in value]
    if isinstance(value, str) and value in secrets:
        return SECRET_MASK
    return value


def _provider_name(reference: str | None) -> str | None:
    # "urn:pulumi:<stack>::<project>::pulumi:providers:aws::<name>::<id>" -> "<name>"
    if not reference:
        return None
    urn = reference.rsplit("::", 1)[0]
    return urn.rsplit("::", 1)[-1]


def _short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _mock_state(typ: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Deterministic id and computed outputs for the AWS resource types the program uses."""
    acct, region = MOCK_ACCOUNT_ID, MOCK_REGION
    if typ == "aws:s3/bucket:Bucket":
        bucket = inputs.get("bucket") or f"{name}-{_short_hash(name)}"
        return bucket, {
            "bucket": bucket,
            "arn": f"arn:aws:s3:::{bucket}",
            "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com",
        }
    if typ == "aws:lambda/function:Function":
        fn = inputs.get("name") or f"{name}-{_short_hash(name)}"
        arn = f"arn:aws:lambda:{region}:{acct}:function:{fn}"
        version = MOCK_FUNCTION_VERSION if inputs.get("publish") else "$LATEST"
        return fn, {"name": fn, "arn": arn, "version": version, "qualifiedArn": f"{arn}:{version}"}
    if typ == "aws:cloudfront/distribution:Distribution":
        dist_id = "E" + _short_hash(name, 13).upper()
        return dist_id, {
            "arn": f"arn:aws:cloudfront::{acct}:distribution/{dist_id}",
            "domainName": f"d{_short_hash(name, 13)}.cloudfront.net",
            "status": "Deployed",
        }
    if typ == "aws:rds/instance:Instance":
        ident = inputs.get("identifier") or f"{name}-{_short_hash(name)}"
        state: dict[str, Any] = {
            "identifier": ident,
            "arn": f"arn:aws:rds:{region}:{acct}:db:{ident}",
            "address": f"{ident}.mock.{region}.rds.amazonaws.com",
        }
        if inputs.get("manageMasterUserPassword"):
            # RDS names the secret rds!db-<uuid> and encrypts it with the key given, else aws/secretsmanager's.
            key = inputs.get("masterUserSecretKmsKeyId") or (
                f"arn:aws:kms:{region}:{acct}:key/{_short_hash('aws/secretsmanager', 8)}-0000-4000-8000-"
                f"{_short_hash(acct, 12)}")
            state["masterUserSecrets"] = [{"secretArn": f"arn:aws:secretsmanager:{region}:{acct}:secret:rds!db-"
                                                        f"{_short_hash(ident, 8)}-0000-4000-8000-000000000000-Ab12Cd",
                                           "kmsKeyId": key, "secretStatus": "active"}]
        return ident, state
    if typ == "aws:rds/snapshot:Snapshot":
        snap = inputs.get("dbSnapshotIdentifier") or name
        return snap, {"dbSnapshotArn": f"arn:aws:rds:{region}:{acct}:snapshot:{snap}"}
    if typ == "aws:sns/topic:Topic":
        topic = inputs.get("name") or f"{name}-{_short_hash(name)}"
        arn = f"arn:aws:sns:{region}:{acct}:{topic}"
        return arn, {"name": topic, "arn": arn}
    if typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        alarm = inputs.get("name") or f"{name}-{_short_hash(name)}"
        return alarm, {"name": alarm, "arn": f"arn:aws:cloudwatch:{region}:{acct}:alarm:{alarm}"}
    if typ == "aws:cloudwatch/compositeAlarm:CompositeAlarm":
        alarm = inputs.get("alarmName") or name
        return alarm, {"arn": f"arn:aws:cloudwatch:{region}:{acct}:alarm:{alarm}"}
    if typ == "aws:iam/role:Role":
        role = inputs.get("name") or f"{name}-{_short_hash(name)}"
        return role, {"name": role, "arn": f"arn:aws:iam::{acct}:role/{role}"}
    service = typ.split(":")[1].split("/")[0] if typ.count(":") >= 2 else "mock"
    return f"{name}-id", {"arn": f"arn:aws:{service}:{region}:{acct}:{name}"}


def _plain(value: Any) -> Any:
    """Deep-convert deserialized inputs (assets, archives, resource references) to plain data."""
    import pulumi

    if isinstance(value, Mapping):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            # Keep the structure visible (a secret nested in a list wraps the whole list);
            # secret values themselves are masked by run_program.
            return _plain(value.get("value"))
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.FileAsset):
        path = Path(str(value.path))
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        # The file name and content only: two checkouts of the same code declare the same asset.
        return {"asset": "file", "name": path.name, "sha256": digest}
    if isinstance(value, pulumi.StringAsset):
        return {"asset": "string", "sha256": hashlib.sha256(str(value.text).encode()).hexdigest()}
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": {str(k): _plain(v) for k, v in value.assets.items()}}
    if isinstance(value, pulumi.FileArchive):
        return {"archive": "file", "name": Path(str(value.path)).name}
    if isinstance(value, pulumi.Resource):
        return {"resource": type(value).__name__}
    return value
