"""The biasing lists of the vocabulary measurement (bench/vocabulary.py), pure."""

from __future__ import annotations

from bench.vocabulary import biasing_lists, common_words, rare_words, recall


def test_common_words_are_the_vocabulary_s_early_whole_words_after_a_space() -> None:
    vocab = {"Ġthe": 1, "ĠBudget": 2, "ing": 3, "Ġ123": 4, "Ġtom": 5, "Ġx": 6, "Ġdashwood": 12_000}
    assert common_words(vocab) == {"the", "budget", "tom", "x"}
    assert "dashwood" in common_words(vocab, ranks=20_000)


def test_rare_words_are_long_uncommon_and_each_once() -> None:
    common = frozenset({"the", "budget", "approved"})
    words = ["the", "kubernetes", "budget", "was", "approved", "by", "marianne", "and", "kubernetes", "2026", "ok"]
    assert rare_words(words, common) == ["kubernetes", "marianne"]


def test_each_list_pairs_its_words_with_as_many_distractors_and_fits() -> None:
    rare = {"a": ["alpha", "beta", "gamma"], "b": ["delta", "epsilon"], "c": ["zeta"]}
    lists = biasing_lists(rare, fits=lambda words: True)
    for track, words in lists.items():
        own = [w for w in words if w in rare[track]]
        assert len(own) == len(words) - len(own) == len(rare[track])  # every pool is large enough here
        assert not set(words) - {w for ws in rare.values() for w in ws}
    assert lists == biasing_lists(rare, fits=lambda words: True), "deterministic"
    short = biasing_lists(rare, fits=lambda words: len(words) <= 3)
    assert all(len(words) == 2 for words in short.values())


def test_recall_counts_the_listed_words_the_hypothesis_holds() -> None:
    assert recall(["marianne", "kubernetes"], ["marianne", "said", "cooper", "netties"]) == (1, 2)
    assert recall([], ["x"]) == (0, 0)
