"""HTTP health and version checks of ``[env.<name>.health]``, over an injected ``httpx.Client``.

:class:`HealthChecker` returns :class:`CheckResult` values and never raises for
a failing endpoint: a refused connection, a timeout, a wrong status, or an
answer longer than ``max_body`` bytes or slower than ``health.timeout`` seconds
in all (read through :func:`rollback.adapters.http.fetch`) is a failed check
with its reason. Callers decide what a failure means (``rollback
app revert --wait`` and ``rollback verify`` raise
:class:`~rollback.errors.ChecksFailed` when some check failed).

The version endpoint may answer JSON (``{"commit": ...}``, ``sha``,
``commitSha``, ``gitSha``, ``version``...) or plain text; a version matches
the expected commit when one is a prefix of the other (at least 7 characters),
so short and full shas both work.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollback.adapters.http import DEFAULT_MAX_BODY, AnswerRefused, fetch
from rollback.errors import ConfigError
from rollback.redact import redact_text

if TYPE_CHECKING:
    import httpx

    from rollback.config import HealthSettings

__all__ = ["CheckResult", "HealthChecker", "extract_version", "make_health_client", "versions_match"]

_VERSION_KEYS = ("commit", "sha", "commitSha", "gitSha", "git_sha", "commit_sha", "version", "revision")


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, the URL, whether it passed, and why."""

    name: str
    url: str
    ok: bool
    detail: str
    status: int | None = None
    seconds: float = 0.0
    value: str | None = None  # what the version endpoint reported

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "ok": self.ok, "detail": self.detail, "status": self.status,
                "seconds": round(self.seconds, 3), "value": self.value}


def make_health_client(settings: HealthSettings) -> httpx.Client:
    """A client for ``settings.base_url`` with the configured per-request timeout.

    An ``http://`` base URL skips building a TLS context (loading the CA bundle costs tens of
    milliseconds of a check run right after a rollback); a redirect from it to ``https://``
    then fails the check instead of being fetched over unverified TLS."""
    from rollback.adapters.http import import_httpx

    import_httpx()
    import httpx
    if not settings.base_url:
        raise ConfigError("health.base_url is not set", "set [env.<name>.health] base_url in rollback.toml",
                          key="health.base_url")
    plain_http = settings.base_url.lower().startswith("http://")

    def plain_only(request: httpx.Request) -> None:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"redirected to {request.url.scheme}:// from an http:// base_url "
                                            "(set health.base_url to the https:// URL)", request=request)

    hooks = {"request": [plain_only]} if plain_http else {}
    return httpx.Client(base_url=settings.base_url, timeout=settings.timeout, follow_redirects=True,
                        verify=not plain_http, event_hooks=hooks, headers={"User-Agent": "rollback-health-check"})


def extract_version(body: str, content_type: str = "") -> str | None:
    """The version a version endpoint reports: a JSON key we know, or the text itself."""
    text = body.strip()
    if not text:
        return None
    if "json" in content_type or text.startswith(("{", "[")):
        import json

        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            for key in _VERSION_KEYS:
                value = data.get(key)
                if isinstance(value, (str, int)) and str(value):
                    return str(value)
            for nested in data.values():
                if isinstance(nested, Mapping):
                    for key in _VERSION_KEYS:
                        value = nested.get(key)
                        if isinstance(value, (str, int)) and str(value):
                            return str(value)
            return None
    return text.splitlines()[0][:200]


def versions_match(found: str | None, expected: str) -> bool:
    if not found:
        return False
    a, b = found.strip().lower(), expected.strip().lower()
    if a == b:
        return True
    shortest = min(len(a), len(b))
    return shortest >= 7 and (a.startswith(b) or b.startswith(a))


class HealthChecker:
    """Runs the configured checks against ``http`` (whose base URL is the app's)."""

    def __init__(self, http: httpx.Client, settings: HealthSettings, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.http = http
        self.settings = settings
        self.max_body = max_body

    def _get(self, path: str) -> tuple[httpx.Response | None, str, float]:
        import httpx

        started = time.monotonic()
        try:
            # health.timeout bounds the whole request, the answer's last byte included
            response = fetch(self.http, "GET", path, max_body=self.max_body, deadline=self.settings.timeout)
        except AnswerRefused as exc:
            return None, exc.reason, time.monotonic() - started
        except httpx.TimeoutException:
            return None, f"timed out after {self.settings.timeout:g} s", time.monotonic() - started
        except httpx.HTTPError as exc:
            return None, redact_text(f"{type(exc).__name__}: {exc}")[:200], time.monotonic() - started
        return response, "", time.monotonic() - started

    def _url(self, path: str) -> str:
        return redact_text(f"{self.settings.base_url or ''}{path}")

    def check_path(self, path: str) -> CheckResult:
        """GET ``path``; passes when the status is ``expect_status``."""
        response, problem, seconds = self._get(path)
        if response is None:
            return CheckResult(f"GET {path}", self._url(path), False, problem, None, seconds)
        ok = response.status_code == self.settings.expect_status
        detail = f"HTTP {response.status_code}" + ("" if ok else f", expected {self.settings.expect_status}")
        return CheckResult(f"GET {path}", self._url(path), ok, detail, response.status_code, seconds)

    def check_version(self, expected: str | None = None) -> CheckResult | None:
        """GET ``version_path`` (None when not configured); with ``expected``, it must match."""
        path = self.settings.version_path
        if not path:
            return None
        response, problem, seconds = self._get(path)
        name = f"version {path}"
        if response is None:
            return CheckResult(name, self._url(path), False, problem, None, seconds)
        if response.status_code != 200:
            return CheckResult(name, self._url(path), False, f"HTTP {response.status_code}", response.status_code,
                               seconds)
        found = extract_version(response.text, response.headers.get("Content-Type", ""))
        if expected is None:
            return CheckResult(name, self._url(path), found is not None, f"reports {found}" if found
                               else "no version in the answer", 200, seconds, found)
        ok = versions_match(found, expected)
        detail = f"reports {found}" + ("" if ok else f", expected {expected}")
        return CheckResult(name, self._url(path), ok, detail, 200, seconds, found)

    def run(self, expected_version: str | None = None) -> list[CheckResult]:
        """Every configured path, then the version check."""
        results = [self.check_path(path) for path in self.settings.paths]
        version = self.check_version(expected_version)
        if version is not None:
            results.append(version)
        return results
