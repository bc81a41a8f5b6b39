"""Shared AWS plumbing: sessions, clients and the one place botocore errors become ours.

boto3 honours ``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_<SERVICE>``)
by itself, which is how the sandbox points us at the moto server. Retries use
botocore's ``standard`` mode (bounded, with backoff); adapters add their own
waiters on top.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rollback.errors import AwsError, BadInput
from rollback.redact import redact_text

if TYPE_CHECKING:
    import boto3

__all__ = ["AwsClients", "aws_errors", "make_session"]


def make_session(region: str) -> boto3.Session:
    """A boto3 session; ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``) checked first,
    so that a bad value is one line naming the variable (exit 2), not botocore's traceback."""
    import os

    import boto3

    from rollback.config import check_url_variable

    for name, value in os.environ.items():
        if (name == "AWS_ENDPOINT_URL" or name.startswith("AWS_ENDPOINT_URL_")) and value:
            check_url_variable(name, value)
    return boto3.Session(region_name=region)


class AwsClients:
    """Builds boto3 clients from one session, with bounded standard retries."""

    def __init__(self, session: boto3.Session, *, max_attempts: int = 5) -> None:
        self.session = session
        self.max_attempts = max_attempts
        self._cache: dict[tuple[str, str | None], Any] = {}

    def client(self, service: str, region: str | None = None) -> Any:
        key = (service, region)
        if key not in self._cache:
            from botocore.config import Config as BotoConfig

            self._cache[key] = self.session.client(
                service,  # type: ignore[call-overload]
                region_name=region or self.session.region_name,
                config=BotoConfig(retries={"max_attempts": self.max_attempts, "mode": "standard"},
                                  connect_timeout=5, read_timeout=30),
            )
        return self._cache[key]


@contextlib.contextmanager
def aws_errors(action: str, hint: str | None = None) -> Iterator[None]:
    """Map botocore errors raised inside the block to :class:`AwsError` (or ``BadInput``)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = redact_text(str(error.get("Message", exc)))
        raise AwsError(f"{action} failed: {code}: {message}", hint, code=code) from exc
    except NoCredentialsError as exc:
        raise AwsError(f"{action} failed: no AWS credentials found",
                       "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", code="NoCredentials") from exc
    except ParamValidationError as exc:
        raise BadInput(f"{action}: invalid parameters: {' '.join(str(exc).split())}") from exc
    except BotoCoreError as exc:
        raise AwsError(f"{action} failed: {redact_text(' '.join(str(exc).split()))}", hint,
                       code=type(exc).__name__) from exc
