"""The live-socket lags ``palaver bench stt`` reports beside its targets: words settled (per utterance), box
final (per dialogue) and the box's wait after its words settled, from the socket's dialogue messages and each
stream's send log."""

from __future__ import annotations

from typing import Any

from bench.live import utterance_settled_lags as _words_settled_lags
from bench.speech import SAMPLE_RATE, SendLog
from bench.stt import _box_final_waits, _dialogue_final_lags

FRAME = SAMPLE_RATE // 10  # 100 ms frames


def _log(start_s: float) -> SendLog:
    """Frame i (media 100 ms * i to 100 ms * (i + 1)) left at ``start_s`` + 0.1 * (i + 1)."""
    return SendLog(FRAME, sent_at=[start_s + 0.1 * (i + 1) for i in range(100)])


def _box(dialogue_id: str, status: str, end_ms: int, utterances: list[tuple[str, int, bool]]) -> dict[str, Any]:
    return {"dialogue_id": dialogue_id, "speaker_id": "s0", "status": status, "end_ms": end_ms,
            "utterances": [{"utterance_id": u, "end_ms": end, "final": final} for u, end, final in utterances]}  # fmt: skip


def test_words_settle_when_their_utterance_first_comes_final_and_boxes_when_first_final() -> None:
    logs = {"s0": _log(1000.0)}  # media 1000 ms was sent by 1001.0
    live = [
        (1001.5, _box("d1", "live", 1000, [("u1", 1000, False)])),
        (1002.0, _box("d1", "live", 1500, [("u1", 1000, True), ("u2", 1500, False)])),
        (1003.0, _box("d1", "final", 1500, [("u1", 1000, True), ("u2", 1500, True)])),
        (1009.0, _box("d1", "final", 1500, [("u1", 1000, True), ("u2", 1500, True)])),  # placed later
    ]
    assert sorted(round(x, 3) for x in _words_settled_lags(live, logs)) == [1.0, 1.5]
    assert [round(x, 3) for x in _dialogue_final_lags(live, logs)] == [1.5]
    assert [round(x, 3) for x in _box_final_waits(live)] == [0.0], "final with its last utterance's final"
    waited = [live[0], live[1], (1002.5, _box("d1", "live", 1500, [("u1", 1000, True), ("u2", 1500, True)])), live[2]]
    assert [round(x, 3) for x in _box_final_waits(waited)] == [0.5]


def test_speakers_without_a_send_log_are_not_measured() -> None:
    live = [(5.0, {**_box("d1", "final", 100, [("u1", 100, True)]), "speaker_id": "warmup"})]
    assert _words_settled_lags(live, {"s0": _log(0.0)}) == [] == _dialogue_final_lags(live, {"s0": _log(0.0)})
