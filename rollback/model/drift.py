"""Drift: the live edge (CloudFront, Lambda@Edge, S3 versioning, alarms) against the stack's
last checkpoint. Pure: no I/O, no boto3.

:func:`expected_from_checkpoint` reads what Pulumi last recorded from the
checkpoint's resources (their ``outputs``, i.e. what the provider saw after the
last update); the caller reads the live side through the adapters into a
:class:`Live`; :func:`compare` returns every :class:`Difference`.

Resource types read (pulumi-aws 6 and 7 names):

- ``aws:cloudfront/distribution:Distribution``: ``defaultCacheBehavior`` and
  ``orderedCacheBehaviors[]`` ``.lambdaFunctionAssociations[]`` (``eventType``,
  ``lambdaArn``), ``origins[]`` (``originId``, ``originPath``);
- ``aws:lambda/function:Function``: ``name``, ``version`` (the newest version
  Pulumi published), ``qualifiedArn``;
- ``aws:s3/bucket:Bucket`` / ``aws:s3/bucketV2:BucketV2`` (``bucket``,
  ``versioning.enabled`` / ``versionings[].enabled``) and
  ``aws:s3/bucketVersioning:BucketVersioning`` /
  ``aws:s3/bucketVersioningV2:BucketVersioningV2``
  (``versioningConfiguration.status``, which wins over the bucket's own flag);
- ``aws:cloudwatch/metricAlarm:MetricAlarm`` (``name``, ``threshold``,
  ``metricName``, ``namespace``, ``comparisonOperator``, ``actionsEnabled``) and
  ``aws:cloudwatch/compositeAlarm:CompositeAlarm`` (``alarmName``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Difference",
    "Expected",
    "ExpectedAlarm",
    "ExpectedDistribution",
    "ExpectedFunction",
    "Live",
    "LiveAlarm",
    "LiveDistribution",
    "compare",
    "expected_from_checkpoint",
]

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
FUNCTION = "aws:lambda/function:Function"
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BUCKET_VERSIONINGS = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE_ALARM = "aws:cloudwatch/compositeAlarm:CompositeAlarm"

# (behaviour, event type) -> Lambda version ARN; behaviour is "default" or the path pattern.
Associations = Mapping[tuple[str, str], str]


@dataclass(frozen=True)
class ExpectedDistribution:
    id: str
    associations: Associations
    origin_paths: Mapping[str, str]


@dataclass(frozen=True)
class ExpectedFunction:
    name: str
    version: str | None
    qualified_arn: str | None


@dataclass(frozen=True)
class ExpectedAlarm:
    name: str
    composite: bool = False
    metric: str | None = None
    namespace: str | None = None
    threshold: float | None = None
    comparison: str | None = None
    actions_enabled: bool | None = None


@dataclass(frozen=True)
class Expected:
    distributions: Mapping[str, ExpectedDistribution] = field(default_factory=dict)
    functions: Mapping[str, ExpectedFunction] = field(default_factory=dict)
    buckets: Mapping[str, str | None] = field(default_factory=dict)  # name -> versioning status (None: unknown)
    alarms: Mapping[str, ExpectedAlarm] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveDistribution:
    id: str
    associations: Associations
    origin_paths: Mapping[str, str]


@dataclass(frozen=True)
class LiveAlarm:
    name: str
    metric: str | None = None
    namespace: str | None = None
    threshold: float | None = None
    comparison: str | None = None
    actions_enabled: bool = True


@dataclass(frozen=True)
class Live:
    """What the caller read from AWS. ``None`` for a resource means it does not exist."""

    distributions: Mapping[str, LiveDistribution | None] = field(default_factory=dict)
    function_versions: Mapping[str, Sequence[str] | None] = field(default_factory=dict)  # published, any order
    buckets: Mapping[str, str | None] = field(default_factory=dict)  # name -> Enabled/Suspended/Disabled
    alarms: Mapping[str, LiveAlarm | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    resource: str
    field: str
    expected: Any
    live: Any
    kind: str = "changed"  # changed | missing | unexpected

    def describe(self) -> str:
        if self.kind == "missing":
            return f"{self.resource}: {self.field}: expected {_show(self.expected)}, missing live"
        if self.kind == "unexpected":
            return f"{self.resource}: {self.field}: not in the checkpoint, live {_show(self.live)}"
        return f"{self.resource}: {self.field}: expected {_show(self.expected)}, live {_show(self.live)}"

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "field": self.field, "expected": self.expected, "live": self.live,
                "kind": self.kind, "description": self.describe()}


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return value or '""'
    return str(value)


def _get(mapping: Any, *names: str) -> Any:
    """The first present key among ``names`` (camelCase as checkpoints write, snake_case as mocks do)."""
    if not isinstance(mapping, Mapping):
        return None
    for name in names:
        if name in mapping and mapping[name] is not None:
            return mapping[name]
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _associations_of(outputs: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    behaviours = [("default", _get(outputs, "defaultCacheBehavior", "default_cache_behavior"))]
    for item in _as_list(_get(outputs, "orderedCacheBehaviors", "ordered_cache_behaviors")):
        behaviours.append((str(_get(item, "pathPattern", "path_pattern") or ""), item))
    for name, behaviour in behaviours:
        for association in _as_list(_get(behaviour, "lambdaFunctionAssociations", "lambda_function_associations")):
            event = str(_get(association, "eventType", "event_type") or "")
            found[(name, event)] = str(_get(association, "lambdaArn", "lambda_arn") or "")
    return found


def _resources(resources: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, Any, Mapping[str, Any]]]:
    for resource in resources:
        if resource.get("delete"):
            continue  # pending deletion: no longer part of the stack
        outputs = resource.get("outputs") or {}
        yield str(resource.get("type", "")), resource.get("id"), outputs if isinstance(outputs, Mapping) else {}


def expected_from_checkpoint(resources: Iterable[Mapping[str, Any]]) -> Expected:
    """What the checkpoint says the edge looks like."""
    distributions: dict[str, ExpectedDistribution] = {}
    functions: dict[str, ExpectedFunction] = {}
    buckets: dict[str, str | None] = {}
    bucket_ids: dict[str, str] = {}
    versionings: dict[str, str] = {}
    alarms: dict[str, ExpectedAlarm] = {}
    for kind, resource_id, outputs in _resources(resources):
        if kind == DISTRIBUTION:
            distribution_id = str(resource_id or _get(outputs, "id") or "")
            origin_paths = {str(_get(o, "originId", "origin_id") or ""): str(_get(o, "originPath", "origin_path") or "")
                            for o in _as_list(_get(outputs, "origins"))}
            distributions[distribution_id] = ExpectedDistribution(distribution_id, _associations_of(outputs),
                                                                  origin_paths)
        elif kind == FUNCTION:
            name = str(_get(outputs, "name") or resource_id or "")
            version = _get(outputs, "version")
            version = str(version) if version not in (None, "", "$LATEST") else None
            functions[name] = ExpectedFunction(name, version, _get(outputs, "qualifiedArn", "qualified_arn"))
        elif kind in BUCKETS:
            name = str(_get(outputs, "bucket") or resource_id or "")
            bucket_ids[str(resource_id or name)] = name
            status: str | None = None
            versioning = _get(outputs, "versioning")
            if isinstance(versioning, Mapping) and "enabled" in versioning:
                status = "Enabled" if versioning["enabled"] else None
            for item in _as_list(_get(outputs, "versionings")):
                if isinstance(item, Mapping) and item.get("enabled"):
                    status = "Enabled"
            buckets[name] = status
        elif kind in BUCKET_VERSIONINGS:
            config = _get(outputs, "versioningConfiguration", "versioning_configuration")
            config = config[0] if isinstance(config, list) and config else config
            status_value = _get(config, "status")
            bucket = str(_get(outputs, "bucket") or "")
            if bucket and status_value:
                versionings[bucket] = str(status_value)
        elif kind in (METRIC_ALARM, COMPOSITE_ALARM):
            name = str(_get(outputs, "name", "alarmName", "alarm_name") or resource_id or "")
            threshold = _get(outputs, "threshold")
            actions = _get(outputs, "actionsEnabled", "actions_enabled")
            alarms[name] = ExpectedAlarm(
                name, composite=kind == COMPOSITE_ALARM, metric=_get(outputs, "metricName", "metric_name"),
                namespace=_get(outputs, "namespace"), threshold=float(threshold) if threshold is not None else None,
                comparison=_get(outputs, "comparisonOperator", "comparison_operator"),
                actions_enabled=bool(actions) if actions is not None else None)
    for bucket, status in versionings.items():
        buckets[bucket_ids.get(bucket, bucket)] = status
    return Expected(distributions, functions, buckets, alarms)


def _version_key(version: str) -> int:
    return int(version) if version.isdigit() else -1


def compare(expected: Expected, live: Live) -> list[Difference]:
    """Every difference between the checkpoint and the live resources, in a stable order."""
    differences: list[Difference] = []
    for distribution_id, want in sorted(expected.distributions.items()):
        resource = f"distribution {distribution_id}"
        got = live.distributions.get(distribution_id)
        if got is None:
            differences.append(Difference(resource, "distribution", distribution_id, None, "missing"))
            continue
        for key in sorted(set(want.associations) | set(got.associations)):
            behaviour, event = key
            label = f"edge association ({behaviour}, {event})"
            if key not in got.associations:
                differences.append(Difference(resource, label, want.associations[key], None, "missing"))
            elif key not in want.associations:
                differences.append(Difference(resource, label, None, got.associations[key], "unexpected"))
            elif want.associations[key] != got.associations[key]:
                differences.append(Difference(resource, label, want.associations[key], got.associations[key]))
        for origin in sorted(set(want.origin_paths) | set(got.origin_paths)):
            label = f"origin path ({origin})"
            if origin not in got.origin_paths:
                differences.append(Difference(resource, label, want.origin_paths[origin], None, "missing"))
            elif origin not in want.origin_paths:
                differences.append(Difference(resource, label, None, got.origin_paths[origin], "unexpected"))
            elif want.origin_paths[origin] != got.origin_paths[origin]:
                differences.append(Difference(resource, label, want.origin_paths[origin], got.origin_paths[origin]))
    for name, function in sorted(expected.functions.items()):
        resource = f"function {name}"
        versions = live.function_versions.get(name)
        if versions is None:
            differences.append(Difference(resource, "function", name, None, "missing"))
            continue
        if function.version is None:
            continue
        if function.version not in versions:
            differences.append(Difference(resource, f"version {function.version}", function.version, None,
                                          "missing"))
        newest = max(versions, key=_version_key, default=None)
        if newest is not None and _version_key(newest) > _version_key(function.version):
            # Published outside the stack (by hand, or by a run that never reached the checkpoint).
            differences.append(Difference(resource, "newest published version", function.version, newest))
    for bucket, status in sorted(expected.buckets.items()):
        resource = f"bucket {bucket}"
        if bucket not in live.buckets:
            continue  # caller did not read it
        got_status = live.buckets[bucket]
        if got_status is None:
            differences.append(Difference(resource, "bucket", bucket, None, "missing"))
        elif status is not None and status != got_status:
            differences.append(Difference(resource, "versioning", status, got_status))
    for name, alarm in sorted(expected.alarms.items()):
        resource = f"alarm {name}"
        got_alarm = live.alarms.get(name)
        if got_alarm is None:
            differences.append(Difference(resource, "alarm", name, None, "missing"))
            continue
        for label, want_value, got_value in (
            ("metric", alarm.metric, got_alarm.metric),
            ("namespace", alarm.namespace, got_alarm.namespace),
            ("threshold", alarm.threshold, got_alarm.threshold),
            ("comparison", alarm.comparison, got_alarm.comparison),
            ("actions enabled", alarm.actions_enabled, got_alarm.actions_enabled),
        ):
            if want_value is not None and want_value != got_value:
                differences.append(Difference(resource, label, want_value, got_value))
    return differences
