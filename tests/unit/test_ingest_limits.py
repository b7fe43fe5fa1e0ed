"""The ingest limits as pure logic (ingest/limits.py) with time passed in, and the streaming client's pacing
(palaver.demo.client.SendAllowance) against them: whatever pace a client asks for, audio it sends within
its allowance is never refused by the server's bucket."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.limits import ActiveStreams, IngestLimits, RateBucket, check_start_sample, check_stream_length
from ingest.protocol import CloseCode, ProtocolError
from palaver.demo.client import SendAllowance

RATE = 16000
FRAME = 1600  # 100 ms
DEFAULTS = IngestLimits()


def _bucket(limits: IngestLimits = DEFAULTS, now_s: float = 0.0) -> RateBucket:
    return RateBucket(RATE, limits.max_speed, limits.burst_s, now_s)


def _send(bucket: RateBucket, seconds: float, speed: float, start_s: float) -> float:
    """Send ``seconds`` of audio in 100 ms frames at ``speed`` x real time from ``start_s``; return the
    time after the last frame. Raises what the bucket raises."""
    at = start_s
    for _ in range(round(seconds * 10)):
        bucket.take(FRAME, at)
        at += 0.1 / speed
    return at


def test_real_time_is_never_cut() -> None:
    _send(_bucket(), seconds=4 * 3600, speed=1.0, start_s=0.0)


def test_a_catch_up_after_a_few_seconds_outage_is_not_cut() -> None:
    """A client at real time loses its socket for 5 s; its new connection (a new bucket) gets the 5 s it
    held back plus the 0.2 s the server had but never acknowledged, at once, then real time again."""
    bucket = _bucket(now_s=100.0)
    at = _send(bucket, seconds=5.2, speed=1000.0, start_s=100.0)
    _send(bucket, seconds=600, speed=1.0, start_s=at)


def test_a_catch_up_on_a_connection_that_already_ran_is_not_cut() -> None:
    """The same hiccup, but the client's own sending stalled (its tab was in the background) while the
    socket stayed: one bucket across it."""
    bucket = _bucket()
    at = _send(bucket, seconds=300, speed=1.0, start_s=0.0)
    at = _send(bucket, seconds=8, speed=1000.0, start_s=at + 8)
    _send(bucket, seconds=300, speed=1.0, start_s=at)


def test_twice_real_time_is_cut_once_the_burst_is_spent() -> None:
    """At 2x the bucket (10 s of audio, refilled at 1.5x) drains by 0.5 s of audio per second: empty after
    about 20 s, i.e. about 40 s of audio."""
    bucket = _bucket()
    with pytest.raises(ProtocolError) as info:
        _send(bucket, seconds=3600, speed=2.0, start_s=0.0)
    assert info.value.code == CloseCode.TOO_FAST and "1.5x" in info.value.reason
    fresh = _bucket()
    _send(fresh, seconds=39, speed=2.0, start_s=0.0)  # not before


def test_audio_that_piled_up_while_the_server_held_back_is_not_charged() -> None:
    """A client at real time; the server stops reading for 25 s (the broker was away), then reads the 25 s
    that piled up at once: excused, it is not cut, and the client goes on at real time. Unexcused, the
    same arrival is over the 10 s burst."""
    bucket, unexcused = _bucket(), _bucket()
    at = _send(bucket, seconds=5, speed=1.0, start_s=0.0)
    _send(unexcused, seconds=5, speed=1.0, start_s=0.0)
    bucket.excuse(25.0, now_s=at + 25.0)
    at = _send(bucket, seconds=25, speed=1000.0, start_s=at + 25.0)
    _send(bucket, seconds=600, speed=1.0, start_s=at)
    with pytest.raises(ProtocolError) as info:
        _send(unexcused, seconds=25, speed=1000.0, start_s=at + 25.0)
    assert info.value.code == CloseCode.TOO_FAST


def test_a_pause_excuses_only_its_own_length_and_unspent_credit_does_not_add_up() -> None:
    bucket = _bucket()
    for n in range(5):  # five pauses of 4 s whose audio never came: at most one pause's credit is kept
        bucket.excuse(4.0, now_s=4.0 * (n + 1))
    _send(bucket, seconds=14, speed=1000.0, start_s=20.0)  # the 10 s burst and one 4 s pause
    with pytest.raises(ProtocolError):
        bucket.take(FRAME, 20.02)


def test_just_under_the_limit_is_never_cut() -> None:
    _send(_bucket(), seconds=3600, speed=1.45, start_s=0.0)


def test_a_refused_frame_costs_nothing_and_time_goes_only_forward() -> None:
    bucket = RateBucket(RATE, 1.0, 1.0, now_s=10.0)
    bucket.take(RATE, 10.0)  # the burst, all of it
    with pytest.raises(ProtocolError):
        bucket.take(FRAME, 10.05)  # 800 samples refilled, 1600 asked
    bucket.take(FRAME, 10.11)  # refused frames did not spend; more than 1600 refilled by now
    with pytest.raises(ProtocolError):
        bucket.take(FRAME, 9.0)  # a clock that went backwards refills nothing (160 samples left)


@settings(max_examples=200, deadline=None)
@given(
    speed=st.floats(min_value=0.5, max_value=50.0),
    frame=st.sampled_from([320, 1600, 4000]),
    jitter=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=50),
    max_speed=st.floats(min_value=1.0, max_value=4.0),
    burst_s=st.floats(min_value=1.0, max_value=30.0),
)
def test_a_client_within_its_allowance_is_never_cut(speed: float, frame: int, jitter: list[float],
                                                    max_speed: float, burst_s: float) -> None:  # fmt: skip
    """The demo client's pacing: each frame leaves at its due time (its ``speed``) but not before its
    allowance permits; frames arrive at the server late by a network delay (``jitter``: a share of the
    most the allowance absorbs, ``0.5 * burst_s / max_speed``; frames kept in order). The server's bucket
    starts before the client's (it sends ``ready`` after it)."""
    most_delay_s = 0.5 * burst_s / max_speed
    server = RateBucket(RATE, max_speed, burst_s, now_s=0.0)
    client_start = 0.05  # ready reached the client
    allowance = SendAllowance(max_speed, burst_s, RATE, now_s=client_start)
    sent_at = client_start
    arrived_at = 0.0
    for n in range(400):
        due = client_start + n * frame / RATE / speed
        now = max(sent_at, due)
        now += allowance.wait_s(frame, now)
        allowance.spend(frame, now)
        sent_at = now
        arrived_at = max(arrived_at, now + jitter[n % len(jitter)] * most_delay_s)  # TCP keeps the order
        server.take(frame, arrived_at)


def test_start_sample_and_stream_length_are_bounded_by_the_longest_stream() -> None:
    limits = IngestLimits(max_stream_s=10)
    check_start_sample(10 * RATE, RATE, limits)  # a stream that is full may still resume (and end)
    with pytest.raises(ProtocolError) as info:
        check_start_sample(10 * RATE + 1, RATE, limits)
    assert info.value.code == CloseCode.BAD_HEADER
    check_stream_length(10 * RATE, RATE, limits)
    with pytest.raises(ProtocolError) as info:
        check_stream_length(10 * RATE + 1, RATE, limits)
    assert info.value.code == CloseCode.STREAM_TOO_LONG and "10 s" in info.value.reason
    assert DEFAULTS.max_stream_samples(RATE) == 4 * 3600 * RATE


def test_active_streams_admit_within_the_limits_and_free_slots_on_release() -> None:
    active = ActiveStreams(IngestLimits(max_streams_per_meeting=2, max_streams=3))
    active.admit("m1", "m1/a")
    active.admit("m1", "m1/b")
    codes = []
    for meeting, stream in (("m1", "m1/a"), ("m1", "m1/c")):
        with pytest.raises(ProtocolError) as info:
            active.admit(meeting, stream)
        codes.append(info.value.code)
    active.admit("m2", "m2/a")
    with pytest.raises(ProtocolError) as info:
        active.admit("m3", "m3/a")
    codes.append(info.value.code)
    for meeting, stream in (("m1", "m1/a"), ("m1", "m1/c")):  # with the server full too
        with pytest.raises(ProtocolError) as info:
            active.admit(meeting, stream)
        codes.append(info.value.code)
    assert codes == [CloseCode.STREAM_BUSY, CloseCode.MEETING_FULL, CloseCode.SERVER_FULL, CloseCode.STREAM_BUSY,
                     CloseCode.MEETING_FULL], "busy first (a reconnect retries), then the meeting's own limit"  # fmt: skip
    assert (active.count, "m1/a" in active, "m3/a" in active) == (3, True, False)

    active.release("m1", "m1/a")
    active.release("m1", "m1/a")  # twice: no harm
    active.release("m9", "m9/a")
    assert active.count == 2
    active.admit("m1", "m1/c")
    for meeting, stream in (("m1", "m1/b"), ("m1", "m1/c"), ("m2", "m2/a")):
        active.release(meeting, stream)
    assert (active.count, active.by_meeting) == (0, {})


def test_check_refuses_as_admit_would_and_takes_nothing() -> None:
    active = ActiveStreams(IngestLimits(max_streams_per_meeting=2, max_streams=2))
    active.check("m1", "m1/a")
    active.check("m1", "m1/a")
    assert active.count == 0, "checking takes no slot"
    active.admit("m1", "m1/a")
    active.admit("m2", "m2/a")
    for meeting, stream, code in (("m1", "m1/a", CloseCode.STREAM_BUSY), ("m3", "m3/a", CloseCode.SERVER_FULL)):
        with pytest.raises(ProtocolError) as info:
            active.check(meeting, stream)
        assert info.value.code == code
    assert info.value.code == 1013 and info.value.reason == "this process holds its maximum of 2 streams; retry after 5 s"
    assert (active.count, active.capacity.readiness()) == (2, "full: 2 of 2 streams")
    active.release("m2", "m2/a")
    active.check("m3", "m3/a")
    assert active.capacity.readiness() == "ok"


def test_limits_come_from_the_settings() -> None:
    from palaver.settings import Settings

    s = Settings(ingest_max_streams_per_meeting=3, ingest_max_streams=7, ingest_max_speed=2.0, ingest_burst_s=5,
                 ingest_idle_s=9, max_stream_s=60, ingest_meeting_idle_s=120)  # fmt: skip
    assert IngestLimits.from_settings(s) == IngestLimits(3, 7, 2.0, 5.0, 9.0, 60, 120.0)
    assert IngestLimits.from_settings(Settings()) == DEFAULTS, "the dataclass defaults are the settings'"
