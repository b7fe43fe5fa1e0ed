"""Admission control's pure rules (palaver/admission.py): a capacity takes slots up to its limit and refuses
the next with 1013 and a retry hint that the clients read back; what /readyz says meanwhile; and the
clients' wait after such a refusal (palaver/demo/client.py)."""

from __future__ import annotations

import pytest

from palaver.admission import RETRY_AFTER_S, TRY_AGAIN_LATER, Capacity, Full, retry_after_s
from palaver.demo.client import ReconnectPolicy, asked_wait_s, retryable


def test_a_capacity_takes_slots_up_to_its_limit_and_refuses_the_next_with_a_retry_hint() -> None:
    capacity = Capacity("streams", 2)
    capacity.take()
    assert (capacity.full, capacity.readiness()) == (False, "ok")
    capacity.take()
    assert (capacity.full, capacity.readiness()) == (True, "full: 2 of 2 streams")
    with pytest.raises(Full) as refused:
        capacity.take()
    assert refused.value.code == TRY_AGAIN_LATER == 1013
    assert refused.value.reason == f"this process holds its maximum of 2 streams; retry after {RETRY_AFTER_S} s"
    assert capacity.held == 2, "a refusal takes nothing"
    with pytest.raises(Full):
        capacity.check()

    capacity.release()
    assert (capacity.full, capacity.readiness(), capacity.held) == (False, "ok", 1)
    capacity.check()
    capacity.take()
    assert capacity.held == 2


def test_releasing_more_than_was_taken_never_makes_room_beyond_the_limit() -> None:
    capacity = Capacity("live sockets", 1)
    capacity.release()
    capacity.take()
    with pytest.raises(Full):
        capacity.take()


def test_a_capacity_of_nothing_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="0 streams"):
        Capacity("streams", 0)


@pytest.mark.parametrize(("reason", "wait"), [
    ("this process holds its maximum of 3 streams; retry after 5 s", 5.0),
    ("full; retry after 2.5 s", 2.5),
    ("retry after 30 s ", 30.0),
    ("the store is unavailable; try again", None),
    ("retry after 5 s, or not", None),
    ("", None),
])  # fmt: skip
def test_the_retry_hint_is_read_back_from_a_close_reason(reason: str, wait: float | None) -> None:
    assert retry_after_s(reason) == wait


def test_the_hint_a_refusal_gives_is_the_one_clients_read() -> None:
    with pytest.raises(Full) as refused:
        Capacity("streams", 1, retry_after_s=7, held=1).take()
    assert asked_wait_s(refused.value.code, refused.value.reason) == 7.0
    assert retryable(refused.value.code)


def test_only_a_try_again_later_close_asks_for_a_wait() -> None:
    assert asked_wait_s(1011, "broker unavailable; retry after 5 s") is None
    assert asked_wait_s(1013, "client too slow; reconnect") is None


def test_after_a_refusal_the_client_waits_the_asked_time_spread_by_up_to_half_again() -> None:
    policy = ReconnectPolicy(first_delay_s=0.25, max_delay_s=4.0)
    assert policy.delay_s(1, asked_s=5.0, spread=0.0) == 5.0
    assert policy.delay_s(1, asked_s=5.0, spread=0.5) == 6.25
    assert policy.delay_s(1, asked_s=5.0, spread=0.999) < 7.5
    assert policy.delay_s(5, asked_s=1.0) == 4.0, "never shorter than the backoff"
    assert policy.delay_s(2) == 0.5, "no hint: the backoff"
