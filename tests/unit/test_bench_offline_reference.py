"""The offline WER reference of ``palaver bench stt``: its cache key, the points comparison, and a cached run
(no model is loaded when every track is cached)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.offline_reference import OfflineOptions, cache_key, compare, mean_wer, transcribe_tracks
from bench.speech import Track

OPTIONS = OfflineOptions(
    model_dir="/models/tiny.en", compute_type="int8", threads=2, beam_size=1, language="en"
)
PCM = (np.sin(np.arange(16000) / 10) * 1000).astype("<i2")


def test_cache_key_follows_audio_and_decoding_options_but_not_threads() -> None:
    key = cache_key(PCM, OPTIONS)
    assert key == cache_key(PCM.copy(), OPTIONS)
    assert key == cache_key(PCM, replace(OPTIONS, threads=8))  # same transcript, faster
    other = PCM.copy()
    other[100] += 1
    assert cache_key(other, OPTIONS) != key
    for change in ({"beam_size": 5}, {"compute_type": "float32"}, {"model_dir": "/m/base"}, {"vad_filter": True},
                   {"language": "de"}, {"device": "cuda"}):  # fmt: skip
        assert cache_key(PCM, replace(OPTIONS, **change)) != key, change


@pytest.mark.parametrize(
    ("streamed", "offline", "points", "within"),
    [
        (0.025, 0.02, 0.5, True),
        (0.035, 0.02, 1.5, True),  # on the bound
        (0.036, 0.02, 1.6, False),
        (0.01, 0.04, -3.0, True),  # better than offline
        (0.0, 0.0, 0.0, True),
    ],
)
def test_compare_in_points(streamed: float, offline: float, points: float, within: bool) -> None:
    assert compare(streamed, offline) == {"offline_wer": offline, "wer_vs_offline_points": points,
                                          "within_offline_bound": within}  # fmt: skip


def test_cached_tracks_are_scored_without_a_model(tmp_path: Path) -> None:
    tracks = [Track("s0", PCM, "the budget is approved"), Track("s1", PCM[:8000], "see you on friday")]
    texts = {"s0": "The budget is approved.", "s1": "See you Friday."}
    for t in tracks:
        entry = {"text": texts[t.speaker_id], "seconds": t.seconds, "transcribe_s": 0.1}
        (tmp_path / f"offline-{cache_key(t.pcm, OPTIONS)}.json").write_text(json.dumps(entry))
    seen: list[float] = []

    # A model dir that does not exist: loading a model would fail, so this proves nothing was decoded.
    result = transcribe_tracks(tracks, OPTIONS, seen.append, cache_dir=tmp_path)

    assert result["s0"]["wer"] == 0.0 and result["s0"]["cached"]
    assert result["s1"]["wer"] == 0.25  # one deletion in four words
    assert seen == [1.0, 1.5]
    assert mean_wer(result, tracks) == 0.125
    assert mean_wer(result, tracks[:1]) == 0.0
