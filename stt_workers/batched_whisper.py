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

Accuracy: on a trimmed window tiny.en tends to go on once the speech ends (it learned 30 s windows): it
starts the text over, loops, or adds words. The decode pads the audio with silence and finds the end of
the speech in one of two ways (``decode_mode``; bench/README.md has the measured effect of each):

- ``"timestamps"``: decode with timestamp tokens and keep the segments that start inside the clip and do
  not repeat an earlier segment, then cut a restart. CTranslate2 applies Whisper's timestamp rules item by
  item at every decoding step, which costs little on a CPU but most of a large batch's time on a GPU.
- ``"aligned"``: decode without timestamp tokens, each item's tokens capped by its own length; cut a
  restart and loops (stt_workers/transcript_cuts.py); then one batched ``align`` over every item gives
  each word's time, and the words that start at or after the clip's end go.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from stt_workers.engine import Transcription, Word
from stt_workers.log_mel import HOP_LENGTH, cuda_torch, log_mel, log_mel_torch
from stt_workers.transcript_cuts import cut_restart, loop_free, words_in_speech
from stt_workers.vocabulary import VOCABULARY_TOKENS
from stt_workers.whisper_engine import model_label

DecodeMode = Literal["aligned", "timestamps"]
DECODE_MODES: tuple[DecodeMode, ...] = ("aligned", "timestamps")

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
_TOKEN_SLACK = 16  # tokens allowed beyond that, so a very short clip still has room for its words
# Most previous-text tokens a prompt carries (Whisper itself allows 223): a long prompt costs decoder steps
# and invites the decoder to continue the prompt instead of the audio.
MAX_PROMPT_TOKENS = 64
_PREPEND_PUNCTUATIONS = "\"'“¿([{-"
_APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


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
    ``SttEngine`` (``transcribe`` decodes a batch of one). ``decode_mode`` picks how the end of each clip's
    speech is found (see the module's docstring); other values raise ``ValueError``. ``mel_on_gpu`` False
    computes the log-mel on the CPU also for a model on a GPU (to compare the two)."""

    name = "whisper"

    def __init__(self, model_dir: str, compute_type: str = "int8", device: str = "cpu", threads: int = 2,
                 lanes: int = 1, pad_multiple_s: float = 1.0, min_silence_s: float = 0.5,
                 tail_guard_s: float = 0.3, decode_mode: DecodeMode = "timestamps",
                 mel_on_gpu: bool = True):  # fmt: skip
        import ctranslate2
        import tokenizers

        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, not {decode_mode!r}")
        if not (Path(model_dir) / "model.bin").is_file():
            raise FileNotFoundError(
                f"{model_dir} is not a CTranslate2 Whisper model directory (no model.bin)"
            )
        self.model = model_label(model_dir)
        self.decode_mode: DecodeMode = decode_mode
        # ``lanes`` model replicas (sharing weights) let that many threads decode batches at once.
        self._whisper = ctranslate2.models.Whisper(
            model_dir, device=device, compute_type=compute_type, intra_threads=threads, inter_threads=lanes
        )
        self._on_cpu = self._whisper.device == "cpu"
        # On a GPU the log-mel is computed there too when torch can (its tensor goes to CTranslate2 as is).
        self._mel_device = None
        if mel_on_gpu and self._whisper.device == "cuda" and cuda_torch() is not None:
            self._mel_device = f"cuda:{self._whisper.device_index[0]}"
        self._hf_tokenizer = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        self._pad_frames = max(2, round(pad_multiple_s * _FRAMES_PER_SECOND) // 2 * 2)
        self._min_silence_s = min_silence_s
        self._tail_guard_s = tail_guard_s
        self._tokenizers: dict[str, object] = {}

    @property
    def mel_on_gpu(self) -> bool:
        """True when the log-mel is computed on the GPU (a model there, with torch for CUDA installed)."""
        return self._mel_device is not None

    @property
    def multilingual(self) -> bool:
        """False for an English-only model (``*.en``): it decodes every language as English."""
        return bool(self._whisper.is_multilingual)

    def transcribe(self, audio: np.ndarray, language: str) -> Transcription:
        """``SttEngine.transcribe``: a batch of one."""
        return self.decode([audio], language)[0]

    def decode(
        self, batch: list[np.ndarray], language: str, with_words: bool | Sequence[bool] = True,
        prompts: Sequence[str] | None = None, vocabulary: str = "",
    ) -> list[Transcription]:
        """Decode float32 16 kHz mono clips (each at most 30 s) in one encoder/decoder pass, greedily.

        Returns one ``Transcription`` per clip, in order; word times are seconds from the start of that clip.
        ``with_words`` (one flag for all clips, or one per clip) asks for word timings (in timestamps mode
        they cost an alignment pass over the clips that want them; aligned mode aligns every clip anyway).
        Without them the words are empty and confidence is the geometric mean of the token probabilities;
        with them it is the geometric mean of the word probabilities. An empty clip gives an empty
        transcription. Raises ``ValueError`` for a clip over 30 s. Blocking and CPU-bound.

        ``prompts`` (one per clip, "" for none): the text said just before each clip, given to the decoder as
        Whisper's previous text (``prompt_tokens``). CTranslate2 needs the same prompt length for every
        item of a call, so every live clip's prompt is cut to the last tokens that all of them have, at most
        ``MAX_PROMPT_TOKENS``: a clip without previous text decodes its whole batch without prompts.

        ``vocabulary``: the words the clips' meeting uses (``stt_workers.vocabulary.vocabulary_prompt``), one
        for the whole call, put first in every clip's prompt (its first ``VOCABULARY_TOKENS`` tokens), before
        the previous text: it is never cut to fit another clip's prompt. Clips of meetings with different
        vocabularies belong in different calls (the scheduler batches them so)."""
        for audio in batch:
            if len(audio) > MAX_SECONDS * SAMPLE_RATE:
                raise ValueError(
                    f"a clip of {len(audio) / SAMPLE_RATE:.2f} s is longer than {MAX_SECONDS:.0f} s"
                )
        results = [Transcription(text="", words=(), confidence=0.0)] * len(batch)
        live = [i for i, audio in enumerate(batch) if len(audio) >= HOP_LENGTH]
        if not live:
            return results
        wanted = [with_words] * len(batch) if isinstance(with_words, bool) else list(with_words)
        tokenizer = self._tokenizer(language)
        frames = [len(batch[i]) // HOP_LENGTH for i in live]
        longest = max(frames) + round(self._min_silence_s * _FRAMES_PER_SECOND)
        width = min(-(-longest // self._pad_frames) * self._pad_frames, _MAX_FRAMES)
        # Pad the audio, not the mel: the padding is then digital silence at the log-mel floor, as in
        # Whisper's own 30 s windows, which is what tells the decoder where speech ends.
        audio = np.zeros((len(live), width * HOP_LENGTH), np.float32)
        for row, i in enumerate(live):
            audio[row, : len(batch[i])] = batch[i]
        encoded = self._encode(audio, width)
        decode = self._decode_aligned if self.decode_mode == "aligned" else self._decode_timestamps
        previous = prompt_tokens(tokenizer, [prompts[i] if prompts else "" for i in live], vocabulary=vocabulary)
        decoded = decode(tokenizer, encoded, frames, width, [wanted[i] for i in live], previous)
        for i, result in zip(live, decoded, strict=True):
            results[i] = result
        return results

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes in a prompt (as ``prompt_tokens`` encodes it)."""
        return len(self._hf_tokenizer.encode(" " + " ".join(text.split()), add_special_tokens=False).ids)

    def _encode(self, audio: np.ndarray, width: int) -> Any:
        """The encoder output (a StorageView on the model's device) of the padded ``audio`` rows."""
        from ctranslate2 import StorageView

        if self._mel_device is not None:
            mel = log_mel_torch(audio, width, self._mel_device)  # stays referenced until encode returns
            return self._whisper.encode(StorageView.from_array(mel))
        return self._whisper.encode(StorageView.from_array(log_mel(audio, width)))

    def _generate(self, tokenizer, encoded, prompt: list[int], new_tokens: int, previous: list[list[int]]) -> list:
        """Greedy generation after ``prompt`` (the sot sequence and after), each item's previous text
        before it (all of one length)."""
        from faster_whisper.transcribe import get_suppressed_tokens

        prompts = [[tokenizer.sot_prev, *p, *prompt] if p else prompt for p in previous]
        return self._whisper.generate(
            encoded,
            prompts,
            beam_size=1,
            max_length=min(_MAX_LENGTH, len(prompts[0]) + new_tokens),
            return_scores=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
        )

    def _decode_timestamps(
        self, tokenizer, encoded, frames: list[int], width: int, wanted: list[bool], previous: list[list[int]]
    ) -> list[Transcription]:
        """With timestamps: on a trimmed window the decoder tends to start the text over once the speech
        ends; the segment timestamps show where, and ``_speech_tokens`` cuts there."""
        new_tokens = math.ceil(width / _FRAMES_PER_SECOND * _TOKENS_PER_AUDIO_SECOND) + _TOKEN_SLACK
        generated = self._generate(tokenizer, encoded, list(tokenizer.sot_sequence), new_tokens, previous)
        tokens = [
            self._speech_tokens(
                tokenizer, g.sequences_ids[0], max(0.0, n / _FRAMES_PER_SECOND - self._tail_guard_s)
            )
            for g, n in zip(generated, frames, strict=True)
        ]
        tokens = [_loop_free_tokens(tokenizer, t, p) if p else t for t, p in zip(tokens, previous, strict=True)]
        # On the CPU only the items that want word timings are aligned: copying their encoder rows out
        # costs less than aligning the others. A StorageView on a GPU cannot be indexed from here (a host
        # copy would defeat the point), so there every item is aligned and the unwanted timings are dropped.
        items = [k for k, want in enumerate(wanted) if want or not self._on_cpu]
        if items and len(items) < len(tokens):
            from ctranslate2 import StorageView

            encoded = StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[items]))
        alignments = self._align(tokenizer, encoded, [tokens[k] for k in items], [frames[k] for k in items])
        timed = dict(zip(items, alignments, strict=True))
        out = []
        for k, item_tokens in enumerate(tokens):
            text = tokenizer.decode(item_tokens).strip()
            if not wanted[k]:
                confidence = math.exp(generated[k].scores[0]) if item_tokens else 0.0
                out.append(Transcription(text=text, words=(), confidence=confidence))
                continue
            words = _words(timed[k][0], frames[k] / _FRAMES_PER_SECOND)
            out.append(Transcription(text=text, words=words, confidence=_word_confidence(words)))
        return out

    def _decode_aligned(
        self, tokenizer, encoded, frames: list[int], width: int, wanted: list[bool], previous: list[list[int]]
    ) -> list[Transcription]:
        """Without timestamps: tokens capped by each clip's own length, restarts and loops cut, then one
        alignment of every item over the whole padded window, so that words the decoder ran on with land
        in the padding and are cut by their start time."""
        caps = [math.ceil(n / _FRAMES_PER_SECOND * _TOKENS_PER_AUDIO_SECOND) + _TOKEN_SLACK for n in frames]
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        generated = self._generate(tokenizer, encoded, prompt, max(caps), previous)
        tokens = [
            _loop_free_tokens(tokenizer, cut_restart([t for t in g.sequences_ids[0] if t < tokenizer.eot][:cap]), p)
            for g, cap, p in zip(generated, caps, previous, strict=True)
        ]
        out = []
        for k, (timed, probs) in enumerate(self._align(tokenizer, encoded, tokens, [width] * len(frames))):
            duration = frames[k] / _FRAMES_PER_SECOND
            spoken = [w for w in timed if w["word"].strip()]
            # No guard here, unlike the segment timestamps: a clip's last word starts as little as 0.1 s
            # before its end, and a run-on word is placed in the padding after it.
            spoken = spoken[: words_in_speech([w["start"] for w in spoken], duration)]
            kept_tokens = [t for w in spoken for t in w["tokens"]]
            text = tokenizer.decode(kept_tokens).strip()
            if wanted[k]:
                words = _words(spoken, duration)
                out.append(Transcription(text=text, words=words, confidence=_word_confidence(words)))
                continue
            confidence = _mean_probability(probs[: len(kept_tokens)])
            out.append(Transcription(text=text, words=(), confidence=confidence))
        return out

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
        return cut_restart(kept)

    def _align(
        self, tokenizer, encoded, tokens: list[list[int]], frames: list[int]
    ) -> list[tuple[list[dict], list[float]]]:
        """One batched cross-attention alignment (faster-whisper's ``find_alignment``) of every row of
        ``encoded``: per row, its words (dicts of word, tokens, start, end, probability; punctuation merged
        into its neighbours, leaving empty words) and its text tokens' probabilities."""
        from faster_whisper.transcribe import merge_punctuations

        if not tokens:
            return []
        alignments = self._whisper.align(encoded, tokenizer.sot_sequence, tokens, frames)
        out: list[tuple[list[dict], list[float]]] = []
        for result, text_tokens in zip(alignments, tokens, strict=True):
            words, word_tokens = tokenizer.split_to_word_tokens([*text_tokens, tokenizer.eot])
            probs = list(result.text_token_probs)
            if not text_tokens or len(word_tokens) <= 1:
                out.append(([], probs))
                continue
            text_index = np.array([pair[0] for pair in result.alignments])
            time_index = np.array([pair[1] for pair in result.alignments])
            jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
            jump_times = time_index[jumps] / _TOKENS_PER_SECOND
            bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
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
            out.append((timed, probs))
        return out


def prompt_tokens(tokenizer, texts: Sequence[str], limit: int = MAX_PROMPT_TOKENS,
                  vocabulary: str = "") -> list[list[int]]:  # fmt: skip
    """Each text's last tokens as Whisper's previous text, all cut to one length (CTranslate2 decodes a
    batch only with its start-of-transcript token at one position): the fewest any text has, at most
    ``limit``. An empty text leaves every prompt without previous text. ``vocabulary``'s first
    ``VOCABULARY_TOKENS`` tokens, the same for every text, go before each (so every prompt keeps them)."""
    lead = _encoded(tokenizer, vocabulary)[:VOCABULARY_TOKENS]
    encoded = [_encoded(tokenizer, text) for text in texts]
    length = min([limit, *map(len, encoded)])
    return [[*lead, *tokens[len(tokens) - length :]] if length else list(lead) for tokens in encoded]


def _encoded(tokenizer, text: str) -> list[int]:
    """``text``'s tokens as a prompt holds them (after a space, whitespace runs made one space)."""
    return tokenizer.encode(" " + " ".join(text.split())) if text.strip() else []


def _loop_free_tokens(tokenizer, tokens: list[int], previous: list[int]) -> list[int]:
    """``tokens`` without the words of decoder loops (``loop_free``), counting the previous text before
    them: a prompted decoder often says the prompt's last sentence again first, a loop across the seam."""
    if not tokens:
        return []
    said = tokenizer.split_to_word_tokens(previous)[0] if previous else []
    words, word_tokens = tokenizer.split_to_word_tokens(tokens)
    return [t for i in loop_free([*said, *words]) if i >= len(said) for t in word_tokens[i - len(said)]]


def _words(timed: list[dict], duration: float) -> tuple[Word, ...]:
    """``Word``s of an alignment's words, times clamped to the clip's ``duration``, empty words left out."""
    return tuple(
        Word(w["word"].strip(), min(w["start"], duration), min(w["end"], duration), w["probability"])
        for w in timed
        if w["word"].strip()
    )


def _word_confidence(words: tuple[Word, ...]) -> float:
    """The geometric mean of the words' probabilities (0 without words)."""
    return _mean_probability([w.probability for w in words])


def _mean_probability(probabilities: Sequence[float]) -> float:
    """The geometric mean of ``probabilities`` (0 for none)."""
    if not probabilities:
        return 0.0
    return math.exp(sum(math.log(max(p, 1e-6)) for p in probabilities) / len(probabilities))
