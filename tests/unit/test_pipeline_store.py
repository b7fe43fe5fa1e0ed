"""The store writer's real step (palaver/store/writer.py) on the real consumer runner over the in-memory
broker, with a store that records what it is asked: every topic's rows inserted with their dedup token
before the offsets are committed; a ClickHouse that fails is retried with the same token and nothing is
committed meanwhile, or, past the retry budget, the writer stops without committing; a poison is
dead-lettered."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from clickhouse_connect.driver.exceptions import OperationalError

import palaver.events
from palaver.events import decode, encode
from palaver.settings import Settings
from palaver.store.rows import COLUMNS, Provenance, rows_for
from palaver.store.writer import StoreStep, runner_config
from palaver.streams.memory_broker import MemoryBroker
from tests.runner_harness import Running, start, until

EXAMPLES = Path(palaver.events.__file__).parent / "examples"
TOPICS = ("transcripts", "dialogues", "edits", "users", "chat", "meetings", "sessions", "insights")


@dataclasses.dataclass(frozen=True)
class Insert:
    table: str
    rows: tuple[tuple[Any, ...], ...]
    columns: tuple[str, ...]
    token: str
    failed: bool


class RecordingStore:
    """A ``Store`` that keeps every call; ``fail_next(n)`` makes the next n inserts raise ClickHouse's
    OperationalError (unreachable). Successful inserts and commands are also written to ``history`` (the
    broker's), so they can be ordered against commits."""

    database = "palaver_test"

    def __init__(self, history: list[tuple[Any, ...]]) -> None:
        self.history = history
        self.attempts: list[Insert] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.queries: list[tuple[str, dict[str, Any]]] = []
        self._failures = 0

    def fail_next(self, inserts: int) -> None:
        self._failures = inserts

    @property
    def inserts(self) -> list[Insert]:
        return [a for a in self.attempts if not a.failed]

    async def ainsert(
        self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], token: str
    ) -> None:
        failed = self._failures > 0
        self.attempts.append(Insert(table, tuple(tuple(r) for r in rows), tuple(columns), token, failed))
        if failed:
            self._failures -= 1
            raise OperationalError("ClickHouse unreachable (recording store)")
        self.history.append(("insert", table, token))

    async def aquery(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.queries.append((sql, parameters or {}))
        return []

    async def acommand(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.commands.append((sql, parameters or {}))
        self.history.append(("command", (parameters or {}).get("m"), (parameters or {}).get("run")))


def _examples(topic: str) -> list[bytes]:
    """The topic's example events, as the codec writes them."""
    return [encode(decode(path.read_bytes())) for path in sorted((EXAMPLES / topic).glob("*/*.json"))]


def _append_examples(broker: MemoryBroker) -> None:
    for topic in TOPICS:
        for value in _examples(topic):
            broker.append(topic, value, key=b"k")


def _expected_rows(broker: MemoryBroker) -> Counter[tuple[str, str]]:
    """Each table's rows (as text: a row may hold lists) of the records on ``broker``."""
    expected: Counter[tuple[str, str]] = Counter()
    for topic in TOPICS:
        for r in broker.records(topic):
            mapped = rows_for(decode(r.value), Provenance(topic, r.partition, r.offset))
            expected.update((table, repr(row)) for table, row in mapped)
    return expected


def _inserted_rows(store: RecordingStore) -> Counter[tuple[str, str]]:
    return Counter((i.table, repr(row)) for i in store.inserts for row in i.rows)


def _all_committed(broker: MemoryBroker) -> bool:
    for topic in TOPICS:
        for partition, log in enumerate(broker.logs.get(topic, [])):
            found = broker.committed.get(("store", TopicPartition(topic, partition)))
            if log and (found is None or found.offset < len(log)):
                return False
    return True


def _writer(broker: MemoryBroker, store: RecordingStore, settings: Settings | None = None) -> Running:
    settings = settings or Settings(store_batch_wait_ms=5)
    step = StoreStep(settings, store, retry_first_delay_s=0.001)  # type: ignore[arg-type]
    return start(broker, settings, runner_config(settings), step)


def _token_spans(token: str) -> dict[tuple[str, int], tuple[int, int]]:
    """``table|topic:partition:first-last,...`` -> {(topic, partition): (first, last)}."""
    spans = {}
    for part in token.split("|", 1)[1].split(","):
        topic, partition, offsets = part.rsplit(":", 2)
        first, last = offsets.split("-")
        spans[(topic, int(partition))] = (int(first), int(last))
    return spans


async def test_rows_of_every_topic_are_inserted_with_their_dedup_token_before_the_commit() -> None:
    broker = MemoryBroker(partitions=1)
    store = RecordingStore(broker.history)
    _append_examples(broker)
    run = _writer(broker, store)
    await until(lambda: _all_committed(broker), "every record committed", run.task)
    await run.finish()

    assert _inserted_rows(store) == _expected_rows(broker)
    assert {i.table for i in store.inserts} == set(COLUMNS), "every table gets rows from the examples"
    for insert in store.inserts:
        assert insert.columns == COLUMNS[insert.table]
        assert insert.token.startswith(f"{insert.table}|")
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        for topic, partition, offset in (row[-3:] for row in insert.rows):  # the rows' provenance
            first, last = spans.get((topic, partition), (offset, offset))
            spans[(topic, partition)] = (min(first, offset), max(last, offset))
        assert _token_spans(insert.token) == spans, "the token names the offsets its rows come from"

    # Every commit comes after the inserts of the rows of every offset it covers.
    for index, entry in enumerate(broker.history):
        if entry[0] != "commit":
            continue
        _, _, topic, partition, offset = entry
        done = [e for e in broker.history[:index] if e[0] == "insert"]
        for r in broker.logs[topic][partition][:offset]:
            for table, _ in rows_for(decode(r.value), Provenance(topic, partition, r.offset)):
                assert any(
                    t == table and _covers(token, topic, partition, r.offset) for _, t, token in done
                ), f"{topic}[{partition}]@{r.offset} committed before its {table} row was inserted"
    watermark = decode(_examples("dialogues")[-1])
    assert ("command", watermark.meeting_id, watermark.run) in broker.history, "the transcript was rebuilt"  # type: ignore[attr-defined]


def _covers(token: str, topic: str, partition: int, offset: int) -> bool:
    first, last = _token_spans(token).get((topic, partition), (1, 0))
    return first <= offset <= last


async def test_a_failed_insert_is_retried_with_the_same_token_and_nothing_is_committed_before() -> None:
    broker = MemoryBroker(partitions=1)
    store = RecordingStore(broker.history)
    store.fail_next(2)
    run = _writer(broker, store, Settings(store_batch_wait_ms=5, store_retry_budget_s=30))
    for value in _examples("transcripts"):
        broker.append("transcripts", value, key=b"k")
    await until(lambda: _all_committed(broker), "every record committed", run.task)
    await run.finish()

    failed = [a for a in store.attempts if a.failed]
    assert len(failed) == 2
    for attempt in failed:
        [retried] = [i for i in store.inserts if i.table == attempt.table and i.rows == attempt.rows]
        assert retried.token == attempt.token, "a retry carries the same dedup token"
    first_commit = next(i for i, e in enumerate(broker.history) if e[0] == "commit")
    inserted_tables = {e[1] for e in broker.history[:first_commit] if e[0] == "insert"}
    assert inserted_tables >= {a.table for a in failed}, "committed before the failed insert succeeded"


async def test_a_store_down_past_the_retry_budget_stops_the_writer_without_committing() -> None:
    broker = MemoryBroker(partitions=1)
    store = RecordingStore(broker.history)
    store.fail_next(1)
    run = _writer(broker, store, Settings(store_batch_wait_ms=5, store_retry_budget_s=0))
    for value in _examples("transcripts"):
        broker.append("transcripts", value, key=b"k")
    with pytest.raises(OperationalError):
        await asyncio.wait_for(run.task, 5)

    assert [e for e in broker.history if e[0] == "commit"] == []
    assert store.inserts == [] and len(store.attempts) == 1
    assert broker.records("transcripts.dlq") == [], "a store that is down is no bad message"


async def test_a_poison_is_dead_lettered_and_the_rest_inserted() -> None:
    broker = MemoryBroker(partitions=1)
    store = RecordingStore(broker.history)
    stray = _examples("transcripts")[-1]  # a transcript event on the dialogues topic
    _append_examples(broker)
    broker.append("dialogues", stray, key=b"k")
    broker.append("edits", b"\x00not json", key=b"k")
    run = _writer(broker, store)
    await until(lambda: _all_committed(broker), "every record committed", run.task)
    await run.finish()

    assert [r.value for r in broker.records("dialogues.dlq")] == [stray]
    assert [r.value for r in broker.records("edits.dlq")] == [b"\x00not json"]
    good = MemoryBroker(partitions=1)
    _append_examples(good)
    assert _inserted_rows(store) == _expected_rows(good)


async def test_a_watermark_alone_in_its_batch_still_rebuilds_the_transcript() -> None:
    """The merger's last watermark of a meeting (all streams stopped) often comes after every dialogue
    was already written: a batch of nothing but it must still rebuild the transcript."""
    broker = MemoryBroker(partitions=1)
    store = RecordingStore(broker.history)
    watermark_value = _examples("dialogues")[-1]
    watermark = decode(watermark_value)
    assert rows_for(watermark, Provenance("dialogues", 0, 0)) == [], "a watermark makes no rows of its own"
    run = _writer(broker, store)
    broker.append("dialogues", watermark_value, key=b"k")
    await until(lambda: _all_committed(broker), "the watermark committed", run.task)
    await run.finish()
    assert ("command", watermark.meeting_id, watermark.run) in broker.history, "the transcript was rebuilt"  # type: ignore[attr-defined]
    assert store.inserts == []


async def test_a_result_row_goes_in_after_the_summaries_and_action_items_it_names() -> None:
    """Readers wait on the meeting_insights row, then read that revision's items: those must be there."""
    broker = MemoryBroker(partitions=1)
    store = RecordingStore(broker.history)
    for value in _examples("insights"):
        broker.append("insights", value, key=b"k")
    run = _writer(broker, store)
    await until(lambda: _all_committed(broker), "the result committed", run.task)
    await run.finish()
    tables = [i.table for i in store.inserts]
    assert set(tables) == {"meeting_insights", "summaries", "action_items"}
    assert tables[-1] == "meeting_insights", tables
