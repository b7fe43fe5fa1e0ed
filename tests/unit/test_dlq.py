"""The DLQ's pure parts: its limits, the provenance headers, reading them back, replay headers, the text
of ``palaver dlq``, and the policy's order of check, produce and count (against a recording producer)."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from palaver.settings import Settings
from palaver.streams.dlq import DlqPolicy, dlq_limits
from palaver.streams.dlq_limits import DlqLimitExceeded, DlqLimits, DlqLimitState
from palaver.streams.dlq_records import (
    ReplayMark,
    bounded_utf8,
    dead_letter_headers,
    describe_error,
    list_line,
    own_headers,
    parse_dead_letter,
    replay_headers,
    show_text,
    utc_text,
)

# --- limits ----------------------------------------------------------------------------------------------


def test_more_than_max_consecutive_bad_messages_stop_and_a_good_one_resets_the_run() -> None:
    state = DlqLimitState(DlqLimits(max_consecutive=3, max_ratio=1.0))
    for _ in range(3):
        state.admit_invalid()
    with pytest.raises(DlqLimitExceeded, match="4 bad messages in a row"):
        state.admit_invalid()
    assert state.consecutive == 3, "the refused message is not counted"
    state.record_valid()
    for _ in range(3):
        state.admit_invalid()
    assert state.consecutive == 3


def test_ratio_applies_from_min_invalid_bad_messages() -> None:
    state = DlqLimitState(DlqLimits(max_consecutive=100, max_ratio=0.5, window=10, min_invalid=3))
    state.admit_invalid()
    state.admit_invalid()  # 2 of 2 bad: over the ratio, under the minimum count
    state.record_valid()
    with pytest.raises(DlqLimitExceeded, match="3 of the last 4 messages bad"):
        state.admit_invalid()
    assert state.recent == (2, 3)


def test_ratio_judges_only_the_last_window_messages() -> None:
    state = DlqLimitState(DlqLimits(max_consecutive=100, max_ratio=0.5, window=4, min_invalid=2))
    state.admit_invalid()
    for _ in range(3):
        state.record_valid()
    state.admit_invalid()  # the first bad one drops out of the window: good good good bad
    assert state.recent == (1, 4)
    state.admit_invalid()  # good good bad bad: half, not more
    with pytest.raises(DlqLimitExceeded, match="3 of the last 4 messages bad, over the limit of 50%"):
        state.admit_invalid()
    assert state.recent == (2, 4)
    state.record_valid()  # good bad bad good
    assert state.recent == (2, 4)


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(st.booleans(), max_size=120),
    max_consecutive=st.integers(1, 8),
    max_ratio=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
    window=st.integers(1, 12),
    min_invalid=st.integers(1, 6),
)
def test_limits_match_a_brute_force_reading_of_the_history(
    outcomes: list[bool], max_consecutive: int, max_ratio: float, window: int, min_invalid: int
) -> None:
    """Any sequence of outcomes (True: bad): a bad message is refused exactly when, counted, it makes more
    than ``max_consecutive`` in a row or more than ``max_ratio`` of the last ``window`` with at least
    ``min_invalid`` bad; a refused message changes nothing."""
    limits = DlqLimits(max_consecutive, max_ratio, window, min_invalid)
    state = DlqLimitState(limits)
    history: list[bool] = []  # what was counted
    for bad in outcomes:
        if not bad:
            state.record_valid()
            history.append(False)
            continue
        trial = [*history, True]
        run = len(trial) - max((i for i, b in enumerate(trial) if not b), default=-1) - 1
        recent = trial[-window:]
        refused = run > max_consecutive or (
            sum(recent) >= min_invalid and sum(recent) > max_ratio * len(recent)
        )
        if refused:
            with pytest.raises(DlqLimitExceeded):
                state.admit_invalid()
        else:
            state.admit_invalid()
            history.append(True)
        expected = deque(history, maxlen=window)
        assert state.recent == (sum(expected), len(expected))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_consecutive": 0}, {"window": 0}, {"min_invalid": 0}, {"max_ratio": 0}, {"max_ratio": 1.5}],
)
def test_limits_reject_values_that_mean_nothing(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DlqLimits(**kwargs)


def test_limits_come_from_settings_whose_defaults_are_the_limits_defaults() -> None:
    fields = Settings.model_fields
    defaults = DlqLimits()
    assert (fields["dlq_max_consecutive"].default, fields["dlq_max_ratio"].default, fields["dlq_window"].default,
            fields["dlq_min_invalid"].default) == (defaults.max_consecutive, defaults.max_ratio, defaults.window,
                                                   defaults.min_invalid)  # fmt: skip
    chosen = Settings(dlq_max_consecutive=7, dlq_max_ratio=0.2, dlq_window=50, dlq_min_invalid=5)
    assert dlq_limits(chosen) == DlqLimits(7, 0.2, 50, 5)
    with pytest.raises(ValueError):
        Settings(dlq_max_ratio=1.5)


# --- headers ---------------------------------------------------------------------------------------------

OWN = [("event", b"transcript.final"), ("version", b"1"), ("blob", b"\x00\xff\x80")]


def test_dead_letter_headers_keep_the_records_own_headers_first_then_provenance() -> None:
    headers = dead_letter_headers(
        OWN, "ns.transcripts", 4, 1234, "DecodeError", "bad json", "merger", 1_700_000_000.5
    )
    assert headers[:3] == OWN
    assert dict(headers[3:]) == {
        "dlq.topic": b"ns.transcripts",
        "dlq.partition": b"4",
        "dlq.offset": b"1234",
        "dlq.error.class": b"DecodeError",
        "dlq.error.message": b"bad json",
        "dlq.service": b"merger",
        "dlq.time": b"2023-11-14T22:13:20.500Z",
    }


def test_error_message_is_bounded_on_a_character_boundary() -> None:
    assert bounded_utf8("short") == b"short"
    cut = bounded_utf8("é" * 2000, limit=100)  # two bytes a character
    assert len(cut) <= 100 and cut.decode().endswith("…") and cut.decode().startswith("éé")
    assert bounded_utf8("x" * 5000) == b"x" * 1997 + "…".encode()


def test_error_class_comes_from_the_exception_or_is_named() -> None:
    assert describe_error(ValueError("no")) == ("ValueError", "no")
    assert describe_error(ValueError("no"), "DecodeError") == ("DecodeError", "no")
    assert describe_error("not JSON") == ("InvalidMessage", "not JSON")
    assert describe_error("not JSON", "DecodeError") == ("DecodeError", "not JSON")


def test_a_dead_letter_reads_back_its_provenance() -> None:
    headers = dead_letter_headers(OWN, "transcripts", 2, 17, "DecodeError", "bad", "store", 0.0)
    letter = parse_dead_letter("transcripts.dlq", 5, b"m1", b"{}", headers, 99_000)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("transcripts", 2, 17)
    assert (letter.service, letter.error_class, letter.error_message) == ("store", "DecodeError", "bad")
    assert letter.time == "1970-01-01T00:00:00.000Z" and letter.source == "transcripts[2]@17"
    assert letter.headers == headers


def test_a_record_without_provenance_reads_as_unknown_and_legacy_reason_is_its_message() -> None:
    letter = parse_dead_letter("x.dlq", 0, None, b"", [("dlq.reason", b"old style")], 1_000)
    assert letter.source == "?[?]@?" and letter.service == "?" and letter.error_class == "?"
    assert letter.error_message == "old style" and letter.time == "1970-01-01T00:00:01.000Z"


def test_replayed_copy_has_the_own_headers_and_where_it_came_from() -> None:
    headers = dead_letter_headers(OWN, "transcripts", 2, 17, "E", "m", "store", 0.0)
    again = replay_headers(headers, "transcripts.dlq", 5)
    assert again == [*OWN, ("dlq.replayed.from", b"transcripts.dlq@5")]
    # It fails again: dead-lettered with its replay header; the newest provenance wins, a second replay
    # carries only the newest origin.
    failed = dead_letter_headers(again, "transcripts", 3, 40, "E2", "m2", "merger", 0.0)
    letter = parse_dead_letter("transcripts.dlq", 9, None, b"", failed, 0)
    assert (letter.source_partition, letter.source_offset, letter.error_class) == (3, 40, "E2")
    assert replay_headers(failed, "transcripts.dlq", 9) == [*OWN, ("dlq.replayed.from", b"transcripts.dlq@9")]
    assert own_headers(failed) == OWN


def test_replay_mark_round_trips() -> None:
    mark = ReplayMark("transcripts.dlq", 5, "ns.transcripts", 2, 88, utc_text(0))
    assert ReplayMark.decode(mark.encode()) == mark
    assert mark.key == b"transcripts.dlq@5"


# --- text ------------------------------------------------------------------------------------------------


def _letter(value: bytes | None, message: str = "bad") -> Any:
    headers = dead_letter_headers(OWN, "transcripts", 2, 17, "DecodeError", message, "store", 0.0)
    return parse_dead_letter("transcripts.dlq", 5, b"m1", value, headers, 0)


def test_list_line_names_offset_source_service_error_time_replay_and_message_start() -> None:
    line = list_line(_letter(b"{}", "x" * 200), None)
    for part in ("5", "transcripts[2]@17", "store", "DecodeError", "1970-01-01T00:00:00.000Z", " no "):
        assert part in line
    assert "x" * 59 + "…" in line and "x" * 61 not in line
    assert " yes " in list_line(_letter(b"{}"), ReplayMark("transcripts.dlq", 5, "transcripts", 2, 9, "t"))


def test_show_pretty_prints_json_and_dumps_anything_else_as_hex_with_its_size() -> None:
    text = show_text(_letter(json.dumps({"event": "transcript.final", "text": "héllo"}).encode()), None)
    assert '  "text": "héllo"' in text and "bytes of JSON" in text
    assert "blob: 0x00ff80 (3 bytes)" in text and "event: transcript.final" in text and "key: m1" in text
    assert "replayed:       no" in text
    binary = show_text(
        _letter(bytes(range(256)) * 4), ReplayMark("transcripts.dlq", 5, "transcripts", 2, 9, "t")
    )
    assert "1024 bytes, not JSON, first 512 shown" in binary
    assert "  00000010  10 11 12 13" in binary and "000001f0" in binary and "00000200" not in binary
    assert "replayed:       to transcripts[2]@9 at t" in binary
    assert "value: null" in show_text(_letter(None), None)


# --- the policy ------------------------------------------------------------------------------------------


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(self, topic: str, value: bytes | None, key: bytes | None = None,
                            headers: list[tuple[str, bytes]] | None = None) -> None:  # fmt: skip
        self.sent.append((topic, key, value, headers or []))


def _record(offset: int, value: bytes = b"{not json") -> ConsumerRecord:
    return ConsumerRecord("ns.transcripts", 1, offset, 0, 0, b"m1", value, None, len(value), 2, OWN)


async def test_policy_produces_to_the_topics_dlq_and_refuses_past_a_limit_without_producing() -> None:
    producer = RecordingProducer()
    policy = DlqPolicy(producer, {"ns.transcripts": "ns.transcripts.dlq"}, "merger",  # type: ignore[arg-type]
                       DlqLimits(max_consecutive=2, max_ratio=1.0), clock=lambda: 0.0)  # fmt: skip
    await policy.dead_letter(_record(10), ValueError("bad json"))
    topic, key, value, headers = producer.sent[0]
    assert (topic, key, value, headers[:3]) == ("ns.transcripts.dlq", b"m1", b"{not json", OWN)
    assert dict(headers)["dlq.error.class"] == b"ValueError" and dict(headers)["dlq.offset"] == b"10"
    await policy.dead_letter(_record(11), "no meeting_id", "DecodeError")
    assert dict(producer.sent[1][3])["dlq.error.class"] == b"DecodeError"
    with pytest.raises(
        DlqLimitExceeded, match=r"merger stopped at ns.transcripts\[1\]@12 \(InvalidMessage: third\)"
    ):
        await policy.dead_letter(_record(12), "third")
    assert len(producer.sent) == 2, "the record past the limit is not dead-lettered (it stays uncommitted)"
    policy.ok()
    await policy.dead_letter(_record(13), "after a good one")
    assert len(producer.sent) == 3
    with pytest.raises(KeyError):
        await policy.dead_letter(ConsumerRecord("other", 0, 0, 0, 0, None, b"", None, 0, 0, ()), "x")
