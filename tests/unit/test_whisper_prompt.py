"""Previous-text prompts (stt_workers/batched_whisper.py, stt_workers/local_transcriber.py): which text
an utterance decodes with, how prompts of one batch are cut to one length, and the loop cut across the
seam between the prompt and the new text. The tokenizer is the bundled model's own (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tokenizers
from faster_whisper.tokenizer import Tokenizer

from palaver.settings import bundled_whisper_model_dir
from stt_workers.batched_whisper import MAX_PROMPT_TOKENS, _loop_free_tokens, prompt_tokens
from stt_workers.local_transcriber import PromptHistory

RATE = 16000


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    hf = tokenizers.Tokenizer.from_file(str(Path(bundled_whisper_model_dir()) / "tokenizer.json"))
    return Tokenizer(hf, False, task="transcribe", language="en")


def test_prompts_of_a_batch_are_cut_to_the_tokens_all_of_them_have(tokenizer: Tokenizer) -> None:
    short, long = "the quick brown fox", "we moved the reporting queries to the replica last week"
    cut = prompt_tokens(tokenizer, [short, long])
    assert len(cut[0]) == len(cut[1]) == len(tokenizer.encode(" " + short))
    assert tokenizer.decode(cut[0]).strip() == short
    assert long.endswith(tokenizer.decode(cut[1]).strip()), "the most recent tokens are kept"


def test_prompts_are_at_most_the_limit(tokenizer: Tokenizer) -> None:
    text = " ".join(f"word{i}" for i in range(200))
    (cut,) = prompt_tokens(tokenizer, [text])
    assert len(cut) == MAX_PROMPT_TOKENS
    assert tokenizer.decode(cut).strip().endswith("word199")


def test_a_clip_without_previous_text_leaves_the_batch_without_prompts(tokenizer: Tokenizer) -> None:
    assert prompt_tokens(tokenizer, ["some earlier words", "", "  "]) == [[], [], []]
    assert prompt_tokens(tokenizer, []) == []


def test_the_prompts_last_sentence_said_again_is_cut(tokenizer: Tokenizer) -> None:
    previous = tokenizer.encode(" The backup now takes 40 minutes instead of three hours.")
    echoed = tokenizer.encode(" The backup now takes 40 minutes instead of three hours. There is one open issue.")
    kept = _loop_free_tokens(tokenizer, echoed, previous)
    assert tokenizer.decode(kept).strip() == "There is one open issue."


def test_new_text_that_only_shares_a_few_words_with_the_prompt_stays(tokenizer: Tokenizer) -> None:
    previous = tokenizer.encode(" I think so.")
    text = tokenizer.encode(" I think so. Let us move on to the next item.")
    assert _loop_free_tokens(tokenizer, text, previous) == text
    assert _loop_free_tokens(tokenizer, text, []) == text
    assert _loop_free_tokens(tokenizer, [], previous) == []


def test_history_gives_the_finals_before_an_utterance() -> None:
    history = PromptHistory(RATE, reset_ms=10_000)
    assert history.prompt(0) == ""
    history.add(RATE, 2 * RATE, " Hello there. ")
    history.add(4 * RATE, 5 * RATE, "")  # a final without words adds nothing
    history.add(5 * RATE, 6 * RATE, "How are you?")
    assert history.prompt(7 * RATE) == "Hello there. How are you?"


def test_history_resets_after_a_long_silence() -> None:
    history = PromptHistory(RATE, reset_ms=10_000)
    history.add(RATE, 2 * RATE, "Hello there.")
    assert history.prompt(12 * RATE) == "Hello there."
    assert history.prompt(12 * RATE + 1) == ""
    history.add(19 * RATE, 20 * RATE, "A new turn.")
    assert history.prompt(21 * RATE) == "A new turn.", "the text before the silence is gone"


def test_history_keeps_the_most_recent_text() -> None:
    history = PromptHistory(RATE, keep_chars=20)
    history.add(0, RATE, "one two three four five six seven")
    assert history.prompt(RATE) == "e four five six seven"[-20:]
