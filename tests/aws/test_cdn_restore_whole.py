"""``infra cdn restore`` puts back the *whole* saved ``DistributionConfig``, on the environment's own distribution,
and shows every field it changes first; against the moto server with the sandbox's CloudFront semantics, which
keep and return every field sent, as CloudFront does.

The behaviour followed is the API reference of ``UpdateDistribution`` (botocore's CloudFront model): "The new
configuration replaces the existing configuration. The values that you specify in an UpdateDistribution request
are not merged into your existing configuration. Make sure to include all fields", and "You can't change the
value of CallerReference" (``IllegalUpdate``); a ``Quantity`` that does not match its ``Items`` is
``InconsistentQuantities``."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.aws.conftest import EdgeStack, Project, unique

CDN = ("infra", "cdn")
FAST = ("--poll-interval", "0s")
IGNORED_FIELDS = ("CallerReference",)  # the one field CloudFront never lets an update change
SECRET = "origin-verify-3f9a1c77e2"
OTHER_SECRET = "rotated-by-hand-0b1d44"


def full_config(stack: EdgeStack) -> dict[str, Any]:
    """What the stack's program declares and a restore must put back: two origins (the app's with an
    X-Origin-Verify header), OAC, a response headers policy, error pages, logging, WAF, HTTP/3."""
    return {
        "CallerReference": unique("ref"),
        "Comment": "rollback test: full config",
        "Enabled": True,
        "Aliases": {"Quantity": 1, "Items": [f"{unique('cdn')}.example.com"]},
        "DefaultRootObject": "index.html",
        "Origins": {"Quantity": 2, "Items": [
            {"Id": "assets", "DomainName": f"{stack.bucket}.s3.amazonaws.com", "OriginPath": "/releases/r42",
             "S3OriginConfig": {"OriginAccessIdentity": ""}, "OriginAccessControlId": "E2OACASSETS01",
             "CustomHeaders": {"Quantity": 0}},
            {"Id": "app", "DomainName": "app-staging.vercel.app", "OriginPath": "",
             "CustomHeaders": {"Quantity": 1, "Items": [{"HeaderName": "X-Origin-Verify", "HeaderValue": SECRET}]},
             "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only",
                                    "OriginSslProtocols": {"Quantity": 1, "Items": ["TLSv1.2"]},
                                    "OriginReadTimeout": 30, "OriginKeepaliveTimeout": 5}}]},
        "DefaultCacheBehavior": {
            "TargetOriginId": "assets", "ViewerProtocolPolicy": "redirect-to-https",
            "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
            "ResponseHeadersPolicyId": "67f7725c-6f97-4210-82d7-5512b31e9d03",
            "LambdaFunctionAssociations": {"Quantity": 1, "Items": [
                {"LambdaFunctionARN": stack.arn(3), "EventType": "viewer-response", "IncludeBody": False}]}},
        "CacheBehaviors": {"Quantity": 1, "Items": [{
            "PathPattern": "/api/*", "TargetOriginId": "app", "ViewerProtocolPolicy": "https-only",
            "CachePolicyId": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
            "OriginRequestPolicyId": "b689b0a8-53d0-40ab-baf2-68738e2966ac"}]},
        "CustomErrorResponses": {"Quantity": 1, "Items": [
            {"ErrorCode": 404, "ResponsePagePath": "/404.html", "ResponseCode": "404", "ErrorCachingMinTTL": 10}]},
        "Logging": {"Enabled": True, "IncludeCookies": False, "Bucket": "logs.s3.amazonaws.com", "Prefix": "cf/"},
        "PriceClass": "PriceClass_100",
        "ViewerCertificate": {"ACMCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
                              "SSLSupportMethod": "sni-only", "MinimumProtocolVersion": "TLSv1.2_2021",
                              "CloudFrontDefaultCertificate": False},
        "Restrictions": {"GeoRestriction": {"RestrictionType": "none", "Quantity": 0}},
        "WebACLId": "arn:aws:wafv2:us-east-1:123456789012:global/webacl/edge/1",
        "HttpVersion": "http2and3",
        "IsIPV6Enabled": True,
        "Staging": False,
    }


def sent_fields_missing(sent: Any, got: Any, path: str = "") -> list[str]:
    """Paths of ``sent`` that ``got`` lacks or holds otherwise."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [path]
        return [p for k, v in sent.items() for p in (sent_fields_missing(v, got[k], f"{path}.{k}") if k in got
                                                      else [f"{path}.{k}"])]
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return [path]
        return [p for i, (a, b) in enumerate(zip(sent, got, strict=True)) for p in sent_fields_missing(a, b,
                                                                                                     f"{path}[{i}]")]
    return [] if sent == got else [path]


@pytest.fixture
def full_stack(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack]) -> EdgeStack:
    """An edge stack whose distribution has the whole config of :func:`full_config`."""
    stack = edge_stack()
    client = aws("cloudfront")
    created = client.create_distribution(DistributionConfig=full_config(stack))
    stack.distribution_id, stack.etag = created["Distribution"]["Id"], created["ETag"]
    return stack


def read(aws: Callable[[str], Any], distribution_id: str) -> tuple[dict[str, Any], str]:
    found = aws("cloudfront").get_distribution_config(Id=distribution_id)
    return found["DistributionConfig"], found["ETag"]


def edit_by_hand(aws: Callable[[str], Any], distribution_id: str) -> None:
    """What someone does in the console during an incident: every one of these is invisible to a restore
    that compares only origins, behaviours and associations."""
    config, etag = read(aws, distribution_id)
    config = copy.deepcopy(config)
    config["Enabled"] = False
    config["Comment"] = "hand edit during the incident"
    config["PriceClass"] = "PriceClass_All"
    config["HttpVersion"] = "http1.1"
    app = next(o for o in config["Origins"]["Items"] if o["Id"] == "app")
    app["CustomHeaders"]["Items"][0]["HeaderValue"] = OTHER_SECRET
    assets = next(o for o in config["Origins"]["Items"] if o["Id"] == "assets")
    assets["OriginAccessControlId"] = "E2OACOTHER999"
    config["DefaultCacheBehavior"]["ResponseHeadersPolicyId"] = "60669652-455b-4ae9-85a4-c4c02393f86c"
    config["WebACLId"] = ""
    aws("cloudfront").update_distribution(Id=distribution_id, IfMatch=etag, DistributionConfig=config)


def without_ignored(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in IGNORED_FIELDS}


def test_the_stand_in_keeps_every_field_it_is_sent(aws: Callable[[str], Any],
                                                   edge_stack: Callable[..., EdgeStack]) -> None:
    """CloudFront returns the DistributionConfig it was sent ("replaces the existing configuration ... not
    merged"): moto alone drops S3OriginConfig, OriginAccessControlId, ResponseHeadersPolicyId and Staging.
    It refuses a changed CallerReference (IllegalUpdate) and a Quantity that does not match (InconsistentQuantities)."""
    stack = edge_stack()
    client = aws("cloudfront")
    sent = full_config(stack)
    created = client.create_distribution(DistributionConfig=copy.deepcopy(sent))
    distribution_id = created["Distribution"]["Id"]
    got, etag = read(aws, distribution_id)
    assert sent_fields_missing(sent, got) == []
    assert sent_fields_missing(sent, created["Distribution"]["DistributionConfig"]) == []

    other = copy.deepcopy(got)
    other["CallerReference"] = "another-reference"
    with pytest.raises(ClientError) as illegal:
        client.update_distribution(Id=distribution_id, IfMatch=etag, DistributionConfig=other)
    assert illegal.value.response["Error"]["Code"] == "IllegalUpdate"
    assert illegal.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    wrong = copy.deepcopy(got)
    wrong["Aliases"]["Quantity"] = 2
    with pytest.raises(ClientError) as inconsistent:
        client.update_distribution(Id=distribution_id, IfMatch=etag, DistributionConfig=wrong)
    assert inconsistent.value.response["Error"]["Code"] == "InconsistentQuantities"
    # What is read back is a fixed point: sent again unchanged, it reads back the same.
    client.update_distribution(Id=distribution_id, IfMatch=etag, DistributionConfig=got)
    assert read(aws, distribution_id)[0] == got


def test_restore_puts_every_field_back_and_shows_each_first(
        aws: Callable[[str], Any], full_stack: EdgeStack, project: Callable[..., Project], run_cli: Any) -> None:
    proj = project(full_stack)
    distribution_id = full_stack.distribution_id
    taken = run_cli(*CDN, "snapshot", "--reason", "before", "--json", "--config", str(proj.config))
    assert taken.code == 0, taken.err
    saved, _ = read(aws, distribution_id)
    edit_by_hand(aws, distribution_id)
    snapshot_id = taken.json()["snapshot"]

    dry = run_cli(*CDN, "restore", snapshot_id, "--dry-run", "--config", str(proj.config))
    assert dry.code == 0, dry.err
    shown = dry.out + dry.err
    for line in ("Enabled: false -> true", "Comment: hand edit during the incident -> rollback test: full config",
                 "PriceClass: PriceClass_All -> PriceClass_100", "HttpVersion: http1.1 -> http2and3",
                 "Origins[app].CustomHeaders[X-Origin-Verify].HeaderValue: [secret] changed",
                 "Origins[assets].OriginAccessControlId: E2OACOTHER999 -> E2OACASSETS01",
                 "DefaultCacheBehavior.ResponseHeadersPolicyId: ",
                 "WebACLId:  -> arn:aws:wafv2:us-east-1:123456789012:global/webacl/edge/1"):
        assert line in shown, line
    assert SECRET not in shown and OTHER_SECRET not in shown  # header values never shown
    assert read(aws, distribution_id)[0]["Enabled"] is False  # the dry run sent nothing

    result = run_cli(*CDN, "restore", snapshot_id, *FAST, "--yes", "--json", "--config", str(proj.config))
    assert result.code == 0, result.err
    document = result.json()
    assert SECRET not in result.out + result.err and OTHER_SECRET not in result.out + result.err
    now, _ = read(aws, distribution_id)
    assert without_ignored(now) == without_ignored(saved)  # every field back
    assert len(document["diff"]) == 8 and document["results"]["update"]["changed"] is True
    # What the cache serves differently: the app origin's header (behaviour /api/*) and the assets origin's
    # access control (the default behaviour): /*. The comment, price class... alone would invalidate nothing.
    assert document["invalidate"] == ["/*"]
    # A second restore has nothing left to send.
    again = run_cli(*CDN, "restore", snapshot_id, *FAST, "--yes", "--json", "--config", str(proj.config))
    assert again.code == 0, again.err
    assert again.json()["diff"] == [] and again.json()["results"]["update"]["changed"] is False


def test_settings_that_serve_nothing_differently_invalidate_nothing(
        aws: Callable[[str], Any], full_stack: EdgeStack, project: Callable[..., Project], run_cli: Any) -> None:
    proj = project(full_stack)
    snapshot_id = run_cli(*CDN, "snapshot", "--json", "--config", str(proj.config)).json()["snapshot"]
    config, etag = read(aws, full_stack.distribution_id)
    config.update(Enabled=False, Comment="hand edit", PriceClass="PriceClass_All")
    aws("cloudfront").update_distribution(Id=full_stack.distribution_id, IfMatch=etag, DistributionConfig=config)
    result = run_cli(*CDN, "restore", snapshot_id, *FAST, "--yes", "--json", "--config", str(proj.config))
    assert result.code == 0, result.err
    assert result.json()["invalidate"] == [] and "invalidate" not in result.json()["results"]
    assert read(aws, full_stack.distribution_id)[0]["Enabled"] is True


def test_a_snapshot_of_another_distribution_is_refused(
        aws: Callable[[str], Any], full_stack: EdgeStack, edge_stack: Callable[..., EdgeStack],
        project: Callable[..., Project], run_cli: Any) -> None:
    """The target is the environment's distribution, never the one a snapshot file names."""
    other = edge_stack()
    proj = project(full_stack)
    foreign = run_cli(*CDN, "snapshot", "--distribution", other.distribution_id, "--json", "--config",
                      str(proj.config)).json()["snapshot"]
    _, etag_before = read(aws, full_stack.distribution_id)
    _, other_etag = read(aws, other.distribution_id)
    refused = run_cli(*CDN, "restore", foreign, *FAST, "--yes", "--config", str(proj.config))
    assert refused.code == 2, refused.err
    assert f"is of distribution {other.distribution_id}, not of {full_stack.distribution_id}" in refused.err
    assert read(aws, full_stack.distribution_id)[1] == etag_before
    assert read(aws, other.distribution_id)[1] == other_etag

    # A file renamed to look like this distribution's, its content still naming the other one: refused too.
    own = run_cli(*CDN, "snapshot", "--json", "--config", str(proj.config)).json()["snapshot"]
    path = next((proj.root / ".rollback" / "cdn-snapshots").glob(f"*/{own}.distribution.json"))
    data = json.loads(path.read_text())
    data["distribution_id"] = other.distribution_id
    path.write_text(json.dumps(data))
    refused = run_cli(*CDN, "restore", own, *FAST, "--yes", "--config", str(proj.config))
    assert refused.code == 2 and other.distribution_id in refused.err, refused.err
    assert read(aws, full_stack.distribution_id)[1] == etag_before


def test_a_hand_edited_snapshot_is_shown_as_its_diff_before_anything_is_sent(
        aws: Callable[[str], Any], full_stack: EdgeStack, project: Callable[..., Project], run_cli: Any) -> None:
    proj = project(full_stack)
    snapshot_id = run_cli(*CDN, "snapshot", "--json", "--config", str(proj.config)).json()["snapshot"]
    path: Path = next((proj.root / ".rollback" / "cdn-snapshots").glob(f"*/{snapshot_id}.distribution.json"))
    data = json.loads(path.read_text())
    data["config"]["Comment"] = "edited in the file"
    data["config"]["DefaultRootObject"] = "home.html"
    path.write_text(json.dumps(data))
    listed = run_cli(*CDN, "list", "--json", "--config", str(proj.config)).json()["snapshots"]
    assert [s["edited"] for s in listed] == [True]

    result = run_cli(*CDN, "restore", snapshot_id, *FAST, "--yes", "--config", str(proj.config))
    assert result.code == 0, result.err
    notes = result.err[:result.err.index("journaled as run")]  # the plan, printed before the run's steps
    assert f"snapshot {snapshot_id} was EDITED after it was taken" in notes
    assert "2 field(s) differ from the distribution now:" in notes
    assert "~ Comment: rollback test: full config -> edited in the file" in notes
    assert "~ DefaultRootObject: index.html -> home.html" in notes
    config, _ = read(aws, full_stack.distribution_id)
    assert (config["Comment"], config["DefaultRootObject"]) == ("edited in the file", "home.html")


def test_a_snapshot_edited_after_the_plan_is_not_sent(
        aws: Callable[[str], Any], full_stack: EdgeStack, project: Callable[..., Project], run_cli: Any) -> None:
    """What is sent is what the plan showed: the run re-reads the file and refuses (exit 4) if it changed."""
    from rollback.commands.infra import cdn as infra_cdn
    from rollback.config import load_config
    from rollback.context import Services
    from rollback.errors import UnsafePrecondition

    proj = project(full_stack)
    snapshot_id = run_cli(*CDN, "snapshot", "--json", "--config", str(proj.config)).json()["snapshot"]
    config, etag = read(aws, full_stack.distribution_id)
    config["Comment"] = "hand edit"
    aws("cloudfront").update_distribution(Id=full_stack.distribution_id, IfMatch=etag, DistributionConfig=config)
    settings = load_config(proj.config)
    services = Services(settings)
    planned = infra_cdn.prepare_restore(settings, services, snapshot_id)
    assert [c.path for c in planned.facts.changes] == ["Comment"]
    path = next((proj.root / ".rollback" / "cdn-snapshots").glob(f"*/{snapshot_id}.distribution.json"))
    data = json.loads(path.read_text())
    data["config"]["Enabled"] = False
    path.write_text(json.dumps(data))
    with pytest.raises(UnsafePrecondition, match="changed since the plan"):
        infra_cdn.run_cdn(planned, services, interval=0)
    assert read(aws, full_stack.distribution_id)[0]["Enabled"] is True
