"""Dialogue rules, as pure functions. See docs/architecture.md#dialogues.

A dialogue is one speaker's turn: that speaker's consecutive utterances until another speaker starts an
utterance, or a pause longer than ``pause_ms``. Its live text is its finals followed by the open partial.
Dialogues are ordered by start on the meeting's media timeline; overlapping speech gives concurrent
dialogues, each updating.

Finality has two parts. Each stream is *settled* up to a media time before which it will emit no new
utterance (its last final's end, its open partial's start, its progress events, its placement, its stop);
a stream settled past its open partial ended that utterance without a final, so the partial goes.

- A dialogue's *words* are final (``status: final``) once no event that can still come may change its
  utterances: its speaker is settled past the point where a next utterance could still join it, every
  other active speaker is settled past its last utterance's start (nothing can split it any more) unless
  it is one utterance that can join no earlier box of its speaker, and it holds no partial
  (``words_final`` says exactly when). So a box does not wait for the meeting's slowest stream to be past
  its end, only past its last utterance's start; and a quiet speaker's last line waits for its speaker
  alone.
- Its *place* among the others (``position``) is fixed once the meeting's *watermark*, the minimum over
  its active streams, has passed the point where anything could still change it or any dialogue before
  it: the start of the dialogue after it, or its end plus the pause limit (``placed``). Placed dialogues
  are a prefix in media order; they are published one last time (``placed: true``) and dropped from the
  state, so the state holds only the live tail of a meeting and each event costs time proportional to
  that tail. A final dialogue not yet placed stays in the state, and gets a new revision (still final,
  same words) if its position changes before it is placed.

Once a revision is final every later revision of that dialogue is final with the same utterances; and the
final dialogues, their words and positions are the same for every arrival order (property-tested).

Each stream's events arrive in order (one STT worker owns a stream and produces its events in order), so
an event that starts before its stream's settled time is a redelivery, and is ignored. Across streams the
arrival order does not matter: the result depends only on the set of events seen. A stream that joins
(or joins again) after dialogues became final around its placement (its stream.started reached the merger
late, or its client streams faster than real time) has its utterances placed after the placed dialogues,
and an utterance of it that would start inside a final dialogue of another speaker is moved to just after
that dialogue's last utterance starts (``_outside_sealed``): final words never change.

State (JSON-able; it lives in a changelog table, palaver/streams/changelog.py), per meeting::

    {"runs": {run: {"utts": [[start_ms, speaker, utterance_id, end_ms, text, is_partial, stream], ...],
                    "streams": {stream: {speaker, settled, active, floor, stopped_at, partial_uid,
                                         partial_seq}},
                    "emitted": {dialogue_id: [revision, signature, speaker, start_ms, end_ms]},
                    "retracted": {dialogue_id: [revision, "retracted", speaker, start_ms, end_ms]},
                    "sealed": {dialogue_id: [speaker, first_start_ms, first_utterance_id, last_start_ms,
                                             last_utterance_id]},  # final words, not yet placed
                    "final_count": n, "watermark": ms}}}
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

from palaver import ids
from palaver.events import (
    DialogueUpdateV1,
    DialogueUtterance,
    MeetingWatermarkV1,
    StreamProgressV1,
    StreamStartedV1,
    StreamStoppedV1,
    TranscriptFinalV1,
    TranscriptPartialV1,
)
from palaver.events.base import EventV

MeetingState = dict[str, Any]
RunState = dict[str, Any]
NO_WATERMARK = -1
ALL_STOPPED = 2**62

# Positions in an utterance entry of ``utts``.
START, SPEAKER, UID, END, TEXT, PARTIAL, STREAM = range(7)


class Dialogue(NamedTuple):  # a tuple: built for every dialogue of the live tail on every event
    dialogue_id: str
    speaker_id: str
    start_ms: int
    end_ms: int
    text: str
    utterance_ids: tuple[str, ...]
    threshold_ms: int  # the watermark must pass this for the dialogue to be final
    # Its utterance entries of ``utts`` (the state's own lists, not copies: read them, never change them).
    members: list[list[Any]]


def new_state() -> MeetingState:
    return {"runs": {}}


def _new_run() -> RunState:
    return {"utts": [], "streams": {}, "emitted": {}, "retracted": {}, "sealed": {}, "final_count": 0,
            "watermark": NO_WATERMARK}


def group(meeting_id: str, utts: list[list[Any]], pause_ms: int) -> list[Dialogue]:
    """Group sorted utterance entries into dialogues (the dialogue rule), in order."""
    # Runs on every event over the meeting's live tail: plain loops and tuples, no per-entry calls.
    groups: list[tuple[list[list[Any]], int]] = []  # (utterances, their latest end)
    members: list[list[Any]] = []
    speaker, end = None, 0
    for u in utts:
        if members and u[SPEAKER] == speaker and u[START] - end <= pause_ms:
            members.append(u)
            if u[END] > end:
                end = u[END]
        else:
            if members:
                groups.append((members, end))
            members, speaker, end = [u], u[SPEAKER], u[END]
    if members:
        groups.append((members, end))
    dialogues = []
    last = len(groups) - 1
    for index, (g, end) in enumerate(groups):
        next_start = groups[index + 1][0][0][START] if index < last else ALL_STOPPED
        first = g[0]
        if len(g) == 1:
            text, utterance_ids = first[TEXT].strip(), (first[UID],)
        else:
            text = " ".join(t for t in (x[TEXT].strip() for x in g) if t)
            utterance_ids = tuple(x[UID] for x in g)
        dialogues.append(Dialogue(ids.dialogue_id(meeting_id, first[UID]), first[SPEAKER], first[START], end, text,
                                  utterance_ids, min(next_start, end + pause_ms), g))  # fmt: skip
    return dialogues


def watermark(run: RunState) -> int:
    active = [stream["settled"] for stream in run["streams"].values() if stream["active"]]
    if active:
        return min(active)
    return ALL_STOPPED if run["streams"] else NO_WATERMARK


def _signature(d: Dialogue, status: str, placed: bool, position: int) -> str:
    """What a reader sees of a dialogue revision: a new revision is published when it changes. Kept whole,
    not hashed: it is compared on every event, and the state holds only the live tail.

    A live dialogue's: its status and each utterance as the event carries it (id, start, end, final or
    partial, stripped text); the dialogue's start, end and text derive from those, so they need no place
    of their own. A partial that becomes final with the same words and times is a change (the reader draws
    it settled). Its position is not: it changes with every box before it, and the box is drawn by its
    start. A final dialogue's words no longer change (``words_final``), its place among the others may
    until the watermark passes it, and a reader that resumes by position must be told: its signature is its
    position and whether it is placed (and, being short, final dialogues waiting to be placed cost little).
    A state saved with another format of this gives each of its live dialogues one extra revision with the
    same content, once: harmless, readers keep the highest revision."""
    if status == "final":
        return f"final@{position}{'+' if placed else ''}"
    return status + "".join([f"|{u[UID]},{u[START]},{u[END]},{'p' if u[PARTIAL] else 'f'},{u[TEXT].strip()}"
                             for u in d.members])  # fmt: skip


class SettledBounds(NamedTuple):
    """What the meeting's streams promise, per speaker, for one event: ``own[speaker]``, the media time
    before which none of the speaker's streams will start an utterance (the lowest ``settled`` of them,
    stopped ones included: a stopped stream's next session starts after its audio); and over the active
    streams, the lowest settled time (``low``, of ``low_speaker``) and the lowest of any other speaker
    (``second``), so that the lowest of the speakers other than one is found at once."""

    own: dict[str, int]
    low_speaker: str | None
    low: int
    second: int

    def others(self, speaker: str) -> int:
        """The lowest settled time of the active streams of speakers other than ``speaker``."""
        return self.second if speaker == self.low_speaker else self.low


def settled_bounds(streams: dict[str, dict[str, Any]]) -> SettledBounds:
    own: dict[str, int] = {}
    low_speaker, low, second = None, ALL_STOPPED, ALL_STOPPED
    for stream in streams.values():  # one pass: this runs on every event
        speaker, settled = stream["speaker"], stream["settled"]
        if settled < own.get(speaker, ALL_STOPPED):
            own[speaker] = settled
        if not stream["active"]:
            continue
        if speaker == low_speaker:
            low = min(low, settled)
        elif settled < low:  # the old lowest is another speaker's: the lowest of any but the new one's
            low_speaker, low, second = speaker, settled, low
        elif settled < second:
            second = settled
    return SettledBounds(own, low_speaker, low, second)


def words_final(d: Dialogue, utts: list[list[Any]], first: int, settled: SettledBounds, pause_ms: int) -> bool:
    """Whether no event that can still come may change the dialogue's utterances (hence its id, text,
    start and end), its place among the others aside. ``first``: the index of its first utterance in the
    sorted ``utts`` it was grouped from. Holds, for every arrival order, once both of these hold:

    - its speaker's next utterance cannot join it: the speaker's first utterance after it, or failing one
      the speaker's settled time (its next utterance starts no earlier: a stream's events arrive in
      order), lies more than the pause past its end, or past another speaker's final after its last
      utterance (a final stays; a partial in between may be dropped, so it does not count). This also
      keeps out a dialogue that ends with its speaker's open partial, whose words may still change: the
      speaker is settled at the partial's start. Once this holds the speaker is settled past its last
      utterance's start, so no utterance of the speaker can still come before it either;
    - no other speaker can still change it, for either of two reasons. Every other speaker's active stream
      is settled past its last utterance's start, so no utterance of theirs can still start among its
      utterances (splitting it) or before it, and none of their partials lies before it (an open partial
      sits at its stream's settled time: ``_fold`` drops one that its stream passed without a final), whose
      going could join it to an earlier box. Or, needing nothing of the others (``_stands_alone``): it is
      one utterance, which nothing can split, and every earlier utterance of its speaker ended more than
      the pause before it starts, so it can join no earlier box whatever comes between them or goes.
      That is the box of a speaker who says a line and falls quiet while the others talk on: it is final
      once its speaker is past the pause (or another speaker's final), however long their sentences are.

    A stream that is not active yet (it starts, or starts again, after this) is not covered: its
    utterances are kept out of final dialogues by ``_outside_sealed``. Costs O(1) plus the partials right
    after it (at most one per other stream), and for a one-utterance dialogue that the others do not let
    go yet, its speaker's earlier utterances in the live tail."""
    members = d.members
    speaker = d.speaker_id
    others_past = settled.others(speaker) > members[-1][START]
    if not others_past and len(members) > 1:
        return False
    if not _speaker_past(d, utts, first + len(members), settled.own.get(speaker, ALL_STOPPED), pause_ms):
        return False
    return others_past or _stands_alone(utts, first, speaker, members[0][START], pause_ms)


def _speaker_past(d: Dialogue, utts: list[list[Any]], after: int, own: int, pause_ms: int) -> bool:
    """Whether the speaker's next utterance can no longer join ``d`` (``words_final``, first condition);
    ``after``: the index in ``utts`` just past its utterances; ``own``: the speaker's settled time."""
    speaker, end = d.speaker_id, d.end_ms
    for j in range(after, len(utts)):
        u = utts[j]
        if u[SPEAKER] == speaker:
            return min(u[START], own) - end > pause_ms
        if not u[PARTIAL]:
            return own > min(end + pause_ms, u[START])
    return own - end > pause_ms


def _stands_alone(utts: list[list[Any]], first: int, speaker: str, start: int, pause_ms: int) -> bool:
    """Whether every utterance of ``speaker`` before index ``first`` of ``utts`` ended more than the pause
    before ``start``: an utterance there can then join none of them (the dialogue rule), whatever other
    speakers' utterances come between or go."""
    for j in range(first - 1, -1, -1):
        u = utts[j]
        if u[SPEAKER] == speaker and start - u[END] <= pause_ms:
            return False
    return True


def _outside_sealed(sealed: dict[str, list[Any]], speaker: str, uid: str, start: int) -> int:
    """Where an utterance starting at ``start`` goes among dialogues whose words are final: its own start,
    unless that falls inside one of another speaker's (between its first and last utterance), which only
    an utterance of a stream that was not active when the dialogue became final can do (``words_final``);
    then just after that dialogue's last utterance starts, so final words never change (possibly again,
    after another such dialogue). Sealed entries: [speaker, first start, first id, last start, last id]."""
    moved = True
    while moved:
        moved = False
        for other, first_start, first_uid, last_start, last_uid in sealed.values():
            # Runs per transcript event while final dialogues wait to be placed: integers first.
            if first_start <= start <= last_start and other != speaker and (
                (first_start, other, first_uid) < (start, speaker, uid) < (last_start, other, last_uid)
            ):
                start, moved = last_start + 1, True
    return start


def _stream(run: RunState, stream: str, speaker: str, floor_ms: int) -> dict[str, Any]:
    return run["streams"].setdefault(  # type: ignore[no-any-return]
        stream,
        {"speaker": speaker, "settled": floor_ms, "active": True, "floor": floor_ms, "stopped_at": -1,
         "partial_uid": None, "partial_seq": -1},
    )  # fmt: skip


def _settle(run: RunState, stream: str, speaker: str, at_ms: int) -> None:
    entry = _stream(run, stream, speaker, at_ms)
    entry["settled"] = max(entry["settled"], at_ms)


def _insert(run: RunState, entry: list[Any]) -> None:
    """Put an utterance entry in order, replacing the stream's open partial (the final or the next
    partial of the same utterance supersedes it)."""
    utts = [
        u for u in run["utts"] if not (u[PARTIAL] and u[STREAM] == entry[STREAM]) and u[UID] != entry[UID]
    ]
    utts.append(entry)
    utts.sort(key=lambda u: (u[START], u[SPEAKER], u[UID]))
    run["utts"] = utts


def _fold(run: RunState, event: EventV) -> bool:
    """Apply one event to a run's state (mutating the copy). Returns False when it is a duplicate."""
    if isinstance(event, TranscriptFinalV1 | TranscriptPartialV1):
        known = run["streams"].get(event.stream_id)
        if known is not None and event.start_ms < known["settled"]:
            return False  # the stream is settled past it: a redelivery
        partial = isinstance(event, TranscriptPartialV1)
        stream = _stream(run, event.stream_id, event.speaker_id, event.start_ms)
        if isinstance(event, TranscriptPartialV1):
            if stream["partial_uid"] == event.utterance_id and event.sequence <= stream["partial_seq"]:
                return False  # an older hypothesis of the open utterance
            stream["partial_uid"], stream["partial_seq"] = event.utterance_id, event.sequence
        else:
            stream["partial_uid"], stream["partial_seq"] = None, -1
        start = event.start_ms
        if run["sealed"]:
            start = _outside_sealed(run["sealed"], event.speaker_id, event.utterance_id, start)
        entry = [start, event.speaker_id, event.utterance_id, max(event.end_ms, start), event.text, partial,
                 event.stream_id]  # fmt: skip
        _insert(run, entry)
        _settle(run, event.stream_id, event.speaker_id, event.start_ms if partial else event.end_ms)
    elif isinstance(event, StreamProgressV1):
        _settle(run, event.stream_id, event.speaker_id, event.settled_ms)
        stream = run["streams"][event.stream_id]
        if stream["partial_uid"] is not None:
            # A stream is settled at its open utterance's start at most: one settled past its partial ended
            # that utterance without a final (nothing was said), so the partial goes, as at the stream's stop.
            kept = [u for u in run["utts"] if not (u[PARTIAL] and u[STREAM] == event.stream_id
                                                    and u[START] < stream["settled"])]  # fmt: skip
            if len(kept) < len(run["utts"]):
                run["utts"] = kept
                stream["partial_uid"], stream["partial_seq"] = None, -1
    elif isinstance(event, StreamStartedV1):
        # Each session of a stream starts after the start of every earlier one, so a start while active, or
        # before the last session's, is a redelivery. A resumed session may start before the last one's
        # stop: the client resumes at its last ack, and the server had durable audio past it. That audio
        # is transcribed already (the STT worker skips it), so the session counts from the stop.
        begins = event.stream_start_ms + event.first_sample * 1000 // event.sample_rate
        stream = run["streams"].get(event.stream_id)
        if stream is not None and (
            stream["active"]
            or begins < stream.get("session_start", stream["floor"])
            or event.event_id == stream.get("started_id")
        ):
            return False
        stream = _stream(run, event.stream_id, event.speaker_id, begins)
        floor = max(begins, stream["stopped_at"])
        stream["active"], stream["floor"], stream["session_start"] = True, floor, begins
        stream["started_id"] = event.event_id
        _settle(run, event.stream_id, event.speaker_id, floor)
    elif isinstance(event, StreamStoppedV1):
        stream = _stream(run, event.stream_id, event.speaker_id, event.stream_start_ms)
        if not stream["active"]:
            return False
        stream["active"], stream["partial_uid"], stream["partial_seq"] = False, None, -1
        stream["stopped_at"] = max(
            stream["floor"], event.stream_start_ms + event.end_sample * 1000 // event.sample_rate
        )
        # Its session's last events came before its stop, and a next session starts after its audio.
        stream["settled"] = max(stream["settled"], stream["stopped_at"])
        # A partial that never got its final (the engine dropped it) ends with its stream.
        run["utts"] = [u for u in run["utts"] if not (u[PARTIAL] and u[STREAM] == event.stream_id)]
    return True


def apply(
    meeting_id: str, state: MeetingState, event: EventV, pause_ms: int
) -> tuple[MeetingState, list[DialogueUpdateV1 | MeetingWatermarkV1]]:
    """Fold one transcripts-topic event into the meeting's state. Returns the new state (``state`` itself
    when nothing changed) and the events to publish: new or changed dialogues (``live`` or ``final``,
    ``placed`` or not), retractions, and a watermark event when dialogues were placed. Does not mutate
    ``state``."""
    run_id = getattr(event, "run", None)
    runs = state["runs"]
    targets = [run_id] if run_id is not None else list(runs)
    if not targets:
        return state, []
    new_runs = dict(runs)
    out: list[DialogueUpdateV1 | MeetingWatermarkV1] = []
    changed = False
    for target in targets:
        run = _copy_run(runs.get(target) or _new_run())
        if not _fold(run, event):
            continue
        changed = True
        out.extend(_publish(meeting_id, target, run, pause_ms))
        new_runs[target] = run
    if not changed:
        return state, []
    return {**state, "runs": new_runs}, out


def _copy_run(run: RunState) -> RunState:
    return {
        "utts": list(run["utts"]),
        "streams": {k: dict(v) for k, v in run["streams"].items()},
        "emitted": dict(run["emitted"]),
        "retracted": dict(run.get("retracted", {})),  # states saved before it existed have none
        "sealed": dict(run.get("sealed", {})),
        "final_count": run["final_count"],
        "watermark": run["watermark"],
    }


def _publish(
    meeting_id: str, run_id: str, run: RunState, pause_ms: int
) -> list[DialogueUpdateV1 | MeetingWatermarkV1]:
    mark = max(run["watermark"], watermark(run))
    run["watermark"] = mark
    utts = run["utts"]
    dialogues = group(meeting_id, utts, pause_ms)
    final_prefix = 0
    while final_prefix < len(dialogues) and mark > dialogues[final_prefix].threshold_ms:
        # The watermark passes a partial only when its stream joined late (the watermark never goes back):
        # its box waits for the final, so that placed words are finals.
        if any(u[PARTIAL] for u in dialogues[final_prefix].members):
            break
        final_prefix += 1
    out: list[DialogueUpdateV1 | MeetingWatermarkV1] = []
    emitted, retracted, sealed = run["emitted"], run["retracted"], run["sealed"]
    settled: SettledBounds | None = None  # computed once per event, when a dialogue first needs it
    first = 0  # index in ``utts`` of the dialogue's first utterance (a dialogue's utterances are adjacent)
    for index, d in enumerate(dialogues):
        placed = index < final_prefix
        if placed or d.dialogue_id in sealed:
            status = "final"
        else:
            settled = settled or settled_bounds(run["streams"])
            status = "final" if words_final(d, utts, first, settled, pause_ms) else "live"
            if status == "final":
                last = d.members[-1]
                sealed[d.dialogue_id] = [d.speaker_id, d.start_ms, d.members[0][UID], last[START], last[UID]]
        first += len(d.members)
        position = run["final_count"] + index
        signature = _signature(d, status, placed, position)
        known = emitted.get(d.dialogue_id)
        if known is None and retracted:
            known = retracted.pop(d.dialogue_id, None)  # back after a retraction: its revisions go on
        if known is None or known[1] != signature:
            revision = known[0] + 1 if known is not None else 1
            emitted[d.dialogue_id] = [revision, signature, d.speaker_id, d.start_ms, d.end_ms]
            out.append(_update(meeting_id, run_id, d, status, placed, revision, position))
    if len(emitted) > len(dialogues):  # some emitted dialogue is gone: regrouped into others
        present = {d.dialogue_id for d in dialogues}
        for dialogue_id, (revision, _, speaker, start, end) in list(emitted.items()):
            if dialogue_id not in present:
                del emitted[dialogue_id]
                sealed.pop(dialogue_id, None)  # never one: words_final's contract (property-tested)
                # Its first utterance may begin a dialogue again (a partial between it and the one before
                # goes, then another speaker's utterance comes between them).
                retracted[dialogue_id] = [revision + 1, "retracted", speaker, start, end]
                out.append(_retraction(meeting_id, run_id, dialogue_id, revision + 1, speaker, start, end))
    if final_prefix:
        for d in dialogues[:final_prefix]:
            del emitted[d.dialogue_id]
            sealed.pop(d.dialogue_id, None)
        del utts[: sum(len(d.members) for d in dialogues[:final_prefix])]  # they lead ``utts``
        if retracted:  # one whose first utterance went can never begin a dialogue again
            first_start = utts[0][START] if utts else ALL_STOPPED
            for dialogue_id in [k for k, v in retracted.items() if v[3] < first_start]:
                del retracted[dialogue_id]
        run["final_count"] += final_prefix
        out.append(
            MeetingWatermarkV1(
                event_id=ids.event_id("meeting.watermark", meeting_id, run_id, run["final_count"]),
                meeting_id=meeting_id,
                run=run_id,
                watermark_ms=mark,
                final_dialogues=run["final_count"],
            )
        )
    return out


Update = DialogueUpdateV1 | MeetingWatermarkV1
T = TypeVar("T")


def conflate(updates: list[tuple[Update, T]]) -> list[tuple[Update, T]]:
    """Keep only the newest revision of each dialogue, and the newest watermark of each meeting run, from
    the updates of one batch (each with a tag, such as its provenance), each at its last occurrence's place.

    A live box shows its newest text; intermediate revisions that nobody could have seen yet (they were
    produced in the same few milliseconds) are dropped, as market-data feeds conflate quotes. Revisions
    are numbered per event by ``apply``, not per batch, so a revision always has the same content and a
    replay with other batch boundaries sends a subset of the same events: deduplication still holds.
    Keeping the last occurrence's place keeps causal order (a dialogue's final before the watermark that
    made it final)."""
    newest: dict[tuple[str, str, str], tuple[Update, T]] = {}
    for item in updates:
        update = item[0]
        if isinstance(update, DialogueUpdateV1):
            key = ("d", update.dialogue_id, update.run)
        else:
            key = ("w", update.meeting_id, update.run)
        newest.pop(key, None)
        newest[key] = item
    return list(newest.values())


def _update(
    meeting_id: str, run_id: str, d: Dialogue, status: str, placed: bool, revision: int, position: int
) -> DialogueUpdateV1:
    return DialogueUpdateV1(
        event_id=ids.event_id("dialogue.update", d.dialogue_id, run_id, revision),
        dialogue_id=d.dialogue_id,
        meeting_id=meeting_id,
        speaker_id=d.speaker_id,
        start_ms=d.start_ms,
        end_ms=d.end_ms,
        text=d.text,
        status=status,  # type: ignore[arg-type]
        revision=revision,
        position=position,
        placed=placed,
        utterance_ids=d.utterance_ids,
        run=run_id,
        # Built unvalidated: every value comes from a validated transcript event (this runs per revision).
        utterances=tuple([
            DialogueUtterance.model_construct(utterance_id=u[UID], start_ms=u[START], end_ms=u[END],
                                              text=u[TEXT].strip(), final=not u[PARTIAL])
            for u in d.members
        ]),
    )


def _retraction(meeting_id: str, run_id: str, dialogue_id: str, revision: int, speaker: str, start: int,
                end: int) -> DialogueUpdateV1:  # fmt: skip
    """A dialogue that a late event regrouped into others: readers drop it."""
    return DialogueUpdateV1(
        event_id=ids.event_id("dialogue.update", dialogue_id, run_id, revision),
        dialogue_id=dialogue_id,
        meeting_id=meeting_id,
        speaker_id=speaker,
        start_ms=start,
        end_ms=end,
        text="",
        status="retracted",
        revision=revision,
        position=0,
        placed=False,
        utterance_ids=(),
        run=run_id,
    )
