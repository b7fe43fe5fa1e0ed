"""``palaver replay --from transcripts``: merge a run's stored transcript events again, with other merger
settings, into a run of its own.

The transcripts topic keeps every transcript event (retention: forever). A replay from it reads the
meeting's partition of that topic (records keyed by meeting: ``meeting_partition``) from its oldest record
to its end as it is now, keeps the events of the meeting's source run (the first live run on the topic
unless one is named), renames their run to the replay's (``palaver.runs.merge_run``), and folds them, in
log order, with the merger's own pure ``apply`` and the replay's settings (``--set merger_pause_ms=...``).
Nothing is transcribed again. It publishes the newest revision of each dialogue and the last watermark
(``conflate`` over the whole replay) to the dialogues topic, in the meeting's partition as the merger does;
the store writer stores them beside the other runs.

Replaying the same thing twice changes nothing: the same events in the same order fold into the same
revisions, with the same ids (``dialogue_id`` hashes the meeting and first utterance, the event id the
dialogue, run and revision); and the replay first reads the run's events already on the dialogues topic
and publishes only those not there yet, so a second identical replay publishes nothing and an interrupted
one is completed by the next.

Live meetings are left alone: the replay reads without a consumer group (nothing committed, the merger's
group never sees it), merges in its own process, and writes only its own run, which the running merger
never touches (it sees no transcript event of that run), which the enrichment service leaves out (a
replay run) and which the live socket and the read routes' default leave out. A live meeting's source run
is merged up to now: its dialogues not final yet wait for a later replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition
from pydantic import ValidationError

from merger.processor import Update, apply, conflate, new_state
from palaver.events import DialogueUpdateV1, decode_on, encode
from palaver.events.base import EventV
from palaver.events.codec import DecodeError
from palaver.events.registry import DIALOGUES, TRANSCRIPTS, TopicSpec, meeting_partition, topic_name
from palaver.runs import is_replay
from palaver.settings import Settings
from palaver.streams.clients import make_consumer, make_producer, send_batched

# The merger's settings that decide a run's dialogues: what --set takes with --from transcripts.
MERGER_SETTINGS = ("merger_pause_ms",)
READ_MAX_RECORDS = 2000

Progress = Callable[[int, int], None]  # (records read, records to read)


class MergeReplayError(ValueError):
    """A ``--set`` a replay from the transcripts cannot take, or a source run the meeting does not have;
    the message says why."""


class NoRuns(MergeReplayError):
    """The meeting has no events of any run on the topic: nothing to replay (a backfill skips it)."""


@dataclass(frozen=True)
class MergeOutcome:
    meeting_id: str
    source_run: str
    run: str
    events: int  # the source run's transcript events merged
    published: int  # dialogue and watermark events sent (0: the run was complete already)
    dialogues: int  # the run's dialogues, not retracted
    final: int  # of which final
    undecodable: int  # records of the meeting's partition passed over (the live merger dead-letters them)
    elapsed_s: float


def merge_overrides(base: Settings, sets: Mapping[str, str]) -> tuple[Settings, dict[str, object]]:
    """The settings a replay from the transcripts merges with (``base`` with the ``--set`` overrides) and the
    overrides, typed (they name the run). Raises MergeReplayError for a setting it does not take or a value
    that does not validate."""
    for key in sets:
        if key not in MERGER_SETTINGS:
            why = ("it decides the transcription: replay the audio (--from audio)" if key in Settings.model_fields
                   else "no such setting")  # fmt: skip
            raise MergeReplayError(f"--set {key}: {why}; a replay from the transcripts takes "
                                   f"{', '.join(MERGER_SETTINGS)}")  # fmt: skip
    try:
        settings = Settings.model_validate({**base.model_dump(exclude_unset=True), **sets})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        raise MergeReplayError(f"--set: {problems}") from None
    return settings, {key: getattr(settings, key) for key in sorted(sets)}


def source_run(runs_seen: Sequence[str], wanted: str | None, kind: str = "transcript", topic: str = "transcripts") -> str:
    """The run to replay: ``wanted``, or the first live run in log order. Raises MergeReplayError when the
    meeting has no such run on the topic (``kind``: what its events are, for the message)."""
    known = ", ".join(dict.fromkeys(runs_seen)) or "none"
    if not runs_seen:
        raise NoRuns(f"no {kind} event on the {topic} topic: nothing to replay")
    if wanted is not None:
        if wanted not in runs_seen:
            raise MergeReplayError(f"no {kind} event of run {wanted!r} on the {topic} topic (its runs: {known})")
        return wanted
    live = [run for run in runs_seen if not is_replay(run)]
    if not live:
        raise MergeReplayError(f"no live run's {kind} events on the {topic} topic (its runs: {known}); "
                               "name one with --run")  # fmt: skip
    return live[0]


def remerge(meeting_id: str, events: Iterable[EventV], run: str, pause_ms: int) -> list[Update]:
    """The source run's transcript events (in log order) folded into ``run`` with ``pause_ms``: the newest
    revision of each dialogue and the last watermark, in causal order. Pure: the same events give the same
    updates."""
    state = new_state()
    updates: list[tuple[Update, None]] = []
    for event in events:
        state, made = apply(meeting_id, state, event.model_copy(update={"run": run}), pause_ms)
        updates.extend((update, None) for update in made)
    return [update for update, _ in conflate(updates)]


def not_published(updates: Sequence[Update], published_ids: set[str]) -> list[Update]:
    """The updates whose event is not on the dialogues topic yet."""
    return [update for update in updates if update.event_id not in published_ids]


async def read_partition(settings: Settings, spec: TopicSpec, meeting_id: str,
                         progress: Progress | None = None) -> tuple[list[bytes], int]:  # fmt: skip
    """The values of the meeting's records (key: the meeting id) in its partition of ``spec``, oldest first,
    up to the partition's end as it is now."""
    topic = topic_name(settings.topic_namespace, spec.name)
    tp = TopicPartition(topic, meeting_partition(meeting_id, spec.partitions))
    key = meeting_id.encode()
    consumer = make_consumer(settings, None)
    await consumer.start()
    values: list[bytes] = []
    try:
        consumer.assign([tp])
        start, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, start)
        position = start
        while position < end:
            for record in (await consumer.getmany(tp, timeout_ms=500, max_records=READ_MAX_RECORDS)).get(tp, []):
                if record.offset < end and record.key == key and record.value is not None:
                    values.append(record.value)
            position = await consumer.position(tp)
            if progress is not None:
                progress(min(position, end) - start, end - start)
    finally:
        await consumer.stop()
    return values, end - start


def meeting_events(meeting_id: str, values: Iterable[bytes]) -> tuple[list[EventV], int]:
    """The meeting's transcript events that decode, in order, and how many records did not."""
    events: list[EventV] = []
    bad = 0
    for value in values:
        try:
            event = decode_on(TRANSCRIPTS, value)
        except DecodeError:  # a bad record: the live merger dead-lettered it, the replay passes over it too
            bad += 1
            continue
        if getattr(event, "meeting_id", None) == meeting_id and getattr(event, "run", None):
            events.append(event)
    return events, bad


def published_event_ids(values: Iterable[bytes], run: str) -> set[str]:
    """The ids of ``run``'s events among the dialogues topic's records ``values`` (bad records passed over)."""
    found: set[str] = set()
    for value in values:
        try:
            event = decode_on(DIALOGUES, value)
        except DecodeError:  # not ours to judge here: the store writer dead-letters it
            continue
        if getattr(event, "run", None) == run:
            found.add(event.event_id)  # type: ignore[attr-defined]
    return found


async def merge_again(settings: Settings, meeting_id: str, wanted_run: str | None, run_of: Callable[[str], str],
                      progress: Progress | None = None) -> MergeOutcome:  # fmt: skip
    """Merge the meeting's source run (``wanted_run``, else its first live run) again with ``settings``'
    merger settings into ``run_of(source run)``, publishing what the dialogues topic lacks of it."""
    started = time.monotonic()
    values, _ = await read_partition(settings, TRANSCRIPTS, meeting_id, progress)
    events, bad = meeting_events(meeting_id, values)
    source = source_run([e.run for e in events], wanted_run)  # type: ignore[attr-defined]
    run = run_of(source)
    updates = remerge(meeting_id, [e for e in events if e.run == source], run, settings.merger_pause_ms)  # type: ignore[attr-defined]
    on_topic, _ = await read_partition(settings, DIALOGUES, meeting_id)
    published_ids = published_event_ids(on_topic, run)
    sending = not_published(updates, published_ids)
    if sending:
        producer = make_producer(settings)
        await producer.start()
        try:
            topic = topic_name(settings.topic_namespace, DIALOGUES.name)
            partition = meeting_partition(meeting_id, DIALOGUES.partitions)
            messages = [(partition, meeting_id.encode(), encode(update), []) for update in sending]
            for delivery in await send_batched(producer, topic, messages):
                await delivery
        finally:
            await producer.stop()
    dialogues = [u for u in updates if isinstance(u, DialogueUpdateV1) and u.status != "retracted"]
    return MergeOutcome(meeting_id, source, run, sum(e.run == source for e in events), len(sending),  # type: ignore[attr-defined]
                        len(dialogues), sum(d.status == "final" for d in dialogues), bad,
                        time.monotonic() - started)  # fmt: skip
