"""What enrichment takes (a meeting's transcript) and what it gives (summary, action items, keywords, mood,
agenda, metrics). Plain frozen pydantic models, so every backend returns the same shape and the CLI, the
events and the API can serialise it the same way (``Enrichment.to_json()``)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Priority = Literal["high", "normal", "low"]
MoodLabel = Literal["positive", "neutral", "negative"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Dialogue(_Frozen):
    """One speaker's turn: text said between ``start_ms`` and ``end_ms`` on the meeting's timeline."""

    dialogue_id: str
    speaker: str
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)
    text: str


class MeetingTranscript(_Frozen):
    """A meeting to enrich. ``participants``: the names tasks may be assigned to (the speakers when
    empty); ``meeting_date``: what relative dates ("by Friday") are resolved against (None: left
    unresolved); ``agenda``: the meeting's planned items, matched to the topics found."""

    dialogues: tuple[Dialogue, ...]
    participants: tuple[str, ...] = ()
    meeting_date: date | None = None
    agenda: tuple[str, ...] = ()
    title: str = ""

    def people(self) -> tuple[str, ...]:
        """The participants, or the speakers in order of first turn when none were given."""
        if self.participants:
            return self.participants
        return tuple(dict.fromkeys(d.speaker for d in self.dialogues))


class Summary(_Frozen):
    """Markdown: ``brief`` a few bullet points, ``detailed`` one section per topic of the meeting."""

    brief: str
    detailed: str


class ActionItem(_Frozen):
    """A task. ``assignee`` is a participant's name, or "" when the transcript does not say who."""

    description: str
    assignee: str = ""
    start_date: date | None = None
    due_date: date | None = None
    priority: Priority = "normal"
    status: Literal["pending"] = "pending"
    dialogue_ids: tuple[str, ...] = ()


class MoodScore(_Frozen):
    """``score`` in [-1, 1] (mean sentiment of the sentences, weighted by their words) and its label."""

    label: MoodLabel
    score: float


class Mood(_Frozen):
    overall: MoodScore
    speakers: dict[str, MoodScore]


class AgendaTopic(_Frozen):
    """A stretch of the meeting about one thing; ``agenda_item`` is the planned item it matched, if any."""

    title: str
    start_ms: int
    end_ms: int
    agenda_item: str | None = None
    dialogue_ids: tuple[str, ...] = ()


class SpeakerMetrics(_Frozen):
    talk_ms: int
    share: float
    words: int
    words_per_minute: float
    turns: int
    questions: int
    interruptions: int  # turns this speaker started while someone else was mid-turn
    interrupted: int  # times someone else did that to this speaker


class Monologue(_Frozen):
    speaker: str
    start_ms: int
    end_ms: int
    duration_ms: int


class Metrics(_Frozen):
    duration_ms: int
    speakers: dict[str, SpeakerMetrics]
    words_per_minute: float
    overlap_ms: int
    interruptions: int
    questions: int
    longest_monologue: Monologue | None
    silence_ms: int
    longest_silence_ms: int


class Fallback(_Frozen):
    """Why a result came from the local backend instead of the one asked for: ``backend`` is the one that
    failed (after its retries), ``reason`` what went wrong, in words (never a secret)."""

    backend: str
    reason: str


class Enrichment(_Frozen):
    """Everything one backend derived from one transcript. ``fallback`` is set when the backend asked for
    failed and ``local`` made this result instead (``backend`` is then "local")."""

    backend: str
    summary: Summary
    action_items: tuple[ActionItem, ...]
    keywords: tuple[str, ...]
    mood: Mood
    agenda: tuple[AgendaTopic, ...]
    metrics: Metrics
    fallback: Fallback | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: dates as ISO strings, the keys of ``palaver enrich``'s output."""
        return self.model_dump(mode="json")
