"""Read-model queries of meetings, their members and links, and ended sign-ins (all with FINAL: the newest
version of each row). The API overlays its own recent writes on these (``api.meetings``)."""

from __future__ import annotations

from typing import Any

from api.meeting_state import LinkRecord, MeetingRecord, MemberRecord
from palaver.store import Store

_MEETING = """meeting_id, title, organizer_id AS owner_id, created_at_ms, version AS meeting_version,
    if(isNull(date_time), NULL, toUnixTimestamp64Milli(date_time)) AS scheduled_start_ms, agenda, glossary,
    ended_at_ms, deleted"""


def _meeting(row: dict[str, Any]) -> MeetingRecord:
    return MeetingRecord(**{**row, "agenda": tuple(row["agenda"]), "glossary": tuple(row["glossary"]),
                            "deleted": bool(row["deleted"])})  # fmt: skip


async def meetings(store: Store, meeting_ids: list[str]) -> dict[str, MeetingRecord]:
    """The stored meetings among ``meeting_ids`` that the API made (a stream's placeholder row, version 0,
    is not a meeting anyone may open)."""
    rows = await store.aquery(
        f"""SELECT {_MEETING} FROM {store.database}.meetings FINAL
            WHERE has({{ids:Array(String)}}, meeting_id) AND version > 0""",
        {"ids": meeting_ids},
    )
    return {r["meeting_id"]: _meeting(r) for r in rows}


async def media_epochs(store: Store, meeting_ids: list[str]) -> dict[str, int]:
    """The wall time of each meeting's media time 0, for those among ``meeting_ids`` whose audio has started
    (the earliest its streams were placed on: a meeting whose timeline was dropped while idle and that took
    streams again has a second one)."""
    rows = await store.aquery(
        f"""SELECT meeting_id, min(timeline_epoch_ms) AS epoch_ms FROM {store.database}.participants FINAL
            WHERE has({{ids:Array(String)}}, meeting_id) GROUP BY meeting_id""",
        {"ids": meeting_ids},
    )
    return {r["meeting_id"]: r["epoch_ms"] for r in rows if r["epoch_ms"] is not None}


async def members(store: Store, meeting_id: str, user_id: str | None = None) -> dict[str, MemberRecord]:
    """The meeting's members (every status), or only ``user_id``'s membership."""
    rows = await store.aquery(
        f"""SELECT meeting_id, user_id, role, status, version AS member_version, via_link
            FROM {store.database}.meeting_members FINAL
            WHERE meeting_id = {{m:String}} AND ({{u:String}} = '' OR user_id = {{u:String}})""",
        {"m": meeting_id, "u": user_id or ""},
    )
    return {r["user_id"]: MemberRecord(**{**r, "via_link": r["via_link"] or None}) for r in rows}


async def memberships(store: Store, user_id: str, meeting_ids: list[str]) -> dict[str, MemberRecord]:
    """``user_id``'s membership (any status) in each of ``meeting_ids`` that has one, by meeting."""
    rows = await store.aquery(
        f"""SELECT meeting_id, user_id, role, status, version AS member_version, via_link
            FROM {store.database}.meeting_members FINAL
            WHERE user_id = {{u:String}} AND has({{ids:Array(String)}}, meeting_id)""",
        {"u": user_id, "ids": meeting_ids},
    )
    return {r["meeting_id"]: MemberRecord(**{**r, "via_link": r["via_link"] or None}) for r in rows}


def meetings_of_sql(db: str) -> str:
    """A query of ``(meeting_id, created_at_ms)`` of the live meetings (not deleted, not purged) that the
    user ``{u:String}`` owns or is an active member of: a subquery for the reads that take the caller's
    meetings (``meetings_of``, search)."""
    return f"""SELECT meeting_id, created_at_ms FROM {db}.meetings FINAL
               WHERE organizer_id = {{u:String}} AND version > 0 AND deleted = 0
               UNION DISTINCT
               SELECT m.meeting_id, m.created_at_ms FROM {db}.meetings AS m FINAL
               JOIN (SELECT meeting_id FROM {db}.meeting_members FINAL
                     WHERE user_id = {{u:String}} AND status = 'active') AS mm ON mm.meeting_id = m.meeting_id
               WHERE m.version > 0 AND m.deleted = 0"""


def all_meetings_sql(db: str) -> str:
    """Like ``meetings_of_sql``, every live meeting (an admin's ``all=true``)."""
    return f"SELECT meeting_id, created_at_ms FROM {db}.meetings FINAL WHERE version > 0 AND deleted = 0"


async def meetings_of(store: Store, user_id: str, limit: int, offset: int) -> list[str]:
    """Ids of the meetings ``user_id`` owns or is an active member of, newest first."""
    rows = await store.aquery(
        f"""SELECT meeting_id FROM ({meetings_of_sql(store.database)})
            ORDER BY created_at_ms DESC, meeting_id LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""",
        {"u": user_id, "limit": limit, "offset": offset},
    )
    return [r["meeting_id"] for r in rows]


async def all_meeting_ids(store: Store, limit: int, offset: int) -> list[str]:
    """Every live meeting, newest first (an admin's list)."""
    rows = await store.aquery(
        f"""SELECT meeting_id FROM ({all_meetings_sql(store.database)})
            ORDER BY created_at_ms DESC, meeting_id LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""",
        {"limit": limit, "offset": offset},
    )
    return [r["meeting_id"] for r in rows]


async def links(store: Store, meeting_id: str, link_id: str | None = None) -> dict[str, LinkRecord]:
    rows = await store.aquery(
        f"""SELECT meeting_id, link_id, role, created_at_ms, version AS link_version, revoked
            FROM {store.database}.meeting_links FINAL
            WHERE meeting_id = {{m:String}} AND ({{l:String}} = '' OR link_id = {{l:String}})""",
        {"m": meeting_id, "l": link_id or ""},
    )
    return {r["link_id"]: LinkRecord(**{**r, "revoked": bool(r["revoked"])}) for r in rows}


async def session_revoked(store: Store, session_id: str) -> bool:
    rows = await store.aquery(
        f"SELECT 1 AS revoked FROM {store.database}.revoked_sessions WHERE session_id = {{s:String}} LIMIT 1",
        {"s": session_id},
    )
    return bool(rows)
