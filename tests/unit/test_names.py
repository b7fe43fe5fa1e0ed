"""Unique names: normalization, the registry's decisions (``api.names.decide``), what it learns from the
users topic, the rate limiter and the registration modes."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiokafka.partitioner import DefaultPartitioner

from api.names import decide, name_key, names_in_use, partition_of, user_names
from api.rate_limit import SlidingWindowLimiter
from api.registration import make_invite, registration_allowed
from palaver.auth.tokens import sign
from palaver.events.name_claims_v1 import NameClaimV1, NameReleaseV1
from palaver.events.users_v1 import UserChangedV1
from palaver.settings import Settings

ANA, BOB = "usr_" + "a" * 24, "usr_" + "b" * 24
SECRET = b"k" * 32


def claim(user_id: str, name: str = "username:alice") -> NameClaimV1:
    return NameClaimV1(event_id="evt_1", request_id=f"r-{user_id}", name=name, user_id=user_id, requested_at_ms=0)


def release(user_id: str, name: str = "username:alice") -> NameReleaseV1:
    return NameReleaseV1(event_id="evt_2", request_id=f"x-{user_id}", name=name, user_id=user_id, requested_at_ms=0)


def test_names_are_lowercase_and_kind_prefixed() -> None:
    assert name_key("username", "Alice") == "username:alice"
    assert user_names("Alice.B", "Ana@Example.COM") == {"username": "username:alice.b",
                                                         "email": "email:ana@example.com"}  # fmt: skip


def test_partition_of_is_the_producers_default_partitioner() -> None:
    for name in ("username:alice", "email:ana@example.com", "username:x" * 20):
        assert partition_of(name, 6) == DefaultPartitioner()(name.encode(), list(range(6)), list(range(6)))


def run(requests: list[NameClaimV1 | NameReleaseV1]) -> tuple[dict | None, list[bool | None]]:
    state, answers = None, []
    for offset, request in enumerate(requests):
        decision = decide(state, request, offset)
        state, answers = decision.state, [*answers, decision.granted]
    return state, answers


def test_first_claim_wins_retries_are_granted_and_others_refused() -> None:
    state, answers = run([claim(ANA), claim(BOB), claim(ANA), claim(BOB)])
    assert answers == [True, False, True, False]
    assert state == {"owner": ANA, "offset": 3}


def test_release_frees_only_the_owners_name() -> None:
    state, answers = run([claim(ANA), release(BOB), claim(BOB), release(ANA), claim(BOB)])
    assert answers == [True, None, False, None, True]
    assert state == {"owner": BOB, "offset": 4}


def test_any_order_of_racing_claims_grants_exactly_one() -> None:
    racers = [claim(f"usr_{i:024d}") for i in range(4)]
    for order in itertools.permutations(racers):
        _, answers = run(list(order))
        assert answers == [True, False, False, False]


def test_a_replayed_request_changes_nothing_and_answers_nothing() -> None:
    """After a crash the registry may read again requests its restored state already holds (state is
    written before offsets are committed): a refusal read again after a release must not become a grant."""
    state, _ = run([claim(ANA), claim(BOB), release(ANA)])  # offsets 0, 1, 2
    for offset, request in enumerate([claim(ANA), claim(BOB), release(ANA)]):
        again = decide(state, request, offset)
        assert again.state is state and again.granted is None
    assert decide(state, claim(BOB), 3).granted is True  # a new request is decided


def user(user_id: str, username: str, email: str, version: int, deleted: bool = False, created: int = 0) -> UserChangedV1:
    return UserChangedV1(event_id=f"evt_{version}", user_id=user_id, change="deleted" if deleted else "created",
                         username=username, email=email, password_hash="scrypt$x", role="member", profile_pic_url="",
                         deleted=deleted, created_at_ms=created, updated_at_ms=version, user_version=version)  # fmt: skip


def test_names_in_use_take_each_users_newest_state() -> None:
    events = [
        user(ANA, "Ana", "ana@example.com", 1),
        user(ANA, "Anna", "ana@example.com", 2),  # renamed: "ana" is free
        user(BOB, "bob", "BOB@example.com", 1, created=5),
        user(BOB, "bob", "BOB@example.com", 3, deleted=True, created=5),  # deleted: both free
        user("usr_" + "c" * 24, "ANNA", "c@example.com", 1, created=9),  # a duplicate from before: first keeps it
    ]
    assert names_in_use(events) == {"username:anna": ANA, "email:ana@example.com": ANA,
                                    "email:c@example.com": "usr_" + "c" * 24}  # fmt: skip


def test_sliding_window_limits_per_key_and_tells_when_to_retry() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(3, 60, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("b") is None  # another key has its own window
    assert limiter.acquire("a") == 60
    now[0] += 20
    assert limiter.acquire("a") == 40  # refusals are not counted: the oldest still decides
    now[0] += 40  # the first three leave the window
    assert limiter.remaining("a") == 3
    assert limiter.acquire("a") is None
    now[0] += 0.5
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, 60]


def test_counting_only_failures_asks_first_and_notes_later() -> None:
    """Sign-in counts failed attempts only: ``wait_s`` asks without counting, ``note`` counts a failure,
    ``forget`` clears an account that signed in."""
    now = [0.0]
    limiter = SlidingWindowLimiter(2, 300, clock=lambda: now[0])
    assert limiter.wait_s("ana") is None and limiter.wait_s("ana") is None, "asking counts nothing"
    limiter.note("ana")
    now[0] += 100
    limiter.note("ana")
    assert limiter.wait_s("ana") == 200, "until the oldest failure leaves the window"
    now[0] += 200
    assert limiter.wait_s("ana") is None
    limiter.note("ana")
    limiter.forget("ana")
    assert limiter.remaining("ana") == 2


def test_sliding_window_forgets_idle_and_least_recent_keys() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(1, 10, clock=lambda: now[0], max_keys=2)
    for key in ("a", "b", "c"):
        assert limiter.acquire(key) is None
    assert limiter.remaining("a") == 1  # forgotten beyond max_keys
    assert limiter.acquire("c") == 10
    now[0] = 10
    assert limiter.acquire("c") is None
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 10)


@pytest.mark.parametrize(("mode", "admin", "invite", "allowed", "reason"), [
    ("open", False, None, True, ""),
    ("closed", False, None, False, "registration is closed"),
    ("closed", True, None, True, ""),
    ("invite", False, None, False, "registration is by invitation"),
    ("invite", True, None, True, ""),
    ("invite", False, "valid", True, ""),
    ("invite", False, "expired", False, "invite: the invite token has expired"),
    ("invite", False, "other-kind", False, "invite: not a valid invite token"),
    ("invite", False, "garbage", False, "invite: malformed token"),
])  # fmt: skip
def test_registration_modes(mode: str, admin: bool, invite: str | None, allowed: bool, reason: str) -> None:
    now = 1_000_000
    codes = {
        "valid": make_invite(SECRET, now_ms=now, ttl_hours=1),
        "expired": make_invite(SECRET, now_ms=now - 3600_001, ttl_hours=1),
        "other-kind": sign(SECRET, "access", {"sub": ANA}, now_ms=now, ttl_ms=60_000),
        "garbage": "garbage",
    }
    settings = Settings(registration=mode)  # type: ignore[arg-type]
    admission = registration_allowed(settings, admin, codes.get(invite or ""), secret=SECRET, now_ms=now)
    assert bool(admission) is allowed
    assert admission.reason.startswith(reason)


async def test_a_claim_waits_for_its_decision_and_counts_as_unanswered_without_one() -> None:
    """The asker (``api.name_claims.NameClaims``) over the in-memory broker: each claim is sent keyed by its
    name, a decision settles it, and a claim no decision answers in time is unanswered (the API's 503)."""
    from api.name_claims import NameClaims
    from palaver.events import decode
    from palaver.events.name_claims_v1 import NameDecisionV1
    from palaver.streams.memory_broker import MemoryBroker

    broker = MemoryBroker()
    claims = NameClaims(Settings(), broker.producer())  # type: ignore[arg-type]
    claims.ready.set()  # as once its reader is positioned
    names = list(user_names("ana", "ana@example.com").values())

    async def decide_username_only() -> None:
        while len(broker.records("name.claims")) < 2:
            await asyncio.sleep(0.001)
        for record in broker.records("name.claims"):
            request = decode(record.value)
            assert record.key == request.name.encode()  # type: ignore[attr-defined]
            if request.name.startswith("username:"):  # type: ignore[attr-defined]
                claims.settle(NameDecisionV1(event_id="evt_d", request_id=request.request_id, name=request.name,  # type: ignore[attr-defined]
                                             user_id=ANA, granted=False, decided_at_ms=0))  # fmt: skip

    decider = asyncio.create_task(decide_username_only())
    outcome = await claims.claim(names, ANA, timeout_s=0.5)
    await decider
    assert (outcome.granted, outcome.refused, outcome.unanswered) == ([], ["username:ana"], ["email:ana@example.com"])
    assert not outcome.all_granted
    await claims.release(outcome.unanswered, ANA)
    released = [r for r in map(decode, (rec.value for rec in broker.records("name.claims"))) if isinstance(r, NameReleaseV1)]
    assert [(r.name, r.user_id) for r in released] == [("email:ana@example.com", ANA)]

    claims.ready.clear()  # no reader positioned: nothing is sent, nothing can be answered
    before = len(broker.records("name.claims"))
    assert (await claims.claim(names, ANA, timeout_s=0.05)).unanswered == names
    assert len(broker.records("name.claims")) == before
