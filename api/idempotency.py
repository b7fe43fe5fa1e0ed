"""Idempotency keys, as Stripe has them: a write may carry an ``Idempotency-Key`` header; the key is stored
with the row the write made (its event carries it, the store keeps it), and a later request with the same
key, however much later, gets the earlier result when it asks for the same thing and 409 when it asks for
something else. It never writes again, so a reused key cannot rewrite an earlier message or edit.

A key belongs to a scope: one meeting's chat, or one meeting's edits. The earlier request is found in this
process's memory of its own keyed writes (kept a few minutes: the store writer makes a write readable a
moment after the API answered it), else in the store. Requests with one key are serialized within a
process, so two at once cannot both write. Several API processes share only the store: two requests with one
key on different processes within the store writer's lag can both write (same ids: the later replaces the
earlier), as for users (README "Users and chat: consistency").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import HTTPException

from api.user_state import RecentWrites

KEY_MAX_LENGTH = 255  # Stripe's limit too
Scope = Literal["chat", "edits", "enrichment"]
KEY_REUSED = "The Idempotency-Key was already used in this meeting for a different request"


def scope_of(kind: Scope, meeting_id: str, key: str) -> str:
    """The memory key of an Idempotency-Key: keys of different meetings or kinds never meet."""
    return "\x1f".join((kind, meeting_id, key))


def differing(earlier: Mapping[str, Any], requested: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """Which of ``fields`` the requested write sets otherwise than the earlier one with its key did."""
    return [f for f in fields if earlier.get(f) != requested.get(f)]


def conflict(key: str, made: str, fields: Sequence[str]) -> HTTPException:
    """409 for a key reused with another request: what it made, what differs, and what to do."""
    return HTTPException(
        status_code=409,
        detail=f"Idempotency-Key {key!r} was already used in this meeting for another request, which made "
        f"{made}; this request differs in {', '.join(fields)}. Send a new key for a new request.",
    )


class KeyedWrites:
    """This process's memory of its keyed writes (what each made, as the store keeps it; a few minutes)
    and a lock per key in use."""

    def __init__(self, ttl_s: float = 300.0, max_items: int = 10_000, clock: Any = time.monotonic):
        self._recent: RecentWrites[dict[str, Any]] = RecentWrites(ttl_s, max_items, clock)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, scope: str) -> AsyncIterator[None]:
        """Serialize the requests of one key; the lock goes when its last holder or waiter leaves."""
        lock, users = self._locks.get(scope, (asyncio.Lock(), 0))
        self._locks[scope] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[scope]
            if users == 1:
                del self._locks[scope]
            else:
                self._locks[scope] = (lock, users - 1)

    def held(self) -> int:
        """How many keys have a request in flight or waiting."""
        return len(self._locks)

    def recent(self, scope: str) -> dict[str, Any] | None:
        return self._recent.get(scope)

    def remember(self, scope: str, made: dict[str, Any]) -> None:
        self._recent.put(scope, made)

    def forget(self) -> None:
        """Drop the memory (the store still knows every key that reached it)."""
        self._recent.clear()


async def earlier_write(
    writes: KeyedWrites,
    scope: str,
    key: str,
    requested: Mapping[str, Any],
    fields: Sequence[str],
    id_field: str,
    find_stored: Callable[[], Awaitable[dict[str, Any] | None]],
) -> dict[str, Any] | None:
    """What the key's earlier request made (from memory, else the store), or None for a new key.

    Raises 409 (``conflict``) when the earlier request set any of ``fields`` otherwise than ``requested``.
    Call it holding ``writes.hold(scope)``."""
    earlier = writes.recent(scope) or await find_stored()
    if earlier is None:
        return None
    differs = differing(earlier, requested, fields)
    if differs:
        raise conflict(key, str(earlier[id_field]), differs)
    return earlier
