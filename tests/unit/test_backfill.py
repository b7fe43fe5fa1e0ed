"""The backfill's pure parts (palaver/backfill.py): --since parsing, which meetings it takes from the
meetings topic's records, its progress line, summary and exit status."""

from __future__ import annotations

import pytest

from palaver import ids
from palaver.backfill import (
    MeetingResult,
    SinceError,
    created_since,
    exit_status,
    newest_states,
    parse_since,
    progress_line,
    summary,
)
from palaver.events import MeetingChangedV1, MeetingMemberV1, encode

DAY = 86_400_000
DEC_1 = 1_796_083_200_000  # 2026-12-01T00:00:00Z


def _state(meeting_id: str, created_ms: int, version: int = 1, deleted: bool = False) -> MeetingChangedV1:
    return MeetingChangedV1(event_id=ids.event_id("meeting.changed", meeting_id, version), meeting_id=meeting_id,
                            change="deleted" if deleted else "created", actor_id="usr_a", title="t",
                            owner_id="usr_a", created_at_ms=created_ms, deleted=deleted, meeting_version=version)  # fmt: skip


def _record(state: MeetingChangedV1) -> tuple[bytes, bytes]:
    return state.meeting_id.encode(), encode(state)


def test_since_takes_a_date_at_midnight_utc_and_a_time_in_utc_unless_it_names_a_zone() -> None:
    assert parse_since("2026-12-01") == DEC_1
    assert parse_since("2026-12-01T09:30") == DEC_1 + 9.5 * 3600_000
    assert parse_since("2026-12-01T09:30Z") == DEC_1 + 9.5 * 3600_000
    assert parse_since("2026-12-01T09:30+01:00") == DEC_1 + 8.5 * 3600_000
    assert parse_since(" 2026-12-01T00:00:00.250 ") == DEC_1 + 250


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "01/12/2026", "2026-12-01T25:00"])
def test_a_since_that_is_no_date_says_so(text: str) -> None:
    with pytest.raises(SinceError, match="not an ISO date"):
        parse_since(text)


def test_each_meeting_counts_by_its_newest_state_and_members_and_bad_records_pass() -> None:
    old, renamed = _state("mtg_a", DEC_1), _state("mtg_a", DEC_1, version=2)
    member = MeetingMemberV1(event_id="e", meeting_id="mtg_a", user_id="usr_b", change="joined", actor_id="usr_b",
                             role="participant", status="active", member_version=1)  # fmt: skip
    records = [_record(old), (b"mtg_a/usr_b", encode(member)), (b"mtg_junk", b"{not json"), _record(renamed),
               _record(_state("mtg_gone", DEC_1)), (b"mtg_gone", None), (None, b"x")]  # fmt: skip
    assert newest_states(records) == {"mtg_a": renamed}


def test_the_meetings_created_since_come_oldest_first_erased_ones_included() -> None:
    states = {s.meeting_id: s for s in (_state("mtg_b", DEC_1 + 5), _state("mtg_old", DEC_1 - 1),
                                        _state("mtg_a", DEC_1 + 5), _state("mtg_c", DEC_1, deleted=True))}  # fmt: skip
    assert [s.meeting_id for s in created_since(states, DEC_1)] == ["mtg_c", "mtg_a", "mtg_b"]
    assert created_since(states, DEC_1 + DAY) == []


def test_the_progress_line_says_where_it_is_and_how_long_is_left() -> None:
    assert progress_line(0, 4, "mtg_a", 0.0) == "backfill: meeting 1/4 mtg_a (0m00s so far)"
    assert progress_line(2, 4, "mtg_c", 90.0) == "backfill: meeting 3/4 mtg_c (1m30s so far, about 1m30s left)"
    assert progress_line(120, 200, "mtg_b", 3600.0).endswith("(1h00m so far, about 40m00s left)")


def test_the_summary_counts_and_says_why_for_each_meeting_not_replayed() -> None:
    results = [MeetingResult("mtg_a", "replayed"), MeetingResult("mtg_b", "skipped", "meeting mtg_b was erased"),
               MeetingResult("mtg_c", "refused", "audio expired in part")]  # fmt: skip
    assert summary(results).splitlines() == [
        "backfill: 3 meeting(s): 1 replayed, 1 skipped, 1 refused",
        "  skipped mtg_b: meeting mtg_b was erased",
        "  refused mtg_c: audio expired in part",
    ]
    cut = [MeetingResult("mtg_a", "replayed"), MeetingResult("mtg_b", "interrupted")]
    assert "interrupted at mtg_b (run the backfill again to complete it)" in summary(cut)


def test_the_exit_status_is_refused_interrupted_or_clean() -> None:
    replayed, skipped = MeetingResult("mtg_a", "replayed"), MeetingResult("mtg_b", "skipped", "no audio")
    assert exit_status([replayed, skipped]) == 0
    assert exit_status([replayed, MeetingResult("mtg_c", "refused", "expired")]) == 1
    assert exit_status([]) == 1
    assert exit_status([MeetingResult("mtg_c", "refused", "x"), MeetingResult("mtg_d", "interrupted")]) == 130
