"""CloudFront and Lambda@Edge through boto3: read a distribution, swap its edge
associations under ``IfMatch``, wait for deployment, invalidate.

The adapter takes its clients in the constructor (``cloudfront``, ``lambda`` in
us-east-1, where Lambda@Edge functions live; optionally ``cloudwatch`` for the
alarms that watch the edge) and returns our dataclasses. The distribution's
full config is carried as an opaque mapping (:attr:`DistributionConfig.raw`)
because an update must send back everything it read, changed only where we
mean to change it.

Optimistic concurrency is CloudFront's: every read returns an ETag, every
update sends it as ``IfMatch``; a stale one gets ``PreconditionFailed`` (412),
which surfaces here as :class:`StaleETag` so the caller can decide whether to
re-read and retry.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.adapters.aws import aws_errors
from rollback.errors import AwsError, StaleETag

__all__ = [
    "DEFAULT_BEHAVIOUR",
    "Alarm",
    "CloudWatchAlarms",
    "DistributionConfig",
    "DistributionSnapshot",
    "EdgeAdapter",
    "EdgeAssociation",
    "FunctionVersion",
    "Invalidation",
    "LambdaArn",
    "OriginInfo",
    "SnapshotStore",
    "StaleETag",
    "function_name_of",
    "invalidation_paths",
    "origin_header_values",
    "parse_lambda_arn",
    "set_origin_path",
    "snapshot_from_json",
    "swap_associations",
    "take_snapshot",
]

DEFAULT_BEHAVIOUR = "default"
_LAMBDA_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>[A-Za-z0-9_$-]+))?$"
)


@dataclass(frozen=True)
class LambdaArn:
    region: str
    account: str
    name: str
    qualifier: str | None

    @property
    def version(self) -> str | None:
        """The numeric version, when the ARN is qualified with one."""
        return self.qualifier if self.qualifier and self.qualifier.isdigit() else None


def parse_lambda_arn(arn: str) -> LambdaArn | None:
    match = _LAMBDA_ARN.match(arn)
    if not match:
        return None
    return LambdaArn(match["region"], match["account"], match["name"], match["qualifier"])


def function_name_of(name_or_arn: str) -> str:
    """``sec-headers`` or any of its ARNs -> ``sec-headers``."""
    parsed = parse_lambda_arn(name_or_arn)
    return parsed.name if parsed else name_or_arn


@dataclass(frozen=True)
class EdgeAssociation:
    behaviour: str  # "default" or the path pattern
    event_type: str
    arn: str
    include_body: bool = False

    @property
    def function(self) -> str | None:
        parsed = parse_lambda_arn(self.arn)
        return parsed.name if parsed else None

    @property
    def version(self) -> str | None:
        parsed = parse_lambda_arn(self.arn)
        return parsed.version if parsed else None

    def to_dict(self) -> dict[str, Any]:
        return {"behaviour": self.behaviour, "event_type": self.event_type, "arn": self.arn,
                "function": self.function, "version": self.version, "include_body": self.include_body}


@dataclass(frozen=True)
class OriginInfo:
    id: str
    domain_name: str
    origin_path: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "domain_name": self.domain_name, "origin_path": self.origin_path}


@dataclass(frozen=True)
class DistributionConfig:
    """A distribution's config as read, with the ETag that guards the next update."""

    distribution_id: str
    etag: str
    associations: tuple[EdgeAssociation, ...]
    origins: tuple[OriginInfo, ...]
    behaviours: tuple[str, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def associations_of(self, function: str) -> tuple[EdgeAssociation, ...]:
        name = function_name_of(function)
        return tuple(a for a in self.associations if a.function == name)


@dataclass(frozen=True)
class FunctionVersion:
    function: str
    version: str
    arn: str
    last_modified: str | None = None
    code_sha256: str | None = None
    description: str = ""
    state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function, "version": self.version, "arn": self.arn,
                "last_modified": self.last_modified, "code_sha256": self.code_sha256,
                "description": self.description, "state": self.state}


@dataclass(frozen=True)
class Invalidation:
    id: str
    status: str
    paths: tuple[str, ...]
    distribution_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "paths": list(self.paths),
                "distribution_id": self.distribution_id}


@dataclass(frozen=True)
class Alarm:
    name: str
    state: str
    metric: str | None
    namespace: str | None
    threshold: float | None
    comparison: str | None
    actions_enabled: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "metric": self.metric, "namespace": self.namespace,
                "threshold": self.threshold, "comparison": self.comparison,
                "actions_enabled": self.actions_enabled}


def _behaviours(config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    found: list[tuple[str, Mapping[str, Any]]] = [(DEFAULT_BEHAVIOUR, config.get("DefaultCacheBehavior") or {})]
    for item in (config.get("CacheBehaviors") or {}).get("Items") or []:
        found.append((str(item.get("PathPattern", "")), item))
    return found


def _parse_config(distribution_id: str, etag: str, config: Mapping[str, Any]) -> DistributionConfig:
    associations: list[EdgeAssociation] = []
    for name, behaviour in _behaviours(config):
        for item in (behaviour.get("LambdaFunctionAssociations") or {}).get("Items") or []:
            associations.append(EdgeAssociation(name, str(item.get("EventType", "")),
                                                str(item.get("LambdaFunctionARN", "")),
                                                bool(item.get("IncludeBody", False))))
    origins = tuple(OriginInfo(str(o.get("Id", "")), str(o.get("DomainName", "")), str(o.get("OriginPath") or ""))
                    for o in (config.get("Origins") or {}).get("Items") or [])
    return DistributionConfig(distribution_id, etag, tuple(associations), origins,
                              tuple(name for name, _ in _behaviours(config)), dict(config))


def swap_associations(raw: Mapping[str, Any], function: str, new_arn: str,
                      behaviours: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` whose associations with ``function`` on ``behaviours`` point at ``new_arn``.

    Pure: nothing else in the config changes (event types, other functions, other behaviours).
    """
    name = function_name_of(function)
    wanted = set(behaviours)
    updated = copy.deepcopy(dict(raw))
    for behaviour_name, behaviour in _behaviours(updated):
        if behaviour_name not in wanted:
            continue
        for item in (behaviour.get("LambdaFunctionAssociations") or {}).get("Items") or []:
            parsed = parse_lambda_arn(str(item.get("LambdaFunctionARN", "")))
            if parsed and parsed.name == name:
                item["LambdaFunctionARN"] = new_arn
    return updated


def ramp_gap(waited: float, interval: float) -> float:
    """The gap before the next poll, ``waited`` seconds into a wait: 0.5 s at first, a tenth of the
    time waited so far, at most ``interval``."""
    return min(interval, max(0.5, waited / 10))


class EdgeAdapter:
    """One distribution's edge associations and the Lambda@Edge function behind them."""

    def __init__(self, cloudfront: Any, lambda_: Any, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cloudfront = cloudfront
        self.lambda_ = lambda_
        self._sleep = sleep
        self._clock = clock

    # --- CloudFront ---------------------------------------------------------------------------------

    def get_config(self, distribution_id: str) -> DistributionConfig:
        with aws_errors(f"reading distribution {distribution_id}", _hint_for(distribution_id)):
            response = self.cloudfront.get_distribution_config(Id=distribution_id)
        return _parse_config(distribution_id, str(response["ETag"]), response["DistributionConfig"])

    def status(self, distribution_id: str) -> str:
        with aws_errors(f"reading distribution {distribution_id}", _hint_for(distribution_id)):
            response = self.cloudfront.get_distribution(Id=distribution_id)
        return str(response["Distribution"]["Status"])

    def update_config(self, distribution_id: str, raw: Mapping[str, Any], if_match: str) -> str:
        """Send ``raw`` guarded by ``if_match``; return the new ETag. Raises :class:`StaleETag` on 412."""
        return self.replace_config(distribution_id, raw, if_match).etag

    def replace_config(self, distribution_id: str, raw: Mapping[str, Any], if_match: str) -> DistributionConfig:
        """Send ``raw`` guarded by ``if_match``; return the config CloudFront now has (from the response)
        with its new ETag. Raises :class:`StaleETag` on 412."""
        from botocore.exceptions import ClientError

        with aws_errors(f"updating distribution {distribution_id}"):
            try:
                response = self.cloudfront.update_distribution(Id=distribution_id, IfMatch=if_match,
                                                               DistributionConfig=dict(raw))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                    # Not a ClientError, so aws_errors lets it through as it is.
                    raise StaleETag(
                        f"distribution {distribution_id} changed since it was read (ETag {if_match} is stale)",
                        code="PreconditionFailed", etag=if_match) from exc
                raise
        written = (response.get("Distribution") or {}).get("DistributionConfig") or {}
        return _parse_config(distribution_id, str(response["ETag"]), written)

    def wait_deployed(self, distribution_id: str, *, timeout: float, interval: float,
                      progress: Callable[[str], None] | None = None, ramp: bool = False) -> tuple[str, float]:
        """Poll until ``Deployed``; return ``(status, seconds)``. Raises :class:`AwsError` on timeout.

        With ``ramp`` the first looks come quickly (from 0.5 s apart, a tenth of the time waited so
        far) up to ``interval``: a deploy that ends in seconds is not waited on for a whole interval."""
        started = self._clock()
        base = interval
        while True:
            if ramp:
                interval = ramp_gap(self._clock() - started, base)
            status = self.status(distribution_id)
            waited = self._clock() - started
            if status == "Deployed":
                return status, waited
            if progress is not None:
                progress(f"distribution {distribution_id}: {status} ({waited:.0f}s of at most {timeout:.0f}s)")
            if waited + interval > timeout:
                raise AwsError(
                    f"distribution {distribution_id} is still {status} after {waited:.0f}s (timeout {timeout:.0f}s)",
                    "the change is applied and still propagating; re-run the same command to wait again "
                    "(it will not re-apply)", code="Timeout", status=status)
            self._sleep(interval)

    def create_invalidation(self, distribution_id: str, paths: Sequence[str],
                            caller_reference: str | None = None) -> Invalidation:
        reference = caller_reference or f"rollback-{uuid.uuid4().hex}"
        with aws_errors(f"invalidating {', '.join(paths)} on distribution {distribution_id}",
                        _hint_for(distribution_id)):
            response = self.cloudfront.create_invalidation(DistributionId=distribution_id, InvalidationBatch={
                "Paths": {"Quantity": len(paths), "Items": list(paths)}, "CallerReference": reference})
        item = response["Invalidation"]
        return Invalidation(str(item["Id"]), str(item["Status"]), tuple(paths), distribution_id)

    def invalidation_status(self, distribution_id: str, invalidation_id: str) -> str:
        with aws_errors(f"reading invalidation {invalidation_id}"):
            response = self.cloudfront.get_invalidation(DistributionId=distribution_id, Id=invalidation_id)
        return str(response["Invalidation"]["Status"])

    def wait_invalidation(self, distribution_id: str, invalidation_id: str, *, timeout: float, interval: float,
                          progress: Callable[[str], None] | None = None, ramp: bool = False) -> tuple[str, float]:
        started = self._clock()
        base = interval
        while True:
            if ramp:
                interval = ramp_gap(self._clock() - started, base)
            status = self.invalidation_status(distribution_id, invalidation_id)
            waited = self._clock() - started
            if status == "Completed":
                return status, waited
            if progress is not None:
                progress(f"invalidation {invalidation_id}: {status} ({waited:.0f}s)")
            if waited + interval > timeout:
                raise AwsError(f"invalidation {invalidation_id} is still {status} after {waited:.0f}s",
                               "it keeps running on its own; check it with 'aws cloudfront get-invalidation'",
                               code="Timeout")
            self._sleep(interval)

    # --- Lambda@Edge --------------------------------------------------------------------------------

    def function_versions(self, function: str) -> list[FunctionVersion]:
        """Published versions (not ``$LATEST``), oldest first."""
        name = function_name_of(function)
        versions: list[FunctionVersion] = []
        with aws_errors(f"listing versions of function {name}",
                        "check aws.edge_function (Lambda@Edge functions live in us-east-1)"):
            paginator = self.lambda_.get_paginator("list_versions_by_function")
            for page in paginator.paginate(FunctionName=name):
                for item in page.get("Versions", []):
                    if item.get("Version") == "$LATEST":
                        continue
                    versions.append(_function_version(name, item))
        return sorted(versions, key=lambda v: int(v.version) if v.version.isdigit() else 0)

    def get_version(self, function: str, version: str) -> FunctionVersion | None:
        """That published version, or ``None`` when it does not exist."""
        from botocore.exceptions import ClientError

        name = function_name_of(function)
        with aws_errors(f"reading version {version} of function {name}"):
            try:
                response = self.lambda_.get_function(FunctionName=name, Qualifier=str(version))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return None
                raise
        return _function_version(name, response["Configuration"])


def _function_version(name: str, item: Mapping[str, Any]) -> FunctionVersion:
    version = str(item.get("Version", ""))
    arn = str(item.get("FunctionArn", ""))
    parsed = parse_lambda_arn(arn)
    if parsed is not None and parsed.qualifier is None and version:
        arn = f"{arn}:{version}"  # some responses return the unqualified ARN
    return FunctionVersion(name, version, arn, item.get("LastModified"), item.get("CodeSha256"),
                           str(item.get("Description") or ""), item.get("State"))


def _hint_for(distribution_id: str) -> str:
    return f"check that distribution {distribution_id} exists (aws.distribution_id, or --distribution)"


class CloudWatchAlarms:
    """The alarms that watch the edge (named in the stack), for drift. Kept beside the edge
    adapter because drift is their only reader."""

    def __init__(self, cloudwatch: Any) -> None:
        self.cloudwatch = cloudwatch

    def describe(self, names: Sequence[str]) -> dict[str, Alarm]:
        found: dict[str, Alarm] = {}
        wanted = list(dict.fromkeys(names))
        with aws_errors("describing alarms"):
            for start in range(0, len(wanted), 100):
                paginator = self.cloudwatch.get_paginator("describe_alarms")
                for page in paginator.paginate(AlarmNames=wanted[start:start + 100],
                                               AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
                    for item in page.get("MetricAlarms", []):
                        found[item["AlarmName"]] = Alarm(
                            item["AlarmName"], str(item.get("StateValue", "")), item.get("MetricName"),
                            item.get("Namespace"), item.get("Threshold"), item.get("ComparisonOperator"),
                            bool(item.get("ActionsEnabled", True)))
                    for item in page.get("CompositeAlarms", []):
                        found[item["AlarmName"]] = Alarm(item["AlarmName"], str(item.get("StateValue", "")), None,
                                                         None, None, None, bool(item.get("ActionsEnabled", True)))
        return found



# --- whole-distribution snapshots (infra cdn snapshot | list | restore | release) -------------------

SNAPSHOT_SUFFIX = ".distribution.json"
_DEFAULT_PATTERN = "/*"


@dataclass(frozen=True)
class DistributionSnapshot:
    """A distribution's full ``DistributionConfig`` as read, with the ETag it had then.

    The config may hold secrets (custom origin header values such as ``X-Origin-Verify``):
    snapshots are written owner-only, those values are registered for redaction when a
    snapshot is loaded, and :meth:`summary` never contains them. ``config_sha256`` is the
    config's digest when it was taken: a file whose config no longer matches it was edited
    by hand (:attr:`edited`).
    """

    id: str
    distribution_id: str
    etag: str
    taken_at: str
    reason: str
    config: Mapping[str, Any] = field(repr=False)
    config_sha256: str | None = None

    @property
    def edited(self) -> bool:
        """The config no longer has the digest recorded when the snapshot was taken (a hand edit)."""
        from rollback.model.cdndiff import config_digest

        return self.config_sha256 is not None and self.config_sha256 != config_digest(self.config)

    @property
    def id_names(self) -> str:
        """The distribution the snapshot id names (``<distribution>-<time>``)."""
        return self.id.rsplit("-", 1)[0] if "-" in self.id else self.id

    def summary(self) -> dict[str, Any]:
        parsed = _parse_config(self.distribution_id, self.etag, self.config)
        return {"id": self.id, "distribution": self.distribution_id, "etag": self.etag, "taken_at": self.taken_at,
                "reason": self.reason, "origins": [o.to_dict() for o in parsed.origins],
                "associations": [a.to_dict() for a in parsed.associations],
                "behaviours": list(parsed.behaviours), "edited": self.edited}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "distribution_id": self.distribution_id, "etag": self.etag,
                "taken_at": self.taken_at, "reason": self.reason, "config": dict(self.config),
                "config_sha256": self.config_sha256}

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)


def snapshot_from_json(text: str | bytes, name: str) -> DistributionSnapshot:
    """A snapshot file's content; ``ValueError`` naming ``name`` when it is not one. Registers the
    config's origin header values for redaction."""
    import json

    from rollback.redact import register_secret

    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: not a readable snapshot") from exc
    required = ("id", "distribution_id", "etag", "taken_at", "config")
    if not isinstance(data, dict) or any(k not in data for k in required) or not isinstance(data["config"], dict):
        raise ValueError(f"{name}: not a distribution snapshot")
    problems = config_problems(data["config"])
    if problems:
        raise ValueError(f"{name}: its config is not a DistributionConfig that CloudFront accepts: {problems}")
    for value in origin_header_values(data["config"]):
        register_secret(value)
    digest = data.get("config_sha256")
    return DistributionSnapshot(str(data["id"]), str(data["distribution_id"]), str(data["etag"]),
                                str(data["taken_at"]), str(data.get("reason") or ""), data["config"],
                                str(digest) if isinstance(digest, str) else None)


def config_problems(config: Mapping[str, Any]) -> str:
    """What makes ``config`` something ``UpdateDistribution`` would not accept, checked against the
    ``DistributionConfig`` shape of botocore's CloudFront model (types and unknown fields) in one line,
    without the values (an origin header value is a secret); ``""`` when it is one. A hand-edited snapshot
    is read by code that trusts this shape. (A missing required field harms no reader: CloudFront's own
    refusal of it is the update's one-line error, as before.)"""
    from botocore.validate import ParamValidator

    params = {"DistributionConfig": dict(config), "Id": "E0000000000000", "IfMatch": "E0000000000000"}
    report = ParamValidator().validate(params, _update_distribution_input())
    if not report.has_errors():
        return ""
    lines = []
    for line in report.generate_report().splitlines():
        if line.startswith("Missing required parameter"):
            continue
        line = re.sub(r", value: .*?(?=, (?:type|valid)\b|$)", "", line)
        lines.append(re.sub(r"<class '([^']*)'>", r"\1", line))
    text = "; ".join(lines)
    if not text:
        return ""
    return text if len(text) <= 600 else text[:597] + "..."


_INPUT_SHAPE: list[Any] = []


def _update_distribution_input() -> Any:
    if not _INPUT_SHAPE:
        import botocore.session

        model = botocore.session.get_session().get_service_model("cloudfront")
        _INPUT_SHAPE.append(model.operation_model("UpdateDistribution").input_shape)
    return _INPUT_SHAPE[0]


def origin_header_values(config: Mapping[str, Any]) -> list[str]:
    """Custom origin header values (secrets such as X-Origin-Verify) in a distribution config."""
    values: list[str] = []
    for origin in (config.get("Origins") or {}).get("Items") or []:
        for header in (origin.get("CustomHeaders") or {}).get("Items") or []:
            if header.get("HeaderValue"):
                values.append(str(header["HeaderValue"]))
    return values


class SnapshotStore:
    """Distribution snapshots as files: ``<directory>/<distribution>/<snapshot id>.distribution.json``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, snapshot: DistributionSnapshot) -> Path:
        import os
        import tempfile

        from rollback.errors import OperationFailed

        folder = self.directory / snapshot.distribution_id
        path = folder / f"{snapshot.id}{SNAPSHOT_SUFFIX}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
            try:
                os.fchmod(fd, 0o600)  # custom origin headers may hold secrets
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(snapshot.to_json())
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise OperationFailed(f"cannot save distribution snapshot {snapshot.id} in {folder}: {exc.strerror}",
                                  "check the directory's permissions; nothing was changed") from exc
        return path

    def list(self, distribution_id: str | None = None) -> list[DistributionSnapshot]:
        """Snapshots (of one distribution, or all), newest first; unreadable files are skipped."""
        folders = ([self.directory / distribution_id] if distribution_id
                   else [p for p in self.directory.iterdir() if p.is_dir()] if self.directory.is_dir() else [])
        found: list[DistributionSnapshot] = []
        for folder in folders:
            for path in folder.glob(f"*{SNAPSHOT_SUFFIX}") if folder.is_dir() else []:
                try:
                    found.append(self._read(path))
                except ValueError:
                    continue
        return sorted(found, key=lambda s: (s.taken_at, s.id), reverse=True)

    def exists(self, snapshot_id: str) -> bool:
        """Whether a file of that snapshot is here (BadInput when ``snapshot_id`` is not an id)."""
        self._check_id(snapshot_id)
        return self.directory.is_dir() and any(self.directory.glob(f"*/{snapshot_id}{SNAPSHOT_SUFFIX}"))

    @staticmethod
    def _check_id(snapshot_id: str) -> None:
        from rollback.errors import BadInput

        if "/" in snapshot_id or snapshot_id.startswith(".") or not snapshot_id or "*" in snapshot_id \
                or "?" in snapshot_id or "[" in snapshot_id:
            raise BadInput(f"{snapshot_id!r} is not a snapshot id", "list them with 'rollback infra cdn list'")

    def load(self, snapshot_id: str) -> DistributionSnapshot:
        from rollback.errors import BadInput

        self._check_id(snapshot_id)
        for path in self.directory.glob(f"*/{snapshot_id}{SNAPSHOT_SUFFIX}") if self.directory.is_dir() else []:
            try:
                return self._read(path)
            except ValueError as exc:
                raise BadInput(f"snapshot {snapshot_id} is damaged ({exc})",
                               "pick another one with 'rollback infra cdn list'") from exc
        raise BadInput(f"no distribution snapshot {snapshot_id} in {self.directory}",
                       "list them with 'rollback infra cdn list'")

    @staticmethod
    def _read(path: Path) -> DistributionSnapshot:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path.name}: not a readable snapshot") from exc
        return snapshot_from_json(text, path.name)


def take_snapshot(adapter: EdgeAdapter, distribution_id: str, reason: str, *,
                  now: Callable[[], Any] | None = None) -> DistributionSnapshot:
    """Read the distribution's whole config (and its ETag) as a snapshot."""
    import datetime as dt

    from rollback.redact import register_secret

    moment = (now or (lambda: dt.datetime.now(dt.UTC)))()
    read = adapter.get_config(distribution_id)
    for value in origin_header_values(read.raw):
        register_secret(value)
    stamp = moment.strftime("%Y%m%dT%H%M%S%fZ")
    from rollback.model.cdndiff import config_digest

    return DistributionSnapshot(f"{distribution_id}-{stamp}", distribution_id, read.etag,
                                moment.isoformat(timespec="seconds").replace("+00:00", "Z"), reason, dict(read.raw),
                                config_digest(read.raw))


def set_origin_path(raw: Mapping[str, Any], origin_id: str, path: str) -> dict[str, Any]:
    """A copy of ``raw`` whose origin ``origin_id`` serves from ``path`` (pure; nothing else changes)."""
    from rollback.errors import BadInput

    updated = copy.deepcopy(dict(raw))
    origins = (updated.get("Origins") or {}).get("Items") or []
    for origin in origins:
        if origin.get("Id") == origin_id:
            origin["OriginPath"] = path
            return updated
    known = ", ".join(str(o.get("Id")) for o in origins) or "none"
    raise BadInput(f"the distribution has no origin {origin_id!r} (origins: {known})",
                   "pass --origin with one of them")


def invalidation_paths(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What to invalidate after ``old`` became ``new``: the paths whose responses may differ.

    An origin that changed in any way (path or domain, which the cache key does not include; its
    custom headers such as ``X-Origin-Verify``, its access control or protocol, which change what it
    answers) invalidates every behaviour that targets it; a changed, added or removed behaviour
    invalidates its path pattern (``/*`` for the default one); a new default root object invalidates
    ``/``; changed custom error pages invalidate ``/*`` (cached error responses are served from them).
    Settings that do not change what is served (comment, price class, HTTP version, logging,
    aliases, certificate, WAF, enabled...) invalidate nothing.
    """
    from rollback.model.cdndiff import comparable

    def origins(config: Mapping[str, Any]) -> dict[str, Any]:
        return {str(o.get("Id")): comparable({**o, "OriginPath": o.get("OriginPath") or ""})
                for o in (config.get("Origins") or {}).get("Items") or []}

    def behaviours(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        return {(_DEFAULT_PATTERN if name == DEFAULT_BEHAVIOUR else name): comparable(b)
                for name, b in _behaviours(config)}

    def error_pages(config: Mapping[str, Any]) -> Any:
        return comparable({"pages": config.get("CustomErrorResponses") or {"Quantity": 0}})

    changed_origins = {i for i in set(origins(old)) | set(origins(new)) if origins(old).get(i) != origins(new).get(i)}
    old_b, new_b = behaviours(old), behaviours(new)
    paths: set[str] = set()
    for pattern in set(old_b) | set(new_b):
        before, after = old_b.get(pattern), new_b.get(pattern)
        if before != after:
            paths.add(pattern)
        for behaviour in (before, after):
            if behaviour is not None and behaviour.get("TargetOriginId") in changed_origins:
                paths.add(pattern)
    if old.get("DefaultRootObject") != new.get("DefaultRootObject"):
        paths.add("/")
    if error_pages(old) != error_pages(new):
        paths.add(_DEFAULT_PATTERN)
    if _DEFAULT_PATTERN in paths:
        return [_DEFAULT_PATTERN]
    return sorted(paths)
