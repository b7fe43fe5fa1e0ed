"""The store's ClickHouse connections die mid-meeting and stay down for a few seconds; then ClickHouse
answers again. Real broker, real chdb, the real web app (API + store writer, as ``palaver up`` runs them) and
a real merger process; the test produces the meeting's transcript finals and chat messages itself, without
STT, and keeps producing through the outage.

First the connections die one at a time (a client closed every 50 ms for 2 s; each is replaced on its next
call). Then the outage: every client of the store's pool is closed, and closed again every few
milliseconds while it lasts, so the clients the pool reconnects are closed again too. chdb runs in this
process and cannot refuse a connection, so while the outage lasts the pool's ``reconnect`` (a real chdb
connection otherwise) is refused every other time and otherwise hands over a connection closed at once: a
ClickHouse that stays down. Then it opens real connections again.

Seen from outside: every event has its rows exactly once (counted without FINAL, merges stopped, per id and
per Kafka offset), the store writer's group committed to the end of its topics, the merger process never
stopped, the API answered 503 with a clear body during the outage and 200 after, and the store writer
never failed (it retried its inserts with the same dedup tokens on fresh connections).

A chdb call on a closed client fails before it writes anything, so a batch in the meeting above rarely
fails halfway; the second test makes it fail halfway on purpose and shows that its retry duplicates
nothing (it fails if a retry changes the batch's dedup tokens)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from palaver import ids
from palaver.demo.accounts import Participant
from palaver.events import (
    ChatMessageV1,
    DialogueUpdateV1,
    StreamStartedV1,
    StreamStoppedV1,
    TranscriptFinalV1,
    decode_on,
    encode,
)
from palaver.events.registry import CHAT, DIALOGUES, TRANSCRIPTS, topic_name
from palaver.settings import Settings
from palaver.store import Store
from palaver.store.client import ClientPool, StoreUnavailable, connect
from palaver.store.migrations import apply_migrations
from palaver.store.writer import STORE_DOWN, Batch, write_batch
from palaver.streams.clients import ensure_topics, make_consumer, make_producer
from palaver.streams.runner import retrying
from stack.web import STORE_UNAVAILABLE_DETAIL, create_app
from tests.integration.conftest import ServiceProcess, _wait_http, make_settings, poll
from tests.integration.infra import Infra
from tests.integration.meetings import open_meeting
from tests.integration.test_poison_messages import read_all

pytestmark = pytest.mark.integration

RUN = "whisper:tiny.en"
SPEAKERS = ("alice", "bob")
TICK_S = 0.04  # one transcript final per tick, a chat message every other tick
OUTAGE_S = 6.0  # well inside PALAVER_STORE_RETRY_BUDGET_S (120 s): the store writer rides it out
SETTLE_S = 0.5  # into the outage, every client open before it has been closed
KILL_EVERY_S = 0.005
FLAP_S, FLAP_EVERY_S = 2.0, 0.05  # before the outage: one client closed at a time
# Tables whose rows the events make; merges stopped, so a duplicate row stays countable.
TABLES = ("utterances", "dialogues", "chat_messages", "participants", "meetings")
Offset = tuple[int, int]  # (partition, offset)


BEFORE, DOWN, SETTLED, AFTER = range(4)  # the outage's phases; SETTLED: down, every old client closed


class Outage:
    """The pool's ``reconnect``: a real chdb connection, except while the outage is on."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.phase = BEFORE
        self.refused = 0  # reconnects refused while down
        self.dropped = 0  # reconnects whose connection was closed at once while down
        self.opened = 0  # reconnects while up

    @property
    def down(self) -> bool:
        return self.phase in (DOWN, SETTLED)

    def reconnect(self) -> Any:
        if self.down and (self.refused + self.dropped) % 2 == 0:
            self.refused += 1
            raise ConnectionRefusedError("[Errno 111] Connection refused (ClickHouse is down)")
        client = connect(self.dsn)
        if self.down:  # also when it went down while this connection opened
            client.close()
            self.dropped += 1
        else:
            self.opened += 1
        return client


async def kill_one_at_a_time(pool: ClientPool) -> int:
    """Close one client of the pool every FLAP_EVERY_S for FLAP_S, in turn. Returns how many closes."""
    closes = 0
    deadline = time.monotonic() + FLAP_S
    while time.monotonic() < deadline:
        clients = pool.clients
        await asyncio.to_thread(clients[closes % len(clients)].close)
        closes += 1
        await asyncio.sleep(FLAP_EVERY_S)
    return closes


async def keep_killing(pool: ClientPool, outage: Outage) -> int:
    """Close every client of the pool, again and again while the outage lasts. Returns how many closes."""
    closes = 0
    while outage.down:
        for client in pool.clients:
            await asyncio.to_thread(client.close)  # waits out a call running on it (the handle's lock)
            closes += 1
        await asyncio.sleep(KILL_EVERY_S)
    return closes


@dataclass
class Meeting:
    """What the test produced, as the store should hold it."""

    meeting_id: str
    utterances: dict[str, Offset] = field(default_factory=dict)  # by utterance_id
    chats: dict[str, Offset] = field(default_factory=dict)  # by message_id
    starts: list[Offset] = field(default_factory=list)  # of the stream.started events


def stream_event(cls: type[StreamStartedV1 | StreamStoppedV1], meeting_id: str, speaker: str,
                 **more: Any) -> bytes:  # fmt: skip
    stream = ids.stream_id(meeting_id, speaker)
    return encode(cls(event_id=ids.event_id(cls.__name__, stream), meeting_id=meeting_id, speaker_id=speaker,
                      stream_id=stream, sample_rate=16000, stream_start_ms=0, run=RUN, **more))  # fmt: skip


def final(meeting_id: str, i: int) -> TranscriptFinalV1:
    speaker = SPEAKERS[i % 2]
    stream = ids.stream_id(meeting_id, speaker)
    start_ms = i * 1000
    utterance = ids.utterance_id(stream, start_ms * 16)
    return TranscriptFinalV1(
        event_id=ids.event_id("transcript.final", utterance), utterance_id=utterance, meeting_id=meeting_id,
        speaker_id=speaker, stream_id=stream, start_ms=start_ms, end_ms=start_ms + 800,
        start_sample=start_ms * 16, end_sample=(start_ms + 800) * 16, sample_rate=16000,
        text=f"sentence number {i}", confidence=0.9, language="en", engine="whisper", model="tiny.en",
        run=RUN,
    )  # fmt: skip


def chat(meeting_id: str, i: int) -> ChatMessageV1:
    user = "usr_" + ids.event_id("user", i)[4:]
    message = ids.chat_message_id(meeting_id, user, f"key-{i}")
    return ChatMessageV1(
        event_id=ids.event_id("chat.message", message), message_id=message, meeting_id=meeting_id,
        user_id=user, text=f"chat {i}", sent_at_ms=int(time.time() * 1000), idempotency_key=f"key-{i}",
    )  # fmt: skip


async def produce_meeting(settings: Settings, meeting: Meeting, stop: asyncio.Event) -> None:
    """Both streams start, then finals and chat messages flow until ``stop``; then both streams stop."""
    ns, key = settings.topic_namespace, meeting.meeting_id.encode()
    transcripts, chats = topic_name(ns, TRANSCRIPTS.name), topic_name(ns, CHAT.name)
    producer = make_producer(settings)
    await producer.start()
    try:
        for speaker in SPEAKERS:
            started = stream_event(StreamStartedV1, meeting.meeting_id, speaker)
            md = await producer.send_and_wait(transcripts, started, key=key)
            meeting.starts.append((md.partition, md.offset))
        i = 0
        while not stop.is_set():
            event = final(meeting.meeting_id, i)
            md = await producer.send_and_wait(transcripts, encode(event), key=key)
            meeting.utterances[event.utterance_id] = (md.partition, md.offset)
            if i % 2 == 0:
                message = chat(meeting.meeting_id, i)
                md = await producer.send_and_wait(chats, encode(message), key=key)
                meeting.chats[message.message_id] = (md.partition, md.offset)
            i += 1
            await asyncio.sleep(TICK_S)
        for speaker in SPEAKERS:
            stopped = stream_event(StreamStoppedV1, meeting.meeting_id, speaker, end_sample=(i + 1) * 16000,
                                   reason="end")  # fmt: skip
            await producer.send_and_wait(transcripts, stopped, key=key)
    finally:
        await producer.stop()


@dataclass
class Answer:
    phases: tuple[int, int]  # the outage's phase when the request was sent and when it was answered
    path: str
    status: int
    body: Any
    retry_after: str | None


async def probe_api(reader: Participant, meeting_id: str, outage: Outage, stop: asyncio.Event,
                    answers: list[Answer]) -> None:  # fmt: skip
    """Read the meeting's chat (as ``reader``, its owner) and /healthz every 100 ms, noting each answer and
    the outage's phases."""
    async with reader.client() as http:
        while not stop.is_set():
            for path in (f"/v1/meetings/{meeting_id}/chat", "/healthz"):
                sent = outage.phase
                answer = await http.get(path)
                answers.append(Answer((sent, outage.phase), path, answer.status_code, answer.json(),
                                      answer.headers.get("Retry-After")))  # fmt: skip
            await asyncio.sleep(0.1)


async def committed_and_ends(settings: Settings, topics: list[str]) -> tuple[dict[TopicPartition, int], ...]:
    """The store writer group's committed offsets (absent: none) and the topics' end offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(settings.group_id("store"))
    finally:
        await admin.close()
    committed = {tp: om.offset for tp, om in found.items() if tp.topic in topics}
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return committed, {tp: end for tp, end in ends.items() if end > 0}


async def rows(store: Store, table: str, columns: str, where: str = "") -> list[tuple[Any, ...]]:
    found = await store.aquery(f"SELECT {columns} FROM {store.database}.{table} {where}")  # no FINAL
    return [tuple(r.values()) for r in found]


def restarts_of(task: str) -> float:
    return REGISTRY.get_sample_value("palaver_background_restarts_total", {"task": task}) or 0.0


async def test_killing_the_store_connections_mid_meeting_loses_and_duplicates_nothing(
    infra: Infra, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(infra, tmp_path, f"t{tag}", f"t_{tag}")
    outage = Outage(infra.clickhouse_dsn)
    # The store's own clients (handles to the process's one chdb engine), so closing them leaves the
    # session's shared clients alone.
    pool = ClientPool([connect(infra.clickhouse_dsn) for _ in range(4)], reconnect=outage.reconnect,
                      dsn=infra.clickhouse_dsn)  # fmt: skip
    store = Store(pool, settings.clickhouse_database)
    apply_migrations(store)
    for table in TABLES:
        store.command(f"SYSTEM STOP MERGES {store.database}.{table}")
    await ensure_topics(settings)
    ns = settings.topic_namespace
    topics = [topic_name(ns, spec.name) for spec in (TRANSCRIPTS, DIALOGUES, CHAT)]
    merger = ServiceProcess(settings, "merger", tmp_path / "merger.log")
    merger.start()
    app = create_app(settings, {"api", "store"}, store=store)  # the web process of ``palaver up``
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.api_port,
                                           log_level="warning"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.api_port}"
    stop_meeting, stop_probing = asyncio.Event(), asyncio.Event()
    answers: list[Answer] = []
    restarts_before = restarts_of("store writer")
    producing = probing = None
    try:
        await _wait_http(url)
        await asyncio.to_thread(merger.wait_for_log, "merger ready")
        # The meeting is made through the API (reading its chat takes a member); its transcript and chat
        # events are then the test's own.
        opened = await open_meeting(url, ["reader"], title="store outage")
        reader, meeting = opened.people["reader"], Meeting(opened.meeting_id)
        producing = asyncio.create_task(produce_meeting(settings, meeting, stop_meeting))
        probing = asyncio.create_task(probe_api(reader, meeting.meeting_id, outage, stop_probing, answers))

        async def produced() -> int:
            return len(meeting.utterances)

        # Mid-meeting: rows are arriving.
        where = f"WHERE meeting_id = '{meeting.meeting_id}'"
        await poll(lambda: rows(store, "utterances", "utterance_id", where), lambda r: len(r) >= 20,
                   "the meeting's first utterances stored", timeout_s=60)  # fmt: skip
        closes = await kill_one_at_a_time(pool)
        outage.phase = DOWN
        killing = asyncio.create_task(keep_killing(pool, outage))
        await asyncio.sleep(SETTLE_S)
        outage.phase = SETTLED
        await asyncio.sleep(OUTAGE_S - SETTLE_S)
        outage.phase = AFTER
        closes += await killing
        # The meeting goes on a while after ClickHouse is back, then ends.
        at_outage_end = await produced()
        await poll(produced, lambda n: n >= at_outage_end + 40, "finals after the outage", timeout_s=60)
        stop_meeting.set()
        await producing

        async def caught_up() -> bool:
            _, ends = await committed_and_ends(settings, topics)
            await asyncio.sleep(1)  # the merger may still be sending the last dialogues
            committed, again = await committed_and_ends(settings, topics)
            return ends == again and all(committed.get(tp) == end for tp, end in ends.items())

        await poll(caught_up, bool, "the store writer committed to the end of its topics", timeout_s=120)

        async def answered_after() -> list[Answer]:
            return [a for a in answers if a.phases[0] == AFTER and a.status == 200]

        await poll(answered_after, lambda ok: len(ok) >= 6, "API answers after the outage", timeout_s=60)
        stop_probing.set()
        await probing

        # The outage was real: the writer's inserts failed and were retried; the pool reconnected.
        assert closes > len(pool) and outage.refused > 0 and outage.dropped > 0 and outage.opened > 0
        retried = [r.getMessage() for r in caplog.records if "ClickHouse insert failed" in r.getMessage()]
        assert retried and all("StoreUnavailable" in m for m in retried), retried[:3]

        # Every event's rows exactly once, by id and by Kafka offset.
        transcripts_topic = topics[0]
        utterance_rows = await rows(store, "utterances", "utterance_id, kafka_partition, kafka_offset", where)
        assert Counter(u for u, _, _ in utterance_rows) == Counter(list(meeting.utterances))
        assert Counter((p, o) for _, p, o in utterance_rows) == Counter(meeting.utterances.values())
        chat_rows = await rows(store, "chat_messages", "message_id, kafka_partition, kafka_offset", where)
        assert Counter(m for m, _, _ in chat_rows) == Counter(list(meeting.chats))
        assert Counter((p, o) for _, p, o in chat_rows) == Counter(meeting.chats.values())
        for table in ("participants", "meetings"):
            start_rows = await rows(store, table, "kafka_partition, kafka_offset",
                                    f"{where} AND kafka_topic = '{transcripts_topic}'")  # fmt: skip
            assert Counter(start_rows) == Counter(meeting.starts), table
        # Dialogues: ReplacingMergeTree(revision) keeps one row per dialogue of an insert block, the newest
        # revision, so an older revision inserted with a newer one has no row: none may appear twice, and
        # each dialogue's newest revision (what a read sees) must be there.
        updates = [(r.partition, r.offset, decode_on(DIALOGUES, r.value))
                   for r in await read_all(settings, topics[1])]  # fmt: skip
        updates = [(p, o, e) for p, o, e in updates if isinstance(e, DialogueUpdateV1)]
        assert len({e.dialogue_id for _, _, e in updates}) >= len(meeting.utterances) // 2, "dialogues made"
        newest: dict[str, tuple[int, int, int]] = {}  # dialogue -> (revision, partition, offset)
        for p, o, e in updates:
            newest[e.dialogue_id] = max(newest.get(e.dialogue_id, (-1, 0, 0)), (e.revision, p, o))
        sent = {(e.dialogue_id, e.revision, p, o) for p, o, e in updates}
        dialogue_rows = await rows(store, "dialogues", "dialogue_id, revision, kafka_partition, kafka_offset",
                                   where)  # fmt: skip
        assert set(dialogue_rows) <= sent, "a row for each update at most, from its own offset"
        assert max(Counter(dialogue_rows).values()) == 1, "no dialogue revision twice"
        assert max(Counter((p, o) for _, _, p, o in dialogue_rows).values()) == 1, "no offset twice"
        assert {(d, *newest[d]) for d in newest} <= set(dialogue_rows), "every dialogue's newest revision"

        # The API: 503 with a clear body during the outage, never a 500; 200 after (a client closed by the
        # outage is found broken by the first call it serves after: at most one 503 per client).
        assert {a.status for a in answers} <= {200, 503}, [a for a in answers if a.status != 200][:3]
        down = [a for a in answers if a.phases == (SETTLED, SETTLED)]
        assert len(down) >= 4 and all(a.status == 503 for a in down), [a.status for a in down]
        chat_down = [a for a in down if a.path.endswith("/chat")]
        assert chat_down
        assert all(a.body == {"detail": STORE_UNAVAILABLE_DETAIL} and a.retry_after for a in chat_down)
        health_down = [a for a in down if a.path == "/healthz"]
        assert health_down and all("unavailable" in a.body["checks"]["clickhouse"] for a in health_down)
        assert all(set(a.body["checks"]) == {"clickhouse"} for a in health_down), "no background task failed"
        after = [a for a in answers if a.phases[0] == AFTER]
        assert sum(a.status == 503 for a in after) <= len(pool)
        assert all(a.status == 200 for a in after[-6:])
        async with reader.client() as http:
            chat_path = f"/v1/meetings/{meeting.meeting_id}/chat"
            messages = (await http.get(chat_path, params={"limit": 1000})).json()
            assert {m["message_id"] for m in messages["messages"]} == set(meeting.chats)
            assert (await http.get("/healthz")).status_code == 200

        # Nothing stopped: the merger process never restarted, the web app serves, the store writer never
        # failed.
        assert merger.proc is not None and merger.proc.poll() is None
        assert merger.log.read_text(errors="replace").count("merger ready") == 1
        assert not serving.done()
        assert restarts_of("store writer") == restarts_before
    finally:
        outage.phase = AFTER
        stop_meeting.set()
        stop_probing.set()
        for task in (producing, probing):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
        merger.stop()
        store.close()


async def test_a_batch_that_fails_halfway_is_retried_without_duplicating_what_landed(
    infra: Infra, tmp_path: Path
) -> None:
    """The store writer's batch on three real chdb clients, the last one closed: the look for purged
    meetings and the first table's insert land, the second table's finds its connection gone (StoreUnavailable, which the writer retries). The retry
    inserts the same batch with the same tokens: the table that landed keeps its rows once, the others are
    written on a fresh connection. Counted without FINAL, merges stopped."""
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(infra, tmp_path, f"t{tag}", f"t_{tag}")
    dsn = infra.clickhouse_dsn
    pool = ClientPool([connect(dsn) for _ in range(3)], reconnect=lambda: connect(dsn), dsn=dsn)
    store = Store(pool, settings.clickhouse_database)
    try:
        apply_migrations(store)
        for table in TABLES:
            store.command(f"SYSTEM STOP MERGES {store.database}.{table}")
        ns, meeting_id = settings.topic_namespace, f"halfway-{tag}"
        transcripts, chats = topic_name(ns, TRANSCRIPTS.name), topic_name(ns, CHAT.name)
        values = [(transcripts, stream_event(StreamStartedV1, meeting_id, "alice"))]
        values += [(transcripts, encode(final(meeting_id, 2 * i))) for i in range(5)]
        values += [(chats, encode(chat(meeting_id, i))) for i in range(3)]
        batch = Batch()
        for offset, (topic, value) in enumerate(values):
            record = ConsumerRecord(topic, 0, offset, 0, 0, meeting_id.encode(), value, None, 0, len(value),
                                    ())  # fmt: skip
            batch.add(record, {transcripts: TRANSCRIPTS, chats: CHAT}[topic])
        assert list(batch.rows) == ["participants", "meetings", "utterances", "chat_messages"]

        async def counts() -> dict[str, int]:
            where = f"WHERE meeting_id = '{meeting_id}'"
            return {t: len(await rows(store, t, "kafka_offset", where)) for t in batch.rows}

        # A fresh pool lends its clients in a known turn: the look for purged meetings takes the first,
        # participants go to the second, meetings to the closed third.
        store.close()
        pool = ClientPool([connect(dsn) for _ in range(3)], reconnect=lambda: connect(dsn), dsn=dsn)
        store = Store(pool, settings.clickhouse_database)
        pool.clients[2].close()
        with pytest.raises(StoreUnavailable) as failed:
            await write_batch(store, batch)
        assert isinstance(failed.value, STORE_DOWN)
        assert await counts() == {"participants": 1, "meetings": 0, "utterances": 0, "chat_messages": 0}
        # As the store writer's checkpoint retries it (StoreStep.snapshot).
        await retrying(lambda: write_batch(store, batch), "ClickHouse insert", 60, retry_on=STORE_DOWN)
        assert await counts() == {"participants": 1, "meetings": 1, "utterances": 5, "chat_messages": 3}
    finally:
        store.close()
