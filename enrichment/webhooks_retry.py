"""When a webhook attempt is retried, and after how long. Pure: the caller passes the clock and the jitter.

- 2xx: delivered.
- No answer (a connection error, a timeout), 408, 429 and 5xx: retried, with exponential backoff and
  jitter (``backoff_s``); a ``Retry-After`` on 429 or 503 is honoured, up to ``MAX_RETRY_AFTER_S``.
- Anything else (3xx: redirects are never followed; 4xx): permanent, given up at once.
- A delivery is given up when the next attempt would start past its deadline (the retry budget).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
MAX_RETRY_AFTER_S = 120.0  # a receiver asking for more is waited on this long at most

Verdict = Literal["ok", "retry", "permanent"]


def verdict(status: int | None) -> Verdict:
    """What an attempt that got ``status`` (None: no response) means."""
    if status is None or status in (408, 429) or 500 <= status <= 599:
        return "retry"
    if 200 <= status <= 299:
        return "ok"
    return "permanent"


def backoff_s(attempt: int, jitter: float) -> float:
    """The wait after failed attempt ``attempt`` (1 for the first): FIRST_DELAY_S doubled per attempt, at most
    MAX_DELAY_S, scaled by ``jitter`` in [0, 1] into its upper half (so retries of many deliveries spread,
    yet never come at once)."""
    base = min(FIRST_DELAY_S * 2 ** (attempt - 1), MAX_DELAY_S)
    return base * (0.5 + 0.5 * jitter)


def retry_after_s(value: str | None, now_epoch_s: float) -> float | None:
    """A ``Retry-After`` header's wait in seconds (delta seconds or an HTTP date), at most MAX_RETRY_AFTER_S;
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = (when - datetime.fromtimestamp(now_epoch_s, UTC)).total_seconds()
    return min(max(wait, 0.0), MAX_RETRY_AFTER_S)


def next_delay_s(attempt: int, status: int | None, retry_after: str | None, now_s: float, deadline_s: float,
                 now_epoch_s: float, jitter: float) -> float | None:  # fmt: skip
    """After failed attempt ``attempt`` that ``verdict`` says to retry: how long to wait before the next one,
    or None to give up (the next attempt would start after ``deadline_s``; ``now_s`` on the same clock)."""
    delay = backoff_s(attempt, jitter)
    if status in (429, 503):
        asked = retry_after_s(retry_after, now_epoch_s)
        if asked is not None:
            delay = max(delay, asked)
    if now_s + delay > deadline_s:
        return None
    return delay
