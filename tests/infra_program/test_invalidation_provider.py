"""The release invalidation's dynamic provider calls CloudFront with the stack's AWS settings (``aws:profile``,
``aws:assumeRole`` / ``aws:assumeRoles``, ``aws:region``), not the ambient credential chain of the machine that
runs ``pulumi up``.

The provider's own methods run against the moto server (real boto3 calls, real STS AssumeRole). moto's documented
behaviour makes the credentials observable: "AssumeRole ... the ARN can point to another account, providing an
opportunity to switch accounts", and a request signed with the temporary key is served from that account's
backend. So the distribution lives in another account than the ambient credentials', and an invalidation made
with the ambient chain cannot find it (NoSuchDistribution), as with real AWS when the deployer's role is in
another account. The program's side (the settings reach the resource's inputs) runs under Pulumi's mocks."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.invalidation import AwsSettings, _ReleaseInvalidationProvider
from tests.infra_program.conftest import RunInfra


def other_account() -> str:
    return str(random.randint(200_000_000_000, 899_999_999_999))


def client_in(account: str, service: str, session_name: str = "seed") -> Any:
    import boto3

    role = f"arn:aws:iam::{account}:role/deployer"
    credentials = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=role, RoleSessionName=session_name)["Credentials"]
    return boto3.client(service, region_name="us-east-1", aws_access_key_id=credentials["AccessKeyId"],
                        aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"])


def distribution_in(account: str) -> str:
    cloudfront = client_in(account, "cloudfront")
    created = cloudfront.create_distribution(DistributionConfig={
        "CallerReference": uuid.uuid4().hex, "Comment": "invalidation provider test", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "app", "DomainName": "app.example.com", "CustomOriginConfig": {
            "HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "app", "ViewerProtocolPolicy": "redirect-to-https",
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                 "MinTTL": 0}})
    return str(created["Distribution"]["Id"])


def props(distribution: str, aws: AwsSettings | None) -> dict[str, Any]:
    return {"distribution_id": distribution, "origin_path": "/releases/r42", "paths": ["/*"],
            "aws": (aws or AwsSettings()).to_input(), "invalidation_id": None}


def test_an_assumed_role_is_used_not_the_ambient_chain(aws_env: str) -> None:
    from botocore.exceptions import ClientError
    from moto.sts.models import sts_backends

    account = other_account()
    distribution = distribution_in(account)
    provider = _ReleaseInvalidationProvider()
    # The ambient chain (this process's AWS_ACCESS_KEY_ID) is another account: the distribution is not there.
    with pytest.raises(ClientError, match="NoSuchDistribution"):
        provider.create(props(distribution, None))

    role = {"roleArn": f"arn:aws:iam::{account}:role/deployer", "sessionName": "pulumi-deploy",
            "externalId": "acme-ext-7", "duration": "1h"}
    created = provider.create(props(distribution, AwsSettings(region="us-east-1", assume_roles=(role,))))
    invalidation = client_in(account, "cloudfront").get_invalidation(DistributionId=distribution, Id=created.id)
    assert invalidation["Invalidation"]["InvalidationBatch"]["Paths"]["Items"] == ["/*"]
    assumed = [r for r in sts_backends[account]["aws"].assumed_roles if r.session_name == "pulumi-deploy"]
    assert [(r.external_id, r.role_arn) for r in assumed] == [("acme-ext-7", role["roleArn"])]


def test_the_stack_profile_is_used(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``aws:profile`` names a profile of the shared config files; that one assumes the deployer role."""
    account = other_account()
    distribution = distribution_in(account)
    config = tmp_path / "config"
    config.write_text(f"[profile deployer]\nrole_arn = arn:aws:iam::{account}:role/deployer\n"
                      "source_profile = base\nrole_session_name = from-profile\nregion = us-east-1\n")
    credentials = tmp_path / "credentials"
    credentials.write_text("[base]\naws_access_key_id = AKIAPROFILEBASE00001\n"
                           "aws_secret_access_key = profile-base-secret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    created = _ReleaseInvalidationProvider().update(
        "old-id", {}, props(distribution, AwsSettings(profile="deployer", region="us-east-1")))
    found = client_in(account, "cloudfront").get_invalidation(DistributionId=distribution,
                                                              Id=created.outs["invalidation_id"])
    assert found["Invalidation"]["Status"]


def test_the_program_hands_the_stack_aws_settings_to_the_invalidation(run_infra: RunInfra) -> None:
    roles = [{"roleArn": "arn:aws:iam::210987654321:role/deployer", "sessionName": "ci", "externalId": "x-1"}]
    run = run_infra({"aws:profile": "prod-deployer", "aws:assumeRoles": json.dumps(roles)})
    (name,) = [n for n, r in run.resources.items() if n.endswith("release-invalidation")]
    assert run.resources[name]["inputs"]["aws"] == {"profile": "prod-deployer", "region": "us-east-1",
                                                    "assume_roles": roles}
    one = run_infra({"aws:assumeRole": json.dumps(roles[0])})
    assert one.resources[name]["inputs"]["aws"]["assume_roles"] == roles
    plain = run_infra().resources[name]["inputs"]["aws"]
    assert (plain.get("profile"), plain["region"], plain["assume_roles"]) == (None, "us-east-1", [])
