"""The Lambda@Edge handler in infra/edge/, run on a sample CloudFront viewer-response event."""

from __future__ import annotations

import copy
from typing import Any

from infra.edge.handler import SECURITY_HEADERS, handler


def viewer_response_event(headers: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """A viewer-response event as CloudFront sends it (trimmed to the fields the handler may read)."""
    return {
        "Records": [
            {
                "cf": {
                    "config": {
                        "distributionDomainName": "d111111abcdef8.cloudfront.net",
                        "distributionId": "EDFDVBD6EXAMPLE",
                        "eventType": "viewer-response",
                        "requestId": "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ==",
                    },
                    "request": {
                        "clientIp": "203.0.113.178",
                        "headers": {"host": [{"key": "Host", "value": "d111111abcdef8.cloudfront.net"}]},
                        "method": "GET",
                        "querystring": "",
                        "uri": "/index.html",
                    },
                    "response": {
                        "headers": headers,
                        "status": "200",
                        "statusDescription": "OK",
                    },
                }
            }
        ]
    }


ORIGIN_HEADERS = {
    "content-type": [{"key": "Content-Type", "value": "text/html; charset=utf-8"}],
    "cache-control": [{"key": "Cache-Control", "value": "public, max-age=300"}],
    "etag": [{"key": "ETag", "value": '"abc123"'}],
    "set-cookie": [
        {"key": "Set-Cookie", "value": "a=1; Secure"},
        {"key": "Set-Cookie", "value": "b=2; Secure"},
    ],
}


def test_adds_every_security_header() -> None:
    response = handler(viewer_response_event(copy.deepcopy(ORIGIN_HEADERS)), None)
    headers = response["headers"]
    assert headers["strict-transport-security"] == [
        {"key": "Strict-Transport-Security", "value": "max-age=63072000; includeSubDomains; preload"}
    ]
    assert headers["content-security-policy"][0]["key"] == "Content-Security-Policy"
    assert "default-src 'self'" in headers["content-security-policy"][0]["value"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"][0]["value"]
    assert headers["x-content-type-options"] == [{"key": "X-Content-Type-Options", "value": "nosniff"}]
    assert headers["x-frame-options"] == [{"key": "X-Frame-Options", "value": "DENY"}]
    assert headers["referrer-policy"] == [{"key": "Referrer-Policy", "value": "strict-origin-when-cross-origin"}]
    assert set(SECURITY_HEADERS) == {
        "Strict-Transport-Security",
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Referrer-Policy",
    }


def test_keeps_existing_headers() -> None:
    response = handler(viewer_response_event(copy.deepcopy(ORIGIN_HEADERS)), None)
    for name, values in ORIGIN_HEADERS.items():
        assert response["headers"][name] == values, name
    assert len(response["headers"]) == len(ORIGIN_HEADERS) + len(SECURITY_HEADERS)
    assert (response["status"], response["statusDescription"]) == ("200", "OK")


def test_does_not_overwrite_a_header_the_origin_set() -> None:
    own_csp = [{"key": "Content-Security-Policy", "value": "default-src 'none'"}]
    response = handler(viewer_response_event({"content-security-policy": own_csp}), None)
    assert response["headers"]["content-security-policy"] == own_csp
    assert "x-frame-options" in response["headers"]


def test_response_without_headers() -> None:
    event = viewer_response_event({})
    del event["Records"][0]["cf"]["response"]["headers"]
    response = handler(event, None)
    assert {h.lower() for h in SECURITY_HEADERS} == set(response["headers"])


def test_handler_source_is_standalone() -> None:
    # Only handler.py is packaged: it must not import from the repository.
    from pathlib import Path

    import infra.edge.handler as module

    source = Path(module.__file__).read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["from __future__ import annotations", "from typing import Any"]
