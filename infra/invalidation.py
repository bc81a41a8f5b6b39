"""Release invalidation: a CloudFront invalidation keyed on the assets origin path.

CloudFront's cache key does not include the origin path. When ``assetsRelease``
changes (a release, or ``pulumi up`` / ``rollback infra restore`` putting an
earlier release back), every edge location keeps serving the other release's
cached objects until they expire (up to a day with the managed
CachingOptimized policy). This resource is created with the distribution and
updated whenever the origin path changes: each create/update invalidates
``/*`` once the distribution is deployed (the distribution waits for
``Deployed`` by default, and this resource depends on it). Deleting it deletes
nothing: an invalidation cannot be undone, nor needs to be.

It is a Pulumi dynamic resource because neither pulumi-aws nor the AWS API has
an invalidation resource. The provider runs in the Pulumi engine's Python host
with the program's virtualenv (boto3 is pinned in ``infra/requirements.txt``);
Pulumi pickles the provider class *by value*, so everything it needs is imported
inside its methods.

A dynamic provider does not get the aws provider's configuration: left to
itself, boto3 would call CloudFront with whatever the ambient credential chain
of the machine running ``pulumi up`` finds (another account, or none), while
every other resource goes through ``aws:profile`` / ``aws:assumeRole(s)``. So the
stack's AWS settings (:class:`AwsSettings`, read in ``infra/__main__.py``) are an
input: the provider opens a boto3 session with that profile and region and
assumes those roles, in order, as the aws provider does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

INVALIDATED_PATHS = ("/*",)


@dataclass(frozen=True)
class AwsSettings:
    """The stack's ``aws:*`` settings the aws provider uses, for the dynamic provider to use the same."""

    profile: str | None = None
    region: str | None = None
    assume_roles: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    """``aws:assumeRoles`` (pulumi-aws 7: a list, assumed in order) or ``aws:assumeRole`` (one object):
    ``roleArn``, ``sessionName``, ``externalId``, ``duration`` ("1h") or ``durationSeconds``, ``policy``,
    ``policyArns``, ``sourceIdentity``, ``tags``, ``transitiveTagKeys``."""

    @classmethod
    def from_config(cls, get: Any, get_object: Any) -> AwsSettings:
        """From ``pulumi.Config("aws")``'s ``get`` and ``get_object``."""
        roles = get_object("assumeRoles") or []
        one = get_object("assumeRole")
        if isinstance(one, Mapping):
            roles = [*roles, one]
        return cls(profile=get("profile") or None, region=get("region") or None,
                   assume_roles=tuple(dict(r) for r in roles if isinstance(r, Mapping) and r.get("roleArn")))

    def to_input(self) -> dict[str, Any]:
        return {"profile": self.profile, "region": self.region, "assume_roles": [dict(r) for r in self.assume_roles]}


class _ReleaseInvalidationProvider(ResourceProvider):
    """create/update: invalidate ``paths`` on ``distribution_id``; delete: nothing to delete."""

    # Inputs whose change means "another release is served": invalidate again.
    TRIGGERS = ("distribution_id", "origin_path", "paths")

    @staticmethod
    def _seconds(role: Mapping[str, Any]) -> int | None:
        """``duration`` ("1h30m", pulumi-aws 7) or ``durationSeconds`` (6) of an assumed role."""
        import re

        if role.get("durationSeconds"):
            return int(role["durationSeconds"])
        match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(role.get("duration") or ""))
        if not match or not any(match.groups()):
            return None
        hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds

    def _session(self, settings: Mapping[str, Any] | None) -> Any:
        """A boto3 session with the stack's profile and region, with its roles assumed in order."""
        import boto3

        settings = settings or {}
        region = settings.get("region") or "us-east-1"
        session = boto3.Session(profile_name=settings.get("profile") or None, region_name=region)
        for role in settings.get("assume_roles") or []:
            request: dict[str, Any] = {"RoleArn": role["roleArn"],
                                       "RoleSessionName": role.get("sessionName") or "pulumi-release-invalidation"}
            if role.get("externalId"):
                request["ExternalId"] = role["externalId"]
            seconds = self._seconds(role)
            if seconds:
                request["DurationSeconds"] = seconds
            if role.get("policy"):
                request["Policy"] = role["policy"]
            if role.get("policyArns"):
                request["PolicyArns"] = [{"arn": arn} for arn in role["policyArns"]]
            if role.get("sourceIdentity"):
                request["SourceIdentity"] = role["sourceIdentity"]
            if role.get("tags"):
                request["Tags"] = [{"Key": k, "Value": v} for k, v in dict(role["tags"]).items()]
            if role.get("transitiveTagKeys"):
                request["TransitiveTagKeys"] = list(role["transitiveTagKeys"])
            credentials = session.client("sts", region_name=region).assume_role(**request)["Credentials"]
            session = boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                                    aws_secret_access_key=credentials["SecretAccessKey"],
                                    aws_session_token=credentials["SessionToken"], region_name=region)
        return session

    def _invalidate(self, props: dict[str, Any]) -> str:
        import uuid

        paths = list(props["paths"])
        # CloudFront is global; its API lives in us-east-1 whatever the stack's region.
        client = self._session(props.get("aws")).client("cloudfront", region_name="us-east-1")
        response = client.create_invalidation(
            DistributionId=props["distribution_id"],
            InvalidationBatch={
                "Paths": {"Quantity": len(paths), "Items": paths},
                "CallerReference": f"pulumi-release-{uuid.uuid4().hex}",
            },
        )
        return str(response["Invalidation"]["Id"])

    def create(self, props: dict[str, Any]) -> CreateResult:
        invalidation_id = self._invalidate(props)
        return CreateResult(id_=invalidation_id, outs={**props, "invalidation_id": invalidation_id})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in self.TRIGGERS if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**news, "invalidation_id": self._invalidate(news)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class ReleaseInvalidation(pulumi.dynamic.Resource):
    """Invalidates ``paths`` on the distribution whenever the assets origin path changes."""

    invalidation_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        distribution_id: pulumi.Input[str],
        origin_path: str,
        paths: Sequence[str] = INVALIDATED_PATHS,
        aws: AwsSettings | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            _ReleaseInvalidationProvider(),
            name,
            {
                "distribution_id": distribution_id,
                "origin_path": origin_path,
                "paths": list(paths),
                # Not a trigger: a change of credentials serves nothing differently.
                "aws": (aws or AwsSettings()).to_input(),
                "invalidation_id": None,
            },
            opts,
        )
