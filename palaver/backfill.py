"""``palaver replay --since DATE``: which meetings a backfill replays, and how it reports.

The meetings come from the ``meetings`` topic (compacted, kept for ever: every meeting's newest
``meeting.changed``), not from the store: the embedded ClickHouse cannot be opened while Palaver runs, and
the log is the system of record. A backfill takes every meeting created at or after DATE, oldest first,
erased ones included so that it can say it skipped them. Each is then replayed as ``--meeting`` would,
into the same run, so a backfill and single replays together stay idempotent.

Outcomes per meeting: ``replayed``; ``skipped`` (nothing to replay: erased, or no audio or transcripts at
all); ``refused`` (something to replay but it cannot be: audio expired in part, a run that is not there,
...). The exit status: 130 when interrupted, 1 when any meeting was refused (or none was found), else 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from aiokafka.structs import ConsumerRecord

from palaver.events import DecodeError, MeetingChangedV1, decode_on
from palaver.events.registry import MEETINGS
from palaver.settings import Settings
from palaver.streams.topic_reader import read_topic

Outcome = Literal["replayed", "skipped", "refused", "interrupted"]
INTERRUPTED_EXIT = 130
REFUSED_EXIT = 1


class SinceError(ValueError):
    """A --since value that is not a date or a date and time."""


def parse_since(text: str) -> int:
    """``--since``: an ISO date (midnight UTC) or date and time (UTC unless it names a zone) -> epoch ms."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SinceError(f"--since {text!r}: not an ISO date or date and time (2026-12-01, 2026-12-01T09:30, "
                         "2026-12-01T09:30+01:00)") from None  # fmt: skip
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def newest_states(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[str, MeetingChangedV1]:
    """(key, value) records of the meetings topic in order -> each meeting's newest state. Members and
    links (keys ``meeting_id/...``) and values that do not decode are passed over; a tombstone forgets."""
    states: dict[str, MeetingChangedV1] = {}
    for key, value in records:
        if key is None or b"/" in key:
            continue
        meeting_id = key.decode(errors="replace")
        if value is None:
            states.pop(meeting_id, None)
            continue
        try:
            event = decode_on(MEETINGS, value)
        except (DecodeError, ValueError):
            continue
        if isinstance(event, MeetingChangedV1):
            states[meeting_id] = event
    return states


def created_since(states: dict[str, MeetingChangedV1], since_ms: int) -> list[MeetingChangedV1]:
    """The meetings created at or after ``since_ms``, oldest first (ties by id: a stable order)."""
    chosen = [s for s in states.values() if s.created_at_ms >= since_ms]
    return sorted(chosen, key=lambda s: (s.created_at_ms, s.meeting_id))


async def meetings_since(settings: Settings, since_ms: int) -> list[MeetingChangedV1]:
    """The meetings topic read whole (it is compacted: one record per key, about), then ``created_since``."""
    records: list[tuple[bytes | None, bytes | None]] = []

    def take(record: ConsumerRecord) -> None:
        records.append((record.key, record.value))

    await read_topic(settings, MEETINGS, None, take)
    return created_since(newest_states(records), since_ms)


@dataclass(frozen=True)
class MeetingResult:
    meeting_id: str
    outcome: Outcome
    why: str = ""  # skipped or refused: the reason, as the single replay says it


def progress_line(index: int, total: int, meeting_id: str, elapsed_s: float) -> str:
    """The backfill's line before each meeting: where it is, and an ETA from the meetings done so far."""
    eta = ""
    if index > 0:
        eta = f", about {_duration(elapsed_s / index * (total - index))} left"
    return f"backfill: meeting {index + 1}/{total} {meeting_id} ({_duration(elapsed_s)} so far{eta})"


def summary(results: Sequence[MeetingResult]) -> str:
    """The closing report: counts, then one line per meeting not replayed, with why."""
    counts = {o: sum(1 for r in results if r.outcome == o) for o in ("replayed", "skipped", "refused")}
    lines = [f"backfill: {len(results)} meeting(s): {counts['replayed']} replayed, {counts['skipped']} skipped, "
             f"{counts['refused']} refused"]  # fmt: skip
    interrupted = [r for r in results if r.outcome == "interrupted"]
    if interrupted:
        lines[0] += f"; interrupted at {interrupted[0].meeting_id} (run the backfill again to complete it)"
    lines += [f"  {r.outcome} {r.meeting_id}: {r.why}" for r in results if r.outcome in ("skipped", "refused")]
    return "\n".join(lines)


def exit_status(results: Sequence[MeetingResult]) -> int:
    if any(r.outcome == "interrupted" for r in results):
        return INTERRUPTED_EXIT
    if not results or any(r.outcome == "refused" for r in results):
        return REFUSED_EXIT
    return 0


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
