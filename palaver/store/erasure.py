"""What a purged meeting leaves in ClickHouse, and how its rows go: the store's half of erasing a meeting
(``palaver.erasure`` is the whole purge).

A purged meeting keeps one kind of row: its content-free marker in ``meetings`` (``deleted = 1``, no title,
no agenda), written by the purge and by the store writer from the marker event. The marker is forever, so
the meeting's id stays known as purged: the API answers 404 for it, the store writer drops rows of old
events of it (consumed late, or replayed), and a replay can refuse it (``is_purged``).

Rows go with a synchronous ``ALTER TABLE ... DELETE`` (a mutation that rewrites the parts holding them),
not a lightweight ``DELETE FROM``, which only masks rows until a merge: tried with chdb 4.4, the mutation
leaves no row behind (``apply_deleted_mask = 0`` counts none) and returns after the rows are gone
(``mutations_sync = 2``). The parts it replaced stay on disk, inactive, until ClickHouse removes them
(``old_parts_lifetime``, 8 minutes by default).
"""

from __future__ import annotations

from collections.abc import Iterable

from palaver.store.client import Store

MARKER_TABLE = "meetings"  # the one table whose row of a purged meeting stays: the marker


async def meeting_tables(store: Store) -> list[str]:
    """Every table of the database with a ``meeting_id`` column: the tables holding meeting data. Found in
    the schema, so a table a later migration adds is erased too."""
    rows = await store.aquery(
        """SELECT DISTINCT table FROM system.columns WHERE database = {db:String} AND name = 'meeting_id'
           ORDER BY table""",
        {"db": store.database},
    )
    return [r["table"] for r in rows]


async def purged_among(store: Store, meeting_ids: Iterable[str]) -> set[str]:
    """The meetings among ``meeting_ids`` that were purged (their marker is stored)."""
    wanted = sorted(set(meeting_ids))
    if not wanted:
        return set()
    rows = await store.aquery(
        f"""SELECT DISTINCT meeting_id FROM {store.database}.{MARKER_TABLE}
            WHERE has({{ids:Array(String)}}, meeting_id) AND deleted = 1""",
        {"ids": wanted},
    )
    return {r["meeting_id"] for r in rows}


async def is_purged(store: Store, meeting_id: str) -> bool:
    """Whether ``meeting_id`` was purged: what a replay asks before it rebuilds a meeting."""
    return bool(await purged_among(store, [meeting_id]))


async def count_meeting_rows(store: Store, meeting_id: str) -> dict[str, int]:
    """Table -> rows of ``meeting_id`` that a purge deletes (the marker not counted), for tables with any."""
    counts = {}
    for table in await meeting_tables(store):
        rows = await store.aquery(
            f"SELECT count() AS n FROM {store.database}.{table} WHERE meeting_id = {{m:String}}{_keep(table)}",
            {"m": meeting_id},
        )
        if rows[0]["n"]:
            counts[table] = int(rows[0]["n"])
    return counts


async def delete_meeting_rows(store: Store, meeting_id: str) -> dict[str, int]:
    """Delete every row of ``meeting_id`` but its marker, from every table holding meeting data; returns
    after the rows are gone. Returns table -> rows deleted. Safe to repeat."""
    counts = await count_meeting_rows(store, meeting_id)
    for table in await meeting_tables(store):  # all of them: a row may land between the count and here
        await store.acommand(
            f"""ALTER TABLE {store.database}.{table} DELETE WHERE meeting_id = {{m:String}}{_keep(table)}
                SETTINGS mutations_sync = 2""",
            {"m": meeting_id},
        )
    return counts


def _keep(table: str) -> str:
    return " AND deleted = 0" if table == MARKER_TABLE else ""
