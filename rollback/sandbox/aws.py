"""The moto server: real HTTP, real boto3 calls, on loopback.

``start_moto()`` serves moto in a thread and returns its URL; point boto3 at it
with ``AWS_ENDPOINT_URL`` (see :func:`moto_environment`). Before serving, it
adds the CloudFront semantics moto lacks (ETags that change, ``IfMatch``,
Lambda@Edge associations, deploy and invalidation status; see
:mod:`rollback.sandbox.cloudfront`), CloudWatch's percentiles and composite
alarms (:mod:`rollback.sandbox.cloudwatch`), and RDS's restores as RDS does them
(no managed master password or monitoring carried over, ``creating`` before
``available``, a lagging latest restorable time; :mod:`rollback.sandbox.rds`).

Standalone, for the sandbox drill::

    python -m rollback.sandbox.aws --port 5000 --seed --workdir /tmp/drill
    # then, in another shell:
    eval "$(python -m rollback.sandbox.aws --print-env --port 5000)"
    cd /tmp/drill && rollback infra drift --checkpoint stack-export.json

``--seed`` (:func:`rollback.sandbox.seed_aws.seed_edge`, beside the sandbox's own AWS seed) creates
what the break-glass commands act on: a Lambda@Edge function with published versions, a versioned
assets bucket with a bad deploy in it, a distribution whose default behaviour uses the newest version,
and an alarm; ``--workdir`` writes a matching rollback.toml, Pulumi project and stack config, and a
``pulumi stack export``-shaped checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.sandbox.serving import quiet_disconnects

__all__ = ["MotoServer", "main", "moto_environment", "start_moto"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    url: str
    stop: Callable[[], None]


def start_moto(port: int | None = None, *, deploy_after_reads: int = 2,
               deploy_after_seconds: float | None = None) -> MotoServer:
    """Start moto's threaded server on 127.0.0.1 and return its URL and a stop function.

    A distribution reports ``InProgress`` after an update until it has been read
    ``deploy_after_reads`` times (or for ``deploy_after_seconds``), then ``Deployed``.
    """
    from moto.server import ThreadedMotoServer

    from rollback.sandbox import cloudwatch, rds
    from rollback.sandbox.cloudfront import install

    memoize_region_lists()
    install(deploy_after_reads=deploy_after_reads, deploy_after_seconds=deploy_after_seconds)
    cloudwatch.install()
    rds.install()
    # One access-log line per request on stderr drowns test output and the drill's progress.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    chosen = port or _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=chosen, verbose=False)
    server.start()
    quiet_disconnects(server._server)
    return MotoServer(url=f"http://127.0.0.1:{chosen}", stop=server.stop)


_REGIONS_LOCK = threading.Lock()


def memoize_region_lists() -> None:
    """Make botocore parse each service model once per process, not once per session.

    moto asks a *new* ``boto3.Session()`` for a service's regions whenever it creates a
    backend (and EC2's module does so three times at import); each new session parses the
    service's whole model again to find its endpoint prefix (EC2's is 4 MB of JSON), which
    made the first RDS request of a moto server take 5-10 s on a loaded 2-core machine.
    ``Session.get_service_data`` is therefore remembered process-wide (the data is read-only
    for its callers, and the ``service-data-loaded`` handlers ran on the first load).
    """
    import botocore.session

    session_class: Any = botocore.session.Session
    if getattr(session_class, "_rollback_service_data_shared", False):
        return
    with _REGIONS_LOCK:
        if getattr(session_class, "_rollback_service_data_shared", False):
            return
        original = session_class.get_service_data
        loaded: dict[tuple[str, str | None], Any] = {}

        def get_service_data(self: Any, service_name: str, api_version: str | None = None) -> Any:
            key = (service_name, api_version)
            if key not in loaded:
                loaded[key] = original(self, service_name, api_version)
            return loaded[key]

        session_class.get_service_data = get_service_data
        session_class._rollback_service_data_shared = True

        # Listing EC2's regions (moto's RDS backend imports EC2's) needs only its endpoint prefix,
        # which is its name: no need to parse its 4 MB model at all.
        list_regions = session_class.get_available_regions
        known_prefixes = {"ec2": "ec2"}

        def get_available_regions(self: Any, service_name: str, partition_name: str = "aws",
                                  allow_non_regional: bool = False) -> Any:
            prefix = known_prefixes.get(service_name)
            if prefix is None:
                return list_regions(self, service_name, partition_name, allow_non_regional)
            resolver = self._get_internal_component("endpoint_resolver")
            return resolver.get_available_endpoints(prefix, partition_name, allow_non_regional)

        session_class.get_available_regions = get_available_regions

        # Each new session's endpoint resolver parses endpoints.json (1.2 MB) again, too.
        import botocore.loaders

        loader_class: Any = botocore.loaders.Loader
        load_data_with_path = loader_class.load_data_with_path
        shared: dict[str, Any] = {}

        def load_data_with_path_shared(self: Any, name: str) -> Any:
            if name not in ("endpoints", "partitions"):
                return load_data_with_path(self, name)
            if name not in shared:
                shared[name] = load_data_with_path(self, name)
            return shared[name]

        loader_class.load_data_with_path = load_data_with_path_shared


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


def main(argv: Sequence[str] | None = None) -> int:
    """Serve moto (with our CloudFront semantics) until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m rollback.sandbox.aws", description=main.__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--deploy-seconds", type=float, default=5.0,
                        help="seconds an updated distribution stays InProgress (default 5)")
    parser.add_argument("--print-env", action="store_true",
                        help="print the shell exports for a server on --port and exit")
    parser.add_argument("--seed", action="store_true",
                        help="create the edge stack (function versions, distribution, bucket, alarm)")
    parser.add_argument("--workdir", type=Path,
                        help="with --seed: write rollback.toml, the Pulumi project and a checkpoint here")
    args = parser.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}"
    if args.print_env:
        for key, value in moto_environment(url).items():
            print(f"export {key}={value}")
        return 0
    server = start_moto(args.port, deploy_after_seconds=args.deploy_seconds)
    print(f"moto (with CloudFront semantics) serving on {server.url}; Ctrl-C to stop", file=sys.stderr)
    if args.seed:
        import os

        os.environ.update(moto_environment(server.url))
        from rollback.sandbox.seed_aws import seed_edge, write_workdir

        seeded = seed_edge()
        print(json.dumps(seeded.to_dict(), indent=2), flush=True)
        if args.workdir:
            files = write_workdir(args.workdir, seeded)
            print(f"drill directory: {args.workdir} ({', '.join(p.name for p in files.values())})", file=sys.stderr)
    import signal
    import threading

    stopping = threading.Event()
    # SIGTERM (kill, CI teardown) stops as cleanly as Ctrl-C; background jobs of a shell ignore SIGINT.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
