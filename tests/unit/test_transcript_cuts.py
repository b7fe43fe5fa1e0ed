"""The rules that cut a trimmed-window decode back to its audio: restarts, loops and run-on words."""

from stt_workers.transcript_cuts import MIN_LOOP_WORDS, cut_restart, loop_free, word_key, words_in_speech


def kept(words: list[str]) -> list[str]:
    return [words[i] for i in loop_free(words)]


def test_a_text_that_starts_over_is_cut_at_the_restart() -> None:
    sentence = [11, 12, 13, 14, 15, 16, 17]
    assert cut_restart(sentence * 3) == sentence
    assert cut_restart(sentence) == sentence
    assert cut_restart([1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 8]) == [1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 8], "a partial echo stays"
    great_news = [21, 22, 23]  # " Great", " news", "."
    assert cut_restart(great_news * 2) == great_news, "a short clip's text said twice"
    assert cut_restart([31, 32, 31]) == [31, 32, 31], "a one-token echo stays"
    assert cut_restart([31, 32, 33, 34]) == [31, 32, 33, 34]
    lower_great = 20  # "great": the restart spells the first word differently
    assert cut_restart([lower_great, 22, 23, *great_news * 3, 21]) == [lower_great, 22, 23]
    yes_of_course = [41, 42, 43, 44, 42, 43, 44, 45]  # "Yes, of course, of course."
    assert cut_restart(yes_of_course) == yes_of_course, "a phrase said twice in a sentence stays"


def test_words_compare_without_case_or_punctuation() -> None:
    assert [word_key(w) for w in (" Foolishness.", "it", " IT,", ".", " don't", " 42")] == [
        "foolishness", "it", "it", "", "dont", "42",
    ]  # fmt: skip


def test_a_sentence_the_decoder_loops_on_is_kept_once() -> None:
    age = [" It", " was", " the", " age", " of", " foolishness", "."]
    loop = [" it", " was", " the", " age", " of", " wisdom", ",", *age * 3, " It", " was", " the"]
    assert kept(loop) == [" it", " was", " the", " age", " of", " wisdom", ",", *age]
    # The copies differ in case and punctuation only; the text after a loop stays, even where it starts
    # like the looped sentence.
    commas = [" It", " was", " the", " age", " of", " foolishness", ","]
    after = [" it", " was", " the", " epoch", " of", " belief", "."]
    assert kept([*age, *commas, *after]) == [*age, *after]
    assert kept([*age, *commas, *commas, *after]) == [*age, *after]


def test_a_phrase_a_person_says_twice_stays() -> None:
    for said in (
        [" Yes", ",", " of", " course", ",", " of", " course", "."],
        [" Thank", " you", ",", " thank", " you", ",", " thank", " you", "."],
        [" No", ",", " no", ",", " no", "."],
        [" very", " very", " good"],
        [" It", " was", " the", " best", " of", " times", ",", " it", " was", " the", " worst", " of", " times"],
    ):
        assert kept(said) == said, said


def test_one_word_said_over_and_over_is_a_loop() -> None:
    assert kept([" no"] * (MIN_LOOP_WORDS + 1)) == [" no"]
    assert kept([" no"] * MIN_LOOP_WORDS) == [" no"] * MIN_LOOP_WORDS
    assert kept([" the", " the", " the", " the", " the", " the", " end"]) == [" the", " end"]


def test_a_long_phrase_said_twice_back_to_back_is_a_loop() -> None:
    phrase = [" we", " need", " the", " new", " numbers"]
    assert kept([*phrase, *phrase]) == phrase
    assert kept([*phrase, *phrase[:4]]) == [*phrase, *phrase[:4]], "an unfinished copy under five words stays"
    assert kept([]) == []


def test_words_that_start_at_the_clips_end_are_run_on() -> None:
    starts = [0.1, 0.5, 1.2, 2.9, 3.0, 3.4]
    assert words_in_speech(starts, 3.0) == 4
    assert words_in_speech(starts, 5.0) == 6
    assert words_in_speech(starts, 0.1) == 0
    assert words_in_speech([0.1, 3.5, 2.0], 3.0) == 1, "what follows a run-on word goes with it"
    assert words_in_speech([], 3.0) == 0
