"""Dead letters on the real broker: records read from a topic go through ``DlqPolicy`` to its DLQ, the
``palaver dlq`` command (a real process) lists, shows and replays them, the copies arrive on their source
partitions as they were, and a replay is not sent twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.events.registry import TRANSCRIPTS, topic_name
from palaver.settings import Settings
from palaver.streams.clients import ensure_topics, make_consumer, make_producer
from palaver.streams.dlq import DlqLimitExceeded, DlqLimits, DlqPolicy, dlq_topics
from tests.integration.conftest import child_env, make_settings
from tests.integration.infra import Infra, free_port

pytestmark = pytest.mark.integration

BINARY_HEADER = ("trace", b"\x00\x9f\xff")
BAD = [  # partition, key, value, headers, error: what the consumer failed on
    (1, b"meeting-a", b'{"event": "transcript.final", "version": 9}', [("event", b"transcript.final")],
     ValueError("unknown version 9")),
    (4, b"meeting-b", bytes(range(40)), [BINARY_HEADER], ("not JSON", "DecodeError")),
    (1, b"meeting-a", b'{"event": "nope"}', [], ("no meeting_id", None)),
    (2, b"meeting-c", b"{}", [], ("the fourth in a row", None)),
]  # fmt: skip


def palaver(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stack", *argv], env=child_env(settings), capture_output=True,
                          text=True, timeout=120)  # fmt: skip


async def read(
    settings: Settings, topic: str, partitions: set[int], count: int, start: int = 0
) -> list[ConsumerRecord]:
    """The first ``count`` records from ``start`` on of ``partitions``, in (partition, offset) order."""
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start)
        records: list[ConsumerRecord] = []
        async with asyncio.timeout(60):
            while len(records) < count:
                for part in (await consumer.getmany(*tps, timeout_ms=500)).values():
                    records.extend(part)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def ends(settings: Settings, topic: str) -> dict[int, int]:
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(TRANSCRIPTS.partitions)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def test_dead_letters_are_listed_shown_and_replayed_once(infra: Infra, tmp_path: Path) -> None:
    settings = make_settings(infra, tmp_path, f"t{uuid.uuid4().hex[:8]}", "unused")
    await ensure_topics(settings)
    source = topic_name(settings.topic_namespace, TRANSCRIPTS.name)
    producer = make_producer(settings)
    await producer.start()
    try:
        for partition, key, value, headers, _ in BAD:
            await producer.send_and_wait(source, value, key=key, headers=headers, partition=partition)
        records = {
            (r.partition, r.key, r.value): r for r in await read(settings, source, {1, 2, 4}, len(BAD))
        }
        policy = DlqPolicy(
            producer, dlq_topics(settings, TRANSCRIPTS), "merger", DlqLimits(max_consecutive=3)
        )
        for partition, key, value, _, error in BAD[:3]:
            args = (error,) if isinstance(error, Exception) else error
            await policy.dead_letter(records[(partition, key, value)], *args)
        fourth = records[(BAD[3][0], BAD[3][1], BAD[3][2])]
        with pytest.raises(DlqLimitExceeded, match="4 bad messages in a row"):
            await policy.dead_letter(fourth, "the fourth in a row")
    finally:
        await producer.stop()
    originals = [records[(p, k, v)] for p, k, v, _, _ in BAD[:3]]

    listed = palaver(settings, "dlq", "list", "transcripts")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 4, "a header and the three dead letters: the fourth stopped the consumer instead"
    for offset, (line, record, error_class) in enumerate(zip(lines[1:], originals, ["ValueError", "DecodeError",
                                                                                     "InvalidMessage"], strict=True)):  # fmt: skip
        assert line.split()[:4] == [
            str(offset),
            f"{source}[{record.partition}]@{record.offset}",
            "merger",
            error_class,
        ]
        assert line.split()[5] == "no"  # not replayed
    assert "unknown version 9" in lines[1]

    shown = palaver(settings, "dlq", "show", "transcripts.dlq", "--offset", "0")
    assert shown.returncode == 0, shown.stderr
    assert '  "version": 9' in shown.stdout and "event: transcript.final" in shown.stdout
    assert "error:          ValueError: unknown version 9" in shown.stdout
    newest = palaver(settings, "dlq", "show", "transcripts")
    assert "error:          InvalidMessage: no meeting_id" in newest.stdout
    binary = palaver(settings, "dlq", "show", "transcripts", "--offset", "1").stdout
    assert "trace: 0x009fff (3 bytes)" in binary and "value: 40 bytes, not JSON" in binary

    one = palaver(settings, "dlq", "replay", "transcripts", "--offset", "1")
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith(f"replayed 1 dead letter(s) from {source}.dlq to {source}")
    rest = palaver(settings, "dlq", "replay", "transcripts", "--all")
    assert "replayed 2 dead letter(s)" in rest.stdout and "1 replayed before, skipped" in rest.stdout
    again = palaver(settings, "dlq", "replay", "transcripts", "--all")
    assert again.returncode == 0 and again.stdout.startswith("replayed 0 dead letter(s)"), again.stdout
    refused = palaver(settings, "dlq", "replay", "transcripts", "--offset", "1")
    assert refused.returncode == 2 and f"palaver: {source}.dlq@1 was replayed already" in refused.stderr

    # Every dead letter came back once, to its own partition, as it was, saying where from.
    assert await ends(settings, source) == {0: 0, 1: 4, 2: 1, 3: 0, 4: 2, 5: 0}, (
        "3 copies after the 4 records"
    )
    copies = [r for r in await read(settings, source, {1, 2, 4}, len(BAD) + 3) if r.headers[-1:] and
              r.headers[-1][0] == "dlq.replayed.from"]  # fmt: skip
    by_origin = {dict(r.headers)["dlq.replayed.from"]: r for r in copies}
    assert set(by_origin) == {f"{source}.dlq@{offset}".encode() for offset in range(3)}
    for offset, ((partition, key, value, headers, _), original) in enumerate(
        zip(BAD[:3], originals, strict=True)
    ):
        copy = by_origin[f"{source}.dlq@{offset}".encode()]
        assert (copy.partition, copy.key, copy.value) == (partition, key, value)
        assert list(copy.headers) == [
            *original.headers,
            ("dlq.replayed.from", f"{source}.dlq@{offset}".encode()),
        ]
        assert list(original.headers) == headers
    assert all(
        line.split()[5] == "yes"
        for line in palaver(settings, "dlq", "list", "transcripts").stdout.splitlines()[1:]
    )

    forced = palaver(settings, "dlq", "replay", "transcripts", "--offset", "1", "--force")
    assert forced.returncode == 0 and forced.stdout.startswith("replayed 1 dead letter(s)"), forced.stderr
    assert (await ends(settings, source))[4] == 3, "the forced copy follows on partition 4"


async def test_dlq_command_errors_exit_2_with_a_palaver_line(infra: Infra, tmp_path: Path) -> None:
    settings = make_settings(infra, tmp_path, f"t{uuid.uuid4().hex[:8]}", "unused")
    missing = palaver(settings, "dlq", "list", "dialogues")
    assert missing.returncode == 2 and "does not exist (palaver topics --create creates it)" in missing.stderr
    await ensure_topics(settings)
    empty = palaver(settings, "dlq", "show", "dialogues.dlq")
    assert (empty.returncode, empty.stderr.strip()) == (2, f"palaver: {settings.topic_namespace}.dialogues.dlq is "
                                                           "empty: no dead letters")  # fmt: skip
    nowhere = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    down = palaver(nowhere, "dlq", "replay", "transcripts", "--all")
    assert down.returncode == 2 and down.stderr.startswith(
        f"palaver: Kafka at {nowhere.bootstrap_servers} does not answer"
    )
    assert "Traceback" not in down.stderr + missing.stderr
