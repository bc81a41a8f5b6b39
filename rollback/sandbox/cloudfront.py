"""Real CloudFront semantics for moto's CloudFront backend (moto pinned at 5.2.5).

moto's CloudFront is good enough to create and read distributions but misses
exactly what a break-glass edge rollback depends on:

- it drops ``LambdaFunctionAssociations`` (and ``FunctionAssociations``) from
  cache behaviours, so an association never round-trips;
- it ignores ``IfMatch`` and never changes a distribution's ETag, so optimistic
  concurrency cannot be exercised;
- it reports invalidations as ``COMPLETED`` where CloudFront (and boto3's
  ``invalidation_completed`` waiter) say ``Completed``;
- an updated distribution never goes back to ``InProgress``;
- it drops fields of the ``DistributionConfig`` it does not model (an S3
  origin's ``S3OriginConfig``, ``OriginAccessControlId``, a behaviour's
  ``ResponseHeadersPolicyId``, ``Staging``, ...), so a config never round-trips
  whole and a restore that forgets a field cannot be caught;
- it accepts a ``Quantity`` that does not match its ``Items`` and a changed
  ``CallerReference`` on update.

:func:`install` patches those things into moto's model and backend
classes, in this one module, so the patches are easy to audit and to drop when
moto grows the features. It is idempotent (the patches are applied once per
process; calling it again only updates the timing settings) and works both
for a ThreadedMotoServer in the test process and for the standalone sandbox
server (``python -m rollback.sandbox.aws``), because both run moto's backends
in the process that called it.

What the patched backend does, as CloudFront does:

- cache behaviours keep ``LambdaFunctionAssociations`` / ``FunctionAssociations``
  as sent (``IncludeBody`` defaults to false); an association whose ARN is not a
  published version (``$LATEST``, unqualified, alias-less) is rejected with
  ``InvalidLambdaFunctionAssociation`` (400);
- ``UpdateDistribution`` (and ``DeleteDistribution``) compare ``IfMatch`` with the
  current ETag: a stale one gets ``PreconditionFailed`` (412) in CloudFront's
  XML error shape, and a successful update gets a fresh ETag and a new
  ``LastModifiedTime``, and puts the distribution back to ``InProgress``;
- a distribution turns ``Deployed`` after ``deploy_after_reads`` reads
  (``GetDistribution`` / ``GetDistributionConfig`` / ``ListDistributions``) or,
  when ``deploy_after_seconds`` is set, after that many seconds;
- an invalidation is ``InProgress`` when created and ``Completed`` after
  ``invalidation_after_reads`` ``GetInvalidation`` calls (or seconds);
- a distribution keeps every field of the ``DistributionConfig`` it was sent and
  returns it as sent (moto's defaults fill only what was not sent): the API
  reference of ``UpdateDistribution`` says "the new configuration replaces the
  existing configuration ... not merged", so what is read back is what was
  written;
- a ``Quantity`` that does not match the number of ``Items`` anywhere in the
  config is ``InconsistentQuantities`` (400), and an update whose
  ``CallerReference`` differs from the distribution's is ``IllegalUpdate`` (400:
  "You can't change the value of CallerReference").
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import threading
import time
from typing import Any

__all__ = ["DISTRIBUTION_MODEL", "SandboxTiming", "install", "is_installed", "timing"]

DISTRIBUTION_MODEL = "cloudfront::distribution"
_MARK = "_rollback_semantics_installed"
_LOCK = threading.Lock()
_UPDATE_LOCK = threading.Lock()
_VERSION_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:us-east-1:\d{12}:function:[A-Za-z0-9_-]+:\d+$")


class SandboxTiming:
    """How quickly the fake CloudFront finishes deploying and invalidating."""

    def __init__(self) -> None:
        self.deploy_after_reads = 2
        self.deploy_after_seconds: float | None = None
        self.invalidation_after_reads = 1
        self.invalidation_after_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


timing = SandboxTiming()


def is_installed() -> bool:
    from moto.cloudfront import models

    return bool(getattr(models.CloudFrontBackend, _MARK, False))


def install(
    *,
    deploy_after_reads: int = 2,
    deploy_after_seconds: float | None = None,
    invalidation_after_reads: int = 1,
    invalidation_after_seconds: float | None = None,
) -> None:
    """Patch moto's CloudFront (once per process) and set the sandbox's timing."""
    from moto.moto_api import state_manager

    timing.deploy_after_reads = max(0, deploy_after_reads)
    timing.deploy_after_seconds = deploy_after_seconds
    timing.invalidation_after_reads = max(0, invalidation_after_reads)
    timing.invalidation_after_seconds = invalidation_after_seconds
    if deploy_after_seconds is not None:
        transition: dict[str, Any] = {"progression": "time", "seconds": deploy_after_seconds}
    elif deploy_after_reads <= 0:
        transition = {"progression": "immediate"}
    else:
        transition = {"progression": "manual", "times": deploy_after_reads}
    # A default, not an override: a test may still call state_manager.set_transition itself.
    state_manager.register_default_transition(DISTRIBUTION_MODEL, transition)
    with _LOCK:
        if is_installed():
            return
        _patch()


# --- the patches --------------------------------------------------------------------------------------


def _errors() -> tuple[type[Exception], type[Exception], type[Exception], type[Exception], type[Exception]]:
    from moto.cloudfront.exceptions import CloudFrontException

    class PreconditionFailed(CloudFrontException):
        # The code names CloudFront's PreconditionFailed shape, whose model carries HTTP 412;
        # moto's serializer takes the status from there and renders CloudFront's XML error.
        def __init__(self) -> None:
            super().__init__("PreconditionFailed",
                             "The precondition given in one or more of the request-header fields evaluated to false.")

    class InvalidLambdaFunctionAssociation(CloudFrontException):
        def __init__(self, arn: str) -> None:
            super().__init__("InvalidLambdaFunctionAssociation",
                             f"The function ARN must reference a specific function version. "
                             f"(The ARN must end with the version number.) ARN: {arn}")

    class InvalidArgument(CloudFrontException):
        def __init__(self, message: str) -> None:
            super().__init__("InvalidArgument", message)

    class InconsistentQuantities(CloudFrontException):
        def __init__(self, where: str) -> None:
            super().__init__("InconsistentQuantities",
                             f"The value of Quantity and the size of Items don't match ({where}).")

    class IllegalUpdate(CloudFrontException):
        def __init__(self) -> None:
            super().__init__("IllegalUpdate", "You can't change the value of CallerReference.")

    return PreconditionFailed, InvalidLambdaFunctionAssociation, InvalidArgument, InconsistentQuantities, IllegalUpdate


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _associations(raw: Any, *, lambda_: bool, invalid: type[Exception], bad: type[Exception]) -> dict[str, Any]:
    raw = raw or {}
    items = raw.get("Items") or []
    if isinstance(items, dict):  # one <Item> parsed as a mapping by a lenient parser
        items = [items]
    kept: list[dict[str, Any]] = []
    for item in items:
        if lambda_:
            arn = str(item.get("LambdaFunctionARN", ""))
            if not _VERSION_ARN.match(arn):
                raise invalid(arn)
            kept.append({"LambdaFunctionARN": arn, "EventType": item.get("EventType", ""),
                         "IncludeBody": bool(item.get("IncludeBody", False))})
        else:
            kept.append({"FunctionARN": item.get("FunctionARN", ""), "EventType": item.get("EventType", "")})
    quantity = raw.get("Quantity")
    if quantity is not None and int(quantity) != len(kept):
        raise bad(f"Quantity {quantity} does not match the number of items ({len(kept)}).")
    events = [item["EventType"] for item in kept]
    if len(events) != len(set(events)):
        raise bad("Only one function association is allowed per event type.")
    return {"Quantity": len(kept), "Items": kept} if kept else {"Quantity": 0}


def _check_quantities(value: Any, error: type[Exception], where: str = "DistributionConfig") -> None:
    """Every ``{"Quantity": n, "Items": [...]}`` in the sent config has n items (CloudFront checks them all)."""
    if isinstance(value, dict):
        if "Quantity" in value and isinstance(value.get("Items"), list) \
                and int(value["Quantity"]) != len(value["Items"]):
            raise error(where)
        for key, item in value.items():
            _check_quantities(item, error, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _check_quantities(item, error, where)


_MISSING = object()


def _attribute(model: Any, key: str) -> Any:
    from botocore import xform_name

    for name in (key, xform_name(key)):
        if name in vars(model):
            return vars(model)[name]
    return _MISSING


def _as_sent(model: Any, sent: Any) -> Any:
    """``model`` (what moto built from ``sent``) with every field of ``sent`` kept as it was sent.

    moto's serializer looks an attribute up by its API name first, so a field set under that name on a
    model object is what a read returns; moto's own defaults stay for what was not sent.
    """
    if isinstance(sent, dict):
        if isinstance(model, dict):
            for key, value in sent.items():
                model[key] = _as_sent(model.get(key, _MISSING), value)
            return model
        if model is not _MISSING and model is not None and hasattr(model, "__dict__") \
                and not isinstance(model, (str, int, float, bool)):
            for key, value in sent.items():
                setattr(model, key, _as_sent(_attribute(model, key), value))
            return model
        return copy.deepcopy(sent)
    if isinstance(sent, list) and isinstance(model, list) and len(model) == len(sent):
        return [_as_sent(m, s) for m, s in zip(model, sent, strict=True)]
    return copy.deepcopy(sent)


def _start_deploying(dist: Any) -> None:
    dist.status = "InProgress"
    dist._tick = 0
    dist._time_progressed = dt.datetime.now()
    dist.last_modified_time = _now()


def _patch() -> None:
    from moto.cloudfront import models

    precondition_failed, invalid_association, invalid_argument, inconsistent, illegal_update = _errors()

    behaviour_init = models.DefaultCacheBehaviour.__init__

    def cache_behaviour_init(self: Any, config: dict[str, Any]) -> None:
        behaviour_init(self, config)
        self.lambda_function_associations = _associations(
            config.get("LambdaFunctionAssociations"), lambda_=True, invalid=invalid_association, bad=invalid_argument)
        self.function_associations = _associations(
            config.get("FunctionAssociations"), lambda_=False, invalid=invalid_association, bad=invalid_argument)

    models.DefaultCacheBehaviour.__init__ = cache_behaviour_init  # type: ignore[method-assign]

    config_init = models.DistributionConfig.__init__

    def distribution_config_init(self: Any, config: dict[str, Any]) -> None:
        sent = copy.deepcopy(config)  # moto's constructor replaces parts of it with its model objects
        _check_quantities(sent, inconsistent)
        config_init(self, config)
        _as_sent(self, sent)

    models.DistributionConfig.__init__ = distribution_config_init  # type: ignore[method-assign]

    backend = models.CloudFrontBackend
    create = backend.create_distribution_with_tags
    update = backend.update_distribution
    delete = backend.delete_distribution
    get_invalidation = backend.get_invalidation

    def create_distribution_with_tags(self: Any, distribution_config: dict[str, Any],
                                      tags: list[dict[str, str]]) -> tuple[Any, str, str]:
        dist, location, etag = create(self, distribution_config, tags)
        _start_deploying(dist)
        return dist, location, etag

    def update_distribution(self: Any, dist_config: dict[str, Any], _id: str,
                            if_match: Any) -> tuple[Any, str, str]:
        # The server is threaded: compare-and-swap under a lock, as CloudFront's is atomic.
        with _UPDATE_LOCK:
            current = self.distributions.get(_id)
            if current is not None and if_match and if_match != current.etag:
                raise precondition_failed()
            if current is not None and dist_config and \
                    dist_config.get("CallerReference") != current.distribution_config.caller_reference:
                raise illegal_update()
            dist, location, _ = update(self, dist_config, _id, if_match)
            dist.etag = models.random_id()
            _start_deploying(dist)
            return dist, location, dist.etag

    def delete_distribution(self: Any, distribution_id: str, if_match: Any) -> None:
        with _UPDATE_LOCK:
            current = self.distributions.get(distribution_id)
            if current is not None and if_match and if_match != current.etag:
                raise precondition_failed()
            delete(self, distribution_id, if_match)

    def get_invalidation_counted(self: Any, dist_id: str, id: str) -> Any:
        invalidation: Any = get_invalidation(self, dist_id, id)
        invalidation._rollback_reads = getattr(invalidation, "_rollback_reads", 0) + 1
        return invalidation

    backend.create_distribution_with_tags = create_distribution_with_tags  # type: ignore[method-assign]
    backend.update_distribution = update_distribution  # type: ignore[method-assign]
    backend.delete_distribution = delete_distribution  # type: ignore[method-assign]
    backend.get_invalidation = get_invalidation_counted  # type: ignore[method-assign]

    def invalidation_status(self: Any) -> str:
        if timing.invalidation_after_seconds is not None:
            created = getattr(self, "_rollback_created", 0.0)
            done = time.monotonic() - created >= timing.invalidation_after_seconds
        else:
            done = getattr(self, "_rollback_reads", 0) >= timing.invalidation_after_reads
        return "Completed" if done else "InProgress"

    def ignore_status(self: Any, value: str) -> None:
        # moto's constructor assigns "COMPLETED"; the status is computed instead.
        self._rollback_created = time.monotonic()

    models.Invalidation.status = property(invalidation_status, ignore_status)  # type: ignore[assignment]
    setattr(backend, _MARK, True)
