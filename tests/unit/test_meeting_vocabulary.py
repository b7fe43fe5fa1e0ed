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


def _vocabulary(version: int, names: list[str], glossary: list[str] = (), meeting_id: str = "mtg_a") -> bytes:
    from palaver import ids
    from palaver.events import encode
    from palaver.events.meeting_vocabulary_v1 import MeetingVocabularyV1

    return encode(MeetingVocabularyV1(event_id=ids.event_id("meeting.vocabulary", meeting_id, version),
                                      meeting_id=meeting_id, names=names, title="Weekly standup",
                                      agenda=["Hiring"], glossary=list(glossary), vocabulary_version=version))  # fmt: skip


def test_the_fold_keeps_each_meetings_newest_vocabulary() -> None:
    from stt_workers.vocabulary_follower import Vocabularies

    v = Vocabularies()
    assert v.apply("mtg_a", _vocabulary(2, ["Ana"], ["Grafana"])) == ["Ana", "Grafana", "Weekly standup", "Hiring"]
    assert v.apply("mtg_a", _vocabulary(1, ["Bob"])) is None, "an older version changes nothing"
    assert v.apply("mtg_a", _vocabulary(3, ["Ana"], ["Grafana"])) is None, "the same terms: no change to tell"
    assert v.apply("mtg_a", _vocabulary(4, ["Ana", "Aoife"])) == ["Ana", "Aoife", "Weekly standup", "Hiring"]
    assert v.apply("mtg_a", b"not json") is None and v.terms("mtg_a")[:2] == ["Ana", "Aoife"], "skipped"
    assert v.apply("mtg_a", _vocabulary(5, ["Eve"], meeting_id="mtg_b")) is None, "another meeting's record"
    assert v.apply("mtg_a", None) == [] and v.terms("mtg_a") == [], "a tombstone forgets it"
    assert v.apply("mtg_a", None) is None, "forgetting twice tells nothing"


def test_a_username_becomes_the_name_as_said() -> None:
    from api.meeting_vocabulary import spoken_name

    assert spoken_name("ana.lopez@example.com") == "Ana Lopez"
    assert spoken_name("aoife_byrne") == "Aoife Byrne"
    assert spoken_name("tadhg2") == "Tadhg"
    assert spoken_name("McKenzie") == "McKenzie", "a name written with capitals stays as written"
    assert spoken_name("bob-99") == "Bob"
    assert spoken_name("123@example.com") == ""


def test_the_vocabulary_event_holds_the_whole_meeting() -> None:
    from api.meeting_state import MeetingRecord
    from api.meeting_vocabulary import vocabulary_event
    from palaver import ids
    from stt_workers.vocabulary_follower import meeting_terms

    meeting = MeetingRecord("mtg_a", "Q3 planning", "usr_1", 1, 1, agenda=("Hiring",), glossary=("Grafana",))
    event = vocabulary_event(meeting, ["aoife", "ana.lopez@example.com", "aoife.1"], 7)
    assert (event.names, event.title, event.agenda, event.glossary) == (
        ["Aoife", "Ana Lopez"], "Q3 planning", ["Hiring"], ["Grafana"])
    assert event.event_id == ids.event_id("meeting.vocabulary", "mtg_a", 7) and event.vocabulary_version == 7
    assert meeting_terms(event) == ["Aoife", "Ana Lopez", "Grafana", "Q3 planning", "Hiring"]


async def test_the_follower_reads_the_topic_before_it_returns_then_follows_it() -> None:
    import asyncio

    from palaver.settings import Settings
    from palaver.streams.memory_broker import MemoryBroker
    from stt_workers.vocabulary_follower import VocabularyFollower

    broker = MemoryBroker()
    told: list[tuple[str, list[str]]] = []
    follower = VocabularyFollower(Settings(), lambda m, terms: told.append((m, terms)), broker.consumer)
    broker.create(follower.topic, 3)
    broker.append(follower.topic, _vocabulary(1, ["Ana"]), key=b"mtg_a")
    broker.append(follower.topic, _vocabulary(1, ["Eve"], meeting_id="mtg_b"), key=b"mtg_b")
    broker.append(follower.topic, _vocabulary(2, ["Ana"], ["Grafana"]), key=b"mtg_a")
    await follower.start()
    try:
        assert sorted(told) == sorted([("mtg_a", ["Ana", "Weekly standup", "Hiring"]),
                                       ("mtg_a", ["Ana", "Grafana", "Weekly standup", "Hiring"]),
                                       ("mtg_b", ["Eve", "Weekly standup", "Hiring"])]), "read to its end first"  # fmt: skip
        told.clear()
        broker.append(follower.topic, None, key=b"mtg_b")  # the meeting erased
        for _ in range(100):
            if told:
                break
            await asyncio.sleep(0.01)
        assert told == [("mtg_b", [])]
    finally:
        await follower.stop()


async def test_the_follower_of_an_empty_topic_starts_at_once() -> None:
    from palaver.settings import Settings
    from palaver.streams.memory_broker import MemoryBroker
    from stt_workers.vocabulary_follower import VocabularyFollower

    broker = MemoryBroker()
    follower = VocabularyFollower(Settings(), lambda m, terms: None, broker.consumer)
    await follower.start()
    await follower.stop()
    assert follower.vocabularies.events == {}
