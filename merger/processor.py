"""Dialogue rules, as pure functions. See docs/architecture.md#dialogues.

A dialogue is one speaker's turn: that speaker's consecutive utterances until another speaker starts an
utterance, or a pause longer than ``pause_ms``. Dialogues are ordered by start on the meeting's media
timeline; overlapping speech gives concurrent dialogues. The output depends only on the *set* of
utterances seen, never on their arrival order, so duplicates and late events converge.

Meeting state is a JSON-able dict (it lives in a faust table):
``{"utterances": {"run|utterance_id": [speaker, start_ms, end_ms, text, run]}, "stopped": [speaker...],
   "emitted": {"run|dialogue_id": [revision, fingerprint, speaker, start_ms, end_ms, run]}}``
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from palaver import ids
from palaver.events import DialogueUpdateV1, StreamStartedV1, StreamStoppedV1, TranscriptFinalV1
from palaver.events.base import EventV

MeetingState = dict[str, Any]


@dataclass(frozen=True)
class Utterance:
    utterance_id: str
    speaker_id: str
    start_ms: int
    end_ms: int
    text: str
    run: str


@dataclass(frozen=True)
class Dialogue:
    dialogue_id: str
    speaker_id: str
    start_ms: int
    end_ms: int
    text: str
    status: str
    utterance_ids: tuple[str, ...]
    run: str


def new_state() -> MeetingState:
    return {"utterances": {}, "stopped": [], "emitted": {}}


def _sort_key(u: Utterance) -> tuple[int, str, str]:
    return (u.start_ms, u.speaker_id, u.utterance_id)


def build_dialogues(
    meeting_id: str, utterances: list[Utterance], pause_ms: int, stopped_speakers: set[str] = frozenset()  # type: ignore[assignment]
) -> list[Dialogue]:
    """Group utterances into dialogues, ordered by start (then speaker, then id, for a total order)."""
    ordered = sorted(utterances, key=_sort_key)
    groups: list[list[Utterance]] = []
    open_group: dict[str, int] = {}  # speaker -> index of the group their next utterance may join
    last_starter: str | None = None
    for u in ordered:
        index = open_group.get(u.speaker_id)
        joins = (
            index is not None
            and last_starter == u.speaker_id
            and u.start_ms - max(x.end_ms for x in groups[index]) <= pause_ms
        )
        if joins:
            groups[index].append(u)  # type: ignore[index]
        else:
            open_group[u.speaker_id] = len(groups)
            groups.append([u])
        last_starter = u.speaker_id
    # A group is final when its speaker can no longer add to it: another speaker started after its last
    # utterance, the speaker has a later dialogue, or the speaker's stream stopped.
    last_key: dict[str, tuple[int, str, str]] = {}
    for u in ordered:
        last_key[u.speaker_id] = _sort_key(u)
    dialogues = []
    for index, group in enumerate(groups):
        speaker = group[0].speaker_id
        closed = (
            open_group[speaker] != index
            or speaker in stopped_speakers
            or any(key > _sort_key(group[-1]) for other, key in last_key.items() if other != speaker)
        )
        dialogues.append(
            Dialogue(
                dialogue_id=ids.dialogue_id(meeting_id, group[0].utterance_id),
                speaker_id=speaker,
                start_ms=group[0].start_ms,
                end_ms=max(u.end_ms for u in group),
                text=" ".join(u.text.strip() for u in group if u.text.strip()),
                status="final" if closed else "live",
                utterance_ids=tuple(u.utterance_id for u in group),
                run=group[0].run,
            )
        )
    return dialogues


def _fingerprint(d: Dialogue) -> str:
    raw = f"{d.status}|{d.start_ms}|{d.end_ms}|{d.text}|{','.join(d.utterance_ids)}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def apply(meeting_id: str, state: MeetingState, event: EventV, pause_ms: int) -> tuple[MeetingState, list[DialogueUpdateV1]]:
    """Fold one transcript-topic event into the meeting's state; return the new state and the dialogue
    events to publish (new or changed dialogues, and retractions). Does not mutate ``state``."""
    utterances = dict(state["utterances"])
    stopped = list(state["stopped"])
    if isinstance(event, TranscriptFinalV1):
        utterances[_key(event.run, event.utterance_id)] = [event.speaker_id, event.start_ms, event.end_ms, event.text, event.run]
    elif isinstance(event, StreamStoppedV1):
        if event.speaker_id not in stopped:
            stopped.append(event.speaker_id)
    elif isinstance(event, StreamStartedV1):
        if event.speaker_id in stopped:
            stopped.remove(event.speaker_id)  # a reconnect reopens the speaker's last dialogue
    else:
        return state, []
    # Each run (engine:model) has its own dialogues: a reprocessed meeting sits beside the original.
    by_run: dict[str, list[Utterance]] = defaultdict(list)
    for key, fields in utterances.items():
        by_run[fields[4]].append(Utterance(key.partition("|")[2], *fields))
    emitted = dict(state["emitted"])
    updates: list[DialogueUpdateV1] = []
    live_keys = set()
    for run in sorted(by_run):
        for position, d in enumerate(build_dialogues(meeting_id, by_run[run], pause_ms, set(stopped))):
            key = _key(run, d.dialogue_id)
            live_keys.add(key)
            fingerprint = _fingerprint(d)
            previous = emitted.get(key)
            if previous and previous[1] == fingerprint:
                continue
            revision = previous[0] + 1 if previous else 1
            emitted[key] = [revision, fingerprint, d.speaker_id, d.start_ms, d.end_ms, d.run]
            updates.append(_update(meeting_id, d.dialogue_id, d.speaker_id, d.start_ms, d.end_ms, d.text, d.status,
                                   revision, position, d.utterance_ids, d.run))  # fmt: skip
    for key, (revision, fingerprint, speaker, start, end, run) in list(emitted.items()):
        if key not in live_keys and fingerprint != "retracted":
            emitted[key] = [revision + 1, "retracted", speaker, start, end, run]
            dialogue_id = key.partition("|")[2]
            updates.append(_update(meeting_id, dialogue_id, speaker, start, end, "", "retracted", revision + 1, -1, (), run))
    return {"utterances": utterances, "stopped": stopped, "emitted": emitted}, updates


def _key(run: str, entity_id: str) -> str:
    return f"{run}|{entity_id}"


def _update(meeting_id: str, dialogue_id: str, speaker: str, start: int, end: int, text: str, status: str,
            revision: int, position: int, utterance_ids: tuple[str, ...], run: str) -> DialogueUpdateV1:  # fmt: skip
    return DialogueUpdateV1(
        event_id=ids.event_id("dialogue.update", dialogue_id, run, revision),
        dialogue_id=dialogue_id,
        meeting_id=meeting_id,
        speaker_id=speaker,
        start_ms=start,
        end_ms=end,
        text=text,
        status=status,  # type: ignore[arg-type]
        revision=revision,
        position=max(position, 0),
        utterance_ids=utterance_ids,
        run=run,
    )
