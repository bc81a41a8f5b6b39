"""The Vercel adapter against the emulator over real HTTP: our types out, errors
mapped, bounded retries honouring Retry-After, and one rollback per intent."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import pytest

from rollback.adapters.vercel import AliasRequest, Deployment, Project, VercelClient, parse_retry_after
from rollback.errors import VercelError
from rollback.sandbox.vercel import VercelEmulator
from rollback.sandbox.vercel_state import DEMO, FaultRule
from tests.app.conftest import TOKEN


def rollbacks_requested(emulator: VercelEmulator) -> list[dict[str, Any]]:
    return [r for r in emulator.state.alias_history if r["type"] == "rollback"]


def posts(emulator: VercelEmulator) -> int:
    return sum(1 for r in emulator.state.requests if r["method"] == "POST")


def test_reads_return_our_types(client: VercelClient) -> None:
    project = client.get_project(DEMO.project_name)
    assert isinstance(project, Project)
    assert project.id == DEMO.project_id and project.account_id == DEMO.team_id
    assert project.production is not None and project.production.id == DEMO.current
    assert project.last_alias_request is None and not project.rollback_active
    deployment = client.get_deployment(DEMO.previous)
    assert isinstance(deployment, Deployment)
    assert deployment.is_production and deployment.is_ready and deployment.commit_sha
    by_url = client.get_deployment(f"https://{deployment.url}/some/path")
    assert by_url.id == DEMO.previous


def test_listing_follows_pagination_until_enough_are_found(client: VercelClient, emulator: VercelEmulator) -> None:
    found = client.list_deployments(DEMO.project_id, limit=3, target="production", states=("READY",),
                                    where=lambda d: d.id != DEMO.current)
    assert [d.id for d in found] == [DEMO.previous, DEMO.older, DEMO.oldest]
    emulator.state.requests.clear()
    everything = list(client.iter_deployments(DEMO.project_id, target=None, page_size=2))
    assert len(everything) == 6
    untils = [r["query"] for r in emulator.state.requests if r["path"] == "/v6/deployments"]
    assert len(untils) == 3 and "until=" not in untils[0] and all("until=" in q for q in untils[1:])


def test_error_body_is_mapped_with_the_message_kept(client: VercelClient) -> None:
    with pytest.raises(VercelError) as info:
        client.get_deployment("dpl_doesnotexist")
    assert info.value.status == 404  # type: ignore[attr-defined]
    assert info.value.code == "not_found"  # type: ignore[attr-defined]
    assert "dpl_doesnotexist" in info.value.message and "not found" in info.value.message
    assert "\n" not in info.value.one_line()


def test_wrong_token_is_401_and_never_echoed(emulator: VercelEmulator) -> None:
    with (httpx.Client(base_url=emulator.url, headers={"Authorization": "Bearer wrongButLongToken99"}) as http,
          pytest.raises(VercelError) as info):
        VercelClient(http, team=DEMO.team_id).get_project(DEMO.project_id)
    assert info.value.status == 401  # type: ignore[attr-defined]
    assert "VERCEL_TOKEN" in info.value.hint
    assert "wrongButLongToken99" not in info.value.one_line()


def test_another_team_is_403(emulator: VercelEmulator) -> None:
    with (httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
          pytest.raises(VercelError) as info):
        VercelClient(http, team="team_notmine").get_project(DEMO.project_id)
    assert info.value.status == 403  # type: ignore[attr-defined]


def test_429_retry_after_seconds_is_honoured(client: VercelClient, emulator: VercelEmulator) -> None:
    emulator.state.add_fault(FaultRule(method="GET", path="^/v9/projects", status=429, retry_after="3", times=2))
    assert client.get_project(DEMO.project_id).id == DEMO.project_id
    assert client.sleeps == [3.0, 3.0]  # type: ignore[attr-defined]


def test_429_retry_after_http_date_is_honoured(client: VercelClient, emulator: VercelEmulator) -> None:
    """The wait is counted from the client's wall clock (injected): exactly the date's distance."""
    now = 1_795_000_000.0  # a whole second, as HTTP dates are
    client.wall_clock = lambda: now
    when = email.utils.formatdate(now + 4, usegmt=True)
    emulator.state.add_fault(FaultRule(method="GET", path="^/v9/projects", status=429, retry_after=when))
    assert client.get_project(DEMO.project_id).id == DEMO.project_id
    assert client.sleeps == [4.0]  # type: ignore[attr-defined]
    past = email.utils.formatdate(now - 30, usegmt=True)
    emulator.state.add_fault(FaultRule(method="GET", path="^/v9/projects", status=429, retry_after=past))
    client.get_project(DEMO.project_id)
    assert client.sleeps == [4.0, 0.0]  # type: ignore[attr-defined]  # a date gone by: retry at once


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_with_backoff(client: VercelClient, emulator: VercelEmulator, status: int) -> None:
    emulator.state.add_fault(FaultRule(path="^/v13/", status=status, times=3))
    assert client.get_deployment(DEMO.current).id == DEMO.current
    assert client.sleeps == [0.2, 0.4, 0.8]  # type: ignore[attr-defined]


def test_retries_are_bounded(client: VercelClient, emulator: VercelEmulator) -> None:
    emulator.state.add_fault(FaultRule(path="^/v13/", status=503, times=None))
    with pytest.raises(VercelError) as info:
        client.get_deployment(DEMO.current)
    assert info.value.status == 503  # type: ignore[attr-defined]
    assert len(client.sleeps) == client.max_attempts - 1  # type: ignore[attr-defined]


def test_a_retry_after_beyond_the_deadline_gives_up_at_once(client: VercelClient, emulator: VercelEmulator) -> None:
    emulator.state.add_fault(FaultRule(path="^/v9/", status=429, retry_after="3600"))
    with pytest.raises(VercelError, match="HTTP 429"):
        client.get_project(DEMO.project_id)
    assert client.sleeps == []  # type: ignore[attr-defined]


def test_client_errors_are_not_retried(client: VercelClient, emulator: VercelEmulator) -> None:
    emulator.state.requests.clear()
    with pytest.raises(VercelError):
        client.get_deployment("dpl_missing")
    assert len(emulator.state.requests) == 1


def test_a_timeout_is_retried_then_reported(emulator: VercelEmulator) -> None:
    emulator.state.add_fault(FaultRule(path="^/v13/", latency=0.5, times=1))
    with httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=0.2) as http:
        vercel = VercelClient(http, team=DEMO.team_id, sleep=lambda s: None)
        assert vercel.get_deployment(DEMO.current).id == DEMO.current
        emulator.state.add_fault(FaultRule(path="^/v13/", latency=0.5, times=None))
        with pytest.raises(VercelError, match="timed out"):
            vercel.get_deployment(DEMO.current)


def test_rollback_is_sent_once(client: VercelClient, emulator: VercelEmulator) -> None:
    change = client.request_rollback(DEMO.project_id, DEMO.previous, description="drill")
    assert (change.sends, change.confirmed_by) == (1, "response")
    assert len(rollbacks_requested(emulator)) == 1
    assert any("description=drill" in r["query"] for r in emulator.state.requests if r["method"] == "POST")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_post_that_took_despite_an_error_is_never_sent_again(client: VercelClient, emulator: VercelEmulator,
                                                              status: int) -> None:
    before = client.get_project(DEMO.project_id).last_alias_request
    emulator.state.add_fault(FaultRule(method="POST", path="/rollback/", status=status, after=True, times=None))
    change = client.request_rollback(DEMO.project_id, DEMO.previous, before=before)
    assert (change.sends, change.confirmed_by) == (1, "lastAliasRequest")
    assert len(rollbacks_requested(emulator)) == 1
    assert posts(emulator) == 1


def test_a_post_that_timed_out_but_took_is_never_sent_again(emulator: VercelEmulator) -> None:
    slow = FaultRule(method="POST", path="/rollback/", latency=0.6, times=None)
    emulator.state.add_fault(slow)
    with httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=0.3) as http:
        vercel = VercelClient(http, team=DEMO.team_id)  # real sleeps: the POST is still in flight
        before = vercel.get_project(DEMO.project_id).last_alias_request
        change = vercel.request_rollback(DEMO.project_id, DEMO.previous, before=before)
    assert change.confirmed_by == "lastAliasRequest"
    deadline = time.monotonic() + 30  # every slow POST the server took has been answered: then count
    while sum(1 for r in emulator.state.requests if r["method"] == "POST" and "/rollback/" in r["path"]) < slow.fired:
        assert time.monotonic() < deadline, "a slow POST was never answered"
        time.sleep(0.01)
    assert len(rollbacks_requested(emulator)) == 1


def test_a_post_that_did_not_take_is_re_sent_after_checking(client: VercelClient, emulator: VercelEmulator) -> None:
    emulator.state.add_fault(FaultRule(method="POST", path="/promote/", status=429, retry_after="2", times=1))
    emulator.state.add_fault(FaultRule(method="POST", path="/promote/", status=503, times=1))
    change = client.request_promote(DEMO.project_id, DEMO.previous)
    assert (change.sends, change.confirmed_by) == (3, "response")
    promotes = [r for r in emulator.state.alias_history if r["type"] == "promote"]
    assert len(promotes) == 1
    sleeps = client.sleeps  # type: ignore[attr-defined]
    # 429: turned away, one look, then Retry-After; 503: it may have reached Vercel, so
    # lastAliasRequest is watched for the grace period before the re-send's backoff.
    assert sleeps[0] == 2.0 and sleeps[-1] == 0.4
    assert sum(sleeps[1:-1]) == pytest.approx(client.in_flight_grace)
    checks = [r for r in emulator.state.requests if r["method"] == "GET" and r["path"].startswith("/v9/projects")]
    assert len(checks) == 1 + len(sleeps[1:-1]) + 1  # every look happened before a re-send


def test_a_repeated_rollback_to_the_same_deployment_is_recognised_as_new(client: VercelClient,
                                                                        emulator: VercelEmulator) -> None:
    client.request_rollback(DEMO.project_id, DEMO.previous)
    client.request_promote(DEMO.project_id, DEMO.current)
    first = client.get_project(DEMO.project_id).last_alias_request
    emulator.state.add_fault(FaultRule(method="POST", path="/rollback/", status=503, times=1))
    time.sleep(0.002)
    change = client.request_rollback(DEMO.project_id, DEMO.previous, before=first)
    assert change.sends == 2  # the earlier rollback (to the same deployment) did not count as this one
    assert len(rollbacks_requested(emulator)) == 2


def test_failed_aliases_are_listed(client: VercelClient, emulator: VercelEmulator) -> None:
    emulator.state.configure(fail_aliases=["demo.example.com"])
    client.request_rollback(DEMO.project_id, DEMO.previous)
    request = client.get_project(DEMO.project_id).last_alias_request
    assert isinstance(request, AliasRequest) and request.job_status == "failed"
    for kind in ("rollback", "promote"):
        failed = client.list_job_aliases(DEMO.project_id, kind)
        assert [(a.alias, a.status) for a in failed] == [("demo.example.com", "failed")]


@pytest.mark.parametrize(("header", "expected"), [
    ("5", 5.0), ("0", 0.0), ("1.5", 1.5), ("garbage", None), (None, None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
])
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_future_date() -> None:
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)


# ------------------------------------------------ a POST whose outcome is unclear


def test_an_unreadable_outcome_is_reported_and_never_re_sent(client: VercelClient, emulator: VercelEmulator) -> None:
    emulator.state.add_fault(FaultRule(method="POST", path="/rollback/", status=503, times=None))
    emulator.state.add_fault(FaultRule(method="GET", path="^/v9/projects", status=503, times=None))
    with pytest.raises(VercelError) as info:
        client.request_rollback(DEMO.project_id, DEMO.previous)
    assert posts(emulator) == 1
    assert "outcome unknown: check 'rollback app status' before re-running" in info.value.hint
    assert "HTTP 503" in info.value.message


class MockVercel:
    """An in-process Vercel for the cases the emulator cannot produce: a POST that fails
    on the wire (or with a 5xx) and lands on Vercel's side a moment later."""

    def __init__(self, post_failure: Any, *, lands_after_reads: int | None, post_seconds: float = 0.0) -> None:
        self.post_failure = post_failure
        self.lands_after_reads = lands_after_reads
        self.post_seconds = post_seconds
        self.posts = 0
        self.reads = 0
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts += 1
            self.now += self.post_seconds
            if self.posts == 1:
                if isinstance(self.post_failure, int):
                    return httpx.Response(self.post_failure, json={"error": {"code": "x", "message": "boom"}})
                raise self.post_failure("boom", request=request)
            return httpx.Response(201, json={})
        self.reads += 1
        landed = self.lands_after_reads is not None and self.reads > self.lands_after_reads
        last = ({"type": "rollback", "jobStatus": "in-progress", "toDeploymentId": DEMO.previous,
                 "fromDeploymentId": DEMO.current, "requestedAt": 1000} if landed else None)
        return httpx.Response(200, json={"id": DEMO.project_id, "name": "demo", "accountId": DEMO.team_id,
                                         "lastAliasRequest": last})

    def client(self) -> VercelClient:
        http = httpx.Client(base_url="https://api.vercel.test", transport=httpx.MockTransport(self.handler))
        return VercelClient(http, team=DEMO.team_id, sleep=self.sleep, clock=lambda: self.now)


@pytest.mark.parametrize("failure", [httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout, 502, 500])
def test_a_post_that_may_have_reached_vercel_gets_the_grace_period(failure: Any) -> None:
    fake = MockVercel(failure, lands_after_reads=3)
    change = fake.client().request_rollback(DEMO.project_id, DEMO.previous)
    assert (change.sends, change.confirmed_by) == (1, "lastAliasRequest")
    assert fake.posts == 1 and fake.reads == 4


def test_only_a_failed_connect_is_re_sent_without_looking() -> None:
    fake = MockVercel(httpx.ConnectError, lands_after_reads=None)
    change = fake.client().request_rollback(DEMO.project_id, DEMO.previous)
    assert (change.sends, change.confirmed_by) == (2, "response")
    assert fake.posts == 2 and fake.reads == 0


def test_the_outcome_read_shares_the_post_deadline() -> None:
    # The POST used 9.9 of the 10 s: the read gets the 0.1 s left, not a fresh deadline of its own.
    fake = MockVercel(503, lands_after_reads=None, post_seconds=9.9)
    vercel = fake.client()
    vercel.deadline = 10.0

    def failing(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            fake.reads += 1
            return httpx.Response(503, json={"error": {"code": "x", "message": "down"}})
        return fake.handler(request)

    vercel.http = httpx.Client(base_url="https://api.vercel.test", transport=httpx.MockTransport(failing))
    with pytest.raises(VercelError, match="could not be read") as info:
        vercel.request_rollback(DEMO.project_id, DEMO.previous)
    assert "outcome unknown" in info.value.hint
    assert fake.posts == 1 and fake.reads == 1


# ------------------------------------------------------------------- paging


def test_listing_stops_after_a_bounded_number_of_pages() -> None:
    calls = []

    def endless(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        cursor = 10_000 - len(calls)
        return httpx.Response(200, json={"deployments": [], "pagination": {"next": cursor}})

    with httpx.Client(base_url="https://api.vercel.test", transport=httpx.MockTransport(endless)) as http:
        found = list(VercelClient(http).iter_deployments(DEMO.project_id, max_pages=7))
    assert found == [] and len(calls) == 7


def test_listing_respects_one_overall_deadline() -> None:
    now = [0.0]

    def slow(request: httpx.Request) -> httpx.Response:
        now[0] += 4.0
        return httpx.Response(200, json={"deployments": [], "pagination": {"next": 10_000 - int(now[0])}})

    with httpx.Client(base_url="https://api.vercel.test", transport=httpx.MockTransport(slow)) as http:
        vercel = VercelClient(http, deadline=10.0, clock=lambda: now[0], sleep=lambda s: None)
        with pytest.raises(VercelError, match="longer than 10 s"):
            list(vercel.iter_deployments(DEMO.project_id))
    assert now[0] == 12.0  # three pages of 4 s, then the deadline
