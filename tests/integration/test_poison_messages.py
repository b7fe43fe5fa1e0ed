"""A message that decodes but makes processing raise, on every topic the merger and the store writer consume,
against the real broker and chdb: it lands in its topic's dead-letter queue once per consuming service,
with provenance headers and its bytes unchanged, and the meeting's other events are processed. The
services run their real code on the consumer runner; the store writer is restarted once to show that a
dead-lettered message is committed (not dead-lettered again).

The poisons are what a producer's bug would send: an event that does not belong on its topic, and
well-formed events whose timestamps ClickHouse cannot hold (the store's mapping raises on them).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from api.live import LiveHub
from palaver.events import AudioFrameV1, StreamStoppedV1, encode
from palaver.events.registry import (
    AUDIO_FRAMES,
    CHAT,
    DIALOGUES,
    EDITS,
    TRANSCRIPTS,
    USERS,
    TopicSpec,
    topic_name,
)
from palaver.settings import Settings
from palaver.store import Store
from palaver.store.migrations import apply_migrations
from palaver.store.writer import run_store_writer
from palaver.streams.clients import ensure_topics, headers_dict, make_consumer, make_producer
from tests.integration.conftest import ServiceProcess, make_settings, poll
from tests.integration.infra import Infra

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "palaver" / "events" / "examples"
EXAMPLE_MEETING = "standup-2024-06-03"
FAR_FUTURE_MS = 10**17  # a valid integer, but a date no DateTime64 column holds


def example(topic: str, event: str, name: str, meeting_id: str, **changes: Any) -> bytes:
    text = (EXAMPLES / topic / event / f"{name}.json").read_text().replace(EXAMPLE_MEETING, meeting_id)
    return orjson.dumps({**json.loads(text), **changes})


def plan(tag: str) -> dict[str, tuple[str, list[bytes], int]]:
    """Topic -> (meeting key, messages in order, index of the poison among them)."""
    m = {name: f"poison-{name}-{tag}" for name in ("t", "d", "e", "u", "c")}
    user = f"usr_{tag}"
    return {
        TRANSCRIPTS.name: (m["t"], [
            example("transcripts", "stream.started-v1", "alice", m["t"]),
            example("transcripts", "transcript.final-v1", "alice-greeting", m["t"]),
            example("users", "user.changed-v1", "alice-created", m["t"]),  # not a transcripts event
            example("transcripts", "transcript.final-v1", "alice-plan", m["t"]),
        ], 2),
        DIALOGUES.name: (m["d"], [
            example("dialogues", "dialogue.update-v1", "live-alice", m["d"]),
            example("chat", "chat.message-v1", "alice-shares-slides", m["d"]),  # not a dialogues event
            example("dialogues", "dialogue.update-v1", "live-bob", m["d"]),
        ], 1),
        EDITS.name: (m["e"], [
            example("edits", "dialogue.edited-v1", "carol-fixes-punctuation", m["e"]),
            example("chat", "chat.message-v1", "alice-shares-slides", m["e"]),  # not an edits event
            example("edits", "transcript.edited-v1", "alice-rewrites", m["e"]),
        ], 1),
        USERS.name: (user, [
            example("users", "user.changed-v1", "alice-created", "-", user_id=f"{user}_a"),
            example("users", "user.changed-v1", "alice-created", "-", user_id=f"{user}_b", created_at_ms=FAR_FUTURE_MS),
            example("users", "user.changed-v1", "alice-created", "-", user_id=f"{user}_c"),
        ], 1),
        CHAT.name: (m["c"], [
            example("chat", "chat.message-v1", "alice-shares-slides", m["c"], message_id=f"msg_{tag}_1"),
            example("chat", "chat.message-v1", "alice-shares-slides", m["c"], message_id=f"msg_{tag}_2",
                    sent_at_ms=FAR_FUTURE_MS),
            example("chat", "chat.message-v1", "alice-shares-slides", m["c"], message_id=f"msg_{tag}_3"),
        ], 1),
    }


# Topic -> (table the store writes its events to, the consumers that dead-letter its poison).
STORED = {TRANSCRIPTS.name: ("utterances", {"merger", "store"}), DIALOGUES.name: ("dialogues", {"store"}),
          EDITS.name: ("edits", {"store"}), USERS.name: ("users", {"store"}), CHAT.name: ("chat_messages", {"store"})}  # fmt: skip


async def read_all(settings: Settings, topic: str) -> list[Any]:
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def stored_offsets(store: Store, table: str, topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of the messages of ``topic`` that have rows in ``table``."""
    rows = await store.aquery(f"SELECT DISTINCT kafka_partition AS p, kafka_offset AS o FROM {store.database}.{table} "
                              "WHERE kafka_topic = {t:String}", {"t": topic})  # fmt: skip
    return {(r["p"], r["o"]) for r in rows}


async def test_a_poison_message_is_dead_lettered_once_per_consumer_and_the_rest_goes_on(
    infra: Infra, clickhouse_client: object, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(infra, tmp_path, f"t{tag}", f"t_{tag}")
    store = Store(clickhouse_client, settings.clickhouse_database)
    apply_migrations(store)
    await ensure_topics(settings)
    ns = settings.topic_namespace
    merger = ServiceProcess(settings, "merger", tmp_path / "merger.log")
    merger.start()
    stop = asyncio.Event()
    hub = LiveHub(settings)
    hub_task = asyncio.create_task(hub.run(stop))
    writer = asyncio.create_task(run_store_writer(settings, store, stop))
    producer = make_producer(settings)
    await producer.start()
    try:
        await asyncio.to_thread(merger.wait_for_log, "merger ready")
        await asyncio.wait_for(hub.ready.wait(), 30)
        live = hub.subscribe(plan(tag)[DIALOGUES.name][0])
        sent: dict[str, list[Any]] = {}  # topic -> record metadata, in order
        for name, (key, messages, _) in plan(tag).items():
            sent[name] = [await producer.send_and_wait(topic_name(ns, name), m, key=key.encode()) for m in messages]

        def good(name: str) -> set[tuple[int, int]]:
            poison = plan(tag)[name][2]
            return {(md.partition, md.offset) for i, md in enumerate(sent[name]) if i != poison and (name != TRANSCRIPTS.name or i != 0)}

        for name, (table, _) in STORED.items():
            topic = topic_name(ns, name)
            await poll(lambda t=table, tp=topic: stored_offsets(store, t, tp), lambda got, n=name: good(n) <= got,
                       f"the good {name} events stored around the poison")  # fmt: skip
        # The merger went on past the poison: the utterance after it is in a dialogue.
        later_utterance = json.loads(plan(tag)[TRANSCRIPTS.name][1][3])["utterance_id"]
        await poll(lambda: store.aquery(f"SELECT dialogue_id FROM {store.database}.dialogues WHERE has(utterance_ids, "
                                        "{u:String})", {"u": later_utterance}), bool, "a dialogue after the poison")  # fmt: skip
        # The live hub skipped the poison on the dialogues topic and delivered the events around it.
        delivered = [orjson.loads((await asyncio.wait_for(live.queue.get(), 30)).text) for _ in range(2)]  # type: ignore[union-attr]
        assert [(m["type"], m["speaker_id"]) for m in delivered] == [("dialogue", "alice"), ("dialogue", "bob")]

        # A restart of the store writer reads on from its commits: nothing is dead-lettered twice.
        stop.set()
        await asyncio.wait_for(writer, 30)
        stop.clear()
        writer = asyncio.create_task(run_store_writer(settings, store, stop))
        key, messages, _ = plan(tag)[CHAT.name]
        marker = await producer.send_and_wait(topic_name(ns, CHAT.name), example(
            "chat", "chat.message-v1", "alice-shares-slides", key, message_id=f"msg_{tag}_4"), key=key.encode())  # fmt: skip
        await poll(lambda: stored_offsets(store, "chat_messages", topic_name(ns, CHAT.name)),
                   lambda got: (marker.partition, marker.offset) in got, "a chat message after the restart")  # fmt: skip

        for name, (table, services) in STORED.items():
            spec: TopicSpec = {s.name: s for s in (TRANSCRIPTS, DIALOGUES, EDITS, USERS, CHAT)}[name]
            assert spec.dlq is not None
            _, messages, poison = plan(tag)[name]
            dead = await read_all(settings, topic_name(ns, spec.dlq))
            assert sorted(headers_dict(r.headers)["dlq.service"].decode() for r in dead) == sorted(services), name
            for record in dead:
                headers = headers_dict(record.headers)
                assert record.value == messages[poison], name
                assert record.key == plan(tag)[name][0].encode()
                assert headers["dlq.topic"].decode() == topic_name(ns, name)
                assert int(headers["dlq.partition"]) == sent[name][poison].partition
                assert int(headers["dlq.offset"]) == sent[name][poison].offset
            assert (sent[name][poison].partition, sent[name][poison].offset) not in await stored_offsets(store, table, topic_name(ns, name))
    finally:
        stop.set()
        await producer.stop()
        await asyncio.wait_for(asyncio.gather(writer, hub_task, return_exceptions=True), 30)
        merger.stop()


async def test_a_poison_on_the_audio_topic_is_dead_lettered_once_and_the_stream_is_transcribed(
    infra: Infra, clickhouse_client: object, tmp_path: Path
) -> None:
    """The STT worker (real Whisper, on the consumer runner) meets a transcript event on the audio topic
    (it decodes, but it does not belong there) between a stream's start and its audio: the event is
    dead-lettered once, and the stream's lifecycle and audio after it are handled."""
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(infra, tmp_path, f"t{tag}", f"t_{tag}")
    await ensure_topics(settings)
    ns = settings.topic_namespace
    meeting = f"poison-audio-{tag}"
    stream = f"{meeting}/alice"
    key = stream.encode()
    audio = topic_name(ns, AUDIO_FRAMES.name)
    stt = ServiceProcess(settings, "stt", tmp_path / "stt.log")
    stt.start()
    producer = make_producer(settings)
    await producer.start()
    try:
        await asyncio.to_thread(stt.wait_for_log, "stt assigned")
        started = example("audio.frames", "stream.started-v1", "alice", meeting)
        poison = example("transcripts", "transcript.final-v1", "alice-greeting", meeting)
        await producer.send_and_wait(audio, started, key=key, headers=[("event", b"stream.started"), ("version", b"1")])
        bad = await producer.send_and_wait(audio, poison, key=key,
                                           headers=[("event", b"transcript.final"), ("version", b"1")])  # fmt: skip
        for first in range(0, 16000, 1600):  # one second of silence in 100 ms frames
            frame = AudioFrameV1(meeting, "alice", stream, 16000, first, 0, bytes(3200))
            await producer.send_and_wait(audio, frame.pcm, key=key, headers=frame.kafka_headers())
        stopped = StreamStoppedV1(meeting_id=meeting, speaker_id="alice", stream_id=stream, end_sample=16000, stream_start_ms=0,
                                  reason="end", event_id=f"evt_{tag}")  # fmt: skip
        await producer.send_and_wait(audio, encode(stopped), key=key,
                                     headers=[("event", b"stream.stopped"), ("version", b"1")])  # fmt: skip

        async def forwarded() -> list[str]:
            records = await read_all(settings, topic_name(ns, TRANSCRIPTS.name))
            return [json.loads(r.value)["event"] for r in records if json.loads(r.value).get("stream_id") == stream]

        events = await poll(forwarded, lambda got: "stream.stopped" in got, "the stream's stop, after the poison")
        assert events[0] == "stream.started" and events[-1] == "stream.stopped", events
        assert AUDIO_FRAMES.dlq is not None
        dead = await read_all(settings, topic_name(ns, AUDIO_FRAMES.dlq))
        assert len(dead) == 1, dead
        headers = headers_dict(dead[0].headers)
        assert dead[0].value == poison and dead[0].key == key
        assert headers["dlq.service"] == b"stt" and int(headers["dlq.offset"]) == bad.offset
        assert headers["dlq.error.class"] == b"DecodeError", headers
    finally:
        await producer.stop()
        stt.stop()
