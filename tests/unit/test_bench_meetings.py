"""The aggregation of ``palaver bench meetings``: lag percentiles per time window, every meeting's samples
as one, lost audio, and the (arrival, lag) pairs the windows are built from."""

from __future__ import annotations

from bench.live import advancing_lags, advancing_lags_at, utterance_settled_lags, utterance_settled_lags_at
from bench.meetings import lost_audio, overall, windowed_percentiles
from bench.speech import SAMPLE_RATE, SendLog


def test_windows_hold_the_percentiles_of_their_own_samples_and_keep_empty_windows_between() -> None:
    origin = 100.0
    samples = [(100.0 + i * 0.1, 0.2) for i in range(10)]  # window 0: all 0.2 s
    samples += [(105.0 + i * 0.1, 0.1 * (i + 1)) for i in range(10)]  # window 1: 0.1 .. 1.0 s
    samples += [(116.0, 3.0)]  # window 3 after an empty window 2: a stall shows
    rows = windowed_percentiles(samples, origin, 5.0, (50, 95, 99))
    assert [r["t_s"] for r in rows] == [0.0, 5.0, 10.0, 15.0]
    assert [r["samples"] for r in rows] == [10, 10, 0, 1]
    assert rows[0]["p50_s"] == rows[0]["p99_s"] == 0.2
    assert rows[1]["p50_s"] == 0.5 and rows[1]["p95_s"] == 1.0
    assert rows[2]["p95_s"] is None
    assert rows[3]["p95_s"] == 3.0


def test_samples_before_the_origin_count_in_the_first_window_and_no_samples_no_windows() -> None:
    assert windowed_percentiles([(99.0, 0.4), (101.0, 0.6)], 100.0, 5.0, (95,))[0]["samples"] == 2
    assert windowed_percentiles([], 100.0) == []


def test_overall_merges_meetings_in_arrival_order() -> None:
    assert overall([[(2.0, 0.5), (4.0, 0.7)], [(1.0, 0.1), (3.0, 0.9)]]) == [(1.0, 0.1), (2.0, 0.5), (3.0, 0.9), (4.0, 0.7)]


def test_audio_is_lost_when_acks_fall_short_or_a_stream_closes_abnormally() -> None:
    fine = {"sent": 16000, "acked": 16000, "close_code": 1000}
    assert not lost_audio([fine, fine])
    assert lost_audio([fine, {**fine, "acked": 15999}])
    assert lost_audio([{**fine, "close_code": 1011}])


def test_lags_carry_the_arrival_they_are_placed_in_a_window_by() -> None:
    log = SendLog(SAMPLE_RATE // 10, sent_at=[1000.0 + 0.1 * (i + 1) for i in range(100)])  # 1000 ms sent by 1001.0
    partials = [(1001.5, "s0", 1000), (1001.6, "s0", 900), (1002.2, "s0", 2000)]  # the 900 one does not advance
    at = advancing_lags_at(partials, {"s0": log})
    assert [arrived for arrived, _ in at] == [1001.5, 1002.2]
    assert [round(lag, 6) for _, lag in at] == [0.5, 0.2]
    assert [round(lag, 6) for lag in advancing_lags(partials, {"s0": log})] == [0.5, 0.2]
    live = [(1001.5, {"speaker_id": "s0", "utterances": [{"utterance_id": "u1", "end_ms": 1000, "final": True}]}),
            (1003.0, {"speaker_id": "s0", "utterances": [{"utterance_id": "u1", "end_ms": 1000, "final": True}]})]  # fmt: skip
    assert utterance_settled_lags_at(live, {"s0": log}) == [(1001.5, 0.5)]
    assert utterance_settled_lags(live, {"s0": log}) == [0.5]
