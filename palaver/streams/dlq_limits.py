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
    event loop, ``admit_invalid`` checks and counts in one step (no await between)."""

    def __init__(self, limits: DlqLimits):
        self.limits = limits
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=limits.window)  # True: bad
        self._recent_invalid = 0

    @property
    def consecutive(self) -> int:
        return self._consecutive

    @property
    def recent(self) -> tuple[int, int]:
        """(bad messages, messages) in the window."""
        return self._recent_invalid, len(self._recent)

    def record_valid(self) -> None:
        self._consecutive = 0
        self._push(False)

    def admit_invalid(self) -> None:
        """Count one more bad message, or raise ``DlqLimitExceeded`` (and count nothing) when counting it
        would cross a limit."""
        consecutive = self._consecutive + 1
        if consecutive > self.limits.max_consecutive:
            raise DlqLimitExceeded(
                f"{consecutive} bad messages in a row (limit {self.limits.max_consecutive}, PALAVER_DLQ_MAX_CONSECUTIVE)"
            )
        dropped = len(self._recent) == self.limits.window and self._recent[0]
        invalid = self._recent_invalid + 1 - int(dropped)
        seen = min(len(self._recent) + 1, self.limits.window)
        if invalid >= self.limits.min_invalid and invalid > self.limits.max_ratio * seen:
            raise DlqLimitExceeded(
                f"{invalid} of the last {seen} messages bad, over the limit of {self.limits.max_ratio:.0%} "
                f"(PALAVER_DLQ_MAX_RATIO over PALAVER_DLQ_WINDOW, from PALAVER_DLQ_MIN_INVALID bad messages)"
            )
        self._consecutive = consecutive
        self._push(True)

    def _push(self, invalid: bool) -> None:
        if len(self._recent) == self.limits.window and self._recent[0]:
            self._recent_invalid -= 1
        self._recent.append(invalid)
        self._recent_invalid += int(invalid)
