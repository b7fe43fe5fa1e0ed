"""When dead-lettering must stop: the limits on bad messages, as pure bookkeeping (no I/O, no clock).

A bad *message* goes to its DLQ; but when most messages are bad, the likely cause is a bad deploy or a
wrong topic, and dead-lettering would empty the whole topic into its DLQ. Two limits catch that:

- **consecutive**: more than ``max_consecutive`` bad messages in a row;
- **ratio**: more than ``max_ratio`` of the last ``window`` messages bad, once at least ``min_invalid`` of
  them are bad (so two bad messages out of the first three do not stop a consumer).

The message that would cross a limit is refused, not counted: the caller stops without dead-lettering or
committing it, so it is read again after the fix.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class DlqLimitExceeded(RuntimeError):
    """Too many bad messages (in a row, or as a share of the recent ones): likely a bad deploy or a wrong
    topic, not bad data. The consumer must stop, loudly, without committing the message."""


@dataclass(frozen=True)
class DlqLimits:
    max_consecutive: int = 100
    max_ratio: float = 0.5  # 1.0 turns the ratio limit off: a share can never exceed it
    window: int = 1000
    min_invalid: int = 100

    def __post_init__(self) -> None:
        if self.max_consecutive < 1 or self.window < 1 or self.min_invalid < 1:
            raise ValueError(f"DLQ limits must be positive: {self}")
        if not 0 < self.max_ratio <= 1:
            raise ValueError(f"DLQ max ratio must be in (0, 1]: {self.max_ratio}")


class DlqLimitState:
    """Outcomes of the messages a consumer processed, against ``DlqLimits``. Not thread-safe; from one
    event loop, ``admit_invalid`` checks and counts in one step (no await between). A good message costs
    a counter increment (it is on every consumer's per-message path); the window keeps only the sequence
    numbers of its bad messages."""

    def __init__(self, limits: DlqLimits):
        self.limits = limits
        self._consecutive = 0
        self._seen = 0  # messages counted, good and bad: the newest one's sequence number
        self._invalid: deque[int] = deque()  # sequence numbers of bad messages, oldest first

    @property
    def consecutive(self) -> int:
        return self._consecutive

    @property
    def recent(self) -> tuple[int, int]:
        """(bad messages, messages) in the window."""
        self._trim()
        return len(self._invalid), min(self._seen, self.limits.window)

    def record_valid(self) -> None:
        self._consecutive = 0
        self._seen += 1

    def admit_invalid(self) -> None:
        """Count one more bad message, or raise ``DlqLimitExceeded`` (and count nothing) when counting it
        would cross a limit."""
        consecutive = self._consecutive + 1
        if consecutive > self.limits.max_consecutive:
            raise DlqLimitExceeded(
                f"{consecutive} bad messages in a row (limit {self.limits.max_consecutive}, PALAVER_DLQ_MAX_CONSECUTIVE)"
            )
        self._trim()
        number = self._seen + 1
        dropped = bool(self._invalid) and self._invalid[0] <= number - self.limits.window
        invalid = len(self._invalid) + 1 - int(dropped)
        seen = min(number, self.limits.window)
        if invalid >= self.limits.min_invalid and invalid > self.limits.max_ratio * seen:
            raise DlqLimitExceeded(
                f"{invalid} of the last {seen} messages bad, over the limit of {self.limits.max_ratio:.0%} "
                f"(PALAVER_DLQ_MAX_RATIO over PALAVER_DLQ_WINDOW, from PALAVER_DLQ_MIN_INVALID bad messages)"
            )
        self._consecutive = consecutive
        self._seen = number
        self._invalid.append(number)

    def _trim(self) -> None:
        """Forget the bad messages that left the window."""
        edge = self._seen - self.limits.window
        while self._invalid and self._invalid[0] <= edge:
            self._invalid.popleft()
