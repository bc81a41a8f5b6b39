"""The moto server: real HTTP, real boto3 calls, on loopback.

``start_moto()`` serves moto in a thread and returns its URL; point boto3 at it
with ``AWS_ENDPOINT_URL`` (see :func:`moto_environment`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MotoServer", "moto_environment", "start_moto"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    url: str
    stop: Callable[[], None]


def start_moto(port: int | None = None) -> MotoServer:
    """Start moto's threaded server on 127.0.0.1 and return its URL and a stop function."""
    from moto.server import ThreadedMotoServer

    chosen = port or _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=chosen, verbose=False)
    server.start()
    return MotoServer(url=f"http://127.0.0.1:{chosen}", stop=server.stop)


def moto_environment(url: str, region: str = "us-east-1") -> dict[str, str]:
    """Environment variables that point boto3 (and our CLI) at the moto server."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
