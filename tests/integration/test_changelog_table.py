"""The merger's changelog table against the real broker: what one owner flushed, the next restores."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from palaver.events.registry import MERGER_STATE
from palaver.streams.changelog import ChangelogTable
from palaver.streams.clients import ensure_topics, make_producer
from tests.integration.conftest import make_settings
from tests.integration.infra import Infra

pytestmark = pytest.mark.integration


async def test_flushed_state_is_restored_per_partition_newest_value_wins(infra: Infra, tmp_path: Path) -> None:
    settings = make_settings(infra, tmp_path, f"t{uuid.uuid4().hex[:8]}", "unused")
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        owner = ChangelogTable(settings, MERGER_STATE)
        owner.put(0, "m1", {"runs": {"r": 1}})
        owner.put(0, "m1", {"runs": {"r": 2}})  # the newest value is the one written
        owner.put(3, "m2", {"runs": {}})
        assert await owner.write(producer, owner.take_dirty()) == 2
        owner.put(0, "m3", {"runs": {"r": 3}})
        assert await owner.write(producer, owner.take_dirty()) == 1
        owner.put(0, "m1", {"runs": {"r": 4}})
        await owner.write(producer, owner.take_dirty())
        owner.put(0, "m4", {"lost": True})  # never flushed: not durable
    finally:
        await producer.stop()

    successor = ChangelogTable(settings, MERGER_STATE)
    assert await successor.restore({0}) == 3  # m1, m3, m1 again
    assert successor.get(0, "m4") is None
    assert successor.get(0, "m1") == {"runs": {"r": 4}}
    assert successor.get(0, "m3") == {"runs": {"r": 3}}
    assert successor.get(3, "m2") is None, "partition 3 was not restored"
    await successor.restore({3})
    assert successor.get(3, "m2") == {"runs": {}}
    successor.forget({0})
    assert successor.get(0, "m1") is None and successor.get(3, "m2") == {"runs": {}}


async def test_a_deleted_key_is_a_tombstone_that_a_restore_does_not_bring_back(infra: Infra, tmp_path: Path) -> None:
    settings = make_settings(infra, tmp_path, f"t{uuid.uuid4().hex[:8]}", "unused")
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        owner = ChangelogTable(settings, MERGER_STATE)
        owner.put(1, "old", {"runs": {"r": 1}})
        owner.put(1, "kept", {"runs": {"r": 2}})
        await owner.write(producer, owner.take_dirty())
        owner.delete(1, "old")
        assert owner.get(1, "old") is None and [k for _, k, _ in owner.items()] == ["kept"]
        assert await owner.write(producer, owner.take_dirty()) == 1  # the tombstone
    finally:
        await producer.stop()

    successor = ChangelogTable(settings, MERGER_STATE)
    assert await successor.restore({1}) == 3
    assert successor.get(1, "old") is None and successor.get(1, "kept") == {"runs": {"r": 2}}
