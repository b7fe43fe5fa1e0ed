"""Calling a remote model over HTTP: what counts as a failure, which failures are retried and how long to
wait, and reading a server-sent event stream. The backends (openai_backend.py, watsonx_backend.py) build
the requests; this module runs them with bounded retries and counts what goes wrong.

Retried: 429 (after its Retry-After, bounded), 5xx, timeouts and connection errors, with exponential
backoff; invalid output (not JSON, not the schema) once. Not retried: other 4xx (a bad key or model name
does not get better), and a stream that failed after some of its text was handed on (the caller falls back
instead). Log lines name the backend, the reason and the HTTP status, never a key or a token."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx

from palaver.metrics import ENRICHMENT_BACKEND_ERRORS, ENRICHMENT_REQUEST_SECONDS

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_REASONS = frozenset({"rate_limited", "server_error", "timeout", "connection", "invalid_output"})


class RemoteCallError(Exception):
    """One failed request. ``reason`` is one of rate_limited, server_error, timeout, connection,
    client_error, invalid_output; ``retry_after_s`` the server's Retry-After, when it gave one;
    ``retryable`` False where another attempt must not be made (text already handed on)."""

    def __init__(self, reason: str, message: str, *, retry_after_s: float | None = None,
                 retryable: bool | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.retryable = reason in RETRYABLE_REASONS if retryable is None else retryable


@dataclass(frozen=True)
class RetryPolicy:
    """``retries``: further attempts after a retryable failure; ``backoff_s``: the first wait, doubled each
    time; ``max_wait_s``: the longest wait, Retry-After included; ``invalid_output_retries``: further
    attempts after output that is not the JSON asked for."""

    retries: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 30.0
    invalid_output_retries: int = 1

    def wait_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt 1 is the first): the server's Retry-After
        when it gave one, else the backoff; never more than ``max_wait_s``."""
        wanted = retry_after_s if retry_after_s is not None else self.backoff_s * 2 ** (attempt - 1)
        return max(0.0, min(wanted, self.max_wait_s))

    def allows_another(self, error: RemoteCallError, failures: int, invalid_failures: int) -> bool:
        if error.reason == "invalid_output":
            return error.retryable and invalid_failures <= self.invalid_output_retries
        return error.retryable and failures <= self.retries


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def check_status(response: httpx.Response, secrets: tuple[str, ...] = ()) -> None:
    """Raises RemoteCallError for a response that is not 2xx (its body must have been read). The start of
    the body goes into the message, with any of ``secrets`` it echoes replaced by ``[secret]``."""
    status = response.status_code
    if status < 400:
        return
    detail = _short(redact(response.text, secrets))
    if status == 429:
        raise RemoteCallError("rate_limited", f"HTTP 429: {detail}",
                              retry_after_s=retry_after_s(response.headers.get("retry-after")))  # fmt: skip
    if status >= 500:
        raise RemoteCallError("server_error", f"HTTP {status}: {detail}")
    raise RemoteCallError("client_error", f"HTTP {status}: {detail}")


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    return text


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def call_with_retries(backend: str, kind: str, request: Callable[[], T], policy: RetryPolicy,
                      sleep: Callable[[float], None] = time.sleep) -> T:  # fmt: skip
    """``request()`` until it returns, retried as ``policy`` allows. httpx's timeouts and transport errors
    become RemoteCallError; every failed attempt is logged and counted
    (palaver_enrichment_backend_errors_total), every attempt timed (palaver_enrichment_request_seconds).
    Raises the last RemoteCallError."""
    failures = invalid_failures = 0
    while True:
        started = time.perf_counter()
        try:
            try:
                return request()
            finally:
                ENRICHMENT_REQUEST_SECONDS.labels(backend, kind).observe(time.perf_counter() - started)
        except httpx.TimeoutException as exc:
            error = RemoteCallError("timeout", f"timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            error = RemoteCallError("connection", f"{type(exc).__name__}: {_short(str(exc))}")
        except RemoteCallError as exc:
            error = exc
        ENRICHMENT_BACKEND_ERRORS.labels(backend, error.reason).inc()
        if error.reason == "invalid_output":
            invalid_failures += 1
        else:
            failures += 1
        if not policy.allows_another(error, failures, invalid_failures):
            log.warning("enrichment backend %s: %s request failed (%s): %s; giving up", backend, kind,
                        error.reason, error)  # fmt: skip
            raise error
        wait = policy.wait_s(failures + invalid_failures, error.retry_after_s)
        log.warning("enrichment backend %s: %s request failed (%s): %s; retrying in %.1f s", backend, kind,
                    error.reason, error, wait)  # fmt: skip
        sleep(wait)


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str


def server_sent_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """The events of a text/event-stream, line by line: ``data:`` lines joined with newlines, ``event:``
    kept (default "message"), ``id:``, ``retry:`` and ``:`` comments ignored; a blank line ends an event."""
    event, data = "message", []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield ServerSentEvent(event, "\n".join(data))
