"""Drift as a pure comparison: checkpoint resources (built here) against live data."""

from __future__ import annotations

from typing import Any

import pytest

from rollback.model.drift import (
    Difference,
    Expected,
    ExpectedAlarm,
    Live,
    LiveAlarm,
    LiveDistribution,
    compare,
    expected_from_checkpoint,
)

ARN = "arn:aws:lambda:us-east-1:123456789012:function:sec-headers"


def checkpoint(version: str = "6", origin_path: str = "/releases/r42") -> list[dict[str, Any]]:
    return [
        {"urn": "urn:pulumi:prod::rollback::pulumi:pulumi:Stack::rollback-prod", "type": "pulumi:pulumi:Stack",
         "outputs": {"distributionId": "E1"}},
        {"urn": "urn:...:Distribution::cdn", "type": "aws:cloudfront/distribution:Distribution", "id": "E1",
         "outputs": {
             "id": "E1",
             "defaultCacheBehavior": {"lambdaFunctionAssociations": [
                 {"eventType": "viewer-response", "lambdaArn": f"{ARN}:{version}", "includeBody": False}]},
             "orderedCacheBehaviors": [
                 {"pathPattern": "/api/*", "lambdaFunctionAssociations": []},
                 {"pathPattern": "/auth/*", "lambdaFunctionAssociations": [
                     {"eventType": "origin-request", "lambdaArn": f"{ARN}:{version}"}]},
             ],
             "origins": [{"originId": "assets", "originPath": origin_path, "domainName": "b.s3.amazonaws.com"},
                         {"originId": "app", "originPath": "", "domainName": "app.vercel.app"}],
         }},
        {"type": "aws:lambda/function:Function", "id": "sec-headers",
         "outputs": {"name": "sec-headers", "version": version, "qualifiedArn": f"{ARN}:{version}"}},
        {"type": "aws:s3/bucket:Bucket", "id": "assets-bucket", "outputs": {"bucket": "assets-bucket"}},
        {"type": "aws:s3/bucketVersioning:BucketVersioning", "id": "assets-bucket",
         "outputs": {"bucket": "assets-bucket", "versioningConfiguration": {"status": "Enabled"}}},
        {"type": "aws:cloudwatch/metricAlarm:MetricAlarm", "id": "p-cdn-5xx",
         "outputs": {"name": "p-cdn-5xx", "threshold": 5, "metricName": "5xxErrorRate",
                     "namespace": "AWS/CloudFront", "comparisonOperator": "GreaterThanThreshold",
                     "actionsEnabled": True}},
        {"type": "aws:cloudwatch/compositeAlarm:CompositeAlarm", "id": "p-rollback",
         "outputs": {"alarmName": "p-rollback", "actionsEnabled": True}},
        {"type": "aws:lambda/function:Function", "id": "old", "delete": True, "outputs": {"name": "old"}},
    ]


def live(version: str = "6", origin_path: str = "/releases/r42", **overrides: Any) -> Live:
    values: dict[str, Any] = {
        "distributions": {"E1": LiveDistribution("E1", {("default", "viewer-response"): f"{ARN}:{version}",
                                                        ("/auth/*", "origin-request"): f"{ARN}:{version}"},
                                                 {"assets": origin_path, "app": ""})},
        "function_versions": {"sec-headers": ["1", "2", "3", "4", "5", "6"]},
        "buckets": {"assets-bucket": "Enabled"},
        "alarms": {"p-cdn-5xx": LiveAlarm("p-cdn-5xx", "5xxErrorRate", "AWS/CloudFront", 5.0, "GreaterThanThreshold",
                                          True),
                   "p-rollback": LiveAlarm("p-rollback")},
    }
    values.update(overrides)
    return Live(**values)


def test_expected_from_checkpoint() -> None:
    expected = expected_from_checkpoint(checkpoint())
    assert expected.distributions["E1"].associations == {("default", "viewer-response"): f"{ARN}:6",
                                                         ("/auth/*", "origin-request"): f"{ARN}:6"}
    assert expected.distributions["E1"].origin_paths == {"assets": "/releases/r42", "app": ""}
    assert set(expected.functions) == {"sec-headers"}  # the pending delete is ignored
    assert expected.functions["sec-headers"].version == "6"
    assert expected.buckets == {"assets-bucket": "Enabled"}
    assert expected.alarms["p-cdn-5xx"] == ExpectedAlarm("p-cdn-5xx", False, "5xxErrorRate", "AWS/CloudFront", 5.0,
                                                         "GreaterThanThreshold", True)
    assert expected.alarms["p-rollback"].composite


def test_no_drift() -> None:
    assert compare(expected_from_checkpoint(checkpoint()), live()) == []


def test_break_glass_edge_rollback_shows_as_drift() -> None:
    differences = compare(expected_from_checkpoint(checkpoint("6")), live("5"))
    assert [d.field for d in differences] == ["edge association (/auth/*, origin-request)",
                                              "edge association (default, viewer-response)"]
    assert differences[1].expected == f"{ARN}:6" and differences[1].live == f"{ARN}:5"
    assert differences[1].describe() == (f"distribution E1: edge association (default, viewer-response): "
                                         f"expected {ARN}:6, live {ARN}:5")


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"distributions": {"E1": None}},
     [Difference("distribution E1", "distribution", "E1", None, "missing")]),
    ({"distributions": {"E1": LiveDistribution("E1", {("default", "viewer-response"): f"{ARN}:6",
                                                      ("/auth/*", "origin-request"): f"{ARN}:6",
                                                      ("/api/*", "viewer-request"): f"{ARN}:2"},
                                               {"assets": "/releases/r41", "app": ""})}},
     [Difference("distribution E1", "edge association (/api/*, viewer-request)", None, f"{ARN}:2", "unexpected"),
      Difference("distribution E1", "origin path (assets)", "/releases/r42", "/releases/r41")]),
    ({"distributions": {"E1": LiveDistribution("E1", {("default", "viewer-response"): f"{ARN}:6"},
                                               {"assets": "/releases/r42"})}},
     [Difference("distribution E1", "edge association (/auth/*, origin-request)", f"{ARN}:6", None, "missing"),
      Difference("distribution E1", "origin path (app)", "", None, "missing")]),
    ({"function_versions": {"sec-headers": None}},
     [Difference("function sec-headers", "function", "sec-headers", None, "missing")]),
    ({"function_versions": {"sec-headers": ["1", "2", "3", "4", "5", "6", "7", "8"]}},
     [Difference("function sec-headers", "newest published version", "6", "8")]),
    ({"function_versions": {"sec-headers": ["1", "2", "3"]}},
     [Difference("function sec-headers", "version 6", "6", None, "missing")]),
    ({"buckets": {"assets-bucket": "Suspended"}},
     [Difference("bucket assets-bucket", "versioning", "Enabled", "Suspended")]),
    ({"buckets": {"assets-bucket": None}},
     [Difference("bucket assets-bucket", "bucket", "assets-bucket", None, "missing")]),
    ({"buckets": {}}, []),
    ({"alarms": {"p-rollback": LiveAlarm("p-rollback", actions_enabled=False)}},
     [Difference("alarm p-cdn-5xx", "alarm", "p-cdn-5xx", None, "missing"),
      Difference("alarm p-rollback", "actions enabled", True, False)]),
    ({"alarms": {"p-cdn-5xx": LiveAlarm("p-cdn-5xx", "5xxErrorRate", "AWS/CloudFront", 50.0,
                                        "GreaterThanThreshold", True), "p-rollback": LiveAlarm("p-rollback")}},
     [Difference("alarm p-cdn-5xx", "threshold", 5.0, 50.0)]),
])
def test_each_kind_of_drift(overrides: dict[str, Any], expected: list[Difference]) -> None:
    assert compare(expected_from_checkpoint(checkpoint()), live(**overrides)) == expected


def test_legacy_bucket_versioning_flags() -> None:
    resources = [{"type": "aws:s3/bucketV2:BucketV2", "id": "b2", "outputs": {"bucket": "b2",
                                                                               "versionings": [{"enabled": True}]}},
                 {"type": "aws:s3/bucket:Bucket", "id": "b1", "outputs": {"bucket": "b1",
                                                                          "versioning": {"enabled": False}}}]
    expected = expected_from_checkpoint(resources)
    assert expected.buckets == {"b2": "Enabled", "b1": None}
    differences = compare(expected, Live(buckets={"b1": "Enabled", "b2": "Suspended"}))
    assert [d.resource for d in differences] == ["bucket b2"]


def test_function_without_published_version_only_checks_existence() -> None:
    expected = Expected(functions={"f": expected_from_checkpoint(
        [{"type": "aws:lambda/function:Function", "outputs": {"name": "f", "version": "$LATEST"}}]).functions["f"]})
    assert expected.functions["f"].version is None
    assert compare(expected, Live(function_versions={"f": ["1", "2"]})) == []


def test_to_dict_is_json_ready() -> None:
    difference = Difference("bucket b", "versioning", "Enabled", "Suspended")
    assert difference.to_dict() == {"resource": "bucket b", "field": "versioning", "expected": "Enabled",
                                    "live": "Suspended", "kind": "changed",
                                    "description": "bucket b: versioning: expected Enabled, live Suspended"}
