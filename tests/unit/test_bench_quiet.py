"""The quiet-speaker measurement of ``palaver bench stt`` (bench/quiet.py): a line's last word from its
audio, and its box's first final on the live socket against it."""

from __future__ import annotations

import numpy as np

from bench.quiet import QuietTrack, quiet_box_lags, speech_span
from bench.speech import SAMPLE_RATE, SendLog, Track

FRAME = SAMPLE_RATE // 10  # 100 ms frames


def test_a_lines_speech_is_its_loud_samples() -> None:
    pcm = np.zeros(1000, np.int16)
    pcm[100:400] = 5000
    pcm[399] = 100  # below 1% of full scale: not speech
    assert speech_span(pcm, offset=50) == (150, 449)


def _log() -> SendLog:
    """A stream whose frame i (100 ms) left the client at 100 + i / 10 s; media time 0 is sample 0."""
    return SendLog(FRAME, [100 + i / 10 for i in range(1, 101)], stream_start_ms=0, first_sample=0)


def _box(status: str, start_ms: int, end_ms: int, final: bool, speaker: str = "q0") -> dict[str, object]:
    return {"speaker_id": speaker, "status": status, "start_ms": start_ms, "end_ms": end_ms, "dialogue_id": "d1",
            "utterances": [{"utterance_id": "u1", "start_ms": start_ms, "end_ms": end_ms, "final": final}]}  # fmt: skip


def test_a_lines_box_final_and_settled_lags_count_from_its_last_word() -> None:
    # The line is speech from 1.0 s to 2.0 s: its last sample left with frame 19, at 102.0 s.
    quiet = [QuietTrack(Track("q0", np.zeros(10 * SAMPLE_RATE, np.int16), "hi"), ((SAMPLE_RATE, 2 * SAMPLE_RATE),), False)]
    live = [
        (102.3, _box("live", 1000, 1800, False)),
        (102.9, _box("final", 500, 400, True, speaker="s0")),  # another speaker's box
        (103.1, _box("live", 1000, 2200, True)),
        (104.6, _box("final", 1000, 2200, True)),
        (105.0, _box("final", 1000, 2200, True)),  # a later revision: not the first final
    ]
    lags = quiet_box_lags(live, {"q0": _log()}, quiet)
    assert [round(x, 3) for x in lags["muted_box_final"]] == [2.6]
    assert [round(x, 3) for x in lags["muted_settled"]] == [1.1]
    assert [round(x, 3) for x in lags["muted_wait"]] == [1.5]
    assert lags["muted_never"] == 0 and lags["leaving_box_final"] == []


def test_a_line_whose_box_never_showed_final_is_counted() -> None:
    quiet = [QuietTrack(Track("x0", np.zeros(3 * SAMPLE_RATE, np.int16), "hi"), ((SAMPLE_RATE, 2 * SAMPLE_RATE),), True)]
    lags = quiet_box_lags([(103.0, _box("live", 1000, 2200, True, speaker="x0"))], {"x0": _log()}, quiet)
    assert lags["leaving_never"] == 1 and lags["leaving_box_final"] == [] and len(lags["leaving_settled"]) == 1
