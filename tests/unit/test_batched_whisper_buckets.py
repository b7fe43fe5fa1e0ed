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


def test_a_text_that_starts_over_is_cut_at_the_restart() -> None:
    from stt_workers.batched_whisper import _cut_restart

    sentence = [11, 12, 13, 14, 15, 16, 17]
    assert _cut_restart(sentence * 3) == sentence
    assert _cut_restart(sentence) == sentence
    assert _cut_restart([1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 8]) == [1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 8], "a partial echo stays"
    great_news = [21, 22, 23]  # " Great", " news", "."
    assert _cut_restart(great_news * 2) == great_news, "a short clip's text said twice"
    assert _cut_restart([31, 32, 31]) == [31, 32, 31], "a one-token echo stays"
    assert _cut_restart([31, 32, 33, 34]) == [31, 32, 33, 34]
    lower_great = 20  # "great": the restart spells the first word differently
    assert _cut_restart([lower_great, 22, 23, *great_news * 3, 21]) == [lower_great, 22, 23]
    yes_of_course = [41, 42, 43, 44, 42, 43, 44, 45]  # "Yes, of course, of course."
    assert _cut_restart(yes_of_course) == yes_of_course, "a phrase said twice in a sentence stays"
