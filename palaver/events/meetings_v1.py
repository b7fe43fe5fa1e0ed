"""Meetings as resources, as events on the ``meetings`` topic (compacted).

Three kinds of entity, each event the entity's whole state after a change, keyed by the entity:
``meeting.changed`` (key ``<meeting_id>``), ``meeting.member`` (key ``<meeting_id>/member/<user_id>``) and
``meeting.link`` (key ``<meeting_id>/link/<link_id>``). Every record of one meeting goes to the partition of
its meeting id (``palaver.events.registry.meeting_partition``), so a consumer sees a meeting's changes in
order; compaction keeps the newest state of each entity, and erasing a meeting is a tombstone per key.
Entities never overwrite each other: two people joining at once are two keys, not a lost update.

``change`` names the lifecycle step (``created``, ``ended``, ``joined``, ``left``, ...): what enrichment
and other consumers react to. ``*_version`` orders an entity's states (ms since the epoch, strictly
increasing per entity), the row version of its table.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from palaver.events.base import EventV

MeetingChange = Literal["created", "updated", "ended", "deleted"]
MemberRole = Literal["owner", "participant", "viewer"]
MemberChange = Literal["joined", "invited", "role_changed", "left", "removed"]
MemberStatus = Literal["active", "left", "removed"]
LinkChange = Literal["created", "revoked"]


class MeetingChangedV1(EventV):
    event: Literal["meeting.changed"] = "meeting.changed"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("meeting.changed", meeting_id, meeting_version)
    meeting_id: str
    change: MeetingChange
    actor_id: str  # the user who made the change
    title: str
    scheduled_start_ms: int | None = None
    agenda: list[str] = Field(default_factory=list)
    # The meeting's own terms (names, jargon) for its speech decoder; none in events from before it
    glossary: list[str] = Field(default_factory=list)
    owner_id: str
    created_at_ms: int
    ended_at_ms: int | None = None
    deleted: bool = False
    meeting_version: int


class MeetingMemberV1(EventV):
    event: Literal["meeting.member"] = "meeting.member"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("meeting.member", meeting_id, user_id, member_version)
    meeting_id: str
    user_id: str
    change: MemberChange
    actor_id: str
    role: MemberRole
    status: MemberStatus
    via_link: str | None = None  # the share link it joined with
    member_version: int


class MeetingLinkV1(EventV):
    event: Literal["meeting.link"] = "meeting.link"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("meeting.link", meeting_id, link_id, link_version)
    meeting_id: str
    link_id: str
    change: LinkChange
    actor_id: str
    role: Literal["participant", "viewer"]  # what joining with it grants
    revoked: bool = False
    created_at_ms: int
    link_version: int
