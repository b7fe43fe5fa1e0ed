"""The demo meeting's script and its timeline: who says what, and when on the meeting's media clock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    speaker_id: str
    text: str
    overlap_ms: int = 0  # start this long before the previous line ends (people talking over each other)


DEMO_MEETING: tuple[Line, ...] = (
    Line("alice", "Good morning everyone. Let's review the launch plan for next week."),
    Line("bob", "Thanks Alice. The backend is ready and the load tests passed yesterday."),
    Line("carol", "Great news. I still need the final copy for the landing page."),
    Line("alice", "I will send the copy to you by Wednesday afternoon."),
    Line("bob", "That works for me, and I can review it too.", overlap_ms=1200),
    Line("carol", "Then we are on track for the launch on Monday."),
)

GAP_MS = 900


@dataclass(frozen=True)
class PlacedLine:
    speaker_id: str
    text: str
    start_ms: int
    end_ms: int


def place_lines(lines: tuple[Line, ...], durations_ms: list[int], gap_ms: int = GAP_MS) -> list[PlacedLine]:
    """Lay lines on one timeline: each starts ``gap_ms`` after the previous ends, or overlaps it."""
    placed: list[PlacedLine] = []
    cursor = 500
    for line, duration in zip(lines, durations_ms, strict=True):
        start = cursor
        if placed and line.overlap_ms:
            start = max(placed[-1].start_ms + 200, placed[-1].end_ms - line.overlap_ms)
        placed.append(PlacedLine(line.speaker_id, line.text, start, start + duration))
        cursor = max(cursor, start + duration + gap_ms)
    return placed
