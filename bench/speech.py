"""Known speech for the STT benchmark: one long script per speaker (different sentences, hibari-tts,
short pauses), and a record of when each frame was sent, so any media time maps back to a wall time.

Synthesized tracks are cached under bench/out/cache/ (keyed by text, seed and pauses), so a rerun
starts streaming at once.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from bench.harness import OUT
from palaver.textmetrics import word_error_rate

SAMPLE_RATE = 16000
LEAD_MS = 300  # silence before the first word
TAIL_MS = 1200  # silence after the last word, so the last utterance ends on the VAD, not on stream end
# Pauses between sentences: some shorter than the VAD's 500 ms (the utterance goes on), some longer (it
# ends and is finalized), as in a person reading aloud.
PAUSES_MS = (300, 750, 450, 900)

SENTENCES = (
    "Good morning everyone, let's start with a quick review of last week's numbers.",
    "The new onboarding flow went live on Tuesday and the early results look promising.",
    "Sign ups are up about twelve percent compared with the same week last month.",
    "We still see a lot of people dropping off at the payment step.",
    "I think the form asks for too much information before people see any value.",
    "Could we move the billing details to the end of the trial instead?",
    "The legal team wants to review any change to the checkout page first.",
    "I will set up a meeting with them on Thursday afternoon.",
    "On the infrastructure side, the database migration finished without downtime.",
    "We moved the reporting queries to the replica, so the main cluster is much calmer.",
    "The nightly backup now takes forty minutes instead of three hours.",
    "There is one open issue with the search index rebuilding too often.",
    "Our support queue grew over the weekend because of the email outage.",
    "Most tickets were about missing password reset messages.",
    "The provider fixed the problem on Sunday evening and sent us a report.",
    "We should add a second provider so that one failure does not stop all mail.",
    "Marketing would like to launch the spring campaign two weeks earlier.",
    "That means the landing pages and the videos have to be ready by the first of March.",
    "The design team has the drafts, but the copy is not final yet.",
    "Let's agree on the headline today and leave the details for the writers.",
    "The mobile release is waiting for the app store review.",
    "It includes offline mode, which customers have asked for since last year.",
    "We tested it on older phones and the battery use looks acceptable.",
    "If the review passes, the release goes out on Friday morning.",
    "Finance asked every team for a revised budget by the end of the month.",
    "Travel costs are well below the plan because most meetings stayed remote.",
    "On the other hand, cloud costs grew faster than we expected.",
    "Part of that is the new analytics pipeline, which runs every hour.",
    "We could run it every six hours without losing anything important.",
    "Hiring is going well, and two new engineers start next Monday.",
    "They will join the platform team and help with the on call rotation.",
    "Please make sure their laptops and accounts are ready before they arrive.",
    "The customer advisory board meets in three weeks in our Berlin office.",
    "We need a short demo of the reporting features for that meeting.",
    "I can prepare it, but I need sample data that looks realistic.",
    "Let's use the anonymized data set from the pilot customers.",
    "Security found two outdated libraries in the web frontend.",
    "Neither is exploitable in our setup, but we will upgrade them this sprint.",
    "The penetration test is scheduled for the second half of April.",
    "Before that, every service should have its access logs turned on.",
    "The partner integration is almost done, only the error handling is missing.",
    "Their sandbox was down for two days, which slowed us down a little.",
    "We expect to start the joint pilot with ten customers in May.",
    "Documentation for the public interface needs a thorough review as well.",
    "Several examples still use the old authentication method.",
    "I would like someone outside the team to read it with fresh eyes.",
    "Finally, the office will be closed on the holiday next Thursday.",
    "Thanks everyone, that's all for today, see you at the same time next week.",
)


@dataclass(frozen=True)
class Track:
    speaker_id: str
    pcm: np.ndarray  # int16, 16 kHz mono
    script: str  # the words spoken, in order
    # A recording of a person (bench/real_speech.py): its script has lost the transcript's markers and
    # filled pauses, so a hypothesis loses them too before it is scored
    recorded: bool = False

    @property
    def seconds(self) -> float:
        return len(self.pcm) / SAMPLE_RATE

    def wer(self, hypothesis: str) -> float:
        """The word error rate of ``hypothesis`` against the script."""
        if self.recorded:
            from bench.real_speech import clean

            hypothesis = clean(hypothesis)
        return word_error_rate(self.script, hypothesis)


def speaker_sentences(index: int, speakers: int, seconds: float) -> list[str]:
    """Sentences for speaker ``index``: speakers start at different places in the pool (so no two read the
    same sentence at the same time), enough to fill about ``seconds`` of speech (~3.5 s per sentence)."""
    needed = max(1, math.ceil(seconds / 3.0))
    offset = index * len(SENTENCES) // max(speakers, 1)
    return [SENTENCES[(offset + i) % len(SENTENCES)] for i in range(needed)]


def build_tracks(speakers: int, seconds: float, max_speakers: int | None = None) -> list[Track]:
    """``speakers`` tracks of at least ``seconds`` of speech each (whole sentences, cut after the one that
    reaches ``seconds``). ``max_speakers`` spreads the start offsets as for the largest sweep point, so a
    speaker reads the same script at every N (and the cache is reused)."""
    from palaver.demo.synth import Voice

    voice: Voice | None = None
    tracks = []
    for index in range(speakers):
        sentences = speaker_sentences(index, max_speakers or speakers, seconds)
        key = hashlib.sha256(repr((sentences, index, PAUSES_MS, LEAD_MS, TAIL_MS, seconds)).encode()).hexdigest()[:16]
        cache = OUT / "cache" / f"speech-{key}.npz"
        if cache.exists():
            data = np.load(cache)
            tracks.append(Track(f"s{index}", data["pcm"], str(data["script"])))
            continue
        voice = voice or Voice()
        parts = [np.zeros(LEAD_MS * SAMPLE_RATE // 1000, np.float32)]
        spoken, total = [], 0.0
        for i, sentence in enumerate(sentences):
            clip = voice.say(sentence, seed=7 + index)
            parts += [clip, np.zeros(PAUSES_MS[i % len(PAUSES_MS)] * SAMPLE_RATE // 1000, np.float32)]
            spoken.append(sentence)
            total += len(clip) / SAMPLE_RATE
            if total >= seconds:
                break
        parts.append(np.zeros(TAIL_MS * SAMPLE_RATE // 1000, np.float32))
        pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2")
        track = Track(f"s{index}", pcm, " ".join(spoken))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, pcm=track.pcm, script=np.array(track.script))
        tracks.append(track)
    return tracks


@dataclass
class SendLog:
    """When each frame of one stream left the client (epoch seconds), so a media time (what an event says
    it covers) maps to the wall time its audio had been sent by."""

    frame_samples: int
    sent_at: list[float] = field(default_factory=list)  # wall time after frame i was handed to the socket
    stream_start_ms: int = 0  # media time of sample 0 (the ingest's ready message)
    first_sample: int = 0

    def sent_by(self, end_sample: int) -> float | None:
        """Wall time by which the stream's audio up to ``end_sample`` had been sent."""
        if not self.sent_at:
            return None
        index = max(0, math.ceil((end_sample - self.first_sample) / self.frame_samples) - 1)
        return self.sent_at[min(index, len(self.sent_at) - 1)]

    def sent_by_media_ms(self, media_ms: int) -> float | None:
        return self.sent_by((media_ms - self.stream_start_ms) * SAMPLE_RATE // 1000)


def speech_frame_ends(pcm: np.ndarray, frame_samples: int, level: int = 328) -> list[int]:
    """End sample of every frame that holds speech (any sample at or above ``level``, 1% of full scale)."""
    ends = []
    for at in range(0, len(pcm), frame_samples):
        if np.abs(pcm[at : at + frame_samples].astype(np.int32)).max() >= level:
            ends.append(min(at + frame_samples, len(pcm)))
    return ends


def coverage_lags(updates: list[tuple[float, int]], sent: SendLog, instants: list[int],
                  tolerance: int = 512) -> tuple[list[float], int]:  # fmt: skip
    """For each audio instant (a stream sample), the time until the first update (arrival wall time, end
    sample it covers) reaching it, minus when the client had sent it. Captures both processing time and the
    wait between updates. Returns the lags and how many instants no update ever reached. ``tolerance``
    (one 32 ms VAD window) forgives ends that stop a few samples short of a frame boundary."""
    import bisect

    arrivals, covered, best = [], [], -1
    for arrived, end in sorted(updates):
        if end > best:
            best = end
            arrivals.append(arrived)
            covered.append(end)
    lags, missed = [], 0
    for t in instants:
        i = bisect.bisect_left(covered, t - tolerance)
        sent_at = sent.sent_by(t)
        if i < len(covered) and sent_at is not None:
            lags.append(arrivals[i] - sent_at)
        else:
            missed += 1
    return lags, missed
