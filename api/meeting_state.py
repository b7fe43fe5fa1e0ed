"""A meeting, its members and its share links as plain records (pure: no I/O).

Each record is one entity of the ``meetings`` topic (see ``palaver.events.meetings_v1``): ``changed``
gives the next state with a version above the last, ``event`` the event that publishes it, ``from_row``
reads it back from the store (``api.queries``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from palaver import ids
from palaver.events.meetings_v1 import (
    LinkChange,
    MeetingChange,
    MeetingChangedV1,
    MeetingLinkV1,
    MeetingMemberV1,
    MemberChange,
)

Role = Literal["owner", "participant", "viewer"]


def next_version(now_ms: int, previous: int) -> int:
    """A version above ``previous`` even if the clock went back."""
    return max(now_ms, previous + 1)


@dataclass(frozen=True, slots=True)
class MeetingRecord:
    meeting_id: str
    title: str
    owner_id: str
    created_at_ms: int
    meeting_version: int
    scheduled_start_ms: int | None = None
    agenda: tuple[str, ...] = ()
    ended_at_ms: int | None = None
    glossary: tuple[str, ...] = ()  # the meeting's own terms for its speech decoder
    deleted: bool = False

    @property
    def ended(self) -> bool:
        return self.ended_at_ms is not None

    def changed(self, now_ms: int, **fields: Any) -> MeetingRecord:
        return replace(self, **fields, meeting_version=next_version(now_ms, self.meeting_version))

    def event(self, change: MeetingChange, actor_id: str) -> MeetingChangedV1:
        return MeetingChangedV1(
            event_id=ids.event_id("meeting.changed", self.meeting_id, self.meeting_version),
            change=change, actor_id=actor_id,
            **{**asdict(self), "agenda": list(self.agenda), "glossary": list(self.glossary)},
        )  # fmt: skip

    def public(self) -> dict[str, Any]:
        return {**asdict(self), "agenda": list(self.agenda), "glossary": list(self.glossary),
                "status": "ended" if self.ended else "open"}  # fmt: skip

    @classmethod
    def from_event(cls, event: MeetingChangedV1) -> MeetingRecord:
        fields = {f: getattr(event, f) for f in cls.__slots__}  # type: ignore[attr-defined]
        return cls(**{**fields, "agenda": tuple(event.agenda), "glossary": tuple(event.glossary)})


@dataclass(frozen=True, slots=True)
class MemberRecord:
    meeting_id: str
    user_id: str
    role: Role
    status: Literal["active", "left", "removed"]
    member_version: int
    via_link: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def changed(self, now_ms: int, **fields: Any) -> MemberRecord:
        return replace(self, **fields, member_version=next_version(now_ms, self.member_version))

    def event(self, change: MemberChange, actor_id: str) -> MeetingMemberV1:
        return MeetingMemberV1(
            event_id=ids.event_id("meeting.member", self.meeting_id, self.user_id, self.member_version),
            change=change, actor_id=actor_id, **asdict(self),
        )  # fmt: skip

    @classmethod
    def from_event(cls, event: MeetingMemberV1) -> MemberRecord:
        return cls(**{f: getattr(event, f) for f in cls.__slots__})  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class LinkRecord:
    meeting_id: str
    link_id: str
    role: Literal["participant", "viewer"]
    created_at_ms: int
    link_version: int
    revoked: bool = False

    def changed(self, now_ms: int, **fields: Any) -> LinkRecord:
        return replace(self, **fields, link_version=next_version(now_ms, self.link_version))

    def event(self, change: LinkChange, actor_id: str) -> MeetingLinkV1:
        return MeetingLinkV1(
            event_id=ids.event_id("meeting.link", self.meeting_id, self.link_id, self.link_version),
            change=change, actor_id=actor_id, **asdict(self),
        )  # fmt: skip

    @classmethod
    def from_event(cls, event: MeetingLinkV1) -> LinkRecord:
        return cls(**{f: getattr(event, f) for f in cls.__slots__})  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class MeetingView:
    """What one caller may do in one meeting, decided from the meeting, the caller's membership and
    whether the caller is an admin."""

    meeting: MeetingRecord
    role: Role | Literal["admin"]

    @property
    def can_write(self) -> bool:
        """Stream audio, edit, chat: owner, participant, admin."""
        return self.role != "viewer"

    @property
    def can_manage(self) -> bool:
        """End, rename, invite, remove, make links, delete: the owner and admins."""
        return self.role in ("owner", "admin")


def role_in(meeting: MeetingRecord | None, member: MemberRecord | None, user_id: str, is_admin: bool
            ) -> Role | Literal["admin"] | None:  # fmt: skip
    """The caller's role in the meeting, or None when the caller may not know it exists (a deleted meeting
    is gone for everyone)."""
    if meeting is None or meeting.deleted:
        return None
    if meeting.owner_id == user_id:
        return "owner"
    if member is not None and member.active:
        return member.role
    return "admin" if is_admin else None
