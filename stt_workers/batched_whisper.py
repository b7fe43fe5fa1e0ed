"""Batched, length-trimmed Whisper decoding on CTranslate2.

faster-whisper pads every window to 30 s before the encoder, so decoding a 3 s utterance costs a full 30 s
encoder pass. CTranslate2 also accepts a mel input shorter than 30 s (the encoder uses the first
``frames // 2`` of its 1,500 positional embeddings), and batches inputs of equal length. ``BatchedWhisper``
decodes several streams' open utterances in one ``generate`` call on an input trimmed to the longest item,
then times their words with one batched ``align`` call, as faster-whisper does for a single window.

Bucketing policy, for the scheduler that builds the batches: group requests by ``bucket_for(seconds)``
(windows of 2.5, 5, 10, 20 and 30 s) and decode each bucket's group together. ``decode`` pads a batch to
its longest item plus ``min_silence_s`` (0.5 s) rounded up to ``pad_multiple_s`` (1 s), so within one
bucket no item pays for more than about a bucket's worth of padding, and a short utterance never waits
behind a 30 s one. Items of one batch are independent except through that shared width.

Accuracy: on a trimmed window tiny.en tends to start the clip's text over once the speech ends (it
learned 30 s windows). The decode therefore pads the audio with silence, decodes with timestamp tokens and
keeps only the segments that start inside the clip and do not repeat an earlier segment (see
bench/README.md for the measured effect).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stt_workers.engine import Transcription, Word
from stt_workers.whisper_engine import model_label

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0  # Whisper's encoder has positional embeddings for 30 s (1,500 positions)
BUCKETS_S = (2.5, 5.0, 10.0, 20.0, 30.0)
_FRAMES_PER_SECOND = 100  # mel frames (hop 160 at 16 kHz); the encoder halves this
_MAX_FRAMES = round(MAX_SECONDS * _FRAMES_PER_SECOND)
_TOKENS_PER_SECOND = 50  # encoder positions per second, the unit of align's time indices
_MAX_LENGTH = 448  # the decoder's context
# A cap on generated tokens per second of audio: fast speech is ~7 tokens/s; without a cap one item that
# loops on a repetition would hold the whole batch for 448 decoder steps.
_TOKENS_PER_AUDIO_SECOND = 12
_PREPEND_PUNCTUATIONS = "\"'“¿([{-"
_APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


def _cut_restart(tokens: list[int], probe: int = 5) -> list[int]:
    """Cut where the text starts over inside one segment (the trimmed-window failure that timestamps do
    not always mark): the first later occurrence of the opening ``probe`` tokens, also at a period shorter
    than the probe ("Great news. Great news. Great news."). A text that repeats to its end is also found
    past its first token, whose spelling often differs on a restart ("great news. Great news. Great"). A short text is probed with half its
    length (at least 2 tokens); a one-token echo ("no, no") is left alone."""
    probe = min(probe, (len(tokens) - 1) // 2)
    if probe < 2:
        return tokens
    head = tokens[:probe]
    for j in range(1, len(tokens) - probe + 1):
        if tokens[j : j + probe] == head:
            return tokens[:j]
    # Skipping the first token, only a text that repeats to its end counts: a phrase said twice in a
    # sentence ("Yes, of course, of course.") is not a restart.
    head = tokens[1 : 1 + probe]
    for j in range(2, len(tokens) - probe + 1):
        if tokens[j : j + probe] == head and tokens[j:] == tokens[1 : 1 + len(tokens) - j]:
            return tokens[: j - 1]
    return tokens


def bucket_for(seconds: float) -> int:
    """The batching bucket of a request ``seconds`` long: the bucket's window length in milliseconds
    (2500, 5000, 10000, 20000 or 30000). Raises ``ValueError`` past 30 s, which one decode cannot hold."""
    if seconds > MAX_SECONDS:
        raise ValueError(f"{seconds:.2f} s is longer than Whisper's {MAX_SECONDS:.0f} s window")
    return next(round(b * 1000) for b in BUCKETS_S if seconds <= b)


class BatchedWhisper:
    """A Whisper model that decodes batches of utterances with the encoder input trimmed to their length.

    Thread-safe and stateless between calls: every ``decode`` is a pure function of its audio; up to
    ``lanes`` calls from different threads run at once, each on ``threads`` threads. Also an
    ``SttEngine`` (``transcribe`` decodes a batch of one)."""

    name = "whisper"

    def __init__(self, model_dir: str, compute_type: str = "int8", device: str = "cpu", threads: int = 2,
                 lanes: int = 1, pad_multiple_s: float = 1.0, min_silence_s: float = 0.5,
                 tail_guard_s: float = 0.3):  # fmt: skip
        import ctranslate2
        import tokenizers
        from faster_whisper.feature_extractor import FeatureExtractor

        if not (Path(model_dir) / "model.bin").is_file():
            raise FileNotFoundError(
                f"{model_dir} is not a CTranslate2 Whisper model directory (no model.bin)"
            )
        self.model = model_label(model_dir)
        # ``lanes`` model replicas (sharing weights) let that many threads decode batches at once.
        self._whisper = ctranslate2.models.Whisper(
            model_dir, device=device, compute_type=compute_type, intra_threads=threads, inter_threads=lanes
        )
        self._hf_tokenizer = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        # The bundled models have no preprocessor_config.json: the defaults (80 mels) are Whisper's.
        self._features = FeatureExtractor()
        self._pad_frames = max(2, round(pad_multiple_s * _FRAMES_PER_SECOND) // 2 * 2)
        self._min_silence_s = min_silence_s
        self._tail_guard_s = tail_guard_s
        self._tokenizers: dict[str, object] = {}

    @property
    def multilingual(self) -> bool:
        """False for an English-only model (``*.en``): it decodes every language as English."""
        return bool(self._whisper.is_multilingual)

    def transcribe(self, audio: np.ndarray, language: str) -> Transcription:
        """``SttEngine.transcribe``: a batch of one."""
        return self.decode([audio], language)[0]

    def decode(
        self, batch: list[np.ndarray], language: str, with_words: bool | Sequence[bool] = True
    ) -> list[Transcription]:
        """Decode float32 16 kHz mono clips (each at most 30 s) in one encoder/decoder pass, greedily.

        Returns one ``Transcription`` per clip, in order; word times are seconds from the start of that clip.
        ``with_words`` (one flag for all clips, or one per clip) asks for word timings, which cost an
        alignment pass over the clips that want them. Without them the words are empty and confidence is
        the geometric mean of the token probabilities; with them it is the geometric mean of the word
        probabilities. An empty clip gives an empty transcription. Raises ``ValueError`` for a clip over
        30 s. Blocking and CPU-bound."""
        from ctranslate2 import StorageView
        from faster_whisper.transcribe import get_suppressed_tokens

        for audio in batch:
            if len(audio) > MAX_SECONDS * SAMPLE_RATE:
                raise ValueError(
                    f"a clip of {len(audio) / SAMPLE_RATE:.2f} s is longer than {MAX_SECONDS:.0f} s"
                )
        results = [Transcription(text="", words=(), confidence=0.0)] * len(batch)
        live = [i for i, audio in enumerate(batch) if len(audio) >= self._features.hop_length]
        if not live:
            return results
        tokenizer = self._tokenizer(language)
        frames = [len(batch[i]) // self._features.hop_length for i in live]
        longest = max(frames) + round(self._min_silence_s * _FRAMES_PER_SECOND)
        width = min(-(-longest // self._pad_frames) * self._pad_frames, _MAX_FRAMES)
        # Pad the audio, not the mel: the padding is then digital silence at the log-mel floor, as in
        # Whisper's own 30 s windows, which is what tells the decoder where speech ends.
        width_samples = width * self._features.hop_length
        mels = [
            self._features(np.pad(np.asarray(batch[i], np.float32), (0, width_samples - len(batch[i]))))[
                :, :width
            ]
            for i in live
        ]
        encoded = self._whisper.encode(
            StorageView.from_array(np.ascontiguousarray(np.stack(mels), np.float32))
        )

        # With timestamps: on a trimmed window the decoder tends to start the text over once the speech
        # ends; the segment timestamps show where, and ``_speech_tokens`` cuts there.
        prompt = list(tokenizer.sot_sequence)
        new_tokens = math.ceil(width / _FRAMES_PER_SECOND * _TOKENS_PER_AUDIO_SECOND) + 16
        generated = self._whisper.generate(
            encoded,
            [prompt] * len(live),
            beam_size=1,
            max_length=min(_MAX_LENGTH, len(prompt) + new_tokens),
            return_scores=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
        )
        tokens = [
            self._speech_tokens(
                tokenizer, g.sequences_ids[0], max(0.0, n / _FRAMES_PER_SECOND - self._tail_guard_s)
            )
            for g, n in zip(generated, frames, strict=True)
        ]
        wanted = [with_words] * len(batch) if isinstance(with_words, bool) else list(with_words)
        aligned = [k for k, i in enumerate(live) if wanted[i]]
        words = dict(zip(aligned, self._align(tokenizer, encoded, aligned, tokens, frames), strict=True))
        for k, i in enumerate(live):
            text = tokenizer.decode(tokens[k]).strip()
            if k not in words:
                confidence = math.exp(generated[k].scores[0]) if tokens[k] else 0.0
                results[i] = Transcription(text=text, words=(), confidence=confidence)
                continue
            item_words = words[k]
            confidence = (
                math.exp(sum(math.log(max(w.probability, 1e-6)) for w in item_words) / len(item_words))
                if item_words
                else 0.0
            )
            results[i] = Transcription(text=text, words=item_words, confidence=confidence)
        return results

    def _tokenizer(self, language: str):  # -> faster_whisper.tokenizer.Tokenizer
        from faster_whisper.tokenizer import Tokenizer

        if not self._whisper.is_multilingual:
            language = "en"  # an English-only model has no language tokens
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._hf_tokenizer, self._whisper.is_multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]

    @staticmethod
    def _speech_tokens(tokenizer, sequence: list[int], last_start_s: float) -> list[int]:
        """The text tokens of the segments that belong to the audio: decoding stops at the first segment
        that starts after ``last_start_s`` (past the speech) or repeats an earlier segment's text."""
        kept: list[int] = []
        seen: set[str] = set()
        segment: list[int] = []
        start_s = 0.0
        for token in [
            *sequence,
            tokenizer.timestamp_begin + 1500,
        ]:  # a final timestamp closes the last segment
            if token < tokenizer.eot:
                segment.append(token)
                continue
            if token < tokenizer.timestamp_begin:
                continue
            if segment:
                text = " ".join(tokenizer.decode(segment).lower().split())
                if start_s > last_start_s or text in seen:
                    break
                kept.extend(segment)
                seen.add(text)
                segment = []
            start_s = (token - tokenizer.timestamp_begin) * 0.02
        return _cut_restart(kept)

    def _align(
        self, tokenizer, encoded, items: list[int], tokens: list[list[int]], frames: list[int]
    ) -> list[tuple[Word, ...]]:
        """Word timings and probabilities of the batch's ``items`` from one batched cross-attention
        alignment (faster-whisper's ``find_alignment``), times clamped to each clip's length."""
        from ctranslate2 import StorageView
        from faster_whisper.transcribe import merge_punctuations

        if not items:
            return []
        if len(items) < len(tokens):  # align only these: the others (partials) need no word timings
            encoded = StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[items]))
        tokens, frames = [tokens[k] for k in items], [frames[k] for k in items]
        alignments = self._whisper.align(encoded, tokenizer.sot_sequence, tokens, frames)
        out: list[tuple[Word, ...]] = []
        for result, text_tokens, n_frames in zip(alignments, tokens, frames, strict=True):
            words, word_tokens = tokenizer.split_to_word_tokens([*text_tokens, tokenizer.eot])
            if not text_tokens or len(word_tokens) <= 1:
                out.append(())
                continue
            text_index = np.array([pair[0] for pair in result.alignments])
            time_index = np.array([pair[1] for pair in result.alignments])
            jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
            jump_times = time_index[jumps] / _TOKENS_PER_SECOND
            bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
            probs = result.text_token_probs
            timed = [
                {
                    "word": word,
                    "tokens": toks,
                    "start": float(jump_times[a]),
                    "end": float(jump_times[b]),
                    "probability": float(np.mean(probs[a:b])),
                }
                for word, toks, a, b in zip(words, word_tokens, bounds[:-1], bounds[1:], strict=False)
            ]
            merge_punctuations(timed, _PREPEND_PUNCTUATIONS, _APPEND_PUNCTUATIONS)
            duration = n_frames / _FRAMES_PER_SECOND
            out.append(
                tuple(
                    Word(
                        w["word"].strip(),
                        min(w["start"], duration),
                        min(w["end"], duration),
                        w["probability"],
                    )
                    for w in timed
                    if w["word"].strip()
                )
            )
        return out
