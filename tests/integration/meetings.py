"""Meetings for integration tests, opened as clients open them (``palaver.demo.accounts``): one account per
speaker name, the first creates the meeting and invites the others; streams and live sockets take tickets.

Dialogues and utterances carry user ids as speaker ids; ``speakers`` maps them back to the names a test's
script uses. ``tag`` and ``meeting_key`` make the ids deterministic (usernames ``<name>-<tag>`` registered
with their username as Idempotency-Key, the meeting created with ``meeting_key``), so a test can compute
stream ids before it opens the meeting, or open the same meeting on two stacks.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import numpy as np
import websockets

from palaver import ids
from palaver.auth.tokens import sign
from palaver.demo.accounts import Meeting, Participant, create_meeting, invite, sign_up
from palaver.demo.client import Speaker, StreamResult, stream_pcm, ws_url
from palaver.events import DialogueUpdateV1, MeetingWatermarkV1, encode
from palaver.events.registry import DIALOGUES, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_producer

PASSWORD = "integration-test-password"


def username(name: str, tag: str) -> str:
    return f"{name}-{tag}"


def user_id_for(name: str, tag: str) -> str:
    """The user id ``open_meeting(..., tag=tag)`` gives ``name`` (registration is keyed by username)."""
    return ids.user_id(username(name, tag))


async def register(url: str, name: str, password: str = PASSWORD) -> Participant:
    """Register ``name`` (its Idempotency-Key is the name, so its user id is ``ids.user_id(name)`` on any
    stack, and registering it again answers with the same user) and sign in."""
    return await sign_up(url, name, password, idempotency_key=name)


async def open_meeting(url: str, names: Iterable[str], *, tag: str | None = None, meeting_key: str | None = None,
                       title: str = "integration test") -> Meeting:  # fmt: skip
    """One account per name (the first owns the meeting, the others are invited as participants)."""
    tag = tag or secrets.token_hex(4)
    people = {name: await register(url, username(name, tag)) for name in names}
    return await meeting_with(people, meeting_key=meeting_key, title=title)


async def meeting_with(people: Mapping[str, Participant], *, meeting_key: str | None = None,
                       title: str = "integration test") -> Meeting:  # fmt: skip
    """A new meeting of people already signed in (one person may be in many meetings): the first creates it
    and invites the others as participants."""
    owner, *guests = people.values()
    meeting_id = await create_meeting(owner, title, idempotency_key=meeting_key)
    for guest in guests:
        await invite(owner, meeting_id, guest)
    return Meeting(meeting_id, dict(people))


def speakers(meeting: Meeting, rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The script's name of each row's ``speaker_id`` (a user id); an unknown one stays as it is."""
    names = meeting.names()
    return [names.get(r["speaker_id"], r["speaker_id"]) for r in rows]


async def stream_tracks(url: str, meeting: Meeting, tracks: Mapping[str, np.ndarray],
                        **options: Any) -> list[StreamResult]:  # fmt: skip
    """Stream every name's track at once, each as its own participant; results in ``tracks``' order."""
    return list(await asyncio.gather(
        *(stream_pcm(url, meeting.meeting_id, meeting.people[name], pcm, **options) for name, pcm in tracks.items())
    ))  # fmt: skip


async def ingest_url(url: str, meeting_id: str, speaker: Speaker) -> str:
    """The ws(s) URL of the meeting's ingest socket with a fresh single-use ticket of ``speaker``, for a test
    that speaks the protocol itself (the stream's speaker is the ticket's user)."""
    ticket = await speaker.ticket(meeting_id, "ingest")
    return f"{ws_url(url)}/v1/meetings/{meeting_id}/stream?ticket={ticket}"


@asynccontextmanager
async def live_socket(url: str, meeting: Meeting, name: str | None = None,
                      params: Mapping[str, str | int] | None = None) -> AsyncIterator[Any]:  # fmt: skip
    """The meeting's live socket, opened by ``name`` (the owner if None) with a live ticket and ``params``
    (``resume``, ``chat_since_ms``)."""
    who = meeting.people[name] if name else next(iter(meeting.people.values()))
    query = urlencode({"ticket": await who.ticket(meeting.meeting_id, "live"), **(params or {})})
    async with websockets.connect(f"{ws_url(url)}/v1/meetings/{meeting.meeting_id}/live?{query}") as ws:
        yield ws


@dataclass
class TicketSigner:
    """A speaker for an ingest that runs without the API (the test plays the API's part): it signs its own
    tickets with the deployment's secret key (``palaver.auth.secret``), as ``api.meetings`` would."""

    secret: bytes
    user_id: str
    ttl_s: int = 60

    @property
    def username(self) -> str:
        return self.user_id

    async def ticket(self, meeting_id: str, use: Literal["ingest", "live"] = "ingest") -> str:
        claims = {"mtg": meeting_id, "sub": self.user_id, "use": use, "n": secrets.token_hex(8)}
        return sign(self.secret, "ticket", claims, now_ms=int(time.time() * 1000), ttl_ms=self.ttl_s * 1000)


async def final_dialogue(settings: Settings, meeting_id: str, speaker_id: str) -> str:
    """A final dialogue and the watermark past it, as the merger would publish them."""
    utterance = ids.utterance_id(ids.stream_id(meeting_id, speaker_id), 0)
    dialogue_id = ids.dialogue_id(meeting_id, utterance)
    run = "whisper:tiny.en"
    update = DialogueUpdateV1(event_id=ids.event_id("dialogue.update", dialogue_id, run, 1), dialogue_id=dialogue_id,
                              meeting_id=meeting_id, speaker_id=speaker_id, run=run, start_ms=0, end_ms=1500,
                              text="Hello there.", status="final", revision=1, position=0,
                              utterance_ids=[utterance])  # fmt: skip
    mark = MeetingWatermarkV1(event_id=ids.event_id("meeting.watermark", meeting_id, run, 2000), meeting_id=meeting_id,
                              run=run, watermark_ms=2000, final_dialogues=1)  # fmt: skip
    await publish_dialogues(settings, update, mark)
    return dialogue_id


async def publish_dialogues(settings: Settings, *events: DialogueUpdateV1 | MeetingWatermarkV1) -> None:
    """Events on the dialogues topic, keyed by meeting, as the merger publishes them."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic_name(settings.topic_namespace, DIALOGUES.name), encode(event),
                                         key=event.meeting_id.encode())  # fmt: skip
    finally:
        await producer.stop()
