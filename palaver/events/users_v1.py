"""User accounts, as events on the ``users`` topic (key: ``user_id``; compacted).

Each event is the user's whole state after a change, so the store writer maps it to a row without reading
anything, a replay rebuilds the ``users`` table, and compaction keeps exactly the newest state per user
(old password hashes do not stay in the log forever). ``version`` orders a user's states: the API makes it
strictly increasing per user (milliseconds since the epoch, at least the previous version + 1).

The plaintext password never appears here: ``password_hash`` is a salted scrypt string
(``scrypt$n=...,r=...,p=...$salt$hash``, see ``api/passwords.py``).
"""

from __future__ import annotations

from typing import Literal

from palaver.events.base import EventV

UserRole = Literal["admin", "member", "guest"]
UserChange = Literal["created", "updated", "password_changed", "deleted"]


class UserChangedV1(EventV):
    event: Literal["user.changed"] = "user.changed"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("user.changed", user_id, user_version)
    user_id: str
    change: UserChange  # what this change did; the fields below are the state after it
    username: str
    email: str
    password_hash: str
    role: UserRole
    profile_pic_url: str
    deleted: bool = False  # a soft delete: the row stays, reads leave it out
    created_at_ms: int
    updated_at_ms: int
    user_version: int  # the row's ReplacingMergeTree version
