"""Who may do what in a meeting, as FastAPI dependencies every meeting-scoped route takes.

A caller who is neither the owner, an active member nor an admin gets 404 for every route of the meeting:
the answer is the same as for a meeting that does not exist, so ids cannot be probed. Viewers may read;
writes (streaming, edits, chat) need a participant (403 otherwise); ending, renaming, inviting, removing
and links need the owner or an admin (403 otherwise)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request

from api import fields, meeting_queries
from api.identity import Caller, SignedIn
from api.meeting_state import LinkRecord, MeetingRecord, MeetingView, MemberRecord, role_in
from api.responses import declared
from api.user_state import RecentWrites
from palaver.events import encode
from palaver.events.base import EventV
from palaver.events.registry import meeting_partition

MeetingId = Annotated[str, Path(pattern=fields.ID_PART, description="The meeting's id")]

# What the access checks answer, for the routes' ``responses`` (``api.responses.declared``).
READ_NOTES = {404: "No such meeting, or the caller is not one of its people"}
WRITE_NOTES = {**READ_NOTES, 403: "Viewers may not write; or a cookie-signed write without X-CSRF-Token"}
MANAGE_NOTES = {**READ_NOTES, 403: "Only the meeting's owner (or an admin) may do this"}
NOT_FOUND = declared(401, 404, notes=READ_NOTES)
WRITE_DENIED = declared(401, 403, 404, notes=WRITE_NOTES)
MANAGE_DENIED = declared(401, 403, 404, notes=MANAGE_NOTES)


def _newer(stored: Any, recent: Any, version: str) -> Any:
    if stored is None or (recent is not None and getattr(recent, version) > getattr(stored, version)):
        return recent
    return stored


class MeetingDirectory:
    """This process's view of meetings: the store plus its own recent writes, so a meeting answers at once
    to the process that made the change (the others see it once the store writer has it). Changes of one
    entity (a meeting, a member, a link) are serialized per process."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.meetings: RecentWrites[MeetingRecord] = RecentWrites()
        self.members: RecentWrites[MemberRecord] = RecentWrites()
        self.links: RecentWrites[LinkRecord] = RecentWrites()

    async def meeting(self, request: Request, meeting_id: str) -> MeetingRecord | None:
        stored = (await meeting_queries.meetings(request.app.state.store, [meeting_id])).get(meeting_id)
        return _newer(stored, self.meetings.get(meeting_id), "meeting_version")  # type: ignore[no-any-return]

    async def meetings_by_id(self, request: Request, meeting_ids: list[str]) -> dict[str, MeetingRecord]:
        """Like ``meeting``, for many meetings in one query."""
        stored = await meeting_queries.meetings(request.app.state.store, meeting_ids)
        newest = {m: _newer(stored.get(m), self.meetings.get(m), "meeting_version") for m in meeting_ids}
        return {m: record for m, record in newest.items() if record is not None}

    async def memberships(self, request: Request, user_id: str, meeting_ids: list[str]) -> dict[str, MemberRecord]:
        """Like ``member``, for one user in many meetings in one query."""
        stored = await meeting_queries.memberships(request.app.state.store, user_id, meeting_ids)
        newest = {m: _newer(stored.get(m), self.members.get(f"{m}/{user_id}"), "member_version") for m in meeting_ids}
        return {m: record for m, record in newest.items() if record is not None}

    async def member(self, request: Request, meeting_id: str, user_id: str) -> MemberRecord | None:
        stored = (await meeting_queries.members(request.app.state.store, meeting_id, user_id)).get(user_id)
        return _newer(stored, self.members.get(f"{meeting_id}/{user_id}"), "member_version")  # type: ignore[no-any-return]

    async def all_members(self, request: Request, meeting_id: str) -> dict[str, MemberRecord]:
        found = await meeting_queries.members(request.app.state.store, meeting_id)
        for record in self.members.values():
            if record.meeting_id == meeting_id:
                found[record.user_id] = _newer(found.get(record.user_id), record, "member_version")
        return found

    async def all_links(self, request: Request, meeting_id: str) -> dict[str, LinkRecord]:
        found = await meeting_queries.links(request.app.state.store, meeting_id)
        for record in self.links.values():
            if record.meeting_id == meeting_id:
                found[record.link_id] = _newer(found.get(record.link_id), record, "link_version")
        return found

    async def publish(self, request: Request, key: str, meeting_id: str, event: EventV) -> None:
        await request.app.state.producer.send_and_wait(
            request.app.state.meetings_topic, encode(event), key=key.encode(),
            partition=meeting_partition(meeting_id),
        )  # fmt: skip

    async def put_meeting(self, request: Request, record: MeetingRecord, event: EventV) -> None:
        await self.publish(request, record.meeting_id, record.meeting_id, event)
        self.meetings.put(record.meeting_id, record)

    async def put_member(self, request: Request, record: MemberRecord, event: EventV) -> None:
        await self.publish(request, f"{record.meeting_id}/member/{record.user_id}", record.meeting_id, event)
        self.members.put(f"{record.meeting_id}/{record.user_id}", record)

    async def put_link(self, request: Request, record: LinkRecord, event: EventV) -> None:
        await self.publish(request, f"{record.meeting_id}/link/{record.link_id}", record.meeting_id, event)
        self.links.put(f"{record.meeting_id}/{record.link_id}", record)


def directory(request: Request) -> MeetingDirectory:
    return request.app.state.meetings  # type: ignore[no-any-return]


async def view_of(request: Request, meeting_id: str, caller: Caller) -> MeetingView | None:
    """What ``caller`` may do in the meeting; None when it may not know the meeting exists."""
    meetings = directory(request)
    meeting = await meetings.meeting(request, meeting_id)
    if meeting is None:
        return None
    member = await meetings.member(request, meeting_id, caller.user_id)
    role = role_in(meeting, member, caller.user_id, caller.is_admin)
    return None if role is None else MeetingView(meeting, role)


def not_found(meeting_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no meeting {meeting_id}")


async def readable(request: Request, meeting_id: MeetingId, caller: SignedIn) -> MeetingView:
    view = await view_of(request, meeting_id, caller)
    if view is None:
        raise not_found(meeting_id)
    return view


async def writable(view: Annotated[MeetingView, Depends(readable)]) -> MeetingView:
    if not view.can_write:
        raise HTTPException(status_code=403, detail="viewers may read this meeting, not change it")
    return view


async def managed(view: Annotated[MeetingView, Depends(readable)]) -> MeetingView:
    if not view.can_manage:
        raise HTTPException(status_code=403, detail="only the meeting's owner may do this")
    return view


CanRead = Annotated[MeetingView, Depends(readable)]
CanWrite = Annotated[MeetingView, Depends(writable)]
CanManage = Annotated[MeetingView, Depends(managed)]
