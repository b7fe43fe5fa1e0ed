"""Pure logic behind the users API: a user's state, the newest of what the store and this process know,
uniqueness of usernames and emails, and a short memory of this process's own writes.

Why a memory: the API answers once the event is durable in Kafka, and the store writer makes it readable
a moment later. Reading the store alone, two quick PATCHes of one user would each start from the state
before the first and the second would undo the first; two quick creates could take the same username.
The memory (newest state per user that this process published, kept a few minutes) closes that gap for
one API process. Several API processes behind a load balancer share only the store, so two changes of one
user on two processes within the store writer's lag can still race (last writer wins; see README "Users").
Uniqueness of usernames and emails is not decided here but by the name registry (``api.name_registry``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Generic, TypeVar

from palaver import ids
from palaver.events import UserChangedV1
from palaver.events.users_v1 import UserChange

PUBLIC_FIELDS = ("user_id", "username", "email", "role", "profile_pic_url", "created_at_ms", "updated_at_ms")


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    username: str
    email: str
    password_hash: str = field(repr=False)
    role: str
    profile_pic_url: str
    deleted: bool
    created_at_ms: int
    updated_at_ms: int
    user_version: int

    @classmethod
    def from_event(cls, event: UserChangedV1) -> UserRecord:
        return cls(**{f: getattr(event, f) for f in cls.__slots__})  # type: ignore[attr-defined]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> UserRecord:
        """From a ``users`` row read with the aliases of ``api.queries.USER_FIELDS``."""
        return cls(**{**{f: row[f] for f in cls.__slots__}, "deleted": bool(row["deleted"])})  # type: ignore[attr-defined]

    def public(self) -> dict[str, Any]:
        """What a response may show: never the password hash."""
        return {f: getattr(self, f) for f in PUBLIC_FIELDS}

    def changed(self, now_ms: int, **fields: Any) -> UserRecord:
        """The next state: ``fields`` applied, a version above this one even if the clock went back."""
        version = max(now_ms, self.user_version + 1)
        return replace(self, **fields, updated_at_ms=now_ms, user_version=version)

    def event(self, change: UserChange) -> UserChangedV1:
        return UserChangedV1(event_id=ids.event_id("user.changed", self.user_id, self.user_version),
                             change=change, **asdict(self))  # type: ignore[arg-type]  # fmt: skip


def new_user(user_id: str, username: str, email: str, password_hash: str, role: str, profile_pic_url: str,
             now_ms: int) -> UserRecord:  # fmt: skip
    return UserRecord(
        user_id, username, email, password_hash, role, profile_pic_url, False, now_ms, now_ms, now_ms
    )


def newest(*candidates: Iterable[UserRecord]) -> dict[str, UserRecord]:
    """The highest version of each user among all candidates (store rows, this process's writes)."""
    out: dict[str, UserRecord] = {}
    for group in candidates:
        for record in group:
            have = out.get(record.user_id)
            if have is None or record.user_version > have.user_version:
                out[record.user_id] = record
    return out


V = TypeVar("V")


class RecentWrites(Generic[V]):
    """The newest value this process wrote per key, forgotten after ``ttl_s`` or beyond ``max_items``
    (by then the store writer has long made it readable)."""

    def __init__(self, ttl_s: float = 300.0, max_items: int = 10_000, clock: Any = time.monotonic):
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._ttl_s, self._max, self._clock = ttl_s, max_items, clock

    def put(self, key: str, value: V) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock(), value)
        self._expire()

    def get(self, key: str) -> V | None:
        self._expire()
        found = self._items.get(key)
        return found[1] if found else None

    def values(self) -> list[V]:
        self._expire()
        return [v for _, v in self._items.values()]

    def clear(self) -> None:
        self._items.clear()

    def _expire(self) -> None:
        limit = self._clock() - self._ttl_s
        while self._items and (len(self._items) > self._max or next(iter(self._items.values()))[0] < limit):
            self._items.popitem(last=False)
