"""A meeting's vocabulary as the decoder's prompt (stt_workers/vocabulary.py): which terms, in which order,
within which budget; and how it rides in every prompt of a batch (stt_workers/batched_whisper.py) and in
the scheduler's batches (stt_workers/scheduler.py). The tokenizer is the bundled model's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from faster_whisper.tokenizer import Tokenizer

from palaver.settings import bundled_whisper_model_dir
from stt_workers.batched_whisper import MAX_PROMPT_TOKENS, prompt_tokens
from stt_workers.scheduler import DecodeRequest, plan_batches
from stt_workers.vocabulary import VOCABULARY_TOKENS, clean_term, vocabulary_prompt, vocabulary_terms


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    hf = tokenizers.Tokenizer.from_file(str(Path(bundled_whisper_model_dir()) / "tokenizer.json"))
    return Tokenizer(hf, False, task="transcribe", language="en")


def count(tokenizer: Tokenizer) -> Callable[[str], int]:
    return lambda text: len(tokenizer.encode(" " + text))


def test_terms_come_names_first_then_glossary_title_agenda_each_once() -> None:
    terms = vocabulary_terms(names=["Aoife Byrne", "  Tadhg  "], glossary=["Grafana", "aoife byrne", "KPI,"],
                             title="Q3 planning", agenda=["Grafana", "Hiring: platform team"])  # fmt: skip
    assert terms == ["Aoife Byrne", "Tadhg", "Grafana", "KPI", "Q3 planning", "Hiring: platform team"]
    assert vocabulary_terms() == []
    assert vocabulary_terms(names=["", " , "], title="  ") == []


def test_a_term_is_cleaned_of_list_punctuation_and_commas() -> None:
    assert clean_term('  "ReplacingMergeTree", ') == "ReplacingMergeTree"
    assert clean_term("Smith,  John") == "Smith John"
    assert clean_term("C++") == "C++"
    assert clean_term(" ,. ") == ""


def test_the_prompt_is_the_terms_that_fit_the_budget_in_order(tokenizer: Tokenizer) -> None:
    terms = ["Aoife", "Grafana", "a very long agenda item " * 20, "Tadhg"]
    prompt = vocabulary_prompt(terms, count(tokenizer), budget=16)
    assert prompt == "Aoife, Grafana, Tadhg", "the term over the budget is skipped, later ones still go in"
    assert vocabulary_prompt(terms, count(tokenizer)) == prompt  # deterministic, default budget too
    assert vocabulary_prompt(["word " * 100], count(tokenizer)) == ""
    many = [f"Name{i}" for i in range(100)]
    assert count(tokenizer)(vocabulary_prompt(many, count(tokenizer))) <= VOCABULARY_TOKENS


def test_the_vocabulary_goes_whole_before_every_prompt_of_a_batch(tokenizer: Tokenizer) -> None:
    vocabulary = "Aoife, Grafana"
    lead = tokenizer.encode(" " + vocabulary)
    short, long = "the quick brown fox", "we moved the reporting queries to the replica last week"
    cut = prompt_tokens(tokenizer, [short, long, ""], vocabulary=vocabulary)
    assert all(c[: len(lead)] == lead for c in cut), "every clip's prompt starts with the vocabulary"
    assert cut[2] == lead, "a clip without previous text still gets the vocabulary"
    assert len({len(c) for c in cut}) == 1, "one length for the batch (CTranslate2)"
    with_history = prompt_tokens(tokenizer, [short, long], vocabulary=vocabulary)
    assert with_history[0] == [*lead, *tokenizer.encode(" " + short)]
    assert len(with_history[1]) == len(with_history[0]), "the previous text is cut, not the vocabulary"
    assert prompt_tokens(tokenizer, [short], vocabulary="") == [tokenizer.encode(" " + short)], "as before"


def test_the_vocabulary_is_capped_at_its_token_budget(tokenizer: Tokenizer) -> None:
    vocabulary = ", ".join(f"Name{i}" for i in range(200))
    (cut,) = prompt_tokens(tokenizer, ["some words said before"], vocabulary=vocabulary)
    history = tokenizer.encode(" some words said before")
    assert len(cut) == VOCABULARY_TOKENS + len(history) <= VOCABULARY_TOKENS + MAX_PROMPT_TOKENS
    assert cut[-len(history) :] == history


def test_clips_of_different_vocabularies_never_share_a_batch() -> None:
    def req(kind: str, vocabulary: str) -> DecodeRequest:
        return DecodeRequest(kind, np.zeros(32000, np.float32), vocabulary=vocabulary)  # type: ignore[arg-type]

    requests = [req("final", "Aoife"), req("final", ""), req("final", "Aoife"), req("partial", "Tadhg"),
                req("partial", "Aoife"), req("final", "Tadhg")]  # fmt: skip
    batches = plan_batches(requests, max_batch=8)
    assert sorted(i for b in batches for i in b) == list(range(len(requests)))
    for batch in batches:
        assert len({(requests[i].kind, requests[i].vocabulary) for i in batch}) == 1
    assert [0, 2] in batches, "one meeting's finals still batch together"
    assert all(requests[b[0]].kind == "final" for b in batches[:3]), "finals first"
