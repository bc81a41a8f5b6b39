"""Lambda@Edge viewer-response handler: adds the security headers.

Deployed as-is (python3.12 runtime, handler ``handler.handler``). Lambda@Edge
functions take no environment variables, so the header values live in this
file: changing them is a code change, published as a new numbered version and
pinned with ``edgeFunctionVersion``.

Headers already on the response are kept as they are: the origin knows better
for its own pages (a route-specific CSP, for instance), and the function must
never drop or rewrite what it does not own.
"""

from __future__ import annotations

from typing import Any

SECURITY_HEADERS: dict[str, str] = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains; preload",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https:; script-src 'self'; "
        "style-src 'self' 'unsafe-inline'; font-src 'self' data:; connect-src 'self' https:; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def add_security_headers(response: dict[str, Any]) -> dict[str, Any]:
    """Add each missing security header to a CloudFront response, in place."""
    headers: dict[str, list[dict[str, str]]] = response.setdefault("headers", {})
    for name, value in SECURITY_HEADERS.items():
        # CloudFront keys headers by their lowercase name; each entry keeps the original case.
        if not headers.get(name.lower()):
            headers[name.lower()] = [{"key": name, "value": value}]
    return response


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point for the viewer-response event."""
    response: dict[str, Any] = event["Records"][0]["cf"]["response"]
    return add_security_headers(response)
