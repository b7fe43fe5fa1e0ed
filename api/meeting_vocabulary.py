"""A meeting's vocabulary for its speech decoder, published on the ``meeting.vocabulary`` topic whenever what
it is made of changes (``palaver.events.meeting_vocabulary_v1``): the participants' names, the title, the
agenda and the glossary. ``vocabulary_event`` is pure; ``publish`` is the I/O edge.

A participant's name is said, not typed: ``spoken_name`` makes one of a username (``ana.lopez`` and
``ana.lopez@example.com`` become ``Ana Lopez``), since a username is all the API knows of a person."""

from __future__ import annotations

import re

from fastapi import Request

from api.meeting_state import MeetingRecord, next_version
from palaver import ids
from palaver.events import encode
from palaver.events.meeting_vocabulary_v1 import MeetingVocabularyV1
from palaver.events.registry import MEETING_VOCABULARY, meeting_partition, topic_name

_SEPARATORS = re.compile(r"[._\-+]+")


def spoken_name(username: str) -> str:
    """The name in ``username`` as it would be said: an email's local part, separators as spaces, digits
    left out, and a name written all in lower case capitalised ("" when nothing is left)."""
    local = username.split("@", 1)[0]
    words = [w for w in _SEPARATORS.sub(" ", local).split() if not w.isdigit()]
    words = [w.rstrip("0123456789") or w for w in words]
    return " ".join(w.capitalize() if w.islower() else w for w in words)


def vocabulary_event(meeting: MeetingRecord, usernames: list[str], version: int) -> MeetingVocabularyV1:
    """The meeting's whole vocabulary: its people's spoken names (in the order given, each once), title,
    agenda and glossary."""
    names = list(dict.fromkeys(n for n in map(spoken_name, usernames) if n))
    return MeetingVocabularyV1(
        event_id=ids.event_id("meeting.vocabulary", meeting.meeting_id, version), meeting_id=meeting.meeting_id,
        names=names, title=meeting.title, agenda=list(meeting.agenda), glossary=list(meeting.glossary),
        vocabulary_version=version,
    )  # fmt: skip


async def publish(request: Request, meeting: MeetingRecord, usernames: list[str], now_ms: int) -> MeetingVocabularyV1:
    """Publish the meeting's vocabulary (``vocabulary_event``) and wait until the broker has it. Versions
    increase in this process across all meetings, so a reader keeps the newest of one process's events."""
    state = request.app.state
    version = next_version(now_ms, getattr(state, "last_vocabulary_version", 0))
    state.last_vocabulary_version = version
    event = vocabulary_event(meeting, usernames, version)
    topic = topic_name(state.settings.topic_namespace, MEETING_VOCABULARY.name)
    await state.producer.send_and_wait(topic, encode(event), key=meeting.meeting_id.encode(),
                                       partition=meeting_partition(meeting.meeting_id, MEETING_VOCABULARY.partitions))  # fmt: skip
    return event
