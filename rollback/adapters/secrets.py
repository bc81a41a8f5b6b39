"""AWS Secrets Manager: the credentials in a database secret (RDS's managed master secret).

RDS keeps a managed master password as a JSON secret ``{"username": ..., "password": ...}``
named ``rds!db-<uuid>`` (Amazon RDS User Guide, "Password management with Amazon RDS and AWS
Secrets Manager"). The password is registered as a secret the moment it is read, so that no
message, journal or report can show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rollback.adapters.aws import aws_errors
from rollback.errors import AwsError
from rollback.redact import register_secret

__all__ = ["DatabaseCredentials", "SecretsAdapter"]


@dataclass(frozen=True)
class DatabaseCredentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never the password, even in a traceback
        return f"DatabaseCredentials(username={self.username!r}, password=...)"


class SecretsAdapter:
    """Secrets Manager through one boto3 client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def database_credentials(self, secret_id: str) -> DatabaseCredentials:
        """The user name and password a database secret holds."""
        with aws_errors(f"reading the secret {secret_id}"):
            answer = self.client.get_secret_value(SecretId=secret_id)
        try:
            document = json.loads(str(answer.get("SecretString") or ""))
            username, password = str(document["username"]), str(document["password"])
        except (ValueError, KeyError, TypeError):
            raise AwsError(f"the secret {secret_id} holds no database credentials (username and password)",
                           "check it in the Secrets Manager console") from None
        register_secret(password)
        return DatabaseCredentials(username, password)
