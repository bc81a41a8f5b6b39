"""The CloudFront semantics we add to moto, proven through boto3 over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rollback.sandbox.cloudfront import install, is_installed
from tests.aws.conftest import EdgeStack


def _arns(config: dict[str, Any]) -> list[list[str]]:
    behaviours = [config["DefaultCacheBehavior"], *config["CacheBehaviors"].get("Items", [])]
    return [[a["LambdaFunctionARN"] for a in b["LambdaFunctionAssociations"].get("Items", [])]
            for b in behaviours]


def _swap(config: dict[str, Any], arn: str) -> dict[str, Any]:
    for b in [config["DefaultCacheBehavior"], *config["CacheBehaviors"].get("Items", [])]:
        for item in b["LambdaFunctionAssociations"].get("Items", []):
            item["LambdaFunctionARN"] = arn
    return config


def test_install_is_idempotent(moto_server: str) -> None:
    from moto.cloudfront import models

    assert is_installed()
    before = models.CloudFrontBackend.update_distribution
    install()
    install(deploy_after_reads=2)
    assert models.CloudFrontBackend.update_distribution is before


def test_associations_round_trip(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack]) -> None:
    stack = edge_stack()
    cf = aws("cloudfront")
    config = cf.get_distribution_config(Id=stack.distribution_id)["DistributionConfig"]
    assert _arns(config) == [[stack.arn(3)], [stack.arn(3)], []]
    default = config["DefaultCacheBehavior"]["LambdaFunctionAssociations"]
    assert default == {"Quantity": 1, "Items": [{"LambdaFunctionARN": stack.arn(3), "EventType": "viewer-response",
                                                 "IncludeBody": False}]}
    api = config["CacheBehaviors"]["Items"][0]["LambdaFunctionAssociations"]["Items"][0]
    assert api["EventType"] == "origin-request"
    distribution = cf.get_distribution(Id=stack.distribution_id)["Distribution"]
    assert _arns(distribution["DistributionConfig"]) == [[stack.arn(3)], [stack.arn(3)], []]


def test_etag_changes_on_every_update_and_stale_if_match_gets_412(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack]) -> None:
    stack = edge_stack()
    cf = aws("cloudfront")
    read = cf.get_distribution_config(Id=stack.distribution_id)
    etags = [read["ETag"]]
    assert read["ETag"] == stack.etag
    for version in (2, 1):
        current = cf.get_distribution_config(Id=stack.distribution_id)
        updated = cf.update_distribution(Id=stack.distribution_id, IfMatch=current["ETag"],
                                         DistributionConfig=_swap(current["DistributionConfig"], stack.arn(version)))
        assert updated["ETag"] not in etags
        etags.append(updated["ETag"])
        assert cf.get_distribution_config(Id=stack.distribution_id)["ETag"] == updated["ETag"]
    assert _arns(cf.get_distribution_config(Id=stack.distribution_id)["DistributionConfig"])[0] == [stack.arn(1)]

    stale = cf.get_distribution_config(Id=stack.distribution_id)["DistributionConfig"]
    with pytest.raises(ClientError) as caught:
        cf.update_distribution(Id=stack.distribution_id, IfMatch=etags[0],
                               DistributionConfig=_swap(stale, stack.arn(3)))
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert isinstance(caught.value, cf.exceptions.PreconditionFailed)
    # Nothing was overwritten.
    after = cf.get_distribution_config(Id=stack.distribution_id)
    assert after["ETag"] == etags[-1]
    assert _arns(after["DistributionConfig"])[0] == [stack.arn(1)]


def test_412_body_is_cloudfront_xml(aws_env: str, edge_stack: Callable[..., EdgeStack]) -> None:
    import httpx

    stack = edge_stack()
    response = httpx.put(f"{aws_env}/2020-05-31/distribution/{stack.distribution_id}/config",
                         headers={"If-Match": "ESTALE", "Authorization": "AWS4-HMAC-SHA256 Credential=testing/"
                                  "20261128/us-east-1/cloudfront/aws4_request, SignedHeaders=host, Signature=x"},
                         content=b"<DistributionConfig/>")
    assert response.status_code == 412
    assert "<Code>PreconditionFailed</Code>" in response.text
    assert "<ErrorResponse" in response.text


def test_missing_if_match_is_rejected(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack]) -> None:
    stack = edge_stack()
    cf = aws("cloudfront")
    config = cf.get_distribution_config(Id=stack.distribution_id)["DistributionConfig"]
    for if_match in ({"IfMatch": ""}, {}):  # empty, and left out altogether
        with pytest.raises(ClientError) as caught:
            cf.update_distribution(Id=stack.distribution_id, DistributionConfig=config, **if_match)
        assert caught.value.response["Error"]["Code"] == "InvalidIfMatchVersion"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as caught:
        cf.delete_distribution(Id=stack.distribution_id)
    assert caught.value.response["Error"]["Code"] == "InvalidIfMatchVersion"
    assert cf.get_distribution(Id=stack.distribution_id)["Distribution"]["Id"] == stack.distribution_id


def test_unversioned_lambda_arn_is_rejected(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack]) -> None:
    stack = edge_stack()
    cf = aws("cloudfront")
    current = cf.get_distribution_config(Id=stack.distribution_id)
    unqualified = stack.arn(1).rsplit(":", 1)[0]
    with pytest.raises(ClientError) as caught:
        cf.update_distribution(Id=stack.distribution_id, IfMatch=current["ETag"],
                               DistributionConfig=_swap(current["DistributionConfig"], unqualified + ":$LATEST"))
    assert caught.value.response["Error"]["Code"] == "InvalidLambdaFunctionAssociation"
    assert cf.get_distribution_config(Id=stack.distribution_id)["ETag"] == current["ETag"]


def test_update_goes_in_progress_then_deployed_and_waiter_completes(
        aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack]) -> None:
    stack = edge_stack()
    cf = aws("cloudfront")
    current = cf.get_distribution_config(Id=stack.distribution_id)
    updated = cf.update_distribution(Id=stack.distribution_id, IfMatch=current["ETag"],
                                     DistributionConfig=_swap(current["DistributionConfig"], stack.arn(2)))
    assert updated["Distribution"]["Status"] == "InProgress"
    statuses = [cf.get_distribution(Id=stack.distribution_id)["Distribution"]["Status"] for _ in range(3)]
    assert statuses == ["InProgress", "Deployed", "Deployed"]
    cf.update_distribution(Id=stack.distribution_id, IfMatch=cf.get_distribution_config(
        Id=stack.distribution_id)["ETag"], DistributionConfig=_swap(current["DistributionConfig"], stack.arn(1)))
    cf.get_waiter("distribution_deployed").wait(Id=stack.distribution_id,
                                                WaiterConfig={"Delay": 0, "MaxAttempts": 5})
    assert cf.get_distribution(Id=stack.distribution_id)["Distribution"]["Status"] == "Deployed"


def test_invalidation_waiter_completes(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack]) -> None:
    stack = edge_stack()
    cf = aws("cloudfront")
    created = cf.create_invalidation(DistributionId=stack.distribution_id, InvalidationBatch={
        "Paths": {"Quantity": 1, "Items": ["/*"]}, "CallerReference": "t1"})["Invalidation"]
    assert created["Status"] == "InProgress"
    cf.get_waiter("invalidation_completed").wait(DistributionId=stack.distribution_id, Id=created["Id"],
                                                 WaiterConfig={"Delay": 0, "MaxAttempts": 3})
    got = cf.get_invalidation(DistributionId=stack.distribution_id, Id=created["Id"])["Invalidation"]
    assert got["Status"] == "Completed"
    listed = cf.list_invalidations(DistributionId=stack.distribution_id)["InvalidationList"]["Items"]
    assert [item["Status"] for item in listed] == ["Completed"]
