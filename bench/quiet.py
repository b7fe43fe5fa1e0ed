"""Quiet speakers for the STT benchmark: extra participants who say a line and then fall quiet while the
others go on talking, and how long their box takes to show ``final`` on the live socket.

Two kinds, as browsers do it:

- *muted* (``--quiet``): the stream stays open and carries silence (a muted browser sends zeros). Each
  such speaker says a line, is silent for ``GAP_S``, says the next, and so on while the talkers talk;
- *leaving* (``--quiet-stop``): the speaker says one line and ends the stream shortly after.

Each line's last word is known from the synthesized audio (its last sample at or above 1% of full scale),
so its wall time is when the client had sent that sample (``SendLog``). The measured figure, per line:
the arrival of the first live-socket event with ``status: final`` for the quiet speaker's box holding the
line, minus that wall time. Beside it, for the diagnosis, the same for the first event that carried the
line's utterance settled (the STT's part of it), and the difference of the two (the merger's part).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.harness import OUT
from bench.speech import SAMPLE_RATE, SENTENCES, SendLog, Track

GAP_S = 6.0  # silence after a muted speaker's line: well past the pause rule and the STT's final
LEAD_S = 2.0  # the first quiet speaker's first word, after the talkers started
STAGGER_S = 1.3  # between quiet speakers' first lines, so they end at different moments
STOP_TAIL_MS = 500  # a leaving speaker ends the stream this long after the last word
LEVEL = 328  # 1% of full scale: a sample at or above it is speech


@dataclass(frozen=True)
class QuietTrack:
    track: Track
    lines: tuple[tuple[int, int], ...]  # per line, its first and one past its last speech sample
    stops: bool  # the stream ends after its line (else it goes on sending silence)


def speech_span(pcm: np.ndarray, offset: int = 0) -> tuple[int, int]:
    """First and one past the last sample of ``pcm`` at or above ``LEVEL``, shifted by ``offset``."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= LEVEL)
    if not len(loud):
        return offset, offset
    return offset + int(loud[0]), offset + int(loud[-1]) + 1


def build_quiet_tracks(muted: int, leaving: int, length_s: float) -> list[QuietTrack]:
    """``muted`` speakers (q0, q1, ...) who say a line every ``GAP_S`` of silence within ``length_s`` and
    then send silence to its end, and ``leaving`` speakers (x0, ...) who say one line and stop. Cached
    under bench/out/cache/ like the talkers' speech."""
    out = []
    for index in range(muted + leaving):
        stops = index >= muted
        name = f"x{index - muted}" if stops else f"q{index}"
        lead_s = LEAD_S + index * STAGGER_S
        recipe = ("quiet", index, stops, lead_s, GAP_S, STOP_TAIL_MS, length_s)
        cache = OUT / "cache" / f"quiet-{hashlib.sha256(repr(recipe).encode()).hexdigest()[:16]}.npz"
        if cache.exists():
            data = np.load(cache)
            lines = tuple((int(a), int(b)) for a, b in data["lines"])
            out.append(QuietTrack(Track(name, data["pcm"], str(data["script"])), lines, stops))
            continue
        pcm, lines, script = _compose(index, stops, lead_s, length_s)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, pcm=pcm, script=np.array(script), lines=np.array(lines, dtype=np.int64).reshape(-1, 2))
        out.append(QuietTrack(Track(name, pcm, script), tuple(lines), stops))
    return out


def _compose(index: int, stops: bool, lead_s: float,
             length_s: float) -> tuple[np.ndarray, list[tuple[int, int]], str]:  # fmt: skip
    from palaver.demo.synth import Voice

    voice = Voice()
    parts = [np.zeros(int(lead_s * SAMPLE_RATE), np.int16)]
    at = len(parts[0])
    lines, spoken = [], []
    sentence = (len(SENTENCES) // 2 + 7 * index) % len(SENTENCES)  # away from where the talkers start
    while True:
        text = SENTENCES[sentence % len(SENTENCES)]
        clip = (np.clip(voice.say(text, seed=101 + index), -1, 1) * 32767).astype("<i2")
        if not stops and (at + len(clip)) / SAMPLE_RATE + GAP_S > length_s and lines:
            break
        lines.append(speech_span(clip, at))
        spoken.append(text)
        parts.append(clip)
        at += len(clip)
        sentence += 1
        if stops:
            parts.append(np.zeros(STOP_TAIL_MS * SAMPLE_RATE // 1000, np.int16))
            break
        parts.append(np.zeros(int(GAP_S * SAMPLE_RATE), np.int16))
        at += int(GAP_S * SAMPLE_RATE)
    pcm = np.concatenate(parts).astype("<i2")
    if not stops and len(pcm) < length_s * SAMPLE_RATE:
        pcm = np.concatenate([pcm, np.zeros(int(length_s * SAMPLE_RATE) - len(pcm), "<i2")])
    return pcm, lines, " ".join(spoken)


def quiet_box_lags(live: list[tuple[float, dict[str, Any]]], logs: dict[str, SendLog],
                   quiet: list[QuietTrack]) -> dict[str, list[float] | int]:  # fmt: skip
    """Per quiet line: ``box_final`` (its box's first ``final`` event on the live socket), ``settled`` (the
    first event carrying an utterance of the line ``final``), each minus when the client sent the line's
    last word, and ``wait`` (the first minus the second), split by kind (``muted_*``, ``leaving_*``);
    ``*_never`` counts lines whose box never showed final."""
    result: dict[str, Any] = {f"{kind}_{what}": [] for kind in ("muted", "leaving")
                              for what in ("box_final", "settled", "wait")}  # fmt: skip
    result.update(muted_never=0, leaving_never=0)
    for q in quiet:
        kind = "leaving" if q.stops else "muted"
        log = logs[q.track.speaker_id]
        mine = [(ts, e) for ts, e in live if e.get("speaker_id") == q.track.speaker_id]
        for first, last in q.lines:
            start_ms, end_ms = _media_ms(log, first), _media_ms(log, last)
            spoken = log.sent_by(log.first_sample + last)
            if spoken is None:
                continue
            final_at = next((ts for ts, e in mine if e.get("status") == "final" and e["start_ms"] <= end_ms
                             and e["end_ms"] >= start_ms), None)  # fmt: skip
            settled_at = next((ts for ts, e in mine for u in e.get("utterances") or ()
                               if u["final"] and u["start_ms"] <= end_ms and u["end_ms"] >= start_ms), None)  # fmt: skip
            if final_at is None:
                result[f"{kind}_never"] += 1
            else:
                result[f"{kind}_box_final"].append(final_at - spoken)
            if settled_at is not None:
                result[f"{kind}_settled"].append(settled_at - spoken)
                if final_at is not None:
                    result[f"{kind}_wait"].append(final_at - settled_at)
    return result


def _media_ms(log: SendLog, track_sample: int) -> int:
    """The media time of a sample of the track (the stream's sample ``first_sample + track_sample``)."""
    return log.stream_start_ms + (log.first_sample + track_sample) * 1000 // SAMPLE_RATE
