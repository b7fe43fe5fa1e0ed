"""BatchedWhisper on real speech (hibari) and the bundled tiny.en model: one trimmed batch decodes several
clips as well as decoding each alone, and as well as faster-whisper's usual 30 s window, in both decode
modes (every test that takes ``engine`` runs once per mode)."""

from __future__ import annotations

import numpy as np
import pytest

from palaver.textmetrics import word_error_rate
from stt_workers.batched_whisper import DECODE_MODES, BatchedWhisper
from stt_workers.engine import SttEngine, Transcription

pytestmark = pytest.mark.integration

SCRIPTS = (
    "The quarterly budget review is scheduled for next Tuesday.",
    "Please send me the updated slides before lunch.",
    "We should hire two more engineers for the platform team.",
    "Can everyone hear me, or is my microphone muted?",
    "Let's move the launch date to the end of March.",
    "Who is taking notes for this meeting today?",
)
SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def model_dir() -> str:
    from palaver.settings import bundled_whisper_model_dir

    return str(bundled_whisper_model_dir())


@pytest.fixture(scope="module", params=DECODE_MODES)
def engine(model_dir: str, request: pytest.FixtureRequest) -> BatchedWhisper:
    return BatchedWhisper(model_dir, decode_mode=request.param)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    from palaver.demo.synth import Voice

    voice = Voice()
    # The last clip is two sentences with a pause, so the batch mixes lengths (about 2 s to 5 s).
    said = [voice.say(text, seed=i) for i, text in enumerate(SCRIPTS)]
    return [*said[:-1], np.concatenate([said[-1], np.zeros(SAMPLE_RATE // 4, np.float32), said[0]])]


@pytest.fixture(scope="module")
def scripts() -> list[str]:
    return [*SCRIPTS[:-1], f"{SCRIPTS[-1]} {SCRIPTS[0]}"]


@pytest.fixture(scope="module")
def batch(engine: BatchedWhisper, clips: list[np.ndarray]) -> list[Transcription]:
    return engine.decode(clips, "en")


def test_one_batch_transcribes_every_clip(batch: list[Transcription], scripts: list[str]) -> None:
    for script, result in zip(scripts, batch, strict=True):
        assert word_error_rate(script, result.text) <= 0.2, (script, result.text)
        assert 0.5 < result.confidence <= 1.0


def test_words_are_in_order_and_inside_their_clip(
    batch: list[Transcription], clips: list[np.ndarray]
) -> None:
    for result, audio in zip(batch, clips, strict=True):
        duration = len(audio) / SAMPLE_RATE
        assert result.words
        assert " ".join(w.word for w in result.words) == result.text
        for word in result.words:
            assert 0.0 <= word.start_s <= word.end_s <= duration + 1e-6
            assert 0.0 <= word.probability <= 1.0
        for before, after in zip(result.words, result.words[1:], strict=False):
            assert before.start_s < after.start_s
            assert before.end_s <= after.start_s + 1e-6
        assert result.words[-1].end_s > duration / 2  # the words span the speech, not a squeezed prefix


def test_a_batch_decodes_like_each_clip_alone(
    engine: BatchedWhisper, batch: list[Transcription], clips: list[np.ndarray], scripts: list[str]
) -> None:
    alone = [engine.transcribe(audio, "en") for audio in clips]
    for script, together, single in zip(scripts, batch, alone, strict=True):
        # Padding to the batch's longest clip changes the encoder's input, so allow WER-equivalent text.
        assert abs(word_error_rate(script, together.text) - word_error_rate(script, single.text)) <= 0.1


def test_trimming_costs_little_accuracy_against_the_30s_window(
    model_dir: str, batch: list[Transcription], clips: list[np.ndarray], scripts: list[str]
) -> None:
    from stt_workers.whisper_engine import WhisperEngine

    reference = WhisperEngine(model_dir)
    full = [reference.transcribe(audio, "en") for audio in clips]
    trimmed_wer = np.mean([word_error_rate(s, t.text) for s, t in zip(scripts, batch, strict=True)])
    full_wer = np.mean([word_error_rate(s, t.text) for s, t in zip(scripts, full, strict=True)])
    assert trimmed_wer - full_wer <= 0.05, (trimmed_wer, full_wer)


def test_an_empty_clip_gives_an_empty_transcription(engine: BatchedWhisper, clips: list[np.ndarray]) -> None:
    empty, speech = engine.decode([np.zeros(0, np.float32), clips[0]], "en")
    assert empty == Transcription(text="", words=(), confidence=0.0)
    assert word_error_rate(SCRIPTS[0], speech.text) <= 0.2


def test_too_long_a_clip_is_refused(engine: BatchedWhisper) -> None:
    with pytest.raises(ValueError):
        engine.decode([np.zeros(31 * SAMPLE_RATE, np.float32)], "en")


def test_it_is_an_stt_engine(engine: BatchedWhisper, clips: list[np.ndarray]) -> None:
    as_engine: SttEngine = engine
    assert (as_engine.name, as_engine.model) == ("whisper", "tiny.en")
    result = as_engine.transcribe(clips[1], "en")
    assert word_error_rate(SCRIPTS[1], result.text) <= 0.2
    text_only = engine.decode([clips[1]], "en", with_words=False)[0]
    assert text_only.words == () and text_only.text == result.text and 0.5 < text_only.confidence <= 1.0


def test_word_timings_only_for_the_clips_that_ask(
    engine: BatchedWhisper, batch: list[Transcription], clips: list[np.ndarray]
) -> None:
    mixed = engine.decode(clips, "en", with_words=[i % 2 == 0 for i in range(len(clips))])
    for i, (result, full) in enumerate(zip(mixed, batch, strict=True)):
        assert result.text == full.text
        if i % 2 == 0:
            # Same words and timings; the probabilities only nearly: the alignment pass that scores them
            # runs on a smaller batch here, padded differently, and int8 kernels round differently for
            # another batch shape on some CPUs (up to 0.02 apart on an AMD EPYC host; equal on earlier hosts).
            assert [(w.word, w.start_s, w.end_s) for w in result.words] == [(w.word, w.start_s, w.end_s) for w in full.words]
            assert [w.probability for w in result.words] == pytest.approx([w.probability for w in full.words], abs=0.05)
            assert result.confidence == pytest.approx(full.confidence, abs=0.05)
        else:
            assert result.words == () and 0.5 < result.confidence <= 1.0


def plain_words(text: str) -> list[str]:
    return [w.strip(",.?!") for w in text.lower().split()]


def test_a_batch_mixing_partials_and_finals_decodes_each(
    engine: BatchedWhisper, clips: list[np.ndarray], scripts: list[str]
) -> None:
    # As the worker batches them: partials (the first 60% of an utterance so far, no word timings) beside
    # finals (whole utterances, with word timings).
    partials = [audio[: int(len(audio) * 0.6)] for audio in clips[:3]]
    batch = [*partials, *clips[3:]]
    results = engine.decode(batch, "en", with_words=[False] * len(partials) + [True] * len(clips[3:]))
    for script, partial in zip(scripts[: len(partials)], results[: len(partials)], strict=True):
        said, heard = plain_words(script), plain_words(partial.text)
        # The start of the utterance, and no words past the audio so far (a run-on would repeat or go on).
        assert 2 <= len(heard) < len(said), (script, partial.text)
        assert word_error_rate(" ".join(said[: len(heard)]), " ".join(heard)) <= 0.25, (script, partial.text)
        assert partial.words == () and 0.5 < partial.confidence <= 1.0
    for script, final, audio in zip(scripts[3:], results[len(partials) :], clips[3:], strict=True):
        assert word_error_rate(script, final.text) <= 0.2, (script, final.text)
        assert final.words and " ".join(w.word for w in final.words) == final.text
        assert all(0.0 <= w.start_s <= w.end_s <= len(audio) / SAMPLE_RATE + 1e-6 for w in final.words)
        assert 0.5 < final.confidence <= 1.0


def test_clips_decode_with_previous_text_of_different_lengths(
    engine: BatchedWhisper, clips: list[np.ndarray], scripts: list[str]
) -> None:
    # Each clip with the scripts before it as its prompt (of different lengths: cut to one in the batch).
    prompts = [" ".join(SCRIPTS[max(0, i - k) : i]) or SCRIPTS[-1] for i, k in enumerate((1, 1, 2, 3, 1, 2))]
    results = engine.decode(clips, "en", True, prompts)
    for script, result, prompt in zip(scripts, results, prompts, strict=True):
        assert word_error_rate(script, result.text) <= 0.2, (prompt, script, result.text)
        assert result.words and " ".join(w.word for w in result.words) == result.text


def test_empty_prompts_decode_as_no_prompts(engine: BatchedWhisper, clips: list[np.ndarray],
                                            batch: list[Transcription]) -> None:  # fmt: skip
    with_empty = engine.decode(clips, "en", True, [""] * len(clips))
    assert [r.text for r in with_empty] == [r.text for r in batch]
    # one clip without previous text: the whole batch decodes without prompts
    one_missing = engine.decode(clips, "en", True, ["", *SCRIPTS[: len(clips) - 1]])
    assert [r.text for r in one_missing] == [r.text for r in batch]


# Said with names and a product tiny.en does not know: without a vocabulary it writes "A.I." and
# "graph on a" for them.
VOCABULARY_SCRIPT = "Aoife said the Grafana dashboards for Kafka lag are ready."
GLOSSARY_WORDS = ("Aoife", "Grafana")


def test_a_meeting_vocabulary_brings_its_words_into_the_transcript(engine: BatchedWhisper,
                                                                     clips: list[np.ndarray]) -> None:  # fmt: skip
    from palaver.demo.synth import Voice
    from stt_workers.vocabulary import vocabulary_prompt, vocabulary_terms

    said = Voice().say(VOCABULARY_SCRIPT, seed=0)
    # names and a glossary with as many words that are not said (distractors), as the meeting would have
    terms = vocabulary_terms(names=["Tadhg", "Aoife", "Siobhan"], glossary=["Grafana", "Nguyen", "Zurich"])
    vocabulary = vocabulary_prompt(terms, engine.count_tokens)
    assert vocabulary == "Tadhg, Aoife, Siobhan, Grafana, Nguyen, Zurich"
    without = engine.decode([said], "en", True)[0]
    with_it, other_with_it = engine.decode([said, clips[0]], "en", True, ["", "We met on Monday."], vocabulary)
    heard_without, heard_with = set(without.text.replace(".", "").split()), set(with_it.text.replace(".", "").split())
    assert not heard_without & set(GLOSSARY_WORDS), without.text
    assert set(GLOSSARY_WORDS) <= heard_with, with_it.text
    assert not heard_with & {"Tadhg", "Siobhan", "Nguyen", "Zurich"}, "no word of the list that is not said"
    assert word_error_rate(SCRIPTS[0], other_with_it.text) <= 0.2, "a clip of other words decodes as before"
    assert with_it.words and " ".join(w.word for w in with_it.words) == with_it.text
