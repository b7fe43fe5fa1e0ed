"""A meeting's vocabulary, the words its speech decoder should expect, on the ``meeting.vocabulary`` topic
(compacted, key ``<meeting_id>``).

Produced by the API whenever what it is made of changes: the meeting is created, its title, agenda or
glossary change, or someone joins, is invited, leaves or is removed. Each event is the whole vocabulary
after the change, so compaction keeps the newest per meeting and erasing a meeting is one tombstone.
Read by every STT worker and by ``palaver replay`` (``stt_workers.vocabulary_follower``), which make the
decoder's prompt of it (``stt_workers.vocabulary``): participant names first, then the glossary, the title
and the agenda items. ``vocabulary_version`` orders a meeting's vocabularies (ms since the epoch, strictly
increasing per meeting): a reader keeps the highest it has seen.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from palaver.events.base import EventV


class MeetingVocabularyV1(EventV):
    event: Literal["meeting.vocabulary"] = "meeting.vocabulary"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("meeting.vocabulary", meeting_id, vocabulary_version)
    meeting_id: str
    names: list[str] = Field(default_factory=list)  # the participants' names as they may be said
    title: str = ""
    agenda: list[str] = Field(default_factory=list)
    glossary: list[str] = Field(default_factory=list)  # the meeting's own terms (PATCH /v1/meetings/{id})
    vocabulary_version: int
