"""Meetings as resources: create, list, read, change, end; participants (invite, leave, remove); share
links that grant a role; tickets for the audio and live sockets. Every change is an event on the
``meetings`` topic (``palaver.events.meetings_v1``) that the store writer keeps and enrichment reacts to;
a change of what the meeting's vocabulary is made of (title, agenda, glossary, people) also publishes it on
``meeting.vocabulary`` for the STT workers (``publish_vocabulary``). Access rules: ``api.access``."""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import fields, meeting_queries, meeting_vocabulary
from api.access import (
    MANAGE_DENIED,
    MANAGE_NOTES,
    NOT_FOUND,
    READ_NOTES,
    WRITE_NOTES,
    CanManage,
    CanRead,
    CanWrite,
    directory,
    not_found,
)
from api.enrichment_requests import request_enrichment
from api.idempotency import KEY_MAX_LENGTH
from api.identity import SignedIn, now_ms
from api.meeting_state import LinkRecord, MeetingRecord, MeetingView, MemberRecord, role_in
from api.responses import declared
from palaver import ids
from palaver.auth.tokens import InvalidToken, sign, verify
from palaver.erasure import NoSuchMeeting, purge_meeting

router = APIRouter(tags=["meetings"])
MANAGE_WITH_BODY = declared(400, 401, 403, 404, notes=MANAGE_NOTES)

LINK_TTL_MS = 365 * 24 * 3600 * 1000  # a link works until revoked, the meeting is deleted, or a year passes
UserId = Annotated[str, Path(pattern=fields.USER_ID, description="The user's id (usr_...)")]
LinkId = Annotated[str, Path(pattern=r"^lnk_[0-9a-f]{24}$", description="The link's id (lnk_...)")]
Title = Annotated[str, Field(min_length=1, max_length=200, pattern=fields.NOT_BLANK)]
Agenda = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=50)]
# The decoder takes names first, then the glossary in order, as much as fits its prompt (64 tokens, about
# 20 short terms: stt_workers/vocabulary.py); the rest is kept, for a model with a longer prompt.
GLOSSARY_TERMS, GLOSSARY_TERM_CHARS = 100, 100
Glossary = Annotated[list[Annotated[str, Field(min_length=1, max_length=GLOSSARY_TERM_CHARS, pattern=fields.NOT_BLANK)]],
                     Field(max_length=GLOSSARY_TERMS, description="The meeting's own terms (names, products, jargon), "
                           "most important first: the speech decoder is primed with them")]  # fmt: skip
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=KEY_MAX_LENGTH,
                                              description="Retries with the same key create one meeting")]  # fmt: skip


class MeetingCreate(BaseModel):
    title: Title
    scheduled_start_ms: StartMs | None = None
    agenda: Agenda = Field(default_factory=list, description="Agenda items, in order")
    glossary: Glossary = Field(default_factory=list)


PATCH_RULES = fields.BodyRules(at_least_one_of=("title", "scheduled_start_ms", "agenda", "glossary"))


class MeetingPatch(BaseModel):
    """What to change (at least one); ``scheduled_start_ms`` may be null (no schedule)."""

    model_config = ConfigDict(json_schema_extra=PATCH_RULES.json_schema)

    title: Title = fields.omittable()
    scheduled_start_ms: StartMs | None = None
    agenda: Agenda = fields.omittable()
    glossary: Glossary = fields.omittable()

    @model_validator(mode="after")
    def _follows_the_rules(self) -> MeetingPatch:
        PATCH_RULES.check(self)
        return self


class MeetingOut(BaseModel):
    meeting_id: str
    title: str
    scheduled_start_ms: int | None
    agenda: list[str]
    glossary: list[str] = Field(description="The meeting's own terms for its speech decoder")
    owner_id: str
    created_at_ms: int
    ended_at_ms: int | None
    status: Literal["open", "ended"]
    role: Literal["owner", "participant", "viewer", "admin"] = Field(description="The caller's role in it")
    media_epoch_ms: int | None = Field(
        None, description="Wall time (ms since the Unix epoch) of the meeting's media time 0, once its audio has "
        "started (null before): a dialogue's start_ms plus this is when it was said")


class MeetingList(BaseModel):
    meetings: list[MeetingOut]
    limit: int
    offset: int


class ParticipantOut(BaseModel):
    user_id: str
    username: str
    profile_pic_url: str
    role: Literal["owner", "participant", "viewer"]


class Participants(BaseModel):
    meeting_id: str
    participants: list[ParticipantOut]


INVITE_RULES = fields.BodyRules(exactly_one_of=("user_id", "username"))
StartMs = fields.integer(ge=0, description="When it is meant to start (ms since the epoch)")


class Invite(BaseModel):
    """Who to add: exactly one of ``user_id`` and ``username`` (a username or an email)."""

    model_config = ConfigDict(json_schema_extra=INVITE_RULES.json_schema)

    user_id: str = fields.omittable(pattern=fields.USER_ID)
    username: str = fields.omittable(min_length=1, max_length=254)
    role: Literal["participant", "viewer"] = "participant"

    @model_validator(mode="after")
    def _follows_the_rules(self) -> Invite:
        INVITE_RULES.check(self)
        return self


class LinkCreate(BaseModel):
    role: Literal["participant", "viewer"] = "participant"


class LinkOut(BaseModel):
    link_id: str
    meeting_id: str
    role: Literal["participant", "viewer"]
    created_at_ms: int
    token: str = Field(description="Whoever holds it may join: POST /v1/meeting-links/join")


class Links(BaseModel):
    meeting_id: str
    links: list[LinkOut]


class JoinLink(BaseModel):
    token: str = Field(min_length=1, max_length=4096)


class TicketOut(BaseModel):
    ticket: str = Field(description="Single use; pass it as ?ticket= when opening the socket")
    expires_in: int = Field(description="Seconds it stays valid")
    url: str = Field(description="The socket's path")


async def meetings_out(request: Request, views: list[MeetingView]) -> list[dict[str, Any]]:
    """The meetings as the API shows them to a caller in the role each view says."""
    epochs = await meeting_queries.media_epochs(request.app.state.store, [v.meeting.meeting_id for v in views])
    return [{**v.meeting.public(), "role": v.role, "media_epoch_ms": epochs.get(v.meeting.meeting_id)} for v in views]


async def meeting_out(request: Request, view: MeetingView) -> dict[str, Any]:
    return (await meetings_out(request, [view]))[0]


@router.post("/v1/meetings", status_code=201, response_model=MeetingOut, responses=declared(400, 401))
async def create_meeting(request: Request, caller: SignedIn, body: MeetingCreate,
                         idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Create a meeting owned by the caller. Its id (``meeting_id``) is made by the server; a retry with the
    same ``Idempotency-Key`` answers with the same meeting."""
    meetings = directory(request)
    meeting_id = ids.meeting_id(caller.user_id, idempotency_key or uuid.uuid4().hex)
    async with meetings.lock:
        existing = await meetings.meeting(request, meeting_id)
        if existing is None:
            now = now_ms()
            existing = MeetingRecord(meeting_id, body.title, caller.user_id, now, now, body.scheduled_start_ms,
                                     tuple(body.agenda), glossary=tuple(body.glossary))  # fmt: skip
            await meetings.put_meeting(request, existing, existing.event("created", caller.user_id))
            await publish_vocabulary(request, existing)
    return await meeting_out(request, MeetingView(existing, "owner"))


@router.get("/v1/meetings", response_model=MeetingList, responses=declared(401, 403, notes={403: "all=true needs an admin"}))
async def list_meetings(
    request: Request,
    caller: SignedIn,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    all: Annotated[bool, Query(description="Every meeting (admins only)")] = False,
) -> dict[str, Any]:
    """The meetings the caller owns or takes part in, newest first."""
    store = request.app.state.store
    if all and not caller.is_admin:
        raise HTTPException(status_code=403, detail="only admins list every meeting")
    meeting_ids = await (meeting_queries.all_meeting_ids(store, limit, offset) if all
                         else meeting_queries.meetings_of(store, caller.user_id, limit, offset))  # fmt: skip
    meetings = directory(request)
    # This process's own writes the store may not have yet: meetings the caller made or joined here.
    recent = [m.meeting_id for m in meetings.meetings.values() if m.owner_id == caller.user_id] + [
        r.meeting_id for r in meetings.members.values() if r.user_id == caller.user_id and r.active]
    candidates = list(dict.fromkeys([*meeting_ids, *(recent if offset == 0 else [])]))
    found = await meetings.meetings_by_id(request, candidates)
    members = await meetings.memberships(request, caller.user_id, candidates)
    views = []
    for meeting_id, meeting in found.items():
        role = role_in(meeting, members.get(meeting_id), caller.user_id, caller.is_admin)
        if role is not None:
            views.append(MeetingView(meeting, role))
    views.sort(key=lambda v: (-v.meeting.created_at_ms, v.meeting.meeting_id))
    return {"meetings": await meetings_out(request, views[:limit]), "limit": limit, "offset": offset}


@router.get("/v1/meetings/{meeting_id}", response_model=MeetingOut, responses=NOT_FOUND)
async def get_meeting(request: Request, view: CanRead) -> dict[str, Any]:
    return await meeting_out(request, view)


@router.patch("/v1/meetings/{meeting_id}", response_model=MeetingOut, responses=MANAGE_WITH_BODY)
async def update_meeting(request: Request, caller: SignedIn, view: CanManage, body: MeetingPatch) -> dict[str, Any]:
    """Change the title, scheduled start, agenda or glossary (owner). The meeting's speech decoder hears
    its participants' names, title, agenda and glossary (as much as fits its prompt) from the next
    utterance on."""
    changes = body.model_dump(exclude_unset=True)
    for listed in ("agenda", "glossary"):
        if listed in changes:
            changes[listed] = tuple(changes[listed])
    meetings = directory(request)
    async with meetings.lock:
        current = await meetings.meeting(request, view.meeting.meeting_id) or view.meeting
        record = current.changed(now_ms(), **changes)
        await meetings.put_meeting(request, record, record.event("updated", caller.user_id))
        await publish_vocabulary(request, record)
    return await meeting_out(request, MeetingView(record, view.role))


@router.post("/v1/meetings/{meeting_id}/end", response_model=MeetingOut, responses=MANAGE_DENIED)
async def end_meeting(request: Request, caller: SignedIn, view: CanManage) -> dict[str, Any]:
    """End the meeting (owner): no new audio streams; transcripts, edits and chat stay, and its final summary
    and action items are made once its last words are transcribed. Ending an ended meeting changes nothing."""
    meetings = directory(request)
    async with meetings.lock:
        current = await meetings.meeting(request, view.meeting.meeting_id) or view.meeting
        if current.ended:
            return await meeting_out(request, MeetingView(current, view.role))
        now = now_ms()
        record = current.changed(now, ended_at_ms=now)
        await meetings.put_meeting(request, record, record.event("ended", caller.user_id))
    # The meeting's final summary and tasks: enrichment runs once its last words are transcribed. (Were this
    # lost in a crash, the meeting's idleness would still start it: PALAVER_MEETING_IDLE_S.)
    await request_enrichment(request, record.meeting_id, "ended", caller.user_id, now)
    for forget in getattr(request.app.state, "meeting_ended", ()):
        forget(record.meeting_id)  # per-meeting state of services in this process (the ingest clock)
    return await meeting_out(request, MeetingView(record, view.role))


@router.delete("/v1/meetings/{meeting_id}", status_code=204, responses=MANAGE_DENIED)
async def delete_meeting(request: Request, caller: SignedIn, view: CanManage) -> Response:
    """Erase the meeting (owner): its transcripts, dialogues, edits, chat, action items, members and links
    leave the store and the compacted topics; what stays is a content-free mark that it was deleted, so
    its id answers 404 from then on. Cannot be undone. What an erasure cannot reach (events on the
    delete-policy topics, audio until its retention): docs/architecture.md, "Erasure"."""
    meetings = directory(request)
    state = request.app.state
    async with meetings.lock:
        try:
            purged = await purge_meeting(state.settings, state.producer, state.store, view.meeting.meeting_id,
                                         caller.user_id, now_ms())  # fmt: skip
        except NoSuchMeeting:
            raise not_found(view.meeting.meeting_id) from None
        meetings.meetings.put(purged.meeting_id, MeetingRecord.from_event(purged.marker))
    for forget in getattr(state, "meeting_ended", ()):
        forget(view.meeting.meeting_id)
    return Response(status_code=204)


@router.get("/v1/meetings/{meeting_id}/participants", response_model=Participants, responses=NOT_FOUND)
async def list_participants(request: Request, view: CanRead) -> dict[str, Any]:
    """The owner and the active members, with their names and pictures."""
    return {"meeting_id": view.meeting.meeting_id, "participants": await people_of(request, view.meeting)}


async def people_of(request: Request, meeting: MeetingRecord) -> list[dict[str, Any]]:
    """The meeting's owner and active members (deleted users left out) as ``ParticipantOut``, by name."""
    members = await directory(request).all_members(request, meeting.meeting_id)
    roles = {meeting.owner_id: "owner", **{m.user_id: m.role for m in members.values()
                                           if m.active and m.user_id != meeting.owner_id}}  # fmt: skip
    users = await request.app.state.users.lookup(request, sorted(roles))
    out = [{"user_id": uid, "username": users[uid].username, "profile_pic_url": users[uid].profile_pic_url,
            "role": role} for uid, role in roles.items() if uid in users and not users[uid].deleted]  # fmt: skip
    return sorted(out, key=lambda p: p["username"].lower())


async def publish_vocabulary(request: Request, meeting: MeetingRecord) -> None:
    """Publish the meeting's vocabulary as it is now (``api.meeting_vocabulary``): its newest state and its
    people's names. Called, under the directory's lock, after every change of what it is made of."""
    current = await directory(request).meeting(request, meeting.meeting_id) or meeting
    usernames = [p["username"] for p in await people_of(request, current)]
    await meeting_vocabulary.publish(request, current, usernames, now_ms())


async def _set_member(request: Request, actor_id: str, meeting: MeetingRecord, user_id: str, role: str,
                      change: str, via_link: str | None = None) -> MemberRecord:  # fmt: skip
    meetings = directory(request)
    async with meetings.lock:
        current = await meetings.member(request, meeting.meeting_id, user_id)
        if current is not None and current.active and current.role == role:
            return current
        if current is None:
            record = MemberRecord(meeting.meeting_id, user_id, role, "active", now_ms(), via_link)  # type: ignore[arg-type]
        else:
            record = current.changed(now_ms(), role=role, status="active", via_link=via_link or current.via_link)
        await meetings.put_member(request, record, record.event(change, actor_id))  # type: ignore[arg-type]
        await publish_vocabulary(request, meeting)
    return record


@router.post("/v1/meetings/{meeting_id}/participants", status_code=201, response_model=ParticipantOut,
             responses=declared(400, 401, 403, 404, 409, notes={
                 **MANAGE_NOTES, 404: "No such meeting for this caller, or no such user",
                 409: "The owner's role cannot change"}))  # fmt: skip
async def invite(request: Request, caller: SignedIn, view: CanManage, body: Invite) -> dict[str, Any]:
    """Add a user (by ``user_id`` or ``username``) as a participant or viewer, or change a member's role."""
    directory = request.app.state.users
    user = await (directory.get(request, body.user_id) if body.user_id else directory.named(request, body.username))
    if user is None:
        raise HTTPException(status_code=404, detail="no such user")
    if user.user_id == view.meeting.owner_id:
        raise HTTPException(status_code=409, detail="the owner is always in the meeting")
    await _set_member(request, caller.user_id, view.meeting, user.user_id, body.role, "invited")
    return {"user_id": user.user_id, "username": user.username, "profile_pic_url": user.profile_pic_url,
            "role": body.role}  # fmt: skip


async def _drop(request: Request, actor_id: str, meeting: MeetingRecord, user_id: str,
                status: Literal["left", "removed"]) -> None:  # fmt: skip
    meetings = directory(request)
    async with meetings.lock:
        current = await meetings.member(request, meeting.meeting_id, user_id)
        if current is None or not current.active:
            raise HTTPException(status_code=404, detail=f"{user_id} is not a participant")
        record = current.changed(now_ms(), status=status)
        await meetings.put_member(request, record, record.event(status, actor_id))
        await publish_vocabulary(request, meeting)


@router.delete("/v1/meetings/{meeting_id}/participants/{user_id}", status_code=204,
               responses=declared(401, 403, 404, 409, notes={
                   **MANAGE_NOTES, 404: "No such meeting for this caller, or the user is not a participant",
                   409: "The owner cannot be removed"}))  # fmt: skip
async def remove_participant(request: Request, caller: SignedIn, view: CanRead,
                             user_id: UserId) -> Response:
    """Remove a participant (owner), or leave (a participant removing themselves)."""
    if user_id == view.meeting.owner_id:
        raise HTTPException(status_code=409, detail="the owner cannot leave or be removed; end or delete the meeting")
    if user_id != caller.user_id and not view.can_manage:
        raise HTTPException(status_code=403, detail="only the meeting's owner may remove others")
    await _drop(request, caller.user_id, view.meeting, user_id, "left" if user_id == caller.user_id else "removed")
    return Response(status_code=204)


@router.post("/v1/meetings/{meeting_id}/leave", status_code=204,
             responses=declared(401, 404, 409, notes={**READ_NOTES, 409: "The owner cannot leave"}))  # fmt: skip
async def leave(request: Request, caller: SignedIn, view: CanRead) -> Response:
    """Leave the meeting: it disappears from the caller's meetings and reads."""
    if caller.user_id == view.meeting.owner_id:
        raise HTTPException(status_code=409, detail="the owner cannot leave; end or delete the meeting")
    await _drop(request, caller.user_id, view.meeting, caller.user_id, "left")
    return Response(status_code=204)


def _link_token(request: Request, link: LinkRecord) -> str:
    # Signed from the link's own fields, so the owner can be shown the same token again.
    claims = {"mtg": link.meeting_id, "lnk": link.link_id}
    return sign(request.app.state.secret, "link", claims, now_ms=link.created_at_ms, ttl_ms=LINK_TTL_MS)


def _link_out(request: Request, link: LinkRecord) -> dict[str, Any]:
    return {"link_id": link.link_id, "meeting_id": link.meeting_id, "role": link.role,
            "created_at_ms": link.created_at_ms, "token": _link_token(request, link)}  # fmt: skip


@router.post("/v1/meetings/{meeting_id}/links", status_code=201, response_model=LinkOut, responses=MANAGE_WITH_BODY)
async def create_link(request: Request, caller: SignedIn, view: CanManage, body: LinkCreate) -> dict[str, Any]:
    """A share link: any signed-in user holding its token may join with its role, until it is revoked."""
    now = now_ms()
    link = LinkRecord(view.meeting.meeting_id, f"lnk_{secrets.token_hex(12)}", body.role, now, now)
    await directory(request).put_link(request, link, link.event("created", caller.user_id))
    return _link_out(request, link)


@router.get("/v1/meetings/{meeting_id}/links", response_model=Links, responses=MANAGE_DENIED)
async def list_links(request: Request, view: CanManage) -> dict[str, Any]:
    """The meeting's share links that are not revoked (owner)."""
    links = await directory(request).all_links(request, view.meeting.meeting_id)
    live = sorted((lk for lk in links.values() if not lk.revoked), key=lambda lk: lk.created_at_ms)
    return {"meeting_id": view.meeting.meeting_id, "links": [_link_out(request, lk) for lk in live]}


@router.delete("/v1/meetings/{meeting_id}/links/{link_id}", status_code=204, responses=declared(
    401, 403, 404, notes={**MANAGE_NOTES, 404: "No such meeting for this caller, or no such link"}))
async def revoke_link(request: Request, caller: SignedIn, view: CanManage, link_id: LinkId) -> Response:
    """Revoke a share link: nobody joins with it any more (who joined stays)."""
    meetings = directory(request)
    link = (await meetings.all_links(request, view.meeting.meeting_id)).get(link_id)
    if link is None or link.revoked:
        raise HTTPException(status_code=404, detail=f"no link {link_id}")
    record = link.changed(now_ms(), revoked=True)
    await meetings.put_link(request, record, record.event("revoked", caller.user_id))
    return Response(status_code=204)


@router.post("/v1/meeting-links/join", response_model=MeetingOut,
             responses=declared(400, 401, 404, notes={
                 404: "The link is unknown, revoked or expired, or its meeting is gone"}))  # fmt: skip
async def join_with_link(request: Request, caller: SignedIn, body: JoinLink) -> dict[str, Any]:
    """Join a meeting with a share link's token; a member keeps the higher of its role and the link's."""
    gone = HTTPException(status_code=404, detail="this link does not work (revoked, expired or unknown)")
    try:
        claims = verify(request.app.state.secret, "link", body.token, now_ms=now_ms())
    except InvalidToken:
        raise gone from None
    meetings = directory(request)
    meeting = await meetings.meeting(request, claims["mtg"])
    link = (await meetings.all_links(request, claims["mtg"])).get(claims["lnk"])
    if meeting is None or meeting.deleted or link is None or link.revoked:
        raise gone
    member = await meetings.member(request, meeting.meeting_id, caller.user_id)
    role = role_in(meeting, member, caller.user_id, caller.is_admin)
    if role in ("owner", "participant") or (role == "viewer" and link.role == "viewer"):
        return await meeting_out(request, MeetingView(meeting, role))
    record = await _set_member(request, caller.user_id, meeting, caller.user_id, link.role, "joined", link.link_id)
    return await meeting_out(request, MeetingView(meeting, record.role))


def issue_ticket(request: Request, meeting_id: str, user_id: str, use: Literal["ingest", "live"]) -> dict[str, Any]:
    ttl_s = request.app.state.settings.ticket_ttl_s
    claims = {"mtg": meeting_id, "sub": user_id, "use": use, "n": secrets.token_hex(8)}
    ticket = sign(request.app.state.secret, "ticket", claims, now_ms=now_ms(), ttl_ms=ttl_s * 1000)
    path = f"/v1/meetings/{meeting_id}/" + ("stream" if use == "ingest" else "live")
    return {"ticket": ticket, "expires_in": ttl_s, "url": path}


@router.post("/v1/meetings/{meeting_id}/ingest-tickets", status_code=201, response_model=TicketOut,
             responses=declared(401, 403, 404, 409, notes={**WRITE_NOTES, 409: "The meeting has ended"}))  # fmt: skip
async def ingest_ticket(request: Request, caller: SignedIn, view: CanWrite) -> dict[str, Any]:
    """A single-use ticket, valid for ``PALAVER_TICKET_TTL_S`` (60 s), to stream the caller's microphone
    into this meeting: ``WS /v1/meetings/{meeting_id}/stream?ticket=...``. The stream's speaker is the
    caller. Take a fresh one for every connection, reconnects included."""
    if view.meeting.ended:
        raise HTTPException(status_code=409, detail="the meeting has ended")
    return issue_ticket(request, view.meeting.meeting_id, caller.user_id, "ingest")


@router.post("/v1/meetings/{meeting_id}/live-tickets", status_code=201, response_model=TicketOut,
             responses=NOT_FOUND)  # fmt: skip
async def live_ticket(request: Request, caller: SignedIn, view: CanRead) -> dict[str, Any]:
    """A single-use ticket for ``WS /v1/meetings/{meeting_id}/live?ticket=...``, for clients that cannot send
    the session cookie (browsers signed in by cookie need none)."""
    return issue_ticket(request, view.meeting.meeting_id, caller.user_id, "live")
