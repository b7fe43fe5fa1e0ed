"""Building small transcripts for the enrichment unit tests."""

from __future__ import annotations

from datetime import date

from enrichment.model import Dialogue, MeetingTranscript

WEDNESDAY = date(2026, 3, 4)


def meeting(*turns: str, participants: tuple[str, ...] = (), day: date | None = WEDNESDAY,
            agenda: tuple[str, ...] = ()) -> MeetingTranscript:  # fmt: skip
    """Turns as 'Speaker: text', one after the other, 400 ms per word and a 500 ms pause."""
    dialogues, clock = [], 0
    for i, turn in enumerate(turns):
        speaker, text = turn.split(": ", 1)
        duration = 400 * len(text.split())
        dialogues.append(Dialogue(dialogue_id=f"d{i}", speaker=speaker, start_ms=clock, end_ms=clock + duration, text=text))
        clock += duration + 500
    return MeetingTranscript(dialogues=tuple(dialogues), participants=participants, meeting_date=day, agenda=agenda)
