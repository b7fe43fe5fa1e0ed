"""A meeting's utterances and dialogues, as the transcripts topic and the store hold them, per run.

Decided only where the data decides it:

- ``utterances lost``: a final on the transcripts topic that the store does not hold; an utterance a final
  dialogue holds that the store does not; and, once a run is settled (each of its dialogues final and
  placed, and every stream stopped, so the merger has grouped every final it will get), a final of the
  run (on the topic) in none of its dialogues. A run still live is not judged on the last one (a note
  says so).
- ``utterances duplicated``: two utterance ids of one stream and run whose samples overlap (the same audio
  transcribed twice: the segmenter cuts a stream's utterances apart, and an utterance's id hashes its
  stream and first sample, so a re-decode after a crash gets the same id); one utterance in two final
  dialogues of a run. Two rows of one id are not a duplicate: the store is ReplacingMergeTree and reads
  collapse them (FINAL), as at-least-once delivery needs.
- ``dialogues out of order``: the placed dialogues of a run, by position, must be positions 0, 1, 2 ...
  once each, in the order of their start on the media timeline (the merger orders by start).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from palaver.check.report import (
    DIALOGUES_OUT_OF_ORDER,
    UTTERANCES_DUPLICATED,
    UTTERANCES_LOST,
    Finding,
    samples_text,
)
from palaver.events import DecodeError, TranscriptFinalV1, decode


@dataclass(frozen=True)
class UtteranceSeen:
    """A final utterance: from the store, or a ``transcript.final`` on the topic (``where``: its place)."""

    utterance_id: str
    run: str
    stream_id: str
    start_sample: int
    end_sample: int
    where: str = "store"
    sample_rate: int = 16000


@dataclass(frozen=True)
class DialogueSeen:
    """A dialogue's newest revision in the store."""

    dialogue_id: str
    run: str
    start_ms: int
    status: str  # live, final, retracted
    placed: bool
    position: int
    utterance_ids: tuple[str, ...]


@dataclass
class TranscriptVerdict:
    findings: list[Finding]
    notes: list[str]
    checked: dict[str, int]


def check_transcripts(stored: Sequence[UtteranceSeen], on_topic: Sequence[UtteranceSeen] | None,
                      dialogues: Sequence[DialogueSeen], streams_live: bool = False) -> TranscriptVerdict:  # fmt: skip
    """Lost and duplicated utterances and misplaced dialogues (module docstring). ``on_topic``: the finals
    of the transcripts topic (None: not read, so not judged). ``streams_live``: some stream of the meeting
    has not stopped, so more finals may come and no run is settled."""
    findings: list[Finding] = []
    notes: list[str] = []
    in_store = {(u.run, u.utterance_id): u for u in stored}
    known = {**{(u.run, u.utterance_id): u for u in on_topic or ()}, **in_store}
    # What the STT made: the topic's finals (the store's when the topic was not read). A row only the store
    # has and no dialogue holds is a duplicate at most (``_overlapping`` tells), not a loss.
    made = {(u.run, u.utterance_id) for u in on_topic} if on_topic is not None else set(in_store)
    current = [d for d in dialogues if d.status != "retracted"]
    final = [d for d in current if d.status == "final"]
    lost: dict[tuple[str, str], list[str]] = defaultdict(list)  # (run, utterance id) -> why
    for u in on_topic or ():
        if (u.run, u.utterance_id) not in in_store:
            lost[(u.run, u.utterance_id)].append(
                f"final on the transcripts topic ({u.where}), not in the store"
            )
    holders: dict[tuple[str, str], list[str]] = defaultdict(list)  # (run, utterance id) -> final dialogues
    for d in final:
        for uid in d.utterance_ids:
            holders[(d.run, uid)].append(d.dialogue_id)
            if (d.run, uid) not in in_store:
                lost[(d.run, uid)].append(f"final dialogue {d.dialogue_id} holds it, not in the store")
    for run in sorted({u.run for u in known.values()} | {d.run for d in current}):
        waiting = [d for d in current if d.run == run and not (d.status == "final" and d.placed)]
        placed = [d for d in current if d.run == run and d.placed]
        if streams_live or waiting or not placed:
            why = ("a stream has not stopped" if streams_live
                   else f"{len(waiting)} dialogue(s) not final and placed yet" if waiting else "no dialogue yet")  # fmt: skip
            notes.append(f"run {run}: {why}, so finals in no dialogue are not judged (check again once the "
                         "meeting has settled)")  # fmt: skip
            continue
        for key in sorted(k for k in made if k[0] == run and k not in holders):
            lost[key].append("in no dialogue, though every dialogue of the run is final and placed")
    for (run, uid), why in sorted(lost.items()):
        findings.append(Finding(UTTERANCES_LOST, {"run": run, "utterance_id": uid}, "; ".join(why)))
    for (run, uid), held_by in sorted(holders.items()):
        if len(held_by) > 1:
            findings.append(Finding(UTTERANCES_DUPLICATED, {"run": run, "utterance_id": uid},
                                    f"in {len(held_by)} final dialogues: {', '.join(sorted(held_by))}"))  # fmt: skip
    findings.extend(_overlapping(list(known.values())))
    findings.extend(_misplaced([d for d in final if d.placed]))
    checked = {"utterances stored": len(stored), "dialogues": len(current),
               "runs": len({u.run for u in known.values()} | {d.run for d in current})}  # fmt: skip
    if on_topic is not None:
        checked["finals on the transcripts topic"] = len(on_topic)
    return TranscriptVerdict(findings, notes, checked)


def _overlapping(utterances: list[UtteranceSeen]) -> list[Finding]:
    """Two ids of one stream and run whose sample ranges overlap."""
    findings: list[Finding] = []
    by_stream: dict[tuple[str, str], list[UtteranceSeen]] = defaultdict(list)
    for u in utterances:
        by_stream[(u.run, u.stream_id)].append(u)
    for (run, stream), group in sorted(by_stream.items()):
        reach: UtteranceSeen | None = None  # of those before, the one reaching furthest
        for u in sorted(group, key=lambda u: (u.start_sample, u.utterance_id)):
            if reach is not None and u.start_sample < reach.end_sample:
                overlap = (u.start_sample, min(u.end_sample, reach.end_sample))
                findings.append(Finding(UTTERANCES_DUPLICATED, {"run": run, "stream_id": stream,
                                                                "utterance_id": f"{reach.utterance_id},{u.utterance_id}"},
                                        f"both transcribe {samples_text(*overlap, u.sample_rate)} of the stream"))  # fmt: skip
            if reach is None or u.end_sample > reach.end_sample:
                reach = u
    return findings


def _misplaced(placed: list[DialogueSeen]) -> list[Finding]:
    """Placed dialogues whose positions are not 0, 1, 2 ... once each in start order, per run."""
    findings: list[Finding] = []
    by_run: dict[str, list[DialogueSeen]] = defaultdict(list)
    for d in placed:
        by_run[d.run].append(d)
    for run, group in sorted(by_run.items()):
        group.sort(key=lambda d: (d.position, d.start_ms, d.dialogue_id))
        expected = 0
        before: DialogueSeen | None = None
        for d in group:
            if before is not None and d.position == before.position:
                findings.append(Finding(DIALOGUES_OUT_OF_ORDER, {"run": run, "dialogue_id": f"{before.dialogue_id},{d.dialogue_id}"},
                                        f"both placed at position {d.position}"))  # fmt: skip
            elif d.position > expected:
                gap = f"{expected}" if d.position == expected + 1 else f"{expected}-{d.position - 1}"
                findings.append(Finding(DIALOGUES_OUT_OF_ORDER, {"run": run, "dialogue_id": d.dialogue_id},
                                        f"placed at position {d.position}, but no dialogue is placed at position(s) "
                                        f"{gap}"))  # fmt: skip
            if before is not None and d.start_ms < before.start_ms:
                findings.append(Finding(DIALOGUES_OUT_OF_ORDER, {"run": run, "dialogue_id": f"{before.dialogue_id},{d.dialogue_id}"},
                                        f"position {before.position} starts at {before.start_ms} ms, after position "
                                        f"{d.position} at {d.start_ms} ms"))  # fmt: skip
            expected = max(expected, d.position + 1)
            before = d
    return findings


def final_seen(meeting_id: str, value: bytes | None, where: str) -> UtteranceSeen | None:
    """The utterance of a transcripts-topic record when it is a final of ``meeting_id`` (None otherwise:
    another meeting's, another event, or a record that does not decode, which the merger dead-letters)."""
    try:
        event = decode(value or b"")
    except (DecodeError, ValueError):
        return None
    if not isinstance(event, TranscriptFinalV1) or event.meeting_id != meeting_id:
        return None
    return UtteranceSeen(event.utterance_id, event.run, event.stream_id, event.start_sample, event.end_sample, where,
                         event.sample_rate)  # fmt: skip
