"""A sliding-window rate limiter per key (a client address, an account): pure, in memory, clock injected.

At most ``limit`` events per key within any ``window_s``: each allowed event is remembered for the window,
and an event over the limit is refused with the seconds until the oldest remembered one leaves the window
(a ``Retry-After``). Refused events are not remembered, so a client that keeps trying does not push its
own window forward. The memory is bounded: a key's events go once they leave the window, and beyond
``max_keys`` keys the least recently used key is forgotten (an attacker spreading over many addresses
costs memory, not correctness of the others' limits, until then).

One limiter per process: several API processes each allow ``limit`` (a deployment behind N processes
allows up to N x ``limit`` per key).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindowLimiter:
    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000):  # fmt: skip
        if limit < 1 or window_s <= 0:
            raise ValueError("limit >= 1 and window_s > 0")
        self.limit, self.window_s = limit, window_s
        self._clock = clock
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def acquire(self, key: str) -> int | None:
        """Count one event of ``key`` and return None when within the limit; otherwise count nothing and
        return the whole seconds (at least 1) until one more would be allowed."""
        wait = self.wait_s(key)
        if wait is None:
            self.note(key)
        return wait

    def wait_s(self, key: str) -> int | None:
        """None when one more event of ``key`` is within the limit, else the whole seconds (at least 1)
        until it would be; counts nothing (a caller that counts only failures asks first, notes later)."""
        now = self._clock()
        events = self._recent(key, now)
        if len(events) < self.limit:
            return None
        return max(1, math.ceil(events[-self.limit] + self.window_s - now))

    def note(self, key: str) -> None:
        """Count one event of ``key``, whatever the limit."""
        events = self._recent(key, self._clock())
        events.append(self._clock())
        self._events[key] = events
        self._events.move_to_end(key)
        while len(self._events) > self._max_keys:
            self._events.popitem(last=False)

    def forget(self, key: str) -> None:
        """Drop ``key``'s events (a sign-in that succeeded clears its account's failures)."""
        self._events.pop(key, None)

    def remaining(self, key: str) -> int:
        """Events ``key`` may still have now."""
        return self.limit - len(self._recent(key, self._clock()))

    def _recent(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key, deque())
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if not events:
            self._events.pop(key, None)
        return events
