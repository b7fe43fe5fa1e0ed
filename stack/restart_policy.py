"""When a supervised child dies: restart it after a growing delay, or give up because it keeps dying.

Pure: the caller passes the clock's reading and the child's earlier deaths; nothing here sleeps or reads
time. A child that keeps dying is one with ``limit`` deaths within ``window_s`` seconds; the delay before
a restart doubles with every death still inside the window, so a child that ran well for a window starts
again from the first delay.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Restart:
    attempt: int  # deaths within the window, this one included (1: the first restart in a while)
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    deaths: int
    window_s: float


@dataclass(frozen=True)
class RestartPolicy:
    """``limit`` deaths within ``window_s`` seconds: give up; fewer: restart after ``first_delay_s``
    doubled per earlier death in the window, at most ``max_delay_s``. ``limit`` 1 never restarts."""

    limit: int = 5
    window_s: float = 60.0
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0 or not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError(f"invalid restart policy {self}")

    def on_death(self, earlier: tuple[float, ...], now: float) -> tuple[Restart | GiveUp, tuple[float, ...]]:
        """A child died at ``now`` (seconds on a monotonic clock); ``earlier`` are the times of its deaths
        this returns as the history to pass next time (the ones still within the window, ``now`` last).
        Returns the decision and that history."""
        recent = (*(t for t in earlier if now - t < self.window_s), now)
        if len(recent) >= self.limit:
            return GiveUp(len(recent), self.window_s), recent
        delay = min(self.first_delay_s * 2 ** (len(recent) - 1), self.max_delay_s)
        return Restart(len(recent), delay), recent
