"""Failed sign-ins counted per account and per client address over a sliding window (pure; the clock is
passed in). Past the limit a key is refused until its oldest failure leaves the window, which is the
``Retry-After`` the API answers with. Counted per API process: N processes behind a balancer allow up to N
times the limit, still far below what guessing a password needs."""

from __future__ import annotations

import math
from collections import OrderedDict, deque


class FailureWindow:
    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000):
        self._limit, self._window_s, self._max_keys = limit, window_s, max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after_s(self, key: str, now: float) -> int:
        """0 when ``key`` may try now, else the whole seconds until it may."""
        times = self._recent(key, now)
        if len(times) < self._limit:
            return 0
        return max(1, math.ceil(times[-self._limit] + self._window_s - now))

    def fail(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        times.append(now)
        self._failures[key] = times
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:  # bounded memory under a spray of made-up names
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)
