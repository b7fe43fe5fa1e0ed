"""One webhook delivery: POST a signed body to one of the operator's URLs until it is accepted or given up
(``enrichment.webhooks_retry`` decides). Never raises for the receiver's failure: it returns the outcome and
counts it in ``palaver_webhook_deliveries_total``; only cancellation (and a bug) propagates.

Redirects are not followed (the client is made with ``follow_redirects=False``): a 3xx is a permanent
failure, so a receiver cannot send a meeting's content to an address the operator did not list.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx

from enrichment.webhooks_message import signed_headers
from enrichment.webhooks_retry import next_delay_s, verdict
from palaver import __version__
from palaver.metrics import WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_SECONDS

log = logging.getLogger(__name__)

Outcome = Literal["ok", "failed"]
USER_AGENT = f"Palaver-Webhooks/{__version__}"


def url_for_logs(url: str) -> str:
    """``https://host[:port]/path``: no user info and no query, which may hold the receiver's credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def make_client(timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The client every delivery of a process shares: no redirects, no proxy from the environment (the
    operator's URLs are called directly), ``timeout_s`` for each phase of an attempt. ``transport``: tests."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout_s),
                             headers={"User-Agent": USER_AGENT}, transport=transport)  # fmt: skip


@dataclass
class Sender:
    """Sends deliveries with ``client``, signed with ``secret``, each attempt within ``timeout_s``. ``clock``
    (Unix seconds, signed into each attempt), ``monotonic``, ``sleep`` and ``jitter`` are for tests."""

    client: httpx.AsyncClient
    secret: str
    timeout_s: float = 10.0  # one attempt, all in all
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[], float] = field(default_factory=lambda: random.SystemRandom().random)

    async def deliver(self, url: str, delivery_id: str, body: bytes, deadline_s: float) -> Outcome:
        """POST ``body`` to ``url`` until it is accepted, refused for good, or the next attempt would start
        after ``deadline_s`` (on ``monotonic``'s clock). At least one attempt is made."""
        begun = self.monotonic()
        attempt = 0
        shown = url_for_logs(url)
        while True:
            attempt += 1
            status, retry_after, reason = await self._attempt(url, delivery_id, body)
            judged = verdict(status)
            if judged == "ok":
                return self._done("ok", begun, shown, delivery_id, attempt, reason)
            if judged == "permanent":
                return self._done("failed", begun, shown, delivery_id, attempt, f"{reason}, not retried")
            delay = next_delay_s(attempt, status, retry_after, self.monotonic(), deadline_s, self.clock(),
                                 self.jitter())  # fmt: skip
            if delay is None:
                return self._done("failed", begun, shown, delivery_id, attempt, f"{reason}, budget spent")
            WEBHOOK_DELIVERIES.labels(outcome="retried").inc()
            log.info("webhook %s to %s: %s (attempt %d); retrying in %.1f s", delivery_id, shown, reason, attempt,
                     delay)  # fmt: skip
            await self.sleep(delay)

    async def _attempt(self, url: str, delivery_id: str, body: bytes) -> tuple[int | None, str | None, str]:
        """(status or None, its Retry-After, what happened in words) of one POST, in at most ``timeout_s``
        in all. The response's body is not read: its status and headers say everything."""
        headers = signed_headers(self.secret, delivery_id, int(self.clock()), body)
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.client.stream("POST", url, content=body, headers=headers) as response:
                    return response.status_code, response.headers.get("Retry-After"), f"HTTP {response.status_code}"
        except httpx.RequestError as exc:  # connection refused or reset, DNS, TLS, a protocol error
            return None, None, type(exc).__name__
        except TimeoutError:
            return None, None, f"no answer within {self.timeout_s:g} s"

    def _done(self, outcome: Outcome, begun: float, shown: str, delivery_id: str, attempts: int,
              reason: str) -> Outcome:  # fmt: skip
        WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()
        WEBHOOK_DELIVERY_SECONDS.labels(outcome=outcome).observe(self.monotonic() - begun)
        if outcome == "ok":
            log.info("webhook %s delivered to %s (attempt %d)", delivery_id, shown, attempts)
        else:
            log.warning("webhook %s to %s given up after %d attempts: %s", delivery_id, shown, attempts, reason)
        return outcome
