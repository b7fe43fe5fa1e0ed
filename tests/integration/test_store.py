"""The store on real ClickHouse (chdb, or a server when the infrastructure has one): a retried batch insert
is dropped in every table, one slow query does not hold a fast one, and the merged transcript holds placed
dialogues only."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

import palaver.events
from palaver import ids
from palaver.events import decode
from palaver.store import Store
from palaver.store.client import ClientPool
from palaver.store.migrations import apply_migrations, migration_files
from palaver.store.rows import COLUMNS, Provenance, rows_for
from palaver.store.transcripts import rebuild_transcript

pytestmark = pytest.mark.integration

EXAMPLES = Path(palaver.events.__file__).parent / "examples"
STORE_TOPICS = ("transcripts", "dialogues", "edits", "users", "chat")  # what the store writer consumes


def migrated_tables() -> list[str]:
    """Every table the shipped migrations create."""
    sql = "\n".join(text for _, _, text in migration_files())
    return sorted(set(re.findall(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)", sql)))


@pytest.fixture(scope="module")
def store(clickhouse_client: object) -> Iterator[Store]:
    store = Store(clickhouse_client, f"t_store_{uuid.uuid4().hex[:10]}")
    apply_migrations(store)
    yield store
    store.command(f"DROP DATABASE IF EXISTS {store.database}")


# --- a retried batch is dropped ----------------------------------------------------------------------------


def example_batches() -> dict[str, list[tuple[Any, ...]]]:
    """Rows per table from every example event the store writer consumes, mapped as the writer maps them."""
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for offset, path in enumerate(sorted(EXAMPLES.glob("*/*/*.json"))):
        topic = path.parent.parent.name
        if topic in STORE_TOPICS:
            for table, row in rows_for(decode(path.read_bytes()), Provenance(topic, 0, offset)):
                out[table].append(row)
    return out


def value_for(column_type: str) -> Any:
    """A value of a ClickHouse column type (those the migrations use)."""
    inner = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", column_type)
    if inner:
        return value_for(inner.group(1))
    if column_type == "String":
        return "x"
    if re.fullmatch(r"U?Int\d+", column_type):
        return 1
    if column_type.startswith("Float"):
        return 0.5
    if column_type.startswith("DateTime"):
        return datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    if column_type == "Date":
        return date(2024, 6, 3)
    if column_type == "Array(String)":
        return ["x"]
    if column_type == "Bool":
        return True
    raise AssertionError(f"no test value for the column type {column_type}: add one")


def generated_batch(store: Store, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Two rows of the table's columns that have no DEFAULT (for tables no example event fills)."""
    columns = store.query(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} "
        "AND default_kind = '' ORDER BY position",
        {"d": store.database, "t": table},
    )
    names = [c["name"] for c in columns]
    first = tuple(value_for(c["type"]) for c in columns)
    second = tuple(f"{v}-2" if isinstance(v, str) else v for v in first)
    return names, [first, second]


def test_every_table_has_a_dedup_window(store: Store) -> None:
    tables = migrated_tables()
    assert set(COLUMNS) <= set(tables), "every table the store writer maps rows to comes from a migration"
    assert "transcripts" in tables, "the store writer's transcript rebuilds"
    rows = store.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {d:String}", {"d": store.database}
    )
    engines = {r["name"]: r["engine_full"] for r in rows}
    missing = [t for t in tables if "non_replicated_deduplication_window = 1000" not in engines[t]]
    assert missing == []


@pytest.mark.parametrize("table", migrated_tables())
def test_a_retried_batch_is_kept_once(store: Store, table: str) -> None:
    """The same batch inserted twice with the same dedup token (a store writer retrying, or re-reading the
    batch after a crash before its commit) is in the table once, before any merge: counted without FINAL,
    with merges stopped so that none can hide a duplicate."""
    batches = example_batches()
    if table in batches:
        columns, batch = list(COLUMNS[table]), batches[table]
    else:
        columns, batch = generated_batch(store, table)
    store.command(f"SYSTEM STOP MERGES {store.database}.{table}")
    token = f"{table}|test:0:0-{len(batch) - 1}"
    store.insert(table, batch, columns, token)
    # A block's rows with one key may already be one row (ClickHouse applies the engine to the block it
    # writes), so the first insert's count is the batch's.
    once = count_rows(store, table)
    assert once > 0
    store.insert(table, batch, columns, token)
    assert count_rows(store, table) == once, f"{table}: the retried batch was kept beside the first"
    store.insert(table, batch, columns, token + "+1")  # another batch (another token) is kept
    assert count_rows(store, table) == 2 * once


def count_rows(store: Store, table: str) -> int:
    """Rows in the table's parts, duplicates included (no FINAL)."""
    return int(store.query(f"SELECT count() AS n FROM {store.database}.{table}")[0]["n"])


def test_without_the_window_a_retry_is_kept_twice(store: Store) -> None:
    """What the window is for: a table without it keeps the retried batch until a merge (so the test
    above can fail)."""
    table = "no_dedup_window"
    store.command(f"CREATE TABLE {store.database}.{table} (k String, version UInt64) "
                  "ENGINE = ReplacingMergeTree(version) ORDER BY k")  # fmt: skip
    store.command(f"SYSTEM STOP MERGES {store.database}.{table}")
    for _ in range(2):
        store.insert(table, [("a", 1), ("b", 1)], ("k", "version"), "same-token")
    assert count_rows(store, table) == 4


# --- concurrency -------------------------------------------------------------------------------------------

SLOW_ROWS = 120  # each row sleeps 0.5 s: a query that runs a minute unless it is killed


def test_a_slow_query_does_not_hold_a_fast_one(store: Store, clickhouse_client: object) -> None:
    """While a slow query runs, fast calls on the same store run and answer: one of them sees the slow
    query in ``system.processes``, which it can only do while the slow query is running. Then it kills
    it. (If calls ran one at a time, the fast one would answer only after the slow one ended, and would
    not see it.)"""
    assert isinstance(clickhouse_client, ClientPool) and len(clickhouse_client) >= 2
    marker = uuid.uuid4().hex
    slow_sql = (
        f"SELECT count() AS n, '{marker}' AS marker FROM numbers({SLOW_ROWS}) "
        "WHERE NOT ignore(sleepEachRow(0.5)) SETTINGS max_block_size = 1"
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(store.query, slow_sql)
        seen: list[dict[str, Any]] = []
        while not seen and not slow.done():
            seen = store.query(
                "SELECT query_id FROM system.processes "
                "WHERE position(query, {m:String}) > 0 AND position(query, 'system.processes') = 0",
                {"m": marker},
            )
        assert seen, f"the slow query ended before a fast one could see it: {slow.result()}"
        store.command("KILL QUERY WHERE query_id = {q:String} SYNC", {"q": seen[0]["query_id"]})
        with pytest.raises(DatabaseError, match="QUERY_WAS_CANCELLED"):
            slow.result()
    assert store.query("SELECT 1 AS one") == [{"one": 1}], "the killed query gave its client back"


# --- the merged transcript holds placed dialogues only -------------------------------------------------------


def _dialogue_example(name: str, meeting_id: str, **update: Any) -> Any:
    event = decode((EXAMPLES / "dialogues" / "dialogue.update-v1" / f"{name}.json").read_bytes())
    return event.model_copy(update={"meeting_id": meeting_id, **update})


async def test_the_merged_transcript_holds_placed_dialogues_only(store: Store) -> None:
    """A dialogue whose words are final but whose place may still change waits outside the transcript
    until its placed revision comes."""
    meeting_id = f"m{uuid.uuid4().hex[:8]}"
    alice = _dialogue_example("final-alice", meeting_id)
    bob = _dialogue_example("final-bob-words", meeting_id)
    assert (alice.placed, bob.status, bob.placed) == (True, "final", False)

    async def stored_then_rebuilt(*events: Any) -> dict[str, Any]:
        rows = [row for offset, e in enumerate(events) for _, row in rows_for(e, Provenance("dialogues", 0, offset))]
        await store.ainsert("dialogues", rows, COLUMNS["dialogues"], f"dialogues|{uuid.uuid4().hex}")
        await rebuild_transcript(store, meeting_id, alice.run, 9000)
        return (await store.aquery(f"SELECT raw_transcript, revision FROM {store.database}.transcripts FINAL "
                                   "WHERE meeting_id = {m:String}", {"m": meeting_id}))[0]  # fmt: skip

    first = await stored_then_rebuilt(alice, bob)
    assert (first["raw_transcript"], first["revision"]) == (f"alice: {alice.text}", 1)
    revision = bob.revision + 1
    placed_bob = bob.model_copy(update={"revision": revision, "placed": True,
                                        "event_id": ids.event_id("dialogue.update", bob.dialogue_id, bob.run, revision)})  # fmt: skip
    second = await stored_then_rebuilt(placed_bob)
    assert (second["raw_transcript"], second["revision"]) == (f"alice: {alice.text}\nbob: {bob.text}", 2)


def test_dialogue_rows_stored_before_placed_existed_read_placed_when_final(store: Store) -> None:
    """Before ``placed`` a dialogue was final only once the watermark had passed it: the column's default
    says so for rows written without it."""
    meeting_id = f"m{uuid.uuid4().hex[:8]}"
    columns = [c for c in COLUMNS["dialogues"] if c != "placed"]
    rows = []
    for offset, status in enumerate(("final", "live")):
        event = _dialogue_example("live-bob", meeting_id, status=status, dialogue_id=f"dlg_{status}")
        ((_, row),) = rows_for(event, Provenance("dialogues", 0, offset))
        rows.append([v for c, v in zip(COLUMNS["dialogues"], row, strict=True) if c != "placed"])
    store.insert("dialogues", rows, columns, f"dialogues|{uuid.uuid4().hex}")
    found = store.query(f"SELECT status, placed FROM {store.database}.dialogues FINAL WHERE meeting_id = {{m:String}}",
                        {"m": meeting_id})  # fmt: skip
    assert sorted((r["status"], r["placed"]) for r in found) == [("final", True), ("live", False)]
