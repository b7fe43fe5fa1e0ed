"""Erasing a meeting (``DELETE /v1/meetings/{m}``, ``palaver admin purge-meeting``) on the real app, broker
and store: afterwards its owner gets 404, ClickHouse holds no row of it but the content-free marker, the
compacted topics hold tombstones for its keys, and an old event of it consumed again brings nothing back."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from palaver.demo.accounts import Participant, sign_up
from palaver.erasure import COMPACTED_KEYS
from palaver.events import MeetingChangedV1, decode
from palaver.events.registry import (
    DIALOGUES,
    ENRICHMENT_STATE,
    INGEST_TIMELINES,
    MEETING_VOCABULARY,
    MEETINGS,
    MERGER_STATE,
    meeting_partition,
    topic_name,
)
from palaver.settings import Settings
from palaver.store import Store
from palaver.store.erasure import is_purged, meeting_tables
from palaver.store.writer import GROUP
from palaver.streams.clients import make_consumer, make_producer
from stack.cli import main
from tests.integration.conftest import Web, poll, running_web
from tests.integration.infra import Infra
from tests.integration.meetings import final_dialogue

pytestmark = pytest.mark.integration

# The tables a meeting's data lands in today; the purge finds them (and any later one) by their column.
MEETING_TABLES = {"utterances", "dialogues", "transcripts", "participants", "meetings", "meeting_members",
                  "meeting_links", "edits", "chat_messages", "summaries", "action_items"}  # fmt: skip


@pytest.fixture(scope="module")
async def web(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Web]:  # fmt: skip
    async with running_web(infra, clickhouse_client, tmp_path_factory, frozenset({"api", "ingest", "store"})) as served:
        yield served


async def _count(store: Store, table: str, meeting_id: str, where: str = "") -> int:
    rows = await store.aquery(
        f"SELECT count() AS n FROM {store.database}.{table} WHERE meeting_id = {{m:String}} {where}",
        {"m": meeting_id},
    )
    return int(rows[0]["n"])


async def _full_meeting(web: Web, owner: Participant) -> tuple[str, Participant]:
    """A meeting with a member, a share link, a chat message, a final dialogue and an edit of it, all in
    the store. Returns (meeting id, the member)."""
    guest = await sign_up(web.url, f"guest-{uuid.uuid4().hex[:8]}")
    async with owner.client() as http:
        meeting_id = (await http.post("/v1/meetings", json={"title": "Salaries", "agenda": ["raises"],
                                                       "glossary": ["Acme payroll"]})).json()[
            "meeting_id"
        ]
        assert (await http.post(f"/v1/meetings/{meeting_id}/participants", json={"user_id": guest.user_id})).status_code == 201
        assert (await http.post(f"/v1/meetings/{meeting_id}/links", json={"role": "viewer"})).status_code == 201
        assert (await http.post(f"/v1/meetings/{meeting_id}/chat", json={"text": "secret numbers"})).status_code == 202
        dialogue_id = await final_dialogue(web.settings, meeting_id, guest.user_id)
        await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/transcript"), lambda r: r.status_code == 200,
                   "the transcript of the injected dialogue", timeout_s=60)  # fmt: skip
        edited = await http.put(f"/v1/meetings/{meeting_id}/dialogues/{dialogue_id}", json={"text": "Hi."})
        assert edited.status_code == 202, edited.text
    wanted = ("meetings", "meeting_members", "meeting_links", "chat_messages", "dialogues", "transcripts", "edits")

    async def counts() -> dict[str, int]:
        return {t: await _count(web.store, t, meeting_id) for t in wanted}

    await poll(counts, lambda c: all(c.values()), "every kind of row of the meeting in the store", timeout_s=60)
    return meeting_id, guest


async def _newest_by_key(settings: Settings, spec: Any, partition: int) -> dict[str, bytes | None]:
    """Key -> newest value of one partition of a topic, read to its end."""
    tp = TopicPartition(topic_name(settings.topic_namespace, spec.name), partition)
    consumer = make_consumer(settings, None)
    await consumer.start()
    found: dict[str, bytes | None] = {}
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                found[record.key.decode()] = record.value
    finally:
        await consumer.stop()
    return found


async def _merger_state(settings: Settings, meeting_id: str) -> None:
    """A record of the meeting's merger state, where the merger keeps it (the partition its transcripts
    take)."""
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic_name(settings.topic_namespace, MERGER_STATE.name),
                                     orjson.dumps({"dialogues": ["Hello there."]}), key=meeting_id.encode(),
                                     partition=meeting_partition(meeting_id, MERGER_STATE.partitions))  # fmt: skip
    finally:
        await producer.stop()


async def _store_caught_up(settings: Settings) -> None:
    """Until the store writer has committed (so written) everything now on the dialogues topic."""
    topic = topic_name(settings.topic_namespace, DIALOGUES.name)
    tps = [TopicPartition(topic, p) for p in range(DIALOGUES.partitions)]
    reader = make_consumer(settings, GROUP)
    await reader.start()
    try:
        ends = await reader.end_offsets(tps)

        async def behind() -> list[TopicPartition]:
            return [tp for tp in tps if ends[tp] and ((await reader.committed(tp)) or 0) < ends[tp]]

        await poll(behind, lambda left: not left, "the store writer to commit the dialogues topic", timeout_s=60)
    finally:
        await reader.stop()


async def _assert_erased(web: Web, meeting_id: str) -> None:
    """Nothing of the meeting in any table but its content-free marker."""
    store = web.store
    tables = set(await meeting_tables(store))
    assert tables >= MEETING_TABLES, tables
    left = {t: n for t in tables if t != "meetings" and (n := await _count(store, t, meeting_id))}
    assert left == {}, f"rows of the purged meeting remain: {left}"
    assert await _count(store, "meetings", meeting_id,
                        "AND (deleted = 0 OR title != '' OR length(agenda) > 0 OR length(glossary) > 0)") == 0
    assert await _count(store, "meetings", meeting_id) >= 1  # the marker
    assert await is_purged(store, meeting_id)


async def test_deleting_a_meeting_erases_it_and_it_stays_erased(web: Web) -> None:
    owner = await sign_up(web.url, f"owner-{uuid.uuid4().hex[:8]}")
    meeting_id, guest = await _full_meeting(web, owner)
    await _merger_state(web.settings, meeting_id)
    entities = await _newest_by_key(web.settings, MEETINGS, meeting_partition(meeting_id))
    member_and_link_keys = sorted(k for k in entities if k.startswith(f"{meeting_id}/"))
    assert len(member_and_link_keys) == 2, member_and_link_keys
    vocabulary_partition = meeting_partition(meeting_id, MEETING_VOCABULARY.partitions)
    assert (await _newest_by_key(web.settings, MEETING_VOCABULARY, vocabulary_partition)).get(meeting_id)
    assert not await is_purged(web.store, meeting_id)

    async with guest.client() as http:
        assert (await http.delete(f"/v1/meetings/{meeting_id}")).status_code == 403  # a participant may not
    async with owner.client() as http:
        deleted = await http.delete(f"/v1/meetings/{meeting_id}")
        assert deleted.status_code == 204, deleted.text
        assert deleted.content == b""
        assert (await http.get(f"/v1/meetings/{meeting_id}")).status_code == 404
        assert (await http.get(f"/v1/meetings/{meeting_id}/chat")).status_code == 404
        assert (await http.delete(f"/v1/meetings/{meeting_id}")).status_code == 404
        assert meeting_id not in [m["meeting_id"] for m in (await http.get("/v1/meetings")).json()["meetings"]]
    async with guest.client() as http:
        assert (await http.get(f"/v1/meetings/{meeting_id}")).status_code == 404
    await _assert_erased(web, meeting_id)

    # The compacted topics: the content-free marker under the meeting's key, tombstones for the rest.
    after = await _newest_by_key(web.settings, MEETINGS, meeting_partition(meeting_id))
    marker = decode(after[meeting_id])  # type: ignore[arg-type]
    assert isinstance(marker, MeetingChangedV1)
    assert (marker.change, marker.deleted, marker.title, marker.agenda, marker.glossary) == ("deleted", True, "", [], [])
    assert {k: after[k] for k in member_and_link_keys} == dict.fromkeys(member_and_link_keys)
    state = await _newest_by_key(web.settings, MERGER_STATE, meeting_partition(meeting_id, MERGER_STATE.partitions))
    assert meeting_id in state and state[meeting_id] is None
    progress = await _newest_by_key(web.settings, ENRICHMENT_STATE,
                                    meeting_partition(meeting_id, ENRICHMENT_STATE.partitions))  # fmt: skip
    assert meeting_id in progress and progress[meeting_id] is None
    timeline = await _newest_by_key(web.settings, INGEST_TIMELINES,
                                    meeting_partition(meeting_id, INGEST_TIMELINES.partitions))  # fmt: skip
    assert meeting_id in timeline and timeline[meeting_id] is None
    vocabulary = await _newest_by_key(web.settings, MEETING_VOCABULARY, vocabulary_partition)
    assert meeting_id in vocabulary and vocabulary[meeting_id] is None
    assert set(COMPACTED_KEYS) == {MEETINGS.name, MERGER_STATE.name, ENRICHMENT_STATE.name, INGEST_TIMELINES.name,
                                   MEETING_VOCABULARY.name}  # fmt: skip

    # Old events of it consumed again (a lagging writer, a replay) bring nothing back.
    await final_dialogue(web.settings, meeting_id, guest.user_id)
    await _store_caught_up(web.settings)
    await _assert_erased(web, meeting_id)


class _Terminal(io.StringIO):
    """stdin as a terminal that someone types ``typed`` into."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def cli_env(web: Web, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``palaver``'s settings from the environment, pointed at this test's broker, topics and database; the
    root logger's level restored after (``palaver admin`` lowers it)."""
    settings = web.settings
    for name, value in {"DATA_DIR": str(settings.data_dir), "KAFKA_BOOTSTRAP": settings.bootstrap_servers,
                        "KAFKA_REPLICATION_FACTOR": "1", "TOPIC_NAMESPACE": settings.topic_namespace,
                        "CLICKHOUSE_URL": settings.clickhouse_dsn,
                        "CLICKHOUSE_DATABASE": settings.clickhouse_database}.items():  # fmt: skip
        monkeypatch.setenv(f"PALAVER_{name}", value)
    root, kafka = logging.getLogger(), logging.getLogger("aiokafka")
    levels = (root.level, kafka.level)
    yield
    root.setLevel(levels[0])
    kafka.setLevel(levels[1])


async def test_palaver_admin_purge_meeting_asks_first(web: Web, cli_env: None, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    owner = await sign_up(web.url, f"owner-{uuid.uuid4().hex[:8]}")
    meeting_id, _ = await _full_meeting(web, owner)
    before = {t: await _count(web.store, t, meeting_id) for t in MEETING_TABLES}

    monkeypatch.setattr("sys.stdin", _Terminal(f"{meeting_id}x\n"))
    assert await asyncio.to_thread(main, ["admin", "purge-meeting", meeting_id]) == 1
    assert "not confirmed: nothing was deleted" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{meeting_id}\n"))  # not a terminal: nobody to ask
    assert await asyncio.to_thread(main, ["admin", "purge-meeting", meeting_id]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["admin", "purge-meeting", "mtg_" + "0" * 24, "--yes"]) == 3
    assert "no meeting" in capsys.readouterr().err
    async with owner.client() as http:
        assert (await http.get(f"/v1/meetings/{meeting_id}")).status_code == 200
    after = {t: await _count(web.store, t, meeting_id) for t in MEETING_TABLES}
    # Nothing went (the edit's rebuilt transcript may still be landing: counts only grow).
    assert all(after[t] >= before[t] for t in MEETING_TABLES), (before, after)
    assert not await is_purged(web.store, meeting_id)

    monkeypatch.setattr("sys.stdin", _Terminal(f"{meeting_id}\n"))
    assert await asyncio.to_thread(main, ["admin", "purge-meeting", meeting_id]) == 0
    assert f"purged {meeting_id}" in capsys.readouterr().out
    async with owner.client() as http:
        assert (await http.get(f"/v1/meetings/{meeting_id}")).status_code == 404
    await _assert_erased(web, meeting_id)
    # Again, for scripts: a second purge finds nothing left to delete and says so.
    assert await asyncio.to_thread(main, ["admin", "purge-meeting", meeting_id, "--yes"]) == 0
    assert "rows deleted: none" in capsys.readouterr().out
    await _assert_erased(web, meeting_id)
