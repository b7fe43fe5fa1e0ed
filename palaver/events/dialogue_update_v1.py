"""A speaker turn (dialogue box), created or revised by the merger. Consumers keep the highest revision."""

from __future__ import annotations

from typing import Literal

from palaver.events.base import EventV

DialogueStatus = Literal["live", "final", "retracted"]


class DialogueUpdateV1(EventV):
    event: Literal["dialogue.update"] = "dialogue.update"
    version: Literal[1] = 1
    event_id: str
    dialogue_id: str  # hash(meeting_id, first utterance id)
    meeting_id: str
    speaker_id: str
    start_ms: int
    end_ms: int
    text: str
    # live: the speaker may still add to it; final: it can no longer change;
    # retracted: a late event regrouped its utterances into other dialogues.
    status: DialogueStatus
    revision: int
    position: int  # index among the meeting's dialogues ordered by start_ms when this revision was made
    utterance_ids: tuple[str, ...]
    run: str
