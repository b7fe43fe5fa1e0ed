import pytest

from stt_workers.batched_whisper import BUCKETS_S, bucket_for


def test_bucket_is_the_smallest_window_that_holds_the_audio() -> None:
    assert [bucket_for(s) for s in (0.0, 1.2, 2.5, 2.51, 5.0, 7.5, 10.0, 19.9, 20.1, 30.0)] == [
        2500, 2500, 2500, 5000, 5000, 10000, 10000, 20000, 30000, 30000,
    ]  # fmt: skip
    assert BUCKETS_S[-1] == 30.0


def test_audio_longer_than_one_whisper_window_has_no_bucket() -> None:
    with pytest.raises(ValueError):
        bucket_for(30.01)

