"""Pure logic of unique names: how a username or an email is normalized into the key it is claimed by, how
the name registry decides a claim or a release, and which names the users already in the log hold.

A name's state in the registry is ``{"owner": user_id | None, "offset": N}``: who holds it (None: free
again) and the offset of the last claim or release of it that was applied. The offset makes a replay
harmless: the registry writes its state before it commits its input offsets, so after a crash it can
read again requests whose effect its restored state already holds; those are recognised and skipped
(their decisions were delivered before that state was written), and every later request is decided
against exactly the state it was first decided against, so it gets the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.partitioner import murmur2

from palaver.events.name_claims_v1 import NameClaimV1, NameReleaseV1
from palaver.events.users_v1 import UserChangedV1

NameKind = Literal["username", "email"]
NameState = dict[str, Any]  # {"owner": str | None, "offset": int}: JSON, as the changelog keeps it
SEEDED_OFFSET = -1  # the offset of a name learnt from the users topic: every request comes after it


def name_key(kind: NameKind, value: str) -> str:
    """The key a name is claimed by: ``"username:alice"``, ``"email:ana@example.com"`` (the whole address
    lowercase: two addresses differing only in case are one account's)."""
    return f"{kind}:{value.lower()}"


def user_names(username: str, email: str) -> dict[NameKind, str]:
    """The two names a user holds, by kind."""
    return {"username": name_key("username", username), "email": name_key("email", email)}


def kind_of(name: str) -> NameKind:
    kind = name.partition(":")[0]
    assert kind in ("username", "email"), name
    return kind  # type: ignore[return-value]


def partition_of(name: str, partitions: int) -> int:
    """The partition a name's requests go to: the Kafka producer's default partitioner (murmur2 of the key),
    so the registry can place names it learns elsewhere (``names_in_use``) where their requests will come."""
    return (murmur2(name.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Decision:
    state: NameState | None  # the name's state after the request (the same object when unchanged)
    granted: bool | None  # a claim's answer; None for a release, or a request already applied (no answer)


def decide(state: NameState | None, request: NameClaimV1 | NameReleaseV1, offset: int) -> Decision:
    """Apply one request at ``offset`` of its partition to its name's ``state`` (None: never claimed).

    A claim is granted when the name is free or already the claimant's (an idempotent retry), refused
    otherwise. A release frees the name when the releaser owns it, and does nothing otherwise. A request at
    or before the state's offset was applied before (a replay): nothing changes and nothing is answered.
    Does not mutate ``state``."""
    if state is not None and offset <= state["offset"]:
        return Decision(state, None)
    owner = state["owner"] if state is not None else None
    if isinstance(request, NameReleaseV1):
        return Decision({"owner": None if owner == request.user_id else owner, "offset": offset}, None)
    granted = owner is None or owner == request.user_id
    return Decision({"owner": request.user_id if granted else owner, "offset": offset}, granted)


def names_in_use(events: Iterable[UserChangedV1]) -> dict[str, str]:
    """name -> owner of the names held by live users, from ``user.changed`` events in log order (a user's
    newest state counts). Two users holding one name (possible before the registry decided names) leave
    it to the one created first."""
    newest: dict[str, UserChangedV1] = {}
    for event in events:
        have = newest.get(event.user_id)
        if have is None or event.user_version >= have.user_version:
            newest[event.user_id] = event
    owners: dict[str, str] = {}
    for user in sorted(newest.values(), key=lambda u: (u.created_at_ms, u.user_id)):
        if user.deleted:
            continue
        for name in user_names(user.username, user.email).values():
            owners.setdefault(name, user.user_id)
    return owners
