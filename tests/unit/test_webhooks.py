"""The webhook sender's rules: the signature, what is sent, which URLs may be configured, when an attempt is
retried, and one delivery's attempts against httpx's mock transport (no network, no sleeping)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

import palaver.events
from enrichment.webhooks_delivery import Sender, make_client, url_for_logs
from enrichment.webhooks_message import payload_body, signature, signed_headers, verify, webhook_payload
from enrichment.webhooks_retry import (
    MAX_DELAY_S,
    MAX_RETRY_AFTER_S,
    backoff_s,
    next_delay_s,
    retry_after_s,
    verdict,
)
from palaver.events import decode
from palaver.settings import Settings

SECRET = "whsec-0123456789abcdef"
EXAMPLE = Path(palaver.events.__file__).parent / "examples/insights/meeting.insights-v1/standup-ended.json"


# --- signature ----------------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # printf '1733300000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec-0123456789abcdef'
    expected = "ea7999a2990d58f9e45982363126e503bdc14fd72456dbf0c745e7a22df8bc9c"
    assert signature(SECRET, 1733300000, b'{"a":1}') == f"sha256={expected}"


def test_signed_headers_carry_delivery_timestamp_signature_and_json() -> None:
    headers = signed_headers(SECRET, "enr_1", 1733300000, b'{"a":1}')
    assert headers == {
        "Content-Type": "application/json",
        "X-Palaver-Signature": signature(SECRET, 1733300000, b'{"a":1}'),
        "X-Palaver-Timestamp": "1733300000",
        "X-Palaver-Delivery": "enr_1",
    }


def test_verify_accepts_only_the_signed_body_in_time_with_the_secret() -> None:
    body = b'{"event":"meeting.enriched"}'
    headers = signed_headers(SECRET, "enr_1", 1000, body)
    stamp, signed = headers["X-Palaver-Timestamp"], headers["X-Palaver-Signature"]
    assert verify(SECRET, stamp, signed, body, now_s=1010)
    assert not verify(SECRET, stamp, signed, body + b" ", now_s=1010)  # tampered body
    assert not verify("another-secret-of-16", stamp, signed, body, now_s=1010)
    assert not verify(SECRET, stamp, signed, body, now_s=1000 + 301)  # replayed too late
    assert not verify(SECRET, "1001", signed, body, now_s=1010)
    assert not verify(SECRET, stamp, None, body, now_s=1010)
    assert not verify(SECRET, "soon", signed, body, now_s=1010)


# --- payload -------------------------------------------------------------------------------------------------


def test_payload_of_a_final_result_and_nothing_of_a_rolling_one() -> None:
    event: Any = decode(EXAMPLE.read_bytes())
    payload = webhook_payload(event)
    assert payload is not None
    assert list(payload) == ["event", "meeting_id", "enrichment_id", "run", "trigger", "revision", "summary",
                             "action_items", "keywords", "produced_at_ms"]  # fmt: skip
    assert payload["action_items"][0]["due_date"] == "2024-06-07"
    assert "mood" not in payload and "metrics" not in payload
    assert orjson.loads(payload_body(payload)) == payload
    assert payload_body(payload) == payload_body(webhook_payload(event))  # type: ignore[arg-type]
    assert webhook_payload(event.model_copy(update={"final": False, "trigger": "rolling"})) is None


# --- the operator's URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("urls", [
    "https://hooks.example.com/palaver", "http://127.0.0.1:8080/hook", "http://localhost/h", "http://[::1]:9/h",
    "https://hooks.example.com/a?token=x, https://other.example.org/b",
])  # fmt: skip
def test_allowed_webhook_urls(urls: str) -> None:
    settings = Settings(webhook_urls=urls, webhook_secret=SECRET)  # type: ignore[arg-type]
    assert settings.webhook_urls == tuple(u.strip() for u in urls.split(","))


@pytest.mark.parametrize(("urls", "why"), [
    ("http://hooks.example.com/h", "https:// is required unless the host is loopback"),
    ("http://localhost.example.com/h", "https:// is required unless the host is loopback"),
    ("http://10.0.0.5/h", "https:// is required unless the host is loopback"),
    ("ftp://hooks.example.com/h", "an absolute https:// URL"),
    ("hooks.example.com/h", "an absolute https:// URL"),
    ("https:///path", "an absolute https:// URL"),
])  # fmt: skip
def test_refused_webhook_urls(urls: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        Settings(webhook_urls=urls, webhook_secret=SECRET)  # type: ignore[arg-type]


def test_webhook_urls_need_a_secret_and_are_sent_to_once() -> None:
    with pytest.raises(ValidationError, match="needs PALAVER_WEBHOOK_SECRET"):
        Settings(webhook_urls="https://hooks.example.com/h")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(webhook_urls="https://hooks.example.com/h", webhook_secret="short")  # type: ignore[arg-type]
    twice = Settings(webhook_urls="https://a.example/h,https://a.example/h", webhook_secret=SECRET)  # type: ignore[arg-type]
    assert twice.webhook_urls == ("https://a.example/h",)
    assert Settings().webhook_urls == ()  # no URL: no webhooks, no secret needed


def test_urls_in_logs_lose_credentials_and_query() -> None:
    assert url_for_logs("https://user:pw@hooks.example.com:8443/h/x?token=s3cret") == "https://hooks.example.com:8443/h/x"
    assert url_for_logs("http://[::1]:9/h") == "http://[::1]:9/h"


# --- retry decisions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    (200, "ok"), (202, "ok"), (204, "ok"), (None, "retry"), (408, "retry"), (429, "retry"), (500, "retry"),
    (502, "retry"), (503, "retry"), (504, "retry"), (301, "permanent"), (302, "permanent"), (400, "permanent"),
    (401, "permanent"), (403, "permanent"), (404, "permanent"), (410, "permanent"), (422, "permanent"),
])  # fmt: skip
def test_verdict(status: int | None, expected: str) -> None:
    assert verdict(status) == expected


def test_backoff_doubles_with_jitter_in_its_upper_half_and_is_capped() -> None:
    assert [backoff_s(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert [backoff_s(n, 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff_s(30, 1.0) == MAX_DELAY_S


def test_retry_after_seconds_or_date_bounded() -> None:
    now = 1_733_300_000.0  # Wed, 04 Dec 2024 08:13:20 GMT
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s("Wed, 04 Dec 2024 08:13:50 GMT", now) == 30.0
    assert retry_after_s("Wed, 04 Dec 2024 08:00:00 GMT", now) == 0.0  # in the past: now
    assert retry_after_s("86400", now) == MAX_RETRY_AFTER_S
    assert retry_after_s(None, now) is None
    assert retry_after_s("soon", now) is None
    assert retry_after_s("-5", now) is None


def test_next_delay_honours_retry_after_and_the_deadline() -> None:
    now = 1_733_300_000.0
    assert next_delay_s(1, 503, None, 100.0, 200.0, now, 1.0) == 1.0
    assert next_delay_s(1, 429, "20", 100.0, 200.0, now, 1.0) == 20.0
    assert next_delay_s(1, 500, "20", 100.0, 200.0, now, 1.0) == 1.0  # Retry-After only means 429 and 503
    assert next_delay_s(6, None, None, 100.0, 200.0, now, 1.0) == 32.0
    assert next_delay_s(1, 429, "20", 100.0, 110.0, now, 1.0) is None  # the budget ends first: give up
    assert next_delay_s(1, None, None, 100.0, 100.5, now, 1.0) is None


# --- one delivery ----------------------------------------------------------------------------------------------


class Script:
    """A receiver answering with the given statuses in turn (the last one for ever), noting each request."""

    def __init__(self, *answers: int | tuple[int, dict[str, str]] | type[Exception]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, type):
            raise answer("no route", request=request)  # type: ignore[call-arg]
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers={**headers, "Location": "https://elsewhere.example/"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _deliver(script: Script, budget_s: float = 60.0) -> tuple[str, Clock]:
    clock = Clock()

    async def go() -> str:
        async with make_client(10.0, httpx.MockTransport(script)) as client:
            sender = Sender(client, SECRET, clock=lambda: 1_733_300_000.0, monotonic=lambda: clock.now,
                            sleep=clock.sleep, jitter=lambda: 1.0)  # fmt: skip
            return await sender.deliver("https://hooks.example.com/h", "enr_1", b'{"a":1}', clock.now + budget_s)

    return asyncio.run(go()), clock


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("palaver_webhook_deliveries_total", {"outcome": outcome}) or 0.0


def test_delivery_retries_5xx_and_connection_errors_until_accepted() -> None:
    before = {o: _count(o) for o in ("ok", "retried", "failed")}
    script = Script(503, httpx.ConnectError, 502, 200)
    outcome, clock = _deliver(script)
    assert outcome == "ok"
    assert clock.slept == [1.0, 2.0, 4.0]
    assert len(script.requests) == 4
    for request in script.requests:
        assert request.method == "POST" and request.content == b'{"a":1}'
        assert verify(SECRET, request.headers["x-palaver-timestamp"], request.headers["x-palaver-signature"],
                      request.content, now_s=1_733_300_000.0)  # fmt: skip
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-palaver-delivery"] == "enr_1"
    assert {o: _count(o) - before[o] for o in before} == {"ok": 1, "retried": 3, "failed": 0}


def test_delivery_retries_a_timeout_and_a_receiver_that_does_not_answer_in_time() -> None:
    answered: list[str] = []

    async def slow_then_fine(request: httpx.Request) -> httpx.Response:
        answered.append("asked")
        if len(answered) == 2:
            await asyncio.sleep(30)  # past the sender's 0.05 s for one attempt: cut short
        return httpx.Response(200)

    clock = Clock()

    async def go() -> str:
        async with make_client(10.0, httpx.MockTransport(slow_then_fine)) as client:
            sender = Sender(client, SECRET, timeout_s=0.05, clock=lambda: 1_733_300_000.0,
                            monotonic=lambda: clock.now, sleep=clock.sleep, jitter=lambda: 1.0)  # fmt: skip
            first = await sender.deliver("https://hooks.example.com/h", "enr_1", b"{}", clock.now + 60)
            return first + " " + await sender.deliver("https://hooks.example.com/h", "enr_2", b"{}", clock.now + 60)

    assert asyncio.run(go()) == "ok ok"
    assert (len(answered), clock.slept) == (3, [1.0])
    outcome, clock = _deliver(Script(httpx.ReadTimeout, 200))
    assert (outcome, clock.slept) == ("ok", [1.0])


def test_delivery_waits_as_429_asks() -> None:
    outcome, clock = _deliver(Script((429, {"Retry-After": "12"}), 204))
    assert (outcome, clock.slept) == ("ok", [12.0])


@pytest.mark.parametrize("status", [400, 404, 410, 302])
def test_delivery_gives_up_at_once_on_a_permanent_answer(status: int) -> None:
    before = _count("failed")
    script = Script(status, 200)
    outcome, clock = _deliver(script)
    assert (outcome, clock.slept, len(script.requests)) == ("failed", [], 1)  # a redirect is not followed
    assert _count("failed") - before == 1


def test_delivery_gives_up_when_the_budget_is_spent() -> None:
    script = Script(500)
    outcome, clock = _deliver(script, budget_s=20.0)
    assert outcome == "failed"
    assert clock.slept == [1.0, 2.0, 4.0, 8.0]  # the next wait, 16 s, would end past the 20 s budget
    assert len(script.requests) == 5
