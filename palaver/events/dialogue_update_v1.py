"""A speaker turn (dialogue box), created or revised by the merger. Consumers keep the highest revision."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from palaver.events.base import EventV

DialogueStatus = Literal["live", "final", "retracted"]


class DialogueUtterance(BaseModel):
    """One utterance of a dialogue, as a reader draws it. ``final``: a final transcript (settled words);
    otherwise the speaker's open partial, whose words may still change. ``text`` is stripped; the dialogue's
    ``text`` is the non-empty ones joined by spaces."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    utterance_id: str
    start_ms: int
    end_ms: int
    text: str
    final: bool


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
    # live: the speaker may still add to it, or its words change; final: its words (utterances, text,
    # start, end) can no longer change, every later revision has them too and stays final (only
    # ``position`` and ``placed`` may still change); retracted: a late event regrouped its utterances into
    # other dialogues (never a final one).
    status: DialogueStatus
    revision: int
    position: int  # index among the meeting's dialogues ordered by start_ms when this revision was made
    # True once the meeting's watermark has passed it: its position is fixed too, and it is one of the
    # meeting's first ``final_dialogues`` (the merged transcript's). A final dialogue not yet placed may
    # still move (a new revision says so) when a dialogue before it changes. Only final ones are placed.
    placed: bool = False
    utterance_ids: tuple[str, ...]
    run: str
    # The utterances behind ``utterance_ids``, in the same order (empty for a retraction). Events written
    # before this field existed decode with none.
    utterances: tuple[DialogueUtterance, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _placed_before_it_existed(cls, data: Any) -> Any:
        """Events written before ``placed`` existed were final only once placed: they decode so."""
        if isinstance(data, dict) and "placed" not in data:
            return {**data, "placed": data.get("status") == "final"}
        return data
