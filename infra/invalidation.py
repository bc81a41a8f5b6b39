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
with the program's virtualenv (boto3 is pinned in ``infra/requirements.txt``)
and the stack's AWS credentials; Pulumi pickles the provider class *by value*,
so everything it needs is imported inside its methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

INVALIDATED_PATHS = ("/*",)


class _ReleaseInvalidationProvider(ResourceProvider):
    """create/update: invalidate ``paths`` on ``distribution_id``; delete: nothing to delete."""

    # Inputs whose change means "another release is served": invalidate again.
    TRIGGERS = ("distribution_id", "origin_path", "paths")

    def _invalidate(self, props: dict[str, Any]) -> str:
        import uuid

        import boto3

        paths = list(props["paths"])
        client = boto3.client("cloudfront", region_name="us-east-1")
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
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            _ReleaseInvalidationProvider(),
            name,
            {
                "distribution_id": distribution_id,
                "origin_path": origin_path,
                "paths": list(paths),
                "invalidation_id": None,
            },
            opts,
        )
