"""The merger's real step (merger/app.py) on the real consumer runner over the in-memory broker: transcript
events in, dialogue events out; its state in the changelog before the input offset is committed; a second
merger resumes from the commit and the restored state; a poison is dead-lettered."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from merger.app import RUNNER, MergeStep
from merger.processor import apply, new_state
from palaver import ids
from palaver.events import (
    DialogueUpdateV1,
    StreamStartedV1,
    StreamStoppedV1,
    TranscriptFinalV1,
    decode,
    encode,
)
from palaver.events.base import EventV
from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker, MemoryConsumer
from tests.runner_harness import Running, consumer_factory, start, until

RATE = 16000
RUN = "whisper:tiny.en"
SETTINGS = Settings()
FAST = dataclasses.replace(RUNNER, checkpoint_interval_s=0.0, poll_ms=5)


def _final(meeting: str, speaker: str, start_ms: int, end_ms: int, text: str) -> TranscriptFinalV1:
    stream = ids.stream_id(meeting, speaker)
    uid = ids.utterance_id(stream, start_ms * RATE // 1000)
    return TranscriptFinalV1(
        event_id=ids.event_id("transcript.final", uid, RUN), utterance_id=uid, meeting_id=meeting,
        speaker_id=speaker, stream_id=stream, start_ms=start_ms, end_ms=end_ms,
        start_sample=start_ms * RATE // 1000, end_sample=end_ms * RATE // 1000, sample_rate=RATE, text=text,
        confidence=0.9, language="en", engine="whisper", model="tiny.en", run=RUN,
    )  # fmt: skip


def _started(meeting: str, speaker: str) -> StreamStartedV1:
    stream = ids.stream_id(meeting, speaker)
    return StreamStartedV1(event_id=ids.event_id("stream.started", stream, 0), meeting_id=meeting,
                           speaker_id=speaker, stream_id=stream, sample_rate=RATE, stream_start_ms=0,
                           run=RUN)  # fmt: skip


def _stopped(meeting: str, speaker: str, at_ms: int) -> StreamStoppedV1:
    stream = ids.stream_id(meeting, speaker)
    return StreamStoppedV1(event_id=ids.event_id("stream.stopped", stream, at_ms), meeting_id=meeting,
                           speaker_id=speaker, stream_id=stream, stream_start_ms=0,
                           end_sample=at_ms * RATE // 1000, reason="end", run=RUN)  # fmt: skip


def _conversation(meeting: str) -> tuple[list[EventV], list[EventV]]:
    """A meeting's transcript events in two parts: after the first, one dialogue is final and two are live;
    the second makes every dialogue final."""
    first: list[EventV] = [
        _started(meeting, "alice"),
        _started(meeting, "bob"),
        _final(meeting, "alice", 0, 1000, "Hello."),
        _final(meeting, "bob", 1200, 2000, "Hi Alice."),
        _final(meeting, "alice", 2500, 3500, "Let's start."),
    ]
    second: list[EventV] = [
        _final(meeting, "bob", 4000, 5000, "Ok."),
        _final(meeting, "alice", 5200, 5800, "Good."),
        _stopped(meeting, "alice", 6000),
        _stopped(meeting, "bob", 6000),
    ]
    return first, second


MEETINGS = ("m1", "m2")
PARTS = {m: _conversation(m) for m in MEETINGS}


def _send(broker: MemoryBroker, events: list[EventV]) -> None:
    for event in events:
        broker.append("transcripts", encode(event), key=event.meeting_id.encode())  # type: ignore[attr-defined]


def _fold(events: list[EventV]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The pure merger over ``events`` (of one meeting): its state and every event it publishes, by id."""
    state, published = new_state(), {}
    for event in events:
        state, out = apply(event.meeting_id, state, event, SETTINGS.merger_pause_ms)  # type: ignore[attr-defined]
        published.update({u.event_id: encode(u) for u in out})
    return state, published


def _expected() -> dict[str, bytes]:
    expected: dict[str, bytes] = {}
    for first, second in PARTS.values():
        expected.update(_fold(first + second)[1])
    return expected


def _outputs(broker: MemoryBroker) -> list[bytes]:
    return [r.value for r in broker.records("dialogues")]


def _latest(values: list[bytes]) -> dict[str, tuple[int, str, str]]:
    """What a reader keeps: the newest revision of each dialogue (revision, status, text)."""
    best: dict[str, tuple[int, str, str]] = {}
    for value in values:
        event = decode(value)
        if (
            isinstance(event, DialogueUpdateV1)
            and event.revision > best.get(event.dialogue_id, (0, "", ""))[0]
        ):
            best[event.dialogue_id] = (event.revision, event.status, event.text)
    return best


def _committed_all(broker: MemoryBroker) -> bool:
    """Every transcripts record is committed by the merger's group."""
    for partition, log in enumerate(broker.logs.get("transcripts", [])):
        found = broker.committed.get(("merger", _tp("transcripts", partition)))
        if log and (found is None or found.offset < len(log)):
            return False
    return True


def _tp(topic: str, partition: int) -> Any:
    from aiokafka import TopicPartition

    return TopicPartition(topic, partition)


def _merger(broker: MemoryBroker, config: Any = FAST) -> Running:
    made: list[MemoryConsumer] = []
    producer = broker.producer()
    step = MergeStep(SETTINGS, producer, consumer_factory=consumer_factory(broker, made))  # type: ignore[arg-type]
    return start(broker, SETTINGS, config, step, producer, made)


async def test_transcript_events_become_dialogue_updates_on_the_meetings_partition() -> None:
    broker = MemoryBroker()
    run = _merger(broker)
    for first, second in PARTS.values():
        _send(broker, first + second)
    await until(lambda: _committed_all(broker), "every input committed", run.task)
    await run.finish()

    expected = _expected()
    outputs = _outputs(broker)
    assert outputs, "the merger published nothing"
    for value in outputs:
        event = decode(value)
        assert expected.get(event.event_id) == value, (
            "each published event is the pure merger's, byte for byte"
        )
    assert _latest(outputs) == _latest(list(expected.values()))
    assert all(status == "final" for _, status, _ in _latest(outputs).values())
    for record in broker.records("dialogues"):
        source_topic, source_partition, _ = dict(record.headers)["palaver.source"].decode().split(":")
        assert (source_topic, int(source_partition)) == ("transcripts", record.partition)
        assert record.key == decode(record.value).meeting_id.encode()  # type: ignore[attr-defined]


async def test_the_changelog_holds_the_state_of_every_committed_offset_before_the_commit() -> None:
    broker = MemoryBroker()
    run = _merger(broker, dataclasses.replace(FAST, batch_max=1))  # a checkpoint after every event
    for first, second in PARTS.values():
        _send(broker, first + second)
    await until(lambda: _committed_all(broker), "every input committed", run.task)
    await run.finish()

    commits = [(i, e) for i, e in enumerate(broker.history) if e[0] == "commit" and e[2] == "transcripts"]
    assert len(commits) >= len(broker.records("transcripts")) // 2
    for index, (_, _, _, partition, offset) in commits:
        inputs = [decode(r.value) for r in broker.logs["transcripts"][partition][:offset]]
        written = [e[3] for e in broker.history[:index] if e[:3] == ("append", "merger.state", partition)]
        changelog = broker.logs["merger.state"][partition]
        for meeting in {e.meeting_id for e in inputs}:  # type: ignore[attr-defined]
            state, _ = _fold([e for e in inputs if e.meeting_id == meeting])  # type: ignore[attr-defined]
            newest = [changelog[o] for o in written if changelog[o].key == meeting.encode()][-1]
            assert orjson.loads(newest.value) == orjson.loads(orjson.dumps(state)), (
                f"the changelog lags the commit of transcripts[{partition}]@{offset} for {meeting}"
            )


async def test_a_second_merger_resumes_from_the_commit_and_the_restored_state() -> None:
    broker = MemoryBroker()
    first_run = _merger(broker)
    for first, _ in PARTS.values():
        _send(broker, first)
    await until(lambda: _committed_all(broker), "the first parts committed", first_run.task)
    await first_run.finish()
    before = _outputs(broker)
    finished = {d for d, (_, status, _) in _latest(before).items() if status == "final"}
    assert finished, "some dialogue is final after the first part"

    for _, second in PARTS.values():
        _send(broker, second)
    second_run = _merger(broker)
    await until(lambda: _committed_all(broker), "the second parts committed", second_run.task)
    await second_run.finish()
    after = _outputs(broker)[len(before) :]

    assert any(c._group is None for c in second_run.consumers), (
        "the second merger restored from the changelog"
    )
    expected = _expected()
    for value in after:
        event = decode(value)
        assert expected.get(event.event_id) == value, "the same revisions as one merger over all the input"
        assert getattr(event, "dialogue_id", None) not in finished, (
            "a dialogue already final is published again"
        )
    assert len({decode(v).event_id for v in before + after}) == len(before + after), (
        "an event published twice"
    )
    assert _latest(before + after) == _latest(list(expected.values()))


async def test_a_merger_that_crashed_before_its_commit_is_resumed_without_other_revisions() -> None:
    broker = MemoryBroker(partitions=1)
    first, second = PARTS["m1"]
    first_run = _merger(broker, dataclasses.replace(FAST, batch_max=1))
    _send(broker, first)
    await until(lambda: _committed_all(broker), "the first part committed", first_run.task)
    first_run.consumer.fail_next_commits(1)  # the state of the next event is written, its commit is lost
    _send(broker, second)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(first_run.task, 5)
    committed = broker.committed[("merger", _tp("transcripts", 0))].offset
    assert committed == len(first), "nothing committed after the failed commit"
    newest = orjson.loads(broker.logs["merger.state"][0][-1].value)
    assert newest != orjson.loads(orjson.dumps(_fold(first)[0])), "the changelog is ahead of the commit"
    before = _outputs(broker)

    second_run = _merger(broker)
    await until(lambda: _committed_all(broker), "everything committed", second_run.task)
    await second_run.finish()
    after = _outputs(broker)[len(before) :]

    expected = _fold(first + second)[1]
    for value in before + after:
        assert expected.get(decode(value).event_id) == value, "a repeat is the same revision, byte for byte"
    assert _latest(before + after) == _latest(list(expected.values()))
    finished_before = {d for d, (_, status, _) in _latest(before).items() if status == "final"}
    for value in after:
        event = decode(value)
        if isinstance(event, DialogueUpdateV1) and event.dialogue_id in finished_before:
            assert event.revision == _latest(before)[event.dialogue_id][0], (
                "a final dialogue got a new revision"
            )


async def test_a_poison_is_dead_lettered_and_the_rest_merged() -> None:
    broker = MemoryBroker(partitions=1)
    first, second = PARTS["m1"]
    stray = DialogueUpdateV1.model_validate(orjson.loads(next(iter(_expected().values()))))
    run = _merger(broker)
    _send(broker, first)
    broker.append("transcripts", encode(stray), key=b"m1")  # a dialogue event: it belongs on dialogues
    broker.append("transcripts", b"{not json", key=b"m1")
    _send(broker, second)
    await until(lambda: _committed_all(broker), "every input committed", run.task)
    await run.finish()

    letters = broker.records("transcripts.dlq")
    assert [r.value for r in letters] == [encode(stray), b"{not json"]
    assert {dict(r.headers)["dlq.error.class"] for r in letters} == {b"DecodeError"}
    assert _latest(_outputs(broker)) == _latest(list(_fold(first + second)[1].values()))
