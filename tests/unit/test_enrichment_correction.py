"""Auto-correct by a remote backend (enrichment/remote_correction.py) against local servers that speak the
OpenAI and watsonx.ai protocols (tests/unit/llm_servers.py), its guard (enrichment/correction_guard.py) and
its prompts and answers (enrichment/correction_prompts.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from enrichment.answers import InvalidOutput
from enrichment.backend import UnknownBackendError
from enrichment.correction import LocalCorrector, corrector_named
from enrichment.correction_guard import within, word_change, words
from enrichment.correction_prompts import MAX_BATCH, batches, line, parse_corrections
from palaver.settings import Settings
from tests.unit.enrichment_helpers import meeting
from tests.unit.llm_servers import FakeModelServer, Step, good_corrections, sent_dialogues, serving
from tests.unit.test_enrichment_remote import Sleeps, settings

SAID = meeting("alice: so i think the the kubernetes rollout works , bob",
               "bob: we was late on the postgre sql upgrade",
               "alice: ok lets ship it on friday",
               participants=("alice", "bob"), agenda=("PostgreSQL upgrade",))  # fmt: skip
TRANSCRIPT = SAID.model_copy(update={"title": "Kubernetes rollout"})


@pytest.fixture(params=["openai", "watsonx"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeModelServer]:
    with serving(request.param) as server:
        yield server


def corrector(fake: FakeModelServer, sleeps: Sleeps | None = None, **overrides: Any) -> Any:
    return corrector_named(fake.kind, settings(fake, **overrides), sleeps if sleeps is not None else Sleeps())


def answer(fake: FakeModelServer, texts: dict[str, str]) -> Step:
    return Step(content=json.dumps(texts))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_good_answer_is_one_corrected_text_per_dialogue_and_the_request_carries_the_vocabulary(
        fake: FakeModelServer) -> None:  # fmt: skip
    corrections = corrector(fake).correct(TRANSCRIPT)
    [request] = fake.chat_requests()
    assert [(c.dialogue_id, c.outcome, c.note) for c in corrections] == [(f"d{i}", "remote", "") for i in range(3)]  # fmt: skip
    assert {c.dialogue_id: c.text for c in corrections} == good_corrections(request.body)
    # The model's text, not the local rules'.
    assert corrections[1].text == "We was late on the postgre sql upgrade."
    schema = request.body["response_format"]["json_schema"]
    assert (schema["name"], schema["strict"], schema["schema"]["required"]) == ("dialogue_corrections", True,
                                                                                ["d0", "d1", "d2"])  # fmt: skip
    assert schema["schema"]["additionalProperties"] is False
    system, prompt = (m["content"] for m in request.body["messages"])
    assert "Keep the speaker's words and meaning" in system
    for known in ("Meeting title: Kubernetes rollout", "Participants: alice, bob.",
                  "Planned agenda: PostgreSQL upgrade.", "Alice, Bob, Kubernetes, PostgreSQL"):  # fmt: skip
        assert known in prompt
    sent = sent_dialogues(request.body)[1]
    assert sent == {"id": "d1", "speaker": "bob", "text": "we was late on the postgre sql upgrade"}


def test_malformed_json_is_asked_once_more_then_the_local_correction_stands_in(
        fake: FakeModelServer, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    fake.script = [Step(content="not json at all")]  # then a good answer
    assert [c.outcome for c in corrector(fake).correct(TRANSCRIPT)] == ["remote"] * 3
    fake.requests.clear()
    fake.script = [Step(content='{"d0": "Only one."}'), Step(content="```json\n[1, 2]\n```")]
    caplog.set_level(logging.INFO)
    corrections = corrector(fake).correct(TRANSCRIPT)
    assert len(fake.chat_requests()) == 2  # an answer that is not the JSON asked for: once more, no more
    local = LocalCorrector().correct(TRANSCRIPT)
    assert [c.text for c in corrections] == [c.text for c in local]
    assert {c.outcome for c in corrections} == {"failed"} and "invalid_output" in corrections[0].note
    assert "corrected locally" in caplog.text


def test_429_and_5xx_are_retried_with_backoff_then_the_answer_is_used(fake: FakeModelServer) -> None:
    fake.script = [Step(status=429, headers={"Retry-After": "2"}), Step(status=503, body='{"error": "busy"}')]
    sleeps = Sleeps()
    corrections = corrector(fake, sleeps).correct(TRANSCRIPT)
    assert [c.outcome for c in corrections] == ["remote"] * 3
    assert sleeps == [2.0, 1.0] and len(fake.chat_requests()) == 3


def test_a_model_that_stays_down_leaves_every_dialogue_the_local_correction_and_is_not_asked_again(
        fake: FakeModelServer) -> None:  # fmt: skip
    fake.script = [Step(status=500, body="{}")] * 3
    before = sample("palaver_enrichment_backend_errors_total", backend=fake.kind, reason="server_error")
    # Three batches (2,000 characters at most each): the first fails after its retries, the rest is not sent.
    long_said = meeting(*(f"alice: {'word ' * 180}number {i}" for i in range(5)), participants=("alice",))
    corrections = corrector(fake, enrichment_max_chars=2000, enrichment_retries=2).correct(long_said)
    assert len(fake.chat_requests()) == 3
    after = sample("palaver_enrichment_backend_errors_total", backend=fake.kind, reason="server_error")
    assert after == before + 3
    assert [c.text for c in corrections] == [c.text for c in LocalCorrector().correct(long_said)]
    assert {c.outcome for c in corrections} == {"failed"}
    assert all("server_error" in c.note for c in corrections)


def test_an_answer_that_rewrites_a_dialogue_is_rejected_for_it_alone(
        fake: FakeModelServer, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    fake.script = [answer(fake, {"d0": "So I think the Kubernetes rollout works, Bob.",
                                 "d1": "The PostgreSQL upgrade is finished and everyone is happy.",
                                 "d2": "OK, let's ship it on Friday."})]  # fmt: skip
    caplog.set_level(logging.WARNING)
    corrections = corrector(fake).correct(TRANSCRIPT)
    assert [c.outcome for c in corrections] == ["remote", "rejected", "remote"]
    assert corrections[0].text == "So I think the Kubernetes rollout works, Bob."
    local = LocalCorrector().correct(TRANSCRIPT)[1].text
    assert corrections[1].text == local == "We was late on the postgre sql upgrade."
    assert "30%" in corrections[1].note and "d1" in caplog.text and "corrected locally" in caplog.text
    # A looser limit keeps it.
    fake.script = [answer(fake, {"d0": "x", "d1": "We were late on the Postgres SQL upgrade.", "d2": "OK."})]
    loose = corrector(fake, enrichment_autocorrect_max_change=0.5).correct(TRANSCRIPT)
    assert [c.outcome for c in loose] == ["rejected", "remote", "rejected"]


def test_batches_stay_within_max_chars_and_a_dialogue_too_long_for_one_request_is_corrected_locally(
        fake: FakeModelServer) -> None:  # fmt: skip
    turns = [f"bob: item {i} {'and more words ' * 20}" for i in range(12)]
    turns.append(f"alice: {'far too long ' * 200}")
    said = meeting(*turns, participants=("alice", "bob"))
    corrections = corrector(fake, enrichment_max_chars=2000).correct(said)
    sent = [sent_dialogues(r.body) for r in fake.chat_requests()]
    by_id = {d.dialogue_id: d for d in said.dialogues}
    assert len(sent) > 1
    assert all(len("\n".join(line(by_id[d["id"]]) for d in batch)) <= 2000 for batch in sent)
    assert [d["id"] for batch in sent for d in batch] == [f"d{i}" for i in range(12)]  # in order, each once
    assert [c.outcome for c in corrections] == ["remote"] * 12 + ["failed"]
    assert "longer than one request" in corrections[-1].note


def test_batches_are_consecutive_bounded_and_cover_every_dialogue() -> None:
    said = meeting(*(f"ann: {'a' * (i * 37 % 500)} x" for i in range(140)), participants=("ann",))
    parts, too_long = batches(said.dialogues, 2000)
    assert too_long == []
    assert [d for part in parts for d in part] == list(said.dialogues)
    assert all(len(part) <= MAX_BATCH and len("\n".join(line(d) for d in part)) <= 2000 for part in parts)
    parts, too_long = batches(said.dialogues, 100)
    assert len(too_long) + sum(map(len, parts)) == 140 and all(len(line(d)) > 100 for d in too_long)


@pytest.mark.parametrize(("content", "why"), [
    ('{"d0": "A.", "d1": "B."}', "1 dialogue ids missing, 0 unknown"),
    ('{"d0": "A.", "d1": "B.", "d2": "C.", "d9": "D."}', "0 dialogue ids missing, 1 unknown"),
    ('{"d0": "A.", "d1": "B.", "d2": null}', "not a string"),
    ('["A.", "B.", "C."]', "not an object"),
    ("{'d0': 'A.'}", "not JSON"),
])  # fmt: skip
def test_an_answer_must_be_one_text_per_dialogue_id(content: str, why: str) -> None:
    with pytest.raises(InvalidOutput, match=why):
        parse_corrections(content, ["d0", "d1", "d2"])
    fenced = '```json\n{"d0": "A.", "d1": "B.", "d2": "C."}\n```'
    assert parse_corrections(fenced, ["d0", "d1", "d2"])["d2"] == "C."


def test_the_guard_counts_changed_words_not_case_or_punctuation() -> None:
    assert words("OK , it’s Bob's plan!") == ["ok", "it's", "bob's", "plan"]
    assert word_change("so i think the the rollout works , bob", "So I think the rollout works, Bob.") == 1 / 8  # fmt: skip
    assert word_change("we was late", "We were late.") == 1 / 3
    assert word_change("we was late", "The upgrade is finished and everyone is happy.") > 1
    assert word_change("", "") == 0 and word_change("", "Hello.") == 1
    assert within("we was late on the upgrade", "We were late on the upgrade.", 0.3)
    assert not within("we was late", "We were not late.", 0.3)
    long_said = " ".join(f"w{i}" for i in range(2000))
    assert word_change(long_said, long_said.upper()) == 0
    assert word_change(long_said, "something else entirely", 0.3) > 0.3  # stops early, still above the limit


def test_the_corrector_is_named_as_the_backends_are() -> None:
    assert isinstance(corrector_named("local"), LocalCorrector)
    with pytest.raises(UnknownBackendError, match="choose one of"):
        corrector_named("gpt")
    with pytest.raises(UnknownBackendError, match="PALAVER_ENRICHMENT_WATSONX_API_KEY"):
        corrector_named("watsonx", Settings())
    with pytest.raises(UnknownBackendError, match="needs the settings"):
        corrector_named("openai")
